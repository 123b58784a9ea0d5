"""Merging a duplicate ticket into the ticket where the work goes on.

The duplicate (the source) hands everything that identifies its conversation to the
target: its messages with their attachments, and its Message-ID references, so that a
reply to any mail of the duplicate threads onto the target without a look-up of its
own. Its requester and participants become participants of the target, up to the
participant limit. The duplicate ends closed, with ``merged_into`` naming the target,
and its SLA clock stops there (the target's clock is not touched). A subject tag of the
duplicate still names the duplicate, so threading follows ``merged_into`` to the open
end of the chain (``final_ticket``), which costs a query only for a merged ticket.

Only an open ticket, or a resolved one, can be merged, and only into an open or resolved
ticket that was never merged: every ticket of a chain but the last is closed, so a chain
cannot loop. ``check`` gives the reason a merge is refused, ``merge`` carries it out
inside the caller's transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from maildesk import models
from maildesk.desk import Desk
from maildesk.i18n import N_, _, gettext_for
from maildesk.mailbuild import Recipient
from maildesk.notify import QueuedMail
from maildesk.tickets import MAX_PARTICIPANTS

logger = logging.getLogger(__name__)

# The maximum number of merges that threading follows in a chain. Merges cannot form a
# loop, but a database edited by hand could, and a mail must not hang the pipeline on it.
MAX_CHAIN = 20


@dataclass(frozen=True)
class Refusal:
    """The reason a merge is rejected, as a msgid with its values (translated per reader)."""

    message: str
    params: dict[str, Any] = field(default_factory=dict)

    def text(self, language: str) -> str:
        return gettext_for(language).gettext(self.message).format(**self.params)


@dataclass(frozen=True)
class MergeResult:
    """The outcome of a merge: the participants added and left out, and the mail queued."""

    source: int
    target: int
    added: tuple[str, ...]
    skipped: tuple[str, ...]
    notified: tuple[str, ...]
    queued: tuple[QueuedMail, ...]


def final_ticket(ticket: models.Ticket) -> models.Ticket:
    """Return the ticket at the end of ``ticket``'s chain of merges (``ticket`` if unmerged).

    Reads nothing for an unmerged ticket. Stops at ``MAX_CHAIN`` hops, or at a ticket
    seen before, and then returns the last ticket reached.
    """
    seen = {ticket.id}
    current = ticket
    while current.merged_into_id is not None and len(seen) <= MAX_CHAIN:
        following = models.Ticket.get_or_none(models.Ticket.id == current.merged_into_id)
        if following is None or following.id in seen:
            logger.error(_("ticket {ticket}: the chain of merges is broken at {number}; "
                           "mail stays on ticket {number}").format(
                ticket=ticket.id, number=current.id))
            break
        seen.add(following.id)
        current = following
    return current


def check(source: models.Ticket, target: models.Ticket | None, number: int) -> Refusal | None:
    """Return why ``source`` may not be merged into ticket ``number``, or None if it may.

    ``target`` is the ticket ``number`` names, or None when there is none.
    """
    if number == source.id:
        return Refusal(N_("a ticket cannot be merged into itself"))
    if target is None:
        return Refusal(N_("there is no ticket {number}"), {"number": number})
    if source.merged_into_id is not None:
        return Refusal(N_("this ticket was already merged into ticket {number}"),
                       {"number": source.merged_into_id})
    if source.status == "closed":
        return Refusal(N_("a closed ticket cannot be merged"))
    if target.merged_into_id == source.id:
        return Refusal(N_("ticket {number} was merged into this one, so this one cannot be "
                          "merged into it"), {"number": number})
    if target.merged_into_id is not None:
        return Refusal(N_("ticket {number} was merged into ticket {final}: merge into ticket "
                          "{final}"), {"number": number, "final": target.merged_into_id})
    if target.status == "closed":
        return Refusal(N_("ticket {number} is closed and stays closed: merge into an open "
                          "ticket"), {"number": number})
    return None


def merge(desk: Desk, source: models.Ticket, target: models.Ticket, actor: str, source_kind: str,
          at: datetime, message_id: str | None = None) -> MergeResult:
    """Merge ``source`` into ``target``; run inside the caller's transaction.

    ``source_kind`` is the lifecycle source of the change (an agent's command, or the
    admin CLI, which acts as one). Raises MergeRefused when ``check`` refuses the merge.
    """
    from maildesk import lifecycle

    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
    lock(source, target)
    refusal = check(source, target, target.id)
    if refusal is not None:
        raise MergeRefused(refusal)

    # Read before the references move: the notice continues the thread the people of
    # the duplicate know.
    people = _people(source)
    in_reply_to, references = _thread_of(source)

    moved_messages = (models.Message.update(ticket=target)
                      .where(models.Message.ticket == source).execute())
    moved_references = (models.MessageReference.update(ticket=target)
                        .where(models.MessageReference.ticket == source).execute())
    added, skipped = _add_participants(desk, target, people)

    detail = {"source": lifecycle.Source(source_kind).value, "message_id": message_id}
    lifecycle.transition(desk, source, lifecycle.Status.CLOSED, actor, source_kind, at,
                         reason=_("merged into ticket {number}").format(number=target.id),
                         notify=False)
    source.merged_into = target.id
    source.updated_at = models.utcnow()
    source.save(only=[models.Ticket.merged_into, models.Ticket.updated_at])
    target.updated_at = source.updated_at
    target.save(only=[models.Ticket.updated_at])

    queued = _notify(desk, source, target, people, in_reply_to, references)
    notified = tuple(address for mail in queued for address in mail.recipients)
    _record(source, target, actor, detail, moved_messages, moved_references, added, skipped,
            notified)
    logger.info(_("ticket {source} merged into ticket {target} by {actor} (messages moved: "
                  "{messages}, participants added: {added})").format(
        source=source.id, target=target.id, actor=actor, messages=moved_messages,
        added=len(added)))
    if skipped:
        logger.warning(_("ticket {target}: reached {limit} participants, so {addresses} of "
                         "merged ticket {source} were not added").format(
            target=target.id, limit=MAX_PARTICIPANTS, addresses=", ".join(skipped),
            source=source.id))
    return MergeResult(source.id, target.id, added, skipped, notified, tuple(queued))


class MergeRefused(Exception):
    """A merge that ``check`` rejects. ``refusal`` contains the reason in each language."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.text("en"))
        self.refusal = refusal


