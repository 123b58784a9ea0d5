"""Which references are strong evidence, and what a mail may do on a ticket it joined.

A forger with a ticket number and the requester's address can make a mail join by its
subject tag. Its Message-ID, To and Cc are then the forger's choice, so a reply to it
must not add participants, let its recipients in, rate the ticket or pass trust on.
Mail the desk sent, and mail that created a ticket or joined it by strong evidence,
keeps working as before. Every test runs the whole pipeline on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from deskfactory import mail, make_desk

from maildesk import models, pipeline
from maildesk.desk import Desk

REQUESTER = "Zofia Wiśniewska <zofia.wisniewska@example.org>"
REQUESTER_ADDRESS = "zofia.wisniewska@example.org"
COLLEAGUE = "Adam Sikora <adam.sikora@example.org>"
COLLEAGUE_ADDRESS = "adam.sikora@example.org"
ATTACKER = "attacker@evil.example"
SECOND_ATTACKER = "helper@evil.example"
MAREK = "Marek Zieliński <marek.zielinski@example.com>"
PASS = ("mx.example.com; dkim=pass header.d=example.com header.s=sel1; "
        "dmarc=pass header.from=example.com")
COMMANDS = {"trusted_authserv_ids": ["mx.example.com"]}


# --------------------------------------------------------------------------- helpers


def trust_desk(tmp_path: Path, database_url: str, **commands: Any) -> Desk:
    return make_desk(tmp_path, database_url, commands={**COMMANDS, **commands})


def open_ticket(desk: Desk, cc: str | None = None) -> tuple[int, str]:
    """The requester writes <m1@example.org>; return the ticket and its acknowledgement."""
    outcome = pipeline.process(desk, mail(sender=REQUESTER, message_id="<m1@example.org>",
                                          headers={"Cc": cc} if cc else None), "test:open")
    ack = models.Outbox.get(models.Outbox.ticket == outcome.ticket,
                            models.Outbox.kind == "ack")
    return outcome.ticket, ack.message_id


def user_mail(number: int | None, message_id: str, *, sender: str = REQUESTER,
              body: str | None = None, in_reply_to: str | None = None,
              references: str | None = None, to: str = "helpdesk@example.com",
              cc: str | None = None) -> bytes:
    """A user's mail, tagged when ``number`` is given; References defaults to In-Reply-To.

    The default text differs per mail, because the desk takes a text repeated within a
    day for an automatic reply, which adds nobody.
    """
    if body is None:
        body = f"Uzupełniam zgłoszenie ({message_id}).\n"
    headers: dict[str, str] = {}
    if in_reply_to:
        headers["In-Reply-To"] = in_reply_to
        headers["References"] = references or in_reply_to
    if cc:
        headers["Cc"] = cc
    subject = f"Re: [#{number}] Drukarka nie drukuje" if number else "Re: Drukarka nie drukuje"
    return mail(sender=sender, to=to, subject=subject, body=body, message_id=message_id,
                headers=headers)


def agent_reply(desk: Desk, number: int, body: str, message_id: str) -> None:
    """Marek replies on the ticket by its tag, authenticated."""
    pipeline.process(desk, mail(sender=MAREK, subject=f"Re: [#{number}] Drukarka nie drukuje",
                                body=body, message_id=message_id,
                                headers={"Authentication-Results": PASS}), "test:agent")


def participants(number: int) -> set[str]:
    return {row.contact.address for row in
            models.Participant.select().where(models.Participant.ticket == number)}


def relays() -> list[models.Outbox]:
    return list(models.Outbox.select().where(models.Outbox.kind == "reply")
                .order_by(models.Outbox.id))


def received_by(address: str) -> list[models.Outbox]:
    return [row for row in models.Outbox.select() if f" {address} " in row.recipients]


def reference(message_id: str) -> models.MessageReference:
    return models.MessageReference.get(models.MessageReference.message_id == message_id)


def evidence_of(message_id: str) -> str:
    for event in models.Event.select().where(models.Event.action == "message_added"):
        detail = json.loads(event.detail)
        if detail["message_id"] == message_id:
            return str(detail["evidence"])
    raise AssertionError(f"no message_added event for {message_id}")


def entry_ticket(message_id: str) -> int:
    return int(models.Message.get(models.Message.message_id == message_id).ticket_id)


def resolve(desk: Desk, number: int) -> str:
    """Marek resolves the ticket with a relayed reply; return the relay's Message-ID."""
    agent_reply(desk, number, "#status rozwiązane\n\nWymieniliśmy bęben.",
                "<resolve@mail.example.com>")
    assert models.Ticket.get_by_id(number).status == "resolved"
    return relays()[-1].message_id


