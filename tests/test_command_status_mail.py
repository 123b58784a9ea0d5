"""What the requester receives when an agent's command changes the status."""

from __future__ import annotations

from pathlib import Path

from test_conversation import (
    REQUESTER,
    agent_mail,
    conversation_desk,
    open_ticket,
    outbox,
    process,
    reload,
    sent_to,
    text_of,
)

USER = "zofia.wisniewska@example.org"


def test_bare_status_command_sends_status_notice(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk, sender=REQUESTER)

    process(desk, agent_mail("#status rozwiązane\n", ack))

    assert reload(ticket).status == "resolved"
    to_user = [row for row in sent_to(USER) if row.kind != "ack"]
    assert [row.kind for row in to_user] == ["status_resolved"]
    assert "Jak oceniasz naszą pomoc?" in text_of(to_user[0])
    assert outbox("reply") == []


def test_status_command_with_reply_sends_one_mail(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk, sender=REQUESTER)

    process(desk, agent_mail("#status rozwiązane\n\nWymieniłem toner, drukarka działa.\n", ack))

    assert reload(ticket).status == "resolved"
    to_user = [row for row in sent_to(USER) if row.kind != "ack"]
    assert [row.kind for row in to_user] == ["reply"]
    text = text_of(to_user[0])
    assert "Wymieniłem toner, drukarka działa." in text
    assert "#status" not in text
    assert "Jak oceniasz naszą pomoc?" in text


def test_pending_command_pauses_sla_clock(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk, sender=REQUESTER)

    process(desk, agent_mail("#oczekuje\n\nProszę podać numer seryjny drukarki.\n", ack))

    updated = reload(ticket)
    assert updated.status == "pending"
    assert updated.sla_paused_at is not None
    assert "czeka na Twoją odpowiedź" in text_of(outbox("reply")[0])
