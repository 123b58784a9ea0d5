"""Agents work by mail: relayed replies, internal notes, commands, who may do what.

Every test runs the whole pipeline on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import logging
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from deskfactory import mail, make_desk

from maildesk import models, pipeline
from maildesk.conversation import NotHeldError, accept_held
from maildesk.desk import Desk

REQUESTER = "Zofia Wiśniewska <zofia.wisniewska@example.org>"
MAREK = "Marek Zieliński <marek.zielinski@example.com>"
EWA = "Ewa Nowak <ewa.nowak@example.com>"
PASS = ("mx.example.com; dkim=pass header.d=example.com header.s=sel1; "
        "spf=pass smtp.mailfrom=example.com; dmarc=pass header.from=example.com")
COMMANDS = {"trusted_authserv_ids": ["mx.example.com"]}


# --------------------------------------------------------------------------- helpers


def conversation_desk(tmp_path: Path, database_url: str, **overrides: Any) -> Desk:
    commands = {**COMMANDS, **overrides.pop("commands", {})}
    return make_desk(tmp_path, database_url, commands=commands, **overrides)


def open_ticket(desk: Desk, *, cc: str | None = None, message_id: str = "<m1@example.org>",
                sender: str = REQUESTER) -> tuple[models.Ticket, str]:
    """A user writes; return the ticket and the Message-ID of its acknowledgement."""
    headers = {"Cc": cc} if cc else None
    outcome = pipeline.process(desk, mail(sender=sender, headers=headers,
                                          message_id=message_id), "test:user")
    ticket = models.Ticket.get_by_id(outcome.ticket)
    ack = models.Outbox.get(models.Outbox.ticket == ticket, models.Outbox.kind == "ack")
    return ticket, ack.message_id


def agent_mail(body: str, in_reply_to: str | None, *, sender: str = MAREK,
               ticket: int | None = None, message_id: str = "<a1@mail.example.com>",
               authentication: str | None = PASS, to: str = "helpdesk@example.com",
               headers: dict[str, str] | None = None, subject: str | None = None) -> bytes:
    """Build an agent's mail; a reply keeps the tag of its ticket.

    Mail clients keep the subject of the mail they reply to, and every subject the desk
    sends carries the tag. ``subject`` replaces the usual reply subject.
    """
    if ticket is None and in_reply_to:
        reference = models.MessageReference.get_or_none(
            models.MessageReference.message_id == in_reply_to)
        ticket = reference.ticket_id if reference is not None else None
    extra: dict[str, str] = {}
    if authentication:
        extra["Authentication-Results"] = authentication
    if in_reply_to:
        extra["In-Reply-To"] = in_reply_to
        extra["References"] = in_reply_to
    extra.update(headers or {})
    if subject is None:
        subject = (f"Re: [#{ticket}] Drukarka nie drukuje" if ticket
                   else "Re: Drukarka nie drukuje")
    return mail(sender=sender, to=to, subject=subject, body=body, message_id=message_id,
                headers=extra)


def process(desk: Desk, raw: bytes, source: str = "test:agent") -> Any:
    return pipeline.process(desk, raw, source)


def outbox(kind: str | None = None) -> list[models.Outbox]:
    query = models.Outbox.select().order_by(models.Outbox.id)
    if kind:
        query = query.where(models.Outbox.kind == kind)
    return list(query)


def sent_to(address: str) -> list[models.Outbox]:
    return [row for row in outbox() if f" {address} " in row.recipients]


def parsed(row: models.Outbox) -> EmailMessage:
    message = message_from_bytes(bytes(row.raw), policy=default_policy)
    assert isinstance(message, EmailMessage)
    return message


def text_of(row: models.Outbox) -> str:
    body = parsed(row).get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


def events(action: str) -> list[models.Event]:
    return list(models.Event.select().where(models.Event.action == action)
                .order_by(models.Event.id))


def loads(value: str | None) -> Any:
    return json.loads(value) if value is not None else None


def reload(ticket: models.Ticket) -> models.Ticket:
    return models.Ticket.get_by_id(ticket.id)


REPLY = ("Dzień dobry,\n\nwymieniliśmy toner, proszę spróbować ponownie.\n\nMarek\n\n"
         "W dniu 04.12.2026 o 09:00, Zofia Wiśniewska pisze:\n> drukarka nie drukuje.\n")


# --------------------------------------------------------------------------- relaying


def test_agent_reply_relayed_to_requester(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    outcome = process(desk, agent_mail(REPLY, ack))

    assert outcome.action == "append"
    rows = outbox("reply")
    assert len(rows) == 1
    assert rows[0].recipients.split() == ["zofia.wisniewska@example.org"]
    relayed = parsed(rows[0])
    assert relayed["From"].addresses[0].addr_spec == "helpdesk@example.com"
    assert relayed["From"].addresses[0].display_name == "Marek Zieliński"
    assert relayed["Subject"] == f"Re: [#{ticket.id}] Drukarka nie drukuje"
    assert relayed["In-Reply-To"] == "<m1@example.org>"
    assert "<m1@example.org>" in relayed["References"]
    assert ack in relayed["References"]
    assert relayed["Auto-Submitted"] is None


def agent_mail_with_files(in_reply_to: str, ticket: int) -> bytes:
    """An agent's reply with a PDF attached and a signature logo referenced by cid."""
    message = EmailMessage()
    message["From"] = MAREK
    message["To"] = "helpdesk@example.com"
    message["Subject"] = f"Re: [#{ticket}] Drukarka nie drukuje"
    message["Message-ID"] = "<files@mail.example.com>"
    message["In-Reply-To"] = in_reply_to
    message["Authentication-Results"] = PASS
    message.set_content("W załączniku instrukcja kalibracji.\n\nMarek\n")
    message.add_alternative('<p>W załączniku instrukcja kalibracji.</p>'
                            '<p>Marek<img src="cid:logo@mail.example.com"></p>',
                            subtype="html")
    message.get_payload()[1].add_related(b"\x89PNG logo", maintype="image", subtype="png",
                                         cid="<logo@mail.example.com>", filename="logo.png")
    message.add_attachment(b"%PDF-1.4 kalibracja", maintype="application", subtype="pdf",
                           filename="kalibracja-ZT410.pdf")
    forwarded = EmailMessage()
    forwarded["Subject"] = "stara"
    forwarded.set_content("treść\n")
    message.add_attachment(forwarded, filename="stara.eml")
    return message.as_bytes()


