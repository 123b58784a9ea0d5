"""Serialise outgoing mail to RFC 5322 / MIME bytes without the ``email`` package.

maildesk writes only a few shapes of mail: UTF-8 text, optionally with an HTML
alternative, optionally with attachments. For those shapes this writer produces the
bytes directly: quoted-printable bodies through ``binascii.b2a_qp``, base64 attachments
through ``binascii.b2a_base64`` and RFC 2047 encoded words for non-ASCII header text.
``email.message.EmailMessage`` with an SMTP policy produces equivalent mail but parses
every header on assignment and refolds it on output, which made building the mail cost
more than parsing the incoming one.

Header values reach this module already on one line (``parse.single_line``). Folding
only ever inserts CRLF in front of an existing space, so unfolding (RFC 5322 3.2.2)
gives back exactly the value that was set.
"""

from __future__ import annotations

import binascii
import re
import secrets
from dataclasses import dataclass, field

# RFC 5322 2.1.1: lines SHOULD stay within 78 characters and MUST stay within 998.
SOFT_LINE_LENGTH = 78
HARD_LINE_LENGTH = 998
# Plain text with a longer word could not share a line with the header name, so it is
# written as encoded words, which can be split anywhere.
_MAX_PLAIN_WORD = HARD_LINE_LENGTH - 98
# RFC 2047 2: an encoded word is at most 75 characters, "=?utf-8?q?" and "?=" included.
_ENCODED_WORD_LENGTH = 75
_ENCODED_WORD_OVERHEAD = len("=?utf-8?q??=")
# Characters a Q-encoded word may carry literally in any header position (RFC 2047 5(3)).
_Q_LITERAL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
# ASCII words at the start of a subject that stay unencoded, at most this many characters,
# so filters that do not decode headers still see the ticket tag.
_PLAIN_PREFIX_LENGTH = 40
# Characters of a file name per RFC 2231 section, escapes included.
_FILENAME_SECTION = 60
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*\Z")
_ATOM_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]*\Z")
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*\Z")


@dataclass
class MimePart:
    """One MIME entity: its Content-* headers and its encoded body, or its subparts."""

    content_type: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    parts: list[MimePart] = field(default_factory=list)
    # Set when a multipart entity is serialised. "=_" cannot occur in quoted-printable
    # or base64 text, so no body contains it. The random part keeps nested ones distinct.
    boundary: str = ""

    def serialise(self) -> list[bytes]:
        """Return the entity as CRLF-terminated chunks, headers first."""
        if not self.parts:
            head = [("Content-Type", self.content_type), *self.headers]
            return [*(header_line(name, value) for name, value in head), b"\r\n", self.body]

        if not self.boundary:
            self.boundary = "=_maildesk_" + secrets.token_hex(12)
        boundary = self.boundary
        head = [("Content-Type", f'{self.content_type}; boundary="{boundary}"'), *self.headers]
        chunks = [header_line(name, value) for name, value in head]
        chunks.append(b"\r\n")
        # RFC 2046 5.1.1: the CRLF in front of a delimiter belongs to the delimiter, so a
        # part's own last line break needs one more CRLF after it.
        chunks.append(f"--{boundary}\r\n".encode("ascii"))
        delimiter = f"\r\n--{boundary}\r\n".encode("ascii")
        for index, part in enumerate(self.parts):
            if index:
                chunks.append(delimiter)
            chunks.extend(part.serialise())
        chunks.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
        return chunks


