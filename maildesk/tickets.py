"""Apply a Decision: every change caused by one mail happens in ONE transaction.

The ticket, the message entry, its attachments, the Message-ID references, the audit
events, the outbox rows and the processed-message record commit together or not at all.
So a crash leaves either no trace (the mail is fetched again) or a finished ticket whose
source mail is skipped as a duplicate next time.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import peewee as pw

from maildesk import bounces, models, statements
from maildesk.conversation import acted_on_recipients
from maildesk.decision import Action, Decision
from maildesk.desk import Desk
from maildesk.errors import TemporaryError
from maildesk.followup import SenderRole
from maildesk.i18n import N_, _, normalize_language
from maildesk.logcontext import mail_context_values
from maildesk.mailbuild import Recipient
from maildesk.models import database_proxy, to_utc, utcnow
from maildesk.notify import (
    QueuedMail,
    alert_on_loop_events,
    notify_new_ticket,
    queue_mail,
    ticket_context,
)
from maildesk.parse import Address, clean_text
from maildesk.reasons import Reason, detail_fields, outcome_text

if TYPE_CHECKING:
    from maildesk.servicehooks import NewTicketPlan

logger = logging.getLogger(__name__)

MAX_NEW_PARTICIPANTS = 20
# Maximum participants of one ticket. Once it is reached, Cc adds no one.
MAX_PARTICIPANTS = 50


@dataclass(frozen=True)
class Outcome:
    """The result of processing one incoming mail."""

    action: str
    ticket: int | None = None
    reason: str = ""
    queued: tuple[QueuedMail, ...] = field(default=())
    # A duplicate of a mail quarantined earlier, which belongs in the source's quarantine
    # folder too: the process that quarantined it may have died before moving it.
    in_quarantine: bool = False


def upsert_contact(address: Address, language: str | None = None) -> models.Contact:
    """Return the contact for an address, creating it or filling in a missing name.

    ``language`` is stored only for a new contact.
    """
    normalized = address.normalized
    contact = statements.first(models.Contact, address=normalized)
    if contact is None:
        # Another process may create the same contact first: then its row is read.
        created = statements.insert_unless_taken(models.Contact, address=normalized,
                                                 name=address.name[:200], language=language)
        if created is not None:
            return created
        contact = models.Contact.get(models.Contact.address == normalized)
    if not contact.name and address.name:
        # Only the name: a bounce another process records meanwhile must stay.
        contact.name = address.name[:200]
        statements.update(models.Contact, contact.id, name=contact.name)
    return contact


def record_event(ticket: models.Ticket | int | None, actor: str, action: str,
                 detail: dict[str, Any] | None = None, before: Any = None,
                 after: Any = None) -> None:
    if detail and isinstance(detail.get("reason"), Reason):
        # Stored with its msgid too, so the history shows it in the reader's language.
        detail = {**detail, **detail_fields(detail["reason"])}
    statements.insert_later(
        models.Event,
        ticket=ticket,
        actor=actor,
        action=action,
        detail=json.dumps(detail, ensure_ascii=False, default=str) if detail else None,
        before=json.dumps(before, ensure_ascii=False, default=str) if before is not None else None,
        after=json.dumps(after, ensure_ascii=False, default=str) if after is not None else None,
    )


def _store_mail(desk: Desk, decision: Decision) -> list[str]:
    """Store the raw mail and, unless it is ignored, its attachments. Return their hashes.

    Runs inside the transaction of ``apply``: small content is a row that commits with
    the ticket, and content addressing makes storing again after a crash harmless.
    Raises TemporaryError when the disk is full or unwritable, so the mail stays at its
    source and is tried again.
    """
    desk.store.put_message(decision.raw)
    if decision.action is Action.IGNORE:
        return []
    try:
        return [desk.store.put("attachments", part.content)
                for part in decision.message.attachments]
    except OSError as error:
        raise TemporaryError(_("cannot store the attachments of {message_id}: {error}").format(
            message_id=decision.message.message_id or decision.raw_sha256,
            error=error)) from error


def _clip(value: str | None, length: int) -> str | None:
    """Cut a value from a mail to its column's length (the raw mail keeps the original)."""
    return value[:length] if value is not None else None


