"""The daily summary: once per working day, agents get their open tickets and managers
their groups' state, on a controllable clock.

Every test runs on SQLite and on PostgreSQL. The desk's group pierwsza-linia has the
agent marek.zielinski and the manager kierownik@example.com; druga-linia has ewa.nowak
and the same manager.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from deskfactory import (
    mail,
    make_desk,
    make_ticket,
    record_sql,
    start_service_levels,
    write_config,
)

from maildesk import models, pipeline
from maildesk.config import load_config
from maildesk.dailysummary import MAX_LISTED, DailySummary
from maildesk.errors import ConfigError
from maildesk.scheduler import Scheduler

WARSAW = ZoneInfo("Europe/Warsaw")
MAREK = "marek.zielinski@example.com"
EWA = "ewa.nowak@example.com"
MANAGER = "kierownik@example.com"
REQUESTER = "adam.sikora@example.org"
PASS = ("mx.example.com; dkim=pass header.d=example.com header.s=sel1; "
        "spf=pass smtp.mailfrom=example.com; dmarc=pass header.from=example.com")


def warsaw(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=WARSAW)


def summary_desk(tmp_path: Path, database_url: str, **summary: Any):
    groups = [
        {"name": "pierwsza-linia", "tier": 1, "manager": MANAGER,
         "escalates_to": "druga-linia", "description": "Pierwsza linia wsparcia"},
        {"name": "druga-linia", "tier": 2, "manager": MANAGER},
    ]
    return make_desk(tmp_path, database_url, groups=groups,
                     daily_summary={"at": "08:00", **summary},
                     commands={"trusted_authserv_ids": ["mx.example.com"]})


def ticket(desk, number: int, *, group: str = "pierwsza-linia", assignee: str | None = None,
           status: str = "new", created_at: datetime | None = None,
           subject: str = "Nie działa VPN") -> models.Ticket:
    """A P2 incident, created on Monday 30 November 2026 at 09:00 unless ``created_at`` is given."""
    item = make_ticket(number, subject, REQUESTER, assignee=assignee, status=status)
    item.created_at = (created_at or warsaw(11, 30, 9)).astimezone(UTC).replace(tzinfo=None)
    item.group = group
    item.impact = "high"
    item.save()
    start_service_levels(desk, item)
    return models.Ticket.get_by_id(number)


def summaries() -> list[models.Outbox]:
    return list(models.Outbox.select().where(models.Outbox.kind == "daily_summary")
                .order_by(models.Outbox.id))


def to(address: str) -> list[models.Outbox]:
    return [row for row in summaries() if f" {address} " in row.recipients]


def text(row: models.Outbox) -> str:
    message = message_from_bytes(bytes(row.raw), policy=default_policy)
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


# --------------------------------------------------------------------------- when


def test_summary_sent_once_a_day_after_time(tmp_path: Path, database_url: str) -> None:
    desk = summary_desk(tmp_path, database_url)
    ticket(desk, 101, assignee="marek.zielinski", status="assigned")
    summary = DailySummary(desk)

    before = summary.run(warsaw(12, 1, 7, 59))
    at_time = summary.run(warsaw(12, 1, 8, 0))
    later = summary.run(warsaw(12, 1, 15, 0))
    next_day = summary.run(warsaw(12, 2, 8, 1))

    assert before == []
    assert at_time == [MAREK, MANAGER]
    assert later == []
    assert next_day == [MAREK, MANAGER]
    assert len(to(MAREK)) == 2


def test_scheduler_sends_summaries(tmp_path: Path, database_url: str) -> None:
    desk = summary_desk(tmp_path, database_url)
    ticket(desk, 101, assignee="marek.zielinski", status="assigned",
           created_at=warsaw(12, 1, 7, 30))

    report = Scheduler(desk).run(warsaw(12, 1, 8))

    assert report.summaries == [MAREK, MANAGER]
    assert len(summaries()) == 2


def test_no_summary_on_weekends_and_polish_holidays(tmp_path: Path, database_url: str) -> None:
    desk = summary_desk(tmp_path, database_url)
    ticket(desk, 101, assignee="marek.zielinski", status="assigned")
    summary = DailySummary(desk)

    # Saturday 5 December, Sunday 6 December, Christmas Day (Friday) and
    # Wigilia (Thursday 24 December 2026, a public holiday in Poland from 2025).
    days = [warsaw(12, 5, 9), warsaw(12, 6, 9), warsaw(12, 25, 9), warsaw(12, 24, 9)]

    assert [summary.run(day) for day in days] == [[], [], [], []]
    assert summary.run(warsaw(12, 28, 9)) == [MAREK, MANAGER]


def test_summary_second_daemon_sends_none(tmp_path: Path, database_url: str) -> None:
    desk = summary_desk(tmp_path, database_url)
    ticket(desk, 101, assignee="marek.zielinski", status="assigned")
    first, second = DailySummary(desk), DailySummary(desk)

    assert first.run(warsaw(12, 1, 8, 5)) == [MAREK, MANAGER]
    assert second.run(warsaw(12, 1, 8, 6)) == []
    assert len(summaries()) == 2


def test_without_a_time_no_summary_is_sent(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    ticket(desk, 101, assignee="marek.zielinski", status="assigned")

    assert Scheduler(desk).run(warsaw(12, 1, 9)).summaries == []
    assert summaries() == []


# --------------------------------------------------------------------------- who, what


def test_agent_summary_lists_own_tickets_overdue_first_and_unassigned(
        tmp_path: Path, database_url: str) -> None:
    desk = summary_desk(tmp_path, database_url)
    ticket(desk, 101, assignee="marek.zielinski", status="in_progress",
           created_at=warsaw(12, 1, 7), subject="Nowy laptop")
    ticket(desk, 102, assignee="marek.zielinski", status="assigned", subject="Stary VPN")
    ticket(desk, 103, subject="Drukarka na 2. piętrze")
    ticket(desk, 104, assignee="ewa.nowak", group="druga-linia", status="assigned")
    ticket(desk, 105, assignee="marek.zielinski", status="closed")

    DailySummary(desk).run(warsaw(12, 1, 8))
    [row] = to(MAREK)
    body = text(row)

    assert row.subject.startswith("Podsumowanie dnia 1 grudnia 2026 r.: 3 zgłoszenia")
    assert "po terminie: 2" in row.subject
    assert "Przypisane do Ciebie: 2" in body
    # 102 (opened on Monday 30 November) is overdue and comes before 101 (today).
    assert body.index("[#102]") < body.index("[#101]")
    assert "(PO TERMINIE)" in body.split("[#101]")[0]
    assert "Nowe i nieprzypisane w grupie pierwsza-linia: 1" in body
    assert "[#103]" in body
    assert "[#104]" not in body
    assert "[#105]" not in body
    assert models.Outbox.get_by_id(row.id).ticket_id is None


def test_agent_without_open_tickets_gets_no_mail(tmp_path: Path, database_url: str) -> None:
    desk = summary_desk(tmp_path, database_url)
    ticket(desk, 104, assignee="ewa.nowak", group="druga-linia", status="assigned")

    sent = DailySummary(desk).run(warsaw(12, 1, 8))

    assert sent == [EWA, MANAGER]
    assert to(MAREK) == []
    # Recorded all the same, so the later ticks of the day do not ask again.
    assert models.DailySummarySent.get(models.DailySummarySent.recipient == MAREK).queued is False


def test_summary_not_queued_is_recorded_so(tmp_path: Path, database_url: str) -> None:
    desk = summary_desk(tmp_path, database_url, managers=False)
    ticket(desk, 101, assignee="marek.zielinski", status="assigned")
    models.Contact.create(address=MAREK, bounced_at=models.utcnow(),
                          bounce_reason="550 5.1.1 mailbox unavailable")

    sent = DailySummary(desk).run(warsaw(12, 1, 8))

    record = models.DailySummarySent.get(models.DailySummarySent.recipient == MAREK)
    assert sent == []
    assert to(MAREK) == []
    assert record.queued is False


def test_agent_summary_names_how_many_more_are_left_out(tmp_path: Path,
                                                         database_url: str) -> None:
    desk = summary_desk(tmp_path, database_url)
    for number in range(1, MAX_LISTED + 4):
        ticket(desk, 1000 + number, created_at=warsaw(12, 1, 7))

    DailySummary(desk).run(warsaw(12, 1, 8))
    body = text(to(MAREK)[0])

    assert f"Nowe i nieprzypisane w grupie pierwsza-linia: {MAX_LISTED + 3}" in body
    assert "… i 3 kolejne zgłoszenia." in body
    assert body.count("[#10") == MAX_LISTED


def test_summary_statements_do_not_grow_with_backlog(tmp_path: Path, database_url: str,
                                                     monkeypatch) -> None:
    desk = summary_desk(tmp_path, database_url)
    for number in range(3):
        ticket(desk, 2000 + number, assignee="marek.zielinski", status="assigned")
    executed = record_sql(models.database_proxy.obj, monkeypatch)

    DailySummary(desk).run(warsaw(12, 1, 8))
    few = [sql for sql in executed if 'FROM "ticket"' in sql]
    for number in range(3, MAX_LISTED + 10):
        ticket(desk, 2000 + number, assignee="marek.zielinski", status="assigned")
    executed.clear()
    DailySummary(desk).run(warsaw(12, 2, 8))

    # Counts come from SQL and requesters from the listing's join, so more than one
    # mail's list of tickets costs the same reads of tickets as three tickets, and
    # every read of ticket rows is a count or stops at the listed number.
    assert [sql for sql in executed if 'FROM "ticket"' in sql] == few
    assert all("COUNT(" in sql or "GROUP BY" in sql or sql.rstrip().endswith("LIMIT ?")
               or sql.rstrip().endswith("LIMIT %s") for sql in few)


def test_agent_opting_out_and_agents_off(tmp_path: Path, database_url: str) -> None:
    agents = [
        {"login": "marek.zielinski", "name": "Marek Zieliński", "addresses": [MAREK],
         "groups": ["pierwsza-linia"], "daily_summary": False},
        {"login": "ewa.nowak", "name": "Ewa Nowak", "addresses": [EWA],
         "groups": ["druga-linia"]},
    ]
    desk = make_desk(tmp_path, database_url, agents=agents,
                     daily_summary={"at": "08:00", "managers": False})
    ticket(desk, 101, assignee="marek.zielinski", status="assigned")
    ticket(desk, 104, assignee="ewa.nowak", group="druga-linia", status="assigned")

    assert DailySummary(desk).run(warsaw(12, 1, 8)) == [EWA]


def test_manager_summary_counts_statuses_and_lists_what_is_due_today(
        tmp_path: Path, database_url: str) -> None:
    desk = summary_desk(tmp_path, database_url, agents=False)
    ticket(desk, 101, assignee="marek.zielinski", status="in_progress")
    ticket(desk, 102, status="new", created_at=warsaw(12, 1, 7))
    waiting = ticket(desk, 103, status="pending", created_at=warsaw(12, 1, 7))
    # Paused while it waits for the user: no due time, as a pause with time left leaves.
    models.Ticket.update(first_response_due=None, resolution_due=None).where(
        models.Ticket.id == waiting.id).execute()
    ticket(desk, 104, group="druga-linia", assignee="ewa.nowak", status="assigned",
           created_at=warsaw(11, 20, 9))

    assert DailySummary(desk).run(warsaw(12, 1, 8)) == [MANAGER]
    [row] = to(MANAGER)
    body = text(row)

    assert "4 otwarte zgłoszenia" in row.subject
    assert "Grupa pierwsza-linia (Pierwsza linia wsparcia): 3 otwarte zgłoszenia" in body
    assert "nowe: 1, przypisane: 0, w realizacji: 1, oczekuje na użytkownika: 1" in body
    assert "bez osoby przypisanej: 2" in body
    assert "Grupa druga-linia: 1 otwarte zgłoszenie" in body
    # 101 and 104 are overdue; 102's first response is due at 11:00 today.
    due_part = body.split("Grupa druga-linia")[0]
    assert "[#101]" in due_part
    assert "[#102]" in due_part
    assert "[#103]" not in due_part
    assert "[#104]" in body.split("Grupa druga-linia")[1]


def test_summary_in_the_agents_language(tmp_path: Path, database_url: str) -> None:
    agents = [{"login": "mark.green", "name": "Mark Green", "addresses": [MAREK],
               "groups": ["pierwsza-linia"], "language": "en"}]
    desk = make_desk(tmp_path, database_url, agents=agents,
                     daily_summary={"at": "08:00", "managers": False})
    ticket(desk, 101, assignee="mark.green", status="assigned")

    DailySummary(desk).run(warsaw(12, 1, 8))
    [row] = to(MAREK)

    assert row.subject.startswith("Daily summary, 1 December 2026: 1 ticket, 1 overdue")
    assert "Assigned to you: 1" in text(row)


# --------------------------------------------------------------------------- replies


def test_summary_reply_opens_no_ticket(tmp_path: Path, database_url: str) -> None:
    desk = summary_desk(tmp_path, database_url)
    ticket(desk, 101, assignee="marek.zielinski", status="assigned")
    DailySummary(desk).run(warsaw(12, 1, 8))
    [row] = to(MAREK)
    tickets_before = models.Ticket.select().count()

    outcome = pipeline.process(desk, mail(
        sender=f"Marek Zieliński <{MAREK}>", subject="Re: " + row.subject,
        body="Dzięki, biorę się za 101.\n", message_id="<r1@mail.example.com>",
        headers={"In-Reply-To": row.message_id, "References": row.message_id,
                 "Authentication-Results": PASS}), "test:agent")

    assert outcome.action == "ignore"
    assert models.Ticket.select().count() == tickets_before


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("value", ["8", "8:0", "25:00", "ósma", "08:00:00"])
def test_config_rejects_a_wrong_time(tmp_path: Path, database_url: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        summary_desk(tmp_path, database_url, at=value)

    assert "daily_summary" in str(caught.value) or "'at'" in str(caught.value)
    assert "08:00" in str(caught.value)


@pytest.mark.parametrize(("written", "read_as"), [("10:30", "630"), ("9:15", "555")])
def test_config_time_without_quotes_explained(tmp_path: Path, database_url: str,
                                              written: str, read_as: str) -> None:
    path = write_config(tmp_path, database_url, daily_summary={"at": "08:00"})
    text = path.read_text(encoding="utf-8")
    assert text.count("08:00") == 1
    path.write_text(re.sub(r"""['"]?08:00['"]?""", written, text), encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert f"at: {written}\n" in path.read_text(encoding="utf-8")
    assert '"10:30"' in str(caught.value)
    assert read_as in str(caught.value)


