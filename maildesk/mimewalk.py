"""Walk a MIME tree and sort its parts into body text, HTML and attachments.

The rules follow what mail clients show a reader:

- multipart/alternative: the plain part is the text unless it is blank, and the HTML
  part is the HTML.
- multipart/related: the root is the body and the other parts are inline attachments.
- multipart/signed: the first part is the content, and the signature is an attachment.
- message/rfc822 (a forwarded mail) is one ``.eml`` attachment with its raw bytes.
- ``winmail.dat`` is unpacked into its files and body.
- Calendar parts are attachments, never body text.
"""

from __future__ import annotations

import email.message
import email.policy
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from babel.numbers import format_decimal

from maildesk.attachments import (
    UniqueNames,
    find_uuencoded,
    sanitize_filename,
    unpack_tnef,
)
from maildesk.charsets import declared_html_charset, decode_bytes, decode_rfc2047
from maildesk.htmltext import exceeds_html_limits, html_to_text, sanitize_html
from maildesk.i18n import _, current_language, ngettext
from maildesk.mimeparts import (
    decoded_filename,
    get_charset_label,
    get_content_id,
    get_disposition,
    get_param_text,
    name_from_headers,
    payload_bytes,
    related_root,
    serialize,
    serialize_body,
    unflow,
)
from maildesk.quotes import strip_html_quotes
from maildesk.rawparts import locate_raw_bodies, split_multipart

if TYPE_CHECKING:
    from maildesk.parse import Attachment

logger = logging.getLogger(__name__)

MAX_ATTACHMENT_SIZE = 25 * 1024 * 1024
MAX_TOTAL_SIZE = 50 * 1024 * 1024
# More parts than this are a mail bomb, not correspondence; the stored raw mail keeps them.
MAX_ATTACHMENTS = 1000
# A display name of an attachment (the sender's spelling) longer than this is cut.
MAX_ORIGINAL_FILENAME_CHARS = 255

# Deeper nesting is kept inside the enclosing .eml attachment instead of being walked;
# real forwards rarely nest more than a handful of levels.
MAX_DEPTH = 20

_BODY_TYPES = ("text/plain", "text/html")
_TNEF_TYPES = ("application/ms-tnef", "application/vnd.ms-tnef")
_MESSAGE_TYPES = ("message/rfc822", "message/global")


@dataclass
class _Part:
    """One body piece in document order; HTML is kept undecorated until the end."""

    kind: str  # "plain" or "html"
    text: str
    # For plain text converted from HTML: the same text without the quoted history.
    reply: str | None = None


@dataclass(frozen=True)
class BodyResult:
    text: str
    reply_source: str
    html: str | None
    attachments: tuple[Attachment, ...]
    notes: tuple[str, ...]


