"""The ticket lifecycle: statuses, the allowed transitions, who may make each, and their effects.

A ticket moves through new, assigned, in_progress, pending (waiting for the user),
resolved and closed. ``TRANSITIONS`` lists every allowed move with the sources that may
make it: the user's mail, an agent's command, a routing rule, the scheduler, or an
admin's ``maildesk tickets move-group`` or ``unassign``.
``transition`` checks a move, applies it with its SLA clock step and due times, records
an audit event with the values before and after, and queues the status notice to the
requester. Every function here runs inside the caller's transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from maildesk import models, slatrack
from maildesk.desk import Desk
from maildesk.errors import MaildeskError
from maildesk.i18n import N_, _, current_language
from maildesk.mailbuild import Recipient
from maildesk.models import to_utc
from maildesk.notify import QueuedMail
from maildesk.reasons import Reason
from maildesk.sla import ClockState, SlaClock
from maildesk.slaconfig import TICKET_TYPES, service_levels
from maildesk.ticketmail import queue_ticket_mail

logger = logging.getLogger(__name__)


def priority_reason(impact: str, urgency: str, priority: int) -> Reason:
    """Explain a priority from the matrix, in each reader's language (stored with msgids)."""
    return Reason(N_("impact {impact} and urgency {urgency} give P{priority}"),
                  impact=Reason.in_context("impact", impact),
                  urgency=Reason.in_context("urgency", urgency), priority=priority)


SYSTEM_ACTOR = "maildesk"


class Status(StrEnum):
    NEW = "new"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    PENDING = "pending"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Source(StrEnum):
    """The origin of a change: the user's mail, an agent's command, a rule, the scheduler,
    or an admin's command line (``maildesk tickets move-group`` and ``unassign``)."""

    USER_MAIL = "user_mail"
    AGENT_COMMAND = "agent_command"
    RULE = "rule"
    SCHEDULER = "scheduler"
    ADMIN = "admin"


# Log names of the sources of a change.
SOURCE_LABELS = {
    Source.USER_MAIL: N_("user's mail"), Source.AGENT_COMMAND: N_("agent's command"),
    Source.RULE: N_("rule"), Source.SCHEDULER: N_("scheduler"),
    Source.ADMIN: N_("admin's command"),
}

OPEN_STATUSES = (Status.NEW, Status.ASSIGNED, Status.IN_PROGRESS, Status.PENDING)
# Statuses whose SLA clock counts towards the targets.
COUNTING_STATUSES = (Status.NEW, Status.ASSIGNED, Status.IN_PROGRESS)

_USER, _AGENT, _RULE, _SCHEDULER = (Source.USER_MAIL, Source.AGENT_COMMAND, Source.RULE,
                                    Source.SCHEDULER)
# An admin only moves tickets between groups and agents (``maildesk.orphans``).
_ADMIN = Source.ADMIN

