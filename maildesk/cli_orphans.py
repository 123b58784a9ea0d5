"""``maildesk tickets move-group``, ``tickets unassign`` and ``agents check``.

The commands an admin runs after removing or renaming a group or an agent in
maildesk.yaml, so that the open tickets that still name it reach people again. The work
is ``maildesk.orphans``'s. This module shows what would change, requests confirmation
and reports the result. The notices the changes cause wait in the outbox for the daemon.
"""

from __future__ import annotations

import getpass
from typing import Any

import click

from maildesk.cli_admin import tickets
from maildesk.cli_agents import agents
from maildesk.i18n import _, ngettext
from maildesk.terminal import terminal_safe


def _actor() -> str:
    """Name the admin in the audit trail: ``admin:`` and the operating-system user."""
    try:
        return f"admin:{getpass.getuser()}"
    except (KeyError, OSError):
        return "admin"


def _is_member(desk: Any, login: str | None, group: str) -> bool:
    return login is not None and any(agent.login == login and group in agent.groups
                                     for agent in desk.config.agents)


def _confirm(question: str, confirmed: bool) -> None:
    if not confirmed and not click.confirm(question, default=False):
        click.echo(_("nothing changed"))
        raise click.exceptions.Exit(1)


def _report_result(result: Any, done: str) -> None:
    """Print ``done`` (the count of changed tickets), each failure, and where mail waits."""
    click.echo(done)
    for number, error in result.failed:
        click.echo(_("ticket {ticket} not changed: {error}").format(ticket=number,
                                                                   error=error), err=True)
    if result.changed:
        click.echo(_("any notices these changes cause wait in the outbox: the running "
                     "daemon sends them, or 'maildesk outbox send'"))
    if result.failed:
        raise click.exceptions.Exit(1)


@tickets.command("move-group", help=_(
    "Move every open ticket of group OLD to the configured group NEW, as #group does: "
    "an audit event per ticket, the SLA re-planned, an assignee who is not in NEW "
    "released, the notice to NEW. OLD may be a group removed from the configuration."))
@click.argument("old", metavar=_("OLD"))
@click.argument("new", metavar=_("NEW"))
@click.option("--dry-run", is_flag=True, help=_("List what would change; change nothing."))
@click.option("--yes", "confirmed", is_flag=True, help=_("Do not ask for confirmation."))
@click.pass_obj
def tickets_move_group(app: Any, old: str, new: str, dry_run: bool, confirmed: bool) -> None:
    """Move the open tickets of one group to another."""
    from maildesk import models, orphans
    from maildesk.ticketmail import group_config

    app.open()
    desk = app.desk
    if group_config(desk, new) is None:
        known = ", ".join(sorted(group.name for group in desk.config.groups)) or "-"
        raise click.BadParameter(_("{group} is not a configured group; the groups are: "
                                   "{groups}").format(group=new, groups=known),
                                 param_hint="'NEW'")
    if old == new:
        raise click.BadParameter(_("OLD and NEW are the same group"), param_hint="'NEW'")

    query = orphans.open_tickets(models.Ticket.group == old)
    count = query.count()
    if not count:
        click.echo(_("group {group} has no open tickets: nothing to move").format(group=old))
        return
    if dry_run:
        for ticket in query.iterator():
            released = ticket.assignee and not _is_member(desk, ticket.assignee, new)
            line = _("{tag} {subject}: {old} -> {new}").format(
                tag=desk.tag(ticket.id), subject=terminal_safe(ticket.subject), old=old, new=new)
            if released:
                line += "; " + _("assignee {agent} released (not in {group})").format(
                    agent=ticket.assignee, group=new)
            click.echo(line)
        click.echo(ngettext("{count} open ticket would move from {old} to {new}; nothing "
                            "changed (dry run)",
                            "{count} open tickets would move from {old} to {new}; nothing "
                            "changed (dry run)", count).format(count=count, old=old, new=new))
        return

    _confirm(ngettext("Move {count} open ticket from group {old} to {new}?",
                      "Move {count} open tickets from group {old} to {new}?",
                      count).format(count=count, old=old, new=new), confirmed)
    result = orphans.move_group(desk, old, new, _actor())
    moved = len(result.changed)
    _report_result(result, ngettext("{count} ticket moved to {group}",
                                    "{count} tickets moved to {group}", moved).format(
        count=moved, group=new))


