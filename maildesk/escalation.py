"""Escalation by email: SLA warnings and breaches, the next tier's group, the group's manager.

Functional escalation moves a ticket to the group its group ``escalates_to`` (by an
agent's command, a rule or an SLA breach). Hierarchical escalation mails the group's
``manager``. A group with its own ``address`` (another team, a vendor) is dispatched
to: the ticket is forwarded there with its tag, and the address becomes a participant
so that its replies thread back into the ticket. Every function runs inside the
caller's transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import peewee as pw

from maildesk import lifecycle, models, slatrack
from maildesk.desk import Desk
from maildesk.i18n import N_, _
from maildesk.lifecycle import Change, LifecycleError, Source, Status
from maildesk.mailbuild import Recipient
from maildesk.models import to_utc
from maildesk.notify import QueuedMail
from maildesk.reasons import Reason
from maildesk.sla import SlaTarget
from maildesk.slaconfig import service_levels
from maildesk.ticketmail import (
    group_agent_recipients,
    group_config,
    queue_ticket_mail,
    responsible_recipients,
)
from maildesk.tickets import record_event, upsert_contact

logger = logging.getLogger(__name__)

DISPATCH_ROLE = "dispatch"
WARNING = "warning"
BREACH = "breach"


def _first_description(ticket: models.Ticket) -> str:
    first = (models.Message.select(models.Message.text)
             .where(models.Message.ticket == ticket, models.Message.direction == "in")
             .order_by(models.Message.id).first())
    return first.text if first is not None else ""


def dispatch(desk: Desk, ticket: models.Ticket, group: str, actor: str, source: str,
             at: datetime, reason: str | None = None) -> list[QueuedMail]:
    """Mail the ticket to ``group``: its own address when it has one, else its agents.

    A group address becomes a participant of the ticket, so replies from that team or
    vendor (by the ticket tag or by references to the forwarded mail) are accepted.
    """
    config = group_config(desk, group)
    external = config is not None and config.address is not None
    if external:
        assert config is not None and config.address is not None
        contact = upsert_contact_address(config.address, config.description or config.name)
        models.Participant.get_or_create(ticket=ticket, contact=contact,
                                         defaults={"role": DISPATCH_ROLE})
        recipients = [Recipient(config.address, config.description or config.name)]
    else:
        # The agent who moved the ticket gets no notice of the move.
        mover = {address.lower() for agent in desk.config.agents if agent.login == actor
                 for address in agent.addresses}
        recipients = [recipient for recipient in group_agent_recipients(desk, group)
                      if recipient.address.lower() not in mover]

    requester = ticket.requester
    extra = {"dispatch": {
        "group": group, "reason": reason or "", "external": external,
        "description": _first_description(ticket),
        "requester_name": requester.name, "requester_address": requester.address,
    }}
    language = desk.config.language if external else None
    queued = None
    if recipients:
        queued = queue_ticket_mail(desk, ticket, "dispatch", recipients, extra,
                                   language=language or _agent_language(desk, group, ticket))
    record_event(ticket, actor, "dispatched", {
        "group": group, "external": external, "source": Source(source).value,
        "reason": reason, "recipients": [recipient.address for recipient in recipients],
    })
    logger.info(_("ticket {number}: dispatched to {group}").format(number=ticket.id,
                                                                  group=group))
    return [queued] if queued is not None else []


def upsert_contact_address(address: str, name: str) -> models.Contact:
    from maildesk.parse import Address

    return upsert_contact(Address(name=name, address=address))


def _agent_language(desk: Desk, group: str | None, ticket: models.Ticket) -> str:
    """Return the language of mail to a group's agents: the first member's, else the desk's."""
    for agent in desk.config.agents:
        if group is not None and group in agent.groups and agent.language:
            return agent.language
    return desk.config.language


def move_to_group(desk: Desk, ticket: models.Ticket, group: str, actor: str, source: str,
                  at: datetime, reason: str | None = None) -> tuple[list[Change], list[QueuedMail]]:
    """Hand the ticket to another group: clear the assignee, re-plan the SLA, dispatch it."""
    if group_config(desk, group) is None:
        known = ", ".join(sorted(g.name for g in desk.config.groups))
        raise LifecycleError(_("unknown group '{group}': known groups: {known}").format(
            group=group, known=known))
    if ticket.status == Status.CLOSED:
        raise LifecycleError(_("ticket {number} is closed: open a new ticket instead").format(
            number=ticket.id))
    if ticket.group == group:
        return [], []

    before_clock = slatrack.clock_of(desk, ticket)
    changes = [Change("group", ticket.group, group)]
    record_event(ticket, actor, "group_changed", {"source": Source(source).value,
                                                  "reason": reason},
                 before=ticket.group, after=group)
    ticket.group = group
    slatrack.replan(desk, ticket, before_clock, at, actor)
    ticket.save(only=[models.Ticket.group, *(getattr(models.Ticket, name)
                                             for name in slatrack.CLOCK_COLUMNS)])

    if ticket.assignee and not _is_member(desk, ticket.assignee, group):
        changes.extend(lifecycle.assign(desk, ticket, None, actor, source, at, reason))
    queued = dispatch(desk, ticket, group, actor, source, at, reason)
    return changes, queued