# --------------------------------------------------------------------------- the attack


def test_reply_to_forged_tag_mail_adds_nobody(tmp_path: Path, database_url: str) -> None:
    desk = trust_desk(tmp_path, database_url)
    number, _ack = open_ticket(desk)
    pipeline.process(desk, user_mail(number, "<atk1@evil.example>"), "test:atk1")

    outcome = pipeline.process(desk, user_mail(None, "<atk2@evil.example>",
                                               in_reply_to="<atk1@evil.example>",
                                               cc=ATTACKER), "test:atk2")
    agent_reply(desk, number, "Nowe hasło tymczasowe: Wiosna2026!", "<a1@mail.example.com>")

    assert outcome.ticket == number
    assert evidence_of("<atk2@evil.example>") == "untrusted_reference"
    assert participants(number) == set()
    assert len(relays()) == 1
    assert received_by(ATTACKER) == []


@pytest.mark.parametrize("header", ["To", "Cc"])
def test_recipient_of_forged_mail_cannot_join(tmp_path: Path, database_url: str,
                                              header: str) -> None:
    desk = trust_desk(tmp_path, database_url)
    number, _ack = open_ticket(desk)
    if header == "To":
        forged = user_mail(number, "<atk1@evil.example>", to=f"helpdesk@example.com, {ATTACKER}")
    else:
        forged = user_mail(number, "<atk1@evil.example>", cc=ATTACKER)
    pipeline.process(desk, forged, "test:atk1")

    outcome = pipeline.process(desk, user_mail(number, "<atk2@evil.example>", sender=ATTACKER,
                                               in_reply_to="<atk1@evil.example>",
                                               cc=SECOND_ATTACKER), "test:atk2")
    agent_reply(desk, number, "Nowe hasło tymczasowe: Wiosna2026!", "<a1@mail.example.com>")

    assert outcome.ticket != number
    assert entry_ticket("<atk2@evil.example>") != number
    assert participants(number) == set()
    rejected = [json.loads(event.detail)["reason"] for event in models.Event.select().where(
        models.Event.action == "thread_link_rejected", models.Event.ticket == number)]
    assert any("<atk1@evil.example>" in reason for reason in rejected)
    assert [row.recipients.split() for row in relays()] == [[REQUESTER_ADDRESS]]


def test_forged_mail_is_stored_untrusted(tmp_path: Path, database_url: str) -> None:
    desk = trust_desk(tmp_path, database_url)
    number, ack = open_ticket(desk)

    pipeline.process(desk, user_mail(number, "<atk1@evil.example>", cc=ATTACKER), "test:atk1")
    pipeline.process(desk, user_mail(None, "<atk2@evil.example>",
                                     in_reply_to="<atk1@evil.example>"), "test:atk2")

    assert reference("<atk1@evil.example>").trusted is False
    assert reference("<atk2@evil.example>").trusted is False
    assert reference("<m1@example.org>").trusted is True
    assert reference(ack).trusted is True


def test_untrusted_chain_never_adds_anyone(tmp_path: Path, database_url: str) -> None:
    desk = trust_desk(tmp_path, database_url)
    number, _ack = open_ticket(desk)
    pipeline.process(desk, user_mail(number, "<atk1@evil.example>"), "test:atk1")
    pipeline.process(desk, user_mail(None, "<atk2@evil.example>",
                                     in_reply_to="<atk1@evil.example>"), "test:atk2")

    outcome = pipeline.process(desk, user_mail(None, "<atk3@evil.example>",
                                               in_reply_to="<atk2@evil.example>",
                                               cc=ATTACKER), "test:atk3")

    assert outcome.ticket == number
    assert evidence_of("<atk3@evil.example>") == "untrusted_reference"
    assert participants(number) == set()


def test_trusted_reference_wins_over_untrusted(tmp_path: Path, database_url: str) -> None:
    # The requester's client lists an untrusted mail first and the acknowledgement after.
    desk = trust_desk(tmp_path, database_url)
    number, ack = open_ticket(desk)
    pipeline.process(desk, user_mail(number, "<u1@example.org>"), "test:u1")

    pipeline.process(desk, user_mail(None, "<u2@example.org>", in_reply_to="<u1@example.org>",
                                     references=f"{ack} <u1@example.org>", cc=COLLEAGUE),
                     "test:u2")

    assert evidence_of("<u2@example.org>") == "reference"
    assert participants(number) == {COLLEAGUE_ADDRESS}


