"""Hooks that ``tickets.apply`` calls so that service levels follow each mail.

``prepare_new_ticket`` sets the priority from the matrix and starts the SLA clock
before the ticket's row is written; ``on_ticket_created`` records both and dispatches
a ticket routed to a group with its own mailbox. ``on_message_added`` ends
a wait for the user, reopens a resolved ticket on a real reply (not a short thanks or a
rating, which it stores when the requester sent it), and records an agent's first
response. Both run inside the
transaction of ``apply`` and return the mail they queued.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from maildesk import escalation, lifecycle, models, satisfaction, slatrack, statements
from maildesk.commands import label
from maildesk.conversation import acted_on_recipients
from maildesk.desk import Desk
from maildesk.followup import SenderRole
from maildesk.i18n import N_, _, current_language
from maildesk.lifecycle import Source, Status
from maildesk.notify import QueuedMail
from maildesk.reasons import Reason
from maildesk.sla import SlaClock
from maildesk.slaconfig import service_levels
from maildesk.ticketmail import aware, group_config, strip_notice_prefix

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NewTicketPlan:
    """The priority and SLA start that ``prepare_new_ticket`` set before the INSERT."""

    at: datetime
    clock: SlaClock
    default_priority: int
    rules: list[str]
    reason: str


def prepare_new_ticket(desk: Desk, decision: Any, ticket: models.Ticket) -> NewTicketPlan:
    """Set the subject, priority and SLA columns of a ticket that is about to be inserted.

    Filling them in before the INSERT saves an UPDATE of the new row, and on SQLite the
    second write of its due-time index entries.
    """
    at = aware(ticket.created_at) or datetime.now(UTC)
    levels = service_levels(desk)
    routing = decision.routing if decision is not None else None
    if decision is not None and decision.linked_ticket is not None:
        # A reply to our notice on a closed ticket: "Zgłoszenie rozwiązane: X" becomes "X".
        ticket.subject = strip_notice_prefix(desk, ticket.subject)

    default_priority = ticket.priority
    ticket.priority = levels.matrix.priority(ticket.impact, ticket.urgency)
    rules = list(routing.matched_rules) if routing is not None else []
    reason = lifecycle.priority_reason(ticket.impact, ticket.urgency, ticket.priority)
    clock = slatrack.start(desk, ticket, at)
    return NewTicketPlan(at, clock, default_priority, rules, reason)


def on_ticket_created(desk: Desk, decision: Any, ticket: models.Ticket,
                      plan: NewTicketPlan) -> list[QueuedMail]:
    """Record the priority and the SLA start, and dispatch to a group with its own mailbox.

    ``plan`` comes from ``prepare_new_ticket`` on the same ticket before its INSERT.
    """
    at, rules = plan.at, plan.rules
    actor = decision.sender if decision is not None else "maildesk"
    slatrack.record_transitions(ticket, plan.clock, actor)

    from maildesk.tickets import record_event

    record_event(ticket, lifecycle.SYSTEM_ACTOR, "priority_set",
                 {"source": Source.RULE.value if rules else "default", "reason": plan.reason,
                  "rules": rules, "impact": ticket.impact, "urgency": ticket.urgency},
                 before=plan.default_priority, after=ticket.priority)

    group = group_config(desk, ticket.group)
    if group is not None and group.address is not None:
        reason = Reason(N_("routed by rules: {rules}"), rules=", ".join(rules) or "-")
        return escalation.dispatch(desk, ticket, group.name, lifecycle.SYSTEM_ACTOR,
                                   Source.RULE, at, reason)
    return []


def _dispatch_after_group_command(desk: Desk, decision: Any, ticket: models.Ticket,
                                  at: datetime) -> list[QueuedMail]:
    """Tell the new group (its mailbox or its agents) of a group an agent's command set.

    The commands record a ``field_changed`` event per field with the mail's Message-ID,
    and a group change found there is dispatched like one made through ``escalation``.

    NOTE: this reads the event format of ``maildesk.commands``; once the commands call
    ``escalation.move_to_group`` this lookup finds nothing to do and can go.
    """
    message_id = decision.message.message_id
    if not message_id:
        return []
    changed = (models.Event.select()
               .where(models.Event.ticket == ticket, models.Event.action == "field_changed")
               .order_by(models.Event.id.desc()))
    for event in changed:
        detail = json.loads(event.detail) if event.detail else {}
        if detail.get("message_id") != message_id:
            break
        if detail.get("field") == "group" and ticket.group:
            reason = detail.get("reason")
            return escalation.dispatch(desk, ticket, ticket.group, event.actor,
                                       Source.AGENT_COMMAND, at, reason)
    return []


_TEAM_MAILBOX = statements.Prepared(
    lambda ticket_id, address, role: models.Participant.select(models.Participant.id)
    .join(models.Contact)
    .where(models.Participant.ticket == ticket_id, models.Contact.address == address,
           models.Participant.role == role)
    .limit(1))


def _is_team_mailbox(ticket: models.Ticket, sender: str) -> bool:
    return bool(_TEAM_MAILBOX.rows(ticket.id, sender, escalation.DISPATCH_ROLE))


def on_message_added(desk: Desk, decision: Any, ticket: models.Ticket,
                     at: datetime | None = None) -> list[QueuedMail]:
    """Follow one appended mail: first response, end of a wait, rating, thanks or reopening."""
    at = at or datetime.now(UTC)
    sender = decision.sender
    # Agent commands may have set the status or priority directly.
    lifecycle.reconcile(desk, ticket, sender, at)

    if decision.entry_kind in ("agent_reply", "internal_note"):
        queued = _dispatch_after_group_command(desk, decision, ticket, at)
        readers = {address.normalized for address in acted_on_recipients(decision)}
        if decision.entry_kind == "agent_reply" and ticket.requester.address in readers:
            lifecycle.record_first_response(desk, ticket, sender, at)
        return queued

    role = decision.follow_up.sender_role
    if decision.entry_kind != "customer" or role not in (SenderRole.REQUESTER,
                                                         SenderRole.PARTICIPANT):
        return []
    if _is_team_mailbox(ticket, sender):
        return []

    if ticket.status == Status.PENDING:
        lifecycle.transition(desk, ticket, lifecycle.reopen_status(ticket), sender,
                             Source.USER_MAIL, at, reason=Reason(N_("the user replied")),
                             notify=False)
        return []
    if ticket.status in (Status.RESOLVED, Status.CLOSED):
        return _on_reply_to_resolved(desk, decision, ticket, at)
    return []


def _on_reply_to_resolved(desk: Desk, decision: Any, ticket: models.Ticket,
                          at: datetime) -> list[QueuedMail]:
    from maildesk.tickets import record_event

    message = decision.message
    sender = decision.sender
    name = ticket.requester.name or ""
    phrases = service_levels(desk).thanks_phrases
    rating = satisfaction.parse_rating(message.reply_text, name, phrases)
    if rating is not None:
        # Whatever the sender, a rating-shaped reply does not reopen the ticket.
        if _may_rate(decision, ticket):
            satisfaction.record_rating(ticket, rating, sender, at, message.message_id)
            decision.rating = rating
        else:
            _reject_rating(ticket, sender, message.message_id)
        return []

    if satisfaction.is_short_thanks(message.reply_text, phrases, name):
        record_event(ticket, sender, "reply_without_action",
                     {"reason": "thanks", "message_id": message.message_id})
        logger.info(_("ticket {number}: a short thanks from {sender} leaves it {status}")
                    .format(number=ticket.id, sender=sender,
                            status=label(ticket.status, current_language())))
        return []
    if ticket.status == Status.CLOSED:
        return []

    # NOTE: a mail that joined by its tag alone reopens too, though its From may be
    # forged: a complaint from a client that drops In-Reply-To must not go unseen.
    changes = lifecycle.transition(desk, ticket, lifecycle.reopen_status(ticket), sender,
                                   Source.USER_MAIL, at,
                                   reason=Reason(N_("the user replied to the resolution")))
    decision.reopened = bool(changes)
    return []


def _may_rate(decision: Any, ticket: models.Ticket) -> bool:
    """Tell whether a mail may set the ticket's rating.

    The resolution notice requests a rating from the requester alone, and a mail that
    joined by its tag or by a reply to an untrusted mail may carry a forged From.
    """
    follow_up = decision.follow_up
    return follow_up.sender_role is SenderRole.REQUESTER and follow_up.proves(ticket)


def _reject_rating(ticket: models.Ticket, sender: str, message_id: str | None) -> None:
    from maildesk.tickets import record_event

    record_event(ticket, sender, "reply_without_action", {
        "reason": Reason(N_("a rating counts only from the requester, in a reply to a "
                            "trusted mail of the ticket")),
        "message_id": message_id})
    logger.info(_("ticket {number}: the rating from {sender} ({message_id}) was not counted, "
                  "because only the requester's reply to a trusted mail of the ticket rates "
                  "it").format(number=ticket.id, sender=sender, message_id=message_id or "-"))


def is_feedback_on_closed(desk: Desk, message: Any, ticket: models.Ticket) -> bool:
    """Tell whether a requester's reply to a closed ticket only rates or thanks.

    Such a reply is added to the closed ticket instead of opening a new linked one.
    """
    if ticket.status != Status.CLOSED:
        return False
    name = ticket.requester.name or ""
    phrases = service_levels(desk).thanks_phrases
    if satisfaction.parse_rating(message.reply_text, name, phrases) is not None:
        return True
    return satisfaction.is_short_thanks(message.reply_text, phrases, name)
