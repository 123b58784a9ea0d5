"""Admin commands: look at tickets, the outbox and the quarantine, check templates."""

from __future__ import annotations

import json
from typing import Any

import click

from maildesk.i18n import _, ngettext


def _status_label(status: str) -> str:
    labels = {
        "new": _("new"), "assigned": _("assigned"), "in_progress": _("in progress"),
        "pending": _("waiting for the user"), "resolved": _("resolved"),
        "closed": _("closed"),
    }
    return labels.get(status, status)


@click.group()
def tickets() -> None:
    """List and show tickets."""


@tickets.command("list")
@click.option("--status", help=_("Show only tickets with this status."))
@click.option("--limit", default=50, show_default=True, help=_("Maximum number of tickets."))
@click.pass_obj
def tickets_list(app: Any, status: str | None, limit: int) -> None:
    """List the newest tickets."""
    from maildesk import models

    app.open()
    query = models.Ticket.select().order_by(models.Ticket.id.desc()).limit(limit)
    if status:
        query = query.where(models.Ticket.status == status)
    rows = list(query)
    for ticket in rows:
        click.echo(f"{app.desk.tag(ticket.id):>12}  {_status_label(ticket.status):<22} "
                   f"P{ticket.priority}  {ticket.requester.address:<32} {ticket.subject}")
    click.echo(ngettext("{count} ticket", "{count} tickets", len(rows)).format(count=len(rows)))


@tickets.command("show")
@click.argument("number", type=int)
@click.pass_obj
def tickets_show(app: Any, number: int) -> None:
    """Show one ticket with its conversation, attachments and audit trail."""
    from maildesk import models

    app.open()
    ticket = models.Ticket.get_or_none(models.Ticket.id == number)
    if ticket is None:
        raise click.ClickException(_("ticket {number} not found").format(number=number))

    requester = ticket.requester
    click.echo(f"{app.desk.tag(ticket.id)} {ticket.subject}")
    click.echo(_("Status: {status}   Priority: P{priority}   Group: {group}   "
                 "Assignee: {assignee}").format(
        status=_status_label(ticket.status), priority=ticket.priority,
        group=ticket.group or "-", assignee=ticket.assignee or "-"))
    click.echo(_("Requester: {name} <{address}>").format(name=requester.name,
                                                        address=requester.address))
    if ticket.linked_ticket_id:
        click.echo(_("Follows up ticket {number}").format(number=ticket.linked_ticket_id))

    for entry in ticket.messages.order_by(models.Message.id):
        click.echo("")
        click.echo(f"--- {entry.created_at:%Y-%m-%d %H:%M} {entry.kind} "
                   f"{entry.author_name} <{entry.author}> {entry.message_id or ''}")
        click.echo(entry.reply_text or entry.text)
        for attachment in entry.attachments:
            click.echo(_("Attachment: {name} ({type}, {size} B, sha256 {sha})").format(
                name=attachment.filename, type=attachment.content_type,
                size=attachment.size, sha=attachment.sha256[:12]))

    click.echo("")
    click.echo(_("Audit trail:"))
    for event in ticket.events.order_by(models.Event.id):
        detail = json.loads(event.detail) if event.detail else {}
        reason = detail.get("reason", "") if isinstance(detail, dict) else ""
        click.echo(f"  {event.created_at:%Y-%m-%d %H:%M:%S} {event.actor} {event.action} "
                   f"{reason}")


@click.group()
def outbox() -> None:
    """Inspect and retry outgoing mail."""


@outbox.command("list")
@click.option("--state", help=_("pending, sending, sent, failed or cancelled"))
@click.option("--limit", default=50, show_default=True)
@click.pass_obj
def outbox_list(app: Any, state: str | None, limit: int) -> None:
    """List outgoing mail, newest first."""
    from maildesk import models

    app.open()
    query = models.Outbox.select().order_by(models.Outbox.id.desc()).limit(limit)
    if state:
        query = query.where(models.Outbox.state == state)
    for row in query:
        click.echo(f"{row.id:>6} {row.state:<9} {row.attempts:>2} {row.kind:<12} "
                   f"{row.recipients.strip():<32} {row.subject}")
        if row.last_error and row.state != "sent":
            click.echo(f"       {row.last_error}")


