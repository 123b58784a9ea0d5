"""Admin commands: look at tickets, the outbox and the quarantine, check templates."""

from __future__ import annotations

import difflib
import json
import logging
import sys
from typing import TYPE_CHECKING, Any

import click

from maildesk.clicktext import COUNT, INTEGER, PathType
from maildesk.i18n import (
    LANGUAGE_NAMES,
    LANGUAGES,
    N_,
    _,
    current_language,
    format_duration,
    gettext_for,
    ngettext,
    translated_label,
)
from maildesk.reasons import DETAIL_KEY, message_kind_label, outcome_text, reason_text
from maildesk.terminal import terminal_safe

if TYPE_CHECKING:
    from maildesk.routinghistory import StoredRouting
    from maildesk.slastanding import TargetStanding

STATUSES = ("new", "assigned", "in_progress", "pending", "resolved", "closed")

logger = logging.getLogger(__name__)


def _status_label(status: str) -> str:
    from maildesk.commands import LABELS

    return translated_label(LABELS, status)


def _priority_label(priority: Any) -> str:
    """Return ``P3 (medium)`` in the admin's language, or ``P<n>`` outside 1 to 4."""
    from maildesk.commands import PRIORITY_LABELS, label

    if str(priority) in {str(key) for key in PRIORITY_LABELS}:
        return label(priority, current_language(), "priority")
    return f"P{priority}"


def _action_label(action: str) -> str:
    """Name an audit event in the admin's language; an unknown code is shown as it is."""
    labels = {
        "created": _("ticket created"),
        "tickets_purged": _("closed tickets deleted"),
        "message_added": _("message added"),
        "held": _("message held for an agent to accept"),
        "held_accepted": _("held message accepted"),
        "held_discarded": _("held message discarded"),
        "held_superseded": _("held message superseded"),
        "internal_note_added": _("internal note added"),
        "relay_skipped": _("reply not relayed to addresses the agent wrote to"),
        "first_response": _("first response"),
        "command_like_text_ignored": _("text that looks like a command ignored"),
        "command_rejected": _("commands rejected: the sender is not authenticated"),
        "command_invalid": _("commands rejected as invalid"),
        "thread_unconfirmed": _("message held: the subject tag does not name the ticket"),
        "status_changed": _("status changed"),
        "reopened": _("ticket reopened"),
        "field_changed": _("field changed"),
        "assignee_changed": _("assignee changed"),
        "priority_set": _("priority set"),
        "priority_changed": _("priority changed"),
        "classified": _("type or category changed"),
        "group_changed": _("group changed"),
        "dispatched": _("dispatched to a group"),
        "escalated": _("escalated"),
        "sla_start": _("SLA clock started"),
        "sla_pause": _("SLA clock paused"),
        "sla_resume": _("SLA clock resumed"),
        "sla_respond": _("SLA first response recorded"),
        "sla_resolve": _("SLA clock stopped at resolution"),
        "sla_reopen": _("SLA clock restarted after reopening"),
        "sla_replan": _("SLA targets recalculated"),
        "sla_warning": _("SLA warning"),
        "sla_breach": _("SLA breach"),
        "pending_reminder_sent": _("reminder sent to the user"),
        "satisfaction_rated": _("satisfaction survey answered"),
        "reply_without_action": _("reply that needs no action"),
        "rules_applied": _("routing rules applied"),
        "rule_action_failed": _("rule action failed"),
        "mail_loop_suspected": _("mail loop suspected"),
        "mail_loop_alert": _("mail loop alert sent"),
        "follow_up_ticket_opened": _("follow-up ticket opened"),
        "merged_into": _("merged into another ticket"),
        "merged_from": _("another ticket merged into this one"),
        "merge_followed": _("mail for a merged ticket joined this one"),
        "thread_link_rejected": _("mail not linked to this ticket"),
        "participants_limited": _("only some addresses became participants"),
        "repeated_text_ignored": _("a repeated text treated as an automatic reply"),
        "bounce_recorded": _("bounce recorded"),
        "bounce_cleared": _("bounce mark cleared"),
        "automatic_mail_limited": _("automatic mail held back by the hourly limit"),
        "mail_not_sent": _("mail not sent: its template failed"),
        "quarantined": _("quarantined"),
        "ignored": _("ignored"),
    }
    return labels.get(action, action)


_OUTBOX_STATES = {
    "pending": N_("waiting to be sent"), "sending": N_("being sent"), "sent": N_("sent"),
    "failed": N_("failed"), "cancelled": N_("cancelled"),
}


def _outbox_state_label(state: str) -> str:
    return translated_label(_OUTBOX_STATES, state)


def _code_named(value: str, labels: dict[str, str]) -> str | None:
    """Return the code that ``value`` names, by the code itself or its label in any language."""
    from maildesk.commands import fold

    folded = fold(value)
    for code, message in labels.items():
        names = {code, *(gettext_for(language).gettext(message) for language in LANGUAGES)}
        if folded in {fold(name) for name in names}:
            return code
    return None


def _status_code(context: click.Context, parameter: click.Parameter,
                 value: str | None) -> str | None:
    """Read a ticket status given as its code or its name in Polish or English."""
    from maildesk.commands import LABELS, REOPEN, STATUS_VALUES, fold

    if value is None:
        return None

    # The command words ("oczekuje") and the labels the list prints ("waiting for the
    # user") are both accepted.
    code = STATUS_VALUES.get(fold(value)) or _code_named(value, LABELS)
    if code is None or code == REOPEN:
        choices = ", ".join(_status_label(status) for status in STATUSES)
        raise click.BadParameter(_("{value!r} is not a ticket status; use one of: {choices}")
                                 .format(value=value, choices=choices))
    return code


def _outbox_state_code(context: click.Context, parameter: click.Parameter,
                       value: str | None) -> str | None:
    """Read an outbox state given as its code or its name in Polish or English."""
    if value is None:
        return None
    code = _code_named(value, _OUTBOX_STATES)
    if code is not None:
        return code
    choices = ", ".join(_outbox_state_label(state) for state in _OUTBOX_STATES)
    raise click.BadParameter(_("{value!r} is not a state of outgoing mail; use one of: "
                               "{choices}").format(value=value, choices=choices))


