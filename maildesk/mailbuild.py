"""Build outgoing RFC 5322 messages from rendered templates.

Every value that came from an incoming mail reaches the headers only through
``single_line``, and the headers are set through EmailMessage, which folds and encodes
them (RFC 2047) and rejects CR/LF: a subject or display name cannot inject a header.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr

from maildesk.models import utcnow
from maildesk.parse import single_line
from maildesk.templating import RenderedMail


@dataclass(frozen=True)
class Recipient:
    address: str
    name: str = ""


def new_message_id(kind: str, ticket: int | None, domain: str) -> str:
    """Return a Message-ID with a random part, so nobody can guess the next one."""
    ticket_part = f"{ticket}." if ticket is not None else ""
    return f"<{kind}.{ticket_part}{secrets.token_hex(8)}@{domain}>"


def _formatted(recipient: Recipient) -> str:
    name = single_line(recipient.name)
    try:
        username, domain = recipient.address.rsplit("@", 1)
        return str(HeaderAddress(display_name=name, username=username, domain=domain))
    except (ValueError, IndexError):
        return formataddr((name, recipient.address))


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
) -> EmailMessage:
    """Assemble one outgoing mail with the threading and loop-protection headers."""
    message = EmailMessage(policy=SMTP)
    message["From"] = _formatted(sender)
    message["To"] = ", ".join(_formatted(r) for r in to)
    if cc:
        message["Cc"] = ", ".join(_formatted(r) for r in cc)
    message["Subject"] = single_line(rendered.subject)
    message["Date"] = format_datetime(utcnow().replace(tzinfo=UTC))
    message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
    if references:
        # Outlook and Gmail thread on the last few ids; keep the first and the last ten.
        kept = references if len(references) <= 11 else [references[0], *references[-10:]]
        message["References"] = " ".join(kept)
    if reply_to:
        message["Reply-To"] = reply_to
    if automatic:
        # RFC 3834: tells well-behaved responders not to answer; Exchange reads the other.
        message["Auto-Submitted"] = "auto-replied"
        message["X-Auto-Response-Suppress"] = "All"
    if ticket is not None:
        message["X-Maildesk-Ticket"] = str(ticket)
    message["Content-Language"] = rendered.language
    message.set_content(rendered.text, charset="utf-8", cte="quoted-printable")
    if rendered.html:
        message.add_alternative(rendered.html, subtype="html", charset="utf-8",
                                cte="quoted-printable")
    return message