def _is_member(desk: Desk, login: str, group: str) -> bool:
    return any(agent.login == login and group in agent.groups for agent in desk.config.agents)


def escalate(desk: Desk, ticket: models.Ticket, actor: str, source: str, at: datetime,
             reason: str | None = None, to_group: str | None = None
             ) -> tuple[list[Change], list[QueuedMail]]:
    """Escalate functionally: move the ticket to ``to_group`` or its group's next tier.

    Raises LifecycleError when the group escalates nowhere.
    """
    current = group_config(desk, ticket.group)
    target = to_group or (current.escalates_to if current is not None else None)
    if target is None:
        raise LifecycleError(_(
            "group '{group}' of ticket {number} escalates to no other group: set "
            "escalates_to in its configuration or name the group").format(
                group=ticket.group or "-", number=ticket.id))

    changes, queued = move_to_group(desk, ticket, target, actor, source, at, reason)
    if not changes:
        return [], []
    level = ticket.escalation_level + 1
    changes.append(Change("escalation_level", ticket.escalation_level, level))
    ticket.escalation_level = level
    ticket.save(only=[models.Ticket.escalation_level])
    record_event(ticket, actor, "escalated", {
        "kind": "functional", "source": Source(source).value, "reason": reason,
        "from_group": current.name if current else None, "to_group": target,
    }, before=level - 1, after=level)
    return changes, queued


def notify_manager(desk: Desk, ticket: models.Ticket, actor: str, source: str,
                   reason: str, sla: dict[str, Any] | None = None,
                   moves: bool = False) -> list[QueuedMail]:
    """Escalate hierarchically: mail the manager of the ticket's group, if it has one.

    ``moves`` is True when the ticket is about to go to its group's next tier. The mail then
    names that group and the level after the move, while the manager of the group that
    missed the target is still the one who gets it.
    """
    group = group_config(desk, ticket.group)
    if group is None and ticket.group:
        logger.warning(_("ticket {ticket}: group {group} is no longer in the configuration, "
                         "so no escalation mail goes to its manager").format(
            ticket=ticket.id, group=ticket.group))
        return []
    if group is None or group.manager is None:
        logger.info(_("ticket {ticket}: group {group} has no manager, so no escalation mail "
                      "goes to a manager").format(ticket=ticket.id, group=ticket.group or "-"))
        return []

    extra = _escalation_context(desk, ticket, reason, moved=moves)
    if moves:
        extra["escalation"]["level"] = ticket.escalation_level + 1
        next_group = extra["escalation"]["next_group"]
        extra["escalation"]["clears_assignee"] = bool(
            ticket.assignee and next_group and not _is_member(desk, ticket.assignee, next_group))
    if sla is not None:
        extra["sla"] = sla
    queued = queue_ticket_mail(desk, ticket, "escalation_manager",
                               [Recipient(group.manager)], extra,
                               language=desk.config.language)
    record_event(ticket, actor, "escalated", {
        "kind": "hierarchical", "source": Source(source).value, "reason": reason,
        "manager": group.manager,
    })
    return [queued] if queued is not None else []


# Log names of the SLA targets.
TARGET_NAMES = {SlaTarget.FIRST_RESPONSE: N_("first response time"),
                SlaTarget.RESOLUTION: N_("resolution time")}


def _escalation_context(desk: Desk, ticket: models.Ticket, reason: str,
                        moved: bool) -> dict[str, Any]:
    group = group_config(desk, ticket.group)
    return {"escalation": {
        "group": ticket.group,
        "next_group": group.escalates_to if group else None,
        "manager": group.manager if group else None,
        "level": ticket.escalation_level,
        "reason": reason,
        "moved": moved,
        "clears_assignee": False,
    }}


def _sla_values(ticket: models.Ticket, target: SlaTarget, due: datetime | None,
                share: int | None) -> dict[str, Any]:
    return {"priority": ticket.priority, "first_response_due": ticket.first_response_due,
            "resolution_due": ticket.resolution_due, "target": target.value,
            "due": due, "share": share}


def preview_context(desk: Desk, ticket: models.Ticket, reason: str) -> dict[str, Any]:
    """Return the escalation and SLA values of ``ticket`` for a preview of an SLA mail.

    The values are those a warning of the resolution target would carry now: the
    ticket's group, the group its breach would move it to, its manager and its level.
    """
    policy = slatrack.policy_of(desk, ticket)
    return {**_escalation_context(desk, ticket, reason, moved=False),
            "sla": _sla_values(ticket, SlaTarget.RESOLUTION, ticket.resolution_due,
                               round(policy.warning_share * 100))}


