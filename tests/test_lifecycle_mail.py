"""A ticket driven through its whole lifecycle by mail: the user's and the agent's.

Agent commands set the status; the SLA clock, the reminder and auto-close times
follow. Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path

from deskfactory import mail, make_desk

from maildesk import models, pipeline, statements

REQUESTER = "Zofia Wiśniewska <zofia.wisniewska@example.org>"
ADDRESS = "zofia.wisniewska@example.org"
MAREK = "Marek Zieliński <marek.zielinski@example.com>"
PASS = ("mx.example.com; dkim=pass header.d=example.com header.s=sel1; "
        "spf=pass smtp.mailfrom=example.com; dmarc=pass header.from=example.com")


def agent(body: str, number: int, message_id: str) -> bytes:
    return mail(sender=MAREK, subject=f"Re: [#{number}] Drukarka nie drukuje", body=body,
                message_id=message_id, headers={"Authentication-Results": PASS})


def user(body: str, number: int, message_id: str) -> bytes:
    """The requester's reply to the newest mail the desk sent them."""
    latest = (models.Outbox.select().where(models.Outbox.recipients.contains(f" {ADDRESS} "))
              .order_by(models.Outbox.id.desc()).first())
    headers = {"In-Reply-To": latest.message_id} if latest is not None else None
    return mail(sender=REQUESTER, subject=f"Re: [#{number}] Drukarka nie drukuje", body=body,
                message_id=message_id, headers=headers)


def state(number: int) -> tuple[str, str]:
    ticket = models.Ticket.get_by_id(number)
    return ticket.status, json.loads(ticket.sla_state)["state"]


def test_lifecycle_by_mail_through_every_status(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url,
                     commands={"trusted_authserv_ids": ["mx.example.com"]})

    created = pipeline.process(desk, mail(sender=REQUESTER), "test:1")
    number = created.ticket
    assert state(number) == ("new", "running")

    pipeline.process(desk, agent("#przypisz me", number, "<a1@example.com>"), "test:2")
    assert state(number) == ("assigned", "running")

    pipeline.process(desk, agent("#status w realizacji", number, "<a2@example.com>"), "test:3")
    assert state(number) == ("in_progress", "running")

    pipeline.process(desk, agent("#oczekuje\n\nProszę podać numer seryjny drukarki.", number,
                                 "<a3@example.com>"), "test:4")
    waiting = models.Ticket.get_by_id(number)
    assert state(number) == ("pending", "paused")
    assert waiting.pending_reminder_due is not None
    assert waiting.first_responded_at is not None

    pipeline.process(desk, user("Numer seryjny: CN-4411.", number, "<u1@example.org>"),
                     "test:5")
    assert state(number) == ("in_progress", "running")
    assert models.Ticket.get_by_id(number).pending_reminder_due is None

    pipeline.process(desk, agent("#status rozwiązane\n\nWymieniliśmy bęben.", number,
                                 "<a4@example.com>"), "test:6")
    assert state(number) == ("resolved", "resolved")
    assert models.Ticket.get_by_id(number).auto_close_due is not None

    pipeline.process(desk, user("Dzięki!", number, "<u2@example.org>"), "test:7")
    assert state(number) == ("resolved", "resolved")

    pipeline.process(desk, user("5", number, "<u3@example.org>"), "test:8")
    assert models.Ticket.get_by_id(number).satisfaction == 5
    assert state(number) == ("resolved", "resolved")

    pipeline.process(desk, user("Drukarka znowu zacina papier.", number, "<u4@example.org>"),
                     "test:9")
    assert state(number) == ("in_progress", "running")

    pipeline.process(desk, agent("#zamknij", number, "<a5@example.com>"), "test:10")
    assert state(number) == ("closed", "resolved")

    again = pipeline.process(desk, user("Znowu to samo z drukarką.", number,
                                        "<u5@example.org>"), "test:11")
    assert again.action == "create"
    assert models.Ticket.get_by_id(again.ticket).linked_ticket_id == number

    actions = [event.action for event in models.Event.select().where(
        models.Event.ticket == number).order_by(models.Event.id)]
    assert [action for action in actions if action.startswith("sla_")] == [
        "sla_start", "sla_respond", "sla_pause", "sla_resume", "sla_resolve", "sla_reopen",
        "sla_resolve"]
    assert "satisfaction_rated" in actions
    assert "reply_without_action" in actions
    assert "reopened" in actions


def test_new_ticket_inserted_with_service_levels(
        tmp_path: Path, database_url: str, monkeypatch) -> None:
    """Priority, SLA state and due times go into the INSERT; the new row is not updated."""
    desk = make_desk(tmp_path, database_url)
    texts: list[str] = []
    execute = statements._execute
    database = models.database_proxy.obj
    execute_sql = database.execute_sql
    inside = []

    def recording(database, text, params):
        # Cached statements run as EXECUTE on PostgreSQL: record their text here.
        texts.append(text)
        inside.append(True)
        try:
            return execute(database, text, params)
        finally:
            inside.pop()

    def recording_sql(sql, *args, **kwargs):
        if not inside:
            texts.append(sql)
        return execute_sql(sql, *args, **kwargs)

    monkeypatch.setattr(statements, "_execute", recording)
    monkeypatch.setattr(database, "execute_sql", recording_sql)

    created = pipeline.process(desk, mail(sender=REQUESTER, subject="Pilne: VPN nie działa"),
                               "test:1")

    ticket = models.Ticket.get_by_id(created.ticket)
    events = [event.action for event in models.Event.select().where(
        models.Event.ticket == ticket).order_by(models.Event.id)]
    assert ticket.priority in (1, 2, 3, 4, 5)
    assert json.loads(ticket.sla_state)["state"] == "running"
    assert ticket.first_response_due > ticket.created_at
    assert ticket.resolution_due > ticket.first_response_due
    assert ticket.first_response_warning_due < ticket.first_response_due
    lifecycle_events = ("created", "sla_start", "priority_set")
    assert [action for action in events if action in lifecycle_events] == list(lifecycle_events)
    inserts = [text for text in texts if text.startswith('INSERT INTO "ticket"')]
    updates = [text for text in texts if text.startswith('UPDATE "ticket"')]
    assert len(inserts) == 1
    assert updates == []


def test_agent_mail_to_closed_ticket_opens_nothing(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url,
                     commands={"trusted_authserv_ids": ["mx.example.com"]})
    number = pipeline.process(desk, mail(sender=REQUESTER), "test:1").ticket
    pipeline.process(desk, agent("#zamknij", number, "<c1@example.com>"), "test:2")
    assert state(number)[0] == "closed"

    outcome = pipeline.process(desk, agent("#status ponownie otwarte\n\nOtwieram.", number,
                                           "<c2@example.com>"), "test:3")

    assert outcome.action == "append"
    assert outcome.ticket == number
    assert models.Ticket.select().count() == 1
    assert state(number)[0] == "closed"
    errors = list(models.Outbox.select().where(models.Outbox.kind == "command_error"))
    assert [row.recipients.split() for row in errors] == [["marek.zielinski@example.com"]]
    assert "Otwieram" not in "".join(
        bytes(row.raw).decode("utf-8", "replace") for row in models.Outbox.select().where(
            models.Outbox.recipients.contains(ADDRESS)))
