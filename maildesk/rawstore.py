"""Content-addressed storage of raw mails and attachments under the storage folder.

A file is named by the sha256 of its bytes, so storing the same mail or attachment twice
costs nothing, and a mail stored before a crash is found again after it. Files are
written to a temporary name, flushed and renamed, so a crash never leaves half a file
under a final name.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


class RawStore:
    """Files by sha256 under ``root/<kind>/<first two hex digits>/<sha256>``."""

    def __init__(self, root: Path, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync

    def path_for(self, kind: str, sha256: str) -> Path:
        return self.root / kind / sha256[:2] / sha256

    def put(self, kind: str, content: bytes) -> str:
        """Store ``content`` once and return its sha256."""
        sha256 = hashlib.sha256(content).hexdigest()
        path = self.path_for(kind, sha256)
        if path.exists():
            return sha256

        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{sha256}.{os.getpid()}.tmp")
        try:
            with temporary.open("wb") as handle:
                handle.write(content)
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(temporary, path)
        except OSError:
            temporary.unlink(missing_ok=True)  # a half-written file only fills a full disk
            raise
        return sha256

    def get(self, kind: str, sha256: str) -> bytes:
        return self.path_for(kind, sha256).read_bytes()

    def put_message(self, raw: bytes) -> str:
        return self.put("raw", raw)

    def get_message(self, sha256: str) -> bytes:
        return self.get("raw", sha256)
