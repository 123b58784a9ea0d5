"""Every message maildesk can show has a Polish translation with the same placeholders."""

from __future__ import annotations

import ast
import re
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


# Log levels an admin reads in the journal. DEBUG lines are for developers and stay English.
ADMIN_LOG_LEVELS = {"info", "warning", "error", "exception", "critical"}
# Modules whose log lines only tests read: faults.py kills the process on purpose.
UNTRANSLATED_LOG_MODULES = {"faults.py"}


def _untranslated_text(node: ast.expr) -> bool:
    """Tell whether a log message is English text written in place, not a catalog message."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.search(r"[A-Za-z]{2}", node.value) is not None
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return _untranslated_text(node.left)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        # "...".format(...) translates nothing; _("...").format(...) does.
        return node.func.attr == "format" and _untranslated_text(node.func.value)
    return False


def test_admin_log_lines_translated() -> None:
    untranslated = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in UNTRANSLATED_LOG_MODULES:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ADMIN_LOG_LEVELS
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "logger" and node.args):
                continue
            if _untranslated_text(node.args[0]):
                untranslated.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")

    assert untranslated == []


def _translates(node: ast.expr) -> bool:
    """Tell whether an expression contains a call of ``_`` or ``ngettext``."""
    return any(isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name)
               and inner.func.id in {"_", "ngettext"} for inner in ast.walk(node))


def test_no_sentence_glued_from_messages() -> None:
    # A sentence made of two catalog messages cannot agree in number or word order: the
    # English ", with 1 messages" and a Polish clause after a plural form it cannot see.
    glued = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add)
                    and _translates(node.left) and _translates(node.right)):
                glued.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")

    assert glued == []
