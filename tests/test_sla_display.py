"""SLA breaches where an admin looks: ``maildesk tickets show`` and ``tickets list``.

The tickets are P2 incidents of pierwsza-linia created on Monday 30 November 2026 at
09:00 CET: the first response is due at 10:00 CET, the resolution on Tuesday at 09:00
CET. The commands measure lateness against the real clock, which is later than that,
so tests of the commands match the running durations by pattern. ``standings`` takes
its time as an argument and is checked to the minute.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from click.testing import CliRunner
from deskfactory import make_desk, make_ticket, start_service_levels

from maildesk import lifecycle, models
from maildesk.cli import main
from maildesk.lifecycle import Source
from maildesk.scheduler import Scheduler
from maildesk.sla import SlaTarget
from maildesk.slastanding import recorded_breaches, standings

WARSAW = ZoneInfo("Europe/Warsaw")


def warsaw(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=WARSAW)


def utc(moment: datetime) -> datetime:
    """Return ``moment`` as naive UTC, the form the database stores."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def p2_ticket(desk, number: int, created_at: datetime | None = None) -> models.Ticket:
    ticket = make_ticket(number, "Nie działa VPN", "adam.sikora@example.org")
    ticket.created_at = utc(created_at or warsaw(11, 30, 9))
    ticket.group = "pierwsza-linia"
    ticket.impact = "high"
    ticket.save()
    start_service_levels(desk, ticket)
    return models.Ticket.get_by_id(number)


def invoke(desk, *args: str, language: str = "en"):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["--config", str(desk.config.path), "tickets", *args],
                              env={"MAILDESK_LANGUAGE": language}, catch_exceptions=False)


def list_row(output: str, number: int) -> str:
    rows = [line for line in output.splitlines() if f"[#{number}]" in line]
    assert len(rows) == 1, output
    return rows[0]


# --------------------------------------------------------------------------- standings


def stored_ticket(**values) -> models.Ticket:  # type: ignore[no-untyped-def]
    """A ticket row in memory, never saved: ``standings`` reads only its columns."""
    columns = {"first_response_due": utc(warsaw(11, 30, 10)),
               "resolution_due": utc(warsaw(12, 1, 9)), **values}
    return models.Ticket(**columns)


def by_target(ticket: models.Ticket, now: datetime,
              breaches: dict[str, datetime] | None = None) -> dict[SlaTarget, object]:
    return {standing.target: standing for standing in standings(ticket, breaches or {},
                                                                utc(now))}


def test_standing_overdue_while_running() -> None:
    found = by_target(stored_ticket(), warsaw(11, 30, 13))

    first = found[SlaTarget.FIRST_RESPONSE]
    assert first.late_by == timedelta(hours=3)
    assert first.counting
    assert first.overdue
    assert first.breached
    assert not found[SlaTarget.RESOLUTION].breached


def test_standing_met_late_and_on_time() -> None:
    ticket = stored_ticket(first_responded_at=utc(warsaw(11, 30, 10, 45)))

    found = by_target(ticket, warsaw(12, 1, 8))

    first = found[SlaTarget.FIRST_RESPONSE]
    assert first.late_by == timedelta(minutes=45)
    assert not first.counting
    assert not first.overdue
    assert first.breached
    on_time = stored_ticket(first_responded_at=utc(warsaw(11, 30, 9, 30)))
    assert not by_target(on_time, warsaw(12, 1, 8))[SlaTarget.FIRST_RESPONSE].breached


def test_standing_frozen_while_paused() -> None:
    # The resolution ran out on Tuesday at 09:00, and the clock paused at 10:00.
    ticket = stored_ticket(first_responded_at=utc(warsaw(11, 30, 9, 30)),
                           sla_paused_at=utc(warsaw(12, 1, 10)))

    resolution = by_target(ticket, warsaw(12, 4, 12))[SlaTarget.RESOLUTION]

    assert resolution.late_by == timedelta(hours=1)
    assert not resolution.counting
    assert not resolution.overdue
    assert resolution.breached


