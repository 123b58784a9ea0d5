"""A lease on a mailbox, so that of several daemons sharing one database only one reads it.

The lease is a row in MailboxState with an owner and an expiry. Taking or renewing it is
one conditional UPDATE, which both SQLite and PostgreSQL run atomically, so two daemons
can never both believe they hold it. A daemon that dies loses the lease when it expires.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import peewee as pw

from maildesk import models, workers
from maildesk.i18n import _
from maildesk.models import utcnow

logger = logging.getLogger(__name__)

LEASE_DURATION = timedelta(minutes=2)


def _ensure_row(name: str) -> None:
    try:
        models.MailboxState.get_or_create(name=name)
    except pw.IntegrityError:  # another daemon created it at the same moment
        pass


def _dead_local_owner(name: str) -> str | None:
    """Return the lease owner if it is a process on this host that no longer runs.

    A daemon restarted after a crash takes over its dead predecessor's lease at once
    instead of waiting for it to expire.
    """
    current = holder(name)
    if current is None or not workers.is_dead_local(current):
        return None
    return current


def acquire(name: str, owner: str, duration: timedelta = LEASE_DURATION) -> bool:
    """Take or renew the lease on ``name`` for ``owner``; return whether it is held now."""
    _ensure_row(name)
    now = utcnow()
    state = models.MailboxState
    free = (state.lease_owner.is_null()) | (state.lease_owner == owner) | (
        state.lease_until < now)
    dead = _dead_local_owner(name)
    if dead is not None:
        free = free | (state.lease_owner == dead)
        logger.info(_("taking over the lease on {name} from {owner}, which no longer runs")
                    .format(name=name, owner=dead))
    taken = (
        state.update(lease_owner=owner, lease_until=now + duration, updated_at=now)
        .where(state.name == name, free)
        .execute()
    )
    return bool(taken)


def release(name: str, owner: str) -> None:
    """Give the lease up at a clean stop, so another daemon can take over at once."""
    state = models.MailboxState
    state.update(lease_owner=None, lease_until=None).where(
        state.name == name, state.lease_owner == owner).execute()


def holder(name: str) -> str | None:
    row = models.MailboxState.get_or_none(models.MailboxState.name == name)
    if row is None or row.lease_until is None or row.lease_until < utcnow():
        return None
    return str(row.lease_owner) if row.lease_owner else None


def log_waiting(name: str, owner: str | None) -> None:
    logger.info(_("mailbox {name} is read by {owner}; this daemon sends queued mail and "
                  "takes over when that lease ends").format(name=name, owner=owner or "-"))
