"""Log records that carry the Message-ID, the source UID and the ticket number.

``mail_context`` sets context variables for the mail in hand; ``MailContextFilter`` copies
them onto every record, so one grep for a Message-ID finds every line about that mail.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

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


def configure_logging(level: int = logging.INFO) -> None:
    """Log to stderr with the mail context, as ``maildesk run`` does in the foreground."""
    handler = logging.StreamHandler()
    handler.addFilter(MailContextFilter())
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(mail)s%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
