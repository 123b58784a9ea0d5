"""The conversation between users and agents on a ticket, carried by mail.

When an agent replies to a ticket mail, maildesk relays the new text to the requester
and the Cc participants, from the desk address. A mail with a ``#note`` line among its
commands, sent to the note address, or replying to a mail only agents received stays
an internal note that only agents are told about. A corrected resend in reply to a
command error keeps the mode of the mail the error refused. Commands at the top of an
agent's text change the ticket. A user's reply is passed on to the assignee (or the
group).

``review`` refines the pipeline's Decision (pure, reads the database); ``carry_out``
makes the changes and queues the mail inside the transaction of ``tickets.apply``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import Any

from maildesk import agents, models, statements
from maildesk.authn import Verdict, authenticate
from maildesk.commands import (
    CLOSED_TICKET_PROBLEM,
    N_,
    CommandBlock,
    CommandPlan,
    Directory,
    Problem,
    apply_changes,
    field_label,
    label,
    looks_like_commands,
    plan_changes,
    split_commands,
    ticket_state,
)
from maildesk.decision import Action, Decision
from maildesk.desk import Desk
from maildesk.followup import (
    SenderRole,
    UnconfirmedThread,
    format_tag,
    tag_pattern,
    unconfirmed_thread,
)
from maildesk.i18n import _
from maildesk.mailbuild import OutgoingAttachment, Recipient
from maildesk.models import utcnow
from maildesk.noticefiles import notice_files, outgoing_file
from maildesk.notify import QueuedMail, queue_mail, ticket_context
from maildesk.parse import Address, ParsedMessage
from maildesk.reasons import Reason, message_kind_label
from maildesk.subjects import strip_reply_prefixes

logger = logging.getLogger(__name__)

# Kinds of Message-IDs that only agents received: a reply to one of them is internal.
AGENT_ONLY_KINDS = frozenset({"note", "internal_note", "held", "command_confirmation",
                              "command_error", "colleague_activity"})
# The reference kind of a command_error about a mail that would have been relayed. A
# corrected resend in reply to it is relayed too, as the refused mail would have been,
# while a reply to a plain "command_error" stays a note like the mail it refused.
RELAYED_ERROR_KIND = "command_error_relay"
# Kinds of entries and outgoing mail that are never shown or sent to a requester.
HIDDEN_KINDS = AGENT_ONLY_KINDS | {"user_replied", RELAYED_ERROR_KIND}


@dataclass(frozen=True)
class AgentPlan:
    """What an agent's mail does: its kind, the text to pass on, the command outcome.

    ``refusal`` is None, ``"authentication"`` (the mail is not proven to come from the
    agent), ``"thread"`` (unsigned references chose a ticket that the subject tag does
    not name, see ``thread``) or ``"invalid"`` (a command is wrong or not allowed). A
    refused mail changes nothing, is not passed on, and is kept as a ``held`` entry.
    """

    login: str
    name: str
    address: str
    language: str
    kind: str
    body: str
    block: CommandBlock
    plan: CommandPlan
    verdict: Verdict
    refusal: str | None = None
    note_reason: str | None = None
    thread: UnconfirmedThread | None = None


@dataclass(frozen=True)
class CustomerPlan:
    """A user's follow-up: who to tell, and the command-like lines that were ignored."""

    ignored_commands: tuple[str, ...] = ()


@dataclass(frozen=True)
class HeldPlan:
    """A stranger's mail that carried a ticket's tag, kept for an agent to accept."""

    reason: str


@dataclass(frozen=True)
class ManagerNote:
    """A group manager's reply to a mail of the ticket, kept as an internal note.

    Managers are not agents: their mail runs no commands and is never relayed to the
    requester, but the assignee (or the group) gets an ``internal_note`` mail of it.
    """

    groups: tuple[str, ...]


# --------------------------------------------------------------------------- settings hooks


def cc_become_participants(desk: Desk) -> bool:
    return agents.command_settings(desk).cc_become_participants


def note_address(desk: Desk) -> str:
    return agents.command_settings(desk).note_address


def managed_groups(desk: Desk, address: str) -> tuple[str, ...]:
    """Return the names of the configured groups whose ``manager`` is ``address``."""
    address = address.strip().lower()
    return tuple(group.name for group in desk.config.groups
                 if group.manager is not None and group.manager.strip().lower() == address)


def acted_on_recipients(decision: Decision) -> tuple[Address, ...]:
    """Return the To and Cc addresses of a mail that the desk may act on.

    For an agent's mail these are the fields its authentication covers, because anyone
    who has a copy of the mail could have written the others, and none for a mail
    that failed authentication. Mail from anyone else is not authenticated at all, so
    all of its To and Cc count.
    """
    message = decision.message
    plan = decision.conversation
    if not isinstance(plan, AgentPlan):
        return (*message.to, *message.cc)
    if not plan.verdict.passed:
        return ()
    unsigned = plan.verdict.unsigned
    return (*(message.to if "To" not in unsigned else ()),
            *(message.cc if "Cc" not in unsigned else ()))


# --------------------------------------------------------------------------- deciding


# Names of an agent mail's entry kinds and refusals, as decision reasons show them.
_KIND_NAMES = {"agent_reply": N_("agent's reply"), "internal_note": N_("internal note"),
               "held": N_("held message")}
_REFUSAL_NAMES = {"authentication": N_("authentication failed"),
                  "thread": N_("the subject tag does not name the ticket"),
                  "invalid": N_("invalid commands")}


