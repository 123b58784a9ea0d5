"""The SLA targets of a stored ticket against their due times, for the admin's commands.

The scheduler records a breach (an ``SlaNotice`` of kind ``breach``) when it finds a
target past its due time. This module reads that record and the ticket's stored
columns (due times, response and resolution times, the stored clock's stop), so what
``maildesk tickets`` shows is what the scheduler works from. It rebuilds no clock from
the configuration and writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import peewee as pw

from maildesk import models
from maildesk.escalation import BREACH
from maildesk.models import to_utc
from maildesk.sla import ClockState, SlaTarget


@dataclass(frozen=True)
class TargetStanding:
    """One SLA target of a stored ticket against its due time. Times are naive UTC.

    ``late_by`` is how far the target went past its due time: until it was met, until
    the clock stopped (paused or resolved), or until now. ``recorded_due`` is the due
    time of the breach the scheduler recorded, which differs from ``due`` when the
    targets were recalculated after the breach (a new priority or group).
    """

    target: SlaTarget
    due: datetime | None
    met_at: datetime | None
    late_by: timedelta | None
    counting: bool
    recorded_due: datetime | None = None

    @property
    def overdue(self) -> bool:
        """Return whether the target is past due, not met, and its clock still counts."""
        return self.late_by is not None and self.counting

    @property
    def breached(self) -> bool:
        """Return whether the target went past its due time, now or by the scheduler's record."""
        return self.late_by is not None or self.recorded_due is not None


def recorded_breaches(tickets: Collection[int] | pw.SelectQuery) -> dict[int, dict[str, datetime]]:
    """Map each ticket to the due time of each breach the scheduler recorded, by target.

    ``tickets`` is a list of ticket numbers or a query that selects them.
    """
    notices = (models.SlaNotice
               .select(models.SlaNotice.ticket, models.SlaNotice.target,
                       models.SlaNotice.due_at, models.SlaNotice.sent_at)
               .where(models.SlaNotice.ticket.in_(tickets), models.SlaNotice.kind == BREACH))
    found: dict[int, dict[str, datetime]] = {}
    for notice in notices:
        # The scheduler only breaches a ticket with a due time, so due_at is empty only
        # in rows written by hand, and then the time the breach was noticed is used.
        found.setdefault(notice.ticket_id, {})[notice.target] = notice.due_at or notice.sent_at
    return found


def standings(ticket: models.Ticket, breaches: Mapping[str, datetime],
              now: datetime) -> tuple[TargetStanding, ...]:
    """Measure each SLA target of ``ticket`` against its due time at ``now`` (naive UTC).

    ``breaches`` is the ticket's entry of ``recorded_breaches``.
    """
    stopped_at = _clock_stopped_at(ticket)
    found = []
    for target in SlaTarget:
        if target is SlaTarget.FIRST_RESPONSE:
            due, met_at = ticket.first_response_due, ticket.first_responded_at
        else:
            due, met_at = ticket.resolution_due, ticket.resolved_at

        # A target is measured until it was met or the clock stopped, as SlaClock does.
        until = min(moment for moment in (now, met_at, stopped_at) if moment is not None)
        late_by = until - due if due is not None and until > due else None
        found.append(TargetStanding(
            target=target, due=due, met_at=met_at, late_by=late_by,
            counting=met_at is None and stopped_at is None,
            recorded_due=breaches.get(target.value)))
    return tuple(found)


def _clock_stopped_at(ticket: models.Ticket) -> datetime | None:
    """Return when the ticket's SLA clock stopped (paused or resolved), or None if it runs."""
    if ticket.sla_paused_at is not None:
        return ticket.sla_paused_at
    if not ticket.sla_state:
        return None
    state = json.loads(ticket.sla_state)
    stopped_since = state.get("stopped_since")
    if state.get("state") != ClockState.RESOLVED or not stopped_since:
        return None
    return to_utc(datetime.fromisoformat(stopped_since))
