"""Whether an agent's or a manager's mail reaches the requester, or stays with the agents.

The cases come from a first-line agent's working day played by real mail. They are a
corrected resend in reply to a command error, a command on a closed ticket, a group
manager's reply to an escalation, an agent's reply-all to the requester, and ``#note``
below other commands. Every test runs the whole pipeline on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

from deskfactory import mail
from test_conversation import (
    EWA,
    REQUESTER,
    agent_mail,
    conversation_desk,
    events,
    open_ticket,
    outbox,
    parsed,
    process,
    reload,
    text_of,
)

from maildesk import models

USER = "zofia.wisniewska@example.org"


def user_reply(desk, ticket: models.Ticket, in_reply_to: str, body: str,
               message_id: str) -> None:
    process(desk, mail(sender=REQUESTER, subject=f"Re: [#{ticket.id}] Drukarka", body=body,
                       message_id=message_id, headers={"In-Reply-To": in_reply_to}),
            "test:user")


def entry_kind(message_id: str) -> str:
    return str(models.Message.get(models.Message.message_id == message_id).kind)


# --------------------------------------------------------------------------- #note lines


def test_note_line_below_commands_makes_note(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail("#status w realizacji\n#notatka\nSterownik jest stary.", ack))

    assert entry_kind("<a1@mail.example.com>") == "internal_note"
    assert reload(ticket).status == "in_progress"
    assert outbox("reply") == []


def test_user_replied_hint_names_note_line(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    models.Ticket.update(assignee="ewa.nowak").where(models.Ticket.id == ticket.id).execute()

    user_reply(desk, ticket, ack, "Nadal nie działa.\n", "<u2@example.org>")

    hint = " ".join(text_of(outbox("user_replied")[0]).split())
    assert "Linia „#notatka” wśród poleceń na początku odpowiedzi" in hint
    assert "Pierwsza linia" not in hint


# --------------------------------------------------------------------------- resend after an error


THANKS = "Dziękuję za ocenę, Pani Zofio. Miłego weekendu!\n\nEwa\n"


def notice_to_ewa(desk) -> tuple[models.Ticket, str]:
    """Open a ticket assigned to Ewa; the user writes again; return the user_replied id."""
    ticket, ack = open_ticket(desk)
    models.Ticket.update(assignee="ewa.nowak").where(models.Ticket.id == ticket.id).execute()
    user_reply(desk, ticket, ack, "Drukarka działa, oceniam na 5.\n", "<u2@example.org>")
    return ticket, outbox("user_replied")[0].message_id


def test_resend_after_error_is_relayed(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, notice = notice_to_ewa(desk)
    process(desk, agent_mail("#zamnij\n\n" + THANKS, notice, sender=EWA,
                             message_id="<e1@mail.example.com>"))
    error = outbox("command_error")[0]

    process(desk, agent_mail("#zamknij\n\n" + THANKS, error.message_id, sender=EWA,
                             message_id="<e2@mail.example.com>"))

    assert entry_kind("<e2@mail.example.com>") == "agent_reply"
    assert reload(ticket).status == "closed"
    relayed = outbox("reply")
    assert len(relayed) == 1
    assert relayed[0].recipients.split() == [USER]
    assert "Miłego weekendu!" in text_of(relayed[0])
    assert outbox("note") == []


def test_resend_with_error_subject_is_relayed(tmp_path: Path, database_url: str) -> None:
    # A mail client's Reply keeps the error's own subject ("[#1] Polecenia odrzucone:
    # ..."), which names a mail only agents got. The error promised the requester the
    # corrected text, so that subject must not turn it into a note.
    desk = conversation_desk(tmp_path, database_url)
    ticket, notice = notice_to_ewa(desk)
    process(desk, agent_mail("#zamnij\n\n" + THANKS, notice, sender=EWA,
                             message_id="<e1@mail.example.com>"))
    error = outbox("command_error")[0]

    process(desk, agent_mail("#zamknij\n\n" + THANKS, error.message_id, sender=EWA,
                             message_id="<e2@mail.example.com>",
                             subject=f"Odp: {error.subject}"))

    assert entry_kind("<e2@mail.example.com>") == "agent_reply"
    assert reload(ticket).status == "closed"
    relayed = outbox("reply")
    assert len(relayed) == 1
    assert "Miłego weekendu!" in text_of(relayed[0])
    assert outbox("note") == []


def test_note_resend_with_error_subject(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, notice = notice_to_ewa(desk)
    process(desk, agent_mail("#notatka\n#zamnij\nHasło serwisowe: 1234.", notice, sender=EWA,
                             message_id="<e1@mail.example.com>"))
    error = outbox("command_error")[0]

    process(desk, agent_mail("#zamknij\nHasło serwisowe: 1234.", error.message_id,
                             sender=EWA, message_id="<e2@mail.example.com>",
                             subject=f"Odp: {error.subject}"))

    assert entry_kind("<e2@mail.example.com>") == "internal_note"
    assert outbox("reply") == []


def test_error_says_resend_is_relayed(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, notice = notice_to_ewa(desk)

    process(desk, agent_mail("#zamnij\n\n" + THANKS, notice, sender=EWA,
                             message_id="<e1@mail.example.com>"))

    text = " ".join(text_of(outbox("command_error")[0]).split())
    assert "Jej tekst trafi do zgłaszającego, tak jak trafiłby tekst odrzuconej wiadomości" in text


def test_resend_of_note_after_error_stays_note(tmp_path: Path, database_url: str) -> None:
    # The refused mail was a note, so its resend must not reach the requester even when
    # the agent leaves out #notatka the second time.
    desk = conversation_desk(tmp_path, database_url)
    ticket, notice = notice_to_ewa(desk)
    process(desk, agent_mail("#notatka\n#zamnij\nHasło serwisowe: 1234.", notice, sender=EWA,
                             message_id="<e1@mail.example.com>"))
    error = outbox("command_error")[0]

    process(desk, agent_mail("#zamknij\nHasło serwisowe: 1234.", error.message_id,
                             sender=EWA, message_id="<e2@mail.example.com>"))

    assert entry_kind("<e2@mail.example.com>") == "internal_note"
    assert reload(ticket).status == "closed"
    assert outbox("reply") == []
    error_text = " ".join(text_of(error).split())
    assert "zostanie zapisany jako notatka wewnętrzna" in error_text


def test_resend_of_confirmation_reply_stays_note(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, notice = notice_to_ewa(desk)
    process(desk, agent_mail("#priorytet 2", notice, sender=EWA,
                             message_id="<e1@mail.example.com>"))
    confirmation = outbox("command_confirmation")[0]
    process(desk, agent_mail("#zamnij\nTylko dla nas.", confirmation.message_id, sender=EWA,
                             message_id="<e2@mail.example.com>"))
    error = outbox("command_error")[0]

    process(desk, agent_mail("#zamknij\nTylko dla nas.", error.message_id, sender=EWA,
                             message_id="<e3@mail.example.com>"))

    assert entry_kind("<e3@mail.example.com>") == "internal_note"
    assert outbox("reply") == []


def test_confirmation_says_text_kept_as_note(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, notice = notice_to_ewa(desk)
    process(desk, agent_mail("#priorytet 2", notice, sender=EWA,
                             message_id="<e1@mail.example.com>"))
    first = outbox("command_confirmation")[0]

    process(desk, agent_mail("#zamknij\n\n" + THANKS, first.message_id, sender=EWA,
                             message_id="<e2@mail.example.com>"))

    assert "notatkę wewnętrzną" not in text_of(first)
    text = " ".join(text_of(outbox("command_confirmation")[1]).split())
    assert "Tekst wiadomości zapisano jako notatkę wewnętrzną" in text
    assert "odpowiada na wiadomość, którą dostali tylko konsultanci" in text


def test_confirmation_names_note_command(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)

    process(desk, agent_mail("#priorytet 2\n#notatka Sterownik jest stary.", ack))

    text = " ".join(text_of(outbox("command_confirmation")[0]).split())
    assert "ponieważ wiadomość zawiera polecenie #notatka" in text


# --------------------------------------------------------------------------- closed tickets


REOPEN = "#status ponownie otwarte\n#przypisz mnie\n\nZajrzę do drukarki w poniedziałek.\n"


def test_closed_ticket_error_names_continuation(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, notice = notice_to_ewa(desk)
    process(desk, agent_mail("#zamknij", notice, sender=EWA, message_id="<e1@mail.example.com>"))
    ack = outbox("ack")[0].message_id
    user_reply(desk, ticket, ack, "Niestety drukarka znowu nie drukuje.\n", "<u3@example.org>")
    continuation = models.Ticket.get(models.Ticket.linked_ticket == ticket.id)

    process(desk, agent_mail(REOPEN, notice, sender=EWA, message_id="<e2@mail.example.com>"))

    assert reload(ticket).status == "closed"
    text = " ".join(text_of(outbox("command_error")[0]).split())
    assert f"zgłoszenie [#{continuation.id}], które je kontynuuje" in text
    assert "Popraw polecenia" not in text


def test_closed_ticket_error_without_continuation(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, notice = notice_to_ewa(desk)
    process(desk, agent_mail("#zamknij", notice, sender=EWA, message_id="<e1@mail.example.com>"))

    process(desk, agent_mail(REOPEN, notice, sender=EWA, message_id="<e2@mail.example.com>"))

    text = " ".join(text_of(outbox("command_error")[0]).split())
    assert f"Zgłoszenie [#{ticket.id}] jest zamknięte i takie pozostanie." in text
    assert "wyślij ją ponownie bez poleceń zmiany statusu" in text
    assert "Popraw polecenia" not in text


def test_closed_ticket_error_follows_chain(tmp_path: Path, database_url: str) -> None:
    # The continuation was closed too and continued again: the error names the last one.
    desk = conversation_desk(tmp_path, database_url)
    ticket, notice = notice_to_ewa(desk)
    process(desk, agent_mail("#zamknij", notice, sender=EWA, message_id="<e1@mail.example.com>"))
    user_reply(desk, ticket, outbox("ack")[0].message_id, "Znowu nie drukuje.\n",
               "<u3@example.org>")
    second = models.Ticket.get(models.Ticket.linked_ticket == ticket.id)
    second_ack = outbox("ack")[1].message_id
    process(desk, agent_mail("#zamknij", second_ack, sender=EWA, ticket=second.id,
                             message_id="<e2@mail.example.com>"))
    user_reply(desk, second, second_ack, "I znowu nie drukuje.\n", "<u4@example.org>")
    third = models.Ticket.get(models.Ticket.linked_ticket == second.id)

    process(desk, agent_mail(REOPEN, notice, sender=EWA, message_id="<e3@mail.example.com>"))

    text = " ".join(text_of(outbox("command_error")[0]).split())
    assert f"zgłoszenie [#{third.id}], które je kontynuuje" in text


# --------------------------------------------------------------------------- group managers


MANAGER = "Kierownik IT <kierownik@example.com>"


def escalate_to_manager(desk, assignee: str | None = "ewa.nowak") -> tuple[models.Ticket, str]:
    """Open a ticket in pierwsza-linia and mail its manager; return the manager mail's id."""
    from maildesk import escalation

    ticket, _ack = open_ticket(desk)
    models.Ticket.update(group="pierwsza-linia", assignee=assignee).where(
        models.Ticket.id == ticket.id).execute()
    with models.database_proxy.atomic():
        escalation.notify_manager(desk, reload(ticket), "maildesk", "scheduler",
                                  "przekroczony czas pierwszej odpowiedzi")
    return reload(ticket), outbox("escalation_manager")[0].message_id


