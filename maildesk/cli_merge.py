"""``maildesk tickets merge``: merge a duplicate ticket into another, as ``#merge`` does.

The work is maildesk.merging's. The admin acts as an agent would, in one transaction,
and the notices to the people of the duplicate go to the outbox, which the daemon (or
``maildesk outbox send``) sends.
"""

from __future__ import annotations

from typing import Any

import click

from maildesk.cli_admin import tickets
from maildesk.i18n import _, current_language, ngettext

# The actor of the audit events of a merge made with this command.
ADMIN_ACTOR = "admin"


@tickets.command("merge", help=_(
    "Merge ticket SOURCE (a duplicate) into ticket TARGET: its messages, Message-IDs and "
    "people move to TARGET, SOURCE is closed, and its requester and participants get a "
    "notice that the request goes on as TARGET."))
@click.argument("source", type=click.IntRange(min=1), metavar=_("SOURCE"))
@click.argument("target", type=click.IntRange(min=1), metavar=_("TARGET"))
@click.pass_obj
def tickets_merge(app: Any, source: int, target: int) -> None:
    """Merge ticket SOURCE into ticket TARGET."""
    from maildesk import lifecycle, merging, models

    app.open()
    with models.database_proxy.atomic():
        duplicate = models.Ticket.get_or_none(models.Ticket.id == source)
        if duplicate is None:
            raise click.ClickException(_("ticket {number} not found").format(number=source))
        found = models.Ticket.get_or_none(models.Ticket.id == target)
        refusal = merging.check(duplicate, found, target)
        if refusal is not None or found is None:
            assert refusal is not None
            raise click.ClickException(_("ticket {source} cannot be merged into ticket "
                                         "{target}: {reason}").format(
                source=source, target=target, reason=refusal.text(current_language())))
        try:
            result = merging.merge(app.desk, duplicate, found, ADMIN_ACTOR,
                                   lifecycle.Source.AGENT_COMMAND, models.utcnow())
        except merging.MergeRefused as error:
            # Another process changed one of the tickets since the check above.
            raise click.ClickException(_("ticket {source} cannot be merged into ticket "
                                         "{target}: {reason}").format(
                source=source, target=target,
                reason=error.refusal.text(current_language()))) from None

    click.echo(_("Ticket {source} was merged into ticket {target} and closed.").format(
        source=app.desk.tag(source), target=app.desk.tag(target)))
    if result.added:
        click.echo(ngettext("{count} new participant of ticket {target}: {addresses}",
                            "{count} new participants of ticket {target}: {addresses}",
                            len(result.added)).format(
            count=len(result.added), target=app.desk.tag(target),
            addresses=", ".join(result.added)))
    if result.skipped:
        click.echo(_("Not added, because the ticket has the maximum number of participants: "
                     "{addresses}").format(addresses=", ".join(result.skipped)))
    if result.notified:
        click.echo(_("Notice queued for: {addresses}").format(
            addresses=", ".join(result.notified)))
    else:
        click.echo(_("Nobody was sent a notice of the merge."))
