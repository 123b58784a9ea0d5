"""Raw RFC 5322 bytes to a ParsedMessage: decoded headers, text, HTML and attachments.

Parsing is pure: no database, no file system. Every text value taken from a mail is
reduced to what is safe to store and to put into a template (no NUL, subjects and names
on one line), because later steps copy these values into outgoing headers.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import getaddresses, parsedate_to_datetime

from maildesk.errors import ParseError

logger = logging.getLogger(__name__)

_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


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
    """One attachment or inline part, decoded; ``filename`` is already sanitised."""

    filename: str
    content_type: str
    content: bytes = field(repr=False)
    content_id: str | None = None
    inline: bool = False

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class ParsedMessage:
    """What maildesk reads from one incoming mail.

    ``text`` is the whole plain-text body (converted from HTML when the mail has no
    usable text part); ``reply_text`` is the part the sender wrote this time, without the
    quoted history and signature. Message-IDs keep their angle brackets.
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
    """Fold CR/LF runs into one space so a value can never start a new header line."""
    return clean_text(_LINE_BREAKS.sub(" ", value)).strip()


def parse_message_ids(value: str | None) -> tuple[str, ...]:
    """Extract every ``<id>`` from a threading header, however long or badly folded."""
    if not value:
        return ()
    return tuple(_MESSAGE_ID.findall(value))


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse raw bytes into a ParsedMessage; raise ParseError when nothing is readable."""
    if not raw or not raw.strip():
        raise ParseError("empty message")

    try:
        message = email.message_from_bytes(raw, policy=email.policy.default)
    except Exception as error:  # the stdlib parser has no documented error class
        raise ParseError(f"the mail could not be parsed: {error}") from error
    assert isinstance(message, EmailMessage)

    headers = tuple((name, single_line(str(value))) for name, value in _header_items(message))
    text, html = _body(message)
    return ParsedMessage(
        message_id=(parse_message_ids(_raw_header(message, "Message-ID")) or (None,))[0],
        subject=single_line(_header_text(message, "Subject")),
        from_address=(_addresses(message, "From") or (None,))[0],
        to=_addresses(message, "To"),
        cc=_addresses(message, "Cc"),
        reply_to=_addresses(message, "Reply-To"),
        in_reply_to=parse_message_ids(_raw_header(message, "In-Reply-To")),
        references=parse_message_ids(_raw_header(message, "References")),
        date=_date(message),
        headers=headers,
        text=clean_text(text),
        reply_text=clean_text(text).strip(),
        html=html,
        attachments=tuple(_attachments(message)),
        return_path=_return_path(message),
        content_type=message.get_content_type(),
        defects=tuple(type(defect).__name__ for defect in message.defects),
    )


def _header_items(message: EmailMessage) -> list[tuple[str, str]]:
    items = []
    for name, value in message.raw_items():
        try:
            items.append((name, str(message.policy.header_factory(name, value))))
        except Exception:  # malformed header: keep the raw text
            items.append((name, str(value)))
    return items


def _raw_header(message: EmailMessage, name: str) -> str | None:
    for key, value in message.raw_items():
        if key.lower() == name.lower():
            return str(value)
    return None


def _header_text(message: EmailMessage, name: str) -> str:
    try:
        value = message.get(name)
    except Exception:
        value = _raw_header(message, name)
    return "" if value is None else str(value)


def _addresses(message: EmailMessage, name: str) -> tuple[Address, ...]:
    values = [_header_text(message, name)] if message.get(name) is not None else []
    result = []
    for display, address in getaddresses(values):
        if "@" in address:
            result.append(Address(single_line(display), single_line(address)))
    return tuple(result)


def _date(message: EmailMessage) -> datetime | None:
    value = _raw_header(message, "Date")
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


def _return_path(message: EmailMessage) -> str | None:
    value = _raw_header(message, "Return-Path")
    if value is None:
        return None
    return value.strip().strip("<>").strip()


def _decoded_text(part: EmailMessage) -> str:
    payload = part.get_payload(decode=True) or b""
    assert isinstance(payload, bytes)
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset)
    except (LookupError, UnicodeDecodeError):
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            return payload.decode("windows-1250", errors="replace")


def _body(message: EmailMessage) -> tuple[str, str | None]:
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    text = _decoded_text(text_part) if isinstance(text_part, EmailMessage) else ""
    html = _decoded_text(html_part) if isinstance(html_part, EmailMessage) else None
    if not text.strip() and html:
        text = re.sub(r"<[^>]+>", " ", html)
    return text, html


def _attachments(message: EmailMessage) -> list[Attachment]:
    result = []
    for part in message.iter_attachments():
        assert isinstance(part, EmailMessage)
        payload = part.get_payload(decode=True)
        if payload is None:
            payload = part.as_bytes()
        result.append(
            Attachment(
                filename=single_line(part.get_filename() or "attachment"),
                content_type=part.get_content_type(),
                content=payload,
                content_id=part.get("Content-ID"),
                inline=part.get_content_disposition() == "inline",
            )
        )
    return result
