"""``maildesk report``: the service level report of a month or a range of days.

The figures come from maildesk.slareport. This module picks the period in the desk's
time zone and writes the report as a table for people or as CSV for a spreadsheet.
"""

from __future__ import annotations

import csv
import sys
import textwrap
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import click
from babel.numbers import format_decimal

from maildesk.cli_admin import _known_group, _priority_label
from maildesk.i18n import _, current_language, ngettext
from maildesk.terminal import terminal_safe

if TYPE_CHECKING:
    from maildesk.slareport import ReportLine, SlaReport, TargetTally


def _month(value: str | None) -> tuple[date, date] | None:
    """Read YYYY-MM as its first day and the first day of the next month."""
    if value is None:
        return None
    try:
        first = datetime.strptime(value, "%Y-%m").date()
    except ValueError as error:
        raise click.BadParameter(_("'{value}' is not a month: write e.g. 2026-11").format(
            value=value), param_hint="'--month'") from error
    following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    return first, following


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as error:
        raise click.BadParameter(_("'{value}' is not a date: write e.g. 2026-11-30").format(
            value=value), param_hint=f"'{option}'") from error


def _period(month: str | None, first: str | None, last: str | None,
            today: date) -> tuple[date, date]:
    """Return the first day and the day after the last of the report, local dates.

    Without options the period is the last whole month before ``today``.
    """
    start_day, end_day = _day(first, "--from"), _day(last, "--to")
    by_month = _month(month)
    if by_month is not None and (start_day or end_day):
        raise click.UsageError(_("give either --month or --from and --to, not both"))
    if by_month is not None:
        return by_month
    if start_day or end_day:
        # Without --from, the month of the last day: "--to 2026-10-15" reports 1-15 October.
        start = start_day or (end_day or today).replace(day=1)
        end = (end_day or today) + timedelta(days=1)
        if end <= start:
            raise click.BadParameter(_("--to is before --from"), param_hint="'--to'")
        return start, end
    this_month = today.replace(day=1)
    return (this_month - timedelta(days=1)).replace(day=1), this_month


@click.command("report", help=_(
    "Report service levels for the tickets opened in a period: volumes, SLA targets met "
    "and missed, response and resolution times, ratings. Without options: last month."))
@click.option("--month", metavar=_("YYYY-MM"), help=_("The month to report, e.g. 2026-11."))
@click.option("--from", "first", metavar=_("DATE"),
              help=_("The first day to report (default: the first of the month of --to)."))
@click.option("--to", "last", metavar=_("DATE"),
              help=_("The last day to report, included (default: today)."))
@click.option("--group", metavar=_("GROUP"),
              help=_("Report only the tickets of this group."))
@click.option("--csv", "as_csv", is_flag=True,
              help=_("Write CSV for a spreadsheet instead of a table."))
@click.pass_obj
def report(app: Any, month: str | None, first: str | None, last: str | None,
           group: str | None, as_csv: bool) -> None:
    """Report service levels for the tickets opened in a period."""
    from maildesk.slareport import build_report

    app.open()
    desk = app.desk
    zone = ZoneInfo(desk.config.desk.timezone)
    start_day, end_day = _period(month, first, last, datetime.now(zone).date())
    start = datetime.combine(start_day, datetime.min.time(), zone)
    end = datetime.combine(end_day, datetime.min.time(), zone)
    known_group = _known_group(group) if group else None

    figures = build_report(desk, start, end, known_group)
    if as_csv:
        _write_csv(figures)
        return
    click.echo(_render(figures, start_day, end_day - timedelta(days=1), desk))


def _share(tally: TargetTally) -> str:
    """Write "18/20 (90%)", or "-" when no target of the set was met or missed yet.

    The percentage is rounded down, so 100% means that no target was missed: rounded to
    the nearest, 249 of 250 would read 100%.
    """
    if tally.met_share is None:
        return "-"
    return f"{tally.met}/{tally.decided} ({tally.met * 100 // tally.decided}%)"


