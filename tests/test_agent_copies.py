"""Copies of an agent's mail under one Message-ID, on SQLite and PostgreSQL.

The copy that the desk acts on as the agent's authenticated mail makes every later mail
under its sender and Message-ID a duplicate, so its commands run once. A copy that
comes first and is not acted on (it failed authentication, a mailing list changed it,
or someone forged it) must not make the agent's own mail a duplicate.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from deskfactory import mail
from test_agents_dkim import agent_raw, lookup_for, make_signing_key, signed
from test_conversation import (
    EWA,
    MAREK,
    REPLY,
    agent_mail,
    conversation_desk,
    events,
    loads,
    open_ticket,
    outbox,
    process,
    reload,
)

from maildesk import models

MESSAGE_ID = "<a1@mail.example.com>"
COMMAND_REPLY = "#status w realizacji\n\nDzień dobry, już sprawdzam."
LIST_FAILURE = ("mx.example.com; dkim=fail header.d=example.com; "
                "dmarc=fail header.from=example.com")


def entries(message_id: str = MESSAGE_ID) -> list[models.Message]:
    return list(models.Message.select().where(models.Message.message_id == message_id)
                .order_by(models.Message.id))


def list_copy(ticket: models.Ticket, ack: str, body: str = COMMAND_REPLY) -> bytes:
    """Return the agent's mail as a mailing list passes it on: a subject prefix and a
    footer, so the signature no longer verifies."""
    return mail(sender=MAREK, subject=f"[it-team] Re: [#{ticket.id}] Drukarka nie drukuje",
                body=body + "\n\n_______________\nit-team mailing list\n",
                message_id=MESSAGE_ID,
                headers={"In-Reply-To": ack, "References": ack,
                         "Authentication-Results": LIST_FAILURE})


# --------------------------------------------------------------------------- a copy first


def test_forged_copy_first_does_not_block(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    process(desk, agent_mail("x", ack, authentication=None, message_id=MESSAGE_ID))

    outcome = process(desk, agent_mail(COMMAND_REPLY, ack, message_id=MESSAGE_ID))

    assert outcome.action == "append"
    assert reload(ticket).status == "in_progress"
    assert len(outbox("reply")) == 1
    assert [entry.kind for entry in entries()] == ["discarded", "agent_reply"]


def test_list_copy_first_does_not_block(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    process(desk, list_copy(ticket, ack), "test:list")

    outcome = process(desk, agent_mail(COMMAND_REPLY, ack, message_id=MESSAGE_ID),
                      "test:direct")

    assert outcome.action == "append"
    assert reload(ticket).status == "in_progress"
    assert len(outbox("reply")) == 1


def test_held_copy_superseded_by_genuine(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    process(desk, list_copy(ticket, ack), "test:list")
    held = entries()[0]
    assert held.kind == "held"

    process(desk, agent_mail(COMMAND_REPLY, ack, message_id=MESSAGE_ID), "test:direct")

    genuine = entries()[1]
    assert models.Message.get_by_id(held.id).kind == "discarded"
    superseded = events("held_superseded")
    assert len(superseded) == 1
    assert superseded[0].actor == "marek.zielinski"
    assert superseded[0].ticket_id == ticket.id
    detail = loads(superseded[0].detail)
    assert detail["entry"] == held.id
    assert detail["by_entry"] == genuine.id
    assert detail["reason"] == ("the agent's authenticated mail under the same Message-ID "
                                f"was accepted: {MESSAGE_ID}")


def test_held_copy_fetched_again_is_duplicate(tmp_path: Path, database_url: str) -> None:
    # The source hands over the same mail again when the desk stopped after the commit
    # and before the source removed the mail.
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    copy = list_copy(ticket, ack)
    process(desk, copy, "test:list")

    again = process(desk, copy, "test:list-again")

    assert again.action == "duplicate"
    assert [entry.kind for entry in entries()] == ["held"]
    assert len(outbox("command_error")) == 1


def test_second_failed_copy_is_held_too(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    process(desk, list_copy(ticket, ack), "test:list")

    other = process(desk, agent_mail("y", ack, authentication=None, message_id=MESSAGE_ID))

    assert other.action == "append"
    assert [entry.kind for entry in entries()] == ["held", "held"]
    assert reload(ticket).status == "new"


def test_held_copy_on_other_ticket_stays(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    first, first_ack = open_ticket(desk)
    second, second_ack = open_ticket(desk, message_id="<m2@example.org>")
    process(desk, agent_mail("x", second_ack, authentication=None, message_id=MESSAGE_ID))

    process(desk, agent_mail(COMMAND_REPLY, first_ack, message_id=MESSAGE_ID))

    assert reload(first).status == "in_progress"
    held, genuine = entries()
    assert (held.ticket_id, held.kind) == (second.id, "held")
    assert (genuine.ticket_id, genuine.kind) == (first.id, "agent_reply")


def test_forged_new_ticket_does_not_block(tmp_path: Path, database_url: str) -> None:
    # A mail from an agent's address that names no ticket opens one like anyone's mail.
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    opened = process(desk, mail(sender=MAREK, subject="Nowy serwer", body="Proszę o serwer.",
                                message_id=MESSAGE_ID))
    assert opened.action == "create"

    outcome = process(desk, agent_mail(COMMAND_REPLY, ack, message_id=MESSAGE_ID))

    assert outcome.action == "append"
    assert reload(ticket).status == "in_progress"


# --------------------------------------------------------------------------- replay protection


def test_forged_copy_after_genuine_is_duplicate(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    process(desk, agent_mail(COMMAND_REPLY, ack, message_id=MESSAGE_ID))

    forged = process(desk, agent_mail("#status rozwiązane\n", ack, authentication=None,
                                      message_id=MESSAGE_ID))

    assert forged.action == "duplicate"
    assert reload(ticket).status == "in_progress"
    assert [entry.kind for entry in entries()] == ["agent_reply"]
    assert outbox("command_error") == []


def test_list_copy_after_genuine_is_duplicate(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    process(desk, agent_mail(COMMAND_REPLY, ack, message_id=MESSAGE_ID), "test:direct")

    copy = process(desk, list_copy(ticket, ack), "test:list")

    assert copy.action == "duplicate"
    assert [entry.kind for entry in entries()] == ["agent_reply"]


def test_authenticated_copy_runs_commands_once(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    process(desk, agent_mail("#status w realizacji\n\n" + REPLY, ack, message_id=MESSAGE_ID))
    # Someone sets the status back. A second authenticated copy must not set it again.
    models.Ticket.update(status="new").where(models.Ticket.id == ticket.id).execute()

    again = process(desk, agent_mail("#status  w realizacji\n\n" + REPLY, ack,
                                     message_id=MESSAGE_ID), "test:replay")

    assert again.action == "duplicate"
    assert reload(ticket).status == "new"
    assert len(outbox("reply")) == 1


def test_copy_after_genuine_after_held_is_duplicate(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    copy = list_copy(ticket, ack)
    process(desk, copy, "test:list")
    process(desk, agent_mail(COMMAND_REPLY, ack, message_id=MESSAGE_ID), "test:direct")

    again = process(desk, copy, "test:list-again")
    replay = process(desk, agent_mail(COMMAND_REPLY + " ", ack, message_id=MESSAGE_ID),
                     "test:replay")

    assert again.action == "duplicate"
    assert replay.action == "duplicate"
    assert [entry.kind for entry in entries()] == ["discarded", "agent_reply"]
    assert len(outbox("reply")) == 1


def test_invalid_commands_copy_is_duplicate(tmp_path: Path, database_url: str) -> None:
    # The agent's authenticated mail was refused for an invalid command, and its
    # command_error requests a corrected mail under a new Message-ID. Every authenticated
    # copy carries the same signed commands, so a later one is a duplicate.
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    process(desk, agent_mail("#priorytet 7\n\n" + REPLY, ack, message_id=MESSAGE_ID))

    again = process(desk, agent_mail("#priorytet  7\n\n" + REPLY, ack, message_id=MESSAGE_ID),
                    "test:replay")

    assert again.action == "duplicate"
    assert [entry.kind for entry in entries()] == ["held"]
    assert len(outbox("command_error")) == 1


def test_user_mail_reusing_message_id_unchanged(tmp_path: Path, database_url: str) -> None:
    # Mail from anyone but an agent: a different mail under a Message-ID is its own.
    desk = conversation_desk(tmp_path, database_url)
    open_ticket(desk)

    copy = process(desk, mail(), "test:copy")
    other = process(desk, mail(subject="Skaner nie skanuje"), "test:other")

    assert copy.action == "duplicate"
    assert other.action == "create"


# --------------------------------------------------------------------------- DKIM


@pytest.fixture(scope="module")
def signing_key() -> tuple[bytes, bytes]:
    return make_signing_key()


def test_dkim_list_copy_then_signed_mail(tmp_path: Path, database_url: str,
                                         signing_key: tuple[bytes, bytes]) -> None:
    private, record = signing_key
    desk = conversation_desk(tmp_path, database_url, commands={"authentication": "dkim"})
    desk.dns_txt = lookup_for(record)
    ticket, ack = open_ticket(desk)
    subject = f"Re: [#{ticket.id}] Drukarka nie drukuje"
    genuine = signed(agent_raw(body=COMMAND_REPLY + "\n", in_reply_to=ack, subject=subject),
                     private)
    # The list adds a prefix to the signed subject and a footer to the signed body.
    relayed = genuine.replace(b"Subject: Re:", b"Subject: [it-team] Re:")
    relayed += b"\r\n_______________\r\nit-team mailing list\r\n"

    process(desk, relayed, "test:list")
    outcome = process(desk, genuine, "test:direct")
    # Relaxed header canonicalization ignores the second space: the signature verifies.
    replay = process(desk, genuine.replace(b"Subject: Re:", b"Subject: Re: "), "test:replay")

    assert outcome.action == "append"
    assert replay.action == "duplicate"
    assert reload(ticket).status == "in_progress"
    assert len(outbox("reply")) == 1
    kinds = [entry.kind for entry in entries("<d1@mail.example.com>")]
    assert kinds == ["discarded", "agent_reply"]
    assert [loads(event.detail)["message_id"] for event in events("command_rejected")] == [
        "<d1@mail.example.com>"]


# --------------------------------------------------------------------------- copies that look alike


def test_copy_same_text_is_not_repeat(tmp_path: Path, database_url: str) -> None:
    # A list that adds no footer keeps the text, but its copy failed authentication and
    # was held. The agent's own mail is no automatic repeat of that copy.
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    copy = agent_mail(REPLY, ack, message_id=MESSAGE_ID, authentication=LIST_FAILURE)
    process(desk, copy.replace(b"Subject: Re:", b"Subject: [it-team] Re:"), "test:list")

    outcome = process(desk, agent_mail(REPLY, ack, message_id=MESSAGE_ID), "test:direct")

    assert outcome.action == "append"
    assert [entry.kind for entry in entries()] == ["discarded", "agent_reply"]
    assert len(outbox("reply")) == 1
    assert events("repeated_text_ignored") == []


def test_list_copy_reference_not_recorded(tmp_path: Path, database_url: str) -> None:
    # A list's List-Id makes its copy of an agent's note an automatic reply. The
    # Message-ID must then name the note, so that a colleague's reply to the list copy
    # stays internal.
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    note = "#notatka\n\nDrukarka czeka na toner, klientce jeszcze nie piszę."
    copy = list_copy(ticket, ack, body=note).replace(
        b"Message-ID:", b"List-Id: <it-team.example.com>\r\nMessage-ID:")
    process(desk, copy, "test:list")
    process(desk, agent_mail(note, ack, message_id=MESSAGE_ID), "test:direct")

    process(desk, agent_mail("Zamówię toner jutro rano.", MESSAGE_ID, sender=EWA,
                             ticket=ticket.id, message_id="<e1@mail.example.com>"))

    assert [entry.kind for entry in entries()] == ["auto_reply", "internal_note"]
    references = models.MessageReference.select().where(
        models.MessageReference.message_id == MESSAGE_ID)
    assert [row.kind for row in references] == ["internal_note"]
    assert [entry.kind for entry in entries("<e1@mail.example.com>")] == ["internal_note"]
    assert outbox("reply") == []
