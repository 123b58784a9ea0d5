"""Public holidays from the ``holidays`` package, kept in the desk's storage between processes.

Importing ``holidays`` and listing its countries took 110-130 ms (holidays 0.109, on a
2-core virtual machine), because the package imports the module of every country it
knows, about 250, to load any one of them. The
daemon pays that once, but ``maildesk deliver`` and every admin command start a new
process. So the country codes and the holidays of each country and year are written as
small JSON files under ``<storage>/cache/holidays/<holidays version>/`` and read from
there by later processes. A new version of the package starts a new folder, so a change
in the law that the package follows (Poland made 24 December a holiday from 2025) reaches
the desk with the upgrade.

Files are written only into a storage folder that exists and belongs to the user
maildesk runs as. An admin running a command as root must not create folders there
that the daemon's user could not write. A missing, unreadable or damaged file only
means the package is asked again.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import tempfile
from datetime import date
from functools import cache
from pathlib import Path

logger = logging.getLogger(__name__)

CACHE_FOLDER = Path("cache") / "holidays"

_storage_path: Path | None = None


def use_storage(storage_path: Path | None) -> None:
    """Keep the holidays under this storage folder from now on; None keeps them in memory only."""
    global _storage_path
    _storage_path = storage_path


@cache
def _library_version() -> str:
    """Return the installed version of ``holidays`` without importing it.

    The version is taken from the name of the ``holidays-<version>.dist-info`` folder
    beside the package, as wheels install it. ``importlib.metadata``, which the package
    itself asks, took 10-50 ms to import on the machine named above, a good part of what
    the cache saves, so it is only the fallback.
    """
    spec = importlib.util.find_spec("holidays")
    if spec is not None and spec.origin:
        found = list(Path(spec.origin).parent.parent.glob("holidays-*.dist-info"))
        if len(found) == 1:
            return found[0].name.removeprefix("holidays-").removesuffix(".dist-info")

    from importlib import metadata

    return metadata.version("holidays")


def _cache_file(name: str) -> Path | None:
    if _storage_path is None:
        return None
    return _storage_path / CACHE_FOLDER / _library_version() / f"{name}.json"


def _read(name: str) -> object | None:
    path = _cache_file(name)
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        logger.debug("holiday cache %s not read: %s", path, error)
        return None


def _may_write(storage_path: Path) -> bool:
    try:
        status = storage_path.stat()
    except OSError:
        return False
    return status.st_uid == os.geteuid() and os.access(storage_path, os.W_OK)


def _write(name: str, value: object) -> None:
    """Write one cache file atomically, so a reader never sees half of it."""
    path = _cache_file(name)
    if path is None or _storage_path is None or not _may_write(_storage_path):
        return

    temporary: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent,
                                         prefix=f".{path.name}.", delete=False) as handle:
            temporary = handle.name
            json.dump(value, handle)
        os.replace(temporary, path)
    except OSError as error:
        logger.debug("holiday cache %s not written: %s", path, error)
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)


def country_codes() -> frozenset[str]:
    """Return the ISO 3166 codes and aliases (PL, POL) that ``holidays`` has calendars for."""
    cached = _read("countries")
    if isinstance(cached, list) and all(isinstance(code, str) for code in cached):
        return frozenset(cached)

    import holidays

    codes = sorted(holidays.list_supported_countries())
    _write("countries", codes)
    return frozenset(codes)


def public_holidays(country: str, year: int) -> frozenset[date]:
    """Return the public holidays of one country and year."""
    name = f"{country}-{year}"
    cached = _read(name)
    if isinstance(cached, list):
        try:
            return frozenset(date.fromisoformat(day) for day in cached)
        except (TypeError, ValueError) as error:
            logger.debug("holiday cache %s damaged, asking the holidays package: %s",
                         name, error)

    import holidays

    logger.debug("loading public holidays of %s for %d", country, year)
    days = sorted(holidays.country_holidays(country, years=year))
    _write(name, [day.isoformat() for day in days])
    return frozenset(days)
