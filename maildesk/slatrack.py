"""The SLA clock of a stored ticket: load it, move it, store its due times and audit trail.

The clock itself (``maildesk.sla.SlaClock``) is pure. This module keeps it in
``Ticket.sla_state``, copies its due times into the indexed columns the scheduler
queries, and records every clock transition as an ``sla_<kind>`` event. Each function
runs inside the caller's transaction and leaves saving the ticket to the caller.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime

from maildesk import models, statements
from maildesk.desk import Desk
from maildesk.models import to_utc
from maildesk.sla import ClockState, SlaClock, SlaPolicy, SlaTarget
from maildesk.slaconfig import service_levels
from maildesk.ticketmail import aware

logger = logging.getLogger(__name__)

# The columns a clock change may write, for Ticket.save(only=...).
CLOCK_COLUMNS = (
    "sla_state", "first_response_due", "resolution_due", "first_response_warning_due",
    "resolution_warning_due", "sla_paused_at", "first_responded_at",
)


def policy_of(desk: Desk, ticket: models.Ticket) -> SlaPolicy:
    """Return the policy for the ticket's current priority, group and type."""
    return service_levels(desk).policy_for(ticket.priority, ticket.group, ticket.type)


def clock_of(desk: Desk, ticket: models.Ticket) -> SlaClock:
    """Rebuild the clock under the policy it was stored with, if that policy still exists.

    NOTE: targets changed in the configuration reach a ticket's due-time columns only
    at its next clock change; until then the scheduler works from the stored times.
    """
    if not ticket.sla_state:
        return SlaClock(policy_of(desk, ticket))
    state = json.loads(ticket.sla_state)
    name = state.get("policy")
    stored = next((policy for policy in service_levels(desk).policies.policies
                   if policy.name == name), None)
    return SlaClock.from_state(stored or policy_of(desk, ticket), state)


def store(ticket: models.Ticket, clock: SlaClock, actor: str) -> None:
    """Write the clock and its due times to the ticket; record each new transition.

    Only the instance changes; the caller saves the columns in ``CLOCK_COLUMNS``.
    """
    record_transitions(ticket, clock, actor)
    set_columns(ticket, clock)


def record_transitions(ticket: models.Ticket, clock: SlaClock, actor: str) -> None:
    """Record one event per transition of ``clock`` on a ticket that has its row."""
    for transition in clock.history:
        statements.insert_later(
            models.Event, ticket=ticket, actor=actor, action=f"sla_{transition.kind}",
            detail=json.dumps(transition.as_dict(), ensure_ascii=False),
        )
        logger.debug("ticket %s: SLA %s under %s", ticket.id, transition.kind,
                     transition.policy)


def set_columns(ticket: models.Ticket, clock: SlaClock) -> None:
    """Copy the clock and its due times into the columns of ``CLOCK_COLUMNS``."""
    # The policy name lets ``reconcile`` notice a priority, group or type changed elsewhere.
    ticket.sla_state = json.dumps({**clock.to_state(), "policy": clock.policy.name})
    ticket.first_response_due = _column(clock.first_response_due)
    ticket.resolution_due = _column(clock.resolution_due)
    ticket.first_response_warning_due = _column(clock.warning_at(SlaTarget.FIRST_RESPONSE))
    ticket.resolution_warning_due = _column(clock.warning_at(SlaTarget.RESOLUTION))
    paused = clock.state is ClockState.PAUSED
    ticket.sla_paused_at = _column(clock.stopped_since) if paused else None
    ticket.first_responded_at = _column(clock.responded_at)


def _column(value: datetime | None) -> datetime | None:
    return to_utc(value) if value is not None else None


def started(desk: Desk, ticket: models.Ticket, actor: str) -> SlaClock:
    """Return the ticket's clock, started at its creation time if it never was."""
    clock = clock_of(desk, ticket)
    if clock.state is ClockState.NOT_STARTED:
        created_at = aware(ticket.created_at)
        assert created_at is not None
        clock = clock.start(created_at)
    return clock


