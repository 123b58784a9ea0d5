"""Reply text: the new part of a reply without quoted history, signature or footer."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from maildesk.quotes import extract_reply, is_mobile_footer, strip_html_quotes


@pytest.fixture
def hang_guard() -> Iterator[None]:
    """Fail instead of hanging when a pattern backtracks catastrophically (not a timing test)."""

    def fail(signum: int, frame: object) -> None:
        raise TimeoutError("quote splitting did not finish within 20 seconds")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_extract_reply_polish_outlook_block() -> None:
    text = (
        "Drukarka dalej nie działa.\n\nPozdrawiam\nZofia\n\n"
        "Od: Helpdesk IT <helpdesk@example.com>\nWysłano: czwartek, 3 grudnia 2026 10:15\n"
        "Do: Zofia <zofia@example.org>\nDW: Jan <jan@example.org>\nTemat: [#20451] Status\n\n"
        "Status zgłoszenia zmienił się.\n"
    )

    reply = extract_reply(text)

    assert reply == "Drukarka dalej nie działa.\n\nPozdrawiam\nZofia"


def test_extract_reply_polish_outlook_block_with_data() -> None:
    text = "Dziękuję.\n\nOd: Jan\nData: 3.12.2026\nDo: Zofia\nTemat: Test\n\nhistoria"

    assert extract_reply(text) == "Dziękuję."


def test_extract_reply_english_outlook_block() -> None:
    text = "Thanks.\n\n*From:* Kim [mailto:kim@example.org]\n*Sent:* Monday\n*To:* x\n\nold"

    assert extract_reply(text) == "Thanks."


def test_extract_reply_original_message_separator() -> None:
    text = "Nowa treść\n\n-----Original Message-----\nstara treść"

    assert extract_reply(text) == "Nowa treść"


def test_extract_reply_polish_original_message_separator() -> None:
    text = "Nowa treść\n\n-----Wiadomość oryginalna-----\nOd: Jan\nstara treść"

    assert extract_reply(text) == "Nowa treść"


def test_extract_reply_thunderbird_polish() -> None:
    text = "Tak, działa.\n\nW dniu 03.12.2026 o 10:15, Jan Nowak pisze:\n> Czy działa?\n"

    assert extract_reply(text) == "Tak, działa."


def test_extract_reply_gmail_polish_w_dniu() -> None:
    text = "Tak.\n\nW dniu czw., 3 gru 2026 o 10:15 Jan Nowak <jan@example.org> napisał(a):\n> x"

    assert extract_reply(text) == "Tak."


def test_extract_reply_gmail_polish_wrapped() -> None:
    text = (
        "Tak, problem nadal występuje.\n\n"
        "czw., 3 gru 2026 o 10:15 Helpdesk IT <helpdesk@example.com>\nnapisał(a):\n\n"
        "> Dzień dobry,\n>\n> czy problem nadal występuje?\n"
    )

    assert extract_reply(text) == "Tak, problem nadal występuje."


def test_extract_reply_on_wrote_wrapped() -> None:
    text = "I get it.\n\nOn Dec 16, 2011, at 12:47 PM, Corey\n<reply@example.org>\nwrote:\n\n> old"

    assert extract_reply(text) == "I get it."


def test_extract_reply_attribution_without_quote_marks_cuts() -> None:
    text = "Hi there\n\nOn Mon, 1 Jan 2026, Jan <jan@example.org> wrote:\n\nold text without >"

    assert extract_reply(text) == "Hi there"


def test_extract_reply_keeps_inline_answers() -> None:
    text = "Hi,\nOn Tue, 2011-03-01, Abhishek wrote:\n> question?\n\nThe answer.\n"

    reply = extract_reply(text)

    assert "The answer." in reply
    assert "question?" not in reply
    assert "wrote:" not in reply


def test_extract_reply_line_starting_with_on_is_text() -> None:
    text = "On your remote host you can run:\n\n  telnet 127.0.0.1 52698\n"

    assert "telnet 127.0.0.1 52698" in extract_reply(text)


def test_extract_reply_removes_signature() -> None:
    text = "Proszę o reset hasła.\n\n-- \nJan Nowak\ntel. 123\n"

    assert extract_reply(text) == "Proszę o reset hasła."


MOBILE_FOOTERS = [
    "Sent from my iPhone",
    "Sent from my iPad",
    "Sent from my Samsung Galaxy smartphone.",
    "Sent from my Android device",
    "Sent from Outlook for Android",
    "Sent from Mail for Windows",
    "Sent from Yahoo Mail for iPhone",
    "Sent via the Samsung Galaxy S23, an AT&T 5G smartphone",
    "Get Outlook for iOS",
    "Get Outlook for Android<https://aka.ms/AAb9ysg>",
    "Wysłano z iPhone'a",
    "Wysłano z mojego telefonu",
    # iOS writes a typographic apostrophe (U+2019), and the Polish iOS uses "Wysłane".
    "Wysłane z iPhone’a",
    "Wysłane z iPhone'a",
    "Wysłane z iPhonea",
    "Wysłane z mojego iPada",
    "Wysłano z mojego iPhone’a",
    "Wysłano ze smartfona Samsung Galaxy.",
    "Wysłane z telefonu Huawei",
    "Wysłane z aplikacji Poczta dla systemu Windows",
    "Pobierz aplikację Outlook dla systemu iOS",
    "Uzyskaj program Outlook dla systemu Android",
    "Wysłane z iPhone’a.",
    "Sent from my iPhone 5",
    "Sent from my BlackBerry® device",
    "Gesendet von meinem iPhone",
    "Von meinem iPhone gesendet",
]


@pytest.mark.parametrize("footer", MOBILE_FOOTERS)
def test_extract_reply_removes_mobile_footer(footer: str) -> None:
    assert extract_reply(f"Działa.\n\n{footer}\n") == "Działa."


@pytest.mark.parametrize("footer", MOBILE_FOOTERS)
def test_is_mobile_footer_matches(footer: str) -> None:
    assert is_mobile_footer(footer)


@pytest.mark.parametrize(
    "line",
    [
        "Wysłano z opóźnieniem.",
        "Wysłane z działu kadr wczoraj, proszę sprawdzić.",
        "Sent from the office printer, but nothing came out.",
        "Dziękuję",
        # Sentences that start with a footer's words and go on.
        "Wysłane z telefonu maile dalej wracają z błędem 550.",
        "Wysłane z aplikacji faktury nadal nie mają załączników.",
        "Wysłane z Outlooka maile nadal trafiają do spamu.",
        "Wysłane z poczty maile wracają do mnie",
        "Wysłane z iPhone’a zdjęcia przychodzą puste",
        "Wysłano z mojego telefonu SMS-y do klientów giną",
        "Wysłane z iPhone’a, Teams nadal się zawiesza",
        "Sent from Android phones the invoices are empty",
        "Sent from my phone the invoices are empty",
        "Sent from my iPhone. The VPN drops every hour.",
        "Sent from Outlook for Android the attachments are missing",
        "Sent from my iPhone?",
        "Von meinem iPhone gesendet, aber leer",
    ],
)
def test_is_mobile_footer_rejects_sentences(line: str) -> None:
    assert not is_mobile_footer(line)


@pytest.mark.parametrize(
    "text",
    [
        "Dzięki\nWysłane z Outlooka maile nadal trafiają do spamu.",
        "Dzięki\nWysłane z telefonu maile dalej wracają z błędem 550.",
        "Thanks\nSent from my phone the invoices are empty",
    ],
)
def test_extract_reply_keeps_sentence_like_footer(text: str) -> None:
    assert extract_reply(text + "\n") == text


def test_extract_reply_keeps_footer_above_text() -> None:
    # Only a footer that ends the reply goes, because the text below one is the sender's.
    text = "Działa.\n\nSent from my iPhone\n\nPS. Skaner też nie skanuje."

    assert extract_reply(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5\n\nWysłane z iPhone’a\n\n> Zgłoszenie zostało rozwiązane.\n", "5"),
        ("Działa.\nSent from my iPhone\n-- \nJan Nowak\nDział IT\n", "Działa."),
        ("Działa.\n\nWysłane z iPhone’a\n\nSent from my iPhone\n", "Działa."),
    ],
)
def test_extract_reply_removes_trailing_footers(text: str, expected: str) -> None:
    assert extract_reply(text) == expected


def test_extract_reply_keeps_sign_off_above_footer() -> None:
    # An agent's reply from an iPhone: the footer must not reach the user, the name must.
    text = ("#przypisz mnie\nDzień dobry, będę u Pani za ok. 20 minut.\n\nPiotr\n\n"
            "Wysłane z iPhone’a\n")

    assert extract_reply(text) == ("#przypisz mnie\nDzień dobry, będę u Pani za ok. 20 minut."
                                   "\n\nPiotr")


def test_extract_reply_removes_list_footer() -> None:
    text = "Treść.\n\n" + "_" * 47 + "\nadmini mailing list\nhttps://lists.example.org/listinfo\n"

    assert extract_reply(text) == "Treść."


def test_extract_reply_header_first_keeps_following_text() -> None:
    text = "Od: Jan <jan@example.com>\nWysłano: środa\nTemat: Test\n\nCześć Anno,\nJak się masz?"

    assert extract_reply(text) == "Cześć Anno,\nJak się masz?"


def test_extract_reply_forward_keeps_history() -> None:
    text = "Zobaczcie.\n\n-----Original Message-----\nFrom: Vendor\nSent: Monday\n\nFaktura 12"

    assert "Faktura 12" in extract_reply(text, forwarded=True)


def test_extract_reply_all_quoted_is_empty() -> None:
    assert extract_reply("> only\n> quoted\n") == ""


def test_extract_reply_pathological_input_finishes(hang_guard: None) -> None:
    hostile = (
        "On "
        + "a " * 20000
        + "\n"
        + ("> " * 5000 + "\n") * 20
        + "From: x\n" * 3000
        + "wrote " * 5000
        + ":"
        + "\n"
        + "-" * 100000
        + "\n"
        + "On\n" * 10000
    )

    reply = extract_reply(hostile)

    assert isinstance(reply, str)


def test_strip_html_quotes_gmail() -> None:
    html = '<div>Nowe</div><div class="gmail_quote">On x wrote:<blockquote>stare</blockquote></div>'

    stripped = strip_html_quotes(html)

    assert "Nowe" in stripped
    assert "stare" not in stripped


def test_strip_html_quotes_outlook_reply_section() -> None:
    html = '<div>Nowe</div><div id="divRplyFwdMsg">Od: x</div><div>stare</div>'

    stripped = strip_html_quotes(html)

    assert "Nowe" in stripped
    assert "stare" not in stripped


def test_strip_html_quotes_unparseable_returns_input() -> None:
    assert strip_html_quotes("   ") == "   "


def test_extract_reply_apple_mail_polish() -> None:
    text = (
        "Dziękuję, działa.\n\n"
        "Wiadomość napisana przez Helpdesk IT <helpdesk@example.com> w dniu 03.12.2026,"
        " o godz. 10:15:\n\nStara treść bez cytowania\n"
    )

    assert extract_reply(text) == "Dziękuję, działa."


def test_strip_html_quotes_signature() -> None:
    html = '<div>Nowe</div><div class="gmail_signature">Jan Nowak, tel. 123</div>'

    stripped = strip_html_quotes(html)

    assert "Nowe" in stripped
    assert "tel. 123" not in stripped


FORWARDED = ("Od: System FK <noreply@fk.example.com>\nTemat: Błąd importu\n"
             "Data: 4 grudnia 2026 08:12\nDo: jan@example.com\n\nImport nie powiódł się.")


@pytest.mark.parametrize(
    "separator",
    [
        "---------- Przekazana wiadomość ---------",
        "-------- Przekazana wiadomość --------",
        "---------- Forwarded message ---------",
        "---------- Wiadomość przekazana dalej ----------",
        "Początek przekazywanej wiadomości:",
        "Begin forwarded message:",
    ],
)
def test_extract_reply_forward_separator_keeps_forwarded_mail(separator: str) -> None:
    # The user deleted the "Fwd:" of the subject: the separator still marks a forward.
    text = f"Proszę o pomoc.\n\n{separator}\n{FORWARDED}\n"

    reply = extract_reply(text)

    assert reply.startswith("Proszę o pomoc.\n\n" + separator)
    assert reply.endswith("Import nie powiódł się.")


def test_extract_reply_forward_keeps_mail_below_signature() -> None:
    # Gmail and Thunderbird put the forwarder's signature above the forwarded mail.
    text = ("Proszę o pomoc.\n\n-- \nJan Kowalski\ntel. 600 100 200\n\n"
            f"---------- Przekazana wiadomość ---------\n{FORWARDED}\n\n-- \nSystem FK\n")

    for forwarded in (True, False):
        reply = extract_reply(text, forwarded=forwarded)

        assert reply.startswith("Proszę o pomoc.\n\n---------- Przekazana wiadomość")
        assert "Import nie powiódł się." in reply
        assert "tel. 600 100 200" not in reply
        assert "System FK\n" not in reply


def test_extract_reply_forward_inside_quote_cut() -> None:
    text = ("Nadal nie działa.\n\nW dniu 4.12.2026 o 09:05, Jan pisze:\n"
            "> ---------- Przekazana wiadomość ---------\n> Import nie powiódł się.\n")

    assert extract_reply(text) == "Nadal nie działa."


def test_extract_reply_reply_with_header_first_is_empty() -> None:
    # Outlook sent before anything was typed: everything is the quoted mail.
    text = ("\n\nOd: Marek <marek@example.com>\nWysłane: piątek, 4 grudnia 2026 09:05\n"
            "Do: Helpdesk\nTemat: RE: [#5] Drukarka\n\n#zamknij\n\nZamykam.\n")

    assert extract_reply(text, replying=True) == ""
    assert extract_reply(text) == "#zamknij\n\nZamykam."