@outbox.command("retry")
@click.argument("outbox_id", type=int)
@click.pass_obj
def outbox_retry(app: Any, outbox_id: int) -> None:
    """Queue a failed mail again and try to send it now."""
    from maildesk import outbox as outbox_module
    from maildesk.wiring import make_sender

    app.open()
    if not outbox_module.retry(outbox_id):
        raise click.ClickException(_("outbox entry {id} not found or already sent").format(
            id=outbox_id))
    sent = make_sender(app.desk).deliver_due()
    click.echo(ngettext("{count} mail sent", "{count} mails sent", sent).format(count=sent))


@outbox.command("send")
@click.pass_obj
def outbox_send(app: Any) -> None:
    """Send every due mail now."""
    from maildesk.wiring import make_sender

    sent = make_sender(app.desk).deliver_due()
    click.echo(ngettext("{count} mail sent", "{count} mails sent", sent).format(count=sent))


@click.group()
def quarantine() -> None:
    """Mail that could not be processed."""


@quarantine.command("list")
@click.pass_obj
def quarantine_list(app: Any) -> None:
    """List quarantined mail that is still held."""
    from maildesk import models

    app.open()
    rows = list(models.Quarantine.select().where(models.Quarantine.state == "held")
                .order_by(models.Quarantine.id))
    for row in rows:
        click.echo(f"{row.id:>5} {row.created_at:%Y-%m-%d %H:%M} {row.sender:<32} "
                   f"{row.subject}\n      {row.error}")
    click.echo(ngettext("{count} message in quarantine", "{count} messages in quarantine",
                        len(rows)).format(count=len(rows)))


@quarantine.command("retry")
@click.argument("quarantine_id", type=int)
@click.pass_obj
def quarantine_retry(app: Any, quarantine_id: int) -> None:
    """Process a quarantined mail again (after fixing the cause)."""
    from maildesk import models, pipeline
    from maildesk import quarantine as quarantine_module
    from maildesk.wiring import load_rules

    desk = app.desk
    row = models.Quarantine.get_or_none(models.Quarantine.id == quarantine_id)
    if row is None or row.state != "held":
        raise click.ClickException(_("quarantine entry {id} not found or not held").format(
            id=quarantine_id))
    raw = desk.store.get_message(row.raw_sha256)
    quarantine_module.forget(row.raw_sha256)
    outcome = pipeline.process(desk, raw, f"quarantine:{row.id}", load_rules(desk))
    if outcome.action != "quarantined":
        models.Quarantine.update(state="released").where(
            models.Quarantine.id == row.id).execute()
    click.echo(_("{action}: ticket {ticket}").format(action=outcome.action,
                                                     ticket=outcome.ticket or "-"))


@click.group()
def templates() -> None:
    """Check and preview mail templates."""


@templates.command("check")
@click.pass_obj
def templates_check(app: Any) -> None:
    """Render every template in every language against a sample ticket."""
    from maildesk.notify import sample_context

    desk = app.desk
    errors = desk.templates.check(sample_context(desk))
    for error in errors:
        click.echo(str(error), err=True)
    for language, name in desk.templates.missing_translations():
        click.echo(_("warning: template {name} does not exist in {language}; mail in "
                     "{language} falls back to another language").format(
            name=name, language=language), err=True)
    if errors:
        raise SystemExit(1)
    click.echo(_("all templates render"))


@templates.command("render")
@click.argument("name")
@click.option("--ticket", "number", type=int, help=_("Render for this ticket."))
@click.option("--language", help=_("pl or en (default: the ticket's language)."))
@click.pass_obj
def templates_render(app: Any, name: str, number: int | None, language: str | None) -> None:
    """Print one finished mail, headers and all, without sending it."""
    from maildesk import models
    from maildesk.mailbuild import Recipient, build_message, new_message_id
    from maildesk.notify import desk_context, sample_context, ticket_context

    desk = app.desk
    context = sample_context(desk)
    to = Recipient("zofia@example.org", "Zofia Wiśniewska")
    if number is not None:
        ticket = models.Ticket.get_or_none(models.Ticket.id == number)
        if ticket is None:
            raise click.ClickException(_("ticket {number} not found").format(number=number))
        context["ticket"] = ticket_context(desk, ticket)
        language = language or ticket.language
        to = Recipient(ticket.requester.address, ticket.requester.name)
    context["desk"] = desk_context(desk)
    rendered = desk.templates.render(name, language, context)
    message = build_message(
        rendered, sender=Recipient(desk.config.desk.address, desk.config.desk.name), to=[to],
        message_id=new_message_id("preview", number, desk.message_id_domain),
        reply_to=desk.config.desk.address, ticket=number,
    )
    click.echo(message.as_string())
