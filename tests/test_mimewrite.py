"""The MIME writer: what it writes must parse back, with the standard library, to what was set."""

from __future__ import annotations

from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.policy import default as default_policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maildesk.mimewrite import (
    MimePart,
    addr_spec,
    attachment_part,
    encoded_words,
    fold,
    mailbox,
    message_bytes,
    text_part,
    unstructured,
)
from maildesk.parse import single_line

# Header text as it reaches the writer: one line, no control characters.
header_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")),
    min_size=1, max_size=300,
).map(single_line).filter(bool)


def parse(headers: list[tuple[str, str]], body: MimePart | None = None) -> EmailMessage:
    raw = message_bytes(headers, body or text_part("x", "plain"))
    parsed = message_from_bytes(raw, policy=default_policy)
    assert isinstance(parsed, EmailMessage)
    return parsed


def wire_lines(headers: list[tuple[str, str]]) -> list[bytes]:
    raw = message_bytes(headers, text_part("x", "plain"))
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


@settings(max_examples=400, deadline=None)
@given(header_text)
def test_mimewrite_subject_round_trips(subject: str) -> None:
    parsed = parse([("Subject", unstructured(subject))])

    assert parsed["Subject"] == subject


@settings(max_examples=400, deadline=None)
@given(header_text)
def test_mimewrite_display_name_round_trips(name: str) -> None:
    parsed = parse([("To", mailbox("zofia@example.org", name))])

    address = parsed["To"].addresses[0]
    assert address.addr_spec == "zofia@example.org"
    assert len(parsed["To"].addresses) == 1
    collapsed = " ".join(name.split())
    phrase = mailbox("zofia@example.org", name).rsplit(" <", 1)[0]
    if phrase.startswith("=?"):
        assert str(make_header(decode_header(phrase))) == collapsed
        # Python's address parser shows a space between two encoded words.
        assert address.display_name.replace(" ", "") == collapsed.replace(" ", "")
    else:
        assert address.display_name == collapsed


@settings(max_examples=200, deadline=None)
@given(header_text)
def test_mimewrite_lines_stay_within_limits(subject: str) -> None:
    lines = wire_lines([("Subject", unstructured(subject)),
                        ("To", mailbox("zofia@example.org", subject))])

    assert all(len(line) <= 998 for line in lines)
    assert all(line.isascii() for line in lines)


def test_mimewrite_folds_only_before_spaces() -> None:
    value = " ".join(f"<id{n}@example.org>" for n in range(30))

    lines = fold(f"References: {value}", len("References: ")).split("\r\n")

    assert len(lines) > 1
    assert all(len(line) <= 78 for line in lines)
    assert all(line.startswith(" ") for line in lines[1:])
    assert "".join(lines) == f"References: {value}"


def test_mimewrite_fold_keeps_runs_of_spaces() -> None:
    line = "Subject: " + "słowo   " * 20

    assert fold(line, 9).replace("\r\n", "") == line


def test_mimewrite_long_word_is_not_broken() -> None:
    word = "https://intranet.example.org/" + "a" * 120

    assert fold(f"Subject: {word}", 9) == f"Subject: {word}"


def test_mimewrite_subject_keeps_ticket_tag_readable() -> None:
    value = unstructured("[#20451] Przyjęliśmy zgłoszenie: Drukarka")

    assert value.startswith("[#20451] =?utf-8?q?")
    assert value.isascii()


def test_mimewrite_ascii_lookalike_of_encoded_word_is_encoded() -> None:
    subject = "[#1] =?utf-8?q?zaszyte?= w temacie"

    parsed = parse([("Subject", unstructured(subject))])

    assert parsed["Subject"] == subject


