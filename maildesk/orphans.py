"""Open tickets whose group or assignee the configuration no longer has.

Groups and agents live in maildesk.yaml. When an admin removes or renames one, the
tickets keep the old name: ``maildesk.agents`` only marks its row inactive. Until the
tickets are moved, their notices go to the admins (a removed group) or to the group's
agents (a removed assignee), see ``maildesk.ticketmail`` and ``maildesk.notify``.

This module finds such tickets and reports them to the admins: a warning per group or
agent each time the daemon starts and in ``maildesk agents check``, and one mail when
the sync first finds the group or agent gone. Its row turning inactive records that the
mail went out. The counting runs only then, never per mail.

``move_group`` and ``release_agent`` are the fixes behind ``maildesk tickets move-group``
and ``maildesk tickets unassign``. They change the tickets in batches, each in its own
transaction. They go through the escalation and lifecycle code that routing rules and
SLA escalation use, so the audit trail, the SLA clock and the notices are those of an
agent's ``#group`` and ``#assign nobody``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import peewee as pw

from maildesk import models
from maildesk.config import Config
from maildesk.desk import Desk
from maildesk.i18n import _, ngettext
from maildesk.lifecycle import OPEN_STATUSES, LifecycleError, Source
from maildesk.terminal import command_line

logger = logging.getLogger(__name__)

# Tickets changed per transaction: a desk with 100,000 open tickets in one group holds
# no lock for the whole move, and a failure keeps the batches already committed.
BATCH_SIZE = 200

NEW_GROUP_PLACEHOLDER = "NEW-GROUP"


@dataclass(frozen=True)
class OrphanedGroup:
    """A group that open tickets name but the configuration does not have."""

    name: str
    count: int
    command: str


@dataclass(frozen=True)
class OrphanedAgent:
    """An assignee of open tickets whom the configuration does not have."""

    login: str
    count: int
    command: str


@dataclass(frozen=True)
class Orphans:
    groups: tuple[OrphanedGroup, ...] = ()
    agents: tuple[OrphanedAgent, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.groups or self.agents)


def _open_values() -> list[str]:
    return [status.value for status in OPEN_STATUSES]


def find_orphans(config: Config, *, groups: Iterable[str] | None = None,
                 agents: Iterable[str] | None = None,
                 new_group_hint: str | None = None) -> Orphans:
    """Count the open tickets of every group and assignee missing from ``config``.

    ``groups`` and ``agents`` narrow the look-up to those names (the ones a sync has just
    deactivated). ``new_group_hint`` fills the move command's target, when the sync added
    exactly one group as it removed one (most likely a rename). Two grouped COUNT
    queries; the group and assignee columns have indexes of their own.
    """
    ticket = models.Ticket
    configured_groups = [group.name for group in config.groups]
    group_query = (ticket.select(ticket.group, pw.fn.COUNT(ticket.id))
                   .where(ticket.status.in_(_open_values()), ticket.group.is_null(False),
                          ticket.group.not_in(configured_groups))
                   .group_by(ticket.group).order_by(ticket.group))
    if groups is not None:
        group_query = group_query.where(ticket.group.in_(list(groups)))
    target = new_group_hint or NEW_GROUP_PLACEHOLDER
    group_rows: list[tuple[str, int]] = list(group_query.tuples())  # type: ignore[arg-type]
    found_groups = tuple(
        OrphanedGroup(name, count, command_line(config.path, "tickets", "move-group",
                                            positional=(name, target)))
        for name, count in group_rows)

    # An assignee may be stored as a login or as one of the agent's addresses.
    known = [agent.login for agent in config.agents] + [
        address.lower() for agent in config.agents for address in agent.addresses]
    agent_query = (ticket.select(ticket.assignee, pw.fn.COUNT(ticket.id))
                   .where(ticket.status.in_(_open_values()), ticket.assignee.is_null(False),
                          ticket.assignee.not_in(known))
                   .group_by(ticket.assignee).order_by(ticket.assignee))
    if agents is not None:
        agent_query = agent_query.where(ticket.assignee.in_(list(agents)))
    agent_rows: list[tuple[str, int]] = list(agent_query.tuples())  # type: ignore[arg-type]
    # Tickets that name a removed agent by address count under the agent's login.
    logins = {address: row.login for row in models.Agent.select()
              for address in (row.addresses or "").split()}
    counts: dict[str, int] = {}
    for assignee, count in agent_rows:
        login = logins.get(assignee, assignee)
        counts[login] = counts.get(login, 0) + count
    found_agents = tuple(
        OrphanedAgent(login, count,
                      command_line(config.path, "tickets", "unassign", "--agent", login))
        for login, count in sorted(counts.items()))
    return Orphans(found_groups, found_agents)


def group_warning(orphan: OrphanedGroup) -> str:
    return ngettext(
        "group {group} is no longer in the configuration, but {count} open ticket is still "
        "in it; its notices go to the admins until you move it: {command}",
        "group {group} is no longer in the configuration, but {count} open tickets are still "
        "in it; their notices go to the admins until you move them: {command}",
        orphan.count).format(group=orphan.name, count=orphan.count, command=orphan.command)


def agent_warning(orphan: OrphanedAgent) -> str:
    return ngettext(
        "agent {agent} is no longer in the configuration, but {count} open ticket is still "
        "assigned to them; its notices go to its group until you release it: {command}",
        "agent {agent} is no longer in the configuration, but {count} open tickets are still "
        "assigned to them; their notices go to their groups until you release them: "
        "{command}",
        orphan.count).format(agent=orphan.login, count=orphan.count, command=orphan.command)


def log_orphans(orphans: Orphans) -> None:
    """Log one warning per orphaned group and agent, with the count and the fix."""
    for group in orphans.groups:
        logger.warning(group_warning(group))
    for agent in orphans.agents:
        logger.warning(agent_warning(agent))


def report_at_start(desk: Desk) -> Orphans:
    """Warn about the orphaned tickets when the daemon starts; return what was found."""
    orphans = find_orphans(desk.config)
    log_orphans(orphans)
    return orphans


def report_removals(desk: Desk, deactivated: Iterable[str], added: Iterable[str]) -> Orphans:
    """Mail the admins once about the open tickets of groups and agents just deactivated.

    ``deactivated`` and ``added`` are the ``kind:name`` labels of a ``SyncReport``. The
    sync deactivates a row once, so each removal is reported once, by whichever process
    first opened the desk with the new configuration.

    NOTE: the mail is queued after the sync has committed, so a crash in between loses
    it. The warnings at each daemon start and ``maildesk agents check`` still report.
    """
    removed_groups = [label.partition(":")[2] for label in deactivated
                      if label.startswith("group:")]
    removed_agents = [label.partition(":")[2] for label in deactivated
                      if label.startswith("agent:")]
    if not removed_groups and not removed_agents:
        return Orphans()
    added_groups = [label.partition(":")[2] for label in added if label.startswith("group:")]
    hint = added_groups[0] if len(removed_groups) == 1 and len(added_groups) == 1 else None
    # A ticket may name its assignee by one of the agent's addresses instead of the login.
    assignees = list(removed_agents)
    for row in models.Agent.select().where(models.Agent.login.in_(removed_agents)):
        assignees.extend((row.addresses or "").split())
    orphans = find_orphans(desk.config, groups=removed_groups, agents=assignees,
                           new_group_hint=hint)
    if not orphans:
        return orphans

    log_orphans(orphans)
    from maildesk.adminmail import mail_admins

    mail_admins(desk, "orphaned_tickets", orphans_context(desk, orphans),
                kind="orphaned_tickets")
    return orphans


def orphans_context(desk: Desk, orphans: Orphans) -> dict[str, object]:
    """Build the ``orphaned_tickets`` context of the admins' mail."""
    return {"orphans": {
        "groups": [{"name": group.name, "count": group.count, "command": group.command}
                   for group in orphans.groups],
        "agents": [{"login": agent.login, "count": agent.count, "command": agent.command}
                   for agent in orphans.agents],
        "check_command": command_line(desk.config.path, "agents", "check"),
    }}


