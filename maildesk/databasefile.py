"""Notice when the SQLite file that a long-running process has open is deleted or replaced.

SQLite keeps writing to the file it opened. After ``rm maildesk.db`` or ``mv backup.db
maildesk.db`` the daemon would record tickets in a file that no longer has a name, and
they would vanish when it stops, while the source had already let go of their mails.
PostgreSQL needs no such check, and neither does ``deliver``, which opens the database
anew for each mail.

A daemon stops when its file is replaced. When the file is deleted, it waits until a
file is put back and then stops, because a supervisor restarts a daemon that stops
(systemd's ``Restart=on-failure``) and the new daemon would start on an empty database
at the missing path.

NOTE: a file overwritten in place (``cp backup.db maildesk.db``) keeps its inode, so this
check cannot see it; SQLite may then report the database as malformed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import peewee as pw

from maildesk import models
from maildesk.errors import MaildeskError
from maildesk.i18n import _
from maildesk.settling import Settling

logger = logging.getLogger(__name__)

# How often a daemon whose database file was deleted looks for a file put back, in seconds.
RESTORE_POLL_SECONDS = 5.0


class DatabaseFileReplacedError(MaildeskError):
    """The SQLite database file was deleted or replaced by another file while in use."""


class DatabaseFileDeletedError(DatabaseFileReplacedError):
    """The SQLite database file was deleted while in use, and no file is at its path."""


class DatabaseFileWatch:
    """The identity (device and inode) of the SQLite file open now, to compare later."""

    def __init__(self) -> None:
        database = models.database_proxy.obj
        self.path: Path | None = None
        self.identity: tuple[int, int] | None = None
        self._stat_failure_logged = False
        if not isinstance(database, pw.SqliteDatabase) or database.database in ("", ":memory:"):
            return
        path = Path(database.database)
        try:
            self.identity = _identity(path)
        except OSError as error:
            logger.warning(_("cannot check that {path} is still the database file in "
                             "use: {error}").format(path=path, error=error))
            return
        if self.identity is not None:
            self.path = path

    def check(self) -> None:
        """Raise DatabaseFileReplacedError when the path no longer names the file opened.

        Raises DatabaseFileDeletedError, without logging it, when no file is at the path.
        """
        if self.path is None:
            return
        try:
            current = _identity(self.path)
        except OSError as error:
            # A folder that lost its search permission: SQLite goes on with the open file.
            if not self._stat_failure_logged:
                logger.warning(_("cannot check that {path} is still the database file in "
                                 "use: {error}").format(path=self.path, error=error))
                self._stat_failure_logged = True
            return
        self._stat_failure_logged = False
        if current == self.identity:
            return

        if current is None:
            problem = _("the database file {path} was deleted while maildesk ran")
        else:
            problem = _("the database file {path} was replaced by another file while "
                        "maildesk ran")
        message = _("{problem}: maildesk stops without releasing the mail of this pass at "
                    "its source. Put the right database file in place (a restored backup, "
                    "or the file moved back) and start maildesk again; without a file it "
                    "starts with an empty database").format(
            problem=problem.format(path=self.path))
        if current is None:
            raise DatabaseFileDeletedError(message)
        logger.error(message)
        raise DatabaseFileReplacedError(message)

    def wait_until_restored(self, stopping: Callable[[], bool],
                            sleep: Callable[[float], None], settle: float) -> None:
        """Wait while no file is at the deleted database's path; return once ``stopping()``.

        Raises DatabaseFileReplacedError when another file is back and has not changed for
        ``settle`` seconds, so that a copy still being written is not opened. Returns
        when the file in use is moved back, because then nothing was lost.
        """
        assert self.path is not None
        logger.error(_("the database file {path} was deleted while maildesk ran: maildesk "
                       "processes no mail and waits until a database file is put back (a "
                       "restored backup, or the file moved back), then stops so that its "
                       "supervisor starts it on that file. To start with an empty database "
                       "instead, restart maildesk").format(path=self.path))
        settling = Settling(settle)
        while not stopping():
            sleep(RESTORE_POLL_SECONDS)
            try:
                status = os.stat(self.path)
            except FileNotFoundError:
                continue
            except OSError as error:
                logger.warning(_("cannot check that {path} is still the database file in "
                                 "use: {error}").format(path=self.path, error=error))
                continue
            state = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
            if settling.settled(state, status.st_mtime):
                self.check()
                logger.info(_("the database file {path} in use is back: maildesk goes on")
                            .format(path=self.path))
                return


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_dev, status.st_ino
