"""The service level report: figures worked out by hand for a month of tickets.

The desk's P2 targets are a first response in 1 business hour and a resolution in 8,
in the office hours 08:00-16:00 Monday to Friday, Europe/Warsaw.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from click.testing import CliRunner
from deskfactory import make_desk, make_ticket, start_service_levels

from maildesk import lifecycle, models
from maildesk.cli import main as cli_main
from maildesk.cli_report import _share
from maildesk.lifecycle import Source
from maildesk.slareport import TargetTally, build_report

WARSAW = ZoneInfo("Europe/Warsaw")
AGENT = "marek.zielinski"


def warsaw(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=WARSAW)


def p2_ticket(desk, number: int, created_at: datetime, group: str = "pierwsza-linia"):
    ticket = make_ticket(number, "Nie działa VPN", "adam.sikora@example.org")
    ticket.created_at = created_at.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)
    ticket.group = group
    ticket.impact = "high"
    ticket.save()
    start_service_levels(desk, ticket)
    return models.Ticket.get_by_id(number)


def respond_and_resolve(desk, ticket, responded: datetime | None,
                        resolved: datetime | None, rating: int | None = None) -> None:
    if responded is not None:
        lifecycle.record_first_response(desk, ticket, AGENT, responded)
        ticket = models.Ticket.get_by_id(ticket.id)
    if resolved is not None:
        lifecycle.transition(desk, ticket, "resolved", AGENT, Source.AGENT_COMMAND, resolved)
    if rating is not None:
        models.Ticket.update(satisfaction=rating).where(models.Ticket.id == ticket.id).execute()


def november(desk) -> None:
    """Three tickets of November, one of October resolved in November, one of December."""
    # First response after 30 min, resolved in 4 business hours: both targets met.
    respond_and_resolve(desk, p2_ticket(desk, 1, warsaw(11, 30, 9)),
                        warsaw(11, 30, 9, 30), warsaw(11, 30, 13), rating=5)
    # First response at 10:30 (due 10:00) and resolved at 10:00 the next day (due 09:00): 9
    # business hours, both missed.
    respond_and_resolve(desk, p2_ticket(desk, 2, warsaw(11, 30, 9), group="druga-linia"),
                        warsaw(11, 30, 10, 30), warsaw(12, 1, 10), rating=2)
    # No response at all: both targets missed by the time of the report.
    p2_ticket(desk, 3, warsaw(11, 30, 9))
    respond_and_resolve(desk, p2_ticket(desk, 4, warsaw(10, 30, 9)),
                        warsaw(10, 30, 9, 10), warsaw(11, 2, 9))
    p2_ticket(desk, 5, warsaw(12, 1, 9))


def test_report_counts_a_month_by_hand(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    november(desk)

    report = build_report(desk, warsaw(11, 1), warsaw(12, 1), now=warsaw(12, 15))

    total = report.total
    assert total.opened == 3
    assert report.still_open == 1
    assert report.resolved_in_period == 2  # ticket 4, opened in October, and ticket 1
    assert (total.first_response.met, total.first_response.missed,
            total.first_response.running) == (1, 2, 0)
    assert (total.resolution.met, total.resolution.missed, total.resolution.running) == (1, 2, 0)
    assert total.median_response == timedelta(hours=1)  # 0:30 and 1:30
    assert total.median_resolution == timedelta(hours=6, minutes=30)  # 4:00 and 9:00
    assert total.ratings == [5, 2]
    assert set(report.by_priority) == {2}
    assert report.by_group["druga-linia"].opened == 1
    assert report.by_group["pierwsza-linia"].first_response.missed == 1


def test_report_targets_not_yet_due_are_running(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    p2_ticket(desk, 1, warsaw(11, 30, 9))

    report = build_report(desk, warsaw(11, 1), warsaw(12, 1), now=warsaw(11, 30, 9, 30))

    assert (report.total.first_response.running, report.total.resolution.running) == (1, 1)
    assert report.total.first_response.met_share is None


def test_report_counts_response_while_pending(tmp_path: Path, database_url: str) -> None:
    # "#oczekuje" with a question for the user is the first response. The paused clock
    # empties the due columns, yet the target was met in time and counts so.
    desk = make_desk(tmp_path, database_url)
    ticket = p2_ticket(desk, 1, warsaw(11, 30, 9))
    lifecycle.transition(desk, ticket, "pending", AGENT, Source.AGENT_COMMAND,
                         warsaw(11, 30, 9, 20))

    report = build_report(desk, warsaw(11, 1), warsaw(12, 1), now=warsaw(12, 15))

    first_response = report.total.first_response
    assert (first_response.met, first_response.missed, first_response.running) == (1, 0, 0)
    assert report.total.resolution.decided == 0
    assert report.total.median_response == timedelta(minutes=20)


def test_report_counts_breach_before_pending(tmp_path: Path, database_url: str) -> None:
    # First response at 10:30, due 10:00, by putting the ticket on hold: missed.
    desk = make_desk(tmp_path, database_url)
    ticket = p2_ticket(desk, 1, warsaw(11, 30, 9))
    lifecycle.transition(desk, ticket, "pending", AGENT, Source.AGENT_COMMAND,
                         warsaw(11, 30, 10, 30))

    report = build_report(desk, warsaw(11, 1), warsaw(12, 1), now=warsaw(12, 15))

    first_response = report.total.first_response
    assert (first_response.met, first_response.missed, first_response.running) == (0, 1, 0)


def test_report_of_one_group(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    november(desk)

    report = build_report(desk, warsaw(11, 1), warsaw(12, 1), group="druga-linia",
                          now=warsaw(12, 15))

    assert report.total.opened == 1
    assert report.total.first_response.missed == 1
    assert report.resolved_in_period == 0


def test_report_cli_table_and_csv(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    november(desk)
    runner = CliRunner()
    config = str(desk.config.path)

    polish = runner.invoke(cli_main, ["--config", config, "report", "--month", "2026-11"],
                           env={"MAILDESK_LANGUAGE": "pl"})
    table = runner.invoke(cli_main, ["--config", config, "report", "--month", "2026-11"],
                          env={"MAILDESK_LANGUAGE": "en"})
    as_csv = runner.invoke(cli_main, ["--config", config, "report", "--from", "2026-11-01",
                                      "--to", "2026-11-30", "--csv"])
    both = runner.invoke(cli_main, ["--config", config, "report", "--month", "2026-11",
                                    "--to", "2026-11-30"])
    models.open_database(desk.config.database_url, migrate=False)

    assert table.exit_code == 0, table.output
    assert "tickets opened from 2026-11-01 to 2026-11-30 (Europe/Warsaw)" in table.output
    assert "3 tickets opened; still open: 1" in table.output
    assert "1/3 (33%)" in table.output
    assert "1:00" in table.output
    assert "6:30" in table.output
    assert "3,5 (2)" in polish.output
    assert "3 zgłoszenia przyjęte" in polish.output
    rows = {(row["dimension"], row["key"]): row
            for row in csv.DictReader(io.StringIO(as_csv.stdout))}
    assert rows[("total", "")]["opened"] == "3"
    assert rows[("total", "")]["first_response_missed"] == "2"
    assert rows[("total", "")]["median_resolution_minutes"] == "390"
    assert rows[("group", "druga-linia")]["average_rating"] == "2.00"
    assert both.exit_code == 2


def test_report_cli_rejects_bad_periods(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    runner = CliRunner()
    config = str(desk.config.path)

    month = runner.invoke(cli_main, ["--config", config, "report", "--month", "2026-13"],
                          env={"MAILDESK_LANGUAGE": "en"})
    reversed_days = runner.invoke(cli_main, ["--config", config, "report", "--from",
                                             "2026-11-30", "--to", "2026-11-01"],
                                  env={"MAILDESK_LANGUAGE": "en"})
    empty = runner.invoke(cli_main, ["--config", config, "report", "--month", "2026-11"],
                          env={"MAILDESK_LANGUAGE": "en"})
    models.open_database(desk.config.database_url, migrate=False)

    assert month.exit_code == 2
    assert "'2026-13' is not a month: write e.g. 2026-11" in month.output
    assert reversed_days.exit_code == 2
    assert "--to is before --from" in reversed_days.output
    assert empty.exit_code == 0, empty.output
    assert "0 tickets opened; still open: 0" in empty.output


def test_report_share_never_rounds_up_to_all() -> None:
    assert _share(TargetTally(met=249, missed=1)) == "249/250 (99%)"
    assert _share(TargetTally(met=2, missed=1)) == "2/3 (66%)"
    assert _share(TargetTally(met=20, missed=0)) == "20/20 (100%)"
    assert _share(TargetTally(running=3)) == "-"


def test_report_times_leave_out_waiting_for_the_user(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    ticket = p2_ticket(desk, 1, warsaw(11, 30, 9))
    lifecycle.record_first_response(desk, ticket, AGENT, warsaw(11, 30, 9, 30))
    for status, moment in (("pending", warsaw(11, 30, 10)),
                           ("in_progress", warsaw(12, 1, 10)),
                           ("resolved", warsaw(12, 1, 11))):
        lifecycle.transition(desk, models.Ticket.get_by_id(1), status, AGENT,
                             Source.AGENT_COMMAND, moment)

    report = build_report(desk, warsaw(11, 1), warsaw(12, 1), now=warsaw(12, 15))

    # 10 business hours from opening to resolution, 8 of them waiting for the user.
    assert report.total.median_resolution == timedelta(hours=2)
    assert report.total.median_response == timedelta(minutes=30)


def test_report_to_alone_starts_month(tmp_path: Path,
                                                          database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    november(desk)

    result = CliRunner().invoke(cli_main, ["--config", str(desk.config.path), "report", "--to",
                                           "2026-11-30"], env={"MAILDESK_LANGUAGE": "en"})
    models.open_database(desk.config.database_url, migrate=False)

    assert result.exit_code == 0, result.output
    assert "tickets opened from 2026-11-01 to 2026-11-30" in result.stdout