def test_standing_paused_before_due_not_breached() -> None:
    # While paused, the stored due time is empty unless it ran out before the pause.
    ticket = stored_ticket(first_responded_at=utc(warsaw(11, 30, 9, 30)),
                           sla_paused_at=utc(warsaw(11, 30, 11)))
    ticket.resolution_due = None

    resolution = by_target(ticket, warsaw(12, 4, 12))[SlaTarget.RESOLUTION]

    assert resolution.late_by is None
    assert not resolution.breached


def test_standing_resolved_while_paused_not_breached() -> None:
    # The clock stopped when the wait began, before the due time, as SlaClock measures.
    state = {"state": "resolved", "stopped_since": warsaw(11, 30, 11).isoformat()}
    ticket = stored_ticket(first_responded_at=utc(warsaw(11, 30, 9, 30)),
                           resolved_at=utc(warsaw(12, 3, 9)), sla_state=json.dumps(state))

    resolution = by_target(ticket, warsaw(12, 4, 12))[SlaTarget.RESOLUTION]

    assert resolution.late_by is None
    assert not resolution.breached


def test_standing_recorded_breach_after_replan() -> None:
    ticket = stored_ticket(first_response_due=utc(warsaw(11, 30, 17)))
    recorded = {"first_response": utc(warsaw(11, 30, 10))}

    first = by_target(ticket, warsaw(11, 30, 13), recorded)[SlaTarget.FIRST_RESPONSE]

    assert first.late_by is None
    assert first.recorded_due == utc(warsaw(11, 30, 10))
    assert first.breached
    assert not first.overdue


# --------------------------------------------------------------------------- the commands