# --------------------------------------------------------------------------- ratings


def test_forged_rating_by_tag_not_counted(tmp_path: Path, database_url: str) -> None:
    desk = trust_desk(tmp_path, database_url)
    number, _ack = open_ticket(desk)
    resolve(desk, number)

    pipeline.process(desk, user_mail(number, "<atk1@evil.example>", body="1\n"), "test:atk1")

    ticket = models.Ticket.get_by_id(number)
    assert ticket.satisfaction is None
    assert ticket.status == "resolved"
    assert models.Event.select().where(models.Event.action == "reply_without_action").count() == 1


def test_participant_rating_not_counted(tmp_path: Path, database_url: str) -> None:
    desk = trust_desk(tmp_path, database_url)
    number, _ack = open_ticket(desk, cc=COLLEAGUE)
    relay = resolve(desk, number)

    pipeline.process(desk, user_mail(None, "<p1@example.org>", sender=COLLEAGUE, body="2\n",
                                     in_reply_to=relay), "test:p1")

    ticket = models.Ticket.get_by_id(number)
    assert entry_ticket("<p1@example.org>") == number
    assert ticket.satisfaction is None
    assert ticket.status == "resolved"


def test_requester_rating_reply_counted(tmp_path: Path, database_url: str) -> None:
    desk = trust_desk(tmp_path, database_url)
    number, _ack = open_ticket(desk, cc=COLLEAGUE)
    relay = resolve(desk, number)

    pipeline.process(desk, user_mail(None, "<r1@example.org>", body="5\n", in_reply_to=relay),
                     "test:r1")

    ticket = models.Ticket.get_by_id(number)
    assert ticket.satisfaction == 5
    assert ticket.status == "resolved"


# --------------------------------------------------------------------------- reopening


def test_participant_reply_reopens_resolved(tmp_path: Path, database_url: str) -> None:
    desk = trust_desk(tmp_path, database_url)
    number, _ack = open_ticket(desk, cc=COLLEAGUE)
    relay = resolve(desk, number)

    pipeline.process(desk, user_mail(None, "<p1@example.org>", sender=COLLEAGUE,
                                     body="U mnie drukarka nadal nie drukuje.\n",
                                     in_reply_to=relay), "test:p1")

    assert models.Ticket.get_by_id(number).status != "resolved"


def test_requester_tag_reply_reopens_resolved(tmp_path: Path, database_url: str) -> None:
    # Some clients send replies without In-Reply-To and References, with the tag only.
    desk = trust_desk(tmp_path, database_url)
    number, _ack = open_ticket(desk)
    resolve(desk, number)

    pipeline.process(desk, user_mail(number, "<u1@example.org>",
                                     body="Drukarka znowu zacina papier.\n"), "test:u1")

    assert models.Ticket.get_by_id(number).status != "resolved"


# --------------------------------------------------------------------------- what keeps working


def test_reply_to_own_first_mail_adds_cc(tmp_path: Path, database_url: str) -> None:
    # Outlook's Sent Items: the requester replies to their own first mail, with no tag.
    desk = trust_desk(tmp_path, database_url)
    number, _ack = open_ticket(desk)

    outcome = pipeline.process(desk, user_mail(None, "<u1@example.org>",
                                               in_reply_to="<m1@example.org>", cc=COLLEAGUE),
                               "test:u1")

    assert outcome.ticket == number
    assert evidence_of("<u1@example.org>") == "reference"
    assert participants(number) == {COLLEAGUE_ADDRESS}


def test_reply_to_own_trusted_reply_adds_cc(tmp_path: Path, database_url: str) -> None:
    desk = trust_desk(tmp_path, database_url)
    number, ack = open_ticket(desk)
    pipeline.process(desk, user_mail(None, "<u1@example.org>", in_reply_to=ack), "test:u1")

    pipeline.process(desk, user_mail(None, "<u2@example.org>", in_reply_to="<u1@example.org>",
                                     cc=COLLEAGUE), "test:u2")

    assert reference("<u1@example.org>").trusted is True
    assert participants(number) == {COLLEAGUE_ADDRESS}


