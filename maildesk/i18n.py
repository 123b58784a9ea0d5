"""Translations of the text that admins and users read (gettext, Polish first).

Catalogs are the ``.po`` files under ``maildesk/locale/<language>/``, one file per area of
the code (``core.po``, ``rules.po``, ...). Message ids are English, and the Polish catalogs
carry the three Polish plural forms.

Beside them lies ``maildesk.mo``, the merged catalog that ``make catalogs`` compiles
(``write_compiled_catalogs``), and ``maildesk.mo.sources``, the SHA-256 of the ``.po``
files it was compiled from. Loading it takes a few milliseconds, where merging and
compiling the ``.po`` files with Babel takes about 40 ms, which every ``maildesk deliver``
and admin command would pay. When the hash does not match (a ``.po`` file edited since),
the ``.po`` files are compiled in memory as before, so a stale ``.mo`` costs time, never
a wrong text.
"""

from __future__ import annotations

import gettext
import hashlib
import io
import logging
import os
import struct
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

from babel.dates import format_timedelta

logger = logging.getLogger(__name__)

LANGUAGES = ("pl", "en")
DEFAULT_LANGUAGE = "pl"
DOMAIN = "maildesk"
LOCALE_DIR = Path(__file__).parent / "locale"
COMPILED_NAME = "maildesk.mo"
SOURCES_SUFFIX = ".sources"

_current: ContextVar[str] = ContextVar("maildesk_language", default=DEFAULT_LANGUAGE)


def language_from_environment(environ: dict[str, str] | None = None) -> str:
    """Pick the language from MAILDESK_LANGUAGE or the POSIX locale, Polish by default.

    The locale variables are read in the order of Python's ``gettext.find``: LANGUAGE,
    a list such as ``en:pl`` whose first supported entry counts, then LC_ALL,
    LC_MESSAGES and LANG. A value maildesk does not speak (``C``, ``de_DE``) passes the
    choice to the next one.
    """
    environ = dict(os.environ) if environ is None else environ
    for name in ("MAILDESK_LANGUAGE", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        for value in environ.get(name, "").split(":"):
            code = value.split("_")[0].split(".")[0].lower()
            if code in LANGUAGES:
                return code
    return DEFAULT_LANGUAGE


def normalize_language(value: str | None) -> str | None:
    """Map ``pl``, ``pl_PL``, ``PL-pl`` and the like to a supported code, else None."""
    if not value:
        return None
    code = value.replace("-", "_").split("_")[0].strip().lower()
    return code if code in LANGUAGES else None


@cache
def translations(language: str) -> gettext.NullTranslations:
    """Load the catalog of one language, compiled ahead or, when stale, from its ``.po`` files.

    A language without catalogs returns the English msgids unchanged.
    """
    po_paths = sorted((LOCALE_DIR / language).glob("*.po"))
    if not po_paths:
        return gettext.NullTranslations()

    sources = sources_digest(po_paths)
    compiled = LOCALE_DIR / language / COMPILED_NAME
    try:
        recorded = compiled.with_name(COMPILED_NAME + SOURCES_SUFFIX).read_text("ascii").strip()
        if recorded == sources:
            with compiled.open("rb") as compiled_file:
                return gettext.GNUTranslations(compiled_file)
        logger.debug("%s was compiled from other .po files; compiling them in memory",
                     compiled)
    # gettext's parser reports a truncated or damaged .mo as struct.error, IndexError,
    # KeyError, LookupError (an unknown charset) or ValueError (a broken Plural-Forms),
    # not only as OSError. Every maildesk command loads the catalog first, so none of
    # them may stop it: the .po files give the same texts.
    except (OSError, ValueError, LookupError, struct.error) as error:
        logger.debug("no usable compiled catalog for %s (%s); compiling the .po files",
                     language, error)
    return gettext.GNUTranslations(io.BytesIO(compile_catalog(language, po_paths)))


def sources_digest(po_paths: list[Path]) -> str:
    """Return the SHA-256 of the ``.po`` files, their names included, in the given order."""
    digest = hashlib.sha256()
    for po_path in po_paths:
        digest.update(po_path.name.encode() + b"\0")
        digest.update(po_path.read_bytes() + b"\0")
    return digest.hexdigest()


def compile_catalog(language: str, po_paths: list[Path]) -> bytes:
    """Merge the ``.po`` files of one language and return the compiled ``.mo`` bytes.

    A message translated in several files takes the translation of the last one in
    ``po_paths``; fuzzy translations are left out, as msgfmt leaves them out.
    """
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    merged = None
    for po_path in po_paths:
        with po_path.open("rb") as po_file:
            catalog = read_po(po_file, locale=language, domain=DOMAIN)
        if merged is None:
            merged = catalog
            continue
        for message in catalog:
            if message.id and message.string:
                merged[message.id] = message

    assert merged is not None
    # Babel would stamp the time of compiling into the header: a fixed date makes the
    # same .po files give the same bytes, as reproducible package builds expect.
    merged.creation_date = datetime(1970, 1, 1, tzinfo=UTC)
    buffer = io.BytesIO()
    write_mo(buffer, merged, use_fuzzy=False)
    return buffer.getvalue()


def write_compiled_catalogs() -> list[Path]:
    """Compile each language's ``.po`` files into ``maildesk.mo`` and record their hash.

    Return the ``.mo`` files written. ``make catalogs`` runs this after a ``.po`` edit.
    """
    written = []
    for language_dir in sorted(path for path in LOCALE_DIR.iterdir() if path.is_dir()):
        po_paths = sorted(language_dir.glob("*.po"))
        if not po_paths:
            continue
        compiled = language_dir / COMPILED_NAME
        compiled.write_bytes(compile_catalog(language_dir.name, po_paths))
        compiled.with_name(COMPILED_NAME + SOURCES_SUFFIX).write_text(
            sources_digest(po_paths) + "\n", "ascii")
        written.append(compiled)
    return written


def set_language(language: str) -> None:
    """Switch the language of admin-facing messages for this context."""
    _current.set(normalize_language(language) or DEFAULT_LANGUAGE)


def current_language() -> str:
    return _current.get()


def _(message: str) -> str:
    """Translate an admin-facing message into the current language."""
    return translations(_current.get()).gettext(message)


def N_(message: str) -> str:
    """Mark a message for translation; it is translated later, in the reader's language."""
    return message


# The name of each language of LANGUAGES, translated when shown (``translated_label``).
LANGUAGE_NAMES = {"pl": N_("Polish"), "en": N_("English")}


def translated_label(labels: dict[str, str], code: str) -> str:
    """Translate the ``N_``-marked label of ``code``; a code without one is returned as is."""
    message = labels.get(code)
    return _(message) if message else code


def ngettext(singular: str, plural: str, count: int) -> str:
    """Translate a message with a count, using the language's plural rules."""
    return translations(_current.get()).ngettext(singular, plural, count)


def format_duration(value: timedelta) -> str:
    """Write a duration in the current language, rounded to its largest unit.

    Babel writes the unit with the language's plural forms ("3 godziny", "5 days"), and
    2 hours 40 minutes becomes "3 hours". A negative duration is written as zero.
    """
    return format_timedelta(max(value, timedelta(0)), threshold=1, locale=_current.get())


def gettext_for(language: str) -> gettext.NullTranslations:
    """Return the catalog of one language, for mail written to a particular reader."""
    return translations(normalize_language(language) or DEFAULT_LANGUAGE)


_current.set(language_from_environment())