def test_summary_user_reference_opens_ticket(tmp_path: Path,
                                                             database_url: str) -> None:
    desk = summary_desk(tmp_path, database_url)
    ticket(desk, 101, assignee="marek.zielinski", status="assigned")
    DailySummary(desk).run(warsaw(12, 1, 8))
    [row] = to(MAREK)

    # Only staff get summaries; a user's mail that names one is a request all the same.
    outcome = pipeline.process(desk, mail(
        sender=f"Adam Sikora <{REQUESTER}>", subject="Prośba o dostęp",
        message_id="<u1@example.org>",
        headers={"In-Reply-To": row.message_id}), "test:user")

    assert outcome.action == "create"


def test_an_agent_who_manages_a_group_gets_both_summaries(tmp_path: Path,
                                                          database_url: str) -> None:
    groups = [{"name": "pierwsza-linia", "tier": 1, "manager": MAREK}]
    agents = [{"login": "marek.zielinski", "name": "Marek Zieliński", "addresses": [MAREK],
               "groups": ["pierwsza-linia"]}]
    desk = make_desk(tmp_path, database_url, groups=groups, agents=agents,
                     daily_summary={"at": "08:00"})
    ticket(desk, 101, assignee="marek.zielinski", status="assigned")

    sent = DailySummary(desk).run(warsaw(12, 1, 8))

    assert sent == [MAREK, MAREK]
    assert [row.subject.split(":")[1].strip() for row in to(MAREK)] == [
        "1 zgłoszenie, po terminie", "1 otwarte zgłoszenie, po terminie"]


