"""Outgoing messages: headers, threading, loop protection and header injection."""

from __future__ import annotations

import base64
from datetime import datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maildesk.mailbuild import (
    MAX_REFERENCES,
    OutgoingAttachment,
    Recipient,
    build_message,
    new_message_id,
    safe_filename,
    thread_index,
    valid_message_ids,
)
from maildesk.templating import RenderedMail

DESK = Recipient("helpdesk@example.com", "Helpdesk IT")
REQUESTER = Recipient("zofia.wisniewska@example.org", "Zofia Wiśniewska")


def rendered(subject: str = "[#20451] Przyjęliśmy zgłoszenie: Drukarka",
             text: str = "Dzień dobry,\n\nprzyjęliśmy zgłoszenie.\n") -> RenderedMail:
    return RenderedMail(subject, text, "<p>Dzień dobry</p>\n", "pl")


def build(**overrides) -> EmailMessage:
    arguments = dict(sender=DESK, to=[REQUESTER], message_id="<ack.20451.1@maildesk.example.com>",
                     reply_to="helpdesk@example.com", ticket=20451)
    arguments.update(overrides)
    subject = arguments.pop("subject", None)
    mail = rendered(subject) if subject is not None else rendered()
    return build_message(mail, **arguments)


def reparse(message: EmailMessage) -> EmailMessage:
    parsed = message_from_bytes(message.as_bytes(), policy=default_policy)
    assert isinstance(parsed, EmailMessage)
    return parsed


