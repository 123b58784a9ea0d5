"""The service level report of a period: volumes, SLA targets met and missed, response times.

The report follows the tickets opened in the period (the cohort). Per priority and
group it counts them and their first-response and resolution targets met or missed. It
gives how long the first response and the resolution took in business time, and how
the requesters rated them. Targets still running at the time of the report are
counted apart, neither met nor missed. Tickets resolved in the period, whenever they
were opened, are counted apart too, as the desk's throughput.

A target counts as missed when it went past its due time or the scheduler recorded its
breach, as ``tickets show`` marks it (maildesk.slastanding). The durations are the
business time the ticket's SLA clock counted from its opening: time waiting for the user
and between a resolution and a reopening is left out, as it is from the targets.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import peewee as pw

from maildesk import models
from maildesk.desk import Desk
from maildesk.lifecycle import Status
from maildesk.models import to_utc
from maildesk.sla import SlaTarget
from maildesk.slastanding import TargetStanding, recorded_breaches, standings
from maildesk.slatrack import clock_of, policy_of
from maildesk.ticketmail import aware

logger = logging.getLogger(__name__)

# Tickets are read in chunks of this many, so that a year of tickets does not sit in
# memory as model objects at once.
_CHUNK = 500


@dataclass
class TargetTally:
    """One SLA target over a set of tickets: met, missed, still running."""

    met: int = 0
    missed: int = 0
    running: int = 0

    @property
    def decided(self) -> int:
        return self.met + self.missed

    @property
    def met_share(self) -> float | None:
        """Return the share met among the decided targets, or None when none is decided."""
        return self.met / self.decided if self.decided else None

    def add(self, standing: TargetStanding | None) -> None:
        """Count one ticket's target as missed, met, running, or not at all.

        A paused clock (pending) empties the due time unless it had already passed, so a
        target met before the pause has no due time and still counts as met.
        """
        if standing is None:
            return

        if standing.breached:
            self.missed += 1
        elif standing.met_at is not None:
            self.met += 1
        elif standing.due is not None:
            self.running += 1


@dataclass
class ReportLine:
    """The figures of one priority, one group or the whole cohort."""

    opened: int = 0
    first_response: TargetTally = field(default_factory=TargetTally)
    resolution: TargetTally = field(default_factory=TargetTally)
    response_times: list[timedelta] = field(default_factory=list)
    resolution_times: list[timedelta] = field(default_factory=list)
    escalated: int = 0
    ratings: list[int] = field(default_factory=list)

    @property
    def median_response(self) -> timedelta | None:
        return _median(self.response_times)

    @property
    def median_resolution(self) -> timedelta | None:
        return _median(self.resolution_times)

    @property
    def average_rating(self) -> float | None:
        return statistics.fmean(self.ratings) if self.ratings else None


@dataclass
class SlaReport:
    """The report of the tickets opened from ``start`` to ``end`` (aware, end excluded)."""

    start: datetime
    end: datetime
    group: str | None
    generated_at: datetime
    total: ReportLine = field(default_factory=ReportLine)
    by_priority: dict[int, ReportLine] = field(default_factory=dict)
    by_group: dict[str, ReportLine] = field(default_factory=dict)
    still_open: int = 0
    resolved_in_period: int = 0


def _median(values: list[timedelta]) -> timedelta | None:
    if not values:
        return None
    seconds = statistics.median(value.total_seconds() for value in values)
    return timedelta(seconds=round(seconds))


def build_report(desk: Desk, start: datetime, end: datetime, group: str | None = None,
                 now: datetime | None = None) -> SlaReport:
    """Build the report of the tickets opened in [start, end), of one group or all."""
    now = now or datetime.now(UTC)
    report = SlaReport(start=start, end=end, group=group, generated_at=now)
    logger.debug("building the SLA report from %s to %s, group %s", start, end, group or "-")

    # A duplicate merged into another ticket is that ticket's request, counted there once.
    opened = models.Ticket.select().where(models.Ticket.created_at >= to_utc(start),
                                          models.Ticket.created_at < to_utc(end),
                                          models.Ticket.merged_into.is_null())
    resolved = models.Ticket.select().where(models.Ticket.resolved_at >= to_utc(start),
                                            models.Ticket.resolved_at < to_utc(end),
                                            models.Ticket.merged_into.is_null())
    if group is not None:
        opened = opened.where(models.Ticket.group == group)
        resolved = resolved.where(models.Ticket.group == group)
    report.resolved_in_period = resolved.count()

    for chunk in _chunks(opened.order_by(models.Ticket.id)):
        breaches = recorded_breaches([ticket.id for ticket in chunk])
        for ticket in chunk:
            _count(desk, report, ticket, breaches.get(ticket.id, {}), to_utc(now))
    return report


def _chunks(query: pw.SelectQuery) -> Iterable[list[models.Ticket]]:
    last_id = 0
    while True:
        chunk = list(query.where(models.Ticket.id > last_id).limit(_CHUNK))
        if not chunk:
            return
        yield chunk
        last_id = chunk[-1].id


def _counted_time(desk: Desk, ticket: models.Ticket, until: datetime | None
                  ) -> timedelta | None:
    """Return the business time the SLA clock counted from the opening to ``until``.

    The clock leaves out its stops: waiting for the user, and a resolution that a
    reopening undid. A ticket without a stored clock is measured in its policy's business
    hours from its opening.
    """
    if until is None:
        return None
    clock = clock_of(desk, ticket)
    if clock.started_at is None:
        return policy_of(desk, ticket).calendar.business_time_between(
            aware(ticket.created_at), aware(until))
    return clock.elapsed(aware(until))


def _count(desk: Desk, report: SlaReport, ticket: models.Ticket,
           breaches: dict[str, datetime], now: datetime) -> None:
    """Add one ticket of the cohort to the total, its priority's line and its group's."""
    by_target = {standing.target: standing for standing in standings(ticket, breaches, now)}
    response_time = _counted_time(desk, ticket, ticket.first_responded_at)
    resolution_time = _counted_time(desk, ticket, ticket.resolved_at)
    if ticket.status not in (Status.RESOLVED, Status.CLOSED):
        report.still_open += 1

    lines = (report.total,
             report.by_priority.setdefault(ticket.priority, ReportLine()),
             report.by_group.setdefault(ticket.group or "", ReportLine()))
    for line in lines:
        line.opened += 1
        line.first_response.add(by_target.get(SlaTarget.FIRST_RESPONSE))
        line.resolution.add(by_target.get(SlaTarget.RESOLUTION))
        if response_time is not None:
            line.response_times.append(response_time)
        if resolution_time is not None:
            line.resolution_times.append(resolution_time)
        if ticket.escalation_level:
            line.escalated += 1
        if ticket.satisfaction is not None:
            line.ratings.append(ticket.satisfaction)