def text_part(text: str, subtype: str) -> MimePart:
    """Return a UTF-8 text part encoded quoted-printable, ending with a line break."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    encoded = binascii.b2a_qp(text.encode("utf-8"), istext=True)
    # Mailbox files turn a line starting with "From " into ">From "; encoded, it survives.
    encoded = encoded.replace(b"\nFrom ", b"\n=46rom ")
    if encoded.startswith(b"From "):
        encoded = b"=46" + encoded[1:]
    return MimePart(f"text/{subtype}; charset=\"utf-8\"",
                    [("Content-Transfer-Encoding", "quoted-printable")],
                    encoded.replace(b"\n", b"\r\n"))


def attachment_part(content: bytes, content_type: str, filename: str) -> MimePart:
    """Return a base64 attachment part; ``filename`` must already be safe (one line)."""
    lines = [binascii.b2a_base64(content[start:start + 57])
             for start in range(0, len(content), 57)]
    body = b"".join(lines).replace(b"\n", b"\r\n")
    return MimePart(content_type, [("Content-Transfer-Encoding", "base64"),
                                   ("Content-Disposition", disposition(filename))], body)


def disposition(filename: str) -> str:
    """Return an attachment disposition; a non-ASCII name goes in RFC 2231 form.

    A long encoded name is split into numbered sections (``filename*0*``, ``*1*``, ...)
    between its %XX escapes, so no header line nears the 998-character limit.
    """
    if _PRINTABLE_ASCII.match(filename) and '"' not in filename and "\\" not in filename:
        return f'attachment; filename="{filename}"'
    quoted = [chr(byte) if byte in _Q_LITERAL or byte in b"._" else f"%{byte:02X}"
              for byte in filename.encode("utf-8")]
    sections: list[str] = []
    current = ""
    for piece in quoted:
        if len(current) + len(piece) > _FILENAME_SECTION:
            sections.append(current)
            current = ""
        current += piece
    sections.append(current)
    if len(sections) == 1:
        return f"attachment; filename*=utf-8''{sections[0]}"
    numbered = [f"filename*{index}*={'utf-8' + chr(39) * 2 if index == 0 else ''}{section}"
                for index, section in enumerate(sections)]
    return "attachment; " + "; ".join(numbered)


def message_bytes(headers: list[tuple[str, str]], body: MimePart) -> bytes:
    """Return the whole message: ``headers``, MIME-Version and the body entity."""
    chunks = [header_line(name, value) for name, value in headers]
    chunks.append(header_line("MIME-Version", "1.0"))
    chunks.extend(body.serialise())
    return b"".join(chunks)


# ---------------------------------------------------------------------- headers


def header_line(name: str, value: str) -> bytes:
    """Return ``name: value`` folded at spaces and ending in CRLF.

    The caller encodes a value that is not printable ASCII (``unstructured``,
    ``mailbox``). Only an address without an ASCII form reaches this as UTF-8.
    """
    return (fold(f"{name}: {value}", len(name) + 2) + "\r\n").encode("utf-8")


def fold(line: str, start: int) -> str:
    """Break ``line`` before spaces so its pieces stay within 78 characters where possible.

    ``start`` is where the value begins; the line is never broken before it. A piece
    that has no space to break at stays longer (at most 998 characters is the caller's
    duty for header text, see ``unstructured``).
    """
    pieces: list[str] = []
    while len(line) > SOFT_LINE_LENGTH:
        cut = _fold_point(line, start)
        if cut < 0:
            break
        pieces.append(line[:cut])
        line = line[cut:]
        start = 1
    pieces.append(line)
    return "\r\n".join(pieces)


def _fold_point(line: str, start: int) -> int:
    """Return the index of the space to break before, or -1 when there is none.

    A break goes before a space that follows a non-space and has a non-space somewhere
    after it, so no line is only white space: the last such space within the soft
    limit, else the first one after it.
    """
    last_text = len(line.rstrip(" ")) - 1
    best = -1
    position = line.find(" ", start)
    while 0 <= position < last_text:
        if line[position - 1] != " ":
            if position > SOFT_LINE_LENGTH:
                return best if best >= 0 else position
            best = position
        position = line.find(" ", position + 1)
    return best


def unstructured(value: str) -> str:
    """Return header text (a Subject) that is ASCII on the wire and decodes to ``value``.

    Printable ASCII without anything that looks like an encoded word stays as it is.
    Otherwise the leading plain ASCII words (the ticket tag) stay readable and the rest
    becomes Q-encoded words. RFC 2047 decoders drop the white space between two
    encoded words, so the spaces of the text travel inside the words as "_".
    """
    printable = _PRINTABLE_ASCII.match(value) and "=?" not in value
    if printable and _longest_word(value) < _MAX_PLAIN_WORD:
        return value

    words = value.split(" ")
    head: list[str] = []
    for word in words:
        candidate = " ".join([*head, word])
        plain = _PRINTABLE_ASCII.match(word) and "=?" not in word
        if not word or not plain or len(candidate) > _PLAIN_PREFIX_LENGTH:
            break
        head.append(word)
    rest = " ".join(words[len(head):])
    encoded = " ".join(encoded_words(rest))
    return f"{' '.join(head)} {encoded}" if head else encoded


def _longest_word(value: str) -> int:
    return max((len(word) for word in value.split(" ")), default=0)


def encoded_words(text: str) -> list[str]:
    """Q-encode ``text`` as UTF-8 in words of at most 75 characters.

    A character's bytes never straddle two words, which some decoders (and RFC 2047 5)
    require.
    """
    room = _ENCODED_WORD_LENGTH - _ENCODED_WORD_OVERHEAD
    words: list[str] = []
    current: list[str] = []
    used = 0
    for character in text:
        piece = _q_encode(character)
        if current and used + len(piece) > room:
            words.append("=?utf-8?q?" + "".join(current) + "?=")
            current, used = [], 0
        current.append(piece)
        used += len(piece)
    if current or not words:
        words.append("=?utf-8?q?" + "".join(current) + "?=")
    return words


def _q_encode(character: str) -> str:
    if character == " ":
        return "_"
    data = character.encode("utf-8")
    if len(data) == 1 and data[0] in _Q_LITERAL:
        return character
    return "".join(f"={byte:02X}" for byte in data)


def mailbox(address: str, name: str = "") -> str:
    """Return ``name <address>`` (RFC 5322 name-addr), or the bare address without a name.

    The display name is written as atoms, as a quoted string when it contains specials such
    as ":" or "@", or as encoded words when it is not printable ASCII. Runs of white space
    in the name become one space, as mail readers show them anyway.
    """
    spec = addr_spec(address)
    name = " ".join(name.split())
    if not name:
        return spec
    return f"{phrase(name)} <{spec}>"


def phrase(name: str) -> str:
    """Return a display name in the form RFC 5322 allows for it (atoms, quoted, encoded)."""
    if _PRINTABLE_ASCII.match(name) and "=?" not in name and len(name) < _MAX_PLAIN_WORD:
        if _ATOM_PHRASE.match(name) and "  " not in name and name == name.strip():
            return name
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'

    # NOTE: Python's address parser (3.11) shows a space between two encoded words of a
    # display name; RFC 2047 decoders, mail clients among them, join them as written.
    return " ".join(encoded_words(name))


def addr_spec(address: str) -> str:
    """Return ``local@domain`` with the local part quoted when it is not a dot-atom.

    An internationalised domain is written in its IDNA form. A non-ASCII local part has
    no ASCII form, so it stays UTF-8 (quoted like any other local part that is not a
    dot-atom), which only an SMTPUTF8 server accepts.
    """
    local, _at, domain = address.rpartition("@")
    if not _at:
        return address
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            pass
    if not _DOT_ATOM.match(local):
        local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{local}@{domain}"