def lock(source: models.Ticket, target: models.Ticket) -> None:
    """Lock both rows and read them again, so a merge checks what it changes.

    A caller that acts on the check before ``merge`` (as the mail path does) locks first
    too. ``merge`` then locks again, which changes nothing in the same transaction.

    On PostgreSQL the rows are locked in the order of their ids, as every merge does, so
    two opposite merges wait for each other instead of deadlocking. SQLite lets one
    transaction write at a time, so the fresh read is enough there.
    """
    query = (models.Ticket.select()
             .where(models.Ticket.id.in_([source.id, target.id]))
             .order_by(models.Ticket.id))
    if models.is_postgresql():
        query = query.for_update()
    for row in query:
        for ticket in (source, target):
            if ticket.id == row.id:
                ticket.__data__.update(row.__data__)


def _people(source: models.Ticket) -> list[tuple[models.Contact, str]]:
    """Return the requester and the participants of ``source`` with their roles, in order."""
    people = [(source.requester, "cc")]
    rows = (models.Participant.select(models.Participant, models.Contact)
            .join(models.Contact)
            .where(models.Participant.ticket == source)
            .order_by(models.Participant.id))
    people.extend((row.contact, row.role) for row in rows)
    return people


def _thread_of(source: models.Ticket) -> tuple[str | None, list[str]]:
    from maildesk.conversation import conversation_references

    return conversation_references(source)


def _add_participants(desk: Desk, target: models.Ticket,
                      people: list[tuple[models.Contact, str]]
                      ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Add the people of the duplicate to ``target``, up to the participant limit.

    The target's requester and its participants are left as they are, and agents and
    the desk's own addresses are never participants (an agent may have opened the
    duplicate). Returns the addresses added and those the limit left out.
    """
    rows = (models.Participant.select(models.Participant.contact)
            .where(models.Participant.ticket == target).tuples())
    present: set[int] = {int(row[0]) for row in rows}  # type: ignore[index]
    count = len(present)
    added: list[str] = []
    skipped: list[str] = []
    for contact, role in people:
        if contact.id == target.requester_id or contact.id in present:
            continue
        if contact.address in desk.agent_addresses or contact.address in desk.own_addresses:
            continue
        if count >= MAX_PARTICIPANTS:
            skipped.append(contact.address)
            continue
        models.Participant.create(ticket=target, contact=contact, role=role)
        present.add(contact.id)
        count += 1
        added.append(contact.address)
    return tuple(added), tuple(skipped)


def _notify(desk: Desk, source: models.Ticket, target: models.Ticket,
            people: list[tuple[models.Contact, str]], in_reply_to: str | None,
            references: list[str]) -> list[QueuedMail]:
    """Tell the people of the duplicate, once each and in their language, where it goes on.

    The requester gets it even when they also opened the target, because they hold mail
    with both numbers and need to know which one to use. A dispatched mailbox gets none.
    One mail goes to each language's readers, queued on the target so that a reply to it
    joins the target.
    """
    from maildesk.escalation import DISPATCH_ROLE
    from maildesk.notify import language_for_address, queue_mail, ticket_context

    recipients: dict[str, list[Recipient]] = {}
    seen: set[str] = set()
    for contact, role in people:
        # A team or vendor mailbox gets the ticket's dispatch mail, never mail for users.
        if role == DISPATCH_ROLE:
            continue
        if contact.address in seen or contact.address in desk.agent_addresses:
            continue
        seen.add(contact.address)
        language = language_for_address(desk, contact.address)
        recipients.setdefault(language, []).append(Recipient(contact.address, contact.name))

    context = {
        "ticket": ticket_context(desk, target),
        "merged": {"number": source.id, "tag": desk.tag(source.id), "subject": source.subject,
                   "same_requester": source.requester_id == target.requester_id},
    }
    queued = []
    for language, to in recipients.items():
        mail = queue_mail(desk, template="ticket_merged", language=language, context=context,
                          to=to, ticket=target, in_reply_to=in_reply_to,
                          references=references or None, automatic=True, kind="ticket_merged")
        if mail is not None:
            queued.append(mail)
    return queued


def _record(source: models.Ticket, target: models.Ticket, actor: str, detail: dict[str, Any],
            messages: int, references: int, added: tuple[str, ...], skipped: tuple[str, ...],
            notified: tuple[str, ...]) -> None:
    from maildesk.tickets import record_event

    record_event(source, actor, "merged_into", {
        **detail, "target": target.id, "messages": messages, "references": references},
        before=None, after=target.id)
    record_event(target, actor, "merged_from", {
        **detail, "merged": source.id, "messages": messages, "added": list(added),
        "skipped": list(skipped), "notified": list(notified)}, before=None, after=source.id)
