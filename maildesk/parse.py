"""Raw RFC 5322 bytes to a ParsedMessage: decoded headers, text, HTML and attachments.

Parsing is pure: no database, no file system. Every text value taken from a mail is
reduced to what is safe to store and to put into a template (no NUL, subjects and names
on one line), because later steps copy these values into outgoing headers.

The standard library splits the MIME tree with the ``compat32`` policy, which keeps
header values raw. Everything that turns bytes into text is done here and in
``maildesk.charsets``, because the stdlib's strict header parser turns real mail's
breaks of the standards into defects or exceptions.
"""

from __future__ import annotations

import email
import email.message
import email.parser
import email.policy
import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from maildesk.addresses import count_mailboxes, parse_address_header
from maildesk.charsets import DEFAULT_CHARSET, decode_header_bytes, decode_rfc2047, unfold
from maildesk.errors import ParseError
from maildesk.i18n import _
from maildesk.largebodies import LargeBodyMessage, hollow, restore
from maildesk.logcontext import mail_context
from maildesk.mimeparts import content_type_param
from maildesk.mimewalk import (
    MAX_ATTACHMENT_SIZE,
    MAX_ATTACHMENTS,
    MAX_TOTAL_SIZE,
    BodyCollector,
    iter_parts,
)
from maildesk.quotes import extract_reply
from maildesk.subjects import is_forward, is_reply

logger = logging.getLogger(__name__)

_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
# C0 and C1 controls except tab and line breaks; C1 (0x80-0x9F) includes the CSI that
# terminals act on, and only a misdecoded text contains it.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Everything str.splitlines() breaks at, so no later step can split a value into lines.
_LINE_BREAKS = re.compile(r"[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")

# Caps on what one header may put into a ticket. The stored raw mail keeps the whole
# value. A longer value comes from an attack or a broken program, and folding it into
# the headers of every mail the desk sends costs time quadratic in its length.
MAX_SUBJECT_CHARS = 1000
MAX_NAME_CHARS = 200
# Threading needs the newest references and the thread's root, not a list of thousands.
MAX_REFERENCES_KEPT = 100
# The quoted history and signature are looked for in this much of the text. The new
# part of a reply sits at its top, and the search costs time and memory per line, so a
# body of megabytes of short lines would otherwise hold the daemon for seconds.
MAX_REPLY_SOURCE_CHARS = 256 * 1024

# Header fields whose syntax has no place for RFC 2047 encoded words, which section 5 of
# RFC 2047 allows only in unstructured text, comments and display names. They are the
# trace and authentication fields a receiving server writes (RFC 5322, 8601, 8617, 6376),
# the identification fields (RFC 5322) and Auto-Submitted (RFC 3834).
# ``ParsedMessage.headers`` keeps their values as written, because servers read them so.
# A sender's Authentication-Results written as an encoded word names no authserv-id for
# the receiving server, so the server keeps it instead of removing it as a forgery (RFC
# 8601 section 5). Decoded, it would claim that server's verdict.
UNDECODED_FIELDS = frozenset({
    "arc-authentication-results", "arc-message-signature", "arc-seal",
    "authentication-results", "auto-submitted", "delivered-to", "dkim-signature",
    "in-reply-to", "message-id", "received", "received-spf", "references",
    "return-path", "x-original-to",
})

__all__ = [
    "Address",
    "Attachment",
    "MAX_ATTACHMENTS",
    "MAX_ATTACHMENT_SIZE",
    "MAX_NAME_CHARS",
    "MAX_SUBJECT_CHARS",
    "MAX_TOTAL_SIZE",
    "ParsedMessage",
    "clean_text",
    "parse_message",
    "parse_message_ids",
    "single_line",
]


@dataclass(frozen=True)
class Address:
    """One mailbox from an address header; ``address`` keeps the sender's spelling."""

    name: str
    address: str

    @property
    def normalized(self) -> str:
        return self.address.strip().lower()

    def __str__(self) -> str:
        return f"{self.name} <{self.address}>" if self.name else self.address


