"""``maildesk rules check`` and ``maildesk rules test``: the admin's tools for routing rules.

The commands read the rules directory and the environment (groups, agents, templates,
VIPs, business hours) from the application object in ``ctx.obj``. The main CLI builds
that object from the configuration, and ``RulesApplication`` lists what it must provide.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

import click

from maildesk.clicktext import PathType
from maildesk.errors import ParseError
from maildesk.i18n import LANGUAGES, _, current_language, ngettext
from maildesk.parse import parse_message
from maildesk.rules import RuleEnvironment, RulesError, RuleSet, explain_messages, load_rules


class RulesApplication(Protocol):
    """The interface of ``ctx.obj`` that the rules commands use."""

    def rules_directory(self) -> Path: ...

    def rule_environment(self) -> RuleEnvironment: ...


@click.group("rules", help=_("Check and test the routing rules."))
def rules() -> None:
    pass


@rules.command("check", help=_("Validate every rules file; exit with 1 if any is invalid."))
@click.pass_obj
def check(application: RulesApplication) -> None:
    directory = application.rules_directory()
    if not directory.is_dir():
        # Most often a typo in 'rules:', and then new tickets reach no group unnoticed.
        click.echo(_("the rules folder {directory} does not exist: check 'rules' in "
                     "maildesk.yaml; until it exists, no rule routes any mail").format(
            directory=directory), err=True)
        raise click.exceptions.Exit(1)
    ruleset = _load_or_exit(directory, application.rule_environment())

    if not ruleset.files:
        click.echo(
            _("No rule files in {directory}: the rules route no mail.").format(directory=directory)
        )
        return
    click.echo(
        ngettext(
            "The rules are valid: {count} rule in {directory}.",
            "The rules are valid: {count} rules in {directory}.",
            len(ruleset),
        ).format(count=len(ruleset), directory=directory)
    )


@rules.command(
    "test",
    help=_(
        "Explain, rule by rule, how each mail would be routed. "
        "Nothing is stored and nothing is sent."
    ),
)
@click.argument(
    "messages",
    metavar=_("MAIL_FILE..."),
    nargs=-1,
    required=True,
    type=PathType(exists=True, dir_okay=False, path_type=Path),
)
@click.option(
    "--language",
    type=click.Choice(LANGUAGES),
    default=None,
    help=_("Language of the explanation (default: the language of the interface)."),
)
@click.option(
    "--followup",
    is_flag=True,
    help=_("Treat each mail as a follow-up to an existing ticket."),
)
@click.option(
    "--received-at",
    "received_at",
    metavar=_("DATETIME"),
    default=None,
    help=_(
        "When the mail is taken to be received, in ISO 8601, e.g. 2026-12-04T18:30+01:00; "
        "a time without an offset is in the desk's time zone (default: its Date header). "
        "Use it to test business hours."
    ),
)
@click.pass_obj
def test(
    application: RulesApplication,
    messages: tuple[Path, ...],
    language: str | None,
    followup: bool,
    received_at: str | None,
) -> None:
    environment = application.rule_environment()
    moment = _parse_moment(received_at, ZoneInfo(environment.timezone))
    ruleset = _load_or_exit(application.rules_directory(), environment)

    raw_messages = [(str(path), path.read_bytes()) for path in messages]
    unreadable = [label for label, raw in raw_messages if not _parses(raw)]
    click.echo(
        explain_messages(
            raw_messages,
            ruleset,
            language or current_language(),
            received_at=moment,
            followup=followup,
        )
    )
    if unreadable:
        raise click.exceptions.Exit(1)


def _load_or_exit(directory: Path, environment: RuleEnvironment) -> RuleSet:
    """Load the rules, or print every error with its file:line:column and exit with 1."""
    try:
        return load_rules(directory, environment)
    except RulesError as error:
        for problem in error.errors:
            click.echo(str(problem), err=True)
        click.echo(
            ngettext(
                "{count} error in the routing rules; a running daemon keeps the rules it "
                "loaded last.",
                "{count} errors in the routing rules; a running daemon keeps the rules it "
                "loaded last.",
                len(error.errors),
            ).format(count=len(error.errors)),
            err=True,
        )
        raise click.exceptions.Exit(1) from error


def _parse_moment(value: str | None, timezone: ZoneInfo) -> datetime | None:
    """Read an ISO 8601 time, taking one without an offset as the desk's local time."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise click.BadParameter(
            _("'{value}' is not a date and time: write e.g. 2026-12-04T18:30+01:00").format(
                value=value
            ),
            param_hint="--received-at",
        ) from error
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone)


def _parses(raw: bytes) -> bool:
    try:
        parse_message(raw)
    except ParseError:
        return False
    return True