def review(desk: Desk, decision: Decision) -> Decision:
    """Refine a Decision for agent mail, user follow-ups and strangers' tagged mail."""
    if decision.action is Action.APPEND and decision.ticket is not None:
        if decision.entry_kind == "agent_reply":
            plan = plan_agent_mail(desk, decision)
            reason = Reason(N_("{reason}; {kind}"), reason=decision.reason,
                            kind=Reason(_KIND_NAMES.get(plan.kind, plan.kind)))
            if plan.refusal:
                reason = Reason(N_("{reason} (refused: {refusal})"), reason=reason,
                                refusal=Reason(_REFUSAL_NAMES.get(plan.refusal, plan.refusal)))
            # The signed tag's ticket, not the one unsigned references chose, keeps the mail.
            kept_on = plan.thread.tagged if plan.thread and plan.thread.tagged else decision.ticket
            return replace(decision, ticket=kept_on, entry_kind=plan.kind, conversation=plan,
                           reason=reason)
        if decision.entry_kind == "customer":
            ignored = looks_like_commands(decision.message.reply_text)
            return replace(decision, conversation=CustomerPlan(ignored))
        return decision

    if decision.action is Action.CREATE and decision.linked_ticket is None:
        settings = agents.command_settings(desk)
        if settings.stranger_tag == "hold":
            ticket = _tagged_ticket(desk, decision.message)
            if ticket is not None:
                reason = Reason(N_("held: {sender} is not a participant of {ticket} but "
                                   "used its tag"), sender=decision.sender, ticket=ticket.id)
                return replace(decision, action=Action.APPEND, ticket=ticket, entry_kind="held",
                               acknowledge=False, routing=None, conversation=HeldPlan(reason),
                               reason=reason)
    return decision


def _tagged_ticket(desk: Desk, message: ParsedMessage) -> models.Ticket | None:
    """Return the open ticket whose tag the subject carries, if any.

    The tag of a merged ticket names the ticket it was merged into.
    """
    from maildesk.merging import final_ticket

    for match in tag_pattern(desk.config.desk.ticket_tag).finditer(message.subject):
        ticket = models.Ticket.get_or_none(models.Ticket.id == int(match.group(1)))
        if ticket is not None:
            ticket = final_ticket(ticket)
        if ticket is not None and ticket.status != "closed":
            return ticket
    return None


def directory_for(desk: Desk) -> Directory:
    """Build the agent and group look-ups of command validation on the database."""

    def find_agent(value: str) -> str | None:
        agent = agents.find_agent(value)
        return agent.login if agent else None

    def find_group(name: str) -> tuple[str, str | None] | None:
        group = agents.find_group(name)
        return (group.name, group.escalates_to) if group else None

    def is_member(login: str, group: str) -> bool:
        return any(agent.login == login for agent in agents.group_members(group))

    from maildesk.slaconfig import service_levels

    levels = service_levels(desk)
    return Directory(find_agent, find_group, levels.matrix, is_member=is_member,
                     categories=levels.categories)


def _check_merge(ticket: models.Ticket, number: int) -> tuple[str, dict[str, Any]] | None:
    """Return why ``ticket`` may not be merged into ticket ``number``, for command checks.

    maildesk has no per-group visibility of tickets. Every agent who may run commands may
    act on every ticket, so the target only has to exist and accept the merge.
    """
    from maildesk import merging

    target = models.Ticket.get_or_none(models.Ticket.id == number)
    refusal = merging.check(ticket, target, number)
    return (refusal.message, refusal.params) if refusal is not None else None


def _addressed_to_note(message: ParsedMessage, address: str) -> bool:
    """Tell whether the mail was sent to the note address, by any recipient field.

    Unsigned To and Cc count too, and Delivered-To and X-Original-To are never signed:
    a field that makes a reply an internal note can only keep text from the user.
    NOTE: a copy of an agent's note whose To is unsigned can be sent to the desk's plain
    address, and then passes the text on to the user if it arrives before the note.
    Only ``#note`` in the signed body, or a signed To, rules that out.
    """
    recipients = {a.normalized for a in (*message.to, *message.cc)}
    for name in ("Delivered-To", "X-Original-To"):
        recipients.update(value.strip().strip("<>").lower() for value in message.header_all(name))
    return address in recipients


# Outbox kinds of the mail that only agents receive, whose subjects name their kind.
_AGENT_ONLY_OUTBOX_KINDS = ("note", "command_confirmation", "command_error")


def _answers_agent_only_mail(ticket: models.Ticket, subject: str) -> bool:
    """Tell whether ``subject``, without reply prefixes, is that of a mail only agents got.

    In-Reply-To and References show this too, but a signature may leave them out, and a
    copy of an agent's reply to an internal note could then drop them and be passed on
    to the user. The subject is signed, and the desk's subjects for agents name the
    kind of mail (``[#5] Internal note: ...``).

    A ``command_error`` about a mail that would have been relayed does not count: the
    corrected resend, which keeps that error's subject, goes where the refused mail
    would have gone. An error about a note has the same subject, so while one exists in
    the ticket the subject still makes a note.
    """
    wanted = _subject_key(subject)
    relayed_errors = (models.MessageReference.select(models.MessageReference.message_id)
                      .where(models.MessageReference.ticket == ticket,
                             models.MessageReference.kind == RELAYED_ERROR_KIND))
    rows = (models.Outbox.select(models.Outbox.subject)
            .where(models.Outbox.ticket == ticket,
                   models.Outbox.kind.in_(_AGENT_ONLY_OUTBOX_KINDS),
                   models.Outbox.message_id.not_in(relayed_errors)))
    return any(_subject_key(row.subject) == wanted for row in rows)


def _subject_key(subject: str) -> str:
    return " ".join(strip_reply_prefixes(subject).split()).casefold()


def _agent_identity(desk: Desk, sender: str) -> tuple[str, str, str, str, bool]:
    """Return login, name, configured address, language and whether commands are allowed."""
    row = agents.agent_by_address(sender)
    if row is not None:
        language = row.language or desk.config.language
        return row.login, row.name, agents.primary_address(row), language, row.commands
    config = desk.config.agent_by_address(sender)
    assert config is not None, f"{sender} is not an agent"
    return (config.login, config.name, config.addresses[0].lower(),
            config.language or desk.config.language, config.commands)