# The kinds of outgoing mail: the template or event that queued it.
_OUTBOX_KINDS = {
    "ack": N_("acknowledgement"),
    "new_ticket": N_("new ticket notice"),
    "rule_notify": N_("notice from a rule"),
    "reply": N_("agent's reply"),
    "note": N_("internal note"),
    "user_replied": N_("user replied"),
    "command_confirmation": N_("commands confirmed"),
    "command_error": N_("commands rejected"),
    "ticket_merged": N_("ticket merged"),
    "colleague_activity": N_("another agent on the ticket"),
    "status_assigned": N_("status: assigned"),
    "status_pending": N_("status: waiting for the user"),
    "status_resolved": N_("status: resolved"),
    "status_closed": N_("status: closed"),
    "status_reopened": N_("status: reopened"),
    "pending_reminder": N_("reminder to the user"),
    "dispatch": N_("forwarded to a group"),
    "escalation_warning": N_("SLA warning"),
    "escalation_breach": N_("SLA breach"),
    "escalation_manager": N_("escalation to the manager"),
    "rejection_too_large": N_("rejected: too large"),
    "rejection_blocked": N_("rejected: sender blocked"),
    "quarantine": N_("quarantine notice"),
    "rules_error": N_("rules error"),
    "templates_error": N_("templates error"),
    "orphaned_tickets": N_("tickets of removed groups or agents"),
    "loop_alert": N_("mail loop alert"),
    "daily_summary": N_("daily summary"),
}


def _outbox_kind_label(kind: str) -> str:
    return translated_label(_OUTBOX_KINDS, kind)


def _value_label(field: str, value: Any) -> str:
    """Show one field value the way the admin reads it: labels, not codes."""
    from maildesk.commands import label

    if value is None or value == "":
        return "-"
    if field == "priority":
        return _priority_label(value)
    if field == "type":
        from maildesk.i18n import gettext_for

        english = {"service_request": "service request"}.get(value, value)
        return gettext_for(current_language()).pgettext("type", english)
    return label(value, current_language(), field)


def _field_name(field: str) -> str:
    from maildesk.commands import field_label

    names = {"type": _("type"), "category": _("category")}
    return names.get(field) or field_label(field, current_language())


def _change_text(action: str, detail: dict[str, Any], before: Any, after: Any) -> str:
    """Describe what an event changed as ``field: before -> after`` parts."""
    single = {"status_changed": "status", "reopened": "status", "assignee_changed": "assignee",
              "group_changed": "group", "priority_set": "priority"}
    if isinstance(before, dict) or isinstance(after, dict):
        before, after = before or {}, after or {}
        fields = list(dict.fromkeys([*before, *after]))
        changes = [(field, before.get(field), after.get(field)) for field in fields]
    elif action in single or action == "field_changed":
        field = single.get(action) or str(detail.get("field", ""))
        if before is None and after is None:
            return ""
        changes = [(field, before, after)]
    else:
        return ""

    parts = []
    for field, old, new in changes:
        # The label of a one-field event ("priority set") names the field already.
        name = "" if action in single else f"{_field_name(field)}: "
        if old == new or (old is None and field == "status" and action == "reopened"):
            parts.append(f"{name}{_value_label(field, new)}")
        else:
            parts.append(f"{name}{_value_label(field, old)} → {_value_label(field, new)}")
    return ", ".join(parts)


# Events that settle a held entry; their line names the entry, as 'agents held' lists it.
_HELD_ACTIONS = ("held_accepted", "held_discarded", "held_superseded")


def _event_line(desk: Any, event: Any, logins: dict[str, str] | None = None) -> str:
    detail = json.loads(event.detail) if event.detail else {}
    detail = detail if isinstance(detail, dict) else {}
    before = json.loads(event.before) if event.before else None
    after = json.loads(event.after) if event.after else None

    actor = (logins or {}).get(event.actor.lower(), event.actor)
    label = _action_label(event.action)
    if event.action == "escalated":
        # ITIL's two kinds: to the next tier's group, or up to the group's manager.
        kinds = {"functional": _("escalated to the next tier"),
                 "hierarchical": _("escalated to the group's manager")}
        label = kinds.get(str(detail.get("kind")), label)
    words = [desk.local_time(event.created_at), actor + ":", label]
    if event.action in ("message_added", "held") and detail.get("kind"):
        words.append(f"({message_kind_label(str(detail['kind']))})")
    change = _change_text(event.action, detail, before, after)
    if change:
        words.append("— " + change)
    if event.action == "follow_up_ticket_opened" and detail.get("follow_up"):
        words.append("— " + desk.tag(detail["follow_up"]))
    merged = {"merged_into": "target", "merged_from": "merged", "merge_followed": "merged"}
    if event.action in merged and detail.get(merged[event.action]):
        words.append("— " + desk.tag(detail[merged[event.action]]))
    if event.action in _HELD_ACTIONS and detail.get("entry"):
        words.append("— " + _("entry {entry}").format(entry=detail["entry"]))
    reason = _reason_text(event.action, detail)
    if reason:
        words.append(f"({reason})")
    return "  " + " ".join(words)


def _reason_text(action: str, detail: dict[str, Any]) -> str:
    """Return an event's reason for the admin, leaving out English codes the label covers."""
    reason = detail.get("reason")
    if not reason or not isinstance(reason, str):
        return ""
    if action in ("created", "command_like_text_ignored", "participants_limited",
                  "repeated_text_ignored"):
        return ""
    if action in ("command_invalid", "command_rejected"):
        # The label names the rejection and its cause, so the reason adds only the lines
        # or the authentication result.
        part = _reason_argument(detail, "lines" if action == "command_invalid" else "verdict")
        if part:
            return part
    codes = {"thanks": _("a short thanks")}
    return codes.get(reason) or reason_text(detail)


def _reason_argument(detail: dict[str, Any], name: str) -> str:
    """Return one field of a stored reason, translated if it is a reason itself."""
    stored = detail.get(DETAIL_KEY)
    arguments = stored.get("args") if isinstance(stored, dict) else None
    if not isinstance(arguments, dict) or name not in arguments:
        return ""
    value = arguments[name]
    if isinstance(value, dict):
        return reason_text({"reason": "", DETAIL_KEY: value})
    return str(value)


@click.group(help=_("List, show and delete tickets."))
def tickets() -> None:
    """List, show and delete tickets."""


@tickets.command("list", help=_("List the newest tickets."))
@click.option("--status", callback=_status_code, metavar=_("STATUS"),
              help=_("Show only tickets with this status: new, assigned, in progress, "
                     "waiting for the user, resolved or closed."))
@click.option("--group", metavar=_("GROUP"), help=_("Show only tickets of this group."))
@click.option("--assignee", metavar=_("LOGIN"),
              help=_("Show only tickets assigned to this agent."))
@click.option("--unassigned", is_flag=True, help=_("Show only tickets without an assignee."))
@click.option("--limit", type=COUNT, default=50, show_default=True, metavar=_("COUNT"),
              help=_("Maximum number of tickets."))