def test_show_names_running_breach(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    p2_ticket(desk, 20801)
    Scheduler(desk).run(warsaw(11, 30, 10, 1))

    shown = invoke(desk, "show", "20801")
    polish = invoke(desk, "show", "20801", language="pl")

    assert shown.exit_code == 0, shown.output
    assert re.search(r"First response due: 2026-11-30 10:00 CET\nSLA breach \(first response "
                     r"time\): due 2026-11-30 10:00 CET, overdue by \d+ \w+ "
                     r"so far\n", shown.output)
    assert re.search(r"Resolution due: 2026-12-01 09:00 CET\nSLA breach \(resolution time\): "
                     r"due 2026-12-01 09:00 CET, overdue by \d+ \w+ so far\n", shown.output)
    assert re.search(r"Przekroczenie SLA \(czas pierwszej odpowiedzi\): termin 2026-11-30 "
                     r"10:00 CET, opóźnienie do tej pory: \d+ \w+\n", polish.output)


def test_show_names_late_first_response(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    ticket = p2_ticket(desk, 20802)
    lifecycle.transition(desk, ticket, "resolved", "marek.zielinski", Source.AGENT_COMMAND,
                         warsaw(11, 30, 12))

    shown = invoke(desk, "show", "20802")
    polish = invoke(desk, "show", "20802", language="pl")

    assert ("First response: 2026-11-30 12:00 CET\nSLA breach (first response time): due "
            "2026-11-30 10:00 CET, met 2 hours late\nResolved: 2026-11-30 12:00 CET\n"
            in shown.output)
    assert "SLA breach (resolution time)" not in shown.output
    assert ("Przekroczenie SLA (czas pierwszej odpowiedzi): termin 2026-11-30 10:00 CET, "
            "opóźnienie: 2 godziny\n" in polish.output)


def test_show_names_breach_of_paused_clock(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    ticket = p2_ticket(desk, 20803)
    lifecycle.record_first_response(desk, ticket, "marek.zielinski", warsaw(11, 30, 9, 30))
    lifecycle.transition(desk, models.Ticket.get_by_id(20803), "pending", "marek.zielinski",
                         Source.AGENT_COMMAND, warsaw(12, 1, 10))

    shown = invoke(desk, "show", "20803")
    polish = invoke(desk, "show", "20803", language="pl")

    assert ("Resolution due: 2026-12-01 09:00 CET\nSLA breach (resolution time): due "
            "2026-12-01 09:00 CET, overdue by 1 hour when the SLA clock was paused\n"
            "SLA clock paused since 2026-12-01 10:00 CET\n" in shown.output)
    assert "SLA breach (first response time)" not in shown.output
    assert ("Przekroczenie SLA (czas rozwiązania): termin 2026-12-01 09:00 CET, opóźnienie "
            "w chwili wstrzymania liczenia czasu SLA: 1 godzina\n" in polish.output)


def test_show_names_recorded_breach_after_replan(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    ticket = p2_ticket(desk, 20804, created_at=datetime.now(UTC))
    models.SlaNotice.create(ticket=ticket, target="first_response", kind="breach",
                            due_at=utc(warsaw(11, 30, 10)))

    shown = invoke(desk, "show", "20804")

    assert ("SLA breach (first response time): due 2026-11-30 10:00 CET; the due time has "
            "changed since\n" in shown.output)
    assert "SLA breach (resolution time)" not in shown.output


def test_show_without_breach_adds_nothing(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    p2_ticket(desk, 20805, created_at=datetime.now(UTC))

    shown = invoke(desk, "show", "20805")

    assert "First response due: " in shown.output
    assert "SLA breach" not in shown.output


def test_list_marks_overdue_and_breached(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    p2_ticket(desk, 20801)
    late = p2_ticket(desk, 20802)
    lifecycle.transition(desk, late, "resolved", "marek.zielinski", Source.AGENT_COMMAND,
                         warsaw(11, 30, 12))
    waiting = p2_ticket(desk, 20803)
    lifecycle.record_first_response(desk, waiting, "marek.zielinski", warsaw(11, 30, 9, 30))
    lifecycle.transition(desk, models.Ticket.get_by_id(20803), "pending", "marek.zielinski",
                         Source.AGENT_COMMAND, warsaw(12, 1, 10))
    p2_ticket(desk, 20805, created_at=datetime.now(UTC))

    listed = invoke(desk, "list")
    polish = invoke(desk, "list", language="pl")

    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["ticket", "SLA", "status"]
    assert list_row(listed.output, 20801).startswith("    [#20801]  !  new ")
    assert list_row(listed.output, 20802).startswith("    [#20802]  *  resolved ")
    assert list_row(listed.output, 20803).startswith("    [#20803]  *  waiting for the user ")
    assert list_row(listed.output, 20805).startswith("    [#20805]     new ")
    assert lines[-2] == ("SLA: ! overdue, the clock is running; * breached earlier, or "
                         "overdue with the clock paused")
    assert lines[-1] == "4 tickets"
    assert polish.stdout.splitlines()[-2] == (
        "SLA: ! po terminie, czas jest liczony; * wcześniejsze przekroczenie SLA albo po "
        "terminie przy wstrzymanym liczeniu czasu")


def test_list_without_breach_has_no_legend(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    p2_ticket(desk, 20805, created_at=datetime.now(UTC))

    listed = invoke(desk, "list")

    assert list_row(listed.output, 20805).startswith("    [#20805]     new ")
    assert "SLA:" not in listed.output
    assert listed.output.splitlines()[-1] == "1 ticket"


def test_recorded_breaches_by_query(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    p2_ticket(desk, 20801)
    p2_ticket(desk, 20802)
    Scheduler(desk).run(warsaw(12, 1, 9, 1))

    chosen = models.Ticket.select(models.Ticket.id).where(models.Ticket.id == 20801)

    assert recorded_breaches(chosen) == {20801: {
        "first_response": utc(warsaw(11, 30, 10)), "resolution": utc(warsaw(12, 1, 9))}}
    assert set(recorded_breaches([20801, 20802])) == {20801, 20802}