def manager_reply(desk, ticket: models.Ticket, in_reply_to: str,
                  message_id: str = "<k1@example.com>") -> object:
    body = ("Ewo, proszę się tym zająć od razu.\n\nKierownik IT\n\n"
            "W dniu 04.12.2026 o 09:00, Helpdesk IT pisze:\n> Zgłoszenie wymaga uwagi.\n")
    return process(desk, mail(sender=MANAGER, subject=f"Re: [#{ticket.id}] Eskalacja",
                              body=body, message_id=message_id,
                              headers={"In-Reply-To": in_reply_to,
                                       "References": in_reply_to}), "test:manager")


def test_manager_reply_is_note_for_assignee(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, escalation_mail = escalate_to_manager(desk)

    outcome = manager_reply(desk, ticket, escalation_mail)

    assert outcome.action == "append"
    assert outcome.ticket == ticket.id
    assert entry_kind("<k1@example.com>") == "internal_note"
    notes = outbox("note")
    assert [row.recipients.split() for row in notes] == [["ewa.nowak@example.com"]]
    text = text_of(notes[0])
    assert "Ewo, proszę się tym zająć od razu." in text
    assert "Kierownik IT (kierownik grupy: pierwsza-linia, druga-linia)" in text
    assert "Helpdesk IT pisze" not in text
    assert [row.kind for row in outbox() if USER in row.recipients.split()] == ["ack"]
    detail = events("internal_note_added")[0].detail or ""
    assert '"why": "manager"' in detail


def test_escalation_tells_manager_about_replies(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    escalate_to_manager(desk)

    text = " ".join(text_of(outbox("escalation_manager")[0]).split())
    assert "Odpowiedź na tę wiadomość trafi do konsultantów zgłoszenia jako notatka" in text


def test_manager_reply_tells_group_without_assignee(tmp_path: Path,
                                                   database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, escalation_mail = escalate_to_manager(desk, assignee=None)

    manager_reply(desk, ticket, escalation_mail)

    notes = outbox("note")
    assert [row.recipients.split() for row in notes] == [["marek.zielinski@example.com"]]


def test_manager_reply_keeps_user_waiting(tmp_path: Path, database_url: str) -> None:
    # A manager's mail is not the user's reply, so a pending ticket keeps waiting.
    desk = conversation_desk(tmp_path, database_url)
    ticket, escalation_mail = escalate_to_manager(desk)
    models.Ticket.update(status="pending").where(models.Ticket.id == ticket.id).execute()

    manager_reply(desk, ticket, escalation_mail)

    assert reload(ticket).status == "pending"
    assert outbox("user_replied") == []


def test_relay_skips_manager_message_id(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, escalation_mail = escalate_to_manager(desk)
    manager_reply(desk, ticket, escalation_mail)
    ack = outbox("ack")[0].message_id

    process(desk, agent_mail("Już się tym zajmuję.", ack, sender=EWA, ticket=ticket.id,
                             message_id="<e1@mail.example.com>"))

    relayed = parsed(outbox("reply")[0])
    assert relayed["In-Reply-To"] == "<m1@example.org>"
    assert "<k1@example.com>" not in relayed["References"]
    assert escalation_mail not in relayed["References"]


def test_manager_reply_on_closed_ticket_opens_none(tmp_path: Path,
                                                   database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, escalation_mail = escalate_to_manager(desk)
    models.Ticket.update(status="closed").where(models.Ticket.id == ticket.id).execute()

    outcome = manager_reply(desk, ticket, escalation_mail)

    assert outcome.ticket == ticket.id
    assert models.Ticket.select().count() == 1
    assert entry_kind("<k1@example.com>") == "internal_note"


def test_manager_own_ticket_stays_conversation(tmp_path: Path, database_url: str) -> None:
    # The manager's own request is a user's ticket like any other.
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk, sender=MANAGER, message_id="<k0@example.com>")

    manager_reply(desk, ticket, ack)

    assert entry_kind("<k1@example.com>") == "customer"
    assert outbox("note") == []


REPLY_TEXT = "Dzień dobry,\n\nsprawdzimy obie drukarki.\n\nMarek\n"


def test_relay_skips_mail_requester_never_saw(tmp_path: Path, database_url: str) -> None:
    # A participant who wrote to the desk alone sent a mail the requester never received.
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk, cc="Adam Sikora <adam.sikora@example.org>")
    process(desk, mail(sender="Adam Sikora <adam.sikora@example.org>",
                       subject=f"Re: [#{ticket.id}] Drukarka", body="U mnie też.\n",
                       message_id="<p1@example.org>", headers={"In-Reply-To": ack}),
            "test:participant")

    process(desk, agent_mail(REPLY_TEXT, ack, message_id="<a2@mail.example.com>"))

    relayed = parsed(outbox("reply")[0])
    assert relayed["In-Reply-To"] == "<m1@example.org>"
    assert "<p1@example.org>" not in relayed["References"]



# --------------------------------------------------------------------------- reply-all


DIRECT = "#przypisz mnie\n#status w realizacji\n\nSprawdzam uprawnienia, daj mi 10 minut.\n"


def test_reply_all_not_relayed_twice(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, _ack = open_ticket(desk)

    process(desk, agent_mail(DIRECT, "<m1@example.org>", to=REQUESTER,
                             headers={"Cc": "helpdesk@example.com"}))

    assert reload(ticket).status == "in_progress"
    assert outbox("reply") == []
    skipped = events("relay_skipped")
    assert len(skipped) == 1
    assert '"recipients": ["zofia.wisniewska@example.org"]' in (skipped[0].detail or "")
    assert reload(ticket).first_responded_at is not None


def test_reply_all_relays_to_others(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, _ack = open_ticket(desk, cc="Adam Sikora <adam.sikora@example.org>")

    process(desk, agent_mail(DIRECT, "<m1@example.org>", to=REQUESTER,
                             headers={"Cc": "helpdesk@example.com"}))

    relayed = outbox("reply")
    assert [row.recipients.split() for row in relayed] == [["adam.sikora@example.org"]]
    assert parsed(relayed[0])["To"].addresses[0].addr_spec == "adam.sikora@example.org"
    assert parsed(relayed[0])["Cc"] is None


def test_reply_all_status_change_sends_notice(tmp_path: Path, database_url: str) -> None:
    # The direct copy has no status footer, so the requester gets the status notice.
    desk = conversation_desk(tmp_path, database_url)
    ticket, _ack = open_ticket(desk)

    process(desk, agent_mail("#status rozwiązane\n\nWgrałam nowy sterownik.\n",
                             "<m1@example.org>", to=REQUESTER,
                             headers={"Cc": "helpdesk@example.com"}))

    assert outbox("reply") == []
    notices = outbox("status_resolved")
    assert [row.recipients.split() for row in notices] == [[USER]]


# --------------------------------------------------------------------------- two agents


def test_colleague_reply_tells_assignee(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    models.Ticket.update(assignee="ewa.nowak").where(models.Ticket.id == ticket.id).execute()

    process(desk, agent_mail("#status rozwiązane\nDrukarka powinna już działać.", ack))

    notices = outbox("colleague_activity")
    assert [row.recipients.split() for row in notices] == [["ewa.nowak@example.com"]]
    text = " ".join(text_of(notices[0]).split())
    assert "Marek Zieliński odpisuje zgłaszającemu" in text
    assert "status: nowe → rozwiązane" in text
    assert "Drukarka powinna już działać." in text
    assert "nie jest już przypisane do Ciebie" not in text


def test_colleague_assign_me_tells_old_assignee(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    models.Ticket.update(assignee="ewa.nowak").where(models.Ticket.id == ticket.id).execute()

    process(desk, agent_mail("#przypisz mnie", ack))

    notices = outbox("colleague_activity")
    assert [row.recipients.split() for row in notices] == [["ewa.nowak@example.com"]]
    text = " ".join(text_of(notices[0]).split())
    assert "Marek Zieliński zmienia zgłoszenie" in text
    assert ("osoba przypisana: Ewa Nowak (ewa.nowak) → Marek Zieliński (marek.zielinski)"
            in text)
    assert "Zgłoszenie nie jest już przypisane do Ciebie." in text


def test_colleague_notice_not_for_own_or_note(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    models.Ticket.update(assignee="marek.zielinski").where(
        models.Ticket.id == ticket.id).execute()

    process(desk, agent_mail("Sprawdzam to.", ack))
    models.Ticket.update(assignee="ewa.nowak").where(models.Ticket.id == ticket.id).execute()
    process(desk, agent_mail("#notatka\nToner zamówiony.", ack, message_id="<a2@mail.example.com>"))

    # The assignee's own reply needs no notice, and a note has its own.
    assert outbox("colleague_activity") == []
    assert [row.recipients.split() for row in outbox("note")] == [["ewa.nowak@example.com"]]


def test_colleague_notice_not_for_own_address(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    # Older tickets may store the assignee by address.
    models.Ticket.update(assignee="marek.zielinski@example.com").where(
        models.Ticket.id == ticket.id).execute()

    process(desk, agent_mail("Technik przyjedzie w czwartek.", ack))

    assert outbox("reply") != []
    assert outbox("colleague_activity") == []


def test_reply_to_colleague_notice_is_note(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    models.Ticket.update(assignee="ewa.nowak").where(models.Ticket.id == ticket.id).execute()
    process(desk, agent_mail("Drukarka powinna już działać.", ack))
    notice = outbox("colleague_activity")[0].message_id

    process(desk, agent_mail("Dzięki, przejmuję dalej.", notice, sender=EWA,
                             message_id="<e1@mail.example.com>"))

    assert entry_kind("<e1@mail.example.com>") == "internal_note"


def test_reply_to_forgery_warning_stays_note(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    # Someone forges Marek's From: the mail fails authentication and Marek is warned.
    process(desk, agent_mail("#status rozwiązane\nZałatwione.", ack, authentication=None,
                             message_id="<forged@evil.example>"))
    warning = outbox("command_error")[0].message_id

    process(desk, agent_mail("To nie ja, konto może być przejęte.", warning,
                             ticket=ticket.id, message_id="<a2@mail.example.com>"))

    # The reply is meant for the desk, and the requester may be the forger.
    assert entry_kind("<a2@mail.example.com>") == "internal_note"
    assert outbox("reply") == []


# --------------------------------------------------------------------------- groups without agents


def test_user_reply_without_agents_reaches_admins(tmp_path: Path, database_url: str) -> None:
    # A vendor's mailbox group has no agents of its own, and a breach moved the ticket
    # there without an assignee. The vendor's reply must not reach nobody: like the
    # group's new-ticket and SLA mail, its notice goes to the admins.
    desk = conversation_desk(tmp_path, database_url, groups=[
        {"name": "pierwsza-linia", "tier": 1},
        {"name": "druga-linia", "tier": 2},
        {"name": "serwis", "tier": 3, "address": "serwis@dostawca.example.net"}])
    ticket, ack = open_ticket(desk)
    models.Ticket.update(group="serwis").where(models.Ticket.id == ticket.id).execute()

    user_reply(desk, ticket, ack, "Nadal nie drukuje.\n", "<u2@example.org>")

    notices = outbox("user_replied")
    assert len(notices) == 1
    assert notices[0].recipients.split() == ["admin@example.com"]
    assert "Nadal nie drukuje." in text_of(notices[0])


def test_user_reply_with_agents_skips_admins(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    models.Ticket.update(group="pierwsza-linia").where(models.Ticket.id == ticket.id).execute()

    user_reply(desk, ticket, ack, "Nadal nie drukuje.\n", "<u2@example.org>")

    recipients = [row.recipients.split() for row in outbox("user_replied")]
    assert recipients == [["marek.zielinski@example.com"]]


def test_vendor_reply_notice_names_vendor(tmp_path: Path, database_url: str) -> None:
    # The notice of a vendor's reply must not read as the user's reply, and must say
    # that answering it writes to the requester, not to the vendor.
    from datetime import datetime

    from maildesk import escalation
    from maildesk.lifecycle import Source

    desk = conversation_desk(tmp_path, database_url, groups=[
        {"name": "pierwsza-linia", "tier": 1},
        {"name": "druga-linia", "tier": 2},
        {"name": "serwis", "tier": 3, "address": "serwis@dostawca.example.net"}])
    ticket, ack = open_ticket(desk)
    models.Ticket.update(assignee="marek.zielinski").where(
        models.Ticket.id == ticket.id).execute()
    with models.database_proxy.atomic():
        escalation.move_to_group(desk, reload(ticket), "serwis", "marek.zielinski",
                                 Source.AGENT_COMMAND, datetime(2026, 12, 4, 10, 0))
        models.Ticket.update(assignee="marek.zielinski").where(
            models.Ticket.id == ticket.id).execute()
    dispatch = outbox("dispatch")[0].message_id

    process(desk, mail(sender="Serwis <serwis@dostawca.example.net>",
                       subject=f"Re: [#{ticket.id}] Drukarka", body="Technik będzie jutro.\n",
                       message_id="<v1@dostawca.example.net>",
                       headers={"In-Reply-To": dispatch}), "test:vendor")

    [notice] = outbox("user_replied")
    assert notice.subject == f"[#{ticket.id}] Odpowiedź od Serwis: Drukarka nie drukuje"
    text = " ".join(text_of(notice).split())
    assert "Technik będzie jutro." in text
    assert ("Odpowiedź na tę wiadomość trafi do zgłaszającego, a nie do "
            "serwis@dostawca.example.net") in text
    assert "Odpowiedz na tę wiadomość, aby odpisać zgłaszającemu" not in text


def test_user_reply_notice_unchanged(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    models.Ticket.update(assignee="marek.zielinski").where(
        models.Ticket.id == ticket.id).execute()

    user_reply(desk, ticket, ack, "Nadal nie drukuje.\n", "<u2@example.org>")

    [notice] = outbox("user_replied")
    assert notice.subject.startswith(f"[#{ticket.id}] Odpowiedź użytkownika:")
    assert "trafi do zgłaszającego, a nie do" not in text_of(notice)