TRANSITIONS: dict[tuple[Status, Status], frozenset[Source]] = {
    (Status.NEW, Status.ASSIGNED): frozenset({_AGENT, _RULE, _ADMIN}),
    (Status.NEW, Status.IN_PROGRESS): frozenset({_AGENT}),
    (Status.NEW, Status.PENDING): frozenset({_AGENT}),
    (Status.NEW, Status.RESOLVED): frozenset({_AGENT}),
    # An assignee removed, or the ticket escalated to another group's queue.
    (Status.ASSIGNED, Status.NEW): frozenset({_AGENT, _RULE, _SCHEDULER, _ADMIN}),
    (Status.ASSIGNED, Status.IN_PROGRESS): frozenset({_AGENT}),
    (Status.ASSIGNED, Status.PENDING): frozenset({_AGENT}),
    (Status.ASSIGNED, Status.RESOLVED): frozenset({_AGENT}),
    (Status.IN_PROGRESS, Status.NEW): frozenset({_AGENT, _RULE, _SCHEDULER, _ADMIN}),
    (Status.IN_PROGRESS, Status.ASSIGNED): frozenset({_AGENT, _RULE}),
    (Status.IN_PROGRESS, Status.PENDING): frozenset({_AGENT}),
    (Status.IN_PROGRESS, Status.RESOLVED): frozenset({_AGENT}),
    # The user's reply ends the wait; an agent may end it too.
    (Status.PENDING, Status.NEW): frozenset({_USER, _AGENT}),
    (Status.PENDING, Status.ASSIGNED): frozenset({_USER, _AGENT}),
    (Status.PENDING, Status.IN_PROGRESS): frozenset({_USER, _AGENT}),
    # The scheduler resolves a ticket whose reminders went unanswered, when configured.
    (Status.PENDING, Status.RESOLVED): frozenset({_AGENT, _SCHEDULER}),
    # Reopening: the user's reply (not a short thanks or a rating) or an agent.
    (Status.RESOLVED, Status.NEW): frozenset({_USER, _AGENT}),
    (Status.RESOLVED, Status.ASSIGNED): frozenset({_USER, _AGENT}),
    (Status.RESOLVED, Status.IN_PROGRESS): frozenset({_USER, _AGENT}),
    (Status.RESOLVED, Status.CLOSED): frozenset({_AGENT, _SCHEDULER}),
    # Duplicates, spam and withdrawn requests close without a resolution.
    (Status.NEW, Status.CLOSED): frozenset({_AGENT}),
    (Status.ASSIGNED, Status.CLOSED): frozenset({_AGENT}),
    (Status.IN_PROGRESS, Status.CLOSED): frozenset({_AGENT}),
    (Status.PENDING, Status.CLOSED): frozenset({_AGENT}),
}


class LifecycleError(MaildeskError):
    """A change the lifecycle does not allow; the message names what is allowed instead."""


@dataclass(frozen=True)
class Change:
    """One field of a ticket changed by a lifecycle operation."""

    field: str
    before: Any
    after: Any


def allowed_targets(status: str, source: Source) -> list[Status]:
    """Return the statuses ``source`` may move a ticket in ``status`` to."""
    return [target for (origin, target), sources in TRANSITIONS.items()
            if origin == status and source in sources]


def check_transition(ticket: models.Ticket, new_status: str, source: str) -> tuple[Status, Status]:
    """Return (current, new) as Status values, or raise LifecycleError naming what is allowed."""
    try:
        target = Status(new_status)
    except ValueError:
        raise LifecycleError(_(
            "unknown status '{status}': use one of {choices}").format(
                status=new_status, choices=", ".join(status.value for status in Status))
        ) from None
    try:
        current = Status(ticket.status)
    except ValueError:
        raise LifecycleError(_("ticket {number} has the unknown status '{status}'").format(
            number=ticket.id, status=ticket.status)) from None
    source = Source(source)

    allowed = TRANSITIONS.get((current, target))
    if allowed is None or source not in allowed:
        choices = ", ".join(status.value for status in allowed_targets(current, source))
        if not choices:
            raise LifecycleError(_(
                "ticket {number} cannot go from {current} to {target} by {source}: "
                "{source} may not change a ticket that is {current}").format(
                    number=ticket.id, current=current.value, target=target.value,
                    source=source.value))
        raise LifecycleError(_(
            "ticket {number} cannot go from {current} to {target} by {source}: "
            "allowed are {choices}").format(
                number=ticket.id, current=current.value, target=target.value,
                source=source.value, choices=choices))
    if target is Status.ASSIGNED and not ticket.assignee:
        raise LifecycleError(_(
            "ticket {number} has no assignee: assign an agent before setting it to assigned"
        ).format(number=ticket.id))
    return current, target


def _record(ticket: models.Ticket, actor: str, action: str, before: Any, after: Any,
            detail: dict[str, Any]) -> None:
    from maildesk.tickets import record_event

    record_event(ticket, actor, action, detail, before=before, after=after)


