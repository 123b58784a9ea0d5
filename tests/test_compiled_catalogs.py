"""The compiled catalog that ships beside the ``.po`` files, and the fallback when it is stale."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo

from maildesk import i18n

SHIPPED = i18n.LOCALE_DIR / "pl"
MESSAGE = "database unavailable: {error}"


@pytest.fixture
def locale_copy(tmp_path, monkeypatch):
    """Point maildesk.i18n at a copy of the shipped catalogs, with a clean cache."""
    copy = tmp_path / "locale"
    shutil.copytree(i18n.LOCALE_DIR, copy)
    monkeypatch.setattr(i18n, "LOCALE_DIR", copy)
    i18n.translations.cache_clear()
    yield copy
    i18n.translations.cache_clear()


def _edit_translation(po_path: Path, msgid: str, new_text: str) -> None:
    """Replace the msgstr that follows ``msgid`` in a .po file."""
    lines = po_path.read_text(encoding="utf-8").splitlines()
    index = lines.index(f'msgid "{msgid}"')
    assert lines[index + 1].startswith("msgstr ")
    lines[index + 1] = f'msgstr "{new_text}"'
    po_path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _messages(compiled: bytes) -> dict[object, object]:
    """Map each msgid of a compiled catalog to its translation, without the header."""
    catalog = read_mo(io.BytesIO(compiled))
    return {_hashable(message.id): _hashable(message.string) for message in catalog
            if message.id}


def _hashable(value: object) -> object:
    # read_mo gives the forms of a plural message as a list.
    return tuple(value) if isinstance(value, list) else value


def test_shipped_catalog_matches_po_files():
    po_paths = sorted(SHIPPED.glob("*.po"))
    recorded = (SHIPPED / "maildesk.mo.sources").read_text("ascii").strip()
    shipped = _messages((SHIPPED / "maildesk.mo").read_bytes())
    fresh = _messages(i18n.compile_catalog("pl", po_paths))

    assert recorded == i18n.sources_digest(po_paths), (
        "maildesk/locale/pl/maildesk.mo was compiled from other .po files: run `make catalogs`")
    assert len(shipped) > 100
    assert shipped == fresh, (
        "maildesk/locale/pl/maildesk.mo differs from the .po files: run `make catalogs`")


def test_compiled_catalog_is_reproducible():
    po_paths = sorted(SHIPPED.glob("*.po"))

    assert i18n.compile_catalog("pl", po_paths) == i18n.compile_catalog("pl", po_paths)


def test_current_compiled_catalog_is_loaded(locale_copy, monkeypatch):
    def compile_refused(*_arguments):
        raise AssertionError("the .po files were compiled although the .mo is current")

    monkeypatch.setattr(i18n, "compile_catalog", compile_refused)

    assert i18n.translations("pl").gettext(MESSAGE) == "baza danych jest niedostępna: {error}"


def test_stale_compiled_catalog_falls_back_to_po(locale_copy):
    _edit_translation(locale_copy / "pl" / "core.po", MESSAGE, "baza nie odpowiada: {error}")

    assert i18n.translations("pl").gettext(MESSAGE) == "baza nie odpowiada: {error}"


def test_missing_compiled_catalog_falls_back_to_po(locale_copy):
    (locale_copy / "pl" / "maildesk.mo").unlink()
    (locale_copy / "pl" / "maildesk.mo.sources").unlink()

    assert i18n.translations("pl").gettext(MESSAGE) == "baza danych jest niedostępna: {error}"


def test_write_compiled_catalogs_refreshes_stale_catalog(locale_copy):
    _edit_translation(locale_copy / "pl" / "core.po", MESSAGE, "baza nie odpowiada: {error}")

    written = i18n.write_compiled_catalogs()
    i18n.translations.cache_clear()

    assert written == [locale_copy / "pl" / "maildesk.mo"]
    assert (locale_copy / "pl" / "maildesk.mo.sources").read_text("ascii").strip() == \
        i18n.sources_digest(sorted((locale_copy / "pl").glob("*.po")))
    assert i18n.translations("pl").gettext(MESSAGE) == "baza nie odpowiada: {error}"


def test_compiled_catalog_keeps_polish_plurals(locale_copy):
    translations = i18n.translations("pl")

    forms = [translations.ngettext("{count} ticket", "{count} tickets", count).format(count=count)
             for count in (1, 3, 5, 22, 25)]

    assert forms == ["1 zgłoszenie", "3 zgłoszenia", "5 zgłoszeń", "22 zgłoszenia",
                     "25 zgłoszeń"]


@pytest.mark.parametrize("kept_bytes", [0, 3, 10, 100, 1000])
def test_truncated_compiled_catalog_falls_back_to_po(locale_copy, kept_bytes):
    # The sources file still matches: only the .mo was cut short, as a full disk or a
    # copy broken off would leave it.
    compiled = locale_copy / "pl" / "maildesk.mo"
    compiled.write_bytes(compiled.read_bytes()[:kept_bytes])

    assert i18n.translations("pl").gettext(MESSAGE) == "baza danych jest niedostępna: {error}"


@pytest.mark.parametrize(("old", "new"), [
    # An unknown charset: LookupError.
    (b"charset=utf-8", b"charset=utf-9"),
    # A Plural-Forms expression gettext cannot read: ValueError.
    (b"plural=(n==1", b"plural=(n#=1"),
])
def test_damaged_compiled_catalog_header_falls_back_to_po(locale_copy, old, new):
    compiled = locale_copy / "pl" / "maildesk.mo"
    content = compiled.read_bytes()
    assert old in content
    compiled.write_bytes(content.replace(old, new, 1))

    assert i18n.translations("pl").ngettext("{count} ticket", "{count} tickets", 5) == \
        "{count} zgłoszeń"
