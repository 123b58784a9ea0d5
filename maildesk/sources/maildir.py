"""A local Maildir as the mail source (what Dovecot, Postfix and fetchmail can write).

Processed mail is moved into the Maildir++ subfolder ``.Processed``, quarantined mail
into ``.Quarantine``, so the inbox holds only what still needs work.
"""

from __future__ import annotations

import logging
import mailbox
import time
from collections.abc import Callable
from pathlib import Path

from maildesk.errors import ConfigError
from maildesk.i18n import _
from maildesk.sources import FetchedMail

logger = logging.getLogger(__name__)


class MaildirSource:
    def __init__(self, path: Path, batch_size: int = 50) -> None:
        self.path = path
        self.name = f"maildir:{path}"
        self.batch_size = batch_size
        if not path.is_dir():
            raise ConfigError(_("the Maildir {path} does not exist: check source.path, or "
                                "create it with the subfolders cur, new and tmp").format(
                path=path))
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        self.maildir = mailbox.Maildir(str(path), factory=None, create=True)

    def _folder(self, name: str) -> mailbox.Maildir:
        try:
            return self.maildir.get_folder(name)
        except mailbox.NoSuchMailboxError:
            return self.maildir.add_folder(name)

    def fetch(self) -> list[FetchedMail]:
        self.maildir._refresh()  # type: ignore[attr-defined]  # see new files at once
        keys = sorted(self.maildir.iterkeys())[: self.batch_size]
        batch = []
        for key in keys:
            try:
                with self.maildir.get_file(key) as handle:
                    raw = handle.read()
            except (KeyError, FileNotFoundError):
                continue  # removed by someone else in the meantime
            batch.append(FetchedMail(key, raw, f"{self.name}/{key}"))
        return batch

    def _move(self, mail: FetchedMail, folder_name: str) -> None:
        folder = self._folder(folder_name)
        try:
            source_path = Path(self.path) / self.maildir._lookup(mail.ref)  # type: ignore[attr-defined]
        except KeyError:
            logger.warning(_("{ref} vanished from the Maildir before it could be moved").format(
                ref=mail.ref))
            return
        target = Path(folder._path) / "cur" / source_path.name
        source_path.rename(target)

    def acknowledge(self, mail: FetchedMail) -> None:
        self._move(mail, "Processed")

    def quarantine(self, mail: FetchedMail) -> None:
        self._move(mail, "Quarantine")

    def wait(self, timeout: float, should_stop: Callable[[], bool]) -> None:
        deadline = time.monotonic() + timeout
        new_dir = self.path / "new"
        while time.monotonic() < deadline and not should_stop():
            if any(new_dir.iterdir()):
                return
            time.sleep(min(1.0, max(deadline - time.monotonic(), 0)))

    def close(self) -> None:
        pass