def _save(ticket: models.Ticket, fields: list[str]) -> None:
    """Save only the named fields, so another hook's change to the row is not overwritten."""
    ticket.updated_at = models.utcnow()
    unique = list(dict.fromkeys([*fields, "updated_at"]))
    ticket.save(only=[getattr(models.Ticket, name) for name in unique])


def transition(desk: Desk, ticket: models.Ticket, new_status: str, actor: str, source: str,
               at: datetime, reason: str | None = None, notify: bool = True) -> list[Change]:
    """Move ``ticket`` to ``new_status``; return the changed fields.

    Raises LifecycleError for a transition ``source`` may not make. The SLA clock pauses
    in pending, resumes when the wait ends, stops at resolution and restarts on
    reopening. A move to the current status changes nothing and returns [].
    """
    if ticket.status == new_status:
        return []
    current, target = check_transition(ticket, new_status, source)
    levels = service_levels(desk)
    changes = [Change("status", current.value, target.value)]

    clock = _clock_step(desk, ticket, current, target, at, actor)
    ticket.status = target.value
    changes.extend(_dates_for(ticket, current, target, at, levels))
    fields = ["status", *slatrack.CLOCK_COLUMNS, *(change.field for change in changes)]
    _save(ticket, fields)

    reopened = current is Status.RESOLVED and target is not Status.CLOSED
    _record(ticket, actor, "reopened" if reopened else "status_changed", current.value,
            target.value, {"source": Source(source).value, "reason": reason,
                           "sla": clock.state.value})
    logger.info(_("ticket {number}: {before} -> {after} by {actor} ({source})").format(
        number=ticket.id, before=_status_label(current), after=_status_label(target),
        actor=actor, source=_(SOURCE_LABELS[Source(source)])))

    if notify:
        notice = "reopened" if reopened else target.value
        _notify_requester(desk, ticket, notice, current, target, actor, source, reason)
    return changes


def _clock_step(desk: Desk, ticket: models.Ticket, current: Status, target: Status,
                at: datetime, actor: str) -> SlaClock:
    def step(clock: SlaClock) -> SlaClock:
        if target in (Status.RESOLVED, Status.CLOSED):
            if clock.state in (ClockState.RUNNING, ClockState.PAUSED):
                return clock.resolve(at)
            return clock
        if current is Status.RESOLVED and clock.state is ClockState.RESOLVED:
            clock = clock.reopen(at)
        if target is Status.PENDING and clock.state is ClockState.RUNNING:
            # Asking the user something is a response to them.
            return clock.respond(at).pause(at)
        if current is Status.PENDING and clock.state is ClockState.PAUSED:
            return clock.resume(at)
        return clock

    return slatrack.change(desk, ticket, actor, step)


def _dates_for(ticket: models.Ticket, current: Status, target: Status, at: datetime,
               levels: Any) -> list[Change]:
    """Set the lifecycle dates a status implies: resolution, closing, reminders, auto-close."""
    values: dict[str, Any] = {}
    moment = to_utc(at)
    if target is Status.PENDING:
        interval = levels.pending.reminder_interval
        values["pending_reminder_due"] = moment + interval if interval else None
        values["reminders_sent"] = 0
    elif current is Status.PENDING:
        values["pending_reminder_due"] = None

    if target is Status.RESOLVED:
        values["resolved_at"] = moment
        after = levels.auto_close_after
        values["auto_close_due"] = moment + after if after else None
    elif current is Status.RESOLVED:
        values["auto_close_due"] = None
        if target is not Status.CLOSED:
            values["resolved_at"] = None

    if target is Status.CLOSED:
        values["closed_at"] = moment
        values["auto_close_due"] = None
        values["pending_reminder_due"] = None
        if ticket.resolved_at is None:
            values["resolved_at"] = moment

    changes = []
    for name, value in values.items():
        before = getattr(ticket, name)
        if before != value:
            setattr(ticket, name, value)
            changes.append(Change(name, before, value))
    return changes