def _hours(value: timedelta | None) -> str:
    """Write a duration as hours and minutes, "26:05", or "-" for none."""
    if value is None:
        return "-"
    minutes = round(value.total_seconds() / 60)
    return f"{minutes // 60}:{minutes % 60:02d}"


def _rating(line: ReportLine) -> str:
    """Write the average rating with the reader's decimal sign and the number of ratings."""
    if line.average_rating is None:
        return "-"
    average = format_decimal(line.average_rating, format="0.0", locale=current_language())
    return f"{average} ({len(line.ratings)})"


def _render(figures: SlaReport, first: date, last: date, desk: Any) -> str:
    """Write the report as the admin reads it in a terminal or a mail."""
    title = _("Service level report, tickets opened from {first} to {last} ({zone})").format(
        first=first.isoformat(), last=last.isoformat(), zone=desk.config.desk.timezone)
    lines = [title]
    if figures.group is not None:
        lines.append(_("Group: {group}").format(group=terminal_safe(figures.group)))
    total = figures.total
    lines += [
        "",
        ngettext("{count} ticket opened; still open: {open}; escalated: {escalated}",
                 "{count} tickets opened; still open: {open}; escalated: {escalated}",
                 total.opened).format(count=total.opened, open=figures.still_open,
                                      escalated=total.escalated),
        _("Tickets resolved in the period, whenever they were opened: {count}").format(
            count=figures.resolved_in_period),
    ]
    if not total.opened:
        return "\n".join(lines)

    header = (_("priority"), _("opened"), _("first response in time"), _("resolution in time"),
              _("median response"), _("median resolution"), _("rating"))
    rows = [(_priority_label(priority), line)
            for priority, line in sorted(figures.by_priority.items())]
    rows.append((_("all"), total))
    lines += ["", *_table(header, rows)]
    if figures.group is None and len(figures.by_group) > 1:
        group_rows = [(terminal_safe(name) or _("no group"), line)
                      for name, line in sorted(figures.by_group.items())]
        lines += ["", *_table((_("group"), *header[1:]), group_rows)]

    lines += ["", *textwrap.wrap(_(
        "Targets still running are not counted as met or missed. Times are the business "
        "hours (h:mm) that the SLA clock counted from the opening of the ticket, without "
        "waiting for the user. Rating: average on the 1-5 scale (number of ratings)."),
        width=88)]
    return "\n".join(lines)


def _table(header: tuple[str, ...], rows: list[tuple[str, ReportLine]]) -> list[str]:
    cells = [header] + [
        (name, str(line.opened), _share(line.first_response), _share(line.resolution),
         _hours(line.median_response), _hours(line.median_resolution), _rating(line))
        for name, line in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(header))]
    return ["  ".join(cell.ljust(width) if column == 0 else cell.rjust(width)
                      for column, (cell, width) in enumerate(zip(row, widths, strict=True)))
            .rstrip() for row in cells]


def _write_csv(figures: SlaReport) -> None:
    """Write one row per priority, group and the total; minutes for the durations."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["dimension", "key", "opened", "first_response_met",
                     "first_response_missed", "first_response_running", "resolution_met",
                     "resolution_missed", "resolution_running", "median_response_minutes",
                     "median_resolution_minutes", "escalated", "ratings", "average_rating"])

    def minutes(value: timedelta | None) -> str:
        return "" if value is None else str(round(value.total_seconds() / 60))

    rows: list[tuple[str, str, ReportLine]] = [
        ("priority", str(priority), line) for priority, line in sorted(figures.by_priority.items())]
    rows += [("group", name, line) for name, line in sorted(figures.by_group.items())]
    rows.append(("total", "", figures.total))
    for dimension, key, line in rows:
        writer.writerow([
            dimension, key, line.opened,
            line.first_response.met, line.first_response.missed, line.first_response.running,
            line.resolution.met, line.resolution.missed, line.resolution.running,
            minutes(line.median_response), minutes(line.median_resolution), line.escalated,
            len(line.ratings),
            "" if line.average_rating is None else f"{line.average_rating:.2f}"])
