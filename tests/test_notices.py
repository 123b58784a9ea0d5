"""Company notices at the end of a mail: cut from the reply text, and nothing else is."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from maildesk.notices import cut_notices
from maildesk.quotes import extract_reply

CONFIDENTIAL = ("Niniejsza wiadomość jest poufna i przeznaczona wyłącznie dla wskazanego "
                "adresata. Jeżeli nie jest Pan/Pani zamierzonym odbiorcą, prosimy o "
                "powiadomienie nadawcy i usunięcie wiadomości.")
COMPANY = ("ACME Sp. z o.o. z siedzibą w Warszawie, ul. Prosta 18, 00-850 Warszawa, Sąd "
           "Rejonowy dla m.st. Warszawy, XII Wydział Gospodarczy KRS, KRS 0000123456, "
           "NIP 5250001122, kapitał zakładowy 50 000,00 zł.")
PRIVACY = ("Administratorem Pani/Pana danych osobowych jest ACME Sp. z o.o. Dane są "
           "przetwarzane zgodnie z RODO w celu obsługi korespondencji.")
ENGLISH = ("This e-mail and any attachments are confidential and intended solely for the "
           "addressee. If you have received it in error, please notify the sender.")
PRINT = "Zanim wydrukujesz tę wiadomość, pomyśl o środowisku."
SIGNATURE = "Jan Kowalski\nSpecjalista ds. księgowości\ntel. +48 22 123 45 67"
TEXT = "Dzień dobry,\n\ndrukarka dalej nie działa.\n\nPozdrawiam\nJan"


@pytest.mark.parametrize(
    "footer",
    [
        CONFIDENTIAL,
        COMPANY,
        PRIVACY,
        ENGLISH,
        PRINT,
        "Please consider the environment before printing this e-mail.",
        f"{CONFIDENTIAL}\n{COMPANY}",
        f"{CONFIDENTIAL}\n\n{ENGLISH}\n\n{COMPANY}\n\n{PRINT}",
        # Wrapped at 72 characters by the client's text part.
        "Informacje zawarte w tej wiadomości są poufne i przeznaczone wyłącznie\n"
        "dla adresata. Jeśli otrzymali Państwo tę wiadomość omyłkowo, prosimy\n"
        "o jej usunięcie.",
        f"____________________\n{CONFIDENTIAL}",
        f"{COMPANY.replace(', Sąd', chr(10) + 'Sąd').replace(', NIP', chr(10) + 'NIP')}",
    ],
)
def test_extract_reply_cuts_notice(footer: str) -> None:
    assert extract_reply(f"{TEXT}\n\n{SIGNATURE}\n\n{footer}\n") == f"{TEXT}\n\n{SIGNATURE}"


def test_notice_right_below_signature_cut() -> None:
    text = f"{TEXT}\n\n{SIGNATURE}\n{CONFIDENTIAL}\n"

    assert extract_reply(text) == f"{TEXT}\n\n{SIGNATURE}"


def test_company_data_in_signature_cut() -> None:
    text = f"{TEXT}\n\n{SIGNATURE}\n{COMPANY}\n"

    assert extract_reply(text) == f"{TEXT}\n\n{SIGNATURE}"


@pytest.mark.parametrize(
    "text",
    [
        f"Dziękuję.\n\nWysłane z iPhone’a\n\n{CONFIDENTIAL}",
        f"Dziękuję.\n\n{CONFIDENTIAL}\n\nWysłane z iPhone’a",
        f"Dziękuję.\n\n-- \nJan\n\n{CONFIDENTIAL}",
    ],
)
def test_notice_and_mobile_footer_cut_in_any_order(text: str) -> None:
    assert extract_reply(text) == "Dziękuję."


@pytest.mark.parametrize(
    "last",
    [
        "Ta wiadomość jest pilna.",
        "Ta wiadomość jest poufna, proszę nie udostępniać hasła.",
        "Zanim wydrukujesz, wybierz drukarkę PR-214 w pokoju 12.",
        "Jeżeli nie jest to możliwe, proszę o wydruk i skan.",
        "Jeśli otrzymał Pan fakturę przez pomyłkę, proszę ją odesłać do adresata.",
        "Dane do faktury: ACME Sp. z o.o., NIP 5250001122, KRS 0000123456.",
        "Administratorem danych osobowych jest dział kadr, proszę pisać do nich.",
        "This message needs an answer today.",
        "If you are not sure, call me on 600 100 200.",
    ],
)
def test_sentence_like_notice_stays(last: str) -> None:
    text = f"Dzień dobry,\n\nproszę o pomoc.\n\n{last}"

    assert extract_reply(text) == text


@pytest.mark.parametrize(
    "last",
    [
        # A user reporting a misdirected mail, an agent's warning to the user and the
        # like: a notice's words, but a person's own sentence to the reader.
        "Ta wiadomość jest poufna i nie była przeznaczona dla mnie. Co mam z nią zrobić?",
        "Ta informacja jest poufna i przeznaczona tylko dla Pana, proszę jej nie "
        "przekazywać.",
        "Ta wiadomość z kadr jest poufna, a nie byłem jej adresatem. Czy mam ją usunąć?",
        "Jeżeli nie jest to pilne, proszę przekazać mój raport odbiorcom w kadrach, bo "
        "zawiera poufne dane.",
        "This email is confidential and was not intended for me. Should I delete it?",
        "This message from HR is confidential and reached the wrong recipient, so I am "
        "reporting it.",
        "Administratorem danych osobowych w systemie kadrowym jest dział HR, który je "
        "przetwarza. Czy mogę dostać dostęp?",
    ],
)
def test_own_sentence_with_notice_words_stays(last: str) -> None:
    text = f"Dzień dobry,\n\nproszę o pomoc.\n\n{last}"
    in_signature = f"Dzień dobry,\n{last}\nAnna"

    assert extract_reply(text) == text
    assert extract_reply(in_signature) == in_signature


@pytest.mark.parametrize(
    "footer",
    [
        # The classic English disclaimer names no addressee, only whom the mail is
        # addressed to.
        "This email and any files transmitted with it are confidential and intended "
        "solely for the use of the individual or entity to whom they are addressed. If "
        "you have received this email in error please notify the system manager.",
        "Wiadomość ta jest poufna i przeznaczona wyłącznie dla osoby, do której została "
        "zaadresowana.",
        "Administratorem Pani/Pana danych osobowych jest ACME Sp. z o.o. Dane są "
        "przetwarzane zgodnie z RODO, więcej na https://acme.example/rodo?lang=pl",
    ],
)
def test_other_notice_wordings_cut(footer: str) -> None:
    assert extract_reply(f"{TEXT}\n\n{footer}") == TEXT


def test_cut_notices_keeps_lines_above() -> None:
    lines = ["Treść.", "", CONFIDENTIAL, "", ""]

    assert cut_notices(lines) == ["Treść."]


def test_cut_notices_whole_text_notice_is_empty() -> None:
    assert cut_notices([CONFIDENTIAL, "", COMPANY]) == []


def test_cut_notices_pathological_input_finishes() -> None:
    def fail(signum: int, frame: object) -> None:
        raise TimeoutError("cutting notices did not finish within 20 seconds")

    hostile = ["Niniejsza wiadomość " + "-" * 20000, "poufna adresat " * 2000] * 200
    hostile += ["_" * 50000 + "kapitał zakładowy KRS"] * 20
    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(20)
    try:
        result = cut_notices(hostile + ["Wysłane z iPhone’a"])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)

    assert isinstance(result, list)


@pytest.fixture(autouse=True)
def _no_alarm() -> Iterator[None]:
    yield
    signal.alarm(0)