def _notify_requester(desk: Desk, ticket: models.Ticket, notice: str, current: Status,
                      target: Status, actor: str, source: str, reason: str | None
                      ) -> QueuedMail | None:
    levels = service_levels(desk)
    if notice not in levels.notify_requester:
        return None

    requester = ticket.requester
    extra = {
        "status": {"before": current.value, "after": target.value, "source": str(source),
                   "reason": reason or "", "actor": actor,
                   "assignee_name": _agent_name(desk, ticket.assignee)},
        "closing": {"closes_at": ticket.auto_close_due, "rating_scale": 5},
    }
    return queue_ticket_mail(desk, ticket, f"status_{notice}",
                             [Recipient(requester.address, requester.name)], extra)


def _agent_name(desk: Desk, login: str | None) -> str | None:
    """Return the display name of an agent for mail to users, else the login."""
    if login is None:
        return None
    agent = next((agent for agent in desk.config.agents if agent.login == login), None)
    return agent.name if agent is not None and agent.name else login


def _status_label(status: Status) -> str:
    from maildesk.commands import label

    return label(status.value, current_language())


def reopen_status(ticket: models.Ticket) -> Status:
    """Return where a reopened (or no longer waiting) ticket goes: its assignee's work, or new."""
    return Status.IN_PROGRESS if ticket.assignee else Status.NEW


def assign(desk: Desk, ticket: models.Ticket, assignee: str | None, actor: str, source: str,
           at: datetime, reason: str | None = None) -> list[Change]:
    """Set or clear the assignee; a new ticket becomes assigned, an unassigned one new again."""
    if ticket.status == Status.CLOSED:
        raise LifecycleError(_("ticket {number} is closed: open a new ticket instead").format(
            number=ticket.id))
    if assignee == ticket.assignee:
        return []

    before = ticket.assignee
    ticket.assignee = assignee
    _save(ticket, ["assignee"])
    _record(ticket, actor, "assignee_changed", before, assignee,
            {"source": Source(source).value, "reason": reason})
    changes = [Change("assignee", before, assignee)]

    if assignee and ticket.status == Status.NEW:
        changes.extend(transition(desk, ticket, Status.ASSIGNED, actor, source, at, reason))
    elif not assignee and ticket.status in (Status.ASSIGNED, Status.IN_PROGRESS):
        changes.extend(transition(desk, ticket, Status.NEW, actor, source, at, reason,
                                  notify=False))
    return changes


def set_priority(desk: Desk, ticket: models.Ticket, actor: str, source: str, at: datetime,
                 *, priority: int | None = None, impact: str | None = None,
                 urgency: str | None = None, reason: str | None = None) -> list[Change]:
    """Set impact and urgency (priority from the matrix) or the priority itself; re-plan SLA.

    The reason is stored with the audit event: the matrix cell, the rules that set impact
    and urgency, or the agent's words.
    """
    levels = service_levels(desk)
    before_clock = slatrack.clock_of(desk, ticket)
    changes: list[Change] = []
    for name, value in (("impact", impact), ("urgency", urgency)):
        if value is not None and value != getattr(ticket, name):
            changes.append(Change(name, getattr(ticket, name), value))
            setattr(ticket, name, value)

    try:
        matrix_priority = levels.matrix.priority(ticket.impact, ticket.urgency)
    except ValueError as error:
        raise LifecycleError(str(error)) from None
    new_priority = priority if priority is not None else matrix_priority
    if new_priority not in (1, 2, 3, 4):
        raise LifecycleError(_("invalid priority {value!r}: use 1 to 4").format(
            value=new_priority))
    if reason is None:
        reason = priority_reason(ticket.impact, ticket.urgency, matrix_priority)
    if new_priority != ticket.priority:
        changes.append(Change("priority", ticket.priority, new_priority))
        ticket.priority = new_priority
    if not changes:
        return []

    slatrack.replan(desk, ticket, before_clock, at, actor)
    _save(ticket, ["impact", "urgency", "priority", *slatrack.CLOCK_COLUMNS])
    _record(ticket, actor, "priority_changed",
            {change.field: change.before for change in changes},
            {change.field: change.after for change in changes},
            {"source": Source(source).value, "reason": reason})
    return changes


