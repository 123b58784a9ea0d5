"""Which ticket an incoming mail follows up, how sure we are, and who the sender is.

Evidence comes in two strengths. A trusted Message-ID of a ticket (In-Reply-To,
References) is strong, but only for a sender who received that message or takes part
in the ticket: Message-IDs leak and can be guessed. The desk's own Message-IDs are
trusted, and so are those of incoming mail that created the ticket, joined it by strong
evidence or came from an authenticated agent (``MessageReference.trusted``). Any other
incoming mail may carry a forged From, and its writer chose its Message-ID, so a
reference to it is weak, as is a subject tag such as ``[SD#123]`` that anyone can type.
Weak evidence links the mail only when the sender is the requester, a participant or
an agent. The recipients of an untrusted mail count for nothing, and subjects alone
never link a mail.

An agent's mail is authenticated by a signature that may leave In-Reply-To and
References out, and then anyone who has a copy could have changed them. For such mail
the signed subject tag must name the ticket the references found
(``unconfirmed_thread``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from enum import StrEnum

from maildesk import models, statements
from maildesk.i18n import N_
from maildesk.parse import ParsedMessage
from maildesk.reasons import Reason

logger = logging.getLogger(__name__)


class SenderRole(StrEnum):
    REQUESTER = "requester"
    PARTICIPANT = "participant"
    AGENT = "agent"
    STRANGER = "stranger"


class Evidence(StrEnum):
    """The kind of link between a mail and its ticket. Only REFERENCE is strong."""

    REFERENCE = "reference"
    UNTRUSTED_REFERENCE = "untrusted_reference"
    TAG = "tag"
    NONE = "none"


@dataclass(frozen=True)
class FollowUp:
    """The result of threading: a ticket (or None), the evidence and the notes on the way.

    ``rejected`` lists the links that were found but not trusted, with the reason, so the
    caller can record them in the audit trail of the ticket they pointed at.
    """

    ticket: models.Ticket | None
    evidence: Evidence
    sender_role: SenderRole
    reference_kind: str | None = None
    rejected: tuple[tuple[int, str], ...] = field(default=())
    # The merged ticket that the evidence named, when the mail went on to the ticket it
    # was merged into (see maildesk.merging), else None.
    merged_from: int | None = None

    def proves(self, ticket: models.Ticket) -> bool:
        """Tell whether the mail named a trusted Message-ID of ``ticket`` (strong evidence).

        Only such a mail may add participants, rate the ticket, or pass its own
        Message-ID on as trusted.
        """
        return (self.evidence is Evidence.REFERENCE and self.ticket is not None
                and self.ticket.id == ticket.id)

    def description(self, classification: str) -> Reason:
        """Describe how the mail was linked, with the classifier's reason in brackets."""
        evidence = {Evidence.REFERENCE: N_("thread reference"),
                    Evidence.UNTRUSTED_REFERENCE: N_("thread reference to an untrusted mail"),
                    Evidence.TAG: N_("ticket tag in the subject"),
                    Evidence.NONE: N_("no evidence")}
        return Reason(N_("follow-up by {evidence} ({classification})"),
                      evidence=Reason(evidence[self.evidence]), classification=classification)


def tag_pattern(ticket_tag: str) -> re.Pattern[str]:
    """Compile the configured tag format (e.g. ``[SD#{number}]``) into a regex."""
    before, _, after = ticket_tag.partition("{number}")
    return re.compile(re.escape(before) + r"(\d{1,12})" + re.escape(after), re.IGNORECASE)


def tagged_ticket(subject: str, ticket_tag: str) -> models.Ticket | None:
    """Return the ticket of the first tag in ``subject`` that names one, whatever its status.

    This is the ticket an agent's mail joins by its tag (``find_follow_up``): for the
    tag of a merged ticket, the ticket it was merged into.
    """
    for match in tag_pattern(ticket_tag).finditer(subject):
        ticket = statements.first(models.Ticket, id=int(match.group(1)))
        if ticket is not None:
            return _after_merges(ticket)[0]
    return None


def format_tag(ticket_tag: str, number: int) -> str:
    return ticket_tag.replace("{number}", str(number))


def strip_tags(subject: str, ticket_tag: str) -> str:
    """Remove every ticket tag of ours from a subject (for a new ticket's title)."""
    return re.sub(r"\s{2,}", " ", tag_pattern(ticket_tag).sub("", subject)).strip()


def sender_role(ticket: models.Ticket, sender: str, agent_addresses: frozenset[str]) -> SenderRole:
    """Return how the sender relates to the ticket."""
    if sender in agent_addresses:
        return SenderRole.AGENT
    if ticket.requester.address == sender:
        return SenderRole.REQUESTER
    is_participant = _PARTICIPANT.rows(ticket.id, sender)
    return SenderRole.PARTICIPANT if is_participant else SenderRole.STRANGER


_PARTICIPANT = statements.Prepared(
    lambda ticket_id, address: models.Participant.select(models.Participant.id)
    .join(models.Contact)
    .where(models.Participant.ticket == ticket_id, models.Contact.address == address)
    .limit(1))