@dataclass
class BodyCollector:
    """Collect the body and attachments of one mail; see ``collect``."""

    raw: bytes
    default_charset: str
    max_attachment_size: int = MAX_ATTACHMENT_SIZE
    max_total_size: int = MAX_TOTAL_SIZE
    max_attachments: int = MAX_ATTACHMENTS
    parts: list[_Part] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _total_size: int = 0
    _over_count: int = 0
    _raw_bodies: Mapping[int, bytes] | None = None
    _message: email.message.Message | None = None

    def collect(self, message: email.message.Message) -> None:
        """Walk ``message`` and fill ``parts``, ``attachments`` and ``notes``."""
        self._message = message
        self._raw_bodies = None
        self._walk(message, depth=0, top=True)

    def _raw_body(self, part: email.message.Message) -> bytes | None:
        """Return the body of ``part`` byte for byte as in the raw mail, or None.

        Only forwarded mails need this, so the raw mail is split when it is first
        needed, not for every mail.
        """
        if self._raw_bodies is None:
            assert self._message is not None, "collect() sets the message first"
            self._raw_bodies = locate_raw_bodies(self.raw, self._message, MAX_DEPTH)
        return self._raw_bodies.get(id(part))

    def keep_unreadable(self, raw: bytes) -> None:
        """Keep a mail whose MIME tree cannot be walked as one ``.eml`` attachment."""
        note = _("The mail is nested too deeply to read; it is kept as message.eml.")
        logger.warning(note)
        self.notes.append(note)
        self._store("message.eml", "message/rfc822", raw, original="message.eml")

    def result(self) -> BodyResult:
        plain = [part.text for part in self.parts if part.kind == "plain" and part.text.strip()]
        html = [part.text for part in self.parts if part.kind == "html" and part.text.strip()]
        if self._over_count:
            note = ngettext(
                "{count} attachment past the limit of {limit} was left out. "
                "The stored mail still contains it.",
                "{count} attachments past the limit of {limit} were left out. "
                "The stored mail still contains them.",
                self._over_count,
            ).format(count=self._over_count, limit=self.max_attachments)
            logger.warning(note)
            self.notes.append(note)
        too_complex = any(exceeds_html_limits(part) for part in html)
        if too_complex:
            note = _(
                "The HTML of this mail is too large or nested too deeply to display, "
                "so only its text is kept."
            )
            logger.warning(note)
            self.notes.append(note)

        if plain:
            text = "\n\n".join(part.strip("\r\n") for part in plain)
            reply_source = "\n\n".join(
                (part.reply if part.reply is not None else part.text).strip("\r\n")
                for part in self.parts
                if part.kind == "plain" and part.text.strip()
            )
        elif html:
            texts = [html_to_text(part) for part in html]
            text = "\n\n".join(texts)
            reply_pieces = []
            for part, part_text in zip(html, texts, strict=True):
                stripped = _strip_html_quotes(part)
                reply_pieces.append(part_text if stripped is part else html_to_text(stripped))
            reply_source = "\n\n".join(reply_pieces)
        else:
            text = reply_source = ""

        text = text.replace("\r\n", "\n").replace("\r", "\n")
        reply_source = reply_source.replace("\r\n", "\n").replace("\r", "\n")
        sanitized = None
        if html and not too_complex:
            sanitized = sanitize_html("\n".join(html)).replace("\x00", "")
        return BodyResult(
            text=text,
            reply_source=reply_source,
            html=sanitized or None,
            attachments=_without_unnamed_copies(self.attachments),
            notes=tuple(self.notes),
        )

    # -- walking ---------------------------------------------------------------------------

    def _walk(self, part: email.message.Message, depth: int, top: bool = False) -> None:
        content_type = part.get_content_type()

        if content_type in _MESSAGE_TYPES or (
            part.get_content_maintype() == "message" and part.is_multipart()
        ):
            self._add_message(part, content_type)
            return

        if part.is_multipart():
            if depth >= MAX_DEPTH:
                note = _("Parts nested deeper than {depth} levels were not read.").format(
                    depth=MAX_DEPTH
                )
                logger.warning(note)
                self.notes.append(note)
                return
            self._walk_multipart(part, content_type, depth)
            return

        self._walk_leaf(part, content_type, top)

    def _walk_multipart(self, part: email.message.Message, content_type: str, depth: int) -> None:
        children = [
            child for child in part.get_payload() if isinstance(child, email.message.Message)
        ]

        if content_type == "multipart/alternative":
            self._walk_alternative(children, depth)
            return

        if content_type == "multipart/related" and children:
            root = related_root(part, children)
            self._walk(root, depth + 1)
            for child in children:
                if child is not root:
                    self._walk_related_resource(child, depth)
            return

        if content_type == "multipart/signed" and children:
            self._walk(children[0], depth + 1)
            for child in children[1:]:
                self._add_leaf_attachment(child, child.get_content_type())
            return

        for child in children:
            self._walk(child, depth + 1)
        self._walk_epilogue(part, depth)

    def _walk_epilogue(self, part: email.message.Message, depth: int) -> None:
        """Read parts that follow the closing boundary.

        A nested multipart that reuses its parent's boundary closes both at once. The
        stdlib then keeps the parts after it as epilogue text, but mail clients show them.
        """
        epilogue = part.epilogue
        boundary = part.get_boundary()
        if not epilogue or not boundary or f"--{boundary}" not in epilogue:
            return

        data = b"\n" + epilogue.encode("utf-8", errors="surrogateescape")
        pieces = split_multipart(data, boundary.encode("utf-8", errors="surrogateescape"))
        logger.debug("parts found after the closing boundary %r are read as well", boundary)
        for piece in pieces or []:
            if piece.strip():
                child = email.message_from_bytes(piece, policy=email.policy.compat32)
                self._walk(child, depth + 1)

    def _walk_alternative(self, children: list[email.message.Message], depth: int) -> None:
        """Keep the first non-blank plain text and the last HTML of the alternatives.

        Each alternative is collected on its own first, so the attachments of an HTML
        alternative (inline images in multipart/related) are kept even when the plain
        text wins, while the text of a second alternative does not double the body.
        """
        chosen_plain: list[_Part] | None = None
        chosen_html: list[_Part] | None = None
        for child in children:
            before = len(self.parts)
            self._walk(child, depth + 1)
            produced = self.parts[before:]
            del self.parts[before:]

            plain = [piece for piece in produced if piece.kind == "plain"]
            html = [piece for piece in produced if piece.kind == "html"]
            if chosen_plain is None and any(piece.text.strip() for piece in plain):
                chosen_plain = plain
            if html:
                chosen_html = html

        if chosen_plain and chosen_html:
            chosen_plain = _replace_stub(chosen_plain, chosen_html)
        self.parts.extend(chosen_plain or [])
        self.parts.extend(chosen_html or [])

    def _walk_related_resource(self, part: email.message.Message, depth: int) -> None:
        if part.is_multipart():
            self._walk(part, depth + 1)
            return
        self._add_leaf_attachment(part, part.get_content_type(), inline_default=True)

    def _walk_leaf(self, part: email.message.Message, content_type: str, top: bool) -> None:
        disposition = get_disposition(part)
        filename = decoded_filename(part, self.default_charset)

        if part.get_content_maintype() == "multipart":
            # A multipart whose boundary never occurs: the parser kept the body as text.
            self._add_body_text(part, "text/plain")
            return

        is_body_type = content_type in _BODY_TYPES
        is_body = is_body_type and disposition != "attachment" and (filename is None or top)
        if is_body:
            self._add_body_text(part, content_type)
            return

        is_tnef = content_type in _TNEF_TYPES or (filename or "").lower() == "winmail.dat"
        if is_tnef and self._add_tnef(part):
            return

        # NOTE: S/MIME encrypted or opaque-signed mail (application/pkcs7-mime) is kept
        # as smime.p7m without reading its content; the desk has no private keys.
        self._add_leaf_attachment(part, content_type)

    # -- body text ---------------------------------------------------------------------

    def _add_body_text(self, part: email.message.Message, content_type: str) -> None:
        payload = payload_bytes(part)
        label = get_charset_label(part)

        if content_type == "text/html":
            meta = declared_html_charset(payload)
            text = decode_bytes(payload, label or meta, self.default_charset)
            self.parts.append(_Part("html", text))
            return

        text = decode_bytes(payload, label, self.default_charset)
        if get_param_text(part, "format").lower() == "flowed":
            text = unflow(text, delete_space=get_param_text(part, "delsp").lower() == "yes")
        text = self._extract_uuencoded(text)
        self.parts.append(_Part("plain", text))

    def _extract_uuencoded(self, text: str) -> str:
        """Move uuencoded files out of a text body into attachments."""
        if "begin " not in text:
            return text
        found = find_uuencoded(text)
        for item in reversed(found):
            text = text[: item.start] + text[item.end :]
        for item in found:
            self._store(
                item.filename, "application/octet-stream", item.content, original=item.filename
            )
        return text

    # -- attachments ---------------------------------------------------------------------

    def _add_leaf_attachment(
        self, part: email.message.Message, content_type: str, inline_default: bool = False
    ) -> None:
        if len(self.attachments) >= self.max_attachments:
            self._over_count += 1  # counted here too, so the name is not even decoded
            return
        filename = decoded_filename(part, self.default_charset) or name_from_headers(
            part, content_type, self.default_charset
        )
        disposition = get_disposition(part)
        content_id = get_content_id(part)
        inline = disposition == "inline" or (
            inline_default and disposition is None and content_id is not None
        )

        if part.is_multipart():  # message/* types other than rfc822 that the parser split
            content = self._raw_body(part) or serialize_body(part)
        else:
            content = payload_bytes(part)
        self._store(
            filename, content_type, content, content_id=content_id, inline=inline, original=filename
        )

    def _add_message(self, part: email.message.Message, content_type: str) -> None:
        """Store a forwarded mail verbatim as ``<inner subject>.eml``."""
        inner = part.get_payload()
        inner_message = inner[0] if isinstance(inner, list) and inner else None

        content = self._raw_body(part)
        if content is None:
            if isinstance(inner_message, email.message.Message):
                content = serialize(inner_message)
            else:
                content = payload_bytes(part)

        filename = decoded_filename(part, self.default_charset)
        is_mail = content_type in _MESSAGE_TYPES
        if not filename and is_mail and isinstance(inner_message, email.message.Message):
            raw_subject = next(
                (
                    str(value)
                    for name, value in inner_message.raw_items()
                    if name.lower() == "subject"
                ),
                "",
            )
            subject = decode_rfc2047(raw_subject, self.default_charset)
            # A subject is not a path: "Faktura 12/2026" must not lose "Faktura 12/".
            subject = " ".join(subject.replace("/", "_").replace("\\", "_").split())
            filename = f"{subject}.eml" if subject else None
        if not filename:
            filename = name_from_headers(part, content_type, self.default_charset)
        if filename and not filename.lower().endswith(".eml") and is_mail:
            filename += ".eml"
        self._store(
            filename,
            content_type,
            content,
            content_id=get_content_id(part),
            inline=False,
            original=filename,
        )

    def _add_tnef(self, part: email.message.Message) -> bool:
        """Replace ``winmail.dat`` by the files and body inside it; False if it is unreadable."""
        data = payload_bytes(part)
        try:
            tnef = unpack_tnef(data)
        except ValueError as error:
            logger.warning(
                _("winmail.dat could not be unpacked and is kept as it is: {error}").format(
                    error=error
                )
            )
            return False

        for name, content in tnef.files:
            self._store(name or None, "application/octet-stream", content, original=name)
        if tnef.text and not any(
            piece.kind == "plain" and piece.text.strip() for piece in self.parts
        ):
            self.parts.append(_Part("plain", tnef.text))
        elif tnef.html:
            self.parts.append(_Part("html", tnef.html))
        if tnef.rtf and not tnef.text and not tnef.html:
            self._store("message.rtf", "application/rtf", tnef.rtf, original="message.rtf")
        return True

    def _store(
        self,
        filename: str | None,
        content_type: str,
        content: bytes,
        *,
        content_id: str | None = None,
        inline: bool = False,
        original: str | None = None,
    ) -> None:
        from maildesk.parse import Attachment, shorten, single_line

        if len(self.attachments) >= self.max_attachments:
            self._over_count += 1
            return
        safe_name = sanitize_filename(filename, content_type)
        display_name = shorten(single_line(original or ""), MAX_ORIGINAL_FILENAME_CHARS)

        note = None
        if len(content) > self.max_attachment_size:
            note = _("Attachment {name} ({size}) was left out: it is larger than {limit}.").format(
                name=safe_name,
                size=format_size(len(content)),
                limit=format_size(self.max_attachment_size),
            )
        elif self._total_size + len(content) > self.max_total_size:
            note = _(
                "Attachment {name} ({size}) was left out: the attachments of this mail "
                "exceed {limit} together."
            ).format(
                name=safe_name,
                size=format_size(len(content)),
                limit=format_size(self.max_total_size),
            )
        if note is not None:
            logger.warning(note)
            self.notes.append(note)
            return

        self._total_size += len(content)
        self.attachments.append(
            Attachment(
                filename=safe_name,
                content_type=content_type,
                content=content,
                content_id=content_id,
                inline=inline,
                original_filename=display_name,
            )
        )