@dataclass(frozen=True)
class Attachment:
    """One attachment or inline part, decoded; ``filename`` is already sanitised.

    ``original_filename`` is the decoded name as the sender wrote it (one line, for
    display only, never for a path). ``content_id`` keeps its angle brackets.
    """

    filename: str
    content_type: str
    content: bytes = field(repr=False)
    content_id: str | None = None
    inline: bool = False
    original_filename: str = ""

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def is_message(self) -> bool:
        """True for an attached mail (a forward as attachment), stored as raw ``.eml`` bytes."""
        return self.content_type in ("message/rfc822", "message/global")

    def parse_embedded(self) -> ParsedMessage:
        """Parse an attached mail, which makes its own attachments reachable.

        Raises ParseError when the attachment is not a mail or cannot be read.
        """
        if not self.is_message:
            raise ParseError(f"attachment {self.filename!r} is {self.content_type}, not a mail")
        return parse_message(self.content)


@dataclass(frozen=True)
class ParsedMessage:
    """What maildesk reads from one incoming mail.

    ``text`` is the whole plain-text body, converted from HTML when the mail has no
    usable text part. ``reply_text`` is the part the sender wrote this time, without the
    quoted history and signature. ``html`` is the sanitised HTML body, if the mail had
    one. Message-IDs keep their angle brackets. ``notes`` are remarks for the agents
    about what the parser left out (an attachment over the size limit, parts nested too
    deeply), already translated. ``from_count`` is the number of mailboxes in all From
    headers together: more than one makes the author ambiguous (RFC 7489, 6.6.1).
    ``author_header`` names the header ``from_address`` was read from: From, or Sender
    or Reply-To when no From mailbox is usable.
    """

    message_id: str | None
    subject: str
    from_address: Address | None
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    reply_to: tuple[Address, ...] = ()
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    date: datetime | None = None
    headers: tuple[tuple[str, str], ...] = ()
    text: str = ""
    reply_text: str = ""
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    return_path: str | None = None
    content_type: str = "text/plain"
    defects: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    from_count: int = 1
    author_header: str = "From"

    def header(self, name: str) -> str | None:
        """Return the first value of a header (case-insensitive), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """Every Message-ID this mail refers to: In-Reply-To first, then References."""
        seen: dict[str, None] = {}
        for message_id in (*self.in_reply_to, *reversed(self.references)):
            seen.setdefault(message_id, None)
        return tuple(seen)


def clean_text(value: str) -> str:
    """Remove NUL and other control characters that databases and terminals reject."""
    return _CONTROL.sub("", value.replace("\x00", ""))


def single_line(value: str) -> str:
    """Fold CR/LF runs into one space so a value can never start a new header line.

    A line break and the white space around it become one space. The value is split at
    the breaks and each piece stripped, because a regex that matches the white space
    around a break backtracks through every long run of spaces (quadratic time).
    """
    pieces = _LINE_BREAKS.split(value)
    if len(pieces) > 1:
        last = len(pieces) - 1
        stripped = [pieces[0].rstrip()]
        stripped.extend(piece.strip() for piece in pieces[1:last] if piece.strip())
        stripped.append(pieces[last].lstrip())
        value = " ".join(stripped)
    return clean_text(value).strip()


def parse_message_ids(value: str | None) -> tuple[str, ...]:
    """Extract every ``<id>`` from a threading header, however long or badly folded."""
    if not value:
        return ()
    return tuple(_MESSAGE_ID.findall(clean_text(value)))


def bounded_ids(ids: tuple[str, ...], keep: int = MAX_REFERENCES_KEPT) -> tuple[str, ...]:
    """Drop repeated ids, then keep the first and the last ``keep`` of the rest.

    The first References entry is the thread's root and the last ones are the newest
    mails, which is all that threading uses.
    """
    unique = tuple(dict.fromkeys(ids))
    if len(unique) <= 2 * keep:
        return unique
    logger.debug("%d referenced Message-IDs, keeping the first and last %d", len(unique), keep)
    return unique[:keep] + unique[-keep:]


def shorten(value: str, limit: int) -> str:
    """Cut ``value`` to at most ``limit`` characters, ending in an ellipsis when cut."""
    if len(value) <= limit:
        return value
    return value[: limit - 1].rstrip() + "\u2026"


def parse_message(
    raw: bytes,
    *,
    default_charset: str = DEFAULT_CHARSET,
    max_attachment_size: int = MAX_ATTACHMENT_SIZE,
    max_total_size: int = MAX_TOTAL_SIZE,
    max_attachments: int = MAX_ATTACHMENTS,
) -> ParsedMessage:
    """Parse raw bytes into a ParsedMessage; raise ParseError when nothing is readable.

    ``default_charset`` reads 8-bit text that carries no usable charset label and is not
    UTF-8. Attachments larger than ``max_attachment_size`` bytes, past
    ``max_total_size`` bytes for the whole mail, or past the first ``max_attachments``
    are left out and named in ``notes``. The stored raw mail still contains them.
    """
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise ParseError(f"a mail must be bytes, not {type(raw).__name__}")
    raw = bytes(raw)
    if not raw.strip():
        raise ParseError(_("empty message"))

    try:
        return _parse(raw, default_charset, max_attachment_size, max_total_size,
                      max_attachments)
    except ParseError:
        raise
    except (RecursionError, MemoryError) as error:
        logger.error(
            _("Parsing failed: the mail is nested too deeply or too large: {error!r}").format(
                error=error
            )
        )
        raise ParseError(_("the mail could not be parsed: {error!r}").format(
            error=error)) from error
    except Exception as error:  # last resort: one bad mail must never stop the queue
        logger.exception(
            _("Parsing failed with an unexpected error: {error!r}").format(error=error)
        )
        raise ParseError(_("the mail could not be parsed: {error!r}").format(
            error=error)) from error


def _parse(
    raw: bytes,
    default_charset: str,
    max_attachment_size: int,
    max_total_size: int,
    max_attachments: int,
) -> ParsedMessage:
    raw = repair_header_block(raw)
    skeleton, large_bodies = hollow(raw)
    too_deep = False
    try:
        message = email.message_from_bytes(skeleton, LargeBodyMessage,
                                           policy=email.policy.compat32)
    except RecursionError:
        # Thousands of nested parts: read the headers, keep the mail itself as a file.
        message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
            raw, headersonly=True
        )
        too_deep = True
    else:
        restore(message, raw, large_bodies)
    del skeleton
    raw_headers = [(str(name), str(value)) for name, value in message.raw_items()]
    message_id = _message_id(_first(raw_headers, "Message-ID"))
    logger.debug("parsing message %s (%d bytes)", message_id, len(raw))

    hint = _charset_hint(message)

    def decoded(name: str) -> str:
        value = _first(raw_headers, name)
        return "" if value is None else decode_rfc2047(value, default_charset, hint)

    headers = tuple(
        (single_line(name), single_line(_header_value(name, value, default_charset, hint)))
        for name, value in raw_headers
    )

    collector = BodyCollector(
        raw=raw,
        default_charset=default_charset,
        max_attachment_size=max_attachment_size,
        max_total_size=max_total_size,
        max_attachments=max_attachments,
    )
    with mail_context(message_id=message_id):
        if too_deep:
            collector.keep_unreadable(raw)
        else:
            collector.collect(message)
        body = collector.result()

    notes = list(body.notes)
    subject = single_line(decoded("Subject"))
    if len(subject) > MAX_SUBJECT_CHARS:
        note = _(
            "The subject had {length} characters and was shortened to {limit}. "
            "The stored mail keeps the whole subject."
        ).format(length=len(subject), limit=MAX_SUBJECT_CHARS)
        logger.warning(note)
        notes.append(note)
        subject = shorten(subject, MAX_SUBJECT_CHARS)
    text = clean_text(body.text)
    reply_source = clean_text(body.reply_source)
    if len(reply_source) > MAX_REPLY_SOURCE_CHARS:
        note = _(
            "The text had {length} characters, so quoted history and the signature "
            "were looked for only in its first {limit}. The stored text is whole."
        ).format(length=len(reply_source), limit=MAX_REPLY_SOURCE_CHARS)
        logger.warning(note)
        notes.append(note)
        end = reply_source.rfind("\n", 0, MAX_REPLY_SOURCE_CHARS)
        reply_source = reply_source[: end if end > 0 else MAX_REPLY_SOURCE_CHARS]
    author, author_header = _author(raw_headers, default_charset, hint, message_id)
    in_reply_to = bounded_ids(parse_message_ids(_first(raw_headers, "In-Reply-To")))
    return ParsedMessage(
        message_id=message_id,
        subject=subject,
        from_address=author,
        to=_addresses(raw_headers, "To", default_charset, hint, message_id),
        cc=_addresses(raw_headers, "Cc", default_charset, hint, message_id),
        reply_to=_addresses(raw_headers, "Reply-To", default_charset, hint, message_id),
        in_reply_to=in_reply_to,
        references=bounded_ids(parse_message_ids(" ".join(_all(raw_headers, "References")))),
        date=_date(raw_headers),
        headers=headers,
        text=text,
        reply_text=extract_reply(reply_source, forwarded=is_forward(subject),
                                 replying=is_reply(subject) or bool(in_reply_to)),
        html=body.html,
        attachments=body.attachments,
        return_path=_return_path(raw_headers),
        content_type=message.get_content_type(),
        defects=tuple(
            type(defect).__name__ for part in iter_parts(message) for defect in part.defects
        ),
        notes=tuple(notes),
        from_count=_mailbox_count(raw_headers, "From"),
        author_header=author_header,
    )


def _header_value(name: str, value: str, default_charset: str, hint: str | None) -> str:
    """Return a header value for ``ParsedMessage.headers``: decoded, unless the field is
    one of ``UNDECODED_FIELDS``, whose raw 8-bit bytes are still read in the mail's charset.
    """
    if name.strip().lower() in UNDECODED_FIELDS:
        if value.isascii() and "\x1b" not in value:
            return unfold(value)  # what decode_header_bytes returns for ASCII bytes
        raw = unfold(value).encode("utf-8", errors="surrogateescape")
        return decode_header_bytes(raw, default_charset, hint)
    return decode_rfc2047(value, default_charset, hint)


_BARE_MESSAGE_ID = re.compile(r"^\s*([^<>\s@]+@[^<>\s@]+)\s*$")


def _message_id(value: str | None) -> str | None:
    """Return the Message-ID with angle brackets; a bare ``id@host`` gets them added."""
    found = parse_message_ids(value)
    if found:
        return found[0]
    bare = _BARE_MESSAGE_ID.match(single_line(value or ""))
    return f"<{bare.group(1)}>" if bare else None


_FIELD_LINE = re.compile(rb"^[\x21-\x39\x3b-\x7e]{1,200}[ \t]*:")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


def repair_header_block(raw: bytes) -> bytes:
    """Indent a header continuation line that lost its leading white space.

    Some gateways fold long headers without indenting the next line. The stdlib then
    takes that line as the start of the body, and every header below it (often
    From and Subject) is lost. A line is re-indented only when real header fields
    follow it before the blank line that ends the header block.
    """
    end = _BLANK_LINE.search(raw)
    if end is None:
        return raw
    lines = raw[: end.start()].split(b"\n")
    first = 1 if lines and lines[0].startswith(b"From ") else 0

    fields = [index for index in range(first, len(lines)) if _FIELD_LINE.match(lines[index])]
    if not fields or fields[0] != first:
        return raw  # not a header block at all, or one that starts with text
    repaired = False
    for index in range(first, fields[-1]):
        line = lines[index]
        if line[:1] in (b" ", b"\t") or _FIELD_LINE.match(line):
            continue
        lines[index] = b" " + line
        repaired = True
    if not repaired:
        return raw
    logger.debug("re-indented header continuation lines without leading white space")
    return b"\n".join(lines) + raw[end.start() :]


def _charset_hint(message: email.message.Message) -> str | None:
    """Return the first charset a text part declares, to read unlabelled 8-bit headers."""
    for count, part in enumerate(iter_parts(message)):
        if count > 50:
            break
        charset = content_type_param(part, "charset")  # None for a malformed header
        if isinstance(charset, str) and charset:
            return charset
    return None


def _first(headers: list[tuple[str, str]], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers:
        if key.lower() == wanted:
            return value
    return None


def _all(headers: list[tuple[str, str]], name: str) -> list[str]:
    wanted = name.lower()
    return [value for key, value in headers if key.lower() == wanted]


def _addresses(
    headers: list[tuple[str, str]], name: str, default_charset: str, hint: str | None,
    message_id: str | None,
) -> tuple[Address, ...]:
    """Parse every mailbox of every header ``name`` into single-line Addresses.

    An entry the parser cannot read is left out with a warning, as one without an
    address is left out silently. The stored raw mail and ``headers`` keep its text.
    """
    result: list[Address] = []
    for value in _all(headers, name):
        unreadable: list[str] = []
        for display, address in parse_address_header(value, default_charset, hint,
                                                     unreadable=unreadable):
            display_name = shorten(single_line(display), MAX_NAME_CHARS)
            result.append(Address(display_name, single_line(address)))
        if unreadable:
            logger.warning(_("message {message_id}: an entry of its {header} header could "
                             "not be read and was left out; the stored mail keeps it").format(
                message_id=message_id or _("(no Message-ID)"), header=name))
    return tuple(result)


def _mailbox_count(headers: list[tuple[str, str]], name: str) -> int:
    """Count the mailboxes of every header ``name``, usable or not, as a verifier would."""
    values = _all(headers, name)
    return max(len(values), sum(count_mailboxes(value) for value in values))


def _author(
    headers: list[tuple[str, str]], default_charset: str, hint: str | None,
    message_id: str | None,
) -> tuple[Address | None, str]:
    """Return the first From mailbox; without a usable From, Sender, then Reply-To.

    Some bulk mailers and broken gateways send no From at all, or ``From: "Name" <>``;
    the mailbox that replies would reach is the best requester there is. The name of
    the header it came from is returned with it.
    """
    for name in ("From", "Sender", "Reply-To"):
        found = _addresses(headers, name, default_charset, hint, message_id)
        if found:
            return found[0], name
    return None, "From"


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(single_line(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # "-0000": the zone is unknown, RFC 5322 3.3
    try:
        parsed.astimezone(UTC)  # 9999-12-31 23:59 -1400 lies past datetime.max in UTC
    except OverflowError:
        return None
    return parsed


def _date(headers: list[tuple[str, str]]) -> datetime | None:
    """Read Date; if it is missing or unparseable, use the topmost Received timestamp.

    The topmost Received header is the one our own server added, so its clock is the
    closest trustworthy time of arrival.
    """
    date = _parse_date(_first(headers, "Date"))
    if date is not None:
        return date

    for received in _all(headers, "Received"):
        _, separator, stamp = unfold(received).rpartition(";")
        if separator:
            date = _parse_date(stamp.strip())
            if date is not None:
                return date
    return None


def _return_path(headers: list[tuple[str, str]]) -> str | None:
    value = _first(headers, "Return-Path")
    if value is None:
        return None
    return single_line(value).strip().strip("<>").strip()