def test_mimewrite_encoded_words_keep_characters_whole() -> None:
    words = encoded_words("ż" * 100)

    assert all(len(word) <= 75 for word in words)
    for word in words:
        payload = word[len("=?utf-8?q?"):-2]
        assert bytes.fromhex(payload.replace("=", "")).decode("utf-8") == "ż" * (
            len(payload) // 6)


@pytest.mark.parametrize(("address", "expected"), [
    ("jan.kowalski@example.org", "jan.kowalski@example.org"),
    ("jan kowalski@example.org", '"jan kowalski"@example.org'),
    ('a"b@example.org', '"a\\"b"@example.org'),
    ("biuro@żółw.example", "biuro@xn--w-uga1v8h.example"),
    ("no-at-sign", "no-at-sign"),
])
def test_mimewrite_addr_spec(address: str, expected: str) -> None:
    assert addr_spec(address) == expected


@pytest.mark.parametrize(("name", "expected"), [
    ("Helpdesk IT", "Helpdesk IT <helpdesk@example.com>"),
    ("Kowalski, Jan", '"Kowalski, Jan" <helpdesk@example.com>'),
    ('Jan "Kowal" K.', '"Jan \\"Kowal\\" K." <helpdesk@example.com>'),
    ("", "helpdesk@example.com"),
])
def test_mimewrite_mailbox_forms(name: str, expected: str) -> None:
    assert mailbox("helpdesk@example.com", name) == expected


@pytest.mark.parametrize("text", [
    "Dzień dobry,\n\nprzyjęliśmy zgłoszenie.\n",
    "bez końca linii",
    "linia ze spacją na końcu   \nznak = i kropka\n.\n",
    "From the start\r\nCRLF i\rCR\n",
    "x" * 500 + "\n",
])
def test_mimewrite_text_part_round_trips(text: str) -> None:
    parsed = parse([("Subject", "x")], text_part(text, "plain"))

    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    expected = expected if expected.endswith("\n") else expected + "\n"
    assert parsed.get_content().replace("\r\n", "\n") == expected
    assert parsed.get_content_charset() == "utf-8"
    assert parsed["Content-Transfer-Encoding"] == "quoted-printable"


def test_mimewrite_multipart_round_trips() -> None:
    body = MimePart("multipart/mixed", parts=[
        MimePart("multipart/alternative",
                 parts=[text_part("tekst\n", "plain"), text_part("<p>tekst</p>", "html")]),
        attachment_part(bytes(range(256)) * 40, "application/pdf", "zdjęcie ekranu.pdf"),
        attachment_part(b"", "application/octet-stream", "pusty.bin"),
    ])

    parsed = parse([("Subject", "x")], body)

    assert parsed.get_content_type() == "multipart/mixed"
    attachments = list(parsed.iter_attachments())
    assert [part.get_filename() for part in attachments] == ["zdjęcie ekranu.pdf", "pusty.bin"]
    assert attachments[0].get_content() == bytes(range(256)) * 40
    assert attachments[1].get_content() == b""
    alternative = parsed.get_body(("plain",))
    assert alternative is not None
    assert alternative.get_content().replace("\r\n", "\n") == "tekst\n"
    assert parsed.get_body(("html",)).get_content().replace("\r\n", "\n") == "<p>tekst</p>\n"


def test_mimewrite_base64_lines_within_76() -> None:
    part = attachment_part(b"\xff" * 10_000, "application/octet-stream", "a.bin")

    lines = part.body.split(b"\r\n")

    assert max(len(line) for line in lines) == 76
    assert part.body.endswith(b"\r\n")


def test_mimewrite_folds_runs_of_spaces() -> None:
    subject = "  ".join(["słowo"] * 200)

    lines = wire_lines([("Subject", unstructured(subject))])
    parsed = parse([("Subject", unstructured(subject))])

    assert max(len(line) for line in lines) <= 998
    assert parsed["Subject"] == subject


@pytest.mark.parametrize("filename", [
    ("zażółć gęślą jaźń " * 11).strip(),
    "報告書" * 40,
    "a" * 200,
])
def test_mimewrite_long_file_names(filename: str) -> None:
    part = attachment_part(b"data", "application/pdf", filename)
    raw = message_bytes([("Subject", "x")], MimePart("multipart/mixed", parts=[
        text_part("x", "plain"), part]))

    parsed = message_from_bytes(raw, policy=default_policy)

    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert [a.get_filename() for a in parsed.iter_attachments()] == [filename]


def test_mimewrite_non_ascii_local_part_is_quoted() -> None:
    parsed = parse([("To", mailbox("é,eve@evil.example,x@example.org", "Jan"))])

    assert len(parsed["To"].addresses) == 1
    assert "eve@evil.example" not in [a.addr_spec for a in parsed["To"].addresses]


def test_mimewrite_from_line_is_encoded() -> None:
    part = text_part("From the desk\nFrom here too\n", "plain")

    assert not part.body.startswith(b"From ")
    assert b"\r\nFrom " not in part.body
    parsed = parse([("Subject", "x")], part)
    assert parsed.get_content().replace("\r\n", "\n") == "From the desk\nFrom here too\n"