@click.pass_obj
def tickets_list(app: Any, status: str | None, group: str | None, assignee: str | None,
                 unassigned: bool, limit: int) -> None:
    """List the newest tickets."""
    from maildesk import models

    app.open()
    query = models.Ticket.select().order_by(models.Ticket.id.desc()).limit(limit)
    if status:
        query = query.where(models.Ticket.status == status)
    if group:
        query = query.where(models.Ticket.group == _known_group(group))
    if assignee:
        query = query.where(models.Ticket.assignee == _known_agent(assignee))
    if unassigned:
        query = query.where(models.Ticket.assignee.is_null())
    rows = list(query)
    if not rows:
        click.echo(_("no tickets"))
        return

    markers = _sla_markers(rows, query)
    header = (_("ticket"), "SLA", _("status"), _("priority"), _("group"), _("assignee"),
              _("requester"), _("subject"))
    # The columns fit the longest header and label of the current language.
    status_width = max(len(header[2]), *(len(_status_label(status)) for status in STATUSES))
    priority_width = max(len(header[3]), *(len(_priority_label(level)) for level in (1, 2, 3, 4)))
    group_width = max(len(header[4]), *(len(ticket.group or "-") for ticket in rows))
    assignee_width = max(len(header[5]), *(len(ticket.assignee or "-") for ticket in rows))
    requester_width = max(len(header[6]),
                          *(len(terminal_safe(ticket.requester.address)) for ticket in rows))
    click.echo(f"{header[0]:>12} {header[1]} {header[2]:<{status_width}} "
               f"{header[3]:<{priority_width}} {header[4]:<{group_width}} "
               f"{header[5]:<{assignee_width}} {header[6]:<{requester_width}} {header[7]}")
    for ticket in rows:
        click.echo(f"{app.desk.tag(ticket.id):>12} {markers[ticket.id]:^3} "
                   f"{_status_label(ticket.status):<{status_width}} "
                   f"{_priority_label(ticket.priority):<{priority_width}} "
                   f"{ticket.group or '-':<{group_width}} "
                   f"{ticket.assignee or '-':<{assignee_width}} "
                   f"{terminal_safe(ticket.requester.address):<{requester_width}} "
                   f"{terminal_safe(ticket.subject)}")
    if any(markers.values()):
        click.echo(_("SLA: {overdue} overdue, the clock is running; {breached} breached "
                     "earlier, or overdue with the clock paused").format(
            overdue=_OVERDUE, breached=_BREACHED))
    click.echo(ngettext("{count} ticket", "{count} tickets", len(rows)).format(count=len(rows)))


# The marks of the SLA column of 'tickets list': a target overdue while its clock runs,
# and a breach with no such target (met late, clock paused, or due time moved since).
_OVERDUE = "!"
_BREACHED = "*"


def _sla_markers(rows: list[Any], query: Any) -> dict[int, str]:
    """Return the SLA marker of each listed ticket: ``_OVERDUE``, ``_BREACHED`` or empty."""
    from maildesk import models
    from maildesk.slastanding import recorded_breaches, standings

    # A subquery, where a list of numbers could pass the database's limit of parameters.
    breaches = recorded_breaches(query.select(models.Ticket.id))
    now = models.utcnow()
    markers = {}
    for ticket in rows:
        targets = standings(ticket, breaches.get(ticket.id, {}), now)
        if any(target.overdue for target in targets):
            markers[ticket.id] = _OVERDUE
        elif any(target.breached for target in targets):
            markers[ticket.id] = _BREACHED
        else:
            markers[ticket.id] = ""
    return markers


def _known_group(name: str) -> str:
    """Return the configured group called ``name`` (any case); raise a usage error if none."""
    from maildesk import models

    groups = [group.name for group in models.Group.select().order_by(models.Group.name)]
    for group in groups:
        if group.lower() == name.strip().lower():
            return group
    raise click.BadParameter(_("there is no group {name!r}; the groups are: {groups}")
                             .format(name=name, groups=", ".join(groups) or "-"),
                             param_hint="'--group'")


def _known_agent(login: str) -> str:
    """Return the login of the agent ``login`` names (login or address, any case)."""
    from maildesk import models
    from maildesk.agents import find_agent

    agent = find_agent(login)
    if agent is not None:
        return str(agent.login)
    # An agent removed from the configuration still owns the tickets assigned to them.
    removed = models.Agent.get_or_none(models.Agent.login == login.strip())
    if removed is not None:
        return str(removed.login)
    raise click.BadParameter(_("there is no agent {login!r}; see maildesk agents list")
                             .format(login=login), param_hint="'--assignee'")


@tickets.command("show", help=_("Show one ticket with its conversation, attachments and "
                                 "audit trail."))
@click.argument("number", type=INTEGER, metavar=_("NUMBER"))
@click.option("--routing", is_flag=True,
              help=_("Show only why the routing rules sent the ticket where they did, "
                     "from the trace stored when they ran, in the layout of 'maildesk "
                     "rules test'."))
@click.pass_obj
def tickets_show(app: Any, number: int, routing: bool) -> None:
    """Show one ticket with its conversation, attachments and audit trail."""
    from maildesk import models
    from maildesk.rules.explain import choice_label
    from maildesk.satisfaction import RATING_SCALE

    app.open()
    ticket = models.Ticket.get_or_none(models.Ticket.id == number)
    if ticket is None:
        raise click.ClickException(_("ticket {number} not found").format(number=number))
    if routing:
        _show_routing(app.desk, ticket)
        return

    requester = ticket.requester
    click.echo(f"{app.desk.tag(ticket.id)} {terminal_safe(ticket.subject)}")
    click.echo(_("Status: {status}   Priority: {priority}   Group: {group}   "
                 "Assignee: {assignee}").format(
        status=_status_label(ticket.status), priority=_priority_label(ticket.priority),
        group=ticket.group or "-", assignee=ticket.assignee or "-"))
    click.echo(_("Type: {type}   Category: {category}   Impact: {impact}   "
                 "Urgency: {urgency}").format(
        type=choice_label("type", ticket.type), category=terminal_safe(ticket.category or "-"),
        impact=choice_label("impact", ticket.impact),
        urgency=choice_label("urgency", ticket.urgency)))
    if ticket.tags.split():
        click.echo(_("Tags: {tags}").format(tags=terminal_safe(", ".join(ticket.tags.split()))))
    for line in _sla_lines(app.desk, ticket):
        click.echo(line)
    if ticket.satisfaction is not None:
        click.echo(_("Rating by the requester: {rating}/{best} ({time})").format(
            rating=ticket.satisfaction, best=max(RATING_SCALE),
            time=app.desk.local_time(ticket.satisfaction_at)))
    click.echo(_("Requester: {name} <{address}>").format(
        name=terminal_safe(requester.name), address=terminal_safe(requester.address)))
    participants, dispatched = _participant_lists(ticket)
    if participants:
        click.echo(_("Participants (they get the agents' replies): {participants}").format(
            participants=participants))
    if dispatched:
        click.echo(_("Dispatched to the mailbox (it does not get the agents' replies): "
                     "{mailboxes}").format(mailboxes=dispatched))
    if ticket.escalation_level:
        click.echo(_("Escalation level: {level}").format(level=ticket.escalation_level))
    if ticket.linked_ticket_id:
        click.echo(_("Follows up ticket {number}").format(number=ticket.linked_ticket_id))
    if ticket.merged_into_id:
        click.echo(_("Merged into ticket {number}; its messages are shown there").format(
            number=app.desk.tag(ticket.merged_into_id)))
    merged = [app.desk.tag(row.id) for row in models.Ticket.select(models.Ticket.id)
              .where(models.Ticket.merged_into == ticket.id).order_by(models.Ticket.id)]
    if merged:
        click.echo(_("Tickets merged into this one: {numbers}").format(
            numbers=", ".join(merged)))

    for entry in ticket.messages.order_by(models.Message.id):
        click.echo("")
        # Names, texts and file names come from the mail, so a terminal must not act on
        # them: a right-to-left override could make "Jan nimda" read "Jan admin".
        click.echo(terminal_safe(f"--- {app.desk.local_time(entry.created_at)} "
                                  f"{message_kind_label(entry.kind)}: "
                                  f"{entry.author_name} <{entry.author}> "
                                  f"{entry.message_id or ''}"))
        click.echo(terminal_safe(entry.reply_text or entry.text, keep_line_breaks=True))
        for attachment in entry.attachments:
            click.echo(_("Attachment {id}: {name} ({type}, {size} B, sha256 {sha})").format(
                id=attachment.id, name=terminal_safe(attachment.filename),
                type=terminal_safe(attachment.content_type),
                size=attachment.size, sha=attachment.sha256[:12]))

    click.echo("")
    click.echo(_("Audit trail:"))
    logins = _agent_logins()
    for event in ticket.events.order_by(models.Event.id):
        click.echo(terminal_safe(_event_line(app.desk, event, logins), keep_line_breaks=True))


