"""The daily summary: each morning, every agent gets their open tickets by mail.

A desk that lives in mail has no queue screen, so once a working day, at the time of
``daily_summary.at`` in the desk's time zone, the scheduler sends:

- to each agent (``agent_summary``): the open tickets assigned to them, and the new
  unassigned tickets of their groups, overdue ones first;
- to each group manager (``manager_summary``): per group they manage, the open tickets
  by status, the unassigned ones, and the tickets that are overdue or due today.

A ticket assigned to an agent removed from the configuration counts as unassigned in
both. NOTE: a ticket of a group removed from the configuration is in no summary; the
daemon's start-up warning and ``maildesk agents check`` name those (``maildesk.orphans``).

Working days are those of the SLA calendar (``calendar:``), so nothing is sent on
weekends and Polish public holidays. A person with nothing to read gets no mail.

Each recipient's summary of a day is recorded in ``daily_summary_sent`` in the
transaction that queues it, so a restart or a second daemon sends none twice. A
daemon that was stopped at the set time sends the day's summaries when it starts,
later that day; a day it missed entirely is not sent afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import peewee as pw

from maildesk import models
from maildesk.config import Config, GroupConfig, _Section, read_once_per_config
from maildesk.desk import Desk
from maildesk.i18n import _
from maildesk.lifecycle import OPEN_STATUSES, Status
from maildesk.mailbuild import Recipient
from maildesk.models import database_proxy, to_utc
from maildesk.notify import language_for_address, queue_mail
from maildesk.slaconfig import service_levels
from maildesk.ticketmail import aware

logger = logging.getLogger(__name__)

# Tickets listed per section of one mail; the mail gives the count of the rest.
MAX_LISTED = 50

AGENT = "agent"
MANAGER = "manager"


@dataclass(frozen=True)
class SummarySettings:
    """The ``daily_summary:`` section. ``at`` None means no summaries are sent."""

    at: time | None = None
    agents: bool = True
    managers: bool = True


def load_summary_settings(config: Config) -> SummarySettings:
    """Read and check ``daily_summary:``; raise ConfigError with file and line."""
    raw = config.raw.get("daily_summary") if config.raw is not None else None
    if raw is None:
        return SummarySettings()
    section = _Section(raw, "daily_summary", config.raw, "daily_summary")
    value = raw.get("at") if isinstance(raw, dict) else None
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1, which PyYAML reads, takes 10:30 without quotes for the base-60
        # number 630, while 08:00 stays text.
        raise section.error("at", _(
            "'at' must be a time of day in quotes, such as \"10:30\": without quotes YAML "
            "reads a time such as 10:30 as a number, here {value}").format(value=value))
    text = section.text("at")
    at = _time_of_day(section, text) if text is not None else None
    settings = SummarySettings(at=at, agents=section.boolean("agents", True),
                               managers=section.boolean("managers", True))
    section.finish()
    return settings


summary_settings_of = read_once_per_config(load_summary_settings)


def _time_of_day(section: _Section, text: str) -> time:
    hours, colon, minutes = text.strip().partition(":")
    try:
        if not colon or len(minutes) != 2:
            raise ValueError(text)
        return time(int(hours), int(minutes))
    except ValueError:
        raise section.error("at", _(
            "'at' must be a time of day in the desk's time zone, such as \"08:00\", "
            "not '{value}'").format(value=text)) from None


@dataclass(frozen=True)
class SummaryRecipient:
    """One person a summary goes to, and what it covers."""

    kind: str
    address: str
    name: str
    language: str
    login: str | None = None
    groups: tuple[str, ...] = ()


class DailySummary:
    """The sender of each day's summaries; ``run(now)`` on every scheduler tick sends
    them once the set time of a working day has come."""

    def __init__(self, desk: Desk) -> None:
        self.desk = desk
        self.settings = summary_settings_of(desk.config)
        # The local day whose summaries are all recorded, so later ticks of that day
        # skip the database.
        self._finished_day: date | None = None

    def due_day(self, now: datetime) -> date | None:
        """Return the local day whose summaries are due at ``now``, or None."""
        if self.settings.at is None:
            return None
        zone = ZoneInfo(self.desk.config.desk.timezone)
        local = now.astimezone(zone)
        day = local.date()
        if day == self._finished_day or local.time() < self.settings.at:
            return None
        if not service_levels(self.desk).calendar.hours_on(day):
            return None
        return day

    def run(self, now: datetime) -> list[str]:
        """Queue the summaries due at ``now``; return the addresses that got one."""
        day = self.due_day(now)
        if day is None:
            return []

        sent_rows = models.DailySummarySent
        done = {(row.recipient, row.kind) for row in sent_rows.select(
            sent_rows.recipient, sent_rows.kind).where(sent_rows.day == day)}
        sent = []
        for recipient in self.recipients():
            if (recipient.address, recipient.kind) in done:
                continue
            try:
                if self._send(recipient, day, now):
                    sent.append(recipient.address)
            except pw.IntegrityError:
                # Another daemon recorded this summary between our read and our write.
                logger.info(_("the daily summary for {address} was sent by another daemon")
                            .format(address=recipient.address))
        self._finished_day = day
        if sent:
            logger.info(_("daily summaries sent: {count}").format(count=len(sent)))
        return sent

    def recipients(self, everyone: bool = False) -> list[SummaryRecipient]:
        """Return the agents and managers a summary may go to, in configuration order.

        ``everyone`` includes those whom the settings leave out, for a preview.
        """
        config = self.desk.config
        found: list[SummaryRecipient] = []
        if self.settings.agents or everyone:
            for agent in config.agents:
                if not agent.daily_summary and not everyone:
                    continue
                found.append(SummaryRecipient(
                    AGENT, agent.addresses[0].lower(), agent.name,
                    agent.language or config.language, login=agent.login,
                    groups=agent.groups))
        if self.settings.managers or everyone:
            managed: dict[str, list[str]] = {}
            for group in config.groups:
                if group.manager:
                    managed.setdefault(group.manager.strip().lower(), []).append(group.name)
            for address, groups in managed.items():
                found.append(SummaryRecipient(
                    MANAGER, address, "", language_for_address(self.desk, address),
                    groups=tuple(groups)))
        return found

    def _send(self, recipient: SummaryRecipient, day: date, now: datetime) -> bool:
        """Record and queue one summary in one transaction; False when no mail was queued.

        No mail is queued when the recipient has nothing open, and when ``queue_mail``
        leaves it out: a bounced address, or a template that fails on these values.
        """
        with database_proxy.atomic():
            record = models.DailySummarySent.create(day=day, recipient=recipient.address,
                                                    kind=recipient.kind, queued=False)
            context = (self.agent_context(recipient, now) if recipient.kind == AGENT
                       else self.manager_context(recipient, now))
            if context is None:
                return False

            context["summary"]["day"] = day
            template = "agent_summary" if recipient.kind == AGENT else "manager_summary"
            queued = queue_mail(self.desk, template=template, language=recipient.language,
                                context=context, to=[Recipient(recipient.address,
                                                               recipient.name)],
                                ticket=None, automatic=True, kind="daily_summary")
            if queued is None:
                logger.warning(_("the daily summary for {address} was not queued; the log "
                                 "lines above say why").format(address=recipient.address))
                return False

            record.queued = True
            record.save()
            return True

    # What a summary lists. Counts come from SQL and each list reads at most MAX_LISTED
    # rows, so a desk with a backlog of 100,000 open tickets costs no more memory.

    def agent_context(self, recipient: SummaryRecipient, now: datetime) -> dict[str, Any] | None:
        """Build the ``summary`` of one agent, or None when they have nothing open."""
        ticket = models.Ticket
        mine = self._listing([ticket.assignee == recipient.login], now)
        waiting = {"tickets": [], "count": 0, "more": 0, "overdue": 0}
        if recipient.groups:
            # A ticket whose assignee was removed from the configuration waits for the
            # group as an unassigned one does (``maildesk.orphans``).
            waiting = self._listing([ticket.group.in_(recipient.groups),
                                     (ticket.assignee.is_null()
                                      & (ticket.status == Status.NEW.value))
                                     | self._removed_assignee()], now)
        if not mine["count"] and not waiting["count"]:
            return None
        return {"summary": {
            "kind": AGENT,
            "agent": {"login": recipient.login, "name": recipient.name,
                      "groups": list(recipient.groups)},
            "assigned": mine,
            "unassigned": waiting,
        }}

    def manager_context(self, recipient: SummaryRecipient, now: datetime) -> dict[str, Any] | None:
        """Build the ``summary`` of one manager's groups, or None when they have nothing open."""
        ticket = models.Ticket
        day_end = to_utc(_end_of_local_day(now, ZoneInfo(self.desk.config.desk.timezone)))
        groups = []
        for name in recipient.groups:
            by_status = {status.value: 0 for status in OPEN_STATUSES}
            counts = (_open(ticket.group == name)
                      .select(ticket.status, pw.fn.COUNT(ticket.id))
                      .group_by(ticket.status).tuples())
            status: str
            count: int
            for status, count in counts:  # type: ignore[misc]
                by_status[status] = count
            opened = sum(by_status.values())
            if not opened:
                continue
            groups.append({
                "name": name,
                "description": _group(self.desk.config.groups, name).description,
                "open": opened,
                "by_status": by_status,
                "unassigned": _open(ticket.group == name, ticket.assignee.is_null()
                                    | self._removed_assignee()).count(),
                "due": self._listing([ticket.group == name, _next_due_column() < day_end],
                                     now),
            })
        if not groups:
            return None
        return {"summary": {"kind": MANAGER, "groups": groups}}

    def _removed_assignee(self) -> Any:
        """Return the SQL condition "assigned to someone the configuration does not have"."""
        agents = self.desk.config.agents
        known = [agent.login for agent in agents] + [
            address.lower() for agent in agents for address in agent.addresses]
        ticket = models.Ticket
        return ticket.assignee.is_null(False) & ticket.assignee.not_in(known)

    def _listing(self, conditions: list[Any], now: datetime) -> dict[str, Any]:
        """List the open tickets matching ``conditions``: overdue first, then by due time
        and priority, at most MAX_LISTED, with the counts of all of them."""
        ticket = models.Ticket
        due = _next_due_column()
        count = _open(*conditions).count()
        if not count:
            return {"tickets": [], "count": 0, "more": 0, "overdue": 0}

        rows = (_open(*conditions)
                .select(ticket, models.Contact)
                .join(models.Contact, on=(ticket.requester == models.Contact.id))
                .order_by(due.is_null(), due, ticket.priority, ticket.id)
                .limit(MAX_LISTED))
        overdue = _open(*conditions, due <= to_utc(now)).count()
        return {"tickets": [self._entry(item, now) for item in rows], "count": count,
                "more": max(0, count - MAX_LISTED), "overdue": overdue}

    def _entry(self, item: models.Ticket, now: datetime) -> dict[str, Any]:
        requester = item.requester
        due = _next_due(item)
        return {
            "number": item.id,
            "tag": self.desk.tag(item.id),
            "subject": item.subject,
            "status": item.status,
            "priority": item.priority,
            "assignee": item.assignee,
            "requester_address": requester.address,
            "requester_name": requester.name,
            "created_at": aware(item.created_at),
            "due": due,
            "due_target": ("first_response" if item.first_responded_at is None
                           and item.first_response_due is not None else "resolution"),
            "overdue": due is not None and due <= now,
        }


