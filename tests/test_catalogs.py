"""Every message maildesk can show has a Polish translation with the same placeholders."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

PACKAGE = Path(__file__).resolve().parent.parent / "maildesk"
CATALOG_DIR = PACKAGE / "locale" / "pl"
KEYWORDS = {"_": None, "ngettext": (1, 2), "N_": None, "pgettext": ((1, "c"), 2)}
POLISH_PLURAL_FORMS = 3


def placeholders(text: str) -> set[tuple[str, str, str | None]]:
    """Return the ``str.format`` fields of a message: name, format spec and conversion."""
    return {
        (field, spec or "", conversion)
        for _literal, field, spec, conversion in string.Formatter().parse(text)
        if field is not None
    }


@pytest.fixture(scope="module")
def extracted():
    """Map (context, msgid) to the msgid forms and the place the code uses them."""
    messages = {}
    for filename, lineno, message, _comments, context in extract_from_dir(
        str(PACKAGE), keywords=KEYWORDS
    ):
        forms = message if isinstance(message, tuple) else (message,)
        messages.setdefault((context, forms[0]), (forms, f"{filename}:{lineno}"))
    return messages


@pytest.fixture(scope="module")
def polish():
    """Merge the area catalogs the way maildesk.i18n does, keyed by (context, msgid)."""
    merged = {}
    for po_path in sorted(CATALOG_DIR.glob("*.po")):
        with po_path.open("rb") as po_file:
            for entry in read_po(po_file, locale="pl"):
                msgid = entry.id[0] if isinstance(entry.id, tuple) else entry.id
                if msgid and entry.string:
                    merged[(entry.context, msgid)] = (entry, po_path.name)
    return merged


def test_catalogs_extract_messages(extracted):
    assert len(extracted) > 100


def test_catalogs_every_message_translated(extracted, polish):
    missing = [
        f"{where}: {key[1]!r}" for key, (_forms, where) in sorted(extracted.items(), key=str)
        if key not in polish
    ]

    assert missing == []


def test_catalogs_translations_not_empty(extracted, polish):
    empty = []
    for key in extracted:
        if key not in polish:
            continue
        entry, area = polish[key]
        translations = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        if not all(translations):
            empty.append(f"{area}: {key[1]!r}")

    assert empty == []


def test_catalogs_plurals_have_polish_forms(extracted, polish):
    wrong = []
    for key, (forms, _where) in extracted.items():
        if len(forms) < 2 or key not in polish:
            continue
        entry, area = polish[key]
        if not isinstance(entry.string, tuple) or len(entry.string) != POLISH_PLURAL_FORMS:
            wrong.append(f"{area}: {key[1]!r}")

    assert wrong == []


def test_catalogs_placeholders_match(extracted, polish):
    mismatched = []
    for key, (forms, _where) in extracted.items():
        if key not in polish:
            continue
        entry, area = polish[key]
        translations = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        for index, translation in enumerate(translations):
            # Polish form 0 is the singular, forms 1 and 2 follow the English plural.
            source = forms[min(index, len(forms) - 1)]
            try:
                same = placeholders(translation) == placeholders(source)
            except ValueError:
                same = False
            if not same:
                mismatched.append(f"{area}: {source!r} -> {translation!r}")

    assert mismatched == []