def _participant_lists(ticket: Any) -> tuple[str, str]:
    """Return the people added by Cc, and the mailboxes the ticket was dispatched to.

    Each is "Name <address>", comma-separated and escaped. A team or vendor mailbox gets
    the dispatch mail but never the agents' replies to the requester.
    """
    from maildesk import models
    from maildesk.escalation import DISPATCH_ROLE

    people: list[str] = []
    mailboxes: list[str] = []
    query = (models.Participant.select(models.Participant, models.Contact)
             .join(models.Contact).where(models.Participant.ticket == ticket)
             .order_by(models.Participant.id))
    for participant in query:
        contact = participant.contact
        entry = f"{contact.name} <{contact.address}>" if contact.name else contact.address
        if participant.role == DISPATCH_ROLE:
            mailboxes.append(entry)
        else:
            people.append(entry)
    return terminal_safe(", ".join(people)), terminal_safe(", ".join(mailboxes))


def _sla_lines(desk: Any, ticket: Any) -> list[str]:
    """Return a line for each SLA target (due or met), its breach, and a paused clock."""
    from maildesk import models
    from maildesk.sla import SlaTarget
    from maildesk.slastanding import recorded_breaches, standings

    breaches = recorded_breaches([ticket.id]).get(ticket.id, {})
    by_target = {standing.target: standing
                 for standing in standings(ticket, breaches, models.utcnow())}

    lines = []
    if ticket.first_responded_at is not None:
        lines.append(_("First response: {time}").format(
            time=desk.local_time(ticket.first_responded_at)))
    elif ticket.first_response_due is not None:
        lines.append(_("First response due: {time}").format(
            time=desk.local_time(ticket.first_response_due)))
    lines.extend(_breach_lines(desk, by_target[SlaTarget.FIRST_RESPONSE]))
    if ticket.resolved_at is not None:
        lines.append(_("Resolved: {time}").format(time=desk.local_time(ticket.resolved_at)))
    elif ticket.resolution_due is not None:
        lines.append(_("Resolution due: {time}").format(
            time=desk.local_time(ticket.resolution_due)))
    lines.extend(_breach_lines(desk, by_target[SlaTarget.RESOLUTION]))
    if ticket.sla_paused_at is not None:
        lines.append(_("SLA clock paused since {time}").format(
            time=desk.local_time(ticket.sla_paused_at)))
    return lines


def _breach_lines(desk: Any, standing: TargetStanding) -> list[str]:
    """Return the line that names a target's SLA breach and how late it is, if it has one."""
    from maildesk.escalation import TARGET_NAMES

    if not standing.breached:
        return []
    target = _(TARGET_NAMES[standing.target])
    if standing.late_by is None:
        # The scheduler recorded a breach, and a new priority or group moved the due time
        # out since.
        return [_("SLA breach ({target}): due {due}; the due time has changed since").format(
            target=target, due=desk.local_time(standing.recorded_due))]

    values = {"target": target, "due": desk.local_time(standing.due),
              "duration": format_duration(standing.late_by)}
    if standing.counting:
        return [_("SLA breach ({target}): due {due}, overdue by {duration} so far")
                .format(**values)]
    if standing.met_at is not None:
        return [_("SLA breach ({target}): due {due}, met {duration} late").format(**values)]
    return [_("SLA breach ({target}): due {due}, overdue by {duration} when the SLA clock "
              "was paused").format(**values)]


def _show_routing(desk: Any, ticket: Any) -> None:
    """Print the ticket's stored routings with the explanation ``rules test`` prints.

    The creation routing comes first, then each one that follow-up rules applied. A
    stored routing that cannot be read is reported on stderr in its place, and the
    command then exits with 1.
    """
    from maildesk.routinghistory import creation_routing, follow_up_routings

    creation = creation_routing(ticket)
    follow_ups = follow_up_routings(ticket)
    click.echo(f"{desk.tag(ticket.id)} {terminal_safe(ticket.subject)}")
    if any(stored.routing is not None for stored in (creation, *follow_ups)):
        click.echo(_("Rule files and line numbers are shown as they were when the rules "
                     "ran; the files may have changed since."))

    all_shown = True
    if creation.routing is None and creation.error is None:
        click.echo("")
        click.echo(_("No routing was stored when this ticket was created. 'maildesk rules "
                     "test MAIL_FILE' explains how the current rules would route a mail."))
    else:
        heading = _("Routing when the ticket was created ({time}):").format(
            time=desk.local_time(creation.recorded_at))
        all_shown = _print_stored_routing(desk, ticket, heading, creation)

    for stored in follow_ups:
        heading = _("Routing of the follow-up mail {message_id} ({time}):").format(
            message_id=terminal_safe(stored.message_id or _("(no Message-ID)")),
            time=desk.local_time(stored.recorded_at))
        if not _print_stored_routing(desk, ticket, heading, stored):
            all_shown = False
    if not all_shown:
        sys.exit(1)


