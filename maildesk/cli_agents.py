"""``maildesk agents``: the agents known to the desk, and mail held for an agent to accept."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from maildesk.clicktext import INTEGER
from maildesk.i18n import _, format_duration, ngettext
from maildesk.terminal import terminal_safe

logger = logging.getLogger(__name__)


@click.group(help=_("List agents and groups; accept or discard held mail."))
def agents() -> None:
    """List agents and groups; accept or discard held mail."""


@agents.command("list", help=_("Show each agent's login, name, addresses, groups, tier and "
                                "command permission."))
@click.option("--all", "show_all", is_flag=True,
              help=_("Also show agents removed from the configuration."))
@click.pass_obj
def agents_list(app: Any, show_all: bool) -> None:
    """Show each agent's login, name, addresses, groups, tier and command permission."""
    from maildesk import models
    from maildesk.agents import agent_tier

    app.open()
    query = models.Agent.select().order_by(models.Agent.login)
    if not show_all:
        query = query.where(models.Agent.active == True)  # noqa: E712
    rows = list(query)

    header = (_("login"), _("name"), _("addresses"), _("groups"), _("tier"), _("commands"))
    table = [header]
    for agent in rows:
        tier = agent_tier(agent)
        table.append((
            agent.login + ("" if agent.active else " " + _("(removed)")),
            agent.name,
            ", ".join(agent.addresses.split()),
            ", ".join(agent.groups.split()) or "—",
            str(tier) if tier is not None else "—",
            _("yes") if agent.commands else _("no"),
        ))
    widths = [max(len(row[column]) for row in table) for column in range(len(header))]
    for row in table:
        click.echo("  ".join(value.ljust(width) for value, width in zip(row, widths,
                                                                          strict=True)).rstrip())
    click.echo(ngettext("{count} agent", "{count} agents", len(rows)).format(count=len(rows)))


@agents.command("held", help=_("List mail held for an agent: strangers using a ticket's tag, "
                                "refused agent mail."))
@click.pass_obj
def agents_held(app: Any) -> None:
    """List mail held for an agent: strangers using a ticket's tag, refused agent mail."""
    from maildesk import models

    app.open()
    rows = list(models.Message.select().where(models.Message.kind == "held")
                .order_by(models.Message.id))
    now = models.utcnow()
    ages = {entry.id: format_duration(now - entry.created_at) for entry in rows}
    header = (_("entry"), _("ticket"), _("held for"), _("author"), _("subject"))
    age_width = max([len(header[2]), *(len(age) for age in ages.values())])
    author_width = max([len(header[3]), *(len(terminal_safe(entry.author)) for entry in rows)])
    if rows:
        click.echo(f"{header[0]:>6}  {header[1]:>12}  {header[2]:<{age_width}}  "
                   f"{header[3]:<{author_width}} {header[4]}")
    reasons = _hold_reasons(rows)
    for entry in rows:
        click.echo(f"{entry.id:>6}  {app.desk.tag(entry.ticket_id):>12}  "
                   f"{ages[entry.id]:<{age_width}}  "
                   f"{terminal_safe(entry.author):<{author_width}} "
                   f"{terminal_safe(entry.subject)}")
        if entry.id in reasons:
            click.echo("        " + _("held because: {reason}").format(
                reason=terminal_safe(reasons[entry.id])))
    if rows:
        click.echo(_("Accept one with: maildesk agents accept ENTRY --as LOGIN"))
        click.echo(_("Discard one with: maildesk agents discard ENTRY --as LOGIN"))
    click.echo(ngettext("{count} held message", "{count} held messages", len(rows))
               .format(count=len(rows)))


def _hold_reasons(entries: list[Any]) -> dict[int, str]:
    """Map each held entry to the reason its ticket's history gives, in the reader's language.

    The event names the entry, or for events written before it did, the entry's Message-ID.
    """
    import json

    from maildesk import models
    from maildesk.reasons import reason_text

    by_message_id = {entry.message_id: entry.id for entry in entries if entry.message_id}
    tickets = {entry.ticket_id for entry in entries}
    if not tickets:
        return {}
    events = (models.Event.select()
              .where(models.Event.ticket.in_(tickets),
                     models.Event.action.in_(("held", "command_rejected", "command_invalid",
                                              "thread_unconfirmed")))
              .order_by(models.Event.id))
    reasons: dict[int, str] = {}
    for event in events:
        detail = json.loads(event.detail) if event.detail else {}
        if not isinstance(detail, dict):
            continue
        entry_id = detail.get("entry") or by_message_id.get(detail.get("message_id"))
        if entry_id is not None and detail.get("reason"):
            reasons[entry_id] = reason_text(detail)
    return reasons


@agents.command("accept", help=_(
    "Accept a held message: a stranger's mail joins the ticket and they become a "
    "participant.\n\nA refused agent mail becomes an internal note; its commands are not run."))
@click.argument("entry", type=INTEGER, metavar=_("ENTRY"))
@click.option("--as", "actor", required=True, metavar=_("LOGIN"),
              help=_("Login of the agent who accepts it."))
