"""``#typ`` and ``#kategoria`` in an agent's mail, through the whole pipeline.

Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

from test_conversation import (
    agent_mail,
    conversation_desk,
    events,
    loads,
    open_ticket,
    outbox,
    process,
    reload,
    text_of,
)

from maildesk import models
from maildesk.desk import Desk

SLA = {
    "categories": {"incident": ["sieć", "drukarki"], "service_request": ["dostęp", "sprzęt"]},
    "policies": [
        {"priority": 1, "first_response": "30m", "resolution": "4h"},
        {"priority": 2, "first_response": "1h", "resolution": "8h"},
        {"priority": 3, "first_response": "4h", "resolution": "24h"},
        {"priority": 4, "first_response": "8h", "resolution": "40h"},
        {"priority": 3, "type": "service_request", "first_response": "8h",
         "resolution": "40h"},
    ],
}


def classify_desk(tmp_path: Path, database_url: str) -> Desk:
    return conversation_desk(tmp_path, database_url, sla=SLA)


def test_type_and_category_applied(tmp_path: Path, database_url: str) -> None:
    desk = classify_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    before = reload(ticket)

    process(desk, agent_mail("#typ wniosek\n#kategoria sprzet\n", ack))

    updated = reload(ticket)
    assert updated.type == "service_request"
    assert updated.category == "sprzęt"
    # The service request policy of P3 has a longer resolution target.
    assert updated.resolution_due > before.resolution_due
    classified = events("classified")
    assert [loads(event.after) for event in classified] == [
        {"type": "service_request"}, {"category": "sprzęt"}]
    assert [loads(event.before) for event in classified] == [
        {"type": "incident"}, {"category": None}]
    assert loads(classified[0].detail)["message_id"] == "<a1@mail.example.com>"
    assert loads(classified[0].detail)["source"] == "agent_command"


def test_type_and_category_confirmed(tmp_path: Path, database_url: str) -> None:
    desk = classify_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail("#type service_request\n#category dostep\n", ack))

    [confirmation] = outbox("command_confirmation")
    text = text_of(confirmation)
    assert "- typ: incydent → wniosek o usługę" in text
    assert "- kategoria: — → dostęp" in text


def test_unknown_category_rejected(tmp_path: Path, database_url: str) -> None:
    desk = classify_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail("#kategoria serwery\n\nSprawdzę to.\n", ack))

    updated = reload(ticket)
    assert updated.category is None
    assert events("classified") == []
    assert outbox("reply") == []
    [error] = outbox("command_error")
    text = text_of(error)
    assert "nie ma kategorii „serwery” dla typu incydent" in text
    assert "dostępne kategorie: sieć, drukarki" in text
    assert "#kategoria <kategoria> | brak" in text


def test_category_cleared(tmp_path: Path, database_url: str) -> None:
    desk = classify_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    process(desk, agent_mail("#kategoria sieć\n", ack))

    process(desk, agent_mail("#kategoria brak\n", ack, message_id="<a2@mail.example.com>"))

    assert reload(ticket).category is None
    assert [loads(event.after) for event in events("classified")] == [
        {"category": "sieć"}, {"category": None}]


def test_type_with_close_in_one_mail(tmp_path: Path, database_url: str) -> None:
    # The classification comes first, so the closed ticket keeps the new type.
    desk = classify_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail("#zamknij\n#typ wniosek\n", ack))

    updated = reload(ticket)
    assert updated.status == "closed"
    assert updated.type == "service_request"
    actions = [event.action for event in models.Event.select().where(
        models.Event.ticket == ticket.id).order_by(models.Event.id)]
    assert actions.index("classified") < actions.index("status_changed")


def test_closed_ticket_reclassified(tmp_path: Path, database_url: str) -> None:
    # Reports count tickets by type, so a closed ticket may still be classified right.
    desk = classify_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    process(desk, agent_mail("#zamknij\n", ack))

    outcome = process(desk, agent_mail("#typ wniosek\n", ack,
                                       message_id="<a2@mail.example.com>"))

    assert outcome.action == "append"
    updated = reload(ticket)
    assert updated.type == "service_request"
    assert updated.status == "closed"
    assert outbox("command_error") == []