def _print_stored_routing(desk: Any, ticket: Any, heading: str,
                          stored: StoredRouting) -> bool:
    """Print one stored routing under ``heading``, or report why it cannot be read.

    Return False when it cannot be read.
    """
    from maildesk.rules.explain import format_explanation

    click.echo("")
    click.echo(heading)
    if stored.routing is None:
        logger.debug("ticket %s, event %s: stored routing not shown: %s", ticket.id,
                     stored.event_id, stored.error)
        click.echo(_("cannot show the routing stored at {time}: {error}").format(
            time=desk.local_time(stored.recorded_at), error=stored.error), err=True)
        return False

    click.echo("")
    # NOTE: Routing.from_json checks the structure, not each value's type, so a
    # hand-edited routing with numbers as tags can still raise TypeError here.
    # The explanation quotes the tested values of the mail: its subject, text, names.
    click.echo(terminal_safe(format_explanation(stored.routing, current_language()),
                             keep_line_breaks=True))
    return True


def _agent_logins() -> dict[str, str]:
    """Map each agent address to its login, so the history names an agent one way."""
    from maildesk import models

    return {address: agent.login for agent in models.Agent.select()
            for address in agent.addresses.split()}


@click.group(help=_("Show and correct the data maildesk stores about requesters and the "
                    "addresses it writes to."))
def contacts() -> None:
    """Show and correct the data maildesk stores about requesters and the addresses it writes to."""


@contacts.command("language", help=_(
    "Show or set the language of the mail to one requester: pl, en, or none to let the "
    "next new ticket learn it from the mail. Setting it also switches the requester's "
    "tickets that are not closed."))
@click.argument("address", metavar=_("ADDRESS"))
@click.argument("language", required=False, type=click.Choice(("pl", "en", "none")),
                metavar="[pl|en|none]")
@click.pass_obj
def contacts_language(app: Any, address: str, language: str | None) -> None:
    """Show or set a requester's language, which comes before the rules' and the guess."""
    from maildesk import models

    app.open()
    normalized = address.strip().lower()
    contact = models.Contact.get_or_none(models.Contact.address == normalized)
    if contact is None:
        raise click.ClickException(_("no requester with the address {address}").format(
            address=normalized))

    if language is None:
        stored = contact.language if contact.language in LANGUAGE_NAMES else None
        click.echo(_("{address}: {language}").format(
            address=normalized,
            language=translated_label(LANGUAGE_NAMES, stored) if stored else
            _("not set; the next new ticket learns it from the mail")))
        return

    new = None if language == "none" else language
    with models.database_proxy.atomic():
        models.Contact.update(language=new).where(models.Contact.id == contact.id).execute()
        switched = 0
        if new is not None:
            switched = models.Ticket.update(language=new).where(
                models.Ticket.requester == contact.id, models.Ticket.status != "closed",
                models.Ticket.language != new).execute()
    if new is None:
        logger.info(_("language of {address} cleared by an admin").format(address=normalized))
    else:
        logger.info(_("language of {address} set to {language} by an admin").format(
            address=normalized, language=new))
    if new is None:
        click.echo(_("the language of {address} is cleared; the next new ticket learns it "
                     "from the mail").format(address=normalized))
        return
    click.echo(ngettext(
        "mail to {address} is now in {language}; {count} open ticket switched",
        "mail to {address} is now in {language}; {count} open tickets switched",
        switched).format(address=normalized, count=switched,
                         language=translated_label(LANGUAGE_NAMES, new)))


@contacts.command("bounced", help=_(
    "List the addresses that maildesk does not write to because mail to them bounced, "
    "with the time and the reason."))
@click.pass_obj
def contacts_bounced(app: Any) -> None:
    """List the addresses marked as bounced, newest mark first."""
    from maildesk import models

    app.open()
    rows = list(models.Contact.select().where(models.Contact.bounced_at.is_null(False))
                .order_by(models.Contact.bounced_at.desc(), models.Contact.address))
    if not rows:
        click.echo(_("no address is marked as bounced"))
        return

    # The address and the reason come from bounces, which anyone can write.
    addresses = [terminal_safe(row.address) for row in rows]
    header = (_("address"), _("bounced at"), _("reason"))
    address_width = max(len(header[0]), *(len(address) for address in addresses))
    time_width = max(len(header[1]), len(app.desk.local_time(rows[0].bounced_at)))
    click.echo(f"{header[0]:<{address_width}} {header[1]:<{time_width}} {header[2]}")
    for row, address in zip(rows, addresses, strict=True):
        reason = terminal_safe(row.bounce_reason or "-")
        click.echo(f"{address:<{address_width}} "
                   f"{app.desk.local_time(row.bounced_at):<{time_width}} {reason}")
    click.echo(ngettext("{count} address marked as bounced", "{count} addresses marked as "
                        "bounced", len(rows)).format(count=len(rows)))


@contacts.command("clear-bounce", help=_(
    "Clear the bounce mark of an address, so maildesk writes to it again. A new mail from "
    "the address clears the mark too."))
@click.argument("address", metavar=_("ADDRESS"))
@click.pass_obj
def contacts_clear_bounce(app: Any, address: str) -> None:
    """Clear the bounce mark of an address, with an event and a log line."""
    from maildesk import bounces, models

    app.open()
    normalized = address.strip().lower()
    with models.database_proxy.atomic():
        contact = models.Contact.get_or_none(models.Contact.address == normalized)
        cleared = contact is not None and bounces.clear_mark(contact, actor="admin")
    if not cleared:
        raise click.ClickException(_(
            "{address} is not marked as bounced; 'maildesk contacts bounced' lists the "
            "addresses that are").format(address=normalized))
    click.echo(_("{address} is no longer marked as bounced; maildesk writes to it again")
               .format(address=normalized))


@click.group(help=_("Inspect and retry outgoing mail."))
def outbox() -> None:
    """Inspect and retry outgoing mail."""


@outbox.command("list", help=_("List outgoing mail, newest first."))
@click.option("--state", callback=_outbox_state_code, metavar=_("STATE"),
              help=_("Show only mail in this state: waiting to be sent, being sent, sent, "
                     "failed or cancelled."))
@click.option("--limit", type=COUNT, default=50, show_default=True, metavar=_("COUNT"),
              help=_("Maximum number of mails."))