def test_reply_to_own_tag_mail_joins_weakly(tmp_path: Path, database_url: str) -> None:
    desk = trust_desk(tmp_path, database_url)
    number, _ack = open_ticket(desk)
    pipeline.process(desk, user_mail(number, "<u1@example.org>"), "test:u1")

    outcome = pipeline.process(desk, user_mail(None, "<u2@example.org>",
                                               in_reply_to="<u1@example.org>", cc=COLLEAGUE),
                               "test:u2")

    assert outcome.ticket == number
    assert participants(number) == set()


def test_colleague_reply_all_to_first_mail(tmp_path: Path, database_url: str) -> None:
    desk = trust_desk(tmp_path, database_url)
    number, _ack = open_ticket(desk, cc=COLLEAGUE)

    outcome = pipeline.process(desk, user_mail(None, "<c1@example.org>", sender=COLLEAGUE,
                                               in_reply_to="<m1@example.org>",
                                               cc="Ola <ola@example.org>"), "test:c1")

    assert outcome.ticket == number
    assert evidence_of("<c1@example.org>") == "reference"
    assert participants(number) == {COLLEAGUE_ADDRESS, "ola@example.org"}


def test_colleague_reply_all_to_relay(tmp_path: Path, database_url: str) -> None:
    desk = trust_desk(tmp_path, database_url)
    number, _ack = open_ticket(desk, cc=COLLEAGUE)
    agent_reply(desk, number, "Proszę sprawdzić kabel.", "<a1@mail.example.com>")
    relay = relays()[0]
    assert COLLEAGUE_ADDRESS in relay.recipients.split()

    outcome = pipeline.process(desk, user_mail(None, "<c1@example.org>", sender=COLLEAGUE,
                                               in_reply_to=relay.message_id,
                                               cc="Ola <ola@example.org>"), "test:c1")

    assert outcome.ticket == number
    assert participants(number) == {COLLEAGUE_ADDRESS, "ola@example.org"}


def test_cc_of_first_mail_joins_without_participants(tmp_path: Path,
                                                     database_url: str) -> None:
    # With cc_become_participants off, being in Cc of the trusted first mail still counts.
    desk = trust_desk(tmp_path, database_url, cc_become_participants=False)
    number, _ack = open_ticket(desk, cc=COLLEAGUE)

    outcome = pipeline.process(desk, user_mail(None, "<c1@example.org>", sender=COLLEAGUE,
                                               in_reply_to="<m1@example.org>"), "test:c1")

    assert outcome.ticket == number
    assert evidence_of("<c1@example.org>") == "reference"


def test_unsigned_cc_of_agent_mail_not_recipient(tmp_path: Path, database_url: str) -> None:
    # An authenticated agent's mail is trusted even when it joined by tag. But under
    # authentication_results the desk cannot tell whether Cc was signed, so whoever a
    # copy names there is no recipient of the agent's mail and cannot reply into it.
    desk = trust_desk(tmp_path, database_url)
    number, _ack = open_ticket(desk)
    pipeline.process(desk, mail(sender=MAREK, subject=f"Re: [#{number}] Drukarka nie drukuje",
                                body="Proszę o wymianę bębna.\n",
                                message_id="<a1@mail.example.com>",
                                headers={"Authentication-Results": PASS,
                                         "Cc": "serwis@vendor.example"}), "test:agent")

    outcome = pipeline.process(desk, user_mail(None, "<v1@vendor.example>",
                                               sender="serwis@vendor.example",
                                               in_reply_to="<a1@mail.example.com>"),
                               "test:vendor")

    assert reference("<a1@mail.example.com>").trusted is True
    assert outcome.action == "create"
    assert outcome.ticket != number


def test_unauthenticated_agent_mail_gives_nothing(tmp_path: Path, database_url: str) -> None:
    desk = trust_desk(tmp_path, database_url)
    number, _ack = open_ticket(desk)
    pipeline.process(desk, mail(sender=MAREK, subject=f"Re: [#{number}] Drukarka nie drukuje",
                                body="Proszę o wymianę bębna.\n",
                                message_id="<a1@evil.example>",
                                headers={"Cc": ATTACKER}), "test:forged-agent")

    outcome = pipeline.process(desk, user_mail(None, "<atk2@evil.example>", sender=ATTACKER,
                                               in_reply_to="<a1@evil.example>"), "test:atk2")

    assert outcome.ticket != number
    assert participants(number) == set()
