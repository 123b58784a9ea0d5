"""Failed reads of single mails at a source, counted so one bad mail cannot stop the rest.

A source skips a mail it cannot read, goes on with the mail behind it, and tries that
mail again on a later pass, at least ``delay`` seconds later. After ``attempts`` failed
reads in a row the source gives the mail up and hands it to the daemon with
``FetchedMail.read_error`` set. The daemon records it in quarantine and has the source
move it to its quarantine folder.

A source that cannot be reached at all (a Maildir that cannot be listed, an IMAP
server that does not respond) raises SourceError instead and counts nothing against its
mails.

NOTE: the counts live in memory, so a restart starts them again. ``run --once`` reads
a mail once per run, so under cron a mail that stays unreadable is skipped and logged
by every run but never given up; only a daemon that keeps running moves it away.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from maildesk.i18n import _, ngettext

logger = logging.getLogger(__name__)

# NOTE: guesses, not measured. Five reads at least a minute apart give a passing fault
# (an EIO of a busy disk, a network file system that reconnects) four minutes to end
# before the mail goes to quarantine.
READ_ATTEMPTS = 5
READ_RETRY_DELAY = 60.0


@dataclass
class _Failure:
    attempts: int
    retry_at: float  # time.monotonic() of the next read


class ReadRetries:
    """The mails of one source whose last read failed, by the source's ``ref``."""

    def __init__(self, source_name: str, attempts: int = READ_ATTEMPTS,
                 delay: float = READ_RETRY_DELAY) -> None:
        self.source_name = source_name
        self.attempts = attempts
        self.delay = delay
        self._failures: dict[str, _Failure] = {}

    def waiting(self, ref: str) -> bool:
        """Tell whether the last read of ``ref`` failed and the next one is not due yet."""
        failure = self._failures.get(ref)
        return failure is not None and time.monotonic() < failure.retry_at

    def next_retry_at(self) -> float | None:
        """Return the time.monotonic() value when the next read is due, or None."""
        return min((failure.retry_at for failure in self._failures.values()), default=None)

    def failed(self, ref: str, error: str, label: str | None = None) -> bool:
        """Count a failed read of ``ref``; return True when the mail is to be given up.

        ``label`` names the mail in the log (a file name, ``UID 7``), ``ref`` by default.
        A mail given up stays counted, so when the source could not move it away, its
        next failed read gives it up again.
        """
        failure = self._failures.setdefault(ref, _Failure(0, 0.0))
        failure.attempts += 1
        failure.retry_at = time.monotonic() + self.delay
        if failure.attempts >= self.attempts:
            return True
        logger.warning(_("cannot read {mail} from {source} (attempt {attempt} of {attempts}): "
                         "{error}; the other mail is processed, and this one is read again "
                         "in {seconds:.0f} s").format(
            mail=label or ref, source=self.source_name, attempt=failure.attempts,
            attempts=self.attempts, error=error, seconds=self.delay))
        return False

    def give_up(self, ref: str, read_error: str, label: str | None = None) -> None:
        """Log that the source hands ``ref`` over unread, to be quarantined."""
        logger.error(_("giving up on {mail} from {source}: {error}").format(
            mail=label or ref, source=self.source_name, error=read_error))

    def attempts_made(self, ref: str) -> int:
        failure = self._failures.get(ref)
        return failure.attempts if failure is not None else 0

    def succeeded(self, ref: str, label: str | None = None) -> None:
        """Forget the failed reads of ``ref`` after a read that worked."""
        failure = self._failures.pop(ref, None)
        if failure is not None:
            logger.info(ngettext("{mail} from {source} was read after {count} failed attempt",
                                 "{mail} from {source} was read after {count} failed attempts",
                                 failure.attempts).format(
                mail=label or ref, source=self.source_name, count=failure.attempts))

    def keep_only(self, refs: Iterable[str]) -> None:
        """Forget the mails that are no longer at the source (moved away or deleted)."""
        if not self._failures:
            return
        present = set(refs)
        for ref in [ref for ref in self._failures if ref not in present]:
            del self._failures[ref]

    def clear(self) -> None:
        self._failures.clear()
