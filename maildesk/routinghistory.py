"""The routings stored in a ticket's audit trail, read back to explain them.

The pipeline stores ``Routing.to_json()`` in the detail of the ticket's ``created``
event, and ``rerouting.apply_routing`` stores one in each ``rules_applied`` event, when
rules with ``on_followup: true`` matched a follow-up mail. A ticket created without the
rules has ``"routing": null`` there. A row written by hand or by a newer maildesk may
hold a routing that ``Routing.from_json`` rejects, so the readers return that error as
a value for the caller to report, next to the routings that could be read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from maildesk import models
from maildesk.errors import ConfigError
from maildesk.i18n import _
from maildesk.rules.routing import Routing

CREATED = "created"
RULES_APPLIED = "rules_applied"


@dataclass(frozen=True)
class StoredRouting:
    """One routing read from the audit trail.

    ``routing`` is None when nothing was stored, or when the stored value could not be
    read, and ``error`` is then the reason. ``event_id`` is None for a ticket without a
    ``created`` event, and ``recorded_at`` is then the ticket's creation time (naive UTC).
    """

    event_id: int | None
    recorded_at: datetime
    message_id: str | None
    routing: Routing | None
    error: str | None = None


def creation_routing(ticket: models.Ticket) -> StoredRouting:
    """Read the routing stored with the ticket's ``created`` event."""
    event = (models.Event.select()
             .where(models.Event.ticket == ticket.id, models.Event.action == CREATED)
             .order_by(models.Event.id).first())
    if event is None:
        return StoredRouting(None, ticket.created_at, None, None)
    return _stored_routing(event)


def follow_up_routings(ticket: models.Ticket) -> list[StoredRouting]:
    """Read the routings that follow-up rules applied to the ticket, oldest first.

    An event without a stored routing is left out: it has nothing to explain.
    """
    events = (models.Event.select()
              .where(models.Event.ticket == ticket.id, models.Event.action == RULES_APPLIED)
              .order_by(models.Event.id))
    stored = [_stored_routing(event) for event in events]
    return [item for item in stored if item.routing is not None or item.error is not None]


def _stored_routing(event: models.Event) -> StoredRouting:
    """Read the routing in one event's JSON detail, or the reason it cannot be read."""
    try:
        detail = json.loads(event.detail) if event.detail else {}
    except ValueError as error:
        return _unreadable(event, _("invalid stored routing: {error}").format(error=error))
    if not isinstance(detail, dict):
        return _unreadable(event, _("invalid stored routing: {error}").format(
            error=_("the event detail is not a JSON object")))

    message_id = detail.get("message_id")
    message_id = message_id if isinstance(message_id, str) else None
    stored = detail.get("routing")
    if stored is None:
        return StoredRouting(event.id, event.created_at, message_id, None)
    if not isinstance(stored, dict):
        return _unreadable(event, _("invalid stored routing: {error}").format(
            error=_("the routing is not a JSON object")), message_id)

    try:
        routing = Routing.from_json(stored)
    except ConfigError as error:
        return _unreadable(event, str(error), message_id)
    return StoredRouting(event.id, event.created_at, message_id, routing)


def _unreadable(event: models.Event, error: str, message_id: str | None = None) -> StoredRouting:
    return StoredRouting(event.id, event.created_at, message_id, None, error)
