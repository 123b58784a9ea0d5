"""Which mail to send when, rendered into outbox rows inside the caller's transaction.

Nothing here talks to an SMTP server: rows are delivered after commit by
``maildesk.outbox``. The guards against mail loops live here, because every automatic
mail passes through ``queue_mail``: no mail to our own addresses, to addresses that
bounced, or beyond the hourly limit of automatic mail per address.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from maildesk import models
from maildesk.desk import Desk
from maildesk.i18n import _
from maildesk.mailbuild import Recipient, build_message, new_message_id
from maildesk.models import utcnow

logger = logging.getLogger(__name__)

SAMPLE_TICKET_NUMBER = 1234


@dataclass(frozen=True)
class QueuedMail:
    outbox_id: int
    message_id: str
    recipients: tuple[str, ...]


def ticket_context(desk: Desk, ticket: models.Ticket) -> dict[str, Any]:
    """The plain values a template may use about a ticket (no model objects)."""
    requester = ticket.requester
    return {
        "number": ticket.id,
        "tag": desk.tag(ticket.id),
        "subject": ticket.subject,
        "status": ticket.status,
        "type": ticket.type,
        "priority": ticket.priority,
        "impact": ticket.impact,
        "urgency": ticket.urgency,
        "group": ticket.group,
        "assignee": ticket.assignee,
        "category": ticket.category,
        "created_at": ticket.created_at,
        "requester_name": requester.name,
        "requester_address": requester.address,
    }


def desk_context(desk: Desk) -> dict[str, Any]:
    return {"name": desk.config.desk.name, "address": desk.config.desk.address}


def sample_context(desk: Desk) -> dict[str, Any]:
    """A complete sample for checking templates without a database."""
    now = utcnow()
    ticket = {
        "number": SAMPLE_TICKET_NUMBER, "tag": desk.tag(SAMPLE_TICKET_NUMBER),
        "subject": "Drukarka na 2. piętrze nie drukuje", "status": "new", "type": "incident",
        "priority": 3, "impact": "medium", "urgency": "medium", "group": "pierwsza-linia",
        "assignee": None, "category": None, "created_at": now,
        "requester_name": "Zofia Wiśniewska", "requester_address": "zofia@example.org",
    }
    quarantine = {
        "id": 7, "sender": "jan@example.org", "subject": "Faktura", "message_id": "<x@y>",
        "source": "imap:INBOX/42", "error": "ParseError: empty message",
    }
    from maildesk.conversation import sample_values

    return {"desk": desk_context(desk), "ticket": ticket, "linked_ticket": None,
            "quarantine": quarantine, **sample_values()}


def _recently_sent_automatic(address: str, since_minutes: int = 60) -> int:
    since = utcnow() - timedelta(minutes=since_minutes)
    return (
        models.Outbox.select()
        .where(
            models.Outbox.automatic == True,  # noqa: E712 (peewee expression)
            models.Outbox.recipients.contains(f" {address} "),
            models.Outbox.created_at >= since,
        )
        .count()
    )


def allowed_recipients(desk: Desk, addresses: list[str], automatic: bool,
                       ticket: models.Ticket | None) -> list[str]:
    """Drop our own addresses, bounced addresses and, for automatic mail, the over-limit ones."""
    allowed = []
    for address in addresses:
        address = address.strip().lower()
        if not address or address in desk.own_addresses or address in allowed:
            continue
        contact = models.Contact.get_or_none(models.Contact.address == address)
        if contact is not None and contact.bounced_at is not None:
            logger.info(_("not writing to {address}: it bounced earlier").format(address=address))
            continue
        if automatic and _recently_sent_automatic(address) >= desk.config.desk.automatic_mail_limit:
            logger.warning(
                _("automatic mail limit reached for {address} (ticket {ticket}): "
                  "no more automatic mail to it this hour").format(
                    address=address, ticket=ticket.id if ticket else "-")
            )
            models.Event.create(
                ticket=ticket, actor="maildesk", action="automatic_mail_limited",
                detail=json.dumps({"address": address}),
            )
            continue
        allowed.append(address)
    return allowed


def queue_mail(
    desk: Desk,
    *,
    template: str,
    language: str | None,
    context: dict[str, Any],
    to: list[Recipient],
    cc: list[Recipient] | None = None,
    ticket: models.Ticket | None,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    automatic: bool = True,
    kind: str | None = None,
    sender_name: str | None = None,
) -> QueuedMail | None:
    """Render a template and write it to the outbox; return None when nobody may get it.

    Must run inside the transaction of the change that causes the mail.
    """
    allowed_to = allowed_recipients(desk, [r.address for r in to], automatic, ticket)
    allowed_cc = allowed_recipients(
        desk, [r.address for r in cc or [] if r.address.lower() not in allowed_to],
        automatic, ticket,
    )
    if not allowed_to:
        return None
    to = [r for r in to if r.address.lower() in allowed_to]
    cc = [r for r in cc or [] if r.address.lower() in allowed_cc]

    rendered = desk.templates.render(template, language, {"desk": desk_context(desk), **context})
    message_id = new_message_id(kind or template, ticket.id if ticket else None,
                                desk.message_id_domain)
    message = build_message(
        rendered,
        sender=Recipient(desk.config.desk.address, sender_name or desk.config.desk.name),
        to=to,
        cc=cc,
        message_id=message_id,
        in_reply_to=in_reply_to,
        references=references,
        reply_to=desk.config.desk.address,
        automatic=automatic,
        ticket=ticket.id if ticket else None,
    )
    recipients = [r.address.lower() for r in to] + [r.address.lower() for r in cc]
    row = models.Outbox.create(
        ticket=ticket,
        kind=kind or template,
        message_id=message_id,
        sender=desk.config.desk.address,
        recipients=" " + " ".join(recipients) + " ",
        subject=rendered.subject,
        automatic=automatic,
        raw=message.as_bytes(),
    )
    if ticket is not None:
        models.MessageReference.create(
            message_id=message_id, ticket=ticket, direction="out",
            kind=kind or template, recipients=" ".join(recipients),
        )
    logger.debug("queued %s for ticket %s as %s", template, ticket.id if ticket else "-",
                 message_id)
    return QueuedMail(row.id, message_id, tuple(recipients))
