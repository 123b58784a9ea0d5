"""The Decision: what to do with one incoming mail, built by pure steps before any change.

Deciding is kept apart from changing (``maildesk.tickets.apply``): a decision can be
explained, logged and tested without touching the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from maildesk import models
from maildesk.classify import Classification
from maildesk.followup import FollowUp
from maildesk.parse import ParsedMessage


class Action(StrEnum):
    CREATE = "create"
    APPEND = "append"
    IGNORE = "ignore"


@dataclass
class Decision:
    """Everything ``tickets.apply`` needs to change the database in one transaction.

    ``raw`` is the mail as received: ``apply`` stores it in its transaction, and agent
    authentication by DKIM reads it before that. ``events`` are (ticket number or None,
    action, detail) triples for the audit trail.
    """

    action: Action
    message: ParsedMessage
    raw_sha256: str
    raw: bytes = field(repr=False)
    source: str
    dedupe_key: str
    classification: Classification
    follow_up: FollowUp
    reason: str
    ticket: models.Ticket | None = None
    entry_kind: str = "customer"
    subject: str = ""
    language: str | None = None
    routing: Any = None
    linked_ticket: models.Ticket | None = None
    acknowledge: bool = False
    acknowledgement_template: str = "acknowledgement"
    events: list[tuple[int | None, str, dict[str, Any]]] = field(default_factory=list)
    rejection: str | None = None
    # The agent/user conversation plan from ``maildesk.conversation.review``, or None.
    conversation: Any = None
    # The time of the decision. A bounce mark recorded later stays when the mail is applied.
    decided_at: datetime = field(default_factory=models.utcnow)
    # What a user's reply did to a resolved or closed ticket: the rating it gave and
    # whether it reopened the ticket. ``servicehooks.on_message_added`` sets them while
    # ``apply`` runs, and the notice to the agents (``user_replied``) shows them.
    rating: int | None = None
    reopened: bool = False

    @property
    def sender(self) -> str:
        return self.message.from_address.normalized if self.message.from_address else ""