# --------------------------------------------------------------------------- preview


def invoke(desk, *args: str):
    from click.testing import CliRunner

    from maildesk.cli import main

    return CliRunner().invoke(main, ["--config", str(desk.config.path), *args],
                              env={"MAILDESK_LANGUAGE": "en"}, catch_exceptions=False)


def test_agents_summary_previews_without_sending(tmp_path: Path, database_url: str) -> None:
    desk = summary_desk(tmp_path, database_url, agents=False)
    ticket(desk, 101, assignee="marek.zielinski", status="assigned")

    agent = invoke(desk, "agents", "summary", MAREK)
    manager = invoke(desk, "agents", "summary", MANAGER)
    idle = invoke(desk, "agents", "summary", "ewa.nowak")
    stranger = invoke(desk, "agents", "summary", REQUESTER)

    assert agent.exit_code == 0, agent.output
    assert "Przypisane do Ciebie: 1" in agent.output
    assert "[#101]" in agent.output
    assert "Grupa pierwsza-linia (Pierwsza linia wsparcia): 1 otwarte zgłoszenie" in (
        manager.output)
    assert "ewa.nowak@example.com has no open tickets: no summary would be sent" in (
        idle.output)
    assert stranger.exit_code == 1
    assert "is neither an agent's login or address" in stranger.output
    # A preview records nothing and queues nothing.
    assert models.DailySummarySent.select().count() == 0
    assert summaries() == []
