"""Routing rules that opt in to follow-ups (``on_followup: true``) acting on a ticket.

On a new ticket the rules' fields are copied at creation. On a follow-up each field is
changed through the lifecycle (assignee, priority, type and category) or escalation
(group) code, so the SLA clock, the audit trail and the notifications behave as if an
agent had made the change.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from maildesk import escalation, lifecycle, models
from maildesk.desk import Desk
from maildesk.i18n import _
from maildesk.lifecycle import LifecycleError, Source
from maildesk.notify import QueuedMail

logger = logging.getLogger(__name__)

ACTOR = "rules"


def evaluate_followup(rules: Any, message: Any, received_at: datetime) -> Any:
    """Run the rules that opt in to follow-ups; return their Routing or None."""
    if rules is None:
        return None
    routing = rules.evaluate(message, received_at=received_at, followup=True)
    return routing if routing.matched_rules else None


def apply_routing(desk: Desk, ticket: models.Ticket, routing: Any, at: datetime,
                  message_id: str | None) -> list[QueuedMail]:
    """Change the ticket as the matched follow-up rules set it; return the mail to send.

    A change the lifecycle rejects (an unknown group, a closed ticket) is recorded as an
    event and logged, and the rest still applies: the mail itself is never lost over it.
    """
    from maildesk.tickets import record_event

    reason = _("rules: {names}").format(names=", ".join(routing.matched_rules))
    queued: list[QueuedMail] = []
    steps = [
        ("group", lambda: _move(desk, ticket, routing.group, at, reason, queued)),
        ("assignee", lambda: lifecycle.assign(desk, ticket, routing.assignee, ACTOR,
                                              Source.RULE, at, reason)),
        ("priority", lambda: lifecycle.set_priority(
            desk, ticket, ACTOR, Source.RULE, at, impact=routing.impact,
            urgency=routing.urgency, reason=reason)),
        ("type", lambda: lifecycle.classify(desk, ticket, ACTOR, Source.RULE, at,
                                            ticket_type=routing.type,
                                            category=routing.category)),
    ]
    needed = {
        "group": routing.group is not None and routing.group != ticket.group,
        "assignee": routing.assignee is not None and routing.assignee != ticket.assignee,
        "priority": routing.impact is not None or routing.urgency is not None,
        "type": routing.type is not None or routing.category is not None,
    }
    for name, step in steps:
        if not needed[name]:
            continue
        try:
            step()
        except LifecycleError as error:
            record_event(ticket, ACTOR, "rule_action_failed",
                         {"field": name, "reason": str(error), "message_id": message_id})
            logger.warning(_("ticket {ticket}: rule action on {field} failed for {message_id}: "
                             "{error}").format(ticket=ticket.id, field=name,
                                               message_id=message_id or "-", error=error))

    if routing.tags:
        tags = [tag for tag in ticket.tags.split() if tag]
        added = [tag for tag in routing.tags if tag not in tags]
        if added:
            models.Ticket.update(tags=" ".join([*tags, *added])).where(
                models.Ticket.id == ticket.id).execute()
            ticket.tags = " ".join([*tags, *added])

    record_event(ticket, ACTOR, "rules_applied", {
        "reason": reason, "message_id": message_id,
        "routing": json.loads(json.dumps(routing.to_json(), default=str)),
    })
    return queued


def _move(desk: Desk, ticket: models.Ticket, group: str, at: datetime, reason: str,
          queued: list[QueuedMail]) -> None:
    _changes, mails = escalation.move_to_group(desk, ticket, group, ACTOR, Source.RULE, at,
                                               reason)
    queued.extend(mails)