@click.pass_obj
def outbox_list(app: Any, state: str | None, limit: int) -> None:
    """List outgoing mail, newest first."""
    from maildesk import models

    app.open()
    query = models.Outbox.select().order_by(models.Outbox.id.desc()).limit(limit)
    if state:
        query = query.where(models.Outbox.state == state)
    rows = list(query)
    if not rows:
        click.echo(_("no outgoing mail"))
        return

    header = (_("id"), _("state"), _("attempts"), _("kind"), _("recipients"), _("subject"))
    recipients_of = {row.id: terminal_safe(row.recipients.strip()) for row in rows}
    recipients_width = max(len(header[4]), *(len(text) for text in recipients_of.values()))
    attempts_width = max(len(header[2]), 6)
    click.echo(f"{header[0]:>6} {header[1]:<20} {header[2]:>{attempts_width}} "
               f"{header[3]:<28} {header[4]:<{recipients_width}} {header[5]}")
    for row in rows:
        click.echo(f"{row.id:>6} {_outbox_state_label(row.state):<20} "
                   f"{row.attempts:>{attempts_width}} "
                   f"{_outbox_kind_label(row.kind):<28} "
                   f"{recipients_of[row.id]:<{recipients_width}} "
                   f"{terminal_safe(row.subject)}")
        if row.deferred and row.state != "sent":
            click.echo("       " + _("still owed to: {recipients}").format(
                recipients=terminal_safe(row.deferred)))
        if row.last_error and row.state != "sent":
            # A server's reply and the desk's notes quote addresses from mail.
            click.echo("       " + _("last error, as the server or system reported it: "
                                     "{error}").format(error=terminal_safe(row.last_error)))


@outbox.command("retry", help=_("Send a failed, cancelled or waiting mail now, without "
                                  "waiting for its next attempt."))
@click.argument("outbox_id", type=INTEGER, metavar=_("OUTBOX_ID"))
@click.pass_obj
def outbox_retry(app: Any, outbox_id: int) -> None:
    """Send a failed, cancelled or waiting mail now, without waiting for its next attempt."""
    from maildesk import outbox as outbox_module
    from maildesk.wiring import make_sender

    app.open()
    if not outbox_module.retry(outbox_id):
        raise click.ClickException(_("outbox entry {id} not found or already sent").format(
            id=outbox_id))
    sender = make_sender(app.desk)
    sent = sender.deliver_due()
    attempted = sender.attempted if outbox_id in sender.attempted else [*sender.attempted,
                                                                         outbox_id]
    _report_sending(app.desk, sent, attempted)


@outbox.command("send", help=_(
    "Send the mail that is due now. Mail waiting after a failed attempt keeps its retry "
    "time; 'maildesk outbox retry ID' sends one at once."))
@click.pass_obj
def outbox_send(app: Any) -> None:
    """Send the mail that is due now; mail waiting after a failed attempt keeps its time."""
    from maildesk import models
    from maildesk.wiring import make_sender

    sender = make_sender(app.desk)
    sent = sender.deliver_due()
    _report_sending(app.desk, sent, sender.attempted)

    # When nothing was due, name the mail that waits for a retry, which the admin may
    # have expected to go out.
    waiting = (models.Outbox.select().where(models.Outbox.state == "pending",
                                            models.Outbox.next_attempt_at > models.utcnow())
               .order_by(models.Outbox.next_attempt_at))
    count = waiting.count()
    if count and not sender.attempted:
        click.echo(ngettext(
            "{count} mail waits for its next attempt, the first at {time}; 'maildesk outbox "
            "list --state pending' shows them",
            "{count} mails wait for their next attempt, the first at {time}; 'maildesk "
            "outbox list --state pending' shows them", count).format(
            count=count, time=app.desk.local_time(waiting.first().next_attempt_at)))


def _report_sending(desk: Any, sent: int, attempted: list[int]) -> None:
    """Print what a send pass did and exit non-zero when a mail in ``attempted`` was not sent.

    A mail that went back to the queue exits with 75 (EX_TEMPFAIL), one that failed for
    good with 1. The reason is the error the outbox row stores.
    """
    from maildesk import models
    from maildesk.cli import EX_TEMPFAIL

    rows = list(models.Outbox.select().where(models.Outbox.id.in_(attempted),
                                             models.Outbox.state != "sent")
                .order_by(models.Outbox.id))
    if sent or not rows:
        click.echo(ngettext("{count} mail sent", "{count} mails sent", sent)
                   .format(count=sent))

    postponed = failed = 0
    for row in rows:
        reason = terminal_safe(row.last_error) if row.last_error else _("no reason recorded")
        if row.state == "failed":
            failed += 1
            message = _("mail {id} was not sent and will not be retried: {reason}")
        else:
            postponed += 1
            message = _("mail {id} was not sent, the next attempt is at {time}: {reason}")
        # The outbox module has logged the failure itself, as a warning.
        logger.debug("outbox %s not sent (%s): %s", row.id, row.state, reason)
        next_attempt = desk.local_time(row.next_attempt_at)
        click.echo(message.format(id=row.id, reason=reason, time=next_attempt), err=True)

    if failed:
        sys.exit(1)
    if postponed:
        sys.exit(EX_TEMPFAIL)


@click.group(help=_("List, show, retry and delete mail that could not be processed."))
def quarantine() -> None:
    """List, show, retry and delete mail that could not be processed."""


@quarantine.command("list", help=_("List quarantined mail that is still held."))
@click.pass_obj
def quarantine_list(app: Any) -> None:
    """List quarantined mail that is still held."""
    from maildesk import models
    from maildesk.quarantine import has_raw_mail

    app.open()
    rows = list(models.Quarantine.select().where(models.Quarantine.state == "held")
                .order_by(models.Quarantine.id))
    sender_width = max([len(_("sender")), *(len(terminal_safe(row.sender)) for row in rows)])
    if rows:
        header = (_("id"), _("quarantined at"), _("sender"), _("subject"))
        width = len(app.desk.local_time(rows[0].created_at))
        click.echo(f"{header[0]:>5} {header[1]:<{width}} {header[2]:<{sender_width}} "
                   f"{header[3]}")
    for row in rows:
        # Escaped as 'quarantine show' escapes them, so both print the same text.
        subject = (row.subject if has_raw_mail(row)
                   else _("(the source could not read the mail)"))
        sender, subject = terminal_safe(row.sender), terminal_safe(subject)
        click.echo(f"{row.id:>5} {app.desk.local_time(row.created_at)} "
                   f"{sender:<{sender_width}} "
                   f"{subject}\n      "
                   + _("error, as recorded: {error}").format(error=terminal_safe(row.error)))
    click.echo(ngettext("{count} message in quarantine", "{count} messages in quarantine",
                        len(rows)).format(count=len(rows)))


@quarantine.command("retry", help=_("Process a quarantined mail again (after fixing the "
                                     "cause)."))
