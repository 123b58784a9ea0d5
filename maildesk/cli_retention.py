"""``maildesk tickets purge``: delete closed tickets after the desk's retention period.

The work is maildesk.retention's. This module reads the date in the desk's time zone,
shows what would go, and deletes nothing without ``--yes``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import click

from maildesk.cli_admin import tickets
from maildesk.i18n import _, ngettext

if TYPE_CHECKING:
    from maildesk.retention import PurgeReport


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as error:
        raise click.BadParameter(_("'{value}' is not a date: write e.g. 2026-11-30").format(
            value=value), param_hint="'--closed-before'") from error


@tickets.command("purge", help=_(
    "Delete the tickets closed before DATE, with their messages, attachments, audit trail "
    "and sent mail, for a retention period (GDPR). Without --yes it only counts them."))
@click.option("--closed-before", "closed_before", required=True, metavar=_("DATE"),
              help=_("Delete tickets closed before this day, e.g. 2024-01-01."))
@click.option("--yes", "confirmed", is_flag=True,
              help=_("Delete them; without it nothing is deleted."))
@click.pass_obj
def tickets_purge(app: Any, closed_before: str, confirmed: bool) -> None:
    """Delete the tickets closed before a day, or count them without ``--yes``."""
    from maildesk import retention

    app.open()
    desk = app.desk
    zone = ZoneInfo(desk.config.desk.timezone)
    day = _date(closed_before)
    if day > datetime.now(zone).date():
        raise click.BadParameter(_("{day} is in the future: no ticket is closed after "
                                   "today").format(day=day.isoformat()),
                                 param_hint="'--closed-before'")
    cutoff = datetime.combine(day, datetime.min.time(), zone)

    if not confirmed:
        counted = retention.preview(cutoff)
        # One message per sentence: a sentence glued from pieces gets no plural right.
        click.echo(ngettext(
            "{count} ticket closed before {day} would be deleted, with its messages "
            "({messages}), attachments ({attachments}) and sent mail ({outgoing}).",
            "{count} tickets closed before {day} would be deleted, with their messages "
            "({messages}), attachments ({attachments}) and sent mail ({outgoing}).",
            counted.tickets).format(count=counted.tickets, day=day.isoformat(),
                                    messages=counted.messages,
                                    attachments=counted.attachments,
                                    outgoing=counted.outgoing))
        click.echo(_("Contacts that no ticket would name any more, to be deleted: {count}")
                   .format(count=counted.contacts))
        _report_kept(counted)
        click.echo(_("Nothing was deleted. Run the command again with --yes to delete them; "
                     "take a backup first (docs/operations.md)."))
        return

    done = retention.purge(desk, cutoff)
    click.echo(ngettext(
        "{count} ticket deleted, with its messages ({messages}), attachments "
        "({attachments}) and sent mail ({outgoing}); stored mails and files removed: "
        "{contents}.",
        "{count} tickets deleted, with their messages ({messages}), attachments "
        "({attachments}) and sent mail ({outgoing}); stored mails and files removed: "
        "{contents}.",
        done.tickets).format(count=done.tickets, messages=done.messages,
                             attachments=done.attachments, outgoing=done.outgoing,
                             contents=done.stored_contents))
    click.echo(_("Contacts that no ticket names any more, deleted: {count}").format(
        count=done.contacts))
    _report_kept(done)


def _report_kept(report: PurgeReport) -> None:
    if report.kept_for_outbox:
        click.echo(ngettext(
            "{count} closed ticket is kept because its mail still waits in the outbox.",
            "{count} closed tickets are kept because their mail still waits in the outbox.",
            report.kept_for_outbox).format(count=report.kept_for_outbox))
    if report.kept_newest is not None:
        click.echo(_("Ticket {number} is kept because it has the highest number: SQLite would "
                     "give that number to the next new ticket. A later purge deletes it once "
                     "a newer ticket exists.").format(number=report.kept_newest))
