"""Read delivery status notifications (RFC 3464) and stop writing to addresses that bounced.

A bounce with a permanent failure of the address (``Action: failed`` and a status such
as 5.1.1 that ``outbox.is_address_failure`` accepts) marks the contact as bounced, so
``notify.queue_mail`` skips it from then on, replies of agents included. Delays (4.x.x),
a full mailbox and policy refusals are logged only. One failure of the address sets the
mark, because an unknown user, a disabled mailbox or a domain without a route does not
heal by itself.

Bounces are easy to forge, so a report counts only for an address that the returned mail
was sent to, and to no one else. The bounce must name a Message-ID of a mail maildesk
sent (in its returned headers, its threading headers or a copy of the headers in its
text). Those Message-IDs are random, so only the servers that carried the mail and its
recipients know them. When a mail went to several addresses, each recipient can forge a
report about the others, so such reports are ignored. So are reports about a mail whose
Message-ID a later mail of the ticket showed to others in In-Reply-To or References: the
desk's mail to the requester and the participants names the acknowledgement that went
to the requester alone (``shown_to_others``). The envelope sender proves nothing either,
because maildesk sends every mail from the desk address, and every recipient finds that
address in Return-Path.

NOTE: a dead address that gets mail only together with others (a participant in Cc) is
therefore never marked by a DSN. The desk's SMTP server marks it when it refuses the
recipient (``outbox``), and otherwise each mail to it costs one ignored bounce.
Per-recipient envelope senders (VERP) would prove who bounced, but they need one SMTP
transaction per recipient and an MTA that delivers ``desk+token@`` to the desk's mailbox.

The mark does not expire, because mail to a dead address would only bounce again. A
person's mail from the address that reaches a ticket clears it (``tickets.apply`` calls
``clear_mark``), and so does ``maildesk contacts clear-bounce``.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import compat32

from maildesk import models, statements
from maildesk.addresses import parse_address_header
from maildesk.classify import MailKind
from maildesk.i18n import _
from maildesk.outbox import is_address_failure, record_bounce
from maildesk.parse import ParsedMessage, parse_message_ids

logger = logging.getLogger(__name__)

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_ADDRESS = re.compile(r"<?([^<>\s;]+@[^<>\s;]+?)>?$")
# One returned mail has one Message-ID, so a text quoting more is read only this far.
MAX_QUOTED_MESSAGE_IDS = 10
_QUOTED_MESSAGE_ID = re.compile(r"^[ \t>]*Message-ID:[ \t]*(<[^<>\s]+>)",
                                re.IGNORECASE | re.MULTILINE)
_STATUS_TYPES = ("message/delivery-status", "message/global-delivery-status")
_RETURNED_TYPES = ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers",
                   "message/global", "message/global-headers")


@dataclass(frozen=True)
class RecipientReport:
    """One per-recipient block of a delivery status notification."""

    address: str
    action: str
    status: str
    diagnostic: str = ""

    @property
    def permanent(self) -> bool:
        return self.action == "failed" and self.status.startswith("5")

    @property
    def reason(self) -> str:
        return f"{self.status} {self.diagnostic}".strip()


def _fields(block: str) -> dict[str, str]:
    """Parse one block of ``Name: value`` lines, joining folded continuation lines."""
    fields: dict[str, str] = {}
    name = None
    for line in block.splitlines():
        if line[:1] in (" ", "\t") and name:
            fields[name] += " " + line.strip()
            continue
        key, separator, value = line.partition(":")
        if not separator:
            continue
        name = key.strip().lower()
        fields[name] = value.strip()
    return fields


def _address(value: str) -> str:
    """Return the address of ``rfc822; user@example.org`` (the type prefix is optional)."""
    value = value.split(";", 1)[-1].strip()
    match = _ADDRESS.match(value)
    return match.group(1).lower() if match else ""


def parse_delivery_status(content: bytes) -> list[RecipientReport]:
    """Read the per-recipient blocks of a ``message/delivery-status`` part."""
    text = content.decode("utf-8", "replace").replace("\r\n", "\n")
    blocks = [block for block in re.split(r"\n[ \t]*\n", text) if block.strip()]
    reports = []
    # The first block is about the whole message and has no Final-Recipient.
    for block in blocks:
        fields = _fields(block)
        address = _address(fields.get("final-recipient") or fields.get("original-recipient", ""))
        if not address:
            continue
        status_match = _STATUS.search(fields.get("status", ""))
        status = ".".join(status_match.groups()) if status_match else ""
        action = fields.get("action", "").split()[0].lower() if fields.get("action") else ""
        reports.append(RecipientReport(address, action, status,
                                       fields.get("diagnostic-code", "")[:500]))
    return reports


def recipient_reports(message: ParsedMessage) -> list[RecipientReport]:
    """Return every recipient report of a bounce: DSN parts, else X-Failed-Recipients."""
    reports: list[RecipientReport] = []
    for part in message.attachments:
        if part.content_type.lower() in _STATUS_TYPES:
            reports.extend(parse_delivery_status(part.content))
    if reports:
        return reports

    # Exim names permanently failed recipients in a header of a plain-text bounce.
    for value in message.header_all("X-Failed-Recipients"):
        for address in value.split(","):
            address = _address(address.strip())
            if address:
                reports.append(RecipientReport(address, "failed", "5.0.0",
                                               "X-Failed-Recipients"))
    return reports


def returned_message_ids(message: ParsedMessage) -> list[str]:
    """Return the Message-IDs of the bounced mail: returned headers, then threading headers."""
    ids: list[str] = []
    for part in message.attachments:
        if part.content_type.lower() not in _RETURNED_TYPES:
            continue
        # compat32 keeps the header as text: the default policy's structured parse
        # recurses too deep on a returned Message-ID of a thousand "(".
        headers = BytesHeaderParser(policy=compat32).parsebytes(part.content)
        ids.extend(parse_message_ids(str(headers.get("Message-ID", "") or "")))
    ids.extend(message.in_reply_to)
    ids.extend(message.references)
    # A plain bounce (Gmail's, for one) quotes the returned mail's headers in its text.
    quoted = _QUOTED_MESSAGE_ID.finditer(message.text)
    ids.extend(match.group(1) for match in itertools.islice(quoted, MAX_QUOTED_MESSAGE_IDS))
    return list(dict.fromkeys(ids))


def _returned_to(returned: list[models.Outbox], address: str) -> list[models.Outbox]:
    """Return the returned mails that maildesk sent to ``address``, newest first."""
    return [row for row in sorted(returned, key=lambda row: row.id, reverse=True)
            if f" {address} " in row.recipients]


def record_bounces(message: ParsedMessage, staff: frozenset[str] = frozenset()) -> list[str]:
    """Mark the permanently failed recipients of a bounce we caused; return their addresses.

    ``staff`` are the addresses trusted not to forge a report: the desk's own and those
    that maildesk.yaml names. Runs inside the transaction that records the incoming mail.
    """
    reports = recipient_reports(message)
    if not reports:
        return []

    # A bounce that names no mail of ours proves nothing, because anyone can write one.
    returned_ids = returned_message_ids(message)
    returned = list(models.Outbox.select().where(
        models.Outbox.message_id.in_(returned_ids))) if returned_ids else []
    if not returned:
        logger.info(_("bounce {message_id} is about mail maildesk did not send; ignored").format(
            message_id=message.message_id or "-"))
        return []

    recorded = []
    for report in reports:
        if not report.permanent:
            logger.info(_("delivery to {address} delayed ({status}); still trying").format(
                address=report.address, status=report.status or report.action))
            continue
        if not is_address_failure(550, report.status):
            logger.info(_("{address} refused a mail ({status}) for a reason other than the "
                          "address; still writing to it").format(address=report.address,
                                                                  status=report.status))
            continue
        sent_to = _returned_to(returned, report.address)
        if not sent_to:
            # Knowing the Message-ID of one's own mail must not silence another address.
            logger.warning(_("bounce {message_id} reports {address}, but the mail it returns "
                             "was not sent to that address; ignored").format(
                message_id=message.message_id or "-", address=report.address))
            continue
        alone = [row for row in sent_to if row.recipients.split() == [report.address]]
        if not alone:
            # Every recipient of a mail to several addresses has its Message-ID.
            logger.warning(_("bounce {message_id} reports {address}, but the mail it returns "
                             "({returned}) also went to other addresses, whose readers could "
                             "have written the report; ignored").format(
                message_id=message.message_id or "-", address=report.address,
                returned=sent_to[0].message_id))
            continue
        exposures = [(row, shown_to_others(row, report.address, staff)) for row in alone]
        row = next((row for row, exposure in exposures if exposure is None), None)
        if row is None:
            exposed, exposure = exposures[0]
            logger.warning(_("bounce {message_id} reports {address}, but the Message-ID of the "
                             "mail it returns ({returned}) was in the threading headers of "
                             "{exposure}, which others received and could have written the "
                             "report from; ignored").format(
                message_id=message.message_id or "-", address=report.address,
                returned=exposed.message_id, exposure=exposure))
            continue
        record_bounce(report.address, report.reason)
        models.Event.create(
            ticket=row.ticket_id, actor="maildesk", action="bounce_recorded",
            detail=json.dumps({"address": report.address, "status": report.status,
                               "reason": report.diagnostic,
                               "message_id": message.message_id}, ensure_ascii=False),
        )
        recorded.append(report.address)
    return recorded


def record_from_decision(decision: object, staff: frozenset[str] = frozenset()) -> list[str]:
    """Hook for ``tickets.apply``: record the bounces of a mail classified as a bounce."""
    classification = getattr(decision, "classification", None)
    if classification is None or classification.kind is not MailKind.BOUNCE:
        return []
    return record_bounces(decision.message, staff)  # type: ignore[attr-defined]


def shown_to_others(row: models.Outbox, address: str, staff: frozenset[str]) -> str | None:
    """Return the Message-ID of a later mail of the ticket that showed ``row``'s to others.

    ``row`` went to ``address`` alone, but the desk's later mail to the requester and
    the participants names it in References, and so may a user's reply with others in
    Cc. Each of their readers could forge a report about ``address`` from it. Only
    readers outside ``staff`` count. Returns None while only ``address`` and ``staff``
    have seen the Message-ID, and for a mail of no ticket.
    """
    if row.ticket_id is None:
        return None  # a rejection, which no later mail names
    returned_id = row.message_id
    trusted = staff | {address}

    later = (models.Outbox.select(models.Outbox.message_id, models.Outbox.recipients,
                                  models.Outbox.raw)
             .where(models.Outbox.ticket == row.ticket_id, models.Outbox.id > row.id)
             .order_by(models.Outbox.id))
    for other in later:
        head = bytes(other.raw).split(b"\r\n\r\n", 1)[0]
        readers = set(other.recipients.split())
        if returned_id.encode("utf-8", "replace") in head and readers - trusted:
            return str(other.message_id)

    incoming = (models.Message.select(models.Message.message_id, models.Message.author,
                                      models.Message.headers)
                .where(models.Message.ticket == row.ticket_id, models.Message.direction == "in",
                       models.Message.created_at >= row.created_at)
                .order_by(models.Message.id))
    for entry in incoming:
        threading, readers = _threading_and_readers(entry.headers)
        readers.add(entry.author)
        if returned_id in threading and readers - trusted:
            return str(entry.message_id or _("(no Message-ID)"))
    return None


def _threading_and_readers(headers_json: str) -> tuple[str, set[str]]:
    """Return the In-Reply-To and References text and the To and Cc addresses of a stored mail."""
    try:
        headers = json.loads(headers_json)
    except ValueError:
        return "", set()
    threading: list[str] = []
    readers: set[str] = set()
    for name, value in headers:
        name = str(name).lower()
        if name in ("in-reply-to", "references"):
            threading.append(str(value))
        elif name in ("to", "cc"):
            readers.update(address.lower() for _name, address
                           in parse_address_header(str(value), "utf-8"))
    return " ".join(threading), readers


def clear_mark(contact: models.Contact, *, actor: str, ticket: int | None = None,
               message_id: str | None = None, marked_before: datetime | None = None) -> bool:
    """Clear a contact's bounce mark, log it and record an event. Return False without a mark.

    With ``marked_before``, a mark recorded at that time or later stays. Another process
    may record a bounce while a mail is processed, and that bounce is newer than the mail.
    """
    if contact.bounced_at is None:
        return False

    query = models.Contact.update(bounced_at=None, bounce_reason=None).where(
        models.Contact.id == contact.id, models.Contact.bounced_at.is_null(False))
    if marked_before is not None:
        query = query.where(models.Contact.bounced_at < marked_before)
    if not query.execute():
        return False

    statements.insert_later(
        models.Event, ticket=ticket, actor=actor, action="bounce_cleared",
        detail=json.dumps({"address": contact.address, "bounce_reason": contact.bounce_reason,
                           "message_id": message_id}, ensure_ascii=False))
    if message_id:
        text = _("{address} is no longer marked as bounced, because mail {message_id} came "
                 "from it (ticket {ticket}); it bounced at {time} UTC: {reason}")
    else:
        text = _("{address} is no longer marked as bounced: cleared by {actor}; it bounced "
                 "at {time} UTC: {reason}")
    logger.info(text.format(
        address=contact.address, message_id=message_id, ticket=ticket or "-", actor=actor,
        time=contact.bounced_at.isoformat(sep=" ", timespec="seconds"),
        reason=contact.bounce_reason or "-"))
    contact.bounced_at = None
    contact.bounce_reason = None
    return True