def header_names(raw: bytes) -> list[str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    return [line.split(":", 1)[0] for line in head.split("\r\n") if line and line[0] not in " \t"]


def test_mailbuild_headers_of_automatic_mail() -> None:
    parsed = reparse(build(in_reply_to="<m1@example.org>"))

    assert parsed["From"] == "Helpdesk IT <helpdesk@example.com>"
    assert parsed["To"] == "Zofia Wiśniewska <zofia.wisniewska@example.org>"
    assert parsed["Reply-To"] == "helpdesk@example.com"
    assert parsed["Subject"] == "[#20451] Przyjęliśmy zgłoszenie: Drukarka"
    assert parsed["Message-ID"] == "<ack.20451.1@maildesk.example.com>"
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed["X-Auto-Response-Suppress"] == "All"
    assert parsed["X-Loop"] == "helpdesk@example.com"
    assert parsed["X-Maildesk-Ticket"] == "20451"
    assert parsed["Content-Language"] == "pl"
    assert parsed["Date"] is not None


def test_mailbuild_manual_mail_has_no_auto_headers() -> None:
    parsed = reparse(build(automatic=False))

    assert parsed["Auto-Submitted"] is None
    assert parsed["X-Auto-Response-Suppress"] is None


def test_mailbuild_parts_are_utf8_text_and_html() -> None:
    parsed = reparse(build())

    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert [part.get_content_charset() for part in parts] == ["utf-8", "utf-8"]
    assert parts[0].get_content().replace("\r\n", "\n") == (
        "Dzień dobry,\n\nprzyjęliśmy zgłoszenie.\n")
    assert "Dzień dobry" in parts[1].get_content()


def test_mailbuild_threading_headers() -> None:
    references = [f"<r{n}@example.org>" for n in range(20)]

    parsed = reparse(build(in_reply_to="<r19@example.org>", references=references))

    assert parsed["In-Reply-To"] == "<r19@example.org>"
    kept = parsed["References"].split()
    assert len(kept) == MAX_REFERENCES
    assert kept[0] == "<r0@example.org>"
    assert kept[-1] == "<r19@example.org>"


def test_mailbuild_references_include_parent() -> None:
    parsed = reparse(build(in_reply_to="<m2@example.org>", references=["<m1@example.org>"]))

    assert parsed["References"].split() == ["<m1@example.org>", "<m2@example.org>"]


def test_mailbuild_drops_malformed_message_ids() -> None:
    parsed = reparse(build(in_reply_to="<a b@example.org>\r\nBcc: x@evil.example",
                           references=["no-brackets@example.org", "<ok@example.org>",
                                       "<ok@example.org>"]))

    assert parsed["In-Reply-To"] is None
    assert parsed["References"] == "<ok@example.org>"
    assert parsed["Bcc"] is None


def test_mailbuild_valid_message_ids_keeps_order() -> None:
    assert valid_message_ids(["<b@x>", "<a@x>", "<b@x>", "bad", "<c d@x>"]) == ["<b@x>",
                                                                              "<a@x>"]


def test_mailbuild_outlook_thread_headers() -> None:
    started = datetime(2026, 12, 4, 9, 0)

    first = reparse(build(thread_topic="Drukarka", thread_started=started))
    second = reparse(build(thread_topic="Drukarka", thread_started=started,
                           message_id="<status.20451.2@maildesk.example.com>"))

    assert first["Thread-Topic"] == "Drukarka"
    index = base64.b64decode(first["Thread-Index"])
    assert len(index) == 22
    assert index[0] == 1
    assert first["Thread-Index"] == second["Thread-Index"]


def test_mailbuild_thread_index_differs_per_ticket() -> None:
    started = datetime(2026, 12, 4, 9, 0)

    assert thread_index("a/ticket/1", started) != thread_index("a/ticket/2", started)


def test_mailbuild_subject_injection_stays_one_header() -> None:
    subject = ("[#1] Przyjęliśmy zgłoszenie: Nie działa\nBcc: kopie@collector.example.net"
               "\r\nX-Priority: 1")

    message = build(subject=subject)
    raw = message.as_bytes()
    parsed = reparse(message)

    assert header_names(raw).count("Subject") == 1
    assert "Bcc" not in header_names(raw)
    assert "X-Priority" not in header_names(raw)
    assert "\n" not in parsed["Subject"]
    assert "\r" not in parsed["Subject"]
    assert parsed["Subject"] == ("[#1] Przyjęliśmy zgłoszenie: Nie działa Bcc: "
                                 "kopie@collector.example.net X-Priority: 1")


def test_mailbuild_display_name_injection_stays_in_name() -> None:
    evil = Recipient("jan.kowalski@example.org", "Jan\r\nBcc: kopie@collector.example.net")

    message = build(to=[evil], sender=Recipient("helpdesk@example.com", "Help\nX-Priority: 1"))
    raw = message.as_bytes()
    parsed = reparse(message)

    assert "Bcc" not in header_names(raw)
    assert "X-Priority" not in header_names(raw)
    assert parsed["To"].addresses[0].addr_spec == "jan.kowalski@example.org"
    assert parsed["To"].addresses[0].display_name == "Jan Bcc: kopie@collector.example.net"
    assert len(parsed["To"].addresses) == 1


def test_mailbuild_attachment_filename_is_sanitised() -> None:
    attachment = OutgoingAttachment("../../etc/faktura\r\nBcc: x@evil.example.pdf",
                                    "application/pdf", b"%PDF-1.4")

    message = build(attachments=[attachment])
    raw = message.as_bytes()
    parsed = reparse(message)

    assert "Bcc" not in header_names(raw)
    files = [part for part in parsed.iter_attachments()]
    assert len(files) == 1
    assert files[0].get_filename() == "etc_faktura Bcc_ x@evil.example.pdf"
    assert files[0].get_content_type() == "application/pdf"
    assert files[0].get_content() == b"%PDF-1.4"


@pytest.mark.parametrize(("name", "expected"), [
    ("raport.pdf", "raport.pdf"),
    ("..\\..\\windows\\system.ini", "windows_system.ini"),
    ("a\x00b.txt", "ab.txt"),
    ("a:b?.txt", "a_b_.txt"),
    ("", "attachment"),
    ("...", "attachment"),
    ("zdjęcie ekranu.png", "zdjęcie ekranu.png"),
])
def test_mailbuild_safe_filename(name: str, expected: str) -> None:
    assert safe_filename(name) == expected


@pytest.mark.parametrize("subject", [
    "x" * 75 + " [#20451] a",
    "[#20451] " + "ż" * 120,
    "[#20451] https://intranet.example.org/" + "a" * 90,
    "Zgłoszenie" + "-" * 100,
])
def test_mailbuild_folded_subject_starts_on_first_line(subject: str) -> None:
    raw = build(subject=subject).as_bytes()

    subject_line = next(line for line in raw.split(b"\r\n") if line.startswith(b"Subject:"))
    assert subject_line.strip() != b"Subject:"
    assert len(subject_line) > len(b"Subject: ")
    assert reparse(build(subject=subject))["Subject"] == subject


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["[#20451]", "Drukarka", "na", "2.", "piętrze", "żółć",
                                 "–", "Zgłoszenie:", "https://intranet.example.org/a/b",
                                 "x" * 70, "Re:", "(pilne)", "\"cytat\"", "ąęśćźżółń" * 5]),
                min_size=1, max_size=25))
def test_mailbuild_subject_round_trips(words: list[str]) -> None:
    subject = " ".join(words)

    parsed = reparse(build(subject=subject))

    assert parsed["Subject"] == subject


def test_mailbuild_every_line_within_998() -> None:
    raw = build(subject="[#1] " + "słowo " * 200).as_bytes()

    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


def test_mailbuild_message_ids_are_unique_and_tagged() -> None:
    first = new_message_id("ack", 20451, "maildesk.example.com")
    second = new_message_id("ack", 20451, "maildesk.example.com")

    assert first != second
    assert first.startswith("<ack.20451.")
    assert first.endswith("@maildesk.example.com>")
    assert valid_message_ids([first]) == [first]


def test_mailbuild_drops_overlong_message_id() -> None:
    long_id = "<" + "a" * 1500 + "@example.org>"

    raw = build(in_reply_to=long_id, references=[long_id, "<ok@example.org>"]).as_bytes()

    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert reparse(build(in_reply_to=long_id))["In-Reply-To"] is None
