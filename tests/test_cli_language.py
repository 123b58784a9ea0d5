"""click's own texts (usage lines, help headings, usage errors) are in the desk's language.

Each command runs in a fresh process, because the command line picks its language when
it is imported, as it does for an admin at a shell.
"""

from __future__ import annotations

import importlib.metadata
import os
import string
import subprocess
import sys
from pathlib import Path

import click
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from maildesk.clicktext import CLICK_MODULES, translate_click

CATALOG_DIR = Path(__file__).resolve().parent.parent / "maildesk" / "locale" / "pl"
CLICK_DIR = Path(click.__file__).parent
# The click release whose messages locale/pl/click.po translates.
CATALOGUED_CLICK = "8.5.1"


def maildesk_cli(*args: str, language: str = "pl") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "maildesk.cli", *args],
                          capture_output=True, text=True,
                          env={**os.environ, "MAILDESK_LANGUAGE": language})


def test_unknown_option_error_in_polish() -> None:
    result = maildesk_cli("--bogus")

    assert result.returncode == 2
    assert "Użycie: maildesk [OPCJE] POLECENIE [ARGUMENTY]..." in result.stderr
    assert "Więcej informacji: 'maildesk --help'." in result.stderr
    assert "Błąd: Nie ma opcji '--bogus'." in result.stderr
    assert "Czy chodziło o '--verbose'?" in result.stderr


def test_several_suggestions_in_polish() -> None:
    # click offers options and commands alike, so the sentence names neither.
    result = maildesk_cli("--ver")

    assert result.returncode == 2
    assert "Błąd: Nie ma opcji '--ver'. (Czy chodziło o: '--verbose', '--version'?)" in (
        result.stderr)


def test_missing_argument_error_in_polish() -> None:
    result = maildesk_cli("tickets", "show")

    assert result.returncode == 2
    assert "Użycie: maildesk tickets show [OPCJE] NUMER" in result.stderr
    assert "Błąd: Brak argumentu 'NUMER'." in result.stderr


def test_invalid_values_in_polish() -> None:
    number = maildesk_cli("tickets", "list", "--limit", "abc")
    choice = maildesk_cli("init", "somewhere", "--language", "xx")
    extra = maildesk_cli("tickets", "show", "1", "2")

    assert ("Błąd: Nieprawidłowa wartość '--limit': 'abc' nie jest poprawną liczbą "
            "całkowitą.") in number.stderr
    assert "dozwolone wartości to 'pl', 'en'." in choice.stderr
    assert "Błąd: Nieoczekiwany dodatkowy argument (2)" in extra.stderr


def test_missing_file_named_in_polish() -> None:
    # click names the path type when the type is made, which is at import, before
    # maildesk's catalogs replace click's gettext.
    result = maildesk_cli("rules", "test", "/nonexistent/mail.eml")

    assert result.returncode == 2
    assert "Plik '/nonexistent/mail.eml' nie istnieje." in result.stderr


def test_missing_file_named_in_english() -> None:
    result = maildesk_cli("rules", "test", "/nonexistent/mail.eml", language="en")

    assert "File '/nonexistent/mail.eml' does not exist." in result.stderr


def test_limit_below_one_refused_in_polish() -> None:
    # --limit 0 used to print "no tickets" and --limit -1 to list everything.
    zero = maildesk_cli("tickets", "list", "--limit", "0")
    negative = maildesk_cli("outbox", "list", "--limit", "-1")

    assert zero.returncode == 2
    assert "Błąd: Nieprawidłowa wartość '--limit': 0 jest poza zakresem x>=1." in zero.stderr
    assert negative.returncode == 2
    assert "-1 jest poza zakresem x>=1." in negative.stderr


def test_help_headings_in_polish() -> None:
    group = maildesk_cli("outbox", "--help")
    command = maildesk_cli("tickets", "list", "--help")
    demo = maildesk_cli("demo", "--help")

    assert group.returncode == 0
    assert "Użycie: maildesk outbox [OPCJE] POLECENIE [ARGUMENTY]..." in group.stdout
    assert "Opcje:" in group.stdout
    assert "Polecenia:" in group.stdout
    assert "Pokaż tę pomoc i zakończ." in group.stdout
    assert "[domyślnie: 50; x>=1]" in command.stdout
    assert "--limit LICZBA" in command.stdout
    assert "--status STATUS" in command.stdout
    for english in ("TEXT", "INTEGER", "PATH"):
        assert english not in group.stdout + command.stdout + demo.stdout
    assert "Użycie: maildesk demo [OPCJE] [KATALOG]" in demo.stdout
    assert "Usage" not in group.stdout + command.stdout + demo.stdout


def test_version_in_polish() -> None:
    result = maildesk_cli("--version")

    assert result.stdout.startswith("maildesk, wersja ")


def test_usage_error_in_english() -> None:
    result = maildesk_cli("tickets", "show", language="en")

    assert "Usage: maildesk tickets show [OPTIONS] NUMBER" in result.stderr
    assert "Error: Missing argument 'NUMBER'." in result.stderr


def test_translate_click_rebinds_every_module() -> None:
    translate_click()

    for name in CLICK_MODULES:
        module = sys.modules.get(name)
        if module is None or not hasattr(module, "_"):
            continue
        assert module._.__module__ == "maildesk.i18n", name


def _placeholders(text: str) -> set[str]:
    fields = {field for _literal, field, _spec, _conversion in string.Formatter().parse(text)
              if field is not None}
    percent = {part.split(")")[0] for part in text.split("%(")[1:]}
    return fields | percent


@pytest.fixture(scope="module")
def click_messages() -> dict[str, tuple[str, ...]]:
    messages: dict[str, tuple[str, ...]] = {}
    for _filename, _lineno, message, _comments, _context in extract_from_dir(
        str(CLICK_DIR), keywords={"_": None, "ngettext": (1, 2)}
    ):
        forms = message if isinstance(message, tuple) else (message,)
        messages[forms[0]] = forms
    # click translates the word of a required parameter by a variable, not a literal.
    messages["required"] = ("required",)
    return messages


@pytest.fixture(scope="module")
def polish() -> dict[str, object]:
    merged: dict[str, object] = {}
    for po_path in sorted(CATALOG_DIR.glob("*.po")):
        with po_path.open("rb") as po_file:
            for entry in read_po(po_file, locale="pl"):
                msgid = entry.id[0] if isinstance(entry.id, tuple) else entry.id
                if msgid and entry.string:
                    merged[msgid] = entry.string
    return merged


def test_click_messages_all_translated(click_messages, polish) -> None:
    installed = importlib.metadata.version("click")
    if installed != CATALOGUED_CLICK:
        pytest.skip(f"locale/pl/click.po translates click {CATALOGUED_CLICK}, "
                    f"click {installed} is installed: update the catalog")

    missing = sorted(msgid for msgid in click_messages if msgid not in polish)

    assert missing == []


def test_click_translations_keep_placeholders(click_messages, polish) -> None:
    mismatched = []
    for msgid, forms in click_messages.items():
        translation = polish.get(msgid)
        if translation is None:
            continue
        translations = translation if isinstance(translation, tuple) else (translation,)
        if len(forms) > 1 and len(translations) != 3:
            mismatched.append(f"{msgid!r}: {len(translations)} plural forms")
        for index, text in enumerate(translations):
            source = forms[min(index, len(forms) - 1)]
            if _placeholders(text) != _placeholders(source):
                mismatched.append(f"{source!r} -> {text!r}")

    assert mismatched == []