# A plain alternative with less than this share of the HTML alternative's words is a
# stub ("This mail is best viewed as HTML"), not the same content.
_STUB_WORD_SHARE = 0.5
_STUB_MIN_HTML_WORDS = 30
_WORD = re.compile(r"\w+")


def _replace_stub(plain: list[_Part], html: list[_Part]) -> list[_Part]:
    """Return the HTML alternative as text when the plain alternative is only a stub."""
    plain_words = sum(len(_WORD.findall(piece.text)) for piece in plain)
    # The HTML source, tags and all, has at least as many words as its text: every word
    # of the text, link targets and list numbers included, comes from it. A plain part
    # with half of those is no stub, and the HTML need not be converted.
    source_words = sum(len(_WORD.findall(piece.text)) for piece in html)
    if plain_words >= _STUB_WORD_SHARE * source_words:
        return plain

    html_text = "\n\n".join(html_to_text(piece.text) for piece in html)
    html_words = len(_WORD.findall(html_text))
    if html_words < _STUB_MIN_HTML_WORDS or plain_words >= _STUB_WORD_SHARE * html_words:
        return plain

    logger.debug("plain alternative has %d words, HTML %d: using the HTML", plain_words, html_words)
    reply_pieces = []
    for piece in html:
        stripped = _strip_html_quotes(piece.text)
        reply_pieces.append(html_to_text(stripped) if stripped is not piece.text else None)
    reply = None
    if any(item is not None for item in reply_pieces):
        reply = "\n\n".join(
            item if item is not None else html_to_text(piece.text)
            for item, piece in zip(reply_pieces, html, strict=True)
        )
    return [_Part("plain", html_text, reply)]


