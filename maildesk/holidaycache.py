"""Public holidays from the ``holidays`` package, kept in the desk's storage between processes.

Importing ``holidays`` and listing its countries took 110-130 ms (holidays 0.109, on a
2-core virtual machine), because the package imports the module of every country it
supports, about 250, to load any one of them. The daemon pays that once, but ``maildesk
deliver`` and every admin command start a new process. So the country codes and the
holidays of each country and year are written as small JSON files under
``<storage>/cache/holidays/<holidays version>/`` and read from there by later processes.
A new version of the package starts a new folder, so a change in the law that the
package follows (Poland made 24 December a holiday from 2025) reaches the desk with the
upgrade.

Files are written only into a storage folder that exists and belongs to the user
maildesk runs as. An admin running a command as root must not create folders there
that the daemon's user could not write. A missing, unreadable or damaged file only
means the package is asked again.

Whoever may write the storage folder could plant a symbolic link in it. The cache
folders are therefore opened one by one relative to the last (``dir_fd``) without
following links, each must belong to the user maildesk runs as to be written in, and a
file is read only when it is a regular file of at most ``MAX_FILE_BYTES``. A link to
another folder gets nothing written into it, and a FIFO or ``/dev/zero`` in the cache
neither blocks nor fills the memory of every maildesk command.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import secrets
import stat
from datetime import date
from functools import cache
from pathlib import Path

logger = logging.getLogger(__name__)

CACHE_FOLDER = Path("cache") / "holidays"

# The country codes take 3.3 KB and a country's holidays of one year at most 0.5 KB
# (holidays 0.109).
MAX_FILE_BYTES = 64 * 1024

# Every code of the ``holidays`` package (ISO 3166 alpha-2 and alpha-3). A cached list
# with any other name is damaged, and a name with "/" would lead out of the cache folder.
_COUNTRY_CODE = re.compile(r"[A-Z]{2,3}")

# Open a folder or file only as itself, never through a symbolic link.
_NO_LINK = os.O_NOFOLLOW | os.O_CLOEXEC

_storage_path: Path | None = None


def use_storage(storage_path: Path | None) -> None:
    """Keep the holidays under this storage folder from now on; None keeps them in memory only."""
    global _storage_path
    _storage_path = storage_path


@cache
def _library_version() -> str:
    """Return the installed version of ``holidays`` without importing it.

    The version is taken from the name of the ``holidays-<version>.dist-info`` folder
    beside the package, as wheels install it. The package itself calls
    ``importlib.metadata``, whose import took 10-50 ms on the machine named above. That is
    a good part of what the cache saves, so it is only the fallback.
    """
    spec = importlib.util.find_spec("holidays")
    if spec is not None and spec.origin:
        found = list(Path(spec.origin).parent.parent.glob("holidays-*.dist-info"))
        if len(found) == 1:
            return found[0].name.removeprefix("holidays-").removesuffix(".dist-info")

    from importlib import metadata

    return metadata.version("holidays")


def _folder_names() -> list[str] | None:
    """Return the names of the cache folders below the storage, or None to keep no cache.

    A version that would not name one folder of its own (empty, "." or "..") keeps no
    cache.
    """
    if _storage_path is None:
        return None
    version = _library_version()
    if version in ("", ".", "..") or "/" in version or "\0" in version:
        logger.debug("holidays version %r names no cache folder; keeping no cache", version)
        return None
    return [*CACHE_FOLDER.parts, version]


def _open_folder(name: str, parent: int | None, *, create: bool, follow: bool = False) -> int:
    """Open the folder ``name`` in ``parent``, following no link unless ``follow``; maybe
    create it.

    Raises OSError when it is a link or not a folder, and when it is to be created but
    belongs to another user. Reading another user's folder is allowed, so that root's
    admin commands use the daemon's cache.
    """
    if create:
        try:
            os.mkdir(name, dir_fd=parent)
        except FileExistsError:
            pass
    flags = os.O_RDONLY | os.O_DIRECTORY | (os.O_CLOEXEC if follow else _NO_LINK)
    descriptor = os.open(name, flags, dir_fd=parent)
    if create and os.fstat(descriptor).st_uid != os.geteuid():
        os.close(descriptor)
        raise PermissionError(f"{name} belongs to another user")
    return descriptor


def _open_cache_folder(*, create: bool) -> int | None:
    """Open the version's cache folder below the storage; None when there is none to use."""
    names = _folder_names()
    if names is None or _storage_path is None:
        return None
    # The storage folder itself may be a link that the admin configured.
    descriptor = _open_folder(str(_storage_path), None, create=False, follow=True)
    try:
        for name in names:
            child = _open_folder(name, descriptor, create=create)
            os.close(descriptor)
            descriptor = child
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def _read(name: str) -> object | None:
    try:
        folder = _open_cache_folder(create=False)
    except FileNotFoundError:
        return None
    except OSError as error:
        logger.debug("holiday cache in %s not read: %s", _storage_path, error)
        return None
    if folder is None:
        return None

    file_name = f"{name}.json"
    try:
        # O_NONBLOCK: opening a FIFO planted in the cache must not wait for a writer.
        descriptor = os.open(file_name, os.O_RDONLY | os.O_NONBLOCK | _NO_LINK,
                             dir_fd=folder)
        with os.fdopen(descriptor, "rb") as handle:
            status = os.fstat(handle.fileno())
            if not stat.S_ISREG(status.st_mode) or status.st_size > MAX_FILE_BYTES:
                logger.debug("holiday cache %s is not a small regular file; not read",
                             file_name)
                return None
            content = handle.read(MAX_FILE_BYTES + 1)
        if len(content) > MAX_FILE_BYTES:
            return None
        return json.loads(content.decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        logger.debug("holiday cache %s not read: %s", file_name, error)
        return None
    finally:
        os.close(folder)


def _may_write(storage_path: Path) -> bool:
    try:
        status = storage_path.stat()
    except OSError:
        return False
    return status.st_uid == os.geteuid() and os.access(storage_path, os.W_OK)


def _write(name: str, value: object) -> None:
    """Write one cache file atomically, so a reader never sees half of it."""
    if _storage_path is None or not _may_write(_storage_path):
        return

    file_name = f"{name}.json"
    temporary = f".{file_name}.{secrets.token_hex(8)}"
    folder: int | None = None
    try:
        folder = _open_cache_folder(create=True)
        if folder is None:
            return
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_LINK,
                             0o666, dir_fd=folder)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(value, handle)
        os.replace(temporary, file_name, src_dir_fd=folder, dst_dir_fd=folder)
    except OSError as error:
        logger.debug("holiday cache %s in %s not written: %s", file_name, _storage_path,
                     error)
        if folder is not None:
            try:
                os.unlink(temporary, dir_fd=folder)
            except OSError:
                pass
    finally:
        if folder is not None:
            os.close(folder)


def country_codes() -> frozenset[str]:
    """Return the ISO 3166 codes and aliases (PL, POL) that ``holidays`` has calendars for."""
    cached = _read("countries")
    if isinstance(cached, list) and all(isinstance(code, str) and _COUNTRY_CODE.fullmatch(code)
                                        for code in cached):
        return frozenset(cached)

    import holidays

    codes = sorted(holidays.list_supported_countries())
    _write("countries", codes)
    return frozenset(codes)


def public_holidays(country: str, year: int) -> frozenset[date]:
    """Return the public holidays of one country and year."""
    if not _COUNTRY_CODE.fullmatch(country):
        import holidays

        return frozenset(holidays.country_holidays(country, years=year))

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