@click.argument("quarantine_id", type=INTEGER, metavar=_("QUARANTINE_ID"))
@click.pass_obj
def quarantine_retry(app: Any, quarantine_id: int) -> None:
    """Process a quarantined mail again (after fixing the cause).

    Exit with 1 when the mail failed again, and when another command changed the entry
    while the mail was processed. In the second case the outcome line on standard
    output still reports what became of the mail.
    """
    from maildesk import models
    from maildesk import quarantine as quarantine_module
    from maildesk.wiring import load_rules

    desk = app.desk
    app.open()
    row = models.Quarantine.get_or_none(models.Quarantine.id == quarantine_id)
    if row is not None and row.state == "held" and not quarantine_module.has_raw_mail(row):
        raise click.ClickException(_(
            "quarantine entry {id} has no stored mail to process, because its source could "
            "not read it: {error}. Once the mail is readable, move it from the quarantine "
            "folder of the source back into the mailbox, where the daemon processes it, and "
            "then delete this entry with 'maildesk quarantine delete {id}'").format(
            id=row.id, error=row.error))
    try:
        retried = quarantine_module.retry(desk, quarantine_id, load_rules(desk))
    except quarantine_module.RawMailUnreadableError as error:
        raise click.ClickException(str(error)) from error
    if retried is None:
        raise click.ClickException(_("quarantine entry {id} not found or not held").format(
            id=quarantine_id))
    if retried.held is not None:
        raise click.ClickException(_("the mail failed again and stays in quarantine as {id}: "
                                     "{error}").format(id=retried.held.id,
                                                       error=retried.held.error))

    outcome = retried.outcome
    click.echo(outcome_text(outcome.action, outcome.ticket, outcome.reason))
    if not retried.released:
        raise click.ClickException(_(
            "another command changed quarantine entry {id} while its mail was processed, "
            "so the entry stays as it is now: {state}").format(
            id=quarantine_id, state=translated_label(quarantine_module.STATE_LABELS,
                                                     retried.entry.state)))


# NOTE: a guess, not measured: enough for the Received chain and the usual fields of
# typical mail. --raw writes the rest.
HEADER_LINES_SHOWN = 60

# RFC 5322 limits a line to 998 bytes, so a longer one is cut when shown.
HEADER_LINE_BYTES_SHOWN = 998


@quarantine.command("show", help=_(
    "Show a quarantined mail: its error, the detail stored with it and the start of its "
    "header. With --raw, write the mail exactly as received."))
@click.argument("quarantine_id", type=INTEGER, metavar=_("QUARANTINE_ID"))
@click.option("--raw", is_flag=True,
              help=_("Write the raw mail, byte for byte as received, to standard output or "
                     "to the --output file, to inspect it or to fix it and pass it to "
                     "'maildesk deliver'."))
@click.option("--output", type=PathType(dir_okay=False), metavar=_("FILE"),
              help=_("Write the raw mail to FILE instead of standard output; implies --raw. "
                     "An existing file is replaced."))
@click.pass_obj
def quarantine_show(app: Any, quarantine_id: int, raw: bool, output: str | None) -> None:
    """Show a quarantined mail in any state, or write its raw bytes with ``--raw``.

    Deleted entries can be shown too, because their raw mail stays stored. A raw mail
    missing from the store is reported on stderr, and the command then exits with 1.
    """
    from maildesk import models
    from maildesk.quarantine import has_raw_mail

    desk = app.desk
    row = models.Quarantine.get_or_none(models.Quarantine.id == quarantine_id)
    if row is None:
        raise click.ClickException(_("quarantine entry {id} not found; 'maildesk quarantine "
                                     "list' shows the held ones").format(id=quarantine_id))

    if not has_raw_mail(row):
        if raw or output is not None:
            raise click.ClickException(_("quarantine entry {id} has no stored raw mail, because "
                                         "its source could not read it").format(id=row.id))
        _print_quarantine_entry(desk, row, None)
        return

    try:
        content: bytes | None = desk.store.get_message(row.raw_sha256)
        read_error = None
    except OSError as error:
        # A file of the storage folder that was deleted or cannot be read.
        content, read_error = None, _("cannot read the raw mail of quarantine entry {id} "
                                      "({error}): restore the file from a backup and retry"
                                      ).format(id=quarantine_id, error=error)

    if raw or output is not None:
        if content is None:
            raise click.ClickException(str(read_error))
        _write_raw_mail(quarantine_id, content, output)
        return

    _print_quarantine_entry(desk, row, content)
    if read_error is not None:
        click.echo(read_error, err=True)
        sys.exit(1)


def _write_raw_mail(quarantine_id: int, content: bytes, output: str | None) -> None:
    """Write ``content`` unchanged to ``output``, or to the binary standard output."""
    if output is None:
        # click.echo writes bytes to the binary stream under sys.stdout, unchanged.
        click.echo(content, nl=False)
        return

    try:
        with open(output, "wb") as file:
            file.write(content)
    except OSError as error:
        raise click.ClickException(_("cannot write the raw mail to {path}: {error}").format(
            path=output, error=error)) from error
    click.echo(_("raw mail of quarantine entry {id} written to {path} ({size} B)").format(
        id=quarantine_id, path=output, size=len(content)))


def _print_quarantine_entry(desk: Any, row: Any, content: bytes | None) -> None:
    """Print a quarantine entry's fields, error, detail and the start of its raw header.

    The stored sender and subject keep every control character but NUL, and the other
    fields went through ``clean_text``, which keeps CR, LF and bidirectional overrides.
    So they are escaped like the header lines, which come straight from the sender.
    """
    from maildesk.quarantine import STATE_LABELS, has_raw_mail, header_lines

    click.echo(_("Quarantined mail {id}: {state}").format(
        id=row.id, state=translated_label(STATE_LABELS, row.state)))
    click.echo(_("Quarantined at: {time}").format(time=desk.local_time(row.created_at)))
    click.echo(_("Source: {source}").format(source=terminal_safe(row.source)))
    click.echo(_("Message-ID: {message_id}").format(
        message_id=terminal_safe(row.message_id or "-")))
    click.echo(_("Sender: {sender}").format(sender=terminal_safe(row.sender or "-")))
    click.echo(_("Subject: {subject}").format(subject=terminal_safe(row.subject or "-")))
    if not has_raw_mail(row):
        click.echo(_("Raw mail: not stored, because the source could not read it"))
    elif content is None:
        click.echo(_("Raw mail: cannot be read, sha256 {sha256}").format(sha256=row.raw_sha256))
    else:
        click.echo(_("Raw mail: {size} B, sha256 {sha256}").format(
            size=len(content), sha256=row.raw_sha256))
    click.echo(_("Error, as recorded: {error}").format(error=terminal_safe(row.error)))

    click.echo("")
    click.echo(_("Detail, as recorded:"))
    if row.detail:
        click.echo(terminal_safe(row.detail.rstrip("\n"), keep_line_breaks=True))
    else:
        click.echo(_("(no detail recorded)"))

    if content is None:
        return
    click.echo("")
    click.echo(_("Header of the raw mail, control characters escaped (\\x1b is ESC):"))
    if not content:
        click.echo(_("(the raw mail is empty)"))
        return

    lines, left_out = header_lines(content, HEADER_LINES_SHOWN)
    for line in lines:
        decoded = line[:HEADER_LINE_BYTES_SHOWN].decode("utf-8", "backslashreplace")
        cut = "…" if len(line) > HEADER_LINE_BYTES_SHOWN else ""
        click.echo(terminal_safe(decoded) + cut)
    if not lines:
        click.echo(_("(no header: the raw mail starts with a blank line)"))
    if left_out:
        click.echo(ngettext("({count} more header line not shown; --raw writes the whole mail)",
                            "({count} more header lines not shown; --raw writes the whole mail)",
                            left_out).format(count=left_out))