def test_agent_reply_relays_attachments(tmp_path: Path, database_url: str) -> None:
    # The user must get the file the agent attached, not only the text that names it.
    # A picture the agent's HTML shows by cid (a signature logo) is no attachment.
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail_with_files(ack, ticket.id))

    [row] = outbox("reply")
    files = {part.get_filename(): part for part in parsed(row).iter_attachments()}
    assert set(files) == {"kalibracja-ZT410.pdf", "stara.eml"}
    assert files["kalibracja-ZT410.pdf"].get_content_type() == "application/pdf"
    assert files["kalibracja-ZT410.pdf"].get_content() == b"%PDF-1.4 kalibracja"
    # RFC 2046 allows no base64 in message/rfc822, so the mail goes as a plain file.
    assert files["stara.eml"].get_content_type() == "application/octet-stream"
    assert b"Subject: stara" in files["stara.eml"].get_content()
    assert "W załączniku instrukcja kalibracji." in text_of(row)


def test_agent_reply_relays_only_new_text(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail("#status w realizacji\n\n" + REPLY, ack))

    text = text_of(outbox("reply")[0])
    assert "wymieniliśmy toner" in text
    assert "#status" not in text
    assert "pisze:" not in text
    assert "> drukarka" not in text
    assert "Authentication-Results" not in text


def test_closing_reply_names_new_ticket(tmp_path: Path, database_url: str) -> None:
    # A reply to a closed ticket opens a linked new one, so the closing mail must not
    # invite the user to "add something" to this ticket.
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail("#zamknij\n\n" + REPLY, ack))

    text = " ".join(text_of(outbox("reply")[0]).split())
    assert reload(ticket).status == "closed"
    assert "otworzymy nowe zgłoszenie, powiązane z tym" in text
    assert "zostaw w temacie" not in text


def test_status_notice_threads_on_what_the_requester_saw(tmp_path: Path,
                                                         database_url: str) -> None:
    # The closing notice to the user listed in References the agent's own mail and the
    # confirmation sent to the agent: ids the user never saw.
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail("#priorytet 2", ack, message_id="<agent-p2@mail.example.com>"))
    process(desk, agent_mail("#zamknij", ack, message_id="<agent-close@mail.example.com>"))

    notice = parsed(outbox("status_closed")[0])
    confirmation = outbox("command_confirmation")[0]
    assert notice["In-Reply-To"] == "<m1@example.org>"
    assert "<agent-p2@mail.example.com>" not in notice["References"]
    assert "<agent-close@mail.example.com>" not in notice["References"]
    assert confirmation.message_id not in notice["References"]
    assert ack in notice["References"]


def test_agent_reply_goes_to_cc_participants(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk, cc="Adam Sikora <adam.sikora@example.org>")

    process(desk, agent_mail(REPLY, ack))

    relayed = parsed(outbox("reply")[0])
    assert relayed["Cc"].addresses[0].addr_spec == "adam.sikora@example.org"
    assert "adam.sikora@example.org" in outbox("reply")[0].recipients


def participants_of(ticket: models.Ticket) -> set[str]:
    return {participant.contact.address for participant in
            models.Participant.select().where(models.Participant.ticket == ticket)}


def test_cc_by_tag_alone_adds_nobody(tmp_path: Path, database_url: str) -> None:
    # From is not authenticated and tags are guessable: a forged follow-up by tag must
    # not make the forger a participant who receives every reply.
    desk = conversation_desk(tmp_path, database_url)
    ticket, _ack = open_ticket(desk)

    outcome = process(desk, mail(sender=REQUESTER, subject=f"Re: [#{ticket.id}] Drukarka",
                                 body="Dodaję kolegę.", message_id="<forged@example.org>",
                                 headers={"Cc": "attacker@evil.example"}), "test:user")

    assert outcome.ticket == ticket.id
    assert "attacker@evil.example" not in participants_of(ticket)


