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


def _without_language(**variables: str) -> dict[str, str]:
    """The environment with no language variable but the given ones."""
    names = ("MAILDESK_LANGUAGE", "MAILDESK_CONFIG", "LANGUAGE", "LC_ALL", "LC_MESSAGES",
             "LANG")
    environment = {name: value for name, value in os.environ.items() if name not in names}
    return {**environment, **variables}


def _desk_config(tmp_path: Path, language: str | None) -> Path:
    path = tmp_path / "maildesk.yaml"
    setting = f"language: {language}\n" if language else ""
    path.write_text(setting + "desk:\n  name: Helpdesk IT\n  address: helpdesk@example.com\n",
                    encoding="utf-8")
    return path


def _run(*args: str, env: dict[str, str], cwd: Path | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "maildesk.cli", *args], capture_output=True,
                          text=True, env=env, cwd=cwd)


def test_polish_desk_ignores_english_locale(tmp_path: Path) -> None:
    # A server locale of en_US.UTF-8 must not turn the help and the usage errors of a
    # Polish desk English while its results and errors stay Polish.
    config = str(_desk_config(tmp_path, None))
    english_locale = _without_language(LANG="en_US.UTF-8", LANGUAGE="en")

    usage = _run("--config", config, "tickets", "show", "abc", env=english_locale)
    help_text = _run("--config", config, "tickets", "--help", env=english_locale)

    assert "Błąd: Nieprawidłowa wartość 'NUMER'" in usage.stderr
    assert "Wyświetlaj i usuwaj zgłoszenia." in help_text.stdout


def test_english_desk_speaks_english_from_start(tmp_path: Path) -> None:
    config = _desk_config(tmp_path, "en")

    named = _run(f"--config={config}", "tickets", "--help", env=_without_language())
    by_variable = _run("tickets", "show", "abc",
                       env=_without_language(MAILDESK_CONFIG=str(config)))
    beside = _run("tickets", "--help", env=_without_language(LANG="pl_PL.UTF-8"),
                  cwd=tmp_path)

    assert "List, show and delete tickets." in named.stdout
    assert "Error: Invalid value for 'NUMBER'" in by_variable.stderr
    assert "Usage: maildesk tickets" in beside.stdout


def test_variable_overrides_desk_language(tmp_path: Path) -> None:
    config = str(_desk_config(tmp_path, "en"))

    result = _run("--config", config, "tickets", "--help",
                  env=_without_language(MAILDESK_LANGUAGE="pl"))
    unsupported = _run("--config", config, "tickets", "show", "1",
                       env=_without_language(MAILDESK_LANGUAGE="de"))

    assert "Wyświetlaj i usuwaj zgłoszenia." in result.stdout
    assert unsupported.stderr.endswith("error: ticket 1 not found\n")


def test_locale_chooses_without_configuration(tmp_path: Path) -> None:
    missing = str(tmp_path / "none.yaml")

    language_list = _run("--config", missing, "init", "--help",
                         env=_without_language(LANGUAGE="en:pl", LANG="pl_PL.UTF-8"))
    c_locale = _run("--config", missing, "init", "--help",
                    env=_without_language(LC_ALL="C.UTF-8", LANG="en_US.UTF-8"))
    nothing = _run("--config", missing, "init", "--help", env=_without_language())

    assert "Usage: maildesk init" in language_list.stdout
    assert "Usage: maildesk init" in c_locale.stdout
    assert "Użycie: maildesk init" in nothing.stdout