def plan_agent_mail(desk: Desk, decision: Decision) -> AgentPlan:
    """Work out an agent's mail: note or reply, authenticated or not, commands valid or not."""
    settings = agents.command_settings(desk)
    message = decision.message
    ticket = decision.ticket
    assert ticket is not None
    login, name, address, language, may_command = _agent_identity(desk, decision.sender)
    block = split_commands(message.reply_text)

    note_reason = None
    if block.is_note:
        note_reason = "command"
    elif block.merges:
        # The requester learns of a merge from its own notice, so the text is for agents.
        note_reason = "merge"
    elif _addressed_to_note(message, settings.note_address):
        note_reason = "address"
    elif decision.follow_up.reference_kind in AGENT_ONLY_KINDS:
        note_reason = "reference"
    elif _answers_agent_only_mail(ticket, message.subject):
        note_reason = "subject"
    kind = "internal_note" if note_reason else "agent_reply"

    verdict = authenticate(message, decision.raw, decision.sender, settings.authentication,
                           settings.trusted_authserv_ids, desk.dns_txt)
    common: dict[str, Any] = dict(login=login, name=name, address=address, language=language,
                                  body=block.body, block=block, verdict=verdict,
                                  note_reason=note_reason)
    if not verdict.passed:
        return AgentPlan(kind="held", plan=CommandPlan(), refusal="authentication", **common)

    thread = unconfirmed_thread(decision.follow_up, message.subject,
                                desk.config.desk.ticket_tag, verdict.unsigned)
    if thread is not None:
        return AgentPlan(kind="held", plan=CommandPlan(), refusal="thread", thread=thread,
                         **common)

    if block.actions and not may_command:
        problem = Problem(block.actions[0].line,
                          N_("you may not run commands: ask an admin to set 'commands: true' "
                             "for your login"))
        return AgentPlan(kind="held", plan=CommandPlan(problems=(problem,)), refusal="invalid",
                         **common)

    directory = replace(directory_for(desk),
                        check_merge=lambda number: _check_merge(ticket, number))
    plan = plan_changes(block, ticket_state(ticket), login, directory)
    if not plan.valid:
        return AgentPlan(kind="held", plan=plan, refusal="invalid", **common)
    return AgentPlan(kind=kind, plan=plan, **common)


# --------------------------------------------------------------------------- changing


def carry_out(desk: Desk, decision: Decision, ticket: models.Ticket,
              entry: models.Message) -> list[QueuedMail]:
    """Apply the conversation part of a decision; run inside the mail's transaction."""
    plan = decision.conversation
    if isinstance(plan, AgentPlan):
        return _carry_out_agent(desk, decision, ticket, entry, plan)
    if isinstance(plan, CustomerPlan):
        return _carry_out_customer(desk, decision, ticket, entry, plan)
    if isinstance(plan, ManagerNote):
        return _carry_out_manager(desk, decision, ticket, entry, plan)
    if isinstance(plan, HeldPlan):
        from maildesk.tickets import record_event

        record_event(ticket, decision.sender, "held", {
            "reason": plan.reason, "message_id": decision.message.message_id,
            "entry": entry.id})
        logger.info(_("ticket {ticket}: mail {message_id} from {sender} held for an agent "
                      "to accept").format(ticket=ticket.id, message_id=decision.message.message_id,
                                          sender=decision.sender))
    return []


def _carry_out_agent(desk: Desk, decision: Decision, ticket: models.Ticket,
                     entry: models.Message, plan: AgentPlan) -> list[QueuedMail]:
    from maildesk.tickets import record_event

    entry.reply_text = plan.body
    entry.save()
    message_id = decision.message.message_id

    if plan.refusal is not None:
        summary = _refusal_summary(ticket, decision.sender, plan)
        action = _REFUSAL_ACTIONS[plan.refusal]
        record_event(ticket, plan.login, action, {
            "reason": summary, "message_id": message_id, "entry": entry.id,
            "lines": [command.line for command in plan.block.commands]})
        logger.warning(_("mail {message_id} rejected on ticket {ticket}: {reason}").format(
            message_id=message_id or "-", ticket=ticket.id, reason=summary.translated()))
        mail = _queue_command_error(desk, ticket, decision, plan)
        return [mail] if mail else []

    if plan.plan.merge_into is not None:
        return _carry_out_merge(desk, decision, ticket, entry, plan)

    queued: list[QueuedMail] = []
    # Read before the commands run, because "#assign me" takes the ticket from them.
    assignee_before = ticket.assignee
    relay = RelayRecipients()
    if plan.body and plan.kind != "internal_note":
        relay = _relay_recipients(desk, ticket, decision.message)
    if plan.plan.changes:
        # A relayed reply shows the new status itself (see agent_reply.j2), so the separate
        # status notice goes out only when the requester gets no relay.
        apply_changes(desk, ticket, plan.plan.changes, plan.login, detail={
            "message_id": message_id, "via": "mail",
            **({"reason": plan.plan.reasons["escalation"]}
               if "escalation" in plan.plan.reasons else {})},
            notify_requester=not relay.includes(ticket.requester.address))
    if plan.block.actions:
        mail = _queue_confirmation(desk, ticket, decision, plan)
        if mail:
            queued.append(mail)

    if plan.kind == "internal_note":
        record_event(ticket, plan.login, "internal_note_added", {
            "message_id": message_id, "entry": entry.id, "why": plan.note_reason})
        if plan.body:
            queued.extend(_queue_note_notifications(desk, ticket, entry, plan.body, plan.name,
                                                    exclude=plan.login))
    elif plan.body:
        if relay.skipped:
            _record_relay_skipped(ticket, plan, message_id, relay.skipped)
        if relay.to:
            mail = _queue_relay(desk, ticket, decision, plan, relay, _status_change(plan))
            if mail:
                queued.append(mail)
        _record_first_response(ticket, plan)

    mail = _queue_colleague_activity(desk, ticket, assignee_before, plan, entry,
                                     relayed=bool(relay.to) and plan.kind != "internal_note")
    if mail:
        queued.append(mail)
    supersede_held(ticket, plan.login, entry)
    return queued


