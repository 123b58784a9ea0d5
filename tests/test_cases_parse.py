"""Parse-level expectations of the bug-report cases (subject, body, sender, attachments, reply).

Threading, rules and outgoing mail of the same cases are tested with the pipeline.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from maildesk.parse import ParsedMessage, parse_message
from maildesk.subjects import strip_reply_prefixes

CASES = Path(__file__).resolve().parents[2] / "shared" / "cases"
PIPELINE_SUBJECTS = {"044-reply-to-closed-ticket-new-linked"}
CASE_NAMES = sorted(path.stem for path in CASES.glob("*.yaml")) if CASES.is_dir() else []


def _case(shared_dir: Path, name: str) -> tuple[dict, ParsedMessage]:
    spec = yaml.safe_load((shared_dir / "cases" / f"{name}.yaml").read_text(encoding="utf-8"))
    raw = (shared_dir / "cases" / spec["eml"]).read_bytes()
    return spec["expected"], parse_message(raw)


def _normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@pytest.mark.parametrize("name", CASE_NAMES)
def test_cases_subject(shared_dir: Path, name: str) -> None:
    expected, result = _case(shared_dir, name)

    if "ticket.subject" in expected:
        assert result.subject == expected["ticket.subject"]
    # Removing an old ticket's tag from a new ticket's subject is the pipeline's work.
    if name not in PIPELINE_SUBJECTS:
        for fragment in expected.get("ticket.subject_must_not_contain", []):
            assert fragment not in result.subject
    for char in expected.get("ticket.subject_must_not_contain_chars", []):
        code = int(re.search(r"U\+([0-9A-F]{4})", char).group(1), 16)
        assert chr(code) not in result.subject
    assert "\r" not in result.subject
    assert "\n" not in result.subject


@pytest.mark.parametrize("name", CASE_NAMES)
def test_cases_body(shared_dir: Path, name: str) -> None:
    expected, result = _case(shared_dir, name)
    body = result.text

    for key in ("ticket.body_contains", "thread_entry.body_contains"):
        for fragment in expected.get(key, []):
            assert fragment in body
    for fragment in expected.get("ticket.body_must_not_contain", []):
        assert fragment not in body
    if expected.get("ticket.body_must_not_be_empty"):
        assert body.strip()


@pytest.mark.parametrize("name", CASE_NAMES)
def test_cases_requester(shared_dir: Path, name: str) -> None:
    expected, result = _case(shared_dir, name)
    requester = expected.get("requester") or expected.get("ticket.requester")
    if requester is None and "requester_name" not in expected:
        pytest.skip("the case names no requester")

    assert result.from_address is not None
    if requester is not None:
        assert result.from_address.normalized == requester
    if "requester_name" in expected:
        assert result.from_address.name == expected["requester_name"]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_cases_attachments(shared_dir: Path, name: str) -> None:
    expected, result = _case(shared_dir, name)
    wanted = expected.get("attachments", []) + [
        item for item in expected.get("attachments_must_include", []) if "name" in item
    ]
    if not wanted and "inner_attachment_must_be_retrievable" not in expected:
        pytest.skip("the case lists no attachments")

    by_name = {item.filename: item for item in result.attachments}
    for item in wanted:
        assert item["name"] in by_name
        found = by_name[item["name"]]
        assert found.size == item["size"]
        if "sha256" in item:
            assert found.sha256 == item["sha256"]
        if "content_type" in item:
            assert found.content_type == item["content_type"]
    for fragment in expected.get("attachment_name_must_not_contain", []):
        assert all(fragment not in name for name in by_name)


def test_cases_zero_byte_attachment_kept(shared_dir: Path) -> None:
    _, result = _case(shared_dir, "033-zero-byte-attachment")

    sizes = {item.filename: item.size for item in result.attachments}

    assert sizes == {"konfiguracja.ini": 59, "pusty_log.txt": 0}


def test_cases_forwarded_message_verbatim(shared_dir: Path) -> None:
    expected, result = _case(shared_dir, "025-forwarded-message-rfc822-no-disposition")
    wanted = expected["attachments_must_include"][0]
    inner_file = expected["inner_attachment_must_be_retrievable"]
    messages = [item for item in result.attachments if item.is_message]

    assert len(messages) == 1
    assert messages[0].size == wanted["raw_part_size_if_stored_verbatim"]
    inner = messages[0].parse_embedded()
    assert inner.subject == wanted["parsed_subject"]
    assert inner.message_id == wanted["parsed_message_id"]
    pdf = [item for item in inner.attachments if item.filename == inner_file["name"]]
    assert len(pdf) == 1
    assert pdf[0].size == inner_file["size"]
    assert pdf[0].sha256 == inner_file["sha256"]
    assert "proszę o sprawdzenie" in result.reply_text


@pytest.mark.parametrize("name", CASE_NAMES)
def test_cases_reply_text(shared_dir: Path, name: str) -> None:
    expected, result = _case(shared_dir, name)
    key = "thread_entry.visible_text_equals_after_whitespace_normalisation"
    if key not in expected and "thread_entry.visible_text_must_not_contain" not in expected:
        pytest.skip("the case sets no reply text")

    if key in expected:
        assert _normalize(result.reply_text) == _normalize(expected[key])
    for fragment in expected.get("thread_entry.visible_text_must_not_contain", []):
        assert fragment not in result.reply_text
    if expected.get("original_full_body_retained"):
        assert len(result.text) > len(result.reply_text)


def test_cases_quoted_commands_not_in_reply(shared_dir: Path) -> None:
    _, result = _case(shared_dir, "039-agent-command-only-in-quoted-text")

    assert "technik serwisu przyjedzie w czwartek 10.12" in result.reply_text
    assert "#status" not in result.reply_text
    assert "#przypisz" not in result.reply_text


def test_cases_thanks_reply_without_quote(shared_dir: Path) -> None:
    _, result = _case(shared_dir, "045-thank-you-reply-to-resolved-ticket")

    assert "Dziękuję bardzo, wszystko działa!" in result.reply_text
    assert "otwarte ponownie" not in result.reply_text


def test_cases_normalized_subject(shared_dir: Path) -> None:
    expected, result = _case(shared_dir, "022-stacked-multilingual-reply-prefixes")

    assert strip_reply_prefixes(result.subject) == expected["normalized_subject"]


def test_cases_nul_removed(shared_dir: Path) -> None:
    _, result = _case(shared_dir, "028-nul-bytes-in-subject-and-body")

    assert "\x00" not in result.subject
    assert "\x00" not in result.text
    assert "ERR 0x0000 STATUS=49.4C02" in result.text


def test_cases_injection_subject_single_line(shared_dir: Path) -> None:
    expected, result = _case(shared_dir, "046-subject-encoded-crlf-header-injection")

    assert result.subject == expected["should"][0].split("'")[1]


def test_cases_date_from_received(shared_dir: Path) -> None:
    expected, result = _case(shared_dir, "030-unparseable-localized-date-header")

    assert result.date is not None
    assert result.date.isoformat().replace("+00:00", "Z") != expected["message_date_must_not_be"][0]
    assert result.date.timestamp() == 1796367751  # 2026-12-04T07:02:31Z


def test_cases_overlong_references(shared_dir: Path) -> None:
    _, result = _case(shared_dir, "031-overlong-references-header-line")

    assert len(result.references) > 3
    assert all(item.startswith("<") and item.endswith(">") for item in result.references)
