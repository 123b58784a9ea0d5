"""Build outgoing RFC 5322 messages from rendered templates.

Every value that came from an incoming mail reaches the headers only through
``single_line``, which turns CR/LF into a space, and ``maildesk.mimewrite`` then quotes
or RFC 2047-encodes it. So a subject, display name or file name cannot inject a
header. Message-IDs taken from incoming mail are kept only when they have the
``<left@right>`` form without spaces.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from maildesk.mimewrite import (
    MimePart,
    addr_spec,
    attachment_part,
    mailbox,
    message_bytes,
    text_part,
    unstructured,
)
from maildesk.models import utcnow
from maildesk.parse import single_line
from maildesk.templating import RenderedMail

logger = logging.getLogger(__name__)

# RFC 2045 token, for each half of a content type taken from outside.
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`{|}~]+\Z")
_MESSAGE_ID = re.compile(r"^<[^<>\s\"]+@[^<>\s\"]+>$")
_UNSAFE_FILENAME = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")
# Outlook and Gmail thread on the last few ids; the first and the last ten are kept.
MAX_REFERENCES = 11
# A longer Message-ID would not fit on one header line (998 characters) with its name.
MAX_MESSAGE_ID_LENGTH = 900
# Seconds between 1601-01-01 (the FILETIME epoch) and 1970-01-01.
_FILETIME_EPOCH_OFFSET = 11644473600


@dataclass(frozen=True)
class Recipient:
    address: str
    name: str = ""


@dataclass(frozen=True)
class OutgoingAttachment:
    filename: str
    content_type: str
    content: bytes


def new_message_id(kind: str, ticket: int | None, domain: str) -> str:
    """Return a Message-ID with a random part, so nobody can guess the next one."""
    ticket_part = f"{ticket}." if ticket is not None else ""
    return f"<{kind}.{ticket_part}{secrets.token_hex(8)}@{domain}>"


def valid_message_ids(ids: list[str] | tuple[str, ...] | None) -> list[str]:
    """Keep the ids that are safe to copy into a header, in order and without repeats."""
    kept: list[str] = []
    for value in ids or ():
        value = value.strip()
        if (len(value) <= MAX_MESSAGE_ID_LENGTH and _MESSAGE_ID.match(value)
                and value not in kept):
            kept.append(value)
    return kept


def thread_index(conversation: str, started: datetime) -> str:
    """Return an Outlook Thread-Index header block for one conversation (one ticket).

    The block is 22 bytes: 0x01, the 40 high bits of the start time as FILETIME, and a
    GUID derived from ``conversation`` ([MS-OXOMSG] PidTagConversationIndex). Every mail
    of a ticket carries the same block, so Outlook groups them even when the subject
    changes.
    """
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    filetime = int((started.timestamp() + _FILETIME_EPOCH_OFFSET) * 10_000_000)
    guid = uuid.uuid5(uuid.NAMESPACE_URL, f"maildesk:{conversation}")
    block = b"\x01" + (filetime >> 24).to_bytes(5, "big") + guid.bytes
    return base64.b64encode(block).decode("ascii")


def safe_filename(name: str, fallback: str = "attachment") -> str:
    """Reduce a user-supplied file name to one line without path or control characters."""
    cleaned = _UNSAFE_FILENAME.sub("_", single_line(name)).strip(" ._")
    return cleaned[:200] or fallback


def _formatted(recipient: Recipient) -> str:
    return mailbox(single_line(recipient.address), single_line(recipient.name))


@dataclass(frozen=True)
class OutgoingMessage:
    """A finished outgoing mail: header fields in wire form and the MIME body."""

    headers: tuple[tuple[str, str], ...]
    body: MimePart

    def as_bytes(self) -> bytes:
        return message_bytes(list(self.headers), self.body)

    def as_string(self) -> str:
        return self.as_bytes().decode("utf-8", "replace")


def build_message(
    rendered: RenderedMail,
    *,
    sender: Recipient,
    to: list[Recipient],
    cc: list[Recipient] | None = None,
    message_id: str,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    reply_to: str | None = None,
    automatic: bool = True,
    ticket: int | None = None,
    auto_submitted: str | None = None,
    thread_topic: str | None = None,
    thread_started: datetime | None = None,
    attachments: list[OutgoingAttachment] | None = None,
    date: datetime | None = None,
) -> OutgoingMessage:
    """Assemble one outgoing mail with the threading and loop-protection headers.

    Automatic mail carries ``Auto-Submitted: auto-replied`` unless ``auto_submitted``
    names another RFC 3834 value: every responder that honours the header treats all
    values other than ``no`` alike, and some filters look for ``auto-replied`` only.
    """
    headers: list[tuple[str, str]] = [
        ("From", _formatted(sender)),
        ("To", ", ".join(_formatted(r) for r in to)),
    ]
    if cc:
        headers.append(("Cc", ", ".join(_formatted(r) for r in cc)))
    headers.append(("Subject", unstructured(single_line(rendered.subject))))
    headers.append(("Date", format_datetime((date or utcnow()).replace(tzinfo=UTC))))
    headers.append(("Message-ID", message_id))
    headers.extend(_threading(message_id, in_reply_to, references, thread_topic,
                              thread_started, ticket))
    if reply_to:
        headers.append(("Reply-To", mailbox(single_line(reply_to))))
    if automatic:
        # RFC 3834 tells well-behaved responders not to answer; Exchange reads the other.
        headers.append(("Auto-Submitted", auto_submitted or "auto-replied"))
        headers.append(("X-Auto-Response-Suppress", "All"))
    # Our own mail coming back through a forwarder is recognised by this (classify.py).
    headers.append(("X-Loop", addr_spec(single_line(sender.address))))
    if ticket is not None:
        headers.append(("X-Maildesk-Ticket", str(ticket)))
    headers.append(("Content-Language", unstructured(single_line(rendered.language))))

    return OutgoingMessage(tuple(headers), _body(rendered, attachments or []))


def _body(rendered: RenderedMail, attachments: list[OutgoingAttachment]) -> MimePart:
    """Return text/plain, an alternative with HTML, and a mixed entity around attachments."""
    body = text_part(rendered.text, "plain")
    if rendered.html:
        body = MimePart("multipart/alternative",
                        parts=[body, text_part(rendered.html, "html")])
    if not attachments:
        return body

    files = []
    for attachment in attachments:
        maintype, _slash, subtype = attachment.content_type.partition("/")
        if not _TOKEN.match(maintype) or not _TOKEN.match(subtype):
            maintype, subtype = "application", "octet-stream"
        files.append(attachment_part(attachment.content, f"{maintype}/{subtype}".lower(),
                                     safe_filename(attachment.filename)))
    return MimePart("multipart/mixed", parts=[body, *files])


def _threading(message_id: str, in_reply_to: str | None, references: list[str] | None,
               thread_topic: str | None, thread_started: datetime | None,
               ticket: int | None) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    parent = valid_message_ids([in_reply_to] if in_reply_to else [])
    if parent:
        headers.append(("In-Reply-To", parent[0]))
    kept = valid_message_ids(references)
    if parent and parent[0] not in kept:
        kept.append(parent[0])
    if len(kept) > MAX_REFERENCES:
        kept = [kept[0], *kept[-(MAX_REFERENCES - 1):]]
    if kept:
        headers.append(("References", " ".join(kept)))
    if thread_topic:
        # Outlook groups a conversation by Thread-Topic and the Thread-Index GUID.
        headers.append(("Thread-Topic", unstructured(single_line(thread_topic))))
    if ticket is not None and thread_started is not None:
        domain = message_id.rsplit("@", 1)[-1].rstrip(">")
        headers.append(("Thread-Index", thread_index(f"{domain}/ticket/{ticket}",
                                                     thread_started)))
    return headers