def _carry_out_merge(desk: Desk, decision: Decision, ticket: models.Ticket,
                     entry: models.Message, plan: AgentPlan) -> list[QueuedMail]:
    """Merge the ticket of an agent's ``#merge`` mail into the ticket it names.

    The mail's text stays an internal note and moves to the target with the other
    messages. The confirmation is queued on the target, where the work goes on, so a
    reply to it joins the target. A merge that another mail made impossible since the
    commands were checked (the target closed meanwhile) gets the ``command_error``.
    NOTE: the assignees of both tickets learn of the merge only from the audit trail.
    """
    from maildesk import merging
    from maildesk.lifecycle import Source
    from maildesk.tickets import record_event

    message_id = decision.message.message_id
    number = plan.plan.merge_into
    assert number is not None
    target = models.Ticket.get_or_none(models.Ticket.id == number)
    if target is not None:
        merging.lock(ticket, target)
    refusal = merging.check(ticket, target, number)
    if refusal is not None or target is None:
        assert refusal is not None
        line = next(command.line for command in plan.block.actions)
        problem = Problem(line, refusal.message, refusal.params, N_("#merge <ticket number>"))
        refused = replace(plan, kind="held", refusal="invalid",
                          plan=CommandPlan(problems=(problem,)))
        entry.kind = "held"
        entry.save(only=[models.Message.kind])
        return _carry_out_agent(desk, decision, ticket, entry, refused)

    if plan.body:
        record_event(ticket, plan.login, "internal_note_added", {
            "message_id": message_id, "entry": entry.id, "why": plan.note_reason})
    supersede_held(ticket, plan.login, entry)
    status_before = ticket.status
    result = merging.merge(desk, ticket, target, plan.login, Source.AGENT_COMMAND, utcnow(),
                           message_id)
    changes = [{"field": field_label("status", plan.language),
                "old": label(status_before, plan.language),
                "new": label(ticket.status, plan.language)}]
    context = {"ticket": ticket_context(desk, target),
               "agent": {"name": plan.name, "login": plan.login},
               "changes": changes,
               "commands": [command.line for command in plan.block.actions],
               "note_reason": plan.note_reason if plan.body else None,
               "merge": {"source": {"number": ticket.id, "tag": desk.tag(ticket.id)},
                         "target": {"number": target.id, "tag": desk.tag(target.id)},
                         "added": list(result.added), "skipped": list(result.skipped),
                         "notified": list(result.notified)}}
    queued = list(result.queued)
    mail = queue_mail(desk, template="command_confirmation", language=plan.language,
                      context=context, ticket=target, kind="command_confirmation",
                      **_to_agent(plan, decision))
    if mail:
        queued.append(mail)
    return queued


def _queue_colleague_activity(desk: Desk, ticket: models.Ticket, assignee_before: str | None,
                              plan: AgentPlan, entry: models.Message,
                              relayed: bool) -> QueuedMail | None:
    """Tell the assignee that another agent replied to the requester or changed the ticket.

    Two agents may reply on one ticket at the same time, from notices that showed the
    ticket as it was. The assignee before the mail then learns what the colleague wrote
    to the requester and which values changed, including an assignment away from them.
    An internal note reaches the assignee as its own notice, so it adds nothing here.
    """
    if not relayed and not plan.plan.changes:
        return None
    # The assignee may be stored as a login or as an address.
    assignee = agents.resolve_assignee(assignee_before)
    if assignee is None or not assignee.active or assignee.login == plan.login:
        return None

    language = assignee.language or desk.config.language
    context = _agent_context(desk, ticket, assignee)
    context["activity"] = {
        "author_name": plan.name,
        "text": plan.body if relayed else None,
        "changes": _change_lines(plan, language),
        "unassigned": ticket.assignee != assignee_before,
    }
    return queue_mail(
        desk, template="colleague_activity", language=language, context=context,
        to=[Recipient(agents.primary_address(assignee), assignee.name)], ticket=ticket,
        in_reply_to=entry.message_id, references=[entry.message_id] if entry.message_id
        else None, automatic=True, kind="colleague_activity",
    )


def _record_relay_skipped(ticket: models.Ticket, plan: AgentPlan, message_id: str | None,
                          skipped: tuple[str, ...]) -> None:
    from maildesk.tickets import record_event

    record_event(ticket, plan.login, "relay_skipped", {
        "reason": Reason(N_("{addresses} received the agent's own mail"),
                         addresses=", ".join(skipped)),
        "recipients": list(skipped), "message_id": message_id})
    logger.info(_("ticket {ticket}: the reply {message_id} of {agent} is not relayed again "
                  "to {addresses}, who received it from the agent").format(
        ticket=ticket.id, message_id=message_id or "-", agent=plan.login,
        addresses=", ".join(skipped)))


# The audit event of each refusal. Mail held for invalid commands or an unconfirmed
# ticket passed authentication, so a later accepted mail of the agent supersedes it.
_REFUSAL_ACTIONS = {"authentication": "command_rejected", "thread": "thread_unconfirmed",
                    "invalid": "command_invalid"}
_SUPERSEDED_ACTIONS = ("command_invalid", "thread_unconfirmed")


def _refusal_summary(ticket: models.Ticket, sender: str, plan: AgentPlan) -> Reason:
    if plan.thread is not None:
        if plan.thread.tagged is None:
            return Reason(N_("mail held for {ticket}: only unsigned In-Reply-To or References "
                             "name the ticket, and the subject has no tag of it"),
                          ticket=ticket.id)
        return Reason(N_("mail held for {ticket}: the subject tag names it, but unsigned "
                         "In-Reply-To or References point at {threaded}"),
                      ticket=ticket.id, threaded=plan.thread.threaded.id)
    if plan.refusal == "authentication":
        # The verdict summary is the authentication result as checked (dkim=..., spf=...).
        if plan.block.actions:
            return Reason(N_("command(s) rejected for {ticket}: From {sender} failed "
                             "authentication ({verdict})"),
                          ticket=ticket.id, sender=sender, verdict=plan.verdict.summary)
        return Reason(N_("reply held for {ticket}: From {sender} failed authentication "
                         "({verdict})"), ticket=ticket.id, sender=sender,
                      verdict=plan.verdict.summary)
    lines = "; ".join(problem.line for problem in plan.plan.problems)
    return Reason(N_("command(s) rejected for {ticket}: invalid command(s) from {sender}: "
                     "{lines}"), ticket=ticket.id, sender=sender, lines=lines)


def _record_first_response(ticket: models.Ticket, plan: AgentPlan) -> None:
    """Record the first reply relayed to the user as the ticket's first response."""
    from maildesk.tickets import record_event

    if ticket.first_responded_at is not None:
        return
    now = utcnow()
    updated = models.Ticket.update(first_responded_at=now).where(
        models.Ticket.id == ticket.id, models.Ticket.first_responded_at.is_null()).execute()
    if updated:
        ticket.first_responded_at = now
        record_event(ticket, plan.login, "first_response", {"agent": plan.login}, after=now)