def _add_entry(decision: Decision, ticket: models.Ticket, hashes: list[str]) -> models.Message:
    message = decision.message
    sender = message.from_address
    entry = statements.insert(
        models.Message,
        ticket=ticket,
        direction="in",
        kind=decision.entry_kind,
        message_id=_clip(message.message_id, 998),
        author=sender.normalized if sender else "",
        author_name=(sender.name if sender else "")[:200],
        subject=message.subject,
        text=message.text,
        reply_text=message.reply_text,
        html=message.html,
        headers=json.dumps(message.headers, ensure_ascii=False),
        raw_sha256=decision.raw_sha256,
        sent_date=to_utc(message.date) if message.date else None,
    )
    for part, sha256 in zip(message.attachments, hashes, strict=True):
        statements.insert(
            models.Attachment, message=entry, filename=_clip(part.filename, 255),
            content_type=_clip(clean_text(part.content_type), 255) or "application/octet-stream",
            size=part.size, sha256=sha256, content_id=_clip(part.content_id, 998),
            inline=part.inline,
        )
    if message.message_id and len(message.message_id) <= 998 and _records_reference(decision):
        # A reference from a recipient is strong evidence, so an unsigned Cc of an
        # agent's mail must not make its reader one.
        recipients = {a.normalized for a in acted_on_recipients(decision)}
        if sender:
            recipients.add(sender.normalized)
        statements.insert_later(
            models.MessageReference, message_id=message.message_id, ticket=ticket, direction="in",
            kind=decision.entry_kind, recipients=" ".join(sorted(recipients)),
            trusted=_proves_its_place(decision, ticket),
        )
    return entry


def _records_reference(decision: Decision) -> bool:
    """Tell whether the mail's Message-ID becomes a thread reference of its ticket.

    A held mail's must not become threading evidence for its sender. Nor may that of
    an agent's automatic reply, such as a list's copy of the agent's mail, because the
    agent's own copy may follow under the same Message-ID. A reply must then find the
    kind of the agent's mail, so that a reply to an internal note stays internal.
    """
    if decision.entry_kind == "held":
        return False
    return not (decision.follow_up.sender_role is SenderRole.AGENT
                and decision.entry_kind == "auto_reply")


def _proves_its_place(decision: Decision, ticket: models.Ticket) -> bool:
    """Tell whether a mail showed more than its From that it belongs to ``ticket``.

    Only then may a later mail that replies to it count as strong evidence. A mail that
    joined by its tag alone may be forged, with a Message-ID, To and Cc of the
    forger's choosing.
    """
    if decision.action is Action.CREATE:
        # The mail that made the ticket: replying to it gives its writer nothing that
        # its own Cc could not.
        return True
    if decision.follow_up.proves(ticket):
        return True
    # Set only after the agent passed authentication: a refused agent mail is "held".
    return decision.entry_kind in ("agent_reply", "internal_note")


def _add_participants(desk: Desk, decision: Decision, ticket: models.Ticket) -> None:
    """Make the people in Cc (and extra To addresses) participants of the ticket.

    A follow-up adds people only when it replies to a trusted mail of the conversation
    (In-Reply-To or References). Its From address is not authenticated and ticket tags
    are easy to guess, so a mail that joins a ticket by its tag alone, or by replying
    to such a mail, may be forged to add the forger, who would then receive every reply.
    """
    from maildesk.conversation import cc_become_participants, note_address

    if not cc_become_participants(desk):
        return
    if decision.action is Action.APPEND and not decision.follow_up.proves(ticket):
        return
    sender = decision.sender
    added = 0
    # Counted only when a mail names someone to add. A new ticket has no participants yet.
    present = 0 if decision.action is Action.CREATE else None
    for address in acted_on_recipients(decision):
        normalized = address.normalized
        if normalized in desk.own_addresses or normalized == sender:
            continue
        if normalized == note_address(desk):
            continue
        if normalized == ticket.requester.address or normalized in desk.agent_addresses:
            continue
        message_id = decision.message.message_id
        if added >= MAX_NEW_PARTICIPANTS:
            # A mail Cc'd to thousands must not turn every later reply into a mass mailing.
            _participants_limited(ticket, message_id, Reason(
                N_("only {limit} new participants per mail"), limit=MAX_NEW_PARTICIPANTS),
                _("ticket {ticket}: only the first {limit} addresses in To and Cc of "
                  "{message_id} became participants"), MAX_NEW_PARTICIPANTS)
            return
        if present is None:
            present = models.Participant.select().where(
                models.Participant.ticket == ticket).count()
        if present + added >= MAX_PARTICIPANTS:
            # Many mails of a few new people each must not grow the list without end.
            _participants_limited(ticket, message_id, Reason(
                N_("at most {limit} participants per ticket"), limit=MAX_PARTICIPANTS),
                _("ticket {ticket}: reached {limit} participants, so the rest of To and Cc "
                  "of {message_id} were not added"), MAX_PARTICIPANTS)
            return
        contact = upsert_contact(address)
        _participant, created = models.Participant.get_or_create(ticket=ticket, contact=contact)
        added += int(created)


