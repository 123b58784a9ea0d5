"""Mail about a ticket's service level: who receives it, its threading headers, its values.

Status notices go to the requester. SLA warnings and breaches go to the assignee or the
group's agents, hierarchical escalation to the group's manager, and dispatch to a
group's own mailbox or its agents. ``queue_ticket_mail`` writes one outbox row inside the caller's
transaction, threaded into the ticket's conversation.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any, overload

from maildesk import models
from maildesk.config import GroupConfig
from maildesk.desk import Desk
from maildesk.i18n import _
from maildesk.mailbuild import Recipient
from maildesk.notify import QueuedMail, queue_mail, ticket_context

logger = logging.getLogger(__name__)

# Outlook and Gmail thread on the first and the last few ids of References.
_REFERENCES_KEPT = 10


@overload
def aware(value: datetime) -> datetime: ...


@overload
def aware(value: None) -> None: ...


def aware(value: datetime | None) -> datetime | None:
    """Return a naive UTC column value as an aware UTC datetime."""
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def group_config(desk: Desk, name: str | None) -> GroupConfig | None:
    if name is None:
        return None
    return next((group for group in desk.config.groups if group.name == name), None)


def agent_recipients(desk: Desk, login: str) -> list[Recipient]:
    for agent in desk.config.agents:
        if agent.login == login:
            return [Recipient(agent.addresses[0], agent.name)]
    return []


def group_agent_recipients(desk: Desk, group: str | None) -> list[Recipient]:
    """Return the first address of every agent in ``group``; the admins when it has none."""
    members = [
        Recipient(agent.addresses[0], agent.name)
        for agent in desk.config.agents
        if group is not None and group in agent.groups
    ]
    if members:
        return members
    return [Recipient(address) for address in desk.config.desk.admin_addresses]


def responsible_recipients(desk: Desk, ticket: models.Ticket) -> list[Recipient]:
    """Return the assignee when there is one, else every agent of the ticket's group.

    An assignee or a group removed from the configuration counts as none, so the mail
    goes to the group's agents or to the admins (``maildesk.orphans``).
    """
    if ticket.assignee:
        assignee = agent_recipients(desk, ticket.assignee)
        if assignee:
            return assignee
    if ticket.group and group_config(desk, ticket.group) is None:
        logger.warning(_("ticket {ticket}: group {group} is no longer in the configuration, "
                         "so the admins get its SLA notice").format(ticket=ticket.id,
                                                                    group=ticket.group))
    return group_agent_recipients(desk, ticket.group)


def thread_headers(ticket: models.Ticket) -> tuple[str | None, list[str]]:
    """Return In-Reply-To (the latest incoming Message-ID) and References for a ticket mail."""
    rows = list(
        models.MessageReference.select(models.MessageReference.message_id,
                                       models.MessageReference.direction)
        .where(models.MessageReference.ticket == ticket)
        .order_by(models.MessageReference.id)
    )
    ids = [row.message_id for row in rows]
    incoming = [row.message_id for row in rows if row.direction == "in"]
    in_reply_to = None
    if incoming:
        in_reply_to = incoming[-1]
    elif ids:
        in_reply_to = ids[-1]
    if len(ids) > _REFERENCES_KEPT + 1:
        ids = [ids[0], *ids[-_REFERENCES_KEPT:]]
    return in_reply_to, ids


def sla_context(ticket: models.Ticket) -> dict[str, Any]:
    """Return the due times of a ticket for templates (aware UTC, or None)."""
    return {
        "priority": ticket.priority,
        "first_response_due": aware(ticket.first_response_due),
        "resolution_due": aware(ticket.resolution_due),
        "target": None,
        "due": None,
        "share": None,
    }


def queue_ticket_mail(desk: Desk, ticket: models.Ticket, template: str,
                      to: list[Recipient], extra: dict[str, Any] | None = None,
                      language: str | None = None, kind: str | None = None,
                      cc: list[Recipient] | None = None) -> QueuedMail | None:
    """Render ``template`` about ``ticket`` into the outbox, threaded into its conversation.

    Mail to the requester is threaded on the Message-IDs the requester saw, so the ids
    of agents' mails and of notices to agents do not reach the user's side.
    """
    from maildesk.conversation import conversation_references  # imports this module

    requester = ticket.requester.address
    if any(recipient.address.strip().lower() == requester for recipient in [*to, *(cc or [])]):
        in_reply_to, references = conversation_references(ticket)
    else:
        in_reply_to, references = thread_headers(ticket)
    context = {
        "ticket": ticket_context(desk, ticket),
        "sla": sla_context(ticket),
        **(extra or {}),
    }
    queued = queue_mail(
        desk,
        template=template,
        language=language or ticket.language,
        context=context,
        to=to,
        cc=cc,
        ticket=ticket,
        in_reply_to=in_reply_to,
        references=references,
        automatic=True,
        kind=kind or template,
    )
    if queued is None:
        logger.info(_("ticket {ticket}: the {template} mail has no allowed recipient, so it "
                      "is not sent").format(ticket=ticket.id, template=template))
    return queued


def sample_context() -> dict[str, Any]:
    """Return sample values for every key the service-level templates use."""
    now = datetime.now(UTC).replace(microsecond=0)
    return {
        "status": {"before": "in_progress", "after": "resolved", "source": "agent_command",
                   "reason": "Wymieniono toner i wyczyszczono podajnik papieru.",
                   "actor": "marek.zielinski", "assignee_name": "Marek Zieliński"},
        "closing": {"closes_at": now + timedelta(days=5), "rating_scale": 5},
        "reminder": {"number": 1, "max": 3, "resolves_at": now + timedelta(days=4),
                     "waiting_since": now - timedelta(days=2)},
        "sla": {"priority": 2, "first_response_due": now + timedelta(hours=1),
                "resolution_due": now + timedelta(hours=6), "target": "resolution",
                "due": now + timedelta(hours=2), "share": 75},
        "escalation": {"group": "pierwsza-linia", "next_group": "druga-linia",
                       "manager": "kierownik.it@example.com", "level": 1,
                       "reason": "przekroczony czas rozwiązania", "moved": True,
                       "clears_assignee": False},
        "dispatch": {"group": "serwis-drukarek", "reason": "naprawa sprzętu u dostawcy",
                     "external": True, "description": "Drukarka HP na 2. piętrze zgłasza "
                     "błąd 13.A2 i nie pobiera papieru.", "requester_name": "Zofia Wiśniewska",
                     "requester_address": "zofia@example.org"},
    }


# A character no subject contains, standing in for the ticket subject while the
# subject lines of the templates are rendered.
_SUBJECT_MARKER = "\u2063subject\u2063"
_prefix_cache: dict[int, tuple[object, tuple[str, ...]]] = {}


def notice_prefixes(desk: Desk) -> tuple[str, ...]:
    """Return the text our templates put before the ticket subject, longest first.

    Rendered once per template set from the templates themselves, so an admin's own
    wording is found too ("Zgłoszenie rozwiązane:", "Ticket resolved:", ...).
    """
    from maildesk.followup import strip_tags
    from maildesk.i18n import LANGUAGES
    from maildesk.notify import sample_context as full_sample

    templates = desk.templates
    cached = _prefix_cache.get(id(templates))
    if cached is not None and cached[0] is templates:
        return cached[1]

    context = full_sample(desk)
    context["ticket"] = {**context["ticket"], "subject": _SUBJECT_MARKER}
    prefixes = set()
    for language in LANGUAGES:
        for name in templates.names(language):
            try:
                subject = templates.render(name, language, context).subject
            except Exception as error:  # noqa: BLE001 (a broken template only loses its prefix)
                logger.debug("template %s/%s not rendered for its prefix: %s", language, name,
                             error)
                continue
            before, found, _after = subject.partition(_SUBJECT_MARKER)
            prefix = strip_tags(before, desk.config.desk.ticket_tag).strip()
            if found and prefix:
                prefixes.add(prefix)
    result = tuple(sorted(prefixes, key=len, reverse=True))
    _prefix_cache[id(templates)] = (templates, result)
    return result


def strip_notice_prefix(desk: Desk, subject: str) -> str:
    """Remove the prefix of one of our notices ("Zgłoszenie rozwiązane: ") from a subject."""
    folded = subject.casefold()
    for prefix in notice_prefixes(desk):
        if folded.startswith(prefix.casefold()):
            stripped = subject[len(prefix):].strip()
            return stripped or subject
    return subject