def _carry_out_manager(desk: Desk, decision: Decision, ticket: models.Ticket,
                       entry: models.Message, plan: ManagerNote) -> list[QueuedMail]:
    from maildesk.tickets import record_event

    message = decision.message
    record_event(ticket, decision.sender, "internal_note_added", {
        "message_id": message.message_id, "entry": entry.id, "why": "manager",
        "groups": list(plan.groups)})
    logger.info(_("ticket {ticket}: the reply {message_id} of group manager {sender} is kept "
                  "as an internal note").format(ticket=ticket.id,
                                                message_id=message.message_id or "-",
                                                sender=decision.sender))
    text = (message.reply_text or message.text).strip()
    if not text:
        return []
    sender = message.from_address
    author = Reason(N_("{name} (group manager: {groups})"),
                    name=(sender.name if sender and sender.name else decision.sender),
                    groups=", ".join(plan.groups))
    return _queue_note_notifications(desk, ticket, entry, text, author, exclude=None)


def _carry_out_customer(desk: Desk, decision: Decision, ticket: models.Ticket,
                        entry: models.Message, plan: CustomerPlan) -> list[QueuedMail]:
    from maildesk.tickets import record_event

    if plan.ignored_commands:
        record_event(ticket, decision.sender, "command_like_text_ignored", {
            "reason": Reason(N_("command-like lines from non-agent ignored")),
            "lines": list(plan.ignored_commands), "message_id": decision.message.message_id})
    if decision.follow_up.sender_role not in (SenderRole.REQUESTER, SenderRole.PARTICIPANT):
        return []
    return _queue_user_replied(desk, ticket, decision, entry)


# --------------------------------------------------------------------------- mail


def conversation_references(ticket: models.Ticket) -> tuple[str | None, list[str]]:
    """Return In-Reply-To and References for mail on the user's side of the conversation.

    Only Message-IDs the requester saw are used: the users' mail that the requester sent
    or received, and the desk's mail to the requester. An agent's own mail, a manager's
    reply, a participant's mail that left the requester out and a notification to
    agents or teams are never used.
    """
    requester = ticket.requester.address
    rows = (models.MessageReference.select()
            .where(models.MessageReference.ticket == ticket)
            .order_by(models.MessageReference.id))
    visible: list[str] = []
    last_from_user = None
    for row in rows:
        seen_by_requester = requester in row.recipients.split()
        if row.direction == "in":
            if row.kind != "customer" or not seen_by_requester:
                continue
            last_from_user = row.message_id
        elif row.kind in HIDDEN_KINDS or not seen_by_requester:
            continue
        if row.message_id not in visible:
            visible.append(row.message_id)
    in_reply_to = last_from_user or (visible[-1] if visible else None)
    return in_reply_to, visible


@dataclass(frozen=True)
class RelayRecipients:
    """The recipients of a relayed reply, and the addresses left out of it.

    ``skipped`` are the requester and participants whom the agent's own mail went to
    (To or Cc). They have the text already, command lines included, so a relay would
    be a second copy.
    """

    to: tuple[Recipient, ...] = ()
    cc: tuple[Recipient, ...] = ()
    skipped: tuple[str, ...] = ()

    def includes(self, address: str) -> bool:
        return any(recipient.address == address for recipient in (*self.to, *self.cc))


def _relay_recipients(desk: Desk, ticket: models.Ticket,
                     message: ParsedMessage) -> RelayRecipients:
    """Return the requester (To) and participants (Cc) that an agent's reply goes to.

    When the requester was among the agent's own recipients, the first participant
    left takes the To line.
    """
    addressed = {address.normalized for address in (*message.to, *message.cc)}
    requester, participants = _requester_and_participants(desk, ticket)
    everyone = (requester, *participants)
    remaining = tuple(recipient for recipient in everyone if recipient.address not in addressed)
    skipped = tuple(recipient.address for recipient in everyone
                    if recipient.address in addressed)
    return RelayRecipients(remaining[:1], remaining[1:], skipped)


def _requester_and_participants(desk: Desk, ticket: models.Ticket) -> tuple[Recipient,
                                                                           list[Recipient]]:
    requester = ticket.requester
    cc = []
    # Only people added by users (role "cc"), not a team or vendor mailbox a ticket was
    # dispatched to: those get their own mail about the ticket.
    for participant in (models.Participant.select(models.Participant, models.Contact)
                        .join(models.Contact).where(models.Participant.ticket == ticket,
                                                    models.Participant.role == "cc")):
        contact = participant.contact
        if contact.address in desk.agent_addresses or contact.address == requester.address:
            continue
        cc.append(Recipient(contact.address, contact.name))
    return Recipient(requester.address, requester.name), cc


def _status_change(plan: AgentPlan) -> str | None:
    """Return the status this mail's commands set, or None."""
    for name, _old, new in plan.plan.changes:
        if name == "status":
            return str(new)
    return None


def _relayed_attachments(message: ParsedMessage) -> list[OutgoingAttachment]:
    """Return the files of an agent's mail that go on to the requester.

    A part the mail's HTML shows by Content-ID, such as a logo in the signature, or one
    marked inline, is left out, because the relayed mail is built from the text alone.
    An attached mail goes as a plain file, because RFC 2046 allows no base64
    transfer encoding in message/rfc822 and ``mailbuild`` encodes every file in base64.
    """
    return [outgoing_file(attachment) for attachment in message.attachments
            if not (attachment.inline or attachment.content_id)]


def _queue_relay(desk: Desk, ticket: models.Ticket, decision: Decision, plan: AgentPlan,
                 relay: RelayRecipients, new_status: str | None = None) -> QueuedMail | None:
    in_reply_to, references = conversation_references(ticket)
    mail = queue_mail(
        desk, template="agent_reply", language=ticket.language,
        context={"ticket": ticket_context(desk, ticket),
                 "agent": {"name": plan.name, "login": plan.login},
                 "reply": {"text": plan.body, "new_status": new_status}},
        to=list(relay.to), cc=list(relay.cc), ticket=ticket, in_reply_to=in_reply_to,
        references=references, automatic=False, kind="reply", sender_name=plan.name,
        attachments=_relayed_attachments(decision.message),
    )
    if mail is None:
        logger.warning(_("ticket {ticket}: the reply of {agent} was not sent, because no "
                         "recipient is allowed ({message_id})").format(
            ticket=ticket.id, agent=plan.login, message_id=decision.message.message_id))
    return mail


