"""SLA due times and scheduler mail over a month of desk life, against values worked out by hand.

The desk works Monday to Friday 08:00-16:00 Europe/Warsaw with Polish public holidays
(24 December included from 2025). Default targets: P1 30 min / 4 h around the clock,
P2 1 h / 8 h, P3 4 h / 24 h, P4 8 h / 40 h in business hours. Warnings come at 75%.
Expected column values are naive UTC. Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from deskfactory import mail, make_desk, make_ticket, start_service_levels

from maildesk import lifecycle, models, pipeline, servicehooks
from maildesk.lifecycle import Source
from maildesk.scheduler import Scheduler

WARSAW = ZoneInfo("Europe/Warsaw")
REQUESTER = "adam.sikora@example.org"


def warsaw(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=WARSAW)


def opened(desk, created_at: datetime, impact: str = "medium", urgency: str = "medium",
           number: int = 21001) -> models.Ticket:
    ticket = make_ticket(number, "Nie działa VPN", REQUESTER, assignee="marek.zielinski",
                         status="assigned")
    ticket.created_at = created_at.astimezone(UTC).replace(tzinfo=None)
    ticket.group = "pierwsza-linia"
    ticket.impact, ticket.urgency = impact, urgency
    ticket.save()
    start_service_levels(desk, ticket)
    return models.Ticket.get_by_id(number)


def kinds() -> list[str]:
    return [row.kind for row in models.Outbox.select().order_by(models.Outbox.id)]


@pytest.mark.parametrize(("impact", "urgency", "priority", "first_response_due"), [
    # Monday 30 November 2026 at 09:00 CET (08:00 UTC).
    ("high", "high", 1, datetime(2026, 11, 30, 8, 30)),        # 30 min around the clock
    ("high", "medium", 2, datetime(2026, 11, 30, 9)),          # 1 h -> 10:00 CET
    ("medium", "high", 2, datetime(2026, 11, 30, 9)),
    ("high", "low", 3, datetime(2026, 11, 30, 12)),            # 4 h -> 13:00 CET
    ("medium", "medium", 3, datetime(2026, 11, 30, 12)),
    ("low", "high", 3, datetime(2026, 11, 30, 12)),
    ("medium", "low", 4, datetime(2026, 12, 1, 8)),            # 7 h Mon + 1 h Tue -> 09:00 CET
    ("low", "medium", 4, datetime(2026, 12, 1, 8)),
    ("low", "low", 4, datetime(2026, 12, 1, 8)),
])
def test_month_matrix_sets_priority_and_due(tmp_path: Path, database_url: str, impact: str,
                                            urgency: str, priority: int,
                                            first_response_due: datetime) -> None:
    desk = make_desk(tmp_path, database_url)

    ticket = opened(desk, warsaw(2026, 11, 30, 9), impact, urgency)

    assert ticket.priority == priority
    assert ticket.first_response_due == first_response_due


def test_month_friday_evening_ticket(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    scheduler = Scheduler(desk)

    # P3 on Friday 27 November at 16:55, after closing: counting starts Monday 08:00.
    ticket = opened(desk, warsaw(2026, 11, 27, 16, 55))

    # 4 h -> Monday 12:00 CET; 75% (3 h) -> 11:00 CET.
    assert ticket.first_response_due == datetime(2026, 11, 30, 11)
    assert ticket.first_response_warning_due == datetime(2026, 11, 30, 10)
    # 24 h = three full days -> Wednesday 2 December 16:00 CET.
    assert ticket.resolution_due == datetime(2026, 12, 2, 15)
    weekend = scheduler.run(warsaw(2026, 11, 29, 12))
    before = scheduler.run(warsaw(2026, 11, 30, 10, 59))
    warned = scheduler.run(warsaw(2026, 11, 30, 11, 1))
    breached = scheduler.run(warsaw(2026, 11, 30, 12, 1))
    again = scheduler.run(warsaw(2026, 11, 30, 12, 30))
    assert weekend.total == before.total == again.total == 0
    assert warned.warnings == [21001]
    assert breached.breaches == [21001]
    assert kinds() == ["escalation_warning", "escalation_breach", "escalation_manager"]


def test_month_christmas_holidays(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)

    # P3 on Wednesday 23 December at 14:00. 24, 25 and 26 December are holidays.
    ticket = opened(desk, warsaw(2026, 12, 23, 14))

    # 2 h on Wednesday, then Monday 28 December 08:00 + 2 h -> 10:00 CET.
    assert ticket.first_response_due == datetime(2026, 12, 28, 9)
    # 2 h + 8 h (28th) + 8 h (29th) + 6 h on the 30th -> 14:00 CET.
    assert ticket.resolution_due == datetime(2026, 12, 30, 13)


def test_month_across_daylight_saving_changes(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)

    # P3 on Friday 23 October at 13:00 CEST; clocks go back on Sunday the 25th.
    autumn = opened(desk, warsaw(2026, 10, 23, 13), number=21001)
    # P3 on Friday 27 March at 13:00 CET; clocks go forward on Sunday the 29th.
    spring = opened(desk, warsaw(2026, 3, 27, 13), number=21002)

    # 3 h on Friday, 1 h on Monday from 08:00 CET -> 09:00 CET.
    assert autumn.first_response_due == datetime(2026, 10, 26, 8)
    # 3 h + 8 h + 8 h + 5 h on Wednesday 28 October -> 13:00 CET.
    assert autumn.resolution_due == datetime(2026, 10, 28, 12)
    # 3 h on Friday, 1 h on Monday from 08:00 CEST -> 09:00 CEST.
    assert spring.first_response_due == datetime(2026, 3, 30, 7)


class FrozenDateTime(datetime):
    """A datetime class whose ``now`` returns the instant a test sets."""

    instant = datetime(2026, 12, 2, 14, tzinfo=WARSAW)

    @classmethod
    def now(cls, tz=None):  # type: ignore[override]
        return cls.instant.astimezone(tz)


def test_month_wait_for_user_ends_with_reply(tmp_path: Path, database_url: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    desk = make_desk(tmp_path, database_url)
    ticket = opened(desk, warsaw(2026, 11, 30, 9))
    # 2 h counted, then the agent puts the ticket on hold for the user on Monday at 11:00.
    lifecycle.transition(desk, ticket, "pending", "marek.zielinski", Source.AGENT_COMMAND,
                         warsaw(2026, 11, 30, 11))
    quiet = Scheduler(desk).run(warsaw(2026, 12, 2, 13))
    assert quiet.warnings == quiet.breaches == []

    # The user's reply arrives on Wednesday 2 December at 14:00.
    monkeypatch.setattr(servicehooks, "datetime", FrozenDateTime)
    pipeline.process(desk, mail(sender=f"Adam Sikora <{REQUESTER}>",
                                subject="Re: [#21001] Nie działa VPN",
                                body="Tak, komputer był restartowany.",
                                message_id="<reply1@example.org>"), "test:reply")

    resumed = models.Ticket.get_by_id(21001)
    assert resumed.status == "in_progress"
    assert resumed.sla_paused_at is None
    # 22 h left: 2 h on Wednesday, 8 h Thursday, 8 h Friday, 4 h Monday 7 December
    # -> 12:00 CET.
    assert resumed.resolution_due == datetime(2026, 12, 7, 11)
    resume = models.Event.get(models.Event.action == "sla_resume")
    # Monday 11:00-16:00, Tuesday, Wednesday 08:00-14:00: 5 + 8 + 6 h.
    assert json.loads(resume.detail)["excluded_seconds"] == 19 * 3600


def test_month_priority_raise_replans_from_start(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    ticket = opened(desk, warsaw(2026, 11, 30, 9), impact="low", urgency="low")
    assert ticket.first_response_due == datetime(2026, 12, 1, 8)

    # Raised to P2 at 09:30: the targets count from 09:00 again, 1 h and 8 h.
    lifecycle.set_priority(desk, ticket, "marek.zielinski", Source.AGENT_COMMAND,
                           warsaw(2026, 11, 30, 9, 30), impact="high", urgency="medium")

    raised = models.Ticket.get_by_id(21001)
    assert raised.priority == 2
    assert raised.first_response_due == datetime(2026, 11, 30, 9)
    assert raised.resolution_due == datetime(2026, 12, 1, 8)
    assert Scheduler(desk).run(warsaw(2026, 11, 30, 9, 46)).warnings == [21001]


def test_month_reopen_counts_remaining_time(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    ticket = opened(desk, warsaw(2026, 11, 30, 9), impact="high")
    lifecycle.transition(desk, ticket, "resolved", "marek.zielinski", Source.AGENT_COMMAND,
                         warsaw(2026, 11, 30, 11))
    resolved = models.Ticket.get_by_id(21001)
    # Five calendar days after the resolution: Saturday 5 December 11:00 CET.
    assert resolved.auto_close_due == datetime(2026, 12, 5, 10)

    lifecycle.transition(desk, resolved, "in_progress", REQUESTER, Source.USER_MAIL,
                         warsaw(2026, 12, 2, 10))

    reopened = models.Ticket.get_by_id(21001)
    assert reopened.auto_close_due is None
    # 2 of 8 h counted before the resolution; 6 h from Wednesday 10:00 -> 16:00 CET.
    assert reopened.resolution_due == datetime(2026, 12, 2, 15)
    assert reopened.resolution_warning_due == datetime(2026, 12, 2, 13)
    assert Scheduler(desk).run(warsaw(2026, 12, 5, 12)).closed == []


def test_month_closed_day_and_working_saturday(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url, calendar={
        "closed_days": ["2026-11-13"], "working_days": ["2026-11-14"],
        "extra_day_hours": "09:00-13:00"})

    # P3 on Thursday 12 November at 14:00; Friday the 13th is closed, Saturday the 14th
    # works 09:00-13:00.
    ticket = opened(desk, warsaw(2026, 11, 12, 14))

    # 2 h on Thursday, 2 h on Saturday from 09:00 -> 11:00 CET.
    assert ticket.first_response_due == datetime(2026, 11, 14, 10)
    # 2 h + 4 h Saturday + 8 h Monday + 8 h Tuesday + 2 h Wednesday -> 10:00 CET.
    assert ticket.resolution_due == datetime(2026, 11, 18, 9)
