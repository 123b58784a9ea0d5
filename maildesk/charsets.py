"""Charset labels and byte decoding for mail as it is really sent, not as RFC 2045 wants it.

Mail clients mislabel charsets (``cp-1250``, ``win-1250``), label Windows-1250 text as
ISO-8859-2 and the reverse, and send 8-bit bytes with no label at all. Every function
here returns text and never raises on bad bytes: the worst case is U+FFFD for a byte
that no candidate charset can read.
"""

from __future__ import annotations

import codecs
import logging
import re

logger = logging.getLogger(__name__)

DEFAULT_CHARSET = "windows-1250"

# Labels that mail clients write but Python's codec registry does not know, or knows
# under a meaning that mail does not use (WHATWG maps the Latin-1 and ASCII labels to
# Windows-1252 for the same reason: senders write "iso-8859-1" for Windows-1252 text).
_ALIASES = {
    "iso-8859-1": "windows-1252",
    "iso8859-1": "windows-1252",
    "latin1": "windows-1252",
    "latin-1": "windows-1252",
    "l1": "windows-1252",
    "iso-8859-9": "windows-1254",
    "latin5": "windows-1254",
    "iso-8859-11": "cp874",
    "tis-620": "cp874",
    "iso-8859-8-i": "iso-8859-8",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "euc-kr": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cn-gb": "gb18030",
    "big5": "big5hkscs",
    "shift_jis": "cp932",
    "x-sjis": "cp932",
    "sjis": "cp932",
    "windows-31j": "cp932",
    "x-mac-roman": "mac-roman",
    "macintosh": "mac-roman",
    "unicode-1-1-utf-8": "utf-8",
    "utf8": "utf-8",
    "unicode": "utf-8",
    "x-unicode20utf8": "utf-8",
}

# Labels that say "I do not know" and therefore count as no label at all.
_UNKNOWN_LABELS = frozenset(
    {"", "unknown", "unknown-8bit", "x-unknown", "x-user-defined", "default", "none", "charset"}
)

# Codecs that Python registers but that are not charsets a mail could be written in; some
# would even interpret backslash escapes in the text.
_REJECTED_CODECS = frozenset(
    {"unicode_escape", "raw_unicode_escape", "undefined", "idna", "punycode", "mbcs", "oem"}
)

# "cp-1250", "cp_1250", "win-1250", "x-cp1250", "windows1250", "x-windows-1250", "cp1250".
_WINDOWS_LABEL = re.compile(r"^(?:x-)?(?:cp|win|windows|ms)[-_ ]?(\d{3,5})$")
_ISO_LABEL = re.compile(r"^(?:x-)?iso[-_ ]?(8859|2022)[-_ ]?([a-z0-9]+)(?:[-_:].*)?$")

_POLISH_LETTERS = frozenset("ąćęłńóśźżĄĆĘŁŃÓŚŹŻ")
# What the bytes of ą, ś, ź, Ą, Ś, Ź in ISO-8859-2 look like when read as Windows-1250.
_ISO_LETTERS_AS_WINDOWS = frozenset("±¶Ľˇ¦¬")
# The C1 control bytes are never text; Windows-1250 puts ś, ź, Ś, Ź, „, ”, – there.
_C1_BYTES = re.compile(rb"[\x80-\x9f]")


def normalize_charset(label: str | None) -> str | None:
    """Map a charset label as written in a mail to a Python codec name, or None if unusable."""
    if label is None:
        return None

    if not label.isascii() or "\x00" in label:
        # A label with 8-bit bytes (surrogate escapes from a raw header) or a NUL names
        # no charset, and codecs.lookup() raises UnicodeEncodeError or ValueError on it.
        return None
    name = label.strip().strip("\"'").strip().lower()
    name = name.split("*", 1)[0]  # RFC 2231 language suffix: utf-8*pl
    if name in _UNKNOWN_LABELS or not name.isprintable():
        return None

    name = _ALIASES.get(name, name)
    windows = _WINDOWS_LABEL.match(name)
    if windows:
        number = windows.group(1)
        name = f"windows-{number}" if number.startswith("125") else f"cp{number}"
    iso = _ISO_LABEL.match(name)
    if iso:
        name = f"iso-{iso.group(1)}-{iso.group(2)}"
        name = _ALIASES.get(name, name)

    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):  # ValueError includes UnicodeEncodeError
        return None
    if (
        not getattr(info, "_is_text_encoding", True)
        or info.name.replace("-", "_") in _REJECTED_CODECS
    ):
        return None
    return info.name