def _agent_recipients(ticket: models.Ticket, exclude: str | None) -> list[models.Agent]:
    """Return the agents who look after a ticket: its assignee, else its group's members."""
    assignee = agents.resolve_assignee(ticket.assignee)
    found: list[models.Agent] = []
    if assignee is not None:
        found.append(assignee)
    if ticket.group and (assignee is None or exclude == assignee.login):
        found.extend(agents.group_members(ticket.group))
    unique: dict[str, models.Agent] = {}
    for agent in found:
        if agent.login != exclude:
            unique.setdefault(agent.login, agent)
    return list(unique.values())


def _agent_context(desk: Desk, ticket: models.Ticket, agent: models.Agent) -> dict[str, Any]:
    return {"ticket": ticket_context(desk, ticket),
            "recipient": {"name": agent.name, "login": agent.login}}


def _queue_note_notifications(desk: Desk, ticket: models.Ticket, entry: models.Message,
                              text: str, author_name: str | Reason,
                              exclude: str | None) -> list[QueuedMail]:
    """Tell the assignee, else the group's agents, of a note; ``exclude`` is its author."""
    queued = []
    for agent in _agent_recipients(ticket, exclude=exclude):
        context = _agent_context(desk, ticket, agent)
        context["note"] = {"text": text, "author_name": author_name}
        mail = queue_mail(
            desk, template="internal_note", language=agent.language or desk.config.language,
            context=context, to=[Recipient(agents.primary_address(agent), agent.name)],
            ticket=ticket, in_reply_to=entry.message_id, references=[entry.message_id]
            if entry.message_id else None, automatic=True, kind="note",
        )
        if mail:
            queued.append(mail)
    return queued


def _queue_user_replied(desk: Desk, ticket: models.Ticket, decision: Decision,
                        entry: models.Message) -> list[QueuedMail]:
    """Tell the assignee, else the group's agents, else the admins, of a user's reply.

    The admins stand in for a group without agents, such as a vendor's mailbox group,
    and for a group removed from the configuration, as they do for its new-ticket and
    SLA mail, so that no reply goes unseen.
    NOTE: a ticket without a group notifies no one, as its new-ticket mail does.
    """
    message = decision.message
    sender = message.from_address
    readers: list[tuple[Recipient, str | None, dict[str, Any]]] = []
    for agent in _agent_recipients(ticket, exclude=None):
        readers.append((Recipient(agents.primary_address(agent), agent.name),
                        agent.language or desk.config.language,
                        _agent_context(desk, ticket, agent)))
    if not readers and ticket.group:
        removed = not any(group.name == ticket.group for group in desk.config.groups)
        logger.warning((_(
            "ticket {ticket}: group {group} is no longer in the configuration, so the admins "
            "get the notice of the reply {message_id}") if removed else _(
            "ticket {ticket}: it has no assignee and group {group} has no agents, "
            "so the admins get the notice of the reply {message_id}")).format(
            ticket=ticket.id, group=ticket.group, message_id=message.message_id or "-"))
        readers = [(Recipient(address), None, {"ticket": ticket_context(desk, ticket)})
                   for address in desk.config.desk.admin_addresses]

    if not readers:
        return []

    dispatched = _is_dispatched_mailbox(ticket, decision.sender)
    # NOTE: each reader gets a mail of their own, and the outbox stores each mail whole,
    # so the files are stored once per reader, up to the limit each.
    files = notice_files(desk, ticket.id, message, entry.id)
    queued = []
    for recipient, language, context in readers:
        context["author"] = {"name": sender.name if sender else "",
                             "address": decision.sender, "dispatched": dispatched}
        context["reply"] = {"text": message.reply_text or message.text,
                            "rating": decision.rating, "reopened": decision.reopened}
        context["status_label"] = label(ticket.status, language or desk.config.language)
        context["files"] = files.context
        mail = queue_mail(
            desk, template="user_replied", language=language,
            context=context, to=[recipient],
            ticket=ticket, in_reply_to=message.message_id,
            references=[*message.references, *([message.message_id] if message.message_id
                                               else [])],
            automatic=True, kind="user_replied", attachments=files.attachments,
        )
        if mail:
            queued.append(mail)
    return queued


def _is_dispatched_mailbox(ticket: models.Ticket, address: str) -> bool:
    """Tell whether ``address`` is a team or vendor mailbox the ticket was dispatched to."""
    from maildesk.escalation import DISPATCH_ROLE

    return (models.Participant.select()
            .join(models.Contact)
            .where(models.Participant.ticket == ticket,
                   models.Participant.role == DISPATCH_ROLE,
                   models.Contact.address == address.lower())
            .exists())


def _to_agent(plan: AgentPlan, decision: Decision) -> dict[str, Any]:
    message = decision.message
    references = [*message.references, *([message.message_id] if message.message_id else [])]
    return dict(to=[Recipient(plan.address, plan.name)], in_reply_to=message.message_id,
                references=references, automatic=True)


def _queue_confirmation(desk: Desk, ticket: models.Ticket, decision: Decision,
                        plan: AgentPlan) -> QueuedMail | None:
    language = plan.language
    changes = _change_lines(plan, language)
    kept_as_note = plan.kind == "internal_note" and bool(plan.body)
    context = {"ticket": ticket_context(desk, ticket),
               "agent": {"name": plan.name, "login": plan.login},
               "changes": changes,
               "commands": [command.line for command in plan.block.actions],
               "note_reason": plan.note_reason if kept_as_note else None,
               "merge": None}
    return queue_mail(desk, template="command_confirmation", language=language,
                      context=context, ticket=ticket, kind="command_confirmation",
                      **_to_agent(plan, decision))


def _change_lines(plan: AgentPlan, language: str) -> list[dict[str, str]]:
    """Return the plan's changes as mail shows them: field, old and new value, translated.

    An assignee reads as the agent's name with the login, which the commands use.
    """
    def value(name: str, raw: Any) -> str:
        if name == "assignee" and raw:
            agent = agents.resolve_assignee(raw)
            if agent is not None and agent.name:
                return f"{agent.name} ({raw})"
        return label(raw, language, name)

    return [{"field": field_label(name, language), "old": value(name, old),
             "new": value(name, new)} for name, old, new in plan.plan.changes]


