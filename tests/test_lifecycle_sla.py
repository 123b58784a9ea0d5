"""Due times of stored tickets against values worked out by hand.

Business hours are Mon-Fri 08:00-16:00 Europe/Warsaw with Polish public holidays; the
default targets are P1 30 min / 4 h around the clock, P2 1 h / 8 h, P3 4 h / 24 h and
P4 8 h / 40 h in business hours. Expected values are naive UTC, as the columns hold them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from deskfactory import make_desk, make_ticket, start_service_levels

from maildesk import lifecycle, models
from maildesk.lifecycle import Source

WARSAW = ZoneInfo("Europe/Warsaw")


def warsaw(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=WARSAW)


def created(desk, created_at: datetime, impact: str = "medium", urgency: str = "medium",
            number: int = 20701) -> models.Ticket:
    ticket = make_ticket(number, "Serwer plików niedostępny", "adam.sikora@example.org",
                         assignee="marek.zielinski", status="in_progress")
    ticket.created_at = created_at.astimezone(UTC).replace(tzinfo=None)
    ticket.impact, ticket.urgency = impact, urgency
    ticket.save()
    start_service_levels(desk, ticket)
    return models.Ticket.get_by_id(number)


def test_due_times_skip_weekend(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)

    # P3 on Friday 27 November 2026 at 14:00 CET: 2 h on Friday, the rest from Monday.
    ticket = created(desk, warsaw(2026, 11, 27, 14))

    assert ticket.priority == 3
    assert ticket.first_response_due == datetime(2026, 11, 30, 9)
    assert ticket.first_response_warning_due == datetime(2026, 11, 30, 8)
    # 2 h Friday + 8 h Monday + 8 h Tuesday + 6 h Wednesday -> Wednesday 14:00 CET.
    assert ticket.resolution_due == datetime(2026, 12, 2, 13)


def test_due_times_skip_easter_monday(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)

    # P2 on Friday 3 April 2026 at 15:00 CEST; Easter Monday (6 April) is a holiday.
    ticket = created(desk, warsaw(2026, 4, 3, 15), impact="high")

    assert ticket.priority == 2
    assert ticket.first_response_due == datetime(2026, 4, 3, 14)
    # 1 h Friday, then Tuesday 7 April 08:00 + 7 h -> 15:00 CEST.
    assert ticket.resolution_due == datetime(2026, 4, 7, 13)


def test_due_times_skip_corpus_christi(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)

    # Corpus Christi is Easter + 60 days: Thursday 4 June 2026.
    ticket = created(desk, warsaw(2026, 6, 3, 13))

    # 3 h on Wednesday, Thursday closed, 1 h on Friday -> Friday 09:00 CEST.
    assert ticket.first_response_due == datetime(2026, 6, 5, 7)


def test_due_times_across_spring_dst_around_the_clock(tmp_path: Path,
                                                       database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)

    # P1 on Sunday 29 March 2026 at 00:30 CET; clocks jump from 02:00 to 03:00.
    ticket = created(desk, warsaw(2026, 3, 29, 0, 30), impact="high", urgency="high")

    assert ticket.priority == 1
    assert ticket.first_response_due == datetime(2026, 3, 29, 0, 0)
    # Four real hours: 03:30 UTC, which the wall clock shows as 05:30 CEST.
    assert ticket.resolution_due == datetime(2026, 3, 29, 3, 30)


def test_due_times_across_autumn_dst_in_business_hours(tmp_path: Path,
                                                       database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)

    # P2 on Friday 23 October 2026 at 15:00 CEST; on Monday Warsaw is on CET again.
    ticket = created(desk, warsaw(2026, 10, 23, 15), impact="high")

    assert ticket.first_response_due == datetime(2026, 10, 23, 14)
    # 1 h Friday, Monday 26 October 08:00 CET + 7 h -> 15:00 CET = 14:00 UTC.
    assert ticket.resolution_due == datetime(2026, 10, 26, 14)


def test_due_times_move_by_paused_business_time(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    ticket = created(desk, warsaw(2026, 11, 30, 9))
    assert ticket.resolution_due == datetime(2026, 12, 3, 8)

    lifecycle.transition(desk, ticket, "pending", "marek.zielinski", Source.AGENT_COMMAND,
                         warsaw(2026, 11, 30, 10))
    paused = models.Ticket.get_by_id(ticket.id)
    assert paused.resolution_due is None
    assert paused.sla_paused_at == datetime(2026, 11, 30, 9)
    lifecycle.transition(desk, paused, "in_progress", "adam.sikora@example.org",
                         Source.USER_MAIL, warsaw(2026, 12, 2, 11))

    resumed = models.Ticket.get_by_id(ticket.id)
    assert resumed.sla_paused_at is None
    # 1 h counted before the pause; 23 h from Wednesday 11:00: 5 + 8 + 8 + 2 h ->
    # Monday 7 December 10:00 CET.
    assert resumed.resolution_due == datetime(2026, 12, 7, 9)
    resume = models.Event.get(models.Event.action == "sla_resume")
    assert json.loads(resume.detail)["excluded_seconds"] == 17 * 3600


def test_due_times_follow_configured_calendar(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url, calendar={
        "hours": {"monday": "09:00-17:00", "tuesday": "09:00-17:00",
                  "wednesday": "09:00-17:00", "thursday": "09:00-17:00",
                  "friday": "09:00-15:00"},
        "closed_days": ["2026-12-24"],
    }, sla={"policies": [
        {"priority": 1, "first_response": "15m", "resolution": "2h", "hours": "24x7"},
        {"priority": 2, "first_response": "1h", "resolution": "4h"},
        {"priority": 3, "first_response": "2h", "resolution": "16h"},
        {"priority": 4, "first_response": "8h", "resolution": "40h"},
    ]})

    # P3 on Wednesday 23 December at 16:00: 1 h, the 24th is closed, the 25th and 26th
    # are holidays, Monday 28 December 09:00 + 1 h.
    ticket = created(desk, warsaw(2026, 12, 23, 16))

    assert ticket.first_response_due == datetime(2026, 12, 28, 9)