@tickets.command("unassign", help=_(
    "Release every open ticket assigned to agent LOGIN, as #assign nobody does, so it goes "
    "back to its group; with --to, assign them to another agent instead. LOGIN may be an "
    "agent removed from the configuration."))
@click.option("--agent", "login", required=True, metavar=_("LOGIN"),
              help=_("The agent whose open tickets to release."))
@click.option("--to", "target", metavar=_("LOGIN"),
              help=_("Assign the tickets to this configured agent instead."))
@click.option("--dry-run", is_flag=True, help=_("List what would change; change nothing."))
@click.option("--yes", "confirmed", is_flag=True, help=_("Do not ask for confirmation."))
@click.pass_obj
def tickets_unassign(app: Any, login: str, target: str | None, dry_run: bool,
                     confirmed: bool) -> None:
    """Release or reassign the open tickets of one agent."""
    from maildesk import orphans
    from maildesk.agents import find_agent

    app.open()
    desk = app.desk
    to = None
    if target is not None:
        agent = find_agent(target)
        if agent is None:
            raise click.BadParameter(_("{agent} is not a configured agent; see maildesk "
                                       "agents list").format(agent=target),
                                     param_hint="'--to'")
        to = str(agent.login)
        if to == login:
            raise click.BadParameter(_("--agent and --to name the same agent"),
                                     param_hint="'--to'")

    query = orphans.agent_tickets(login)
    count = query.count()
    if not count:
        click.echo(_("agent {agent} has no open tickets: nothing to change").format(
            agent=login))
        return
    if dry_run:
        for ticket in query.iterator():
            click.echo(_("{tag} {subject}: {old} -> {new}").format(
                tag=desk.tag(ticket.id), subject=terminal_safe(ticket.subject),
                old=ticket.assignee, new=to or "-"))
        click.echo(ngettext("{count} open ticket of {agent} would change; nothing changed "
                            "(dry run)",
                            "{count} open tickets of {agent} would change; nothing changed "
                            "(dry run)", count).format(count=count, agent=login))
        return

    question = (ngettext("Assign {count} open ticket of {agent} to {target}?",
                         "Assign {count} open tickets of {agent} to {target}?", count)
                if to else ngettext("Release {count} open ticket of {agent}?",
                                    "Release {count} open tickets of {agent}?", count))
    _confirm(question.format(count=count, agent=login, target=to), confirmed)
    result = orphans.release_agent(desk, login, _actor(), to=to)
    changed = len(result.changed)
    _report_result(result, (ngettext("{count} ticket assigned to {agent}",
                                     "{count} tickets assigned to {agent}", changed) if to
                            else ngettext("{count} ticket released", "{count} tickets released",
                                          changed)).format(count=changed, agent=to))


@agents.command("check", help=_(
    "Report open tickets whose group or assignee is no longer in the configuration, with "
    "the command that fixes each; exit with 1 if there are any."))
@click.pass_obj
def agents_check(app: Any) -> None:
    """Report the orphaned open tickets; exit 1 when there are any."""
    from maildesk import orphans

    app.open()
    found = orphans.find_orphans(app.desk.config)
    if not found:
        click.echo(_("every open ticket is in a configured group and assigned to a configured "
                     "agent or to nobody"))
        return
    for group in found.groups:
        click.echo(orphans.group_warning(group))
    for agent in found.agents:
        click.echo(orphans.agent_warning(agent))
    raise click.exceptions.Exit(1)