@click.pass_obj
def agents_accept(app: Any, entry: int, actor: str) -> None:
    """Accept a held message: a stranger's mail joins the ticket and they become a participant.

    A refused agent mail becomes an internal note; its commands are not run.
    """
    from maildesk.conversation import accept_held

    app.open()
    login = _agent_login(actor)
    with _held_entry_errors(entry):
        accepted = accept_held(entry, login)
    click.echo(_("message {entry} accepted on ticket {ticket}").format(
        entry=accepted.id, ticket=accepted.ticket_id))


@agents.command("discard", help=_(
    "Discard a held message: it stays on the ticket for the record, but it does not join "
    "the conversation, its commands are not run and its sender is not notified.\n\n"
    "An agent's mail held for invalid commands is discarded automatically once a later "
    "mail of the same agent on that ticket is accepted."))
@click.argument("entry", type=INTEGER, metavar=_("ENTRY"))
@click.option("--as", "actor", required=True, metavar=_("LOGIN"),
              help=_("Login of the agent who discards it."))
@click.option("--reason", metavar=_("REASON"),
              help=_("Why it is discarded, recorded in the ticket's history."))
@click.pass_obj
def agents_discard(app: Any, entry: int, actor: str, reason: str | None) -> None:
    """Discard a held message: it stays on the ticket but does not join the conversation."""
    from maildesk.conversation import discard_held

    app.open()
    login = _agent_login(actor)
    with _held_entry_errors(entry):
        discarded = discard_held(entry, login, reason.strip() if reason else None)
    click.echo(_("message {entry} discarded on ticket {ticket}").format(
        entry=discarded.id, ticket=discarded.ticket_id))


@agents.command("summary", help=_(
    "Print the daily summary that an agent or a group manager would get now, without "
    "sending it."))
@click.argument("who", metavar=_("LOGIN_OR_ADDRESS"))
@click.option("--raw", is_flag=True,
              help=_("Print the mail as it is sent (MIME, encoded), not a readable preview."))
@click.pass_obj
def agents_summary(app: Any, who: str, raw: bool) -> None:
    """Print the daily summary that an agent or a group manager would get now."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from maildesk.cli_admin import _readable_preview
    from maildesk.dailysummary import AGENT, DailySummary
    from maildesk.mailbuild import Recipient, build_message, new_message_id
    from maildesk.notify import desk_context

    app.open()
    desk = app.desk
    summary = DailySummary(desk)
    wanted = who.strip().lower()
    config_agent = next((agent for agent in desk.config.agents if agent.login.lower() == wanted
                         or wanted in (address.lower() for address in agent.addresses)), None)
    recipients = [recipient for recipient in summary.recipients(everyone=True)
                  if (recipient.kind == AGENT and config_agent is not None
                      and recipient.login == config_agent.login)
                  or (recipient.kind != AGENT and recipient.address == wanted)]
    if not recipients:
        raise click.ClickException(_(
            "'{who}' is neither an agent's login or address nor a group manager's address "
            "in the configuration").format(who=who))

    now = datetime.now(UTC)
    for index, recipient in enumerate(recipients):
        if index:
            click.echo("")
        context = (summary.agent_context(recipient, now) if recipient.kind == AGENT
                   else summary.manager_context(recipient, now))
        if context is None:
            click.echo(_("{address} has no open tickets: no summary would be sent").format(
                address=recipient.address))
            continue
        context["summary"]["day"] = now.astimezone(ZoneInfo(desk.config.desk.timezone)).date()
        context["desk"] = desk_context(desk)
        template = "agent_summary" if recipient.kind == AGENT else "manager_summary"
        rendered = desk.templates.render(template, recipient.language, context)
        message = build_message(
            rendered, sender=Recipient(desk.config.desk.address, desk.config.desk.name),
            to=[Recipient(recipient.address, recipient.name)],
            message_id=new_message_id("preview", None, desk.message_id_domain),
            reply_to=desk.config.desk.address, ticket=None)
        if raw:
            click.echo(message.as_string())
        else:
            click.echo(_readable_preview(message.headers, rendered.text,
                                         rendered.html is not None))


def _agent_login(actor: str) -> str:
    """Return the login of the agent ``actor`` names (login or address); fail if none."""
    from maildesk.agents import find_agent

    agent = find_agent(actor)
    if agent is None:
        raise click.ClickException(_("there is no agent '{agent}'").format(agent=actor))
    return str(agent.login)


@contextmanager
def _held_entry_errors(entry: int) -> Iterator[None]:
    """Turn a missing or no longer held entry into an error that points to the list."""
    from maildesk.conversation import NotHeldError
    from maildesk.reasons import message_kind_label

    try:
        yield
    except NotHeldError as error:
        raise click.ClickException(
            _("message {entry} is not held (kind of entry: {kind}): see 'maildesk agents "
              "held'").format(entry=entry, kind=message_kind_label(error.kind))) from None
    except LookupError:
        raise click.ClickException(
            _("held message {entry} not found: see 'maildesk agents held'").format(entry=entry)
        ) from None