def claim_notice(ticket: models.Ticket, target: SlaTarget, kind: str,
                 due: datetime | None) -> bool:
    """Record that a notice is being sent; False when it was sent before (or by another daemon)."""
    try:
        with models.database_proxy.atomic():
            models.SlaNotice.create(ticket=ticket, target=target.value, kind=kind,
                                    due_at=to_utc(due) if due else None)
    except pw.IntegrityError:
        return False
    return True


def send_warning(desk: Desk, ticket: models.Ticket, target: SlaTarget, at: datetime
                 ) -> list[QueuedMail]:
    """Send the SLA warning for ``target`` once: to the assignee or group, maybe the manager.

    A warning whose target has already passed is claimed but not sent: the breach notice
    of the same run reports it, and a warning of "75% used" would be false.
    That happens after a daemon was down, or when a raised priority moved the target into
    the past.
    """
    due = ticket.first_response_due if target is SlaTarget.FIRST_RESPONSE else (
        ticket.resolution_due)
    if not claim_notice(ticket, target, WARNING, due):
        return []
    if due is not None and to_utc(due) <= to_utc(at):
        logger.info(_("ticket {number}: no SLA warning sent, the {target} already ran out "
                      "at {due}; a breach notice follows").format(
            number=ticket.id, target=_(TARGET_NAMES[target]), due=desk.local_time(due)))
        return []
    policy = slatrack.policy_of(desk, ticket)
    share = round(policy.warning_share * 100)
    sla = _sla_values(ticket, target, due, share)
    record_event(ticket, lifecycle.SYSTEM_ACTOR, "sla_warning",
                 {"target": target.value, "due": due, "share": share,
                  "policy": policy.name})
    logger.warning(_("ticket {number}: {share}% of the {target} used, due {due}").format(
        number=ticket.id, share=share, target=_(TARGET_NAMES[target]),
        due=desk.local_time(due)))

    # A Reason, so each mail writes it in its own language (notify._in_language).
    reason = Reason(N_("{share}% of the SLA target used"), share=share)
    extra = {**_escalation_context(desk, ticket, reason, moved=False), "sla": sla}
    # The mail names what the breach of this target will do, as send_breach decides it.
    settings = service_levels(desk).escalation
    if target not in settings.next_tier_on:
        extra["escalation"]["next_group"] = None
    if settings.manager_on == "never":
        extra["escalation"]["manager"] = None
    queued = []
    mail = queue_ticket_mail(desk, ticket, "escalation_warning",
                             responsible_recipients(desk, ticket), extra,
                             language=_agent_language(desk, ticket.group, ticket))
    if mail is not None:
        queued.append(mail)
    if service_levels(desk).escalation.manager_on == WARNING:
        queued.extend(notify_manager(desk, ticket, lifecycle.SYSTEM_ACTOR, Source.SCHEDULER,
                                     reason, sla))
    return queued


def send_breach(desk: Desk, ticket: models.Ticket, target: SlaTarget, at: datetime
                ) -> list[QueuedMail]:
    """Send the SLA breach notice for ``target`` once; escalate as configured."""
    due = ticket.first_response_due if target is SlaTarget.FIRST_RESPONSE else (
        ticket.resolution_due)
    if not claim_notice(ticket, target, BREACH, due):
        return []
    levels = service_levels(desk)
    sla = _sla_values(ticket, target, due, 100)
    record_event(ticket, lifecycle.SYSTEM_ACTOR, "sla_breach",
                 {"target": target.value, "due": due,
                  "policy": slatrack.policy_of(desk, ticket).name})
    logger.warning(_("ticket {number}: the {target} was exceeded at {due}").format(
        number=ticket.id, target=_(TARGET_NAMES[target]), due=desk.local_time(due)))

    reason = Reason(N_("first response time exceeded") if target is SlaTarget.FIRST_RESPONSE
                    else N_("resolution time exceeded"))
    group = group_config(desk, ticket.group)
    moves = (target in levels.escalation.next_tier_on and group is not None
             and group.escalates_to is not None)
    extra = {**_escalation_context(desk, ticket, reason, moved=moves), "sla": sla}
    # The move below leaves the ticket without assignee when they are not in the next group.
    extra["escalation"]["clears_assignee"] = bool(
        moves and group is not None and group.escalates_to is not None and ticket.assignee
        and not _is_member(desk, ticket.assignee, group.escalates_to))
    queued = []
    mail = queue_ticket_mail(desk, ticket, "escalation_breach",
                             responsible_recipients(desk, ticket), extra,
                             language=_agent_language(desk, ticket.group, ticket))
    if mail is not None:
        queued.append(mail)
    if levels.escalation.manager_on != "never":
        queued.extend(notify_manager(desk, ticket, lifecycle.SYSTEM_ACTOR, Source.SCHEDULER,
                                     reason, sla, moves=moves))
    if moves:
        _changes, moved = escalate(desk, ticket, lifecycle.SYSTEM_ACTOR, Source.SCHEDULER, at,
                                   reason)
        queued.extend(moved)
    return queued