def find_follow_up(
    message: ParsedMessage, ticket_tag: str, agent_addresses: frozenset[str]
) -> FollowUp:
    """Find the ticket this mail follows up: by a trusted reference, else by weak evidence."""
    sender = message.from_address.normalized if message.from_address else ""
    rejected: list[tuple[int, str]] = []

    untrusted: FollowUp | None = None
    for reference in _known_references(message.thread_ids):
        ticket, merged_from = _after_merges(reference.ticket)
        role = sender_role(ticket, sender, agent_addresses)
        if reference.trusted:
            if role is not SenderRole.STRANGER or sender in reference.recipients.split():
                return FollowUp(ticket, Evidence.REFERENCE, role, reference.kind,
                                tuple(rejected), merged_from)
            rejected.append((
                ticket.id,
                Reason(N_("thread reference to {message_id} ignored: sender {sender} was not "
                          "a recipient of it and is not a participant of {ticket}"),
                       message_id=reference.message_id, sender=sender, ticket=ticket.id),
            ))
        elif role is not SenderRole.STRANGER:
            # Weak, like a tag: a trusted reference named later still wins.
            untrusted = untrusted or FollowUp(ticket, Evidence.UNTRUSTED_REFERENCE, role,
                                              reference.kind, merged_from=merged_from)
        else:
            rejected.append((
                ticket.id,
                Reason(N_("thread reference to {message_id} ignored: that mail did not prove "
                          "it belongs to {ticket}, and sender {sender} is not the requester, "
                          "a participant or an agent"),
                       message_id=reference.message_id, sender=sender, ticket=ticket.id),
            ))
    if untrusted is not None:
        return replace(untrusted, rejected=tuple(rejected))

    for match in tag_pattern(ticket_tag).finditer(message.subject):
        tagged = statements.first(models.Ticket, id=int(match.group(1)))
        if tagged is None:
            continue
        ticket, merged_from = _after_merges(tagged)
        role = sender_role(ticket, sender, agent_addresses)
        if role is not SenderRole.STRANGER:
            return FollowUp(ticket, Evidence.TAG, role, None, tuple(rejected), merged_from)
        rejected.append((
            ticket.id,
            Reason(N_("subject tag of {ticket} ignored: sender {sender} is not the requester, "
                      "a participant or an agent"), ticket=ticket.id, sender=sender),
        ))

    return FollowUp(None, Evidence.NONE, SenderRole.STRANGER, None, tuple(rejected))


def _after_merges(ticket: models.Ticket) -> tuple[models.Ticket, int | None]:
    """Return the ticket a mail for ``ticket`` goes to, and ``ticket``'s number if merged.

    A merge moves the duplicate's Message-IDs to the target, so mostly only a subject
    tag names a merged ticket. An unmerged ticket costs no query.
    """
    if ticket.merged_into_id is None:
        return ticket, None
    from maildesk.merging import final_ticket

    return final_ticket(ticket), ticket.id


def _known_references(thread_ids: tuple[str, ...]) -> list[models.MessageReference]:
    """Return the stored references of the mail's thread ids, in the mail's order.

    A Message-ID may be stored for several tickets, for example when two senders used
    the same one, so each of its rows is judged on its own.
    """
    if not thread_ids:
        return []
    rows = statements.select_in(models.MessageReference, "message_id", list(thread_ids))
    position = {message_id: index for index, message_id in enumerate(thread_ids)}
    return sorted(rows, key=lambda row: (position[row.message_id], row.id))


# The header fields whose Message-IDs ``find_follow_up`` reads.
THREAD_HEADERS = frozenset({"In-Reply-To", "References"})


@dataclass(frozen=True)
class UnconfirmedThread:
    """An agent's mail that unsigned references link to a ticket its subject tag does not name.

    ``threaded`` is the ticket In-Reply-To or References point at, and ``tagged`` the
    ticket the subject's tag names, or None when the subject has no tag of a ticket.
    """

    threaded: models.Ticket
    tagged: models.Ticket | None


def unconfirmed_thread(follow_up: FollowUp, subject: str, ticket_tag: str,
                       unsigned: frozenset[str]) -> UnconfirmedThread | None:
    """Return why an authenticated agent's mail may not act on the ticket threading found.

    ``unsigned`` names the header fields the mail's authentication does not cover
    (``authn.Verdict.unsigned``). When In-Reply-To or References is among them, a copy
    of the agent's mail could point at any ticket, while the signed subject could not,
    so the subject tag must name the same ticket. Returns None when it does, or when
    the references are signed or did not choose the ticket.
    """
    if follow_up.evidence is not Evidence.REFERENCE or follow_up.ticket is None:
        return None
    if not unsigned & THREAD_HEADERS:
        return None
    tagged = tagged_ticket(subject, ticket_tag)
    if tagged is not None and tagged.id == follow_up.ticket.id:
        return None
    return UnconfirmedThread(follow_up.ticket, tagged)