@quarantine.command("delete", help=_(
    "Delete a held mail from the quarantine, so that 'list' no longer shows it and 'retry' "
    "no longer accepts it. Its raw mail stays stored, because maildesk never removes "
    "stored mail: 'show ID --raw' still writes it, and the same mail arriving again is "
    "skipped as already quarantined."))
@click.argument("quarantine_id", type=INTEGER, metavar=_("QUARANTINE_ID"))
@click.pass_obj
def quarantine_delete(app: Any, quarantine_id: int) -> None:
    """Delete a held mail from the quarantine. Its raw mail stays stored."""
    from maildesk import quarantine as quarantine_module

    app.open()
    row = quarantine_module.delete(quarantine_id)
    if row is None:
        raise click.ClickException(_("quarantine entry {id} not found or not held").format(
            id=quarantine_id))
    if not quarantine_module.has_raw_mail(row):
        click.echo(_("quarantine entry {id} deleted; it had no raw mail, because its source "
                     "could not read it").format(id=row.id))
        return
    click.echo(_("quarantine entry {id} deleted; its raw mail stays stored, and 'maildesk "
                 "quarantine show {id} --raw' still writes it").format(id=row.id))


@click.group(help=_("Check and preview mail templates."))
def templates() -> None:
    """Check and preview mail templates."""


@templates.command("check", help=_("Render every template in every language against a "
                                    "sample ticket."))
@click.pass_obj
def templates_check(app: Any) -> None:
    """Render every template in every language against a sample ticket."""
    from maildesk.notify import sample_context, sample_variants

    desk = app.inspected_desk
    errors = desk.templates.check(sample_context(desk), sample_variants(desk))
    for error in errors:
        click.echo(str(error), err=True)
    for language, name in desk.templates.missing_translations():
        click.echo(_("warning: template {name} does not exist in {language}; mail in "
                     "{language} falls back to another language").format(
            name=name, language=language), err=True)
    if errors:
        click.echo(ngettext(
            "{count} error in the templates; a running daemon keeps the versions it "
            "loaded last.",
            "{count} errors in the templates; a running daemon keeps the versions it "
            "loaded last.",
            len(errors)).format(count=len(errors)), err=True)
        raise SystemExit(1)
    click.echo(_("all templates render"))


@templates.command("render", help=_("Print one finished mail, headers and all, without "
                                     "sending it."))
@click.argument("name", metavar=_("TEMPLATE"))
@click.option("--ticket", "number", type=INTEGER, metavar=_("NUMBER"),
              help=_("Render for this ticket."))
@click.option("--language", type=click.Choice(LANGUAGES),
              help=_("pl or en (default: the ticket's language)."))
@click.option("--raw", is_flag=True,
              help=_("Print the mail as it is sent (MIME, encoded), not a readable preview."))
@click.pass_obj
def templates_render(app: Any, name: str, number: int | None, language: str | None,
                     raw: bool) -> None:
    """Print one finished mail, headers and all, without sending it."""
    from maildesk import models
    from maildesk.escalation import preview_context
    from maildesk.mailbuild import Recipient, build_message, new_message_id
    from maildesk.notify import desk_context, sample_context, ticket_context

    desk = app.desk
    names = desk.templates.names() | (desk.templates.fallback.names()
                                      if desk.templates.fallback else set())
    if name not in names:
        raise click.ClickException(_unknown_template_message(name, names))

    ticket = None
    if number is not None:
        ticket = models.Ticket.get_or_none(models.Ticket.id == number)
        if ticket is None:
            raise click.ClickException(_("ticket {number} not found").format(number=number))
    # The sample texts (a reply, a reason, a status) are in the language of the mail, so
    # an English ticket's preview shows no Polish sample.
    language = language or (ticket.language if ticket else None) or desk.config.language
    context = sample_context(desk, language)
    to = Recipient(context["ticket"]["requester_address"], context["ticket"]["requester_name"])
    if ticket is not None:
        context["ticket"] = ticket_context(desk, ticket)
        context["linked_ticket"] = ({"number": ticket.linked_ticket_id}
                                    if ticket.linked_ticket_id else None)
        # The sample's groups and due times name no group of this desk: the ticket's own
        # replace them, the reason stays the sample's.
        context.update(preview_context(desk, ticket, context["escalation"]["reason"]))
        to = Recipient(ticket.requester.address, ticket.requester.name)
    context["desk"] = desk_context(desk)
    rendered = desk.templates.render(name, language, context)
    message = build_message(
        rendered, sender=Recipient(desk.config.desk.address, desk.config.desk.name), to=[to],
        message_id=new_message_id("preview", number, desk.message_id_domain),
        reply_to=desk.config.desk.address, ticket=number,
    )
    if raw:
        click.echo(message.as_string())
        return

    click.echo(_readable_preview(message.headers, rendered.text, rendered.html is not None))


def _unknown_template_message(name: str, names: set[str]) -> str:
    """Name the templates an admin probably meant, then list them all.

    Outbox file names and log lines show the kind of a mail (``ack``, ``new_ticket``),
    which is often a part of its template's name (``acknowledgement``,
    ``new_ticket_agents``), so a name that contains the request counts as well as a
    close spelling.
    """
    listed = ", ".join(sorted(names))
    request = name.lower()
    close = [other for other in sorted(names) if request and request in other]
    if not close:
        close = difflib.get_close_matches(request, sorted(names), n=3)
    if not close:
        return _("template {name!r} not found; the templates are: {names}").format(
            name=name, names=listed)

    return _("template {name!r} not found; did you mean {close}? The templates are: "
             "{names}").format(name=name, close=", ".join(close), names=listed)


def _readable_preview(headers: tuple[tuple[str, str], ...], text: str, has_html: bool) -> str:
    """Show a mail's header fields decoded (RFC 2047) and its text part as the reader sees it."""
    from email.header import decode_header, make_header

    lines = [f"{field}: {make_header(decode_header(value))}" for field, value in headers]
    lines += ["", text.rstrip("\n")]
    if has_html:
        lines += ["", _("[The mail also has an HTML part: --raw prints the whole mail.]")]
    return "\n".join(lines)
