"""The scheduler on a controllable clock: SLA warnings and breaches, reminders, auto-close.

Every test runs on SQLite and on PostgreSQL. The desk's group pierwsza-linia has the
agent marek.zielinski, the manager kierownik@example.com and escalates to druga-linia,
whose agent is ewa.nowak.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from deskfactory import make_desk, make_ticket, start_service_levels

from maildesk import lifecycle, models
from maildesk.i18n import current_language, set_language
from maildesk.lifecycle import Source
from maildesk.reasons import reason_text
from maildesk.scheduler import Scheduler

WARSAW = ZoneInfo("Europe/Warsaw")
MAREK = "marek.zielinski@example.com"
EWA = "ewa.nowak@example.com"
MANAGER = "kierownik@example.com"
REQUESTER = "adam.sikora@example.org"


def warsaw(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=WARSAW)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def p2_ticket(desk, number: int = 20801, created_at: datetime | None = None) -> models.Ticket:
    """A P2 incident of pierwsza-linia, Monday 30 November 2026 at 09:00 CET."""
    created_at = created_at or warsaw(11, 30, 9)
    ticket = make_ticket(number, "Nie działa VPN", REQUESTER)
    ticket.created_at = created_at.astimezone(UTC).replace(tzinfo=None)
    ticket.group = "pierwsza-linia"
    ticket.impact = "high"
    ticket.save()
    start_service_levels(desk, ticket)
    return models.Ticket.get_by_id(number)


def rows(kind: str) -> list[models.Outbox]:
    return list(models.Outbox.select().where(models.Outbox.kind == kind)
                .order_by(models.Outbox.id))


def recipients(kind: str) -> list[list[str]]:
    return [row.recipients.split() for row in rows(kind)]


def test_scheduler_first_response_warning_once(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    p2_ticket(desk)
    scheduler = Scheduler(desk)

    early = scheduler.run(warsaw(11, 30, 9, 40))
    first = scheduler.run(warsaw(11, 30, 9, 46))
    again = scheduler.run(warsaw(11, 30, 9, 50))

    assert early.warnings == []
    assert first.warnings == [20801]
    assert again.warnings == []
    assert recipients("escalation_warning") == [[MAREK]]
    assert rows("escalation_manager") == []
    notice = models.SlaNotice.get()
    assert (notice.target, notice.kind) == ("first_response", "warning")
    # A first-response breach does not move the ticket (next_tier_on is resolution), so
    # the warning names no next group. The manager is notified at the breach.
    warning = message_from_bytes(bytes(rows("escalation_warning")[0].raw),
                                 policy=default_policy)
    text = " ".join(warning.get_body(preferencelist=("plain",)).get_content().split())
    assert "do grupy druga-linia" not in text
    assert "kierownik grupy dostanie powiadomienie" in text


def test_scheduler_sla_log_names_target(tmp_path: Path, database_url: str,
                                        caplog: pytest.LogCaptureFixture) -> None:
    desk = make_desk(tmp_path, database_url)
    p2_ticket(desk)
    previous = current_language()
    set_language("en")
    try:
        with caplog.at_level(logging.WARNING, logger="maildesk.escalation"):
            Scheduler(desk).run(warsaw(11, 30, 9, 46))
            Scheduler(desk).run(warsaw(11, 30, 10, 1))
    finally:
        set_language(previous)

    lines = [record.getMessage() for record in caplog.records]
    warnings = [line for line in lines if "% of the first response time used, " in line]
    assert len(warnings) == 1, lines
    assert warnings[0].startswith("ticket 20801: ")
    assert warnings[0].endswith("due 2026-11-30 10:00 CET")
    assert any("the first response time was exceeded at 2026-11-30 10:00 CET" in line
               for line in lines), lines
    assert not any("first_response" in line for line in lines)


def test_scheduler_warning_without_escalation(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url, sla={"escalation": {"manager_on": "never"}})
    p2_ticket(desk)

    Scheduler(desk).run(warsaw(11, 30, 9, 46))

    warning = message_from_bytes(bytes(rows("escalation_warning")[0].raw),
                                 policy=default_policy)
    text = " ".join(warning.get_body(preferencelist=("plain",)).get_content().split())
    assert "eskalowane" not in text
    assert "przekroczenie zostanie odnotowane" in text


def test_scheduler_breach_mails_group_and_manager_once(tmp_path: Path,
                                                       database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    p2_ticket(desk)
    Scheduler(desk).run(warsaw(11, 30, 9, 46))

    report = Scheduler(desk).run(warsaw(11, 30, 10, 1))
    after_restart = Scheduler(desk).run(warsaw(11, 30, 10, 5))

    assert report.breaches == [20801]
    assert after_restart.breaches == []
    assert recipients("escalation_breach") == [[MAREK]]
    assert recipients("escalation_manager") == [[MANAGER]]
    ticket = models.Ticket.get_by_id(20801)
    assert ticket.group == "pierwsza-linia"
    breach = models.Event.get(models.Event.action == "sla_breach")
    assert json.loads(breach.detail)["target"] == "first_response"


def test_scheduler_resolution_breach_moves_to_next_tier(tmp_path: Path,
                                                        database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    ticket = p2_ticket(desk)
    lifecycle.assign(desk, ticket, "marek.zielinski", "marek.zielinski", Source.AGENT_COMMAND,
                     warsaw(11, 30, 9, 10))
    lifecycle.record_first_response(desk, ticket, "marek.zielinski", warsaw(11, 30, 9, 20))
    scheduler = Scheduler(desk)

    # 6 of 8 business hours: Monday 15:00 CET. The 8 h end on Tuesday at 09:00 CET.
    warned = scheduler.run(warsaw(11, 30, 15, 1))
    breached = scheduler.run(warsaw(12, 1, 9, 1))
    later = scheduler.run(warsaw(12, 1, 12))

    assert warned.warnings == [20801]
    assert breached.breaches == [20801]
    assert later.breaches == []
    assert later.warnings == []
    assert recipients("escalation_warning") == [[MAREK]]
    assert recipients("escalation_breach") == [[MAREK]]
    assert recipients("escalation_manager") == [[MANAGER]]
    assert recipients("dispatch") == [[EWA]]
    # The manager of the group that missed the target learns where the ticket went.
    manager_mail = message_from_bytes(bytes(rows("escalation_manager")[0].raw),
                                      policy=default_policy)
    text = " ".join(manager_mail.get_body(preferencelist=("plain",)).get_content().split())
    assert "w grupie pierwsza-linia" in text
    assert "Poziom eskalacji: 1" in text
    assert "eskalowane do grupy druga-linia" in text
    assert "Osoba przypisana (marek.zielinski) nie należy do tej grupy" in text
    breach_mail = message_from_bytes(bytes(rows("escalation_breach")[0].raw),
                                     policy=default_policy)
    breach_text = " ".join(
        breach_mail.get_body(preferencelist=("plain",)).get_content().split())
    assert "przypisanie zostaje usunięte" in breach_text
    moved = models.Ticket.get_by_id(20801)
    assert moved.group == "druga-linia"
    assert moved.assignee is None
    assert moved.status == "new"
    assert moved.escalation_level == 1
    assert [json.loads(event.detail)["kind"] for event in models.Event.select().where(
        models.Event.action == "escalated").order_by(models.Event.id)] == [
        "hierarchical", "functional"]


def test_scheduler_sla_mails_name_time_zone(tmp_path: Path, database_url: str) -> None:
    """A due time in the hour that Warsaw repeats in autumn reads with its zone."""
    desk = make_desk(tmp_path, database_url)
    # P1 (around the clock) on Saturday 24 October 2026 at 22:30 CEST. The first response
    # is due 30 minutes later, at 23:00 CEST. Resolution is due 4 hours later, at 00:30
    # UTC, which Warsaw shows as the first of its two 02:30 (CEST).
    ticket = p2_ticket(desk, created_at=warsaw(10, 24, 22, 30))
    lifecycle.set_priority(desk, ticket, "marek.zielinski", Source.AGENT_COMMAND,
                           warsaw(10, 24, 22, 31), urgency="high")
    assert models.Ticket.get_by_id(20801).resolution_due == datetime(2026, 10, 25, 0, 30)

    Scheduler(desk).run(datetime(2026, 10, 25, 1, 0, tzinfo=UTC))

    breaches = [message_from_bytes(bytes(row.raw), policy=default_policy).get_body(
        ("plain",)).get_content() for row in rows("escalation_breach")]
    texts = [" ".join(text.split()) for text in breaches]
    assert "termin minął 24 października 2026 r., 23:00 CEST." in texts[0]
    assert "termin minął 25 października 2026 r., 02:30 CEST." in texts[1]
    manager = " ".join(message_from_bytes(bytes(rows("escalation_manager")[-1].raw),
                                          policy=default_policy).get_body(
        ("plain",)).get_content().split())
    assert "Czas rozwiązania: termin 25 października 2026 r., 02:30 CEST" in manager
    dispatch = " ".join(message_from_bytes(bytes(rows("dispatch")[0].raw),
                                           policy=default_policy).get_body(
        ("plain",)).get_content().split())
    assert "Termin rozwiązania: 25 października 2026 r., 02:30 CEST" in dispatch


def test_scheduler_manager_on_warning(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url, sla={"escalation": {"manager_on": "warning",
                                                                 "next_tier_on": []}})
    p2_ticket(desk)

    # Each warning and each breach of the two targets in a run of its own.
    for moment in (warsaw(11, 30, 9, 46), warsaw(11, 30, 10, 1), warsaw(11, 30, 15, 1),
                   warsaw(12, 1, 9, 1)):
        Scheduler(desk).run(moment)

    assert recipients("escalation_manager") == [[MANAGER], [MANAGER], [MANAGER], [MANAGER]]
    assert models.Ticket.get_by_id(20801).group == "pierwsza-linia"


def test_scheduler_sla_log_in_polish(tmp_path: Path, database_url: str,
                                     caplog: pytest.LogCaptureFixture) -> None:
    # The target is named in the sentence, not behind a bare "limit" in brackets.
    desk = make_desk(tmp_path, database_url)
    p2_ticket(desk)
    previous = current_language()
    set_language("pl")
    try:
        with caplog.at_level(logging.INFO, logger="maildesk.escalation"):
            Scheduler(desk).run(warsaw(11, 30, 10, 1))
    finally:
        set_language(previous)

    lines = [record.getMessage() for record in caplog.records]
    assert any("bez ostrzeżenia SLA, bo czas pierwszej odpowiedzi minął już "
               "2026-11-30 10:00 CET" in line for line in lines), lines
    assert any("przekroczono czas pierwszej odpowiedzi, termin minął 2026-11-30 10:00 CET"
               in line for line in lines), lines
    assert not any("limit (" in line for line in lines), lines


def test_scheduler_skips_warning_of_a_passed_target(tmp_path: Path,
                                                    database_url: str) -> None:
    """A run after both the warning and the target sends the breach notice alone."""
    desk = make_desk(tmp_path, database_url, sla={"escalation": {"manager_on": "warning",
                                                                 "next_tier_on": []}})
    p2_ticket(desk)

    first = Scheduler(desk).run(warsaw(11, 30, 10, 1))
    again = Scheduler(desk).run(warsaw(11, 30, 10, 30))

    assert first.warnings == []
    assert first.breaches == [20801]
    assert again.warnings == []
    assert again.breaches == []
    assert rows("escalation_warning") == []
    assert recipients("escalation_breach") == [[MAREK]]
    assert recipients("escalation_manager") == [[MANAGER]]
    events = [entry.action for entry in models.Event.select().where(
        models.Event.ticket == 20801).order_by(models.Event.id)]
    assert "sla_warning" not in events
    assert events.count("sla_breach") == 1


def test_scheduler_no_warning_for_met_or_paused(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    responded = p2_ticket(desk, 20801)
    lifecycle.record_first_response(desk, responded, "marek.zielinski", warsaw(11, 30, 9, 5))
    waiting = p2_ticket(desk, 20802)
    lifecycle.transition(desk, waiting, "pending", "marek.zielinski", Source.AGENT_COMMAND,
                         warsaw(11, 30, 9, 5))

    report = Scheduler(desk).run(warsaw(11, 30, 9, 59))

    assert report.warnings == []
    assert rows("escalation_warning") == []


def test_scheduler_sends_reminders_then_resolves(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url, sla={"pending": {
        "reminder_interval": "2d", "max_reminders": 2, "resolve_unanswered": True}})
    ticket = p2_ticket(desk)
    lifecycle.transition(desk, ticket, "pending", "marek.zielinski", Source.AGENT_COMMAND,
                         warsaw(11, 30, 10))
    scheduler = Scheduler(desk)

    none_yet = scheduler.run(warsaw(12, 2, 9, 59))
    first = scheduler.run(warsaw(12, 2, 10, 1))
    repeated = scheduler.run(warsaw(12, 2, 10, 2))
    second = scheduler.run(warsaw(12, 4, 10, 2))
    last = scheduler.run(warsaw(12, 6, 10, 3))

    assert none_yet.reminders == []
    assert first.reminders == [20801]
    assert repeated.reminders == []
    assert second.reminders == [20801]
    assert last.resolved == [20801]
    assert len(rows("pending_reminder")) == 2
    assert len(rows("status_resolved")) == 1
    resolved = models.Ticket.get_by_id(20801)
    assert resolved.status == "resolved"
    assert resolved.pending_reminder_due is None
    assert resolved.reminders_sent == 2


def test_scheduler_overlapping_runs_remind_once(tmp_path: Path, database_url: str) -> None:
    """A run that listed a due reminder before another run sent it does not send it again."""
    desk = make_desk(tmp_path, database_url)
    ticket = p2_ticket(desk)
    lifecycle.transition(desk, ticket, "pending", "marek.zielinski", Source.AGENT_COMMAND,
                         warsaw(11, 30, 10))
    # The first reminder is due two days later, on Wednesday 2 December at 10:00.
    now = warsaw(12, 2, 10, 1)
    first, second = Scheduler(desk), Scheduler(desk)
    handle = first._each

    def after_second_run(ticket, report, work):
        # The second run starts and ends while the first one works from its old list.
        second.run(now)
        return handle(ticket, report, work)

    first._each = after_second_run  # type: ignore[method-assign]
    report = first.run(now)

    assert report.reminders == []
    assert len(rows("pending_reminder")) == 1
    assert models.Ticket.get_by_id(20801).reminders_sent == 1


def test_scheduler_without_reminders(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url, sla={"pending": {"reminder_interval": "never"}})
    ticket = p2_ticket(desk)
    lifecycle.transition(desk, ticket, "pending", "marek.zielinski", Source.AGENT_COMMAND,
                         warsaw(11, 30, 10))

    report = Scheduler(desk).run(warsaw(12, 30, 10))

    assert report.reminders == []
    assert models.Ticket.get_by_id(20801).pending_reminder_due is None


def test_scheduler_auto_closes_resolved_once(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url, sla={"auto_close_after": "3d"})
    ticket = p2_ticket(desk)
    lifecycle.transition(desk, ticket, "resolved", "marek.zielinski", Source.AGENT_COMMAND,
                         warsaw(11, 30, 11))
    scheduler = Scheduler(desk)

    early = scheduler.run(warsaw(12, 3, 10, 59))
    closing = scheduler.run(warsaw(12, 3, 11, 1))
    again = scheduler.run(warsaw(12, 4, 11))

    assert early.closed == []
    assert closing.closed == [20801]
    assert again.closed == []
    closed = models.Ticket.get_by_id(20801)
    assert closed.status == "closed"
    assert closed.closed_at == datetime(2026, 12, 3, 10, 1)
    assert recipients("status_closed") == [[REQUESTER]]
    event = models.Event.get(models.Event.action == "status_changed",
                             models.Event.after == json.dumps("closed"))
    assert event.actor == "maildesk"
    assert json.loads(event.detail)["source"] == "scheduler"
    # The history keeps the reason's msgid, so each reader sees it in their language;
    # the notice to the requester is written in the ticket's language.
    previous = current_language()
    try:
        set_language("en")
        english = reason_text(json.loads(event.detail))
        set_language("pl")
        polish = reason_text(json.loads(event.detail))
    finally:
        set_language(previous)
    assert english == ("Closed automatically: the ticket stayed resolved for the agreed time, "
                       "with no new request.")
    assert polish == ("Zamknięte automatycznie: zgłoszenie pozostawało rozwiązane przez "
                      "ustalony czas i nie było nowej prośby.")
    notice = models.Outbox.get(models.Outbox.kind == "status_closed")
    text = message_from_bytes(bytes(notice.raw), policy=default_policy)
    body = text.get_body(preferencelist=("plain",)).get_content()
    assert "Zamknięte automatycznie: zgłoszenie pozostawało rozwiązane" in " ".join(body.split())


def test_scheduler_call_waits_for_interval(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    clock = FakeClock(warsaw(11, 30, 9))
    scheduler = Scheduler(desk, clock, interval=timedelta(minutes=5))

    first = scheduler()
    clock.now += timedelta(minutes=4)
    skipped = scheduler()
    clock.now += timedelta(minutes=1)
    second = scheduler()

    assert first is not None
    assert skipped is None
    assert second is not None


def test_scheduler_runs_after_clock_goes_back(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    clock = FakeClock(warsaw(11, 30, 9, 40))
    scheduler = Scheduler(desk, clock, interval=timedelta(minutes=1))
    scheduler()
    # The clock was an hour fast, and NTP sets it right.
    clock.now = warsaw(11, 30, 8, 40)
    after_jump = scheduler()
    # A ticket made after the correction: its first-response warning is due at 09:25.
    p2_ticket(desk, created_at=warsaw(11, 30, 8, 40))
    clock.now = warsaw(11, 30, 9, 26)

    at_warning = scheduler()

    assert at_warning is not None
    assert at_warning.warnings == [20801]
    assert after_jump is not None


def test_scheduler_uses_indexed_columns(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    indexed = {index.columns[0] for index in models.database_proxy.obj.get_indexes("ticket")
               if len(index.columns) == 1}

    assert {"first_response_due", "resolution_due", "first_response_warning_due",
            "resolution_warning_due", "pending_reminder_due", "auto_close_due"} <= indexed
    assert desk is not None


def test_scheduler_mail_reaches_smtp_once(tmp_path: Path, database_url: str, smtp) -> None:
    from maildesk.outbox import Sender

    desk = make_desk(tmp_path, database_url, smtp={
        "transport": "smtp", "host": smtp.host, "port": smtp.port, "security": "none"})
    p2_ticket(desk)
    sender = Sender(desk.config.smtp)

    Scheduler(desk).run(warsaw(11, 30, 9, 46))
    Scheduler(desk).run(warsaw(11, 30, 10, 1))
    sender.deliver_due()
    delivered = smtp.wait_for(3)
    Scheduler(desk).run(warsaw(11, 30, 10, 30))
    sender.deliver_due()

    assert len(smtp.deliveries) == 3
    by_subject = {delivery.message["Subject"]: delivery.rcpt_tos for delivery in delivered}
    assert by_subject == {
        "[#20801] Ostrzeżenie SLA (75%): Nie działa VPN": (MAREK,),
        "[#20801] Przekroczenie SLA: Nie działa VPN": (MAREK,),
        "[#20801] Eskalacja do kierownika: Nie działa VPN": (MANAGER,),
    }
    assert all(delivery.message["Auto-Submitted"] == "auto-replied" for delivery in delivered)


def test_scheduler_manager_reason_in_mail_language(tmp_path: Path, database_url: str,
                                                   monkeypatch) -> None:
    """An admin's MAILDESK_LANGUAGE=en does not put English into the desk's Polish mail."""
    monkeypatch.setenv("MAILDESK_LANGUAGE", "en")
    desk = make_desk(tmp_path, database_url)
    p2_ticket(desk)
    Scheduler(desk).run(warsaw(11, 30, 9, 46))

    Scheduler(desk).run(warsaw(11, 30, 10, 1))

    row = rows("escalation_manager")[0]
    text = message_from_bytes(bytes(row.raw), policy=default_policy).get_body(
        ("plain",)).get_content()
    assert "przekroczony czas pierwszej odpowiedzi." in text
