"""Where incoming mail comes from: an IMAP mailbox, a local Maildir, or an MTA pipe.

A source yields ``FetchedMail`` items and is told afterwards what became of each
(``acknowledge`` or ``quarantine``). It must not remove a mail before that call, so a
crash in between means the mail is fetched again and skipped as a duplicate. A mail it
cannot read must not stop the mail behind it: the source skips it, tries it again on
later passes, and at last hands it over with ``read_error`` set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class FetchedMail:
    """One mail as the source stores it; ``ref`` is the source's id (IMAP UID, file name).

    ``read_error`` is set when the source gave up reading the mail (see
    ``maildesk.sources.retries``); ``raw`` is then empty, and the daemon quarantines
    the mail without its bytes.
    """

    ref: str
    raw: bytes
    source: str
    read_error: str | None = None


class Source(Protocol):
    name: str

    def fetch(self) -> list[FetchedMail]:
        """Return the next batch of unprocessed mail (empty when there is none)."""
        ...

    def acknowledge(self, mail: FetchedMail) -> None:
        """Move a processed mail out of the way (e.g. into the processed folder)."""
        ...

    def quarantine(self, mail: FetchedMail) -> None:
        """Move a mail that could not be processed into the quarantine folder."""
        ...

    def wait(self, timeout: float, should_stop: Callable[[], bool]) -> None:
        """Block until new mail may be there, ``timeout`` passes or ``should_stop()`` is true."""
        ...

    def close(self) -> None:
        ...