def _participants_limited(ticket: models.Ticket, message_id: str | None, reason: Reason,
                          warning: str, limit: int) -> None:
    """Record and log that the addresses of a mail stopped becoming participants."""
    record_event(ticket, "maildesk", "participants_limited",
                 {"reason": reason, "message_id": message_id})
    logger.warning(warning.format(ticket=ticket.id, limit=limit, message_id=message_id or "-"))


def _create_ticket(desk: Desk, decision: Decision,
                   contact: models.Contact) -> tuple[models.Ticket, NewTicketPlan]:
    """Insert the ticket with its priority and SLA due times already set."""
    from maildesk import servicehooks  # imports this module

    routing = decision.routing
    values: dict[str, Any] = {
        "subject": decision.subject,
        "requester": contact,
        "language": decision.language or desk.config.language,
        "linked_ticket": decision.linked_ticket,
    }
    if routing is not None:
        for name in ("group", "assignee", "type", "category", "impact", "urgency"):
            value = getattr(routing, name)
            if value is not None:
                values[name] = value
        if routing.tags:
            values["tags"] = " ".join(routing.tags)
    if values.get("assignee"):
        values["status"] = "assigned"

    ticket = models.Ticket(**values)
    plan = servicehooks.prepare_new_ticket(desk, decision, ticket)
    ticket = statements.insert_instance(ticket)
    if contact.language is None and decision.language:
        contact.language = decision.language
        statements.update(models.Contact, contact.id, language=contact.language)
    return ticket, plan


def _clear_bounce_mark(decision: Decision, ticket: models.Ticket,
                       contact: models.Contact | None = None) -> None:
    """Clear the sender's bounce mark, because a person's mail reached a ticket from there.

    ``contact`` is the sender's, when the caller has read it. The From address is not
    authenticated, so a forger can clear a mark too. That costs one more mail to a dead
    address, and the bounce of a mail to it alone sets the mark again.
    """
    if contact is None:
        contact = statements.first(models.Contact, address=decision.sender)
    if contact is not None:
        bounces.clear_mark(contact, actor=decision.sender, ticket=ticket.id,
                           message_id=decision.message.message_id,
                           marked_before=decision.decided_at)


def _acknowledge(desk: Desk, decision: Decision, ticket: models.Ticket) -> QueuedMail | None:
    # NOTE: the acknowledgement repeats the subject even when the receiving server's
    # Authentication-Results report dmarc=fail for the From domain, so a forged sender
    # still carries its subject to the address it named, within the limits of notify.
    message = decision.message
    requester = ticket.requester
    context = {
        "ticket": ticket_context(desk, ticket),
        "linked_ticket": {"number": decision.linked_ticket.id} if decision.linked_ticket else None,
    }
    references = [*message.references]
    if message.message_id:
        references.append(message.message_id)
    return queue_mail(
        desk,
        template=decision.acknowledgement_template,
        language=ticket.language,
        context=context,
        to=[Recipient(requester.address, requester.name)],
        ticket=ticket,
        in_reply_to=message.message_id,
        references=references,
        automatic=True,
        kind="ack",
        fresh_contacts=[requester],  # read or created by upsert_contact in this transaction
    )