def change(desk: Desk, ticket: models.Ticket, actor: str,
           step: Callable[[SlaClock], SlaClock]) -> SlaClock:
    """Apply one clock step (start, pause, resume, respond, resolve, reopen) and store it."""
    clock = step(started(desk, ticket, actor))
    store(ticket, clock, actor)
    return clock


def start(desk: Desk, ticket: models.Ticket, at: datetime) -> SlaClock:
    """Start the clock of a new ticket, set its columns and return the clock.

    The ticket need not have its row yet, so the start is not recorded here: the caller
    passes the clock to ``record_transitions`` once the row is inserted.
    """
    clock = clock_of(desk, ticket)
    if clock.state is ClockState.NOT_STARTED:
        clock = clock.start(at)
    set_columns(ticket, clock)
    return clock


def respond(desk: Desk, ticket: models.Ticket, at: datetime, actor: str) -> bool:
    """Record the first response; return False when one was recorded already."""
    clock = started(desk, ticket, actor)
    if clock.responded_at is not None or clock.state not in (ClockState.RUNNING,
                                                             ClockState.PAUSED):
        return False
    store(ticket, clock.respond(at), actor)
    return True


def replan(desk: Desk, ticket: models.Ticket, before: SlaClock, at: datetime,
           actor: str) -> SlaClock:
    """Switch ``before`` (read before a field changed) to the policy the ticket has now.

    Due times count from the original start under the new targets. Nothing changes
    when the same policy still applies.
    """
    policy = policy_of(desk, ticket)
    clock = before
    if clock.state is ClockState.NOT_STARTED:
        created_at = aware(ticket.created_at)
        assert created_at is not None
        clock = clock.start(created_at)
    if policy != clock.policy:
        clock = clock.replan(policy, at)
    store(ticket, clock, actor)
    return clock


# Clock states each ticket status calls for.
_STOPPED_STATUSES = ("resolved", "closed")


def reconcile(desk: Desk, ticket: models.Ticket, actor: str, at: datetime) -> bool:
    """Bring the clock in line with fields another module changed; return True if it moved.

    Code that sets the status, priority, group, type or first response time directly
    (instead of through ``maildesk.lifecycle``) leaves the clock behind. This applies
    the missing steps, each recorded as an event, and is a no-op when nothing is behind.
    """
    clock = clock_of(desk, ticket)
    before = clock
    if clock.state is ClockState.NOT_STARTED:
        created_at = aware(ticket.created_at)
        assert created_at is not None
        clock = clock.start(min(created_at, at))
    at = max(at, _last_change(clock) or at)

    policy = policy_of(desk, ticket)
    if policy != clock.policy and clock.state is not ClockState.NOT_STARTED:
        clock = clock.replan(policy, at)
    responded_at = aware(ticket.first_responded_at)
    if responded_at is not None and clock.responded_at is None and clock.state in (
            ClockState.RUNNING, ClockState.PAUSED):
        clock = clock.respond(at)

    status = ticket.status
    if status in _STOPPED_STATUSES:
        if clock.state in (ClockState.RUNNING, ClockState.PAUSED):
            clock = clock.resolve(at)
    else:
        if clock.state is ClockState.RESOLVED:
            clock = clock.reopen(at)
        if status == "pending" and clock.state is ClockState.RUNNING:
            clock = clock.respond(at).pause(at)
        elif status != "pending" and clock.state is ClockState.PAUSED:
            clock = clock.resume(at)

    if clock is before or not clock.history:
        return False
    store(ticket, clock, actor)
    return True


def _last_change(clock: SlaClock) -> datetime | None:
    instants = [clock.started_at, clock.stopped_since, clock.responded_at, clock.resolved_at]
    instants.extend(end for _start, end in clock.stopped_spans)
    known = [instant for instant in instants if instant is not None]
    return max(known) if known else None