def _text_destination(plan: AgentPlan) -> str | None:
    """Return where a refused mail's text would have gone: "note", "requester" or None."""
    if not plan.body:
        return None
    return "note" if plan.note_reason else "requester"


def _closed_ticket_context(desk: Desk, ticket: models.Ticket,
                           plan: AgentPlan) -> dict[str, Any] | None:
    """Return the values of an error about a status command on a closed ticket, else None.

    ``follow_up`` is the ticket where the work goes on: the newest ticket that a reply of
    the requester opened as a continuation, followed along its own continuations while
    those are closed too.
    """
    if not any(problem.message == CLOSED_TICKET_PROBLEM for problem in plan.plan.problems):
        return None
    follow_up = None
    current = ticket
    while True:
        newer = (models.Ticket.select()
                 .where(models.Ticket.linked_ticket == current.id,
                        models.Ticket.id > current.id)
                 .order_by(models.Ticket.id.desc()).first())
        if newer is None:
            break
        follow_up = current = newer
        if newer.status != "closed":
            break
    if follow_up is None:
        return {"follow_up": None}
    return {"follow_up": {"number": follow_up.id, "tag": desk.tag(follow_up.id)}}


def _queue_command_error(desk: Desk, ticket: models.Ticket, decision: Decision,
                         plan: AgentPlan) -> QueuedMail | None:
    """Write to the agent's configured address, never to a From that may be forged."""
    language = plan.language
    problems = [{"line": problem.line, "message": problem.text(language),
                 "usage": problem.usage_text(language)} for problem in plan.plan.problems]
    context = {"ticket": ticket_context(desk, ticket),
               "agent": {"name": plan.name, "login": plan.login},
               "problems": problems,
               "authentication": (plan.verdict.summary if plan.refusal == "authentication"
                                  else None),
               "thread": _thread_context(desk, plan),
               "commands": [command.line for command in plan.block.actions],
               "text_destination": _text_destination(plan),
               "closed_ticket": _closed_ticket_context(desk, ticket, plan)}
    # A reply to this error is the corrected mail, so it keeps the refused mail's mode.
    # A mail that failed authentication may be forged, and the agent's reply to that
    # warning is meant for the desk, so it stays a note.
    relayed = plan.note_reason is None and plan.refusal != "authentication"
    reference_kind = RELAYED_ERROR_KIND if relayed else None
    return queue_mail(desk, template="command_error", language=language, context=context,
                      ticket=ticket, kind="command_error", reference_kind=reference_kind,
                      **_to_agent(plan, decision))


def _thread_context(desk: Desk, plan: AgentPlan) -> dict[str, Any] | None:
    """Return the tags the ``command_error`` mail names for an unconfirmed ticket, or None."""
    if plan.thread is None:
        return None
    tag = desk.config.desk.ticket_tag
    tagged = plan.thread.tagged
    return {"threaded": format_tag(tag, plan.thread.threaded.id),
            "tagged": format_tag(tag, tagged.id) if tagged is not None else None,
            # Under dkim the signature shows that it leaves the fields out.
            "unsigned_known": plan.verdict.policy == "dkim"}


# --------------------------------------------------------------------------- held mail

# The kind a held entry takes when an agent discards it or a later mail supersedes it.
# The entry stays on the ticket for the record, and nothing is sent for it.
DISCARDED = "discarded"


class NotHeldError(LookupError):
    """The entry exists but is no longer held: it was accepted, discarded or superseded."""

    def __init__(self, entry_id: int, kind: str) -> None:
        super().__init__(entry_id)
        self.entry_id = entry_id
        self.kind = kind


def _held_entry(entry_id: int) -> models.Message:
    """Return the held entry ``entry_id``.

    Raises LookupError when there is no such entry, NotHeldError when it is not held.
    """
    entry = models.Message.get_or_none(models.Message.id == entry_id)
    if entry is None:
        raise LookupError(entry_id)
    if entry.kind != "held":
        raise NotHeldError(entry_id, entry.kind)
    return entry


def _release(entry: models.Message, kind: str) -> bool:
    """Give a held entry its new kind; return False when another process released it first.

    The UPDATE names the held kind, so of two concurrent accepts or discards only one
    changes the row, on SQLite and PostgreSQL alike.
    """
    changed = models.Message.update(kind=kind).where(
        models.Message.id == entry.id, models.Message.kind == "held").execute()
    if changed:
        entry.kind = kind
    return bool(changed)


def _release_or_raise(entry: models.Message, kind: str) -> None:
    if not _release(entry, kind):
        current = models.Message.get_by_id(entry.id)
        raise NotHeldError(entry.id, current.kind)


def accept_held(entry_id: int, actor: str) -> models.Message:
    """Accept a held entry into the ticket's conversation.

    A stranger's mail becomes a customer entry and its sender a participant. A refused
    agent mail becomes an internal note, and its commands are not run.

    Raises LookupError when there is no entry with that id, NotHeldError when it is
    not held.
    """
    from maildesk.parse import Address
    from maildesk.tickets import record_event, upsert_contact

    with models.database_proxy.atomic():
        entry = _held_entry(entry_id)
        if agents.agent_by_address(entry.author) is not None:
            kind = "internal_note"
        else:
            kind = "customer"
            contact = upsert_contact(Address(entry.author_name, entry.author))
            if contact.id != entry.ticket.requester_id:
                models.Participant.get_or_create(ticket=entry.ticket, contact=contact)
        _release_or_raise(entry, kind)
        record_event(entry.ticket, actor, "held_accepted", {"entry": entry.id,
                                                            "kind": entry.kind})
    logger.info(_("ticket {ticket}: held message {entry} accepted by {agent} as {kind}").format(
        ticket=entry.ticket_id, entry=entry.id, agent=actor, kind=message_kind_label(entry.kind)))
    return entry