def test_cc_of_reply_to_our_mail_added(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    process(desk, mail(sender=REQUESTER, subject=f"Re: [#{ticket.id}] Drukarka",
                       body="Dodaję kolegę.", message_id="<reply@example.org>",
                       headers={"In-Reply-To": ack, "References": ack,
                                "Cc": "adam.sikora@example.org"}), "test:user")

    assert participants_of(ticket) == {"adam.sikora@example.org"}


def test_participants_capped_per_ticket(tmp_path: Path, database_url: str) -> None:
    from maildesk.tickets import MAX_PARTICIPANTS

    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    for round_number in range(4):
        cc = ", ".join(f"osoba{round_number}.{index}@example.org" for index in range(20))
        process(desk, mail(sender=REQUESTER, subject=f"Re: [#{ticket.id}] Drukarka",
                           body=f"Kolejne osoby {round_number}.",
                           message_id=f"<more{round_number}@example.org>",
                           headers={"In-Reply-To": ack, "References": ack, "Cc": cc}),
                "test:user")

    assert len(participants_of(ticket)) == MAX_PARTICIPANTS
    assert events("participants_limited")


def test_agent_reply_entry_keeps_text_without_commands(tmp_path: Path,
                                                       database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail("#priorytet 2\n" + REPLY, ack))

    entry = models.Message.get(models.Message.message_id == "<a1@mail.example.com>")
    assert entry.kind == "agent_reply"
    assert entry.author == "marek.zielinski@example.com"
    assert entry.reply_text.startswith("Dzień dobry")
    assert "#priorytet" not in entry.reply_text


def test_agent_reply_by_tag_is_relayed(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, _ack = open_ticket(desk)

    process(desk, agent_mail(REPLY, None, ticket=ticket.id))

    assert len(outbox("reply")) == 1


def test_first_agent_reply_is_first_response(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail(REPLY, ack))
    first = reload(ticket).first_responded_at
    process(desk, agent_mail("Jeszcze jedno.", ack, message_id="<a2@mail.example.com>"))

    assert first is not None
    assert reload(ticket).first_responded_at == first
    assert len(events("first_response")) == 1


def test_internal_note_is_not_first_response(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail("#notatka\nSprawdzam logi.", ack))

    assert reload(ticket).first_responded_at is None
    assert events("first_response") == []


# --------------------------------------------------------------------------- internal notes


@pytest.mark.parametrize("first_line", ["#notatka", "#note", "#Notatka", "#NOTE"])
def test_note_command_makes_internal_note(tmp_path: Path, database_url: str,
                                          first_line: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail(f"{first_line}\nKlientka ma stary sterownik.", ack))

    entry = models.Message.get(models.Message.message_id == "<a1@mail.example.com>")
    assert entry.kind == "internal_note"
    assert entry.reply_text == "Klientka ma stary sterownik."
    assert sent_to("zofia.wisniewska@example.org") == [outbox("ack")[0]]
    assert outbox("reply") == []


def test_note_address_makes_internal_note(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail("Klientka ma stary sterownik.", ack,
                             to="helpdesk+note@example.com"))

    entry = models.Message.get(models.Message.message_id == "<a1@mail.example.com>")
    assert entry.kind == "internal_note"
    assert outbox("reply") == []


def test_configured_note_address_makes_internal_note(tmp_path: Path,
                                                     database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url,
                             commands={"note_address": "notatki@example.com"})
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail("Tylko dla nas.", ack, to="helpdesk@example.com",
                             headers={"Cc": "notatki@example.com"}))

    assert models.Message.get(models.Message.message_id == "<a1@mail.example.com>"
                              ).kind == "internal_note"
    participants = [p.contact.address for p in models.Participant.select()]
    assert "notatki@example.com" not in participants


def test_internal_note_notifies_other_agents_only(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    models.Ticket.update(assignee="ewa.nowak").where(models.Ticket.id == ticket.id).execute()

    process(desk, agent_mail("#notatka\nEwa, zerknij na sterownik.", ack))

    notes = outbox("note")
    assert len(notes) == 1
    assert notes[0].recipients.split() == ["ewa.nowak@example.com"]
    assert notes[0].message_id.startswith(f"<note.{ticket.id}.")
    assert parsed(notes[0])["Subject"] == (
        f"[#{ticket.id}] Notatka wewnętrzna: Drukarka nie drukuje")
    assert "Ewa, zerknij na sterownik." in text_of(notes[0])


def test_internal_note_notifies_group_without_assignee(tmp_path: Path,
                                                       database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    models.Ticket.update(group="druga-linia").where(models.Ticket.id == ticket.id).execute()

    process(desk, agent_mail("#note\nCheck the driver.", ack))

    assert [row.recipients.split() for row in outbox("note")] == [["ewa.nowak@example.com"]]


def test_reply_to_note_notification_stays_internal(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    models.Ticket.update(assignee="ewa.nowak").where(models.Ticket.id == ticket.id).execute()
    process(desk, agent_mail("#notatka\nEwa, zerknij na sterownik.", ack))
    note = outbox("note")[0]

    process(desk, agent_mail("Zrobione, sterownik zaktualizowany.", note.message_id,
                             sender=EWA, message_id="<e1@mail.example.com>"))

    entry = models.Message.get(models.Message.message_id == "<e1@mail.example.com>")
    assert entry.kind == "internal_note"
    assert outbox("reply") == []
    assert [row.recipients.split() for row in outbox("note")][-1] == [
        "marek.zielinski@example.com"] or len(outbox("note")) == 1


def test_reply_to_note_by_subject_stays_internal(tmp_path: Path, database_url: str) -> None:
    # Under authentication_results, References may be unsigned, and a copy without them
    # must not pass the reply to an internal note on to the user.
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    models.Ticket.update(assignee="ewa.nowak").where(models.Ticket.id == ticket.id).execute()
    process(desk, agent_mail("#notatka\nEwa, zerknij na sterownik.", ack))
    note = outbox("note")[0]

    process(desk, mail(sender=EWA, subject=f"Odp: {note.subject}",
                       body="Zrobione, sterownik zaktualizowany.\n",
                       message_id="<e1@mail.example.com>",
                       headers={"Authentication-Results": PASS}))

    entry = models.Message.get(models.Message.message_id == "<e1@mail.example.com>")
    assert (entry.ticket_id, entry.kind) == (ticket.id, "internal_note")
    assert outbox("reply") == []
    noted = events("internal_note_added")[-1]
    assert json.loads(noted.detail)["why"] == "subject"


def test_internal_note_never_reaches_requester(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk, cc="adam.sikora@example.org")
    models.Ticket.update(group="pierwsza-linia").where(models.Ticket.id == ticket.id).execute()

    process(desk, agent_mail("#notatka\nTajne: hasło serwisowe 1234.", ack, sender=EWA))

    for row in outbox():
        assert "hasło serwisowe" not in bytes(row.raw).decode("utf-8", "replace") or (
            "zofia" not in row.recipients and "adam" not in row.recipients)
    assert sent_to("zofia.wisniewska@example.org") == [outbox("ack")[0]]
    assert sent_to("adam.sikora@example.org") == []


# --------------------------------------------------------------------------- commands


def test_command_log_lines_use_labels(tmp_path: Path, database_url: str,
                                      caplog: pytest.LogCaptureFixture) -> None:
    from maildesk.i18n import current_language, set_language

    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    previous = current_language()
    set_language("pl")
    try:
        with caplog.at_level(logging.INFO):
            process(desk, agent_mail("#status w realizacji\n#priorytet 2\n#przypisz mnie\n\n"
                                     + REPLY, ack))
    finally:
        set_language(previous)

    lines = [record.getMessage() for record in caplog.records]
    number = ticket.id
    assert (f"zgłoszenie {number}: priorytet P3 (średni) -> P2 (wysoki), zmienił(a) "
            "marek.zielinski") in lines
    assert (f"zgłoszenie {number}: osoba przypisana — -> marek.zielinski, zmienił(a) "
            "marek.zielinski") in lines
    assert (f"zgłoszenie {number}: nowe -> w realizacji, zmienił(a) marek.zielinski "
            "(polecenie konsultanta)") in lines


def test_commands_applied_with_audit_and_confirmation(tmp_path: Path,
                                                      database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail("#status w realizacji\n#priorytet 2\n#przypisz mnie\n\n" + REPLY,
                             ack))

    ticket = reload(ticket)
    assert ticket.status == "in_progress"
    assert ticket.priority == 2
    assert ticket.assignee == "marek.zielinski"
    changed = {json.loads(e.detail)["field"]: (loads(e.before), loads(e.after))
               for e in events("field_changed")}
    assert changed == {"priority": (3, 2), "assignee": (None, "marek.zielinski")}
    status = events("status_changed")
    assert [(loads(e.before), loads(e.after), e.actor) for e in status] == [
        ("new", "in_progress", "marek.zielinski")]
    confirmations = outbox("command_confirmation")
    assert len(confirmations) == 1
    assert confirmations[0].recipients.split() == ["marek.zielinski@example.com"]
    text = text_of(confirmations[0])
    assert "status: nowe → w realizacji" in text
    assert "priorytet: P3 (średni) → P2 (wysoki)" in text
    assert "osoba przypisana: — → Marek Zieliński (marek.zielinski)" in text


def test_commands_only_mail_is_not_relayed(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail("#status rozwiązane\n\nW dniu wczoraj Zofia pisze:\n> stare\n",
                             ack))

    assert reload(ticket).status == "resolved"
    assert reload(ticket).resolved_at is not None
    assert outbox("reply") == []
    assert len(outbox("command_confirmation")) == 1


def test_confirmation_in_agents_language(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url, agents=[
        {"login": "john.smith", "name": "John Smith", "addresses": ["john.smith@example.com"],
         "groups": ["pierwsza-linia"], "language": "en"}])
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail("#impact high\n", ack, sender="John Smith <john.smith@example.com>"))

    text = text_of(outbox("command_confirmation")[0])
    assert "impact: medium → high" in text
    assert "priority: P3 (medium) → P2 (high)" in text


# (Polish line, English line, field, expected value); the ticket starts in_progress, P3,
# medium/medium, group pierwsza-linia, no assignee.
EVERY_COMMAND = [
    ("#status rozwiązane", "#status resolved", "status", "resolved"),
    ("#status rozwiazane", "#status RESOLVED", "status", "resolved"),
    ("#status oczekuje", "#status pending", "status", "pending"),
    ("#status zamknięte", "#status closed", "status", "closed"),
    ("#priorytet 2", "#priority 2", "priority", 2),
    ("#priorytet krytyczny", "#priority critical", "priority", 1),
    ("#wpływ wysoki", "#impact high", "impact", "high"),
    ("#wplyw niski", "#impact low", "impact", "low"),
    ("#pilność niska", "#urgency low", "urgency", "low"),
    ("#pilnosc wysoka", "#urgency high", "urgency", "high"),
    ("#przypisz ewa.nowak", "#assign ewa.nowak", "assignee", "ewa.nowak"),
    ("#przypisz mnie", "#assign me", "assignee", "marek.zielinski"),
    ("#grupa druga-linia", "#group druga-linia", "group", "druga-linia"),
    ("#eskaluj", "#escalate", "group", "druga-linia"),
    ("#eskaluj", "#escalate", "escalation_level", 1),
    ("#oczekuje", "#pending", "status", "pending"),
    ("#zamknij", "#close", "status", "closed"),
]


@pytest.mark.parametrize("language", ["pl", "en"])
def test_every_command_in_both_languages(tmp_path: Path, database_url: str,
                                         language: str) -> None:
    desk = conversation_desk(tmp_path, database_url)

    for index, (polish, english, field, expected) in enumerate(EVERY_COMMAND):
        # One requester per ticket: the hourly limit of automatic mail is per address.
        ticket, ack = open_ticket(desk, message_id=f"<m{index}@example.org>",
                                  sender=f"user{index}@example.org")
        models.Ticket.update(status="in_progress", group="pierwsza-linia").where(
            models.Ticket.id == ticket.id).execute()
        line = polish if language == "pl" else english

        process(desk, agent_mail(f"{line}\n\nOK.", ack, message_id=f"<a{index}@example.com>"))

        assert (line, getattr(reload(ticket), field)) == (line, expected)
        assert outbox("command_error") == []
        assert models.Outbox.select().where(
            models.Outbox.ticket == ticket, models.Outbox.kind == "command_confirmation"
        ).count() == 1


def test_impact_and_urgency_set_priority(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail("#wpływ wysoki\n#pilność wysoka\n", ack))

    assert reload(ticket).priority == 1


def test_invalid_command_changes_nothing(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail("#status rozwiązane\n#priorytet 7\n\n" + REPLY, ack))

    ticket = reload(ticket)
    assert ticket.status == "new"
    assert ticket.priority == 3
    assert outbox("reply") == []
    assert outbox("command_confirmation") == []
    entry = models.Message.get(models.Message.message_id == "<a1@mail.example.com>")
    assert entry.kind == "held"
    assert len(events("command_invalid")) == 1


def test_invalid_command_error_mail_quotes_line(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail("#status rozwiązane\n#priorytet 7\n\n" + REPLY, ack))

    errors = outbox("command_error")
    assert len(errors) == 1
    assert errors[0].recipients.split() == ["marek.zielinski@example.com"]
    text = text_of(errors[0])
    assert "#priorytet 7" in text
    assert "Poprawna postać: #priorytet 1–4" in text
    assert "„7” nie jest priorytetem" in text
    assert sent_to("zofia.wisniewska@example.org") == [outbox("ack")[0]]


def test_unknown_command_gets_error(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail("#zamnij\n\nDziękuję.", ack))

    assert "#zamnij" in text_of(outbox("command_error")[0])
    assert reload(ticket).status == "new"


@pytest.mark.parametrize("lines", [
    "#status: w realizacji\n#priorytet: 2",
    "#status\u00a0w realizacji\n#priorytet\u202f2",
    "#\n#status w realizacji\n#priorytet 2",
    "#Status:  W REALIZACJI\n#\n# priorytet\t2.",
])
def test_loose_command_syntax_is_applied(tmp_path: Path, database_url: str,
                                         lines: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail(f"{lines}\n\nDrukarka działa.", ack))

    ticket = reload(ticket)
    assert ticket.status == "in_progress"
    assert ticket.priority == 2
    assert outbox("command_error") == []
    assert len(outbox("command_confirmation")) == 1
    relayed = text_of(outbox("reply")[0])
    assert "Drukarka działa." in relayed
    assert not [line for line in relayed.splitlines() if line.lstrip().startswith("#")]
    assert "priorytet" not in relayed.lower()


@pytest.mark.parametrize("line", ["#status=rozwiązane", "#priorytet;2", "#status: zrobione"])
def test_malformed_command_is_held_with_error(tmp_path: Path, database_url: str,
                                              line: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail(f"{line}\n\nDrukarka działa.", ack))

    assert reload(ticket).status == "new"
    assert reload(ticket).priority == 3
    assert outbox("reply") == []
    assert line in text_of(outbox("command_error")[0])
    assert sent_to("zofia.wisniewska@example.org") == [outbox("ack")[0]]


def test_agent_without_command_permission_gets_error(tmp_path: Path,
                                                     database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url, agents=[
        {"login": "marek.zielinski", "name": "Marek Zieliński", "commands": False,
         "addresses": ["marek.zielinski@example.com"], "groups": ["pierwsza-linia"]}])
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail("#status rozwiązane\n\nGotowe.", ack))

    assert reload(ticket).status == "new"
    assert "commands: true" in text_of(outbox("command_error")[0])


def test_commands_in_quoted_text_are_ignored(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    body = ("Uzupełnienie: technik przyjedzie w czwartek.\n\n"
            "W dniu 03.12.2026 o 11:05, Marek Zieliński pisze:\n"
            "> #status rozwiązane\n> #przypisz ewa.nowak\n")

    process(desk, agent_mail(body, ack))

    assert reload(ticket).status == "new"
    assert reload(ticket).assignee is None
    assert outbox("command_confirmation") == []
    assert outbox("command_error") == []
    assert "#status" not in text_of(outbox("reply")[0])


# --------------------------------------------------------------------------- authentication


def test_unauthenticated_agent_command_changes_nothing(tmp_path: Path,
                                                       database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail("#status rozwiązane\n\nZamykam.", ack, authentication=None))

    assert reload(ticket).status == "new"
    assert outbox("reply") == []
    errors = outbox("command_error")
    assert [row.recipients.split() for row in errors] == [["marek.zielinski@example.com"]]
    assert "uwierzytelni" in text_of(errors[0])
    rejected = events("command_rejected")
    assert len(rejected) == 1
    assert "failed authentication (no Authentication-Results from mx.example.com)" in (
        json.loads(rejected[0].detail)["reason"])
    # The agent writes Polish: the result is explained in Polish too.
    assert "brak nagłówka Authentication-Results od mx.example.com" in text_of(errors[0])
    assert "no Authentication-Results" not in text_of(errors[0])


def test_pass_from_untrusted_server_is_ignored(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    forged = ("relay.example.net; dkim=pass header.d=example.com; "
              "dmarc=pass header.from=example.com")

    process(desk, agent_mail("#status rozwiązane\n", ack, authentication=forged))

    assert reload(ticket).status == "new"
    assert len(outbox("command_error")) == 1


def test_pass_for_other_domain_is_rejected(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    other = ("mx.example.com; dkim=pass header.d=attacker.example; "
             "dmarc=fail header.from=example.com")

    process(desk, agent_mail("#status rozwiązane\n", ack, authentication=other))

    assert reload(ticket).status == "new"
    assert len(events("command_rejected")) == 1


def test_bare_dkim_signature_is_not_authentication(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    signature = "v=1; a=rsa-sha256; d=example.com; s=sel1; h=from; bh=AAAA; b=AAAA"

    process(desk, agent_mail("#status rozwiązane\n", ack, authentication=None,
                             headers={"DKIM-Signature": signature}))

    assert reload(ticket).status == "new"


def test_unauthenticated_plain_reply_is_held(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail(REPLY, ack, authentication=None))

    assert outbox("reply") == []
    assert models.Message.get(models.Message.message_id == "<a1@mail.example.com>"
                              ).kind == "held"
    assert len(outbox("command_error")) == 1


def test_error_goes_to_configured_address(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url, agents=[
        {"login": "marek.zielinski", "name": "Marek Zieliński",
         "addresses": ["marek.zielinski@example.com", "marek@example.com"],
         "groups": ["pierwsza-linia"]}])
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail("#status rozwiązane\n", ack, authentication=None,
                             sender="Marek <marek@example.com>"))

    assert [row.recipients.split() for row in outbox("command_error")] == [
        ["marek.zielinski@example.com"]]


def test_address_only_policy_accepts_and_warns(tmp_path: Path, database_url: str,
                                               caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="maildesk.agents"):
        desk = conversation_desk(tmp_path, database_url,
                                 commands={"authentication": "address_only"})
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail("#status rozwiązane\n", ack, authentication=None))

    assert reload(ticket).status == "resolved"
    assert any("address_only" in record.getMessage() for record in caplog.records)


# --------------------------------------------------------------------------- users and strangers


def test_requester_command_lines_are_plain_text(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    raw = mail(sender=REQUESTER, subject=f"Re: [#{ticket.id}] Drukarka",
               body="#priorytet 1\n#status rozwiązane\n\nProszę o pilną naprawę.",
               message_id="<u2@example.org>", headers={"In-Reply-To": ack})

    process(desk, raw, "test:user2")

    ticket = reload(ticket)
    assert ticket.priority == 3
    assert ticket.status == "new"
    entry = models.Message.get(models.Message.message_id == "<u2@example.org>")
    assert entry.kind == "customer"
    assert "#priorytet 1" in entry.reply_text
    assert outbox("command_error") == []
    assert outbox("command_confirmation") == []
    assert len(events("command_like_text_ignored")) == 1


def test_user_reply_notifies_assignee(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    models.Ticket.update(assignee="ewa.nowak").where(models.Ticket.id == ticket.id).execute()
    raw = mail(sender=REQUESTER, subject=f"Re: [#{ticket.id}] Drukarka",
               body="Nadal nie działa.\n", message_id="<u2@example.org>",
               headers={"In-Reply-To": ack})

    process(desk, raw, "test:user2")

    rows = outbox("user_replied")
    assert [row.recipients.split() for row in rows] == [["ewa.nowak@example.com"]]
    assert "Nadal nie działa." in text_of(rows[0])


def test_user_reply_notice_shows_new_status(tmp_path: Path, database_url: str) -> None:
    from datetime import UTC, datetime

    from maildesk import lifecycle

    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    lifecycle.assign(desk, ticket, "ewa.nowak", "ewa.nowak", "agent_command", datetime.now(UTC))
    lifecycle.transition(desk, ticket, "in_progress", "ewa.nowak", "agent_command",
                         datetime.now(UTC), notify=False)
    lifecycle.transition(desk, ticket, "pending", "ewa.nowak", "agent_command",
                         datetime.now(UTC), notify=False)
    raw = mail(sender=REQUESTER, subject=f"Re: [#{ticket.id}] Drukarka",
               body="Numer seryjny: CN12345.\n", message_id="<u2@example.org>",
               headers={"In-Reply-To": ack})

    process(desk, raw, "test:user2")

    notice = text_of(outbox("user_replied")[0])
    assert models.Ticket.get_by_id(ticket.id).status == "in_progress"
    assert "Status: w realizacji" in notice
    assert "oczekuje na użytkownika" not in notice


def test_agent_reply_to_user_replied_is_relayed(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    models.Ticket.update(assignee="ewa.nowak").where(models.Ticket.id == ticket.id).execute()
    process(desk, mail(sender=REQUESTER, subject=f"Re: [#{ticket.id}] Drukarka",
                       body="Nadal nie działa.\n", message_id="<u2@example.org>",
                       headers={"In-Reply-To": ack}), "test:user2")
    notification = outbox("user_replied")[0]

    process(desk, agent_mail("Już jadę.", notification.message_id, sender=EWA,
                             message_id="<e1@mail.example.com>"))

    relayed = outbox("reply")
    assert len(relayed) == 1
    assert parsed(relayed[0])["In-Reply-To"] == "<u2@example.org>"


def test_relay_references_skip_agent_mail(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    models.Ticket.update(assignee="ewa.nowak").where(models.Ticket.id == ticket.id).execute()
    process(desk, mail(sender=REQUESTER, subject=f"Re: [#{ticket.id}] Drukarka",
                       body="Nadal nie działa.\n", message_id="<u2@example.org>",
                       headers={"In-Reply-To": ack}), "test:user2")
    notification = outbox("user_replied")[0]

    process(desk, agent_mail("Już jadę.", notification.message_id, sender=EWA,
                             message_id="<e1@mail.example.com>"))

    references = parsed(outbox("reply")[0])["References"].split()
    assert references == ["<m1@example.org>", ack, "<u2@example.org>"]


def test_dispatched_team_gets_no_relay(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    team, _created = models.Contact.get_or_create(address="siec@vendor.example")
    models.Participant.create(ticket=ticket, contact=team, role="dispatch")

    process(desk, agent_mail(REPLY, ack))

    assert outbox("reply")[0].recipients.split() == ["zofia.wisniewska@example.org"]


def test_participant_reply_threads(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk, cc="Adam Sikora <adam.sikora@example.org>")
    raw = mail(sender="Adam Sikora <adam.sikora@example.org>",
               subject=f"Re: [#{ticket.id}] Drukarka", body="U mnie też.\n",
               message_id="<p1@example.org>")

    outcome = process(desk, raw, "test:participant")

    assert outcome.ticket == ticket.id
    assert models.Message.get(models.Message.message_id == "<p1@example.org>"
                              ).kind == "customer"


def test_cc_participants_can_be_switched_off(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url,
                             commands={"cc_become_participants": False})

    ticket, _ack = open_ticket(desk, cc="Adam Sikora <adam.sikora@example.org>")

    assert models.Participant.select().where(models.Participant.ticket == ticket).count() == 0


def test_stranger_with_tag_opens_new_ticket(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, _ack = open_ticket(desk)
    raw = mail(sender="Obcy <obcy@attacker.example>",
               subject=f"Re: [#{ticket.id}] Drukarka nie drukuje",
               body="#status zamknięte\n\nProszę zamknąć.", message_id="<s1@attacker.example>")

    outcome = process(desk, raw, "test:stranger")

    assert outcome.action == "create"
    assert outcome.ticket != ticket.id
    assert reload(ticket).status == "new"
    assert models.Message.select().where(models.Message.ticket == ticket).count() == 1


def test_stranger_with_tag_held_when_configured(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url, commands={"stranger_tag": "hold"})
    ticket, _ack = open_ticket(desk)
    raw = mail(sender="Obcy <obcy@attacker.example>",
               subject=f"Re: [#{ticket.id}] Drukarka nie drukuje",
               body="Proszę o dane logowania.", message_id="<s1@attacker.example>")

    outcome = process(desk, raw, "test:stranger")

    assert outcome.action == "append"
    assert models.Ticket.select().count() == 1
    entry = models.Message.get(models.Message.message_id == "<s1@attacker.example>")
    assert entry.kind == "held"
    assert not models.MessageReference.select().where(
        models.MessageReference.message_id == "<s1@attacker.example>").exists()
    assert sent_to("obcy@attacker.example") == []
    assert len(events("held")) == 1


def test_held_stranger_cannot_thread_by_own_message(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url, commands={"stranger_tag": "hold"})
    ticket, _ack = open_ticket(desk)
    process(desk, mail(sender="obcy@attacker.example", subject=f"[#{ticket.id}] x",
                       body="pierwsza", message_id="<s1@attacker.example>"), "test:s1")

    outcome = process(desk, mail(sender="obcy@attacker.example", subject="Re: x",
                                 body="druga", message_id="<s2@attacker.example>",
                                 headers={"In-Reply-To": "<s1@attacker.example>"}), "test:s2")

    assert outcome.action == "create"
    assert outcome.ticket != ticket.id


def test_accept_held_makes_stranger_participant(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url, commands={"stranger_tag": "hold"})
    ticket, _ack = open_ticket(desk)
    process(desk, mail(sender="Adam <adam.sikora@example.org>", subject=f"[#{ticket.id}] x",
                       body="Też mam problem.", message_id="<s1@example.org>"), "test:s1")
    entry = models.Message.get(models.Message.message_id == "<s1@example.org>")

    accept_held(entry.id, "marek.zielinski")

    assert models.Message.get_by_id(entry.id).kind == "customer"
    assert [p.contact.address for p in models.Participant.select()] == ["adam.sikora@example.org"]
    assert len(events("held_accepted")) == 1


# --------------------------------------------------------------------------- superseded held mail


def kind_of(message_id: str) -> str:
    return str(models.Message.get(models.Message.message_id == message_id).kind)


def test_corrected_resend_supersedes_held_mail(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    process(desk, agent_mail("#priorytet 7\n\n" + REPLY, ack, message_id="<a1@mail.example.com>"))
    held = models.Message.get(models.Message.message_id == "<a1@mail.example.com>")

    process(desk, agent_mail("#priorytet 2\n\n" + REPLY, ack, message_id="<a2@mail.example.com>"))

    assert reload(ticket).priority == 2
    assert kind_of("<a1@mail.example.com>") == "discarded"
    assert kind_of("<a2@mail.example.com>") == "agent_reply"
    superseded = events("held_superseded")
    assert len(superseded) == 1
    assert superseded[0].actor == "marek.zielinski"
    assert superseded[0].ticket_id == ticket.id
    detail = loads(superseded[0].detail)
    assert detail["entry"] == held.id
    assert detail["by_message_id"] == "<a2@mail.example.com>"
    assert detail["reason"] == ("a later mail of the same agent was accepted: "
                                "<a2@mail.example.com>")
    with pytest.raises(NotHeldError):
        accept_held(held.id, "marek.zielinski")


def test_superseded_entry_in_ticket_history(tmp_path: Path, database_url: str) -> None:
    from click.testing import CliRunner

    from maildesk.cli import main

    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    process(desk, agent_mail("#priorytet 7\n", ack, message_id="<a1@mail.example.com>"))
    held = models.Message.get(models.Message.message_id == "<a1@mail.example.com>")
    process(desk, agent_mail("#priorytet 2\n", ack, message_id="<a2@mail.example.com>"))

    shown = CliRunner().invoke(main, ["--config", str(desk.config.path), "tickets", "show",
                                      str(ticket.id)], env={"MAILDESK_LANGUAGE": "en"},
                               catch_exceptions=False)
    polish = CliRunner().invoke(main, ["--config", str(desk.config.path), "tickets", "show",
                                       str(ticket.id)], env={"MAILDESK_LANGUAGE": "pl"},
                                catch_exceptions=False)

    assert (f"marek.zielinski: held message superseded — entry {held.id} (a later mail of "
            "the same agent was accepted: <a2@mail.example.com>)") in shown.output
    assert (f"marek.zielinski: wstrzymaną wiadomość zastąpiła nowsza — wpis {held.id} "
            "(przyjęto późniejszą wiadomość tego samego konsultanta: "
            "<a2@mail.example.com>)") in polish.output


def test_event_without_entry_still_supersedes(tmp_path: Path, database_url: str) -> None:
    # Events written before they named the entry name its Message-ID only.
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    process(desk, agent_mail("#priorytet 7\n", ack, message_id="<a1@mail.example.com>"))
    invalid = events("command_invalid")[0]
    detail = loads(invalid.detail)
    del detail["entry"]
    models.Event.update(detail=json.dumps(detail)).where(models.Event.id == invalid.id).execute()

    process(desk, agent_mail("#priorytet 2\n", ack, message_id="<a2@mail.example.com>"))

    assert kind_of("<a1@mail.example.com>") == "discarded"


def test_agent_address_change_still_supersedes(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url, agents=[
        {"login": "marek.zielinski", "name": "Marek Zieliński",
         "addresses": ["marek.zielinski@example.com", "marek@example.com"],
         "groups": ["pierwsza-linia"]}])
    ticket, ack = open_ticket(desk)
    process(desk, agent_mail("#status zrobione\n", ack, message_id="<a1@mail.example.com>"))

    process(desk, agent_mail("#notatka Sprawdzam.", ack, sender="Marek <marek@example.com>",
                             message_id="<a2@mail.example.com>"))

    assert kind_of("<a2@mail.example.com>") == "internal_note"
    assert kind_of("<a1@mail.example.com>") == "discarded"


def test_unauthenticated_held_mail_not_superseded(tmp_path: Path, database_url: str) -> None:
    # Mail that failed authentication may be forged, so the agent's genuine mail proves
    # nothing about it.
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    process(desk, agent_mail("#status rozwiązane\n", ack, authentication=None,
                             message_id="<forged@mail.example.com>"))

    process(desk, agent_mail(REPLY, ack, message_id="<a2@mail.example.com>"))

    assert kind_of("<a2@mail.example.com>") == "agent_reply"
    assert kind_of("<forged@mail.example.com>") == "held"
    assert events("held_superseded") == []


def test_other_agent_does_not_supersede(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    process(desk, agent_mail("#priorytet 7\n", ack, message_id="<a1@mail.example.com>"))

    process(desk, agent_mail(REPLY, ack, sender=EWA, message_id="<e1@mail.example.com>"))

    assert kind_of("<e1@mail.example.com>") == "agent_reply"
    assert kind_of("<a1@mail.example.com>") == "held"


def test_refused_resend_does_not_supersede(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    process(desk, agent_mail("#priorytet 7\n", ack, message_id="<a1@mail.example.com>"))

    process(desk, agent_mail("#priorytet 8\n", ack, message_id="<a2@mail.example.com>"))

    assert kind_of("<a1@mail.example.com>") == "held"
    assert kind_of("<a2@mail.example.com>") == "held"


def test_held_mail_on_other_ticket_stays(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    first, first_ack = open_ticket(desk)
    second, second_ack = open_ticket(desk, message_id="<m2@example.org>")
    process(desk, agent_mail("#priorytet 7\n", first_ack, message_id="<a1@mail.example.com>"))

    process(desk, agent_mail(REPLY, second_ack, message_id="<a2@mail.example.com>"))

    assert models.Message.get(models.Message.message_id == "<a2@mail.example.com>"
                              ).ticket_id == second.id
    assert kind_of("<a1@mail.example.com>") == "held"


def test_stranger_held_mail_not_superseded(tmp_path: Path, database_url: str) -> None:
    # The stranger is not notified that the first mail was held, so a later one is no
    # corrected copy of it, even once the stranger takes part in the ticket.
    desk = conversation_desk(tmp_path, database_url, commands={"stranger_tag": "hold"})
    ticket, ack = open_ticket(desk)
    process(desk, mail(sender="adam.sikora@example.org", subject=f"[#{ticket.id}] x",
                       body="pierwsza", message_id="<s1@example.org>"), "test:s1")
    process(desk, mail(sender="adam.sikora@example.org", subject=f"[#{ticket.id}] x",
                       body="druga", message_id="<s2@example.org>"), "test:s2")
    process(desk, mail(sender=REQUESTER, subject=f"Re: [#{ticket.id}] Drukarka",
                       headers={"Cc": "adam.sikora@example.org", "In-Reply-To": ack},
                       body="Dodaję Adama.", message_id="<m2@example.org>"), "test:user")

    third = process(desk, mail(sender="adam.sikora@example.org", subject=f"[#{ticket.id}] x",
                               body="trzecia", message_id="<s3@example.org>"), "test:s3")

    assert third.ticket == ticket.id
    assert kind_of("<s3@example.org>") == "customer"
    assert kind_of("<s1@example.org>") == "held"
    assert kind_of("<s2@example.org>") == "held"
    assert events("held_superseded") == []
