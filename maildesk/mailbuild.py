"""Build outgoing RFC 5322 messages from rendered templates.

Every value that came from an incoming mail reaches the headers only through
``single_line``. The headers are set through EmailMessage, which folds and encodes them
(RFC 2047) and rejects CR/LF. So a subject, display name or file name cannot inject a
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
from email.charset import QP, Charset
from email.header import Header
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, formataddr
from typing import Any

from maildesk.models import utcnow
from maildesk.parse import single_line
from maildesk.templating import RenderedMail

logger = logging.getLogger(__name__)

_UNSTRUCTURED = frozenset({"subject", "thread-topic"})
# ASCII words at the start of a subject that stay unencoded, at most this many characters.
_PLAIN_PREFIX_LENGTH = 40
_UTF8_Q = Charset("utf-8")
_UTF8_Q.header_encoding = QP
_SPACE_BEFORE_FOLD = re.compile(r"[ \t]+\r\n[ \t]")
_MESSAGE_ID = re.compile(r"^<[^<>\s\"]+@[^<>\s\"]+>$")
_UNSAFE_FILENAME = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")
# Outlook and Gmail thread on the last few ids; the first and the last ten are kept.
MAX_REFERENCES = 11
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


class _OutgoingPolicy(EmailPolicy):
    """The SMTP policy, but folded headers unfold to exactly the value that was set.

    Python folds a header whose first word does not fit beside the name as
    ``Subject:`` CRLF `` word``. Some clients show that as an empty subject, so the first
    continuation line is joined back: the line gets longer than 78 characters, which
    RFC 5322 allows (the hard limit is 998).
    """

    def fold(self, name: str, value: Any) -> str:
        if name.lower() in _UNSTRUCTURED and not str(value).isascii():
            return _encode_unstructured(name, str(value))
        return _join_empty_first_line(super().fold(name, value), name)

    def fold_binary(self, name: str, value: Any) -> bytes:
        if name.lower() in _UNSTRUCTURED and not str(value).isascii():
            return _encode_unstructured(name, str(value)).encode("ascii")
        folded = super().fold_binary(name, value)
        return _join_empty_first_line(folded.decode("ascii", "surrogateescape"),
                                      name).encode("ascii", "surrogateescape")


def _encode_unstructured(name: str, value: str) -> str:
    """Fold a non-ASCII Subject as leading ASCII words plus RFC 2047 encoded words.

    Python 3.11's own folder drops the space between two adjacent encoded words
    ("piętrze piętrze" comes back as "piętrzepiętrze"); email.header.Header keeps the
    spaces inside the encoded words. The ASCII words in front (the ticket tag) stay
    readable for filters that do not decode headers.
    """
    words = value.split(" ")
    head: list[str] = []
    for word in words:
        candidate = " ".join([*head, word])
        if not word.isascii() or "=?" in word or len(candidate) > _PLAIN_PREFIX_LENGTH:
            break
        head.append(word)
    rest = " ".join(words[len(head):])
    plain = " ".join(head)
    lead = f"{name}: {plain} " if plain else f"{name}: "
    encoded = Header(rest, _UTF8_Q, header_name=lead.rstrip(": "), maxlinelen=78).encode(
        linesep="\r\n")
    return f"{lead}{encoded}\r\n"


def _join_empty_first_line(folded: str, name: str) -> str:
    prefix = name + ":\r\n "
    if folded.startswith(prefix):
        folded = f"{name}: {folded[len(prefix):].lstrip(' ')}"
    # Python 3.11 may leave a space before a fold as well as after it, which unfolds to
    # two spaces ("2.  piętrze"): the continuation line's space is the separator.
    return _SPACE_BEFORE_FOLD.sub("\r\n ", folded)


OUTGOING_POLICY = _OutgoingPolicy(linesep="\r\n")


def new_message_id(kind: str, ticket: int | None, domain: str) -> str:
    """Return a Message-ID with a random part, so nobody can guess the next one."""
    ticket_part = f"{ticket}." if ticket is not None else ""
    return f"<{kind}.{ticket_part}{secrets.token_hex(8)}@{domain}>"


def valid_message_ids(ids: list[str] | tuple[str, ...] | None) -> list[str]:
    """Keep the ids that are safe to copy into a header, in order and without repeats."""
    kept: list[str] = []
    for value in ids or ():
        value = value.strip()
        if _MESSAGE_ID.match(value) and value not in kept:
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
    name = single_line(recipient.name)
    address = single_line(recipient.address)
    try:
        username, domain = address.rsplit("@", 1)
        return str(HeaderAddress(display_name=name, username=username, domain=domain))
    except (ValueError, IndexError):
        return formataddr((name, address))


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
) -> EmailMessage:
    """Assemble one outgoing mail with the threading and loop-protection headers.

    Automatic mail carries ``Auto-Submitted: auto-replied`` unless ``auto_submitted``
    names another RFC 3834 value: every responder that honours the header treats all
    values other than ``no`` alike, and some filters look for ``auto-replied`` only.
    """
    message = EmailMessage(policy=OUTGOING_POLICY)
    message["From"] = _formatted(sender)
    message["To"] = ", ".join(_formatted(r) for r in to)
    if cc:
        message["Cc"] = ", ".join(_formatted(r) for r in cc)
    message["Subject"] = single_line(rendered.subject)
    message["Date"] = format_datetime((date or utcnow()).replace(tzinfo=UTC))
    message["Message-ID"] = message_id
    _set_threading(message, in_reply_to, references, thread_topic, thread_started, ticket)
    if reply_to:
        message["Reply-To"] = single_line(reply_to)
    if automatic:
        # RFC 3834 tells well-behaved responders not to answer; Exchange reads the other.
        message["Auto-Submitted"] = auto_submitted or "auto-replied"
        message["X-Auto-Response-Suppress"] = "All"
    # Our own mail coming back through a forwarder is recognised by this (classify.py).
    message["X-Loop"] = single_line(sender.address)
    if ticket is not None:
        message["X-Maildesk-Ticket"] = str(ticket)
    message.set_content(rendered.text, charset="utf-8", cte="quoted-printable")
    if rendered.html:
        message.add_alternative(rendered.html, subtype="html", charset="utf-8",
                                cte="quoted-printable")
    for attachment in attachments or ():
        maintype, _slash, subtype = attachment.content_type.partition("/")
        if not subtype or "\n" in attachment.content_type or "\r" in attachment.content_type:
            maintype, subtype = "application", "octet-stream"
        message.add_attachment(attachment.content, maintype=maintype, subtype=subtype,
                               filename=safe_filename(attachment.filename))
    # Set last: turning the body into multipart moves every Content-* header down.
    message["Content-Language"] = rendered.language
    return message


def _set_threading(message: EmailMessage, in_reply_to: str | None,
                   references: list[str] | None, thread_topic: str | None,
                   thread_started: datetime | None, ticket: int | None) -> None:
    parent = valid_message_ids([in_reply_to] if in_reply_to else [])
    if parent:
        message["In-Reply-To"] = parent[0]
    kept = valid_message_ids(references)
    if parent and parent[0] not in kept:
        kept.append(parent[0])
    if len(kept) > MAX_REFERENCES:
        kept = [kept[0], *kept[-(MAX_REFERENCES - 1):]]
    if kept:
        message["References"] = " ".join(kept)
    if thread_topic:
        # Outlook groups a conversation by Thread-Topic and the Thread-Index GUID.
        message["Thread-Topic"] = single_line(thread_topic)
    if ticket is not None and thread_started is not None:
        domain = message["Message-ID"].rsplit("@", 1)[-1].rstrip(">")
        message["Thread-Index"] = thread_index(f"{domain}/ticket/{ticket}", thread_started)
