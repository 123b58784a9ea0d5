"""Content-addressed storage of raw mails and attachments: small ones in the database.

Content is named by the sha256 of its bytes, so storing the same mail or attachment
twice costs nothing, and a mail stored before a crash is found again after it.

Content up to ``INLINE_LIMIT`` bytes is a ``StoredContent`` row, written in whatever
transaction is open: the pipeline stores a mail in the transaction that records its
outcome, so the row commits with the ticket or not at all. Creating a file cost 0.3-0.6
ms of kernel time per mail in the benchmarks (``bench/README.md``), several times the
cost of writing the row, and most mail is small. Larger content is a file under
``root/<kind>/<first two hex digits>/<sha256>``, written to a temporary name and
renamed, so a crash never leaves half a file under a final name. Reading looks in the
database, then in the files, so content stored as a file by an older maildesk or with
another limit is found as well.

Durability of the files: outside a ``batch`` every file is fsynced before ``put``
returns. Inside a batch the files are flushed to disk together when the batch ends, and
the caller must not release the source copy of the mails (IMAP MOVE, Maildir rename)
before that. A power loss inside the batch can leave a file empty, short or zero-filled
under its final name. The mails are then fetched again as duplicates, and the pipeline
stores their files once more with ``verify``, which rewrites any file whose bytes are
wrong. Rows need none of this: they are as durable as the commit that wrote them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from maildesk import models, statements
from maildesk.errors import TemporaryError
from maildesk.i18n import _

logger = logging.getLogger(__name__)

# Content up to this many bytes is kept in the database. The generated support mail of
# the benchmarks averages 3.4 KiB, and mail with large attachments, which files suit
# better, exceeds the limit.
INLINE_LIMIT = 64 * 1024


class RawStore:
    """Rows of up to ``inline_limit`` bytes, files under ``root`` above that.

    ``inline_limit=0`` keeps everything in files and needs no database.
    """

    def __init__(self, root: Path, fsync: bool = True, inline_limit: int = 0) -> None:
        self.root = root
        self.fsync = fsync
        self.inline_limit = inline_limit
        self._pending: list[Path] | None = None
        self._folders: set[Path] = set()  # folders known to exist: one mkdir each

    def path_for(self, kind: str, sha256: str) -> Path:
        return self.root / kind / sha256[:2] / sha256

    def put(self, kind: str, content: bytes, *, verify: bool = False) -> str:
        """Store ``content`` once and return its sha256.

        Small content becomes a row in the open transaction unless that row exists.
        A file already there is kept when its size is right, or with ``verify`` when its
        bytes are. Inside a batch it is flushed with the batch all the same, since an
        earlier flush of it may have failed.
        """
        sha256 = hashlib.sha256(content).hexdigest()
        if len(content) <= self.inline_limit:
            statements.insert_missing_later(models.StoredContent, sha256=sha256, kind=kind,
                                            content=content)
            return sha256

        path = self.path_for(kind, sha256)
        if self._is_stored(path, content, verify):
            if self._pending is not None:
                self._pending.append(path)
            return sha256

        temporary = path.with_name(f".{sha256}.{os.getpid()}.tmp")
        sync = self.fsync and self._pending is None
        if path.parent not in self._folders:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(path.parent)
        try:
            try:
                _write(temporary, content, sync)
            except FileNotFoundError:
                # Someone removed the folder while the daemon ran: make it again, once.
                self._folders.discard(path.parent)
                path.parent.mkdir(parents=True, exist_ok=True)
                _write(temporary, content, sync)
            os.replace(temporary, path)
        except OSError:
            temporary.unlink(missing_ok=True)  # a half-written file only fills a full disk
            raise
        if self._pending is not None:
            self._pending.append(path)
        return sha256

    @staticmethod
    def _is_stored(path: Path, content: bytes, verify: bool) -> bool:
        try:
            size = path.stat().st_size
            if size == len(content) and (not verify or path.read_bytes() == content):
                return True
        except FileNotFoundError:
            return False
        logger.warning(_("rewriting {path}: {found} bytes on disk, {expected} expected")
                       .format(path=path, found=size, expected=len(content)))
        return False

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Defer the fsync of every file stored inside to one flush when the block ends.

        The flush also runs when the block raises, so whatever was stored is durable
        before the caller handles the error. Raises TemporaryError when the flush fails.
        """
        if self._pending is not None:
            yield  # already inside a batch: the outer one flushes
            return
        self._pending = []
        try:
            yield
        finally:
            pending, self._pending = self._pending, None
            if pending and self.fsync:
                try:
                    _flush(self.root, pending)
                except OSError as error:
                    raise TemporaryError(_("cannot store the raw mail: {error}").format(
                        error=error)) from error

    def get(self, kind: str, sha256: str) -> bytes:
        """Return the content stored under ``sha256``. Raises FileNotFoundError if it is missing."""
        if self.inline_limit:
            row = statements.first(models.StoredContent, sha256=sha256)
            if row is not None:
                return bytes(row.content)
        return self.path_for(kind, sha256).read_bytes()

    def put_message(self, raw: bytes, *, verify: bool = False) -> str:
        """Store a raw mail. Raises TemporaryError when the disk fails, so it is tried again."""
        try:
            return self.put("raw", raw, verify=verify)
        except OSError as error:
            raise TemporaryError(_("cannot store the raw mail: {error}").format(
                error=error)) from error

    def get_message(self, sha256: str) -> bytes:
        return self.get("raw", sha256)


def _write(path: Path, content: bytes, sync: bool) -> None:
    """Create ``path`` with ``content``, and fsync it when ``sync``."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(descriptor, view):]
        if sync:
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _flush(root: Path, paths: list[Path]) -> None:
    """Make ``paths`` and their renames durable: one syncfs(2) where Linux has it."""
    if _syncfs(root):
        return
    for path in paths:
        _fsync_path(path)
    for folder in {path.parent for path in paths}:
        _fsync_path(folder)


def _fsync_path(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _load_syncfs() -> Callable[[int], int] | None:
    """Return libc's syncfs(2), which Python's os module does not expose, or None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_SYNCFS = _load_syncfs()


def _syncfs(root: Path) -> bool:
    """Flush the whole file system holding ``root``; False when syncfs is unavailable."""
    if _SYNCFS is None:
        return False
    descriptor = os.open(root, os.O_RDONLY)
    try:
        if _SYNCFS(descriptor) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"syncfs of {root} failed: {os.strerror(error)}")
    finally:
        os.close(descriptor)
    return True
