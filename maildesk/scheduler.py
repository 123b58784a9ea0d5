"""Periodic work inside the daemon: SLA warnings and breaches, reminders, auto-close and
the daily summaries.

Each kind of work is one range query on an indexed due-time column, so a run costs
the same with ten or a million open tickets. Each ticket is handled in its own
transaction: a failure on one is logged and the others go on. The clock is a callable
returning an aware datetime, so tests control time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import peewee as pw

from maildesk import databaseerrors, escalation, lifecycle, models
from maildesk.dailysummary import DailySummary
from maildesk.desk import Desk
from maildesk.errors import MaildeskError, TemporaryError
from maildesk.i18n import N_, _
from maildesk.lifecycle import COUNTING_STATUSES, Source, Status
from maildesk.mailbuild import Recipient
from maildesk.models import database_proxy, to_utc
from maildesk.reasons import Reason
from maildesk.sla import SlaTarget
from maildesk.slaconfig import service_levels
from maildesk.ticketmail import aware, queue_ticket_mail

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]

# Tickets handled per kind of work and run; the rest wait for the next run.
BATCH_SIZE = 200


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class RunReport:
    """The ticket numbers one scheduler run handled, by kind of work."""

    warnings: list[int] = field(default_factory=list)
    breaches: list[int] = field(default_factory=list)
    reminders: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    # Addresses, not ticket numbers: the agents and managers who got a daily summary,
    # which ``maildesk.dailysummary`` logs itself; ``total`` counts tickets only.
    summaries: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(len(items) for items in (self.warnings, self.breaches, self.reminders,
                                             self.resolved, self.closed))


class Scheduler:
    """The daemon's periodic task; call it after every pass, it runs when its interval is up."""

    def __init__(self, desk: Desk, clock: Clock = system_clock,
                 interval: timedelta | None = None) -> None:
        self.desk = desk
        self.clock = clock
        self.interval = interval if interval is not None else (
            service_levels(desk).check_interval)
        self.last_run: datetime | None = None
        self.daily_summary = DailySummary(desk)

    def __call__(self) -> RunReport | None:
        """Run the due work when ``interval`` has passed since the last run, else return None.

        A clock set back (by NTP, or by hand) runs the work at once: waiting until the
        clock reaches the last run again would hold back SLA notices for as long as the
        clock went back.
        """
        now = self.clock()
        if self.last_run is not None:
            elapsed = now - self.last_run
            if timedelta(0) <= elapsed < self.interval:
                return None
            if elapsed < timedelta(0):
                logger.warning(_("the system clock went back by {seconds:.0f} s since the last "
                                 "run of the periodic tasks, so they run now").format(
                    seconds=-elapsed.total_seconds()))
        self.last_run = now
        return self.run(now)

    def run(self, now: datetime | None = None) -> RunReport:
        """Do all due work as of ``now`` (default: the clock)."""
        now = now or self.clock()
        report = RunReport()
        try:
            for target in SlaTarget:
                self._warnings(target, now, report)
                self._breaches(target, now, report)
            self._reminders(now, report)
            self._auto_close(now, report)
            report.summaries = self.daily_summary.run(now)
        except (pw.OperationalError, pw.InterfaceError) as error:
            raise TemporaryError(_("database unavailable: {error}").format(
                error=databaseerrors.describe(error))) from error
        if report.total or report.failed:
            # "label: count", which reads right for every count in both languages.
            logger.info(_(
                "periodic tasks done: SLA warnings: {warnings}, SLA breaches: {breaches}, "
                "reminders: {reminders}, unanswered tickets resolved: {resolved}, resolved "
                "tickets closed: {closed}, failed: {failed}").format(
                    warnings=len(report.warnings), breaches=len(report.breaches),
                    reminders=len(report.reminders), resolved=len(report.resolved),
                    closed=len(report.closed), failed=len(report.failed)))
        return report

    # Queries

    def _unnoticed(self, column: pw.Field, target: SlaTarget, kind: str,
                   now: datetime) -> list[models.Ticket]:
        """Return counting tickets whose ``column`` is due and whose notice was not sent."""
        notice = models.SlaNotice.alias()
        sent = notice.select(notice.id).where(
            notice.ticket == models.Ticket.id, notice.target == target.value,
            notice.kind == kind)
        met_column = (models.Ticket.first_responded_at if target is SlaTarget.FIRST_RESPONSE
                      else models.Ticket.resolved_at)
        return list(
            models.Ticket.select()
            .where(column <= to_utc(now), column.is_null(False),
                   models.Ticket.status.in_([status.value for status in COUNTING_STATUSES]),
                   met_column.is_null(), ~pw.fn.EXISTS(sent))
            .order_by(column)
            .limit(BATCH_SIZE)
        )

    def _warnings(self, target: SlaTarget, now: datetime, report: RunReport) -> None:
        column = (models.Ticket.first_response_warning_due
                  if target is SlaTarget.FIRST_RESPONSE else models.Ticket.resolution_warning_due)
        for ticket in self._unnoticed(column, target, escalation.WARNING, now):
            if self._each(ticket, report, lambda t: escalation.send_warning(
                    self.desk, t, target, now)):
                report.warnings.append(ticket.id)

    def _breaches(self, target: SlaTarget, now: datetime, report: RunReport) -> None:
        column = (models.Ticket.first_response_due if target is SlaTarget.FIRST_RESPONSE
                  else models.Ticket.resolution_due)
        for ticket in self._unnoticed(column, target, escalation.BREACH, now):
            if self._each(ticket, report, lambda t: escalation.send_breach(
                    self.desk, t, target, now)):
                report.breaches.append(ticket.id)

    def _reminders(self, now: datetime, report: RunReport) -> None:
        due = list(
            models.Ticket.select()
            .where(models.Ticket.pending_reminder_due <= to_utc(now),
                   models.Ticket.status == Status.PENDING.value)
            .order_by(models.Ticket.pending_reminder_due)
            .limit(BATCH_SIZE)
        )
        for ticket in due:
            self._each(ticket, report, lambda t: self._remind(t, now, report))

    def _auto_close(self, now: datetime, report: RunReport) -> None:
        due = list(
            models.Ticket.select()
            .where(models.Ticket.auto_close_due <= to_utc(now),
                   models.Ticket.status == Status.RESOLVED.value)
            .order_by(models.Ticket.auto_close_due)
            .limit(BATCH_SIZE)
        )
        for ticket in due:
            if self._each(ticket, report, lambda t: lifecycle.transition(
                    self.desk, t, Status.CLOSED, lifecycle.SYSTEM_ACTOR, Source.SCHEDULER, now,
                    reason=_closing_reason(t))):
                report.closed.append(ticket.id)

    # Work on one ticket

    def _each(self, ticket: models.Ticket, report: RunReport,
              work: Callable[[models.Ticket], object]) -> bool:
        """Run ``work`` on a fresh copy of the ticket in its own transaction."""
        try:
            with database_proxy.atomic():
                fresh = models.Ticket.get_by_id(ticket.id)
                result = work(fresh)
            return result is not None and result != []
        except (pw.OperationalError, pw.InterfaceError):
            raise
        except (MaildeskError, ValueError, LookupError, pw.DatabaseError) as error:
            report.failed.append(ticket.id)
            logger.exception(_("scheduler: ticket {number} failed: {error}").format(
                number=ticket.id, error=error))
            return False

    def _remind(self, ticket: models.Ticket, now: datetime, report: RunReport) -> list[object]:
        settings = service_levels(self.desk).pending
        if ticket.status != Status.PENDING or ticket.pending_reminder_due is None:
            return []
        # The ticket was listed before this transaction began: an overlapping run may
        # have sent this reminder since and set the next one's due time.
        due = aware(ticket.pending_reminder_due)
        if due is not None and due > now:
            logger.info(_("ticket {number}: the reminder was sent by another scheduler run, "
                          "the next one is due {due}").format(
                number=ticket.id, due=self.desk.local_time(due)))
            return []
        if ticket.reminders_sent >= settings.max_reminders:
            ticket.pending_reminder_due = None
            ticket.save(only=[models.Ticket.pending_reminder_due])
            if settings.resolve_unanswered:
                lifecycle.transition(self.desk, ticket, Status.RESOLVED, lifecycle.SYSTEM_ACTOR,
                                     Source.SCHEDULER, now, reason=_unanswered_reason(ticket))
                report.resolved.append(ticket.id)
            return []

        number = ticket.reminders_sent + 1
        interval = settings.reminder_interval
        assert interval is not None
        resolves_at = None
        if settings.resolve_unanswered:
            resolves_at = now + interval * (settings.max_reminders - number + 1)
        requester = ticket.requester
        queued = queue_ticket_mail(self.desk, ticket, "pending_reminder",
                                   [Recipient(requester.address, requester.name)], {
                                       "reminder": {"number": number,
                                                    "max": settings.max_reminders,
                                                    "resolves_at": resolves_at,
                                                    "waiting_since": aware(ticket.sla_paused_at)
                                                    or now}})
        ticket.reminders_sent = number
        ticket.pending_reminder_due = to_utc(now + interval)
        ticket.save(only=[models.Ticket.reminders_sent, models.Ticket.pending_reminder_due])

        from maildesk.tickets import record_event

        record_event(ticket, lifecycle.SYSTEM_ACTOR, "pending_reminder_sent",
                     {"number": number, "queued": queued is not None})
        report.reminders.append(ticket.id)
        return [queued]


def _closing_reason(ticket: models.Ticket) -> Reason:
    # A Reason, so the notice reads in the mail's language and the history in its reader's.
    return Reason(N_("Closed automatically: the ticket stayed resolved for the agreed time, "
                     "with no new request."))


def _unanswered_reason(ticket: models.Ticket) -> Reason:
    return Reason(N_("Resolved automatically: there was no reply to our questions and "
                     "reminders."))


def make_scheduler(desk: Desk, clock: Clock = system_clock) -> Scheduler:
    """Return the scheduler the daemon runs after each pass (see ``wiring.build_daemon``)."""
    service_levels(desk)
    return Scheduler(desk, clock)