def apply(desk: Desk, decision: Decision) -> Outcome:
    """Carry out a decision in one transaction and return the outcome.

    Raises peewee.IntegrityError when another process recorded the same mail first.
    """
    from maildesk import servicehooks  # imports this module

    queued: list[QueuedMail] = []

    with database_proxy.atomic():
        hashes = _store_mail(desk, decision)
        ticket = decision.ticket
        if decision.action is Action.CREATE:
            assert decision.message.from_address is not None
            contact = upsert_contact(decision.message.from_address, decision.language)
            stored_language = normalize_language(contact.language)
            if stored_language:
                # The requester's language, set by an admin or learned from an earlier
                # mail, comes before the rules' choice and the guess from this mail.
                decision.language = stored_language
            ticket, plan = _create_ticket(desk, decision, contact)
            routing = decision.routing.to_json() if decision.routing is not None else None
            record_event(ticket, decision.sender, "created", {
                "reason": decision.reason,
                "classification": decision.classification.kind.value,
                "routing": routing,
                "linked_ticket": decision.linked_ticket.id if decision.linked_ticket else None,
            })
            _clear_bounce_mark(decision, ticket, contact)
            entry = _add_entry(decision, ticket, hashes)
            _add_participants(desk, decision, ticket)
            queued.extend(servicehooks.on_ticket_created(desk, decision, ticket, plan))
            if decision.acknowledge:
                mail = _acknowledge(desk, decision, ticket)
                if mail is not None:
                    queued.append(mail)
            queued.extend(notify_new_ticket(desk, decision, ticket, entry))

        elif decision.action is Action.APPEND:
            assert ticket is not None
            entry = _add_entry(decision, ticket, hashes)
            record_event(ticket, decision.sender, "message_added", {
                "kind": decision.entry_kind,
                "evidence": decision.follow_up.evidence.value,
                "message_id": decision.message.message_id,
            })
            if decision.entry_kind not in ("auto_reply", "held"):
                _clear_bounce_mark(decision, ticket)
            if decision.entry_kind == "customer":
                _add_participants(desk, decision, ticket)
            models.Ticket.update(updated_at=utcnow()).where(
                models.Ticket.id == ticket.id).execute()
            # A user's reply ends a wait or reopens the ticket first, so the notice to the
            # agents shows the status it leads to; an agent's commands run before the hooks.
            customer = decision.entry_kind == "customer"
            if customer:
                queued.extend(servicehooks.on_message_added(desk, decision, ticket))
            if decision.conversation is not None:
                from maildesk.conversation import carry_out

                queued.extend(carry_out(desk, decision, ticket, entry))
            if not customer:
                queued.extend(servicehooks.on_message_added(desk, decision, ticket))
            if decision.routing is not None:
                from maildesk.rerouting import apply_routing

                queued.extend(apply_routing(desk, ticket, decision.routing,
                                            datetime.now(UTC), decision.message.message_id))

        for event_ticket, action, detail in decision.events:
            if action == "follow_up_ticket_opened" and ticket is not None:
                # The closed ticket's history names the ticket that continues it.
                detail = {**detail, "follow_up": ticket.id}
            record_event(event_ticket, decision.sender or "maildesk", action, detail)
        if decision.action is Action.IGNORE:
            record_event(None, decision.sender or "maildesk", "ignored", {
                "reason": decision.reason, "message_id": decision.message.message_id,
                "source": decision.source,
            })
            bounces.record_from_decision(decision, desk.own_addresses | desk.configured_addresses)
            if decision.rejection is not None:
                from maildesk.notify import queue_rejection

                mail = queue_rejection(desk, decision.message, template=decision.rejection,
                                       rejection={"reason": Reason(N_("the sender is blocked"))})
                if mail is not None:
                    queued.append(mail)
        queued.extend(alert_on_loop_events(desk, decision))

        statements.insert_later(
            models.ProcessedMessage,
            dedupe_key=decision.dedupe_key,
            raw_sha256=decision.raw_sha256,
            source=decision.source[:200],
            outcome=decision.action.value,
            ticket=ticket,
        )

    outcome = Outcome(decision.action.value, ticket.id if ticket else None, decision.reason,
                      tuple(queued))
    text = outcome_text(outcome.action, outcome.ticket, decision.reason)
    message_id = decision.message.message_id or decision.dedupe_key
    if mail_context_values().get("message_id") != message_id:
        # The record's context names the mail already when the pipeline set it.
        text = _("{message_id}: {outcome}").format(message_id=message_id, outcome=text)
    logging.getLogger("maildesk.decision").info(text)
    return outcome


def is_duplicate(dedupe_key: str) -> bool:
    return statements.exists(models.ProcessedMessage, dedupe_key=dedupe_key)


__all__ = ["Outcome", "apply", "is_duplicate", "record_event", "upsert_contact", "pw"]