def _strip_html_quotes(html: str) -> str:
    """Like ``strip_html_quotes``, but leave HTML over the size or depth limits alone."""
    return html if exceeds_html_limits(html) else strip_html_quotes(html)


def _without_unnamed_copies(attachments: list[Attachment]) -> tuple[Attachment, ...]:
    """Drop an unnamed calendar part when a named attachment has the same bytes.

    Calendar invitations carry the event twice: as the text/calendar alternative and as
    ``invite.ics``; the agent needs one copy. Other parts are kept even when their bytes
    repeat, because the sender attached them.
    """
    named = {item.sha256 for item in attachments if item.original_filename}
    kept = [
        item
        for item in attachments
        if item.original_filename
        or item.content_type != "text/calendar"
        or item.sha256 not in named
    ]
    names = UniqueNames()
    return tuple(replace(item, filename=names.claim(item.filename)) for item in kept)


def iter_parts(
    message: email.message.Message, max_depth: int = 100
) -> Iterator[email.message.Message]:
    """Yield the parts of a MIME tree in document order, not below ``max_depth``.

    Unlike ``Message.walk`` it needs no recursion, so a hostile nesting depth cannot
    raise RecursionError.
    """
    stack: list[tuple[email.message.Message, int]] = [(message, 0)]
    while stack:
        part, depth = stack.pop()
        yield part
        if not part.is_multipart():
            continue  # get_payload would read a large body (largebodies) into memory
        payload = part.get_payload()
        if isinstance(payload, list) and depth < max_depth:
            children = [child for child in payload if isinstance(child, email.message.Message)]
            stack.extend((child, depth + 1) for child in reversed(children))


def format_size(size: int) -> str:
    """Format a byte count for agents, in the current language (``25 MB``, ``1,5 kB``)."""
    value: float = size
    for unit in ("B", "kB", "MB"):
        if value < 1024 or unit == "MB":
            break
        value /= 1024
    number = format_decimal(round(value, 1), locale=current_language())
    return f"{number} {unit}"