# Charsets that senders confuse with each other; when the bytes are invalid in the
# declared one, the others of its family are tried before UTF-8 and the default.
_FAMILIES = {
    "iso2022_jp": ("cp932", "euc_jp"),
    "cp932": ("euc_jp", "iso2022_jp"),
    "shift_jis": ("cp932", "euc_jp"),
    "euc_jp": ("cp932", "iso2022_jp"),
    "gb18030": ("big5hkscs",),
    "big5hkscs": ("gb18030",),
    "cp949": ("euc_kr", "iso2022_kr"),
    "koi8_r": ("koi8_u", "cp1251"),
    "cp1251": ("koi8_r",),
}


# Charsets written in 7-bit bytes with escape sequences, so ASCII bytes are no proof of ASCII.
_SEVEN_BIT_STATEFUL = ("iso2022", "utf-7", "hz")


def _polish_score(text: str) -> int:
    return sum(1 for char in text if char in _POLISH_LETTERS)


def correct_polish_charset(data: bytes, codec: str) -> str:
    """Return the codec that really fits ``data`` when ISO-8859-2 and Windows-1250 were mixed up.

    The two differ in ą, ś, ź (and capitals) and in 0x80-0x9F, where ISO-8859-2 has only
    control characters and Windows-1250 has ś, ź, quotation marks and dashes.
    """
    if codec == "iso8859-2":
        if _C1_BYTES.search(data):
            return "cp1250"
        return codec

    if codec == "cp1250" and not _C1_BYTES.search(data):
        as_windows = data.decode("cp1250", errors="replace")
        as_iso = data.decode("iso8859-2", errors="replace")
        suspicious = sum(1 for char in as_windows if char in _ISO_LETTERS_AS_WINDOWS)
        if suspicious and _polish_score(as_iso) > _polish_score(as_windows):
            return "iso8859-2"
    return codec


def _mostly_utf8(data: bytes) -> bool:
    """Tell whether bytes that are invalid UTF-8 still read better as UTF-8 than single-byte."""
    text = data.decode("utf-8", errors="replace")
    replaced = text.count("\ufffd")
    multibyte = sum(1 for char in text if ord(char) > 0x7F and char != "\ufffd")
    return multibyte > replaced


def _try_decode(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def decode_bytes(
    data: bytes, label: str | None, default: str = DEFAULT_CHARSET, hint: str | None = None
) -> str:
    """Decode ``data`` declared as ``label``; fall back to UTF-8, then ``default``.

    The declared charset wins whenever the bytes are valid in it (after the
    ISO-8859-2/Windows-1250 correction), so a stale HTML <meta> or a guess never
    overrides a correct MIME label. ``hint`` is a charset that other parts of the same
    mail use; it is tried after the declared charset's family and before UTF-8 for
    unlabelled bytes.
    """
    if not data:
        return ""
    codec = normalize_charset(label)
    if codec is None and b"\x1b$" in data:
        # Unlabelled ISO-2022-JP (old Japanese mail writes raw escape sequences in headers).
        text = _try_decode(data, "iso2022_jp")
        if text is not None:
            return text
    if data.isascii() and not (codec or "").startswith(_SEVEN_BIT_STATEFUL):
        return data.decode("ascii")

    if codec in ("ascii", "us-ascii"):
        codec = None  # 8-bit bytes under an ASCII label: the label is wrong
    if codec is not None:
        codec = correct_polish_charset(data, codec)
        for candidate in (codec, *_FAMILIES.get(codec, ())):
            text = _try_decode(data, candidate)
            if text is not None:
                return text
        logger.debug("bytes are invalid in the declared charset %s", label)

    text = _try_decode(data, "utf-8")
    if text is not None:
        return text

    hinted = normalize_charset(hint)
    if codec is None and hinted not in (None, "ascii", "utf-8") and not _is_single_byte(hinted):
        for candidate in (hinted, *_FAMILIES.get(hinted, ())):
            text = _try_decode(data, candidate)
            if text is not None:
                return text

    if codec == "utf-8" and _mostly_utf8(data):
        return data.decode("utf-8", errors="replace")
    if codec is not None and codec != "utf-8" and not _is_single_byte(codec):
        return data.decode(codec, errors="replace")

    fallback = normalize_charset(default) or "cp1250"
    fallback = correct_polish_charset(data, fallback)
    try:
        return data.decode(fallback)
    except UnicodeDecodeError:
        return data.decode(fallback, errors="replace")


def _is_single_byte(codec: str) -> bool:
    return codec.startswith(("cp", "iso8859", "latin", "mac", "koi8", "windows", "kz", "ptcp"))


def decode_header_bytes(
    data: bytes, default: str = DEFAULT_CHARSET, hint: str | None = None
) -> str:
    """Decode 8-bit header bytes that carry no charset: UTF-8 first, then ``default``.

    A multi-byte ``hint`` (the body's charset) is tried between the two, because a mail
    client that writes raw Shift_JIS headers writes its body in a Japanese charset too.
    """
    return decode_bytes(data, None, default, hint)


def declared_html_charset(html: bytes) -> str | None:
    """Return the charset an HTML document declares in its <meta>, if any."""
    head = html[:4096]
    match = re.search(rb"<meta[^>]{0,400}?charset\s*=\s*[\"']?\s*([-\w.:]+)", head, re.IGNORECASE)
    if match is None:
        return None
    return match.group(1).decode("ascii", errors="replace")


# An RFC 2047 encoded word. The text part is matched leniently (spaces allowed, as some
# mailers write them) but cannot cross another "?=" or a line break.
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,75})\?([QqBb])\?([^?\r\n]{0,2000}?)\?=")
_Q_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")
_FOLD = re.compile(r"\r?\n(?=[ \t])|\r(?=[ \t])")