def sample_values() -> dict[str, object]:
    """Sample values of ``orphaned_tickets`` for ``maildesk templates check``."""
    config = "/etc/maildesk/maildesk.yaml"
    return {"orphans": {
        "groups": [{"name": "siec", "count": 12,
                    "command": f"maildesk --config {config} tickets move-group siec sieci"}],
        "agents": [{"login": "jan.kowalski", "count": 1,
                    "command": f"maildesk --config {config} tickets unassign --agent "
                               "jan.kowalski"}],
        "check_command": f"maildesk --config {config} agents check",
    }}


# --------------------------------------------------------------------------- fixing


@dataclass
class MoveResult:
    """The outcome of a move or release: the tickets changed, and those left unchanged."""

    changed: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)


def open_tickets(*conditions: pw.Expression) -> pw.ModelSelect[models.Ticket]:
    """Select the open tickets matching ``conditions``, oldest first."""
    ticket = models.Ticket
    return (ticket.select().where(ticket.status.in_(_open_values()), *conditions)
            .order_by(ticket.id))


def _in_batches(query: pw.ModelSelect[models.Ticket], step: Callable[[models.Ticket], None],
                result: MoveResult, describe: str) -> MoveResult:
    """Apply ``step`` to every ticket of ``query``, BATCH_SIZE per transaction.

    Each batch reads the next tickets by number after the last one handled, so a ticket
    the step takes out of the query is not skipped over, and none is read twice.

    The daemon keeps working meanwhile, so each ticket is read again inside the
    transaction (locked on PostgreSQL). A ticket that an agent resolved, closed or moved
    since the batch was read is left alone, and no stale copy overwrites the change.
    """
    last = 0
    while True:
        numbers = [ticket.id for ticket in
                   query.where(models.Ticket.id > last).limit(BATCH_SIZE)]
        if not numbers:
            return result
        with models.database_proxy.atomic():
            for number in numbers:
                current = query.where(models.Ticket.id == number)
                if models.is_postgresql():
                    current = current.for_update()
                ticket = current.first()
                if ticket is None:
                    continue
                try:
                    with models.database_proxy.atomic():
                        step(ticket)
                except LifecycleError as error:
                    logger.warning(_("ticket {ticket}: {action} failed: {error}").format(
                        ticket=ticket.id, action=describe, error=error))
                    result.failed.append((ticket.id, str(error)))
                else:
                    result.changed.append(ticket.id)
        last = numbers[-1]
        logger.info(ngettext("{action}: {count} ticket done", "{action}: {count} tickets done",
                             len(result.changed)).format(action=describe,
                                                         count=len(result.changed)))