def classify(desk: Desk, ticket: models.Ticket, actor: str, source: str, at: datetime,
             *, ticket_type: str | None = None, category: str | None = None,
             clear_category: bool = False, detail: dict[str, Any] | None = None
             ) -> list[Change]:
    """Set the ticket type (incident, service_request) and category; re-plan the SLA.

    ``clear_category`` removes the category (None means "leave it" otherwise), and
    ``detail`` adds to the ``classified`` event, such as the Message-ID of a command.
    """
    levels = service_levels(desk)
    if ticket_type is not None and ticket_type not in TICKET_TYPES:
        raise LifecycleError(_("unknown ticket type '{value}': use {choices}").format(
            value=ticket_type, choices=", ".join(TICKET_TYPES)))
    new_type = ticket_type or ticket.type
    allowed = levels.categories.get(new_type)
    if category is not None and allowed and category not in allowed:
        raise LifecycleError(_("unknown category '{value}' for {type}: use {choices}").format(
            value=category, type=new_type, choices=", ".join(allowed)))

    before_clock = slatrack.clock_of(desk, ticket)
    changes = []
    requested: tuple[tuple[str, str | None], ...] = (("type", ticket_type), ("category", category))
    for name, value in requested:
        cleared = name == "category" and clear_category
        if (value is not None or cleared) and value != getattr(ticket, name):
            changes.append(Change(name, getattr(ticket, name), value))
            setattr(ticket, name, value)
    if not changes:
        return []

    slatrack.replan(desk, ticket, before_clock, at, actor)
    _save(ticket, ["type", "category", *slatrack.CLOCK_COLUMNS])
    _record(ticket, actor, "classified", {change.field: change.before for change in changes},
            {change.field: change.after for change in changes},
            {"source": Source(source).value, **(detail or {})})
    return changes


def record_first_response(desk: Desk, ticket: models.Ticket, actor: str,
                          at: datetime) -> bool:
    """Record an agent's first response to the requester; False if one was recorded before."""
    if ticket.status in (Status.RESOLVED, Status.CLOSED):
        return False
    responded = slatrack.respond(desk, ticket, at, actor)
    if responded:
        _save(ticket, list(slatrack.CLOCK_COLUMNS))
    return responded


def reconcile(desk: Desk, ticket: models.Ticket, actor: str, at: datetime) -> bool:
    """Catch the SLA clock and the lifecycle dates up with a status set elsewhere.

    Returns True when something was written. See ``slatrack.reconcile``.
    """
    fields = []
    if ticket.status == "reopened":
        # "reopened" names an event, not a status: the ticket goes back to work.
        ticket.status = reopen_status(ticket).value
        fields.append("status")
        _record(ticket, actor, "reopened", "reopened", ticket.status,
                {"source": "reconcile", "reason": None})
    moved = slatrack.reconcile(desk, ticket, actor, at)
    levels = service_levels(desk)
    moment = to_utc(at)
    if moved:
        fields.extend(slatrack.CLOCK_COLUMNS)
    if ticket.status == Status.PENDING and ticket.pending_reminder_due is None:
        interval = levels.pending.reminder_interval
        if interval is not None and ticket.reminders_sent == 0:
            ticket.pending_reminder_due = moment + interval
            fields.append("pending_reminder_due")
    elif ticket.status != Status.PENDING and ticket.pending_reminder_due is not None:
        ticket.pending_reminder_due = None
        fields.append("pending_reminder_due")

    if ticket.status == Status.RESOLVED and ticket.auto_close_due is None:
        if levels.auto_close_after is not None:
            resolved_at = ticket.resolved_at or moment
            ticket.auto_close_due = resolved_at + levels.auto_close_after
            fields.append("auto_close_due")
    elif ticket.status != Status.RESOLVED and ticket.auto_close_due is not None:
        ticket.auto_close_due = None
        fields.append("auto_close_due")

    if fields:
        _save(ticket, fields)
    return bool(fields)