def discard_held(entry_id: int, actor: str, reason: str | None = None) -> models.Message:
    """Take a held entry off the list of held mail without adding it to the conversation.

    Nothing is sent, because the sender of a held mail was never notified that it was
    held. The entry stays on the ticket as ``discarded``, and the ticket's history
    records who discarded it and why.

    Raises LookupError when there is no entry with that id, NotHeldError when it is
    not held.
    """
    from maildesk.tickets import record_event

    with models.database_proxy.atomic():
        entry = _held_entry(entry_id)
        _release_or_raise(entry, DISCARDED)
        detail: dict[str, Any] = {"entry": entry.id, "message_id": entry.message_id}
        if reason:
            detail["reason"] = reason
        record_event(entry.ticket, actor, "held_discarded", detail)
    logger.info(_("ticket {ticket}: held message {entry} ({message_id}) discarded by "
                  "{agent}").format(ticket=entry.ticket_id, entry=entry.id,
                                    message_id=entry.message_id or "-", agent=actor))
    return entry


def supersede_held(ticket: models.Ticket, login: str, entry: models.Message) -> None:
    """Discard an agent's earlier held mail on ``ticket`` now that ``entry`` was accepted.

    Mail held for invalid commands, or because its subject tag did not name its ticket,
    is superseded. It passed authentication, so it is the agent's own, and its
    ``command_error`` mail requests a corrected resend. Mail held because it failed
    authentication may be forged, so a genuine mail of the agent proves nothing about
    it, unless it came from the same address under the Message-ID of ``entry``. Then it
    is a copy of ``entry`` that a list or a forwarder changed, or a forgery made to take
    its place, and ``entry`` settles it either way. A stranger is not notified that
    their mail was held, so their next mail is no corrected copy. Other held mail stays
    held until an agent accepts or discards it. Runs inside the transaction of the
    accepted mail.
    """
    from maildesk.tickets import record_event

    # Most tickets have no held mail, so one indexed look-up settles the usual case.
    if not statements.exists(models.Message, ticket=ticket.id, kind="held"):
        return
    # NOTE: a copy that another process handles at the same time is not seen here, so it
    # may stay held until an agent discards it.
    held = list(models.Message.select(models.Message.id, models.Message.message_id,
                                      models.Message.author)
                .where(models.Message.ticket == ticket, models.Message.kind == "held",
                       models.Message.id < entry.id)
                .order_by(models.Message.id))
    invalid = _held_for_invalid_commands(ticket, login, held)

    for earlier in held:
        copy = (entry.message_id is not None and earlier.message_id == entry.message_id
                and earlier.author == entry.author)
        if copy:
            reason = Reason(N_("the agent's authenticated mail under the same Message-ID "
                               "was accepted: {message_id}"), message_id=entry.message_id)
        elif earlier.id in invalid:
            reason = Reason(N_("a later mail of the same agent was accepted: {message_id}"),
                            message_id=entry.message_id or "-")
        else:
            continue
        if not _release(earlier, DISCARDED):
            continue
        record_event(ticket, login, "held_superseded", {
            "entry": earlier.id, "message_id": earlier.message_id, "by_entry": entry.id,
            "by_message_id": entry.message_id, "reason": reason})
        logger.info(_("ticket {ticket}: held message {entry} ({message_id}) of {agent} "
                      "superseded by {new_message_id}").format(
            ticket=ticket.id, entry=earlier.id, message_id=earlier.message_id or "-",
            agent=login, new_message_id=entry.message_id or "-"))


def _held_for_invalid_commands(ticket: models.Ticket, login: str,
                               held: list[models.Message]) -> set[int]:
    """Return the ids among ``held`` that were held for ``login``'s invalid commands.

    Mail held because the subject tag did not name its ticket counts too. The
    ``command_invalid`` or ``thread_unconfirmed`` event names the entry, or for events
    written before it did, the entry's Message-ID.
    """
    if not held:
        return set()
    by_message_id = {row.message_id: row.id for row in held if row.message_id}
    held_ids = {row.id for row in held}
    events = (models.Event.select(models.Event.detail)
              .where(models.Event.ticket == ticket,
                     models.Event.action.in_(_SUPERSEDED_ACTIONS),
                     models.Event.actor == login))
    found: set[int] = set()
    for event in events:
        detail = json.loads(event.detail) if event.detail else {}
        if not isinstance(detail, dict):
            continue
        entry_id = detail.get("entry")
        if entry_id is None and isinstance(detail.get("message_id"), str):
            entry_id = by_message_id.get(detail["message_id"])
        if entry_id in held_ids:
            found.add(entry_id)
    return found


def sample_values() -> dict[str, Any]:
    """Sample template values for the conversation templates (``templates check``)."""
    return {
        "agent": {"name": "Marek Zieliński", "login": "marek.zielinski"},
        "recipient": {"name": "Ewa Nowak", "login": "ewa.nowak"},
        "reply": {"text": "Dzień dobry,\n\nwymieniliśmy toner, proszę spróbować ponownie.",
                  "new_status": "resolved", "rating": None, "reopened": False},
        "note": {"text": "Toner zamówiony, dostawa w czwartek.",
                 "author_name": "Marek Zieliński"},
        "author": {"name": "Zofia Wiśniewska", "address": "zofia@example.org",
                   "dispatched": False},
        "changes": [{"field": "status", "old": "nowe", "new": "rozwiązane"},
                    {"field": "priorytet", "old": "P3 (średni)", "new": "P2 (wysoki)"}],
        "commands": ["#status rozwiązane", "#priorytet 2"],
        "problems": [{"line": "#priorytet 7",
                      "message": "„7” nie jest priorytetem: użyj 1 (krytyczny) do 4 (niski)",
                      "usage": "#priorytet 1–4"}],
        "authentication": None,
        "note_reason": None,
        "text_destination": "requester",
        "closed_ticket": None,
        "thread": None,
        "status_label": "w realizacji",
        "activity": {"author_name": "Marek Zieliński",
                     "text": "Dzień dobry,\n\nwymieniliśmy toner, proszę spróbować ponownie.",
                     "changes": [{"field": "osoba przypisana", "old": "ewa.nowak",
                                  "new": "marek.zielinski"}],
                     "unassigned": True},
    }


__all__ = [
    "AGENT_ONLY_KINDS",
    "RELAYED_ERROR_KIND",
    "AgentPlan",
    "CustomerPlan",
    "DISCARDED",
    "HeldPlan",
    "NotHeldError",
    "ManagerNote",
    "accept_held",
    "acted_on_recipients",
    "carry_out",
    "cc_become_participants",
    "conversation_references",
    "discard_held",
    "managed_groups",
    "note_address",
    "plan_agent_mail",
    "review",
    "sample_values",
    "supersede_held",
]
