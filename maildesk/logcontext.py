"""Log records that carry the Message-ID, the source UID and the ticket number.

``mail_context`` sets context variables for the mail in hand; ``MailContextFilter`` copies
them onto every record, so one grep for a Message-ID finds every line about that mail.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO

_context: ContextVar[dict[str, str] | None] = ContextVar("maildesk_mail_context",
                                                       default=None)


@contextmanager
def mail_context(**values: object) -> Iterator[None]:
    merged = {**(_context.get() or {}),
              **{k: str(v) for k, v in values.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def mail_context_values() -> dict[str, str]:
    """Return a copy of the values ``mail_context`` set for the mail in hand."""
    return dict(_context.get() or {})


class MailContextFilter(logging.Filter):
    """Add ``mail`` (e.g. ``[imap:INBOX/12 <id@x>]``) to every record; empty outside a mail."""

    def filter(self, record: logging.LogRecord) -> bool:
        values = _context.get() or {}
        parts = [values[k] for k in ("source", "message_id", "ticket") if k in values]
        record.mail = f"[{' '.join(parts)}] " if parts else ""
        return True


# The syslog priority of each logging level, from the most severe down.
_SYSLOG_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
                      (logging.INFO, 6))
_DEBUG_PRIORITY = 7
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(mail)s%(message)s"


class JournalFormatter(logging.Formatter):
    """Start each line with its syslog priority (``<4>``), which journald reads.

    Without the prefix journald files every line of a service as info, so
    ``journalctl -p warning`` would show none of maildesk's warnings and errors. Every
    line of a traceback gets the prefix, because journald stores each line apart.
    """

    def format(self, record: logging.LogRecord) -> str:
        priority = next((number for level, number in _SYSLOG_PRIORITIES
                         if record.levelno >= level), _DEBUG_PRIORITY)
        return "\n".join(f"<{priority}>{line}"
                         for line in super().format(record).splitlines())


def writes_to_journal(stream: IO[str]) -> bool:
    """Tell whether ``stream`` is the journald connection systemd gave the service.

    systemd names that connection in JOURNAL_STREAM as ``device:inode``; a stream that
    was redirected elsewhere (a file, a pipe to another program) does not match it.
    """
    expected = os.environ.get("JOURNAL_STREAM")
    if not expected:
        return False
    try:
        status = os.fstat(stream.fileno())
    except (OSError, ValueError):  # no file descriptor behind the stream, or closed
        return False
    return expected == f"{status.st_dev}:{status.st_ino}"


def configure_logging(level: int = logging.INFO, stream: IO[str] | None = None) -> None:
    """Log to stderr with the mail context, as ``maildesk run`` does in the foreground.

    Under systemd, where stderr goes to journald, each line carries its syslog priority.
    """
    stream = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(stream)
    handler.addFilter(MailContextFilter())
    formatter = JournalFormatter if writes_to_journal(stream) else logging.Formatter
    handler.setFormatter(formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
