"""The Polish catalog of the rules covers every message the rules code can show."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po

PACKAGE = Path(__file__).resolve().parent.parent / "maildesk"
SOURCES = sorted((PACKAGE / "rules").glob("*.py")) + [PACKAGE / "cli_rules.py"]
KEYWORDS = {"_": None, "ngettext": (1, 2), "pgettext": ((1, "c"), 2)}
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def extracted_messages() -> list[tuple[str, str]]:
    found = []
    for source in SOURCES:
        for _line, message, _comments, _context in extract_from_file(
            "python", str(source), keywords=KEYWORDS
        ):
            singular = message[0] if isinstance(message, tuple) else message
            found.append((f"{source.name}: {singular}", singular))
    return found


@pytest.fixture(scope="module")
def catalog():
    with (PACKAGE / "locale" / "pl" / "rules.po").open("rb") as po_file:
        return read_po(po_file, locale="pl")


@pytest.mark.parametrize(("where", "message"), extracted_messages())
def test_rules_message_translated_to_polish(catalog, where, message):
    entry = catalog.get(message)

    assert entry is not None, where
    translations = entry.string if isinstance(entry.string, tuple) else (entry.string,)
    assert all(translations), where
    for translation in translations:
        assert set(PLACEHOLDER.findall(translation)) == set(PLACEHOLDER.findall(message)), where


@pytest.mark.parametrize(
    ("context", "message", "expected"),
    [
        ("type", "incident", "incydent"),
        ("type", "service request", "wniosek o usługę"),
        ("impact", "high", "wysoki"),
        ("urgency", "high", "wysoka"),
        ("urgency", "low", "niska"),
    ],
)
def test_rules_value_translated_with_context(catalog, context, message, expected):
    assert catalog.get(message, context=context).string == expected