def move_group(desk: Desk, old: str, new: str, actor: str,
               at: datetime | None = None) -> MoveResult:
    """Move every open ticket of group ``old`` to the configured group ``new``.

    Each ticket goes through ``escalation.move_to_group``, as a routing rule's change of
    group does. That records a ``group_changed`` event by ``actor`` and re-plans the SLA
    for the new group. It also releases an assignee who is not in ``new`` and sends the
    dispatch notice to the agents or mailbox of ``new``. Raises LifecycleError when
    ``new`` is not configured.
    """
    from maildesk import escalation
    from maildesk.ticketmail import group_config

    if group_config(desk, new) is None:
        known = ", ".join(sorted(group.name for group in desk.config.groups)) or "-"
        raise LifecycleError(_("unknown group '{group}': known groups: {known}").format(
            group=new, known=known))
    moment = at or datetime.now(UTC)
    reason = _("group {old} moved to {new} by an admin").format(old=old, new=new)

    def step(ticket: models.Ticket) -> None:
        escalation.move_to_group(desk, ticket, new, actor, Source.ADMIN, moment, reason)

    logger.info(_("moving the open tickets of group {old} to {new}").format(old=old, new=new))
    return _in_batches(open_tickets(models.Ticket.group == old), step, MoveResult(),
                       _("move to group {group}").format(group=new))


def agent_tickets(login: str) -> pw.ModelSelect[models.Ticket]:
    """Select the open tickets assigned to ``login`` or to one of its stored addresses."""
    row = models.Agent.get_or_none(models.Agent.login == login)
    names = [login, *((row.addresses or "").split() if row is not None else [])]
    return open_tickets(models.Ticket.assignee.in_(names))


def release_agent(desk: Desk, login: str, actor: str, to: str | None = None,
                  at: datetime | None = None) -> MoveResult:
    """Unassign the open tickets of agent ``login``, or hand them to agent ``to``.

    Each ticket goes through ``lifecycle.assign``, as ``#assign`` does: an
    ``assignee_changed`` event by ``actor``, and an assigned ticket becomes new again,
    so its notices and the daily summary reach its group's agents.
    """
    from maildesk import lifecycle

    moment = at or datetime.now(UTC)
    reason = _("agent {agent} released by an admin").format(agent=login)

    def step(ticket: models.Ticket) -> None:
        lifecycle.assign(desk, ticket, to, actor, Source.ADMIN, moment, reason)

    action = (_("reassign to {agent}").format(agent=to) if to else _("unassign"))
    return _in_batches(agent_tickets(login), step, MoveResult(), action)


__all__ = [
    "BATCH_SIZE",
    "MoveResult",
    "OrphanedAgent",
    "OrphanedGroup",
    "Orphans",
    "agent_tickets",
    "agent_warning",
    "find_orphans",
    "group_warning",
    "log_orphans",
    "move_group",
    "open_tickets",
    "orphans_context",
    "release_agent",
    "report_at_start",
    "report_removals",
    "sample_values",
]