def _open(*conditions: Any) -> pw.ModelSelect[models.Ticket]:
    """Select the open tickets matching ``conditions``."""
    ticket = models.Ticket
    return ticket.select().where(
        ticket.status.in_([status.value for status in OPEN_STATUSES]), *conditions)


def _next_due_column() -> Any:
    """Return the SQL form of ``_next_due``, to order and filter by."""
    ticket = models.Ticket
    return pw.Case(None, [((ticket.first_responded_at.is_null()
                            & ticket.first_response_due.is_null(False)),
                           ticket.first_response_due)],
                   ticket.resolution_due)


def _next_due(item: models.Ticket) -> datetime | None:
    """Return the due time the ticket is measured against now: first response, else resolution."""
    if item.first_responded_at is None and item.first_response_due is not None:
        return aware(item.first_response_due)
    return aware(item.resolution_due)


def _end_of_local_day(now: datetime, zone: ZoneInfo) -> datetime:
    local = now.astimezone(zone)
    following = datetime.combine(local.date() + timedelta(days=1), time(), tzinfo=zone)
    return following.astimezone(now.tzinfo)


def _group(groups: Iterable[GroupConfig], name: str) -> GroupConfig:
    return next(group for group in groups if group.name == name)


def sample_values() -> dict[str, Any]:
    """Return a filled ``summary`` for ``maildesk templates check`` and previews.

    One sample serves both templates: ``agent`` and the listings are the agent's,
    ``groups`` the manager's.
    """
    created = datetime(2026, 12, 3, 8, 15, tzinfo=ZoneInfo("UTC"))
    entry = {
        "number": 1234, "tag": "[SD#1234]", "subject": "Drukarka na 2. piętrze nie drukuje",
        "status": "in_progress", "priority": 2, "assignee": "marek.zielinski",
        "requester_address": "zofia.wisniewska@example.org",
        "requester_name": "Zofia Wiśniewska", "created_at": created,
        "due": created + timedelta(hours=20), "due_target": "resolution", "overdue": True,
    }
    waiting = {**entry, "number": 1240, "tag": "[SD#1240]", "status": "new",
               "assignee": None, "subject": "Brak dostępu do udziału sieciowego",
               "due": created + timedelta(days=1, hours=2), "due_target": "first_response",
               "overdue": False}
    return {"summary": {
        "kind": AGENT, "day": date(2026, 12, 4),
        "agent": {"login": "marek.zielinski", "name": "Marek Zieliński",
                  "groups": ["pierwsza-linia"]},
        "assigned": {"tickets": [entry], "count": 1, "more": 0, "overdue": 1},
        "unassigned": {"tickets": [waiting], "count": 53, "more": 3, "overdue": 0},
        "groups": [{"name": "pierwsza-linia", "description": "Pierwsza linia wsparcia",
                    "open": 7, "unassigned": 2,
                    "by_status": {"new": 2, "assigned": 1, "in_progress": 3, "pending": 1},
                    "due": {"tickets": [entry, waiting], "count": 2, "more": 0,
                            "overdue": 1}}],
    }}


def sample_variant() -> dict[str, Any]:
    """Return a ``summary`` for the other branches: an agent in two groups with nothing
    assigned, and a manager's group with nothing due today."""
    sample = sample_values()["summary"]
    sample["agent"]["groups"] = ["pierwsza-linia", "druga-linia"]
    sample["assigned"] = {"tickets": [], "count": 0, "more": 0, "overdue": 0}
    sample["groups"][0]["due"] = {"tickets": [], "count": 0, "more": 0, "overdue": 0}
    sample["groups"][0]["description"] = ""
    return {"summary": sample}
