"""Ratings and short thanks in reply to a resolution, and reopening on a real reply.

The pipeline tests run on SQLite and on PostgreSQL, including the bug-report cases
of a thank-you to a resolved ticket and a reply to a closed one.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from deskfactory import mail, make_desk, make_ticket

from maildesk import models, pipeline
from maildesk.satisfaction import is_short_thanks, parse_rating
from maildesk.slaconfig import DEFAULT_THANKS_PHRASES

REQUESTER = "Katarzyna Zając <katarzyna.zajac@example.org>"
ADDRESS = "katarzyna.zajac@example.org"


@pytest.mark.parametrize(
    ("text", "rating"),
    [
        ("5", 5),
        ("4.", 4),
        ("Ocena: 3", 3),
        ("moja ocena to 5", 5),
        ("5/5", 5),
        ("4 na 5", 4),
        ("Rating: 2 out of 5", 2),
        ("5 gwiazdek", 5),
        ("5\n\nDziękuję!\nKatarzyna Zając", 5),
        ("1\n\nPozdrawiam\nKatarzyna", 1),
    ],
)
def test_parse_rating_accepts(text: str, rating: int) -> None:
    assert parse_rating(text, "Katarzyna Zając") == rating


# The shapes a rating reply takes in real mail: a mobile footer, a nickname under the
# rating, a greeting, the rating inside a sentence of thanks. The requester's name is
# Katarzyna Zając, so none of these sign-offs is her name.
RATING_REPLIES = [
    ("5\n\nWysłane z iPhone’a", 5),
    ("5\n\nWysłane z iPhone'a", 5),
    ("4\n\nWysłano z mojego iPhone’a", 4),
    ("5\n\nWysłano ze smartfona Samsung Galaxy.", 5),
    ("3\n\nPobierz aplikację Outlook dla systemu Android", 3),
    ("5\n\nSent from my iPhone", 5),
    ("5\n\nGet Outlook for Android", 5),
    ("2\n\nSent from my Samsung Galaxy smartphone.", 2),
    ("5\n\nKasia", 5),
    ("5\nKasia", 5),
    ("5\n\nKasia Z.", 5),
    ("5\n\nKate", 5),
    ("5\n\n— Kasia", 5),
    ("5\n\nKasia\n\nWysłane z iPhone’a", 5),
    ("Dziękuję bardzo, wszystko działa. Oceniam na 5.\n\nKasia", 5),
    ("Oceniam na 5.", 5),
    ("Ocena: 4", 4),
    ("Ocena – 4", 4),
    ("5/5", 5),
    ("Dzięki, 5/5!", 5),
    ("5 - dziękuję!", 5),
    ("Dzień dobry,\n\n4\n\nPozdrawiam\nKasia", 4),
    ("5\nPozdrawiam, Kasia", 5),
    ("Dziękuję!\n\n5", 5),
    ("5\n\n-- \nKatarzyna Zając\nDział Księgowości, wew. 214", 5),
    ("Thanks, it works now. I rate it 5/5.\n\nKate", 5),
    ("My rating: 4 out of 5\n\nCheers,\nJohn", 4),
    ("Rating: 3\n\nThanks, Kate", 3),
    ("1\n\nBest regards\nJohn Smith", 1),
]


@pytest.mark.parametrize(("text", "rating"), RATING_REPLIES)
def test_parse_rating_accepts_real_reply(text: str, rating: int) -> None:
    assert parse_rating(text, "Katarzyna Zając", DEFAULT_THANKS_PHRASES) == rating


# Replies that carry a digit but are no rating: each must reopen a resolved ticket.
NOT_RATINGS = [
    "mam 2 drukarki i obie nie działają",
    "mam 2 drukarki i obie nie działają\n\nKasia",
    "2 razy restartowałam komputer\n\nKasia",
    "5\n\nNadal nie działa",
    "5\n\nNiestety",
    "5\n\nProszę jeszcze o toner.\n\nKasia",
    "5?",
    "Oceniam na 5, ale skaner dalej nie działa.",
    "1. Drukarka nie działa\n2. Skaner też",
    "4,5",
    "5. 4",
    "Kasia",
    "Wysłane z iPhone’a",
    "Sent from my iPhone 5",
    "I have 3 monitors and one is black.\n\nKate",
    "5\n\nBut the VPN still drops.\n\nSent from my iPhone",
    # A sign-off that is not the sender's (she is Katarzyna Zając) may be the complaint.
    "5\n\nTomek W.",
    "5\n\nKasia W.",
    "5\nJeszcze Outlook",
]


@pytest.mark.parametrize("text", NOT_RATINGS)
def test_parse_rating_rejects_digit_in_text(text: str) -> None:
    assert parse_rating(text, "Katarzyna Zając", DEFAULT_THANKS_PHRASES) is None


# A sign-off is dropped when it signs the sender's display name: the same first two
# letters as a word of it, then that word or its initial. A closing greeting before it
# drops any name.
@pytest.mark.parametrize(
    ("text", "name", "rating"),
    [
        ("5\n\nTomek W.", "Tomasz Wójcik", 5),
        ("5\nKasia", "Zając Katarzyna", 5),
        ("5\nZosia", "Zofia Wiśniewska", 5),
        ("5\nKasia", "katarzyna.zajac@example.org", 5),
        ("5\n\nPozdrawiam\nGosia", "Małgorzata Nowak", 5),
        ("4\n\nThanks,\nBob", "Robert Smith", 4),
        ("Dzięki, 5\nPozdrawiam, Gosia", "", 5),
    ],
)
def test_parse_rating_drops_senders_sign_off(text: str, name: str, rating: int) -> None:
    assert parse_rating(text, name, DEFAULT_THANKS_PHRASES) == rating


# A nickname that neither starts like the display name nor follows a closing greeting
# stays as text, so the reply reopens the ticket: a person reads it.
@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("5\n\nGosia", "Małgorzata Nowak"),
        ("5\n\nBob", "Robert Smith"),
        ("5\nKasia", ""),
        ("5\nOrange", "jan.nowak@orange.pl"),
    ],
)
def test_parse_rating_keeps_unmatched_sign_off(text: str, name: str) -> None:
    assert parse_rating(text, name, DEFAULT_THANKS_PHRASES) is None


# Outlook and Apple Mail add the signature below the text without "--": it opens with
# the sender's full name, in either order ("Zając Katarzyna" is how Polish company
# directories write it).
OUTLOOK_SIGNATURE = "Katarzyna Zając\nSpecjalistka ds. płac\nACME Sp. z o.o.\ntel. 600 100 200"


@pytest.mark.parametrize(
    "text",
    [
        f"5\n\n{OUTLOOK_SIGNATURE}",
        f"Ocena: 5\n{OUTLOOK_SIGNATURE}",
        "5\n\nZając Katarzyna\nDział Płac | ACME Sp. z o.o.\nul. Prosta 18, 00-850 Warszawa",
        "5\n\nKatarzyna Zając\nSpecjalistka ds. płac\nDział Kadr i Płac\nACME Sp. z o.o.\n"
        "ul. Prosta 18, 00-850 Warszawa\ntel. +48 22 123 45 67\nkom. +48 600 100 200\n"
        "www.acme.example",
    ],
)
def test_parse_rating_drops_full_name_signature(text: str) -> None:
    assert parse_rating(text, "Katarzyna Zając", DEFAULT_THANKS_PHRASES) == 5


@pytest.mark.parametrize(
    "text",
    [
        f"Dziękuję, już działa.\n\n{OUTLOOK_SIGNATURE}",
        f"Dzięki!\n{OUTLOOK_SIGNATURE}",
    ],
)
def test_short_thanks_drops_full_name_signature(text: str) -> None:
    assert is_short_thanks(text, DEFAULT_THANKS_PHRASES, "Katarzyna Zając")


@pytest.mark.parametrize(
    "text",
    [
        # Below the name comes a complaint, not a signature.
        "5\n\nKatarzyna Zając\nDrukarka nadal nie drukuje.",
        "Dziękuję\n\nKatarzyna Zając\nCzy mogę dostać drugi monitor?",
        # The full name alone above the text opens no signature.
        f"Katarzyna Zając\nDrukarka nie działa\n\n{OUTLOOK_SIGNATURE}",
    ],
)
def test_full_name_line_keeps_new_text(text: str) -> None:
    assert parse_rating(text, "Katarzyna Zając", DEFAULT_THANKS_PHRASES) is None
    assert not is_short_thanks(text, DEFAULT_THANKS_PHRASES, "Katarzyna Zając")


# Complaints and new requests after a thanks or a rating. Each line that starts like a
# mail app's footer goes on as a sentence, and each capitalised last line names a thing,
# not the sender, so none is a rating or a thanks.
COMPLAINTS = [
    "Dzięki\nWysłane z aplikacji faktury nadal nie dochodzą",
    "Dziękuję, 5\nWysłane z poczty maile wracają do mnie",
    "Sent from Android phones the invoices are empty",
    "Dzięki\nWysłane z telefonu maile dalej wracają z błędem 550.",
    "Dziękuję, 5\nWysłane z aplikacji faktury nadal nie mają załączników.",
    "Dzięki\nWysłane z Outlooka maile nadal trafiają do spamu.",
    "Dzięki\nWysłane z telefonu maile wracają z kodem 550",
    "5\nWysłano z mojego telefonu SMS-y do klientów giną",
    "Dziękuję\nWysłane z iPhone’a zdjęcia przychodzą puste",
    "5\nWysłane z aplikacji Teams wiadomości się dublują",
    "Thanks\nSent from my phone the invoices are empty",
    "Thanks\nSent from my iPhone. The VPN drops every hour.",
    "5\nSent from Outlook for Android the attachments are missing",
    "Thanks, 5\nSent from my laptop the printer prints blank pages",
    "Dzięki\nTeraz Teams",
    "Thanks\nNow Teams",
    "5\nJeszcze Outlook",
    "Dziękuję, Drukarka",
    "Dzięki\n\nSkaner",
    "Thank you\nPrinter",
    "Dzięki, Teraz Excel",
    "5\nAlso Teams",
    "Dzięki za pomoc.\nPozdrawiam\nPS. Skaner nadal nie skanuje",
    "5\nPozdrawiam\nJeszcze Outlook",
    "Thanks a lot!\nRegards\nOne more thing: can you reset my VPN?",
    "Dzięki\n-- drukarka drukuje puste strony",
]


@pytest.mark.parametrize("name", ["Zofia Wiśniewska", "Katarzyna Zając", ""])
@pytest.mark.parametrize("text", COMPLAINTS)
def test_complaint_is_no_rating(text: str, name: str) -> None:
    assert parse_rating(text, name, DEFAULT_THANKS_PHRASES) is None


@pytest.mark.parametrize("name", ["Zofia Wiśniewska", "Katarzyna Zając", ""])
@pytest.mark.parametrize("text", COMPLAINTS)
def test_complaint_is_no_thanks(text: str, name: str) -> None:
    assert not is_short_thanks(text, DEFAULT_THANKS_PHRASES, name)


# A product or a follow-up word that shares its first letters with the sender's name
# is no sign-off either.
@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("5\nTeams", "Teresa Nowak"),
        ("Dzięki\n\nMonitor", "Monika Jasna"),
        ("5\nJeszcze Outlook", "Jerzy Owsiak"),
        ("Dziękuję, Drukarka", "Drew Smith"),
        ("Thanks\nNow Teams", "Nora Tate"),
    ],
)
def test_product_matching_name_is_no_sign_off(text: str, name: str) -> None:
    assert parse_rating(text, name, DEFAULT_THANKS_PHRASES) is None
    assert not is_short_thanks(text, DEFAULT_THANKS_PHRASES, name)


@pytest.mark.parametrize(
    "text",
    [
        "5 minut temu drukarka znowu przestała działać",
        "6",
        "0",
        "10",
        "Dziękuję",
        "5\n\nale nadal nie działa skaner",
        "",
        "Mam 2 drukarki i obie nie działają",
    ],
)
def test_parse_rating_rejects(text: str) -> None:
    assert parse_rating(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "Dziękuję bardzo, wszystko działa!\n\nPozdrawiam\nKatarzyna Zając",
        "Dzięki!",
        "Thanks a lot, it works now.\n\nBest regards,\nKatarzyna",
        "ok, dziękuję",
        "Thank you!",
        "Dzień dobry,\n\ndziękuję za pomoc.\n\nZ poważaniem\nKatarzyna Zając\nDział kadr",
        "",
        "   \n  ",
    ],
)
def test_short_thanks_detected(text: str) -> None:
    assert is_short_thanks(text, DEFAULT_THANKS_PHRASES, "Katarzyna Zając")


@pytest.mark.parametrize(
    "text",
    [
        "Dziękuję\n\nKasia",
        "Dzięki, Kasia",
        "Dzięki!\n\nWysłane z iPhone’a",
        "Dziękuję, działa.\n\nKasia\n\nWysłano z mojego iPhone’a",
        "Thanks!\n\nSent from my iPhone",
        "Thank you!\nKate",
        "Dzięki!\n\n— Kasia",
        "Dzięki!\n\n-- \nKatarzyna Zając\nDział Księgowości",
        "Dzięki!\n\nWysłane z iPhone’a.",
        "Thanks!\n\nSent via the Samsung Galaxy S23, an AT&T 5G smartphone",
    ],
)
def test_short_thanks_with_nickname_or_footer(text: str) -> None:
    assert is_short_thanks(text, DEFAULT_THANKS_PHRASES, "Katarzyna Zając")


@pytest.mark.parametrize(
    "text",
    [
        # A single word is a message, not a sign-off, whatever its capital letter.
        "Pomocy",
        "Dziękuję\n\nNiestety",
        "Drukarka znowu nie działa\n\nKasia",
        "Dzięki\n\nSkaner?",
    ],
)
def test_short_thanks_rejects_new_text_before_nickname(text: str) -> None:
    assert not is_short_thanks(text, DEFAULT_THANKS_PHRASES, "Katarzyna Zając")


@pytest.mark.parametrize(
    "text",
    [
        "Dziękuję, ale nadal nie działa.",
        "Thanks, but the scanner still fails.",
        "Dziękuję. Czy mogę też dostać dostęp do drukarki w pokoju 215?",
        "Dzięki, teraz drukarka drukuje puste strony",
        "Monitor znowu migocze.",
        "Thank you. One more thing: my VPN disconnects every hour.",
    ],
)
def test_short_thanks_rejects_new_problem(text: str) -> None:
    assert not is_short_thanks(text, DEFAULT_THANKS_PHRASES, "Katarzyna Zając")


def test_short_thanks_uses_configured_phrases() -> None:
    assert is_short_thanks("Bóg zapłać", ("bóg zapłać",))
    assert not is_short_thanks("Bóg zapłać", DEFAULT_THANKS_PHRASES)


# --------------------------------------------------------------------------- by mail


def resolved_ticket(number: int = 20511, status: str = "resolved") -> models.Ticket:
    ticket = make_ticket(number, "Nie działa skaner w recepcji", ADDRESS, status=status,
                         assignee="ewa.nowak",
                         sent_ids=(f"<ack.{number}@maildesk.example.com>",
                                   f"<reply.{number}.1@maildesk.example.com>",
                                   f"<status.{number}.2@maildesk.example.com>"))
    ticket.requester.name = "Katarzyna Zając"
    ticket.requester.save()
    ticket.resolved_at = datetime(2026, 12, 3, 14, 10)
    ticket.auto_close_due = datetime(2026, 12, 8, 14, 10)
    ticket.sla_state = json.dumps({
        "state": "resolved", "started_at": "2026-12-02T09:00:00+01:00",
        "stopped_since": "2026-12-03T15:10:00+01:00", "stopped_spans": [],
        "responded_at": "2026-12-02T10:00:00+01:00",
        "resolved_at": "2026-12-03T15:10:00+01:00", "policy": "P3"})
    ticket.save()
    return ticket


def reply(body: str, number: int = 20511, message_id: str = "<r1@example.org>") -> bytes:
    return mail(sender=REQUESTER, subject=f"Odp: [#{number}] Zgłoszenie rozwiązane: Skaner",
                body=body, message_id=message_id,
                headers={"In-Reply-To": f"<status.{number}.2@maildesk.example.com>"})


def test_rating_reply_is_stored_without_reopening(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    resolved_ticket()

    outcome = pipeline.process(desk, reply("4\n\nPozdrawiam\nKatarzyna Zając"), "test:1")

    assert outcome.action == "append"
    ticket = models.Ticket.get_by_id(20511)
    assert ticket.status == "resolved"
    assert ticket.satisfaction == 4
    assert ticket.satisfaction_at is not None
    event = models.Event.get(models.Event.action == "satisfaction_rated")
    assert json.loads(event.after) == 4
    assert event.before is None
    assert models.Event.select().where(models.Event.action == "reopened").count() == 0


def test_rating_with_configured_thanks_kept(tmp_path: Path, database_url: str) -> None:
    # "działa" is one of the desk's thanks phrases, not of the fixed words after a rating.
    desk = make_desk(tmp_path, database_url)
    resolved_ticket()

    outcome = pipeline.process(desk, reply("5\nDziękuję, działa!"), "test:1")

    assert outcome.action == "append"
    ticket = models.Ticket.get_by_id(20511)
    assert ticket.status == "resolved"
    assert ticket.satisfaction == 5
    assert models.Event.select().where(models.Event.action == "reopened").count() == 0


def test_rating_reply_to_closed_ticket_joins_it(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    resolved_ticket(status="closed")

    outcome = pipeline.process(desk, reply("5"), "test:1")

    assert outcome.action == "append"
    assert outcome.ticket == 20511
    assert models.Ticket.select().count() == 1
    assert models.Ticket.get_by_id(20511).satisfaction == 5
    assert models.Ticket.get_by_id(20511).status == "closed"


def test_thanks_to_closed_ticket_opens_nothing(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    resolved_ticket(status="closed")

    outcome = pipeline.process(desk, reply("Dzięki!"), "test:1")

    assert outcome.action == "append"
    assert models.Ticket.select().count() == 1
    assert to_requester() == []


def test_thanks_log_names_status_in_admin_language(tmp_path: Path, database_url: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    # The log line is Polish for a Polish admin, so the status must not stay a code.
    desk = make_desk(tmp_path, database_url)
    resolved_ticket()

    with caplog.at_level(logging.INFO, logger="maildesk.servicehooks"):
        pipeline.process(desk, reply("Dzięki!"), "test:1")

    assert "nie zmienia statusu „rozwiązane”" in caplog.text
    assert "resolved" not in caplog.text


def to_requester() -> list[models.Outbox]:
    """Return the mail to the requester; the assignee may get a note of the reply."""
    return [row for row in models.Outbox.select() if ADDRESS in row.recipients.split()]


def test_real_reply_reopens_resolved_ticket(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    resolved_ticket()

    outcome = pipeline.process(desk, reply(
        "Dziękuję, ale skaner znowu nie wysyła skanów na pocztę.\n\n"
        "W dniu 03.12.2026 o 15:10, Helpdesk IT napisał(a):\n"
        "> Zgłoszenie zostało rozwiązane."), "test:1")

    assert outcome.action == "append"
    ticket = models.Ticket.get_by_id(20511)
    assert ticket.status == "in_progress"
    assert ticket.resolved_at is None
    assert ticket.auto_close_due is None
    assert json.loads(ticket.sla_state)["state"] == "running"
    assert models.Event.select().where(models.Event.action == "reopened").count() == 1
    assert [row.kind for row in to_requester()] == ["status_reopened"]


def test_reply_ends_wait_for_user(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    ticket = resolved_ticket(status="pending")
    ticket.resolved_at = None
    ticket.auto_close_due = None
    ticket.pending_reminder_due = datetime(2026, 12, 5, 9)
    ticket.sla_state = json.dumps({
        "state": "paused", "started_at": "2026-12-02T09:00:00+01:00",
        "stopped_since": "2026-12-02T10:00:00+01:00", "stopped_spans": [],
        "responded_at": "2026-12-02T10:00:00+01:00", "resolved_at": None, "policy": "P3"})
    ticket.save()

    pipeline.process(desk, reply("Numer seryjny: CN-4411."), "test:1")

    resumed = models.Ticket.get_by_id(20511)
    assert resumed.status == "in_progress"
    assert resumed.pending_reminder_due is None
    assert json.loads(resumed.sla_state)["state"] == "running"
    assert resumed.resolution_due is not None


def notice_to_agents() -> str:
    """Return the text part of the one ``user_replied`` notice in the outbox."""
    from email import message_from_bytes
    from email.policy import default

    rows = list(models.Outbox.select().where(models.Outbox.kind == "user_replied"))
    assert len(rows) == 1
    body = message_from_bytes(bytes(rows[0].raw), policy=default).get_body(("plain",))
    assert body is not None
    return str(body.get_content())


# The reply an iPhone sends: the rating, its footer, then the quoted resolution notice.
IPHONE_RATING = (
    "5\n\nWysłane z iPhone’a\n\n"
    "> Wiadomość napisana przez Ewa Nowak <helpdesk@example.com> w dniu 03.12.2026, "
    "o godz. 15:10:\n>\n"
    "> Zgłoszenie 20511 zostało rozwiązane. Jak oceniasz naszą pomoc? Odpowiedz\n"
    "> jedną cyfrą od 1 (źle) do 5 (bardzo dobrze).\n")

# Gmail in Polish: the rating in a sentence of thanks, a nickname, then the attribution.
GMAIL_RATING = (
    "Dziękuję bardzo, wszystko działa. Oceniam na 5.\n\nKasia\n\n"
    "czw., 3 gru 2026 o 15:10 Ewa Nowak <helpdesk@example.com> napisał(a):\n\n"
    "> Zgłoszenie 20511 zostało rozwiązane. Jak oceniasz naszą pomoc? Odpowiedz\n"
    "> jedną cyfrą od 1 (źle) do 5 (bardzo dobrze).\n")


@pytest.mark.parametrize("body", [IPHONE_RATING, GMAIL_RATING], ids=["iphone", "gmail"])
def test_real_rating_reply_keeps_ticket_resolved(tmp_path: Path, database_url: str,
                                                 body: str) -> None:
    desk = make_desk(tmp_path, database_url)
    before = resolved_ticket()

    outcome = pipeline.process(desk, reply(body), "test:1")

    assert outcome.action == "append"
    ticket = models.Ticket.get_by_id(20511)
    assert ticket.status == "resolved"
    assert ticket.satisfaction == 5
    assert ticket.sla_state == before.sla_state
    assert ticket.auto_close_due == before.auto_close_due
    assert models.Event.select().where(models.Event.action == "reopened").count() == 0
    assert to_requester() == []


def test_rating_notice_shows_rating(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    resolved_ticket()

    pipeline.process(desk, reply(IPHONE_RATING), "test:1")

    notice = notice_to_agents()
    assert "Ocena: 5/5" in notice
    assert "Wysłane z iPhone" not in notice
    assert "otworzyła" not in notice


def test_rating_notice_in_english(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url, agents=[
        {"login": "ewa.nowak", "name": "Ewa Nowak", "addresses": ["ewa.nowak@example.com"],
         "groups": ["druga-linia"], "language": "en"}])
    resolved_ticket()

    pipeline.process(desk, reply(GMAIL_RATING), "test:1")

    notice = notice_to_agents()
    assert "Rating: 5/5" in notice
    assert "Oceniam na 5." in notice


def test_digit_in_real_reply_reopens(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    resolved_ticket()

    pipeline.process(desk, reply("mam 2 drukarki i obie nie działają\n\nKasia"), "test:1")

    ticket = models.Ticket.get_by_id(20511)
    assert ticket.status == "in_progress"
    assert ticket.satisfaction is None
    assert [row.kind for row in to_requester()] == ["status_reopened"]
    notice = notice_to_agents()
    assert "Ta odpowiedź otworzyła zgłoszenie ponownie" in notice
    assert "Ocena:" not in notice


# Complaints whose last line starts like a mail app's footer: the line must reach the
# agents in reply_text, and the ticket must reopen without a rating.
FOOTER_LIKE_COMPLAINTS = [
    "Dzięki\nWysłane z Outlooka maile nadal trafiają do spamu.",
    "Dzięki\nWysłane z telefonu maile dalej wracają z błędem 550.",
    "Dziękuję, 5\nWysłane z aplikacji faktury nadal nie mają załączników.",
]


@pytest.mark.parametrize("body", FOOTER_LIKE_COMPLAINTS)
def test_footer_like_complaint_reopens(tmp_path: Path, database_url: str, body: str) -> None:
    desk = make_desk(tmp_path, database_url)
    resolved_ticket()

    pipeline.process(desk, reply(body + "\n"), "test:1")

    stored = models.Message.get(models.Message.message_id == "<r1@example.org>")
    assert stored.reply_text == body
    ticket = models.Ticket.get_by_id(20511)
    assert ticket.status == "in_progress"
    assert ticket.satisfaction is None
    assert [row.kind for row in to_requester()] == ["status_reopened"]


def test_reopen_notice_in_english(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url, agents=[
        {"login": "ewa.nowak", "name": "Ewa Nowak", "addresses": ["ewa.nowak@example.com"],
         "groups": ["druga-linia"], "language": "en"}])
    resolved_ticket()

    pipeline.process(desk, reply("The scanner fails again.\n\nKate"), "test:1")

    notice = notice_to_agents()
    assert "This reply reopened the ticket" in notice
    assert "Rating:" not in notice


def test_plain_reply_notice_has_no_outcome(tmp_path: Path, database_url: str) -> None:
    # A reply to an open ticket neither rates nor reopens it.
    desk = make_desk(tmp_path, database_url)
    ticket = resolved_ticket(status="in_progress")
    ticket.resolved_at = None
    ticket.save()

    pipeline.process(desk, reply("5 minut temu znowu padło."), "test:1")

    notice = notice_to_agents()
    assert "5 minut temu znowu padło." in notice
    assert "Ocena:" not in notice
    assert "otworzyła" not in notice


# --------------------------------------------------------------------------- cases


def load_case(shared_dir: Path, name: str) -> tuple[bytes, dict]:
    folder = shared_dir / "cases"
    raw = (folder / f"{name}.eml").read_bytes()
    return raw, yaml.safe_load((folder / f"{name}.yaml").read_text(encoding="utf-8"))


def test_case_thank_you_reply_to_resolved_ticket(tmp_path: Path, database_url: str,
                                                 shared_dir: Path) -> None:
    raw, case = load_case(shared_dir, "045-thank-you-reply-to-resolved-ticket")
    desk = make_desk(tmp_path, database_url)
    before = resolved_ticket()

    outcome = pipeline.process(desk, raw, "test:045")

    expected = case["expected"]
    assert outcome.action == "append"
    assert outcome.ticket == expected["thread_onto_ticket"]
    assert models.Ticket.select().count() == 1
    entry = models.Message.get(models.Message.ticket == 20511)
    assert entry.author == expected["thread_entry.author"]
    for text in expected["thread_entry.body_contains"]:
        assert text in entry.text
    after = models.Ticket.get_by_id(20511)
    assert after.status == "resolved"
    assert after.resolved_at == before.resolved_at
    assert after.sla_state == before.sla_state
    assert after.auto_close_due == before.auto_close_due
    # The case allows a note to the assignee; nothing goes to the requester.
    assert to_requester() == []
    assert all(row.recipients.split() == ["ewa.nowak@example.com"]
               for row in models.Outbox.select())
    marked = models.Event.get(models.Event.action == "reply_without_action")
    assert json.loads(marked.detail)["reason"] == "thanks"


def test_case_reply_to_closed_ticket_new_linked(tmp_path: Path, database_url: str,
                                                shared_dir: Path) -> None:
    raw, case = load_case(shared_dir, "044-reply-to-closed-ticket-new-linked")
    desk = make_desk(tmp_path, database_url)
    make_ticket(20510, "Monitor migocze", "jan.kwiatkowski@example.org", status="closed",
                sent_ids=("<ack.20510@maildesk.example.com>",
                          "<reply.20510.1@maildesk.example.com>",
                          "<status.20510.2@maildesk.example.com>",
                          "<status.20510.3@maildesk.example.com>"))

    outcome = pipeline.process(desk, raw, "test:044")

    expected = case["expected"]
    assert outcome.action == "create"
    new = models.Ticket.get_by_id(outcome.ticket)
    assert new.requester.address == expected["ticket.requester"]
    assert new.linked_ticket_id == 20510
    assert "[#20510]" not in new.subject
    assert new.subject == "Monitor migocze"
    assert models.Ticket.get_by_id(20510).status == "closed"
    assert models.Message.select().where(models.Message.ticket == 20510).count() == 0
    assert json.loads(new.sla_state)["state"] == "running"
    assert new.first_response_due is not None
    sent = list(models.Outbox.select())
    assert [row.kind for row in sent] == ["ack"]
    assert sent[0].recipients.split() == ["jan.kwiatkowski@example.org"]
    assert sent[0].subject == f"[#{new.id}] Przyjęliśmy zgłoszenie: Monitor migocze"
