"""A local Maildir as the mail source (what Dovecot, Postfix and fetchmail can write).

Processed mail is moved into the Maildir++ subfolder ``.Processed``, quarantined mail
into ``.Quarantine``, so the inbox holds only what still needs work. A file system
error (a read-only or unmounted folder, EIO) raises SourceError, which the daemon
retries with backoff as it does an IMAP outage.
"""

from __future__ import annotations

import logging
import mailbox
import time
from collections.abc import Callable
from pathlib import Path

from maildesk.errors import ConfigError, SourceError
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
        """Return up to ``batch_size`` mails in the order of their file names.

        NOTE: a file that cannot be read for good stops every pass at it, with an error
        logged on each retry, until an admin moves it away.
        """
        try:
            self.maildir._refresh()  # type: ignore[attr-defined]  # see new files at once
            # A name starting with a dot is no mail (.keep, an editor's or a copy's
            # temporary file): Maildir readers skip such files.
            keys = sorted(key for key in self.maildir.iterkeys()
                          if not key.startswith("."))[: self.batch_size]
        except OSError as error:
            raise SourceError(_("cannot list the Maildir {path}: {error}").format(
                path=self.path, error=error)) from error

        batch = []
        for key in keys:
            try:
                with self.maildir.get_file(key) as handle:
                    raw = handle.read()
            except (KeyError, FileNotFoundError):
                continue  # removed by someone else in the meantime
            except OSError as error:
                raise SourceError(_("cannot read {ref} from the Maildir {path}: {error}")
                                  .format(ref=key, path=self.path, error=error)) from error
            batch.append(FetchedMail(key, raw, f"{self.name}/{key}"))
        return batch

    def _move(self, mail: FetchedMail, folder_name: str) -> None:
        try:
            folder = self._folder(folder_name)
            source_path = Path(self.path) / self.maildir._lookup(mail.ref)  # type: ignore[attr-defined]
        except KeyError:
            self._log_vanished(mail)
            return
        except OSError as error:
            raise self._move_error(mail, folder_name, error) from error

        target = Path(folder._path) / "cur" / source_path.name
        try:
            source_path.rename(target)
        except FileNotFoundError as error:
            if source_path.exists():  # the target folder is missing, not the mail
                raise self._move_error(mail, folder_name, error) from error
            self._log_vanished(mail)
        except OSError as error:
            raise self._move_error(mail, folder_name, error) from error

    @staticmethod
    def _log_vanished(mail: FetchedMail) -> None:
        logger.warning(_("{ref} vanished from the Maildir before it could be moved").format(
            ref=mail.ref))

    def _move_error(self, mail: FetchedMail, folder_name: str, error: OSError) -> SourceError:
        return SourceError(_("cannot move {ref} to the Maildir folder .{folder}: {error}")
                           .format(ref=mail.ref, folder=folder_name, error=error))

    def acknowledge(self, mail: FetchedMail) -> None:
        self._move(mail, "Processed")

    def quarantine(self, mail: FetchedMail) -> None:
        self._move(mail, "Quarantine")

    def wait(self, timeout: float, should_stop: Callable[[], bool]) -> None:
        deadline = time.monotonic() + timeout
        new_dir = self.path / "new"
        while time.monotonic() < deadline and not should_stop():
            try:
                if any(not entry.name.startswith(".") for entry in new_dir.iterdir()):
                    return
            except OSError as error:
                raise SourceError(_("cannot list the Maildir {path}: {error}").format(
                    path=self.path, error=error)) from error
            time.sleep(min(1.0, max(deadline - time.monotonic(), 0)))

    def close(self) -> None:
        pass