def unfold(value: str) -> str:
    """Undo RFC 5322 header folding: a line break followed by white space is removed."""
    return _FOLD.sub("", value)


def _decode_word_payload(encoding: str, text: str) -> bytes:
    raw = text.encode("ascii", errors="replace")
    if encoding in "Qq":
        return _Q_ESCAPE.sub(
            lambda match: bytes([int(match.group(1), 16)]), raw.replace(b"_", b" ")
        )

    cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", raw)
    cleaned = cleaned[: len(cleaned) - len(cleaned) % 4] if len(cleaned) % 4 == 1 else cleaned
    cleaned += b"=" * (-len(cleaned) % 4)
    try:
        return codecs.decode(cleaned, "base64")
    except ValueError:
        return raw


def _raw_bytes(text: str) -> bytes:
    """Recover the original bytes of header text read with ``surrogateescape``."""
    return text.encode("utf-8", errors="surrogateescape")


def decode_rfc2047(value: str, default: str = DEFAULT_CHARSET, hint: str | None = None) -> str:
    """Decode a header value with encoded words, raw 8-bit bytes or both.

    Adjacent encoded words of one charset are joined as bytes before decoding, so a
    multi-byte character split between two words comes out whole. White space between
    two encoded words is dropped (RFC 2047, section 6.2). The words' bytes are
    collected in a list, because appending to one bytes value is quadratic.
    """
    value = unfold(value)
    if value.isascii() and "=?" not in value and "\x1b" not in value:
        return value  # most header values: nothing to decode
    pieces: list[str] = []
    pending_bytes: list[bytes] = []
    pending_label: str | None = None
    pending_codec: str | None = None
    position = 0

    def flush() -> None:
        nonlocal pending_label, pending_codec
        if pending_bytes or pending_label is not None:
            pieces.append(decode_bytes(b"".join(pending_bytes), pending_label, default, hint))
        pending_bytes.clear()
        pending_label = pending_codec = None

    for match in _ENCODED_WORD.finditer(value):
        between = value[position : match.start()]
        position = match.end()
        if between and (between.strip() or pending_label is None):
            flush()
            pieces.append(decode_header_bytes(_raw_bytes(between), default, hint))

        label = match.group(1)
        word = _decode_word_payload(match.group(2), match.group(3))
        codec = normalize_charset(label)
        if pending_label is not None and codec != pending_codec:
            flush()
        pending_label, pending_codec = label, codec
        pending_bytes.append(word)

    flush()
    pieces.append(decode_header_bytes(_raw_bytes(value[position:]), default, hint))
    return "".join(pieces)
