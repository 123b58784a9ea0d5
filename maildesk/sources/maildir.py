"""A local Maildir as the mail source (what Dovecot, Postfix and fetchmail can write).

Processed mail is moved into the Maildir++ subfolder ``.Processed``, quarantined mail
into ``.Quarantine``, so the inbox holds only what still needs work. A folder that
cannot be listed or a mail that cannot be moved raises SourceError, which the daemon
retries with backoff as it does an IMAP outage. A single file that cannot be read is
skipped and read again on later passes; after the last failed read it goes to
``.Quarantine`` too (see ``maildesk.sources.retries``). Moving a file needs write
permission on the folders only, so a file without read permission can still be moved.
"""

from __future__ import annotations

import logging
import mailbox
import os
import time
from collections.abc import Callable
from pathlib import Path

from maildesk.errors import ConfigError, SourceError
from maildesk.i18n import _, ngettext
from maildesk.sources import FetchedMail
from maildesk.sources.retries import ReadRetries

logger = logging.getLogger(__name__)


class MaildirSource:
    def __init__(self, path: Path, batch_size: int = 50) -> None:
        self.path = path
        self.name = f"maildir:{path}"
        self.batch_size = batch_size
        self.retries = ReadRetries(self.name)
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

        A file that cannot be read is skipped, so the files after it are processed, and
        read again on a later pass (see ``maildesk.sources.retries``). After the last
        failed read it is returned with ``read_error`` set, for the daemon to quarantine
        and move to ``.Quarantine``. A folder that cannot be listed raises SourceError.
        """
        keys = self._list_keys()
        self.retries.keep_only(keys)

        batch: list[FetchedMail] = []
        for key in keys:
            if len(batch) >= self.batch_size:
                break
            if self.retries.waiting(key):
                continue
            mail = self._read(key)
            if mail is not None:
                batch.append(mail)
        return batch

    def _list_keys(self) -> list[str]:
        try:
            self.maildir._refresh()  # type: ignore[attr-defined]  # see new files at once
            # A name starting with a dot is no mail (.keep, an editor's or a copy's
            # temporary file): Maildir readers skip such files.
            return sorted(key for key in self.maildir.iterkeys() if not key.startswith("."))
        except OSError as error:
            raise SourceError(_("cannot list the Maildir {path}: {error}").format(
                path=self.path, error=error)) from error

    def _read(self, key: str) -> FetchedMail | None:
        """Read one file; return None when it vanished or its read is to be tried again."""
        source = f"{self.name}/{key}"
        try:
            with self.maildir.get_file(key) as handle:
                raw = handle.read()
        except KeyError:
            return None  # removed by someone else in the meantime
        except OSError as error:
            # A dangling symbolic link raises FileNotFoundError too, but stays listed.
            if isinstance(error, FileNotFoundError) and not self._listed(key):
                return None
            if not self.retries.failed(key, str(error)):
                return None
            attempts = self.retries.attempts_made(key)
            read_error = ngettext(
                "cannot read the file {ref} ({count} attempt): {error}; it is moved to the "
                "Maildir folder {folder}",
                "cannot read the file {ref} ({count} attempts): {error}; it is moved to the "
                "Maildir folder {folder}", attempts).format(
                ref=key, count=attempts, error=error, folder=self.path / ".Quarantine")
            self.retries.give_up(key, read_error)
            return FetchedMail(key, b"", source, read_error=read_error)

        self.retries.succeeded(key)
        return FetchedMail(key, raw, source)

    def _listed(self, key: str) -> bool:
        """Tell whether the file of ``key`` is still in the Maildir, even as a broken link."""
        try:
            subpath = self.maildir._lookup(key)  # type: ignore[attr-defined]
        except KeyError:
            return False
        return os.path.lexists(self.path / subpath)

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
        """Return when a file arrives in ``new``, a failed read is due again, or at timeout.

        Files whose read failed and is not due yet do not count, or the daemon would
        wake again at once as long as such a file lies in ``new``.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not should_stop():
            if self._has_new_mail():
                return
            retry_at = self.retries.next_retry_at()
            if retry_at is not None and retry_at <= time.monotonic():
                return
            time.sleep(min(1.0, max(deadline - time.monotonic(), 0)))

    def _has_new_mail(self) -> bool:
        try:
            for entry in (self.path / "new").iterdir():
                # Skipped as mailbox.Maildir skips them: dot files and folders.
                if entry.name.startswith(".") or entry.is_dir():
                    continue
                if not self.retries.waiting(entry.name.split(self.maildir.colon)[0]):
                    return True
        except OSError as error:
            raise SourceError(_("cannot list the Maildir {path}: {error}").format(
                path=self.path, error=error)) from error
        return False

    def close(self) -> None:
        pass
