"""Commands that set a desk up: ``init`` writes a starter, ``demo`` runs a sample desk."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import click

from maildesk.clicktext import PathType
from maildesk.i18n import _, current_language, ngettext
from maildesk.resources import PACKAGE_DIR, demo_mailbox, shipped

logger = logging.getLogger(__name__)

DEMO_MARKER = ".maildesk-demo"
# Starter configurations under data/desk-models/, one per service desk model.
DESK_MODELS = ("call-centre", "unskilled", "skilled", "expert")


def _copy_tree(source: Path, target: Path, *skip: str) -> None:
    shutil.copytree(source, target, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", ".keep", *skip))


def _copy_rules(language: str, target: Path) -> None:
    """Copy the starter rules: Polish names at the top of ``rules/``, English in ``en/``."""
    rules = shipped("rules")
    if language == "en":
        _copy_tree(rules / "en", target)
    else:
        _copy_tree(rules, target, "en")


@click.command(help=_("Write a commented starter configuration, rules and templates into "
                       "DIRECTORY."))
@click.argument("directory", type=PathType(path_type=Path), metavar=_("DIRECTORY"))
@click.option("--language", type=click.Choice(["pl", "en"]), default=None,
              help=_("Language of the starter configuration and rules (default: the "
                     "language of this help, from MAILDESK_LANGUAGE or the locale)."))
@click.option("--model", type=click.Choice(DESK_MODELS), default=None,
              help=_("Start from the configuration of a service desk model: call-centre "
                     "(logs and passes on), unskilled (logs, dispatches, tracks, reports "
                     "back), skilled (solves most tickets) or expert (handles whole "
                     "incidents)."))
def init(directory: Path, language: str | None, model: str | None) -> None:
    """Write a commented starter configuration, rules and templates into DIRECTORY."""
    language = language or current_language()
    config_path = directory / "maildesk.yaml"
    if config_path.exists():
        raise click.ClickException(_("{path} already exists: not overwriting it").format(
            path=config_path))

    starter = (PACKAGE_DIR / "data" / "desk-models" / f"{model}.{language}.yaml" if model
               else PACKAGE_DIR / "data" / f"maildesk.{language}.yaml")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(starter, config_path)
        _copy_tree(shipped("templates"), directory / "templates")
        _copy_rules(language, directory / "rules")
    except (OSError, shutil.Error) as error:
        logger.debug("init %s failed: %s", directory, error, exc_info=True)
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise click.ClickException(
            _("cannot write the starter configuration into {path}: {error}. Choose a "
              "directory you can write to whose parents are all directories").format(
                path=directory, error=reason)) from error
    click.echo(_("Wrote {path} and, beside it, templates/ and rules/. Edit the "
                 "configuration and the rules, whose groups must be those of the "
                 "configuration, and check them with: maildesk --config {path} rules check "
                 "and maildesk --config {path} templates check. Then start the desk with: "
                 "maildesk --config {path} run").format(path=config_path))


_DEMO_CONFIG = """\
# The demo desk: SQLite, a sample Maildir, outgoing mail written as .eml files.
language: {language}
desk:
  name: Helpdesk IT
  address: helpdesk@firma.example
  admin_addresses: [admin@firma.example]
  ticket_tag: "[SD#{{number}}]"
database: sqlite:///maildesk.db
storage: data
templates: templates
rules: rules
source:
  type: maildir
  path: mailbox
smtp:
  transport: directory
  directory: outbox
commands:
  trusted_authserv_ids: [mx.firma.example]
groups:
  - name: first-line
    tier: 1
    escalates_to: second-line
    manager: kierownik.it@firma.example
  - name: second-line
    tier: 2
    manager: kierownik.it@firma.example
  - name: network
    tier: 2
  - name: accounts
    tier: 2
agents:
  - login: jan.kowalski
    name: Jan Kowalski
    addresses: [jan.kowalski@firma.example]
    groups: [first-line]
  - login: anna.lewandowska
    name: Anna Lewandowska
    addresses: [anna.lewandowska@firma.example]
    groups: [second-line, network]
  - login: piotr.mazur
    name: Piotr Mazur
    addresses: [piotr.mazur@firma.example]
    groups: [accounts]
"""


@click.command(help=_("Run maildesk on a sample mailbox in DIRECTORY (default: maildesk-demo), "
                       "with no server to set up. Running it again replaces that demo folder."))
@click.argument("directory", type=PathType(path_type=Path), default=Path("maildesk-demo"),
                metavar=_("[DIRECTORY]"))
@click.pass_context
def demo(ctx: click.Context, directory: Path) -> None:
    """Run maildesk on a sample mailbox in DIRECTORY, with no server to set up.

    A folder that exists and was not made by ``demo`` is left alone.
    """
    from maildesk import models
    from maildesk.desk import Desk
    from maildesk.wiring import build_daemon

    if directory.exists():
        if not (directory / DEMO_MARKER).exists():
            raise click.ClickException(_("{path} exists and is not a demo folder: choose "
                                         "another one").format(path=directory))
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / DEMO_MARKER).write_text("maildesk demo\n", encoding="utf-8")
    _copy_tree(demo_mailbox(), directory / "mailbox")
    _copy_tree(shipped("templates"), directory / "templates")
    _copy_rules(current_language(), directory / "rules")
    config_path = directory / "maildesk.yaml"
    config_path.write_text(_DEMO_CONFIG.format(language=current_language()), encoding="utf-8")

    desk = Desk.open(config_path)
    daemon = build_daemon(desk)
    daemon.run(once=True)

    click.echo("")
    tickets = list(models.Ticket.select().order_by(models.Ticket.id))
    click.echo(ngettext("The demo desk made {count} ticket:", "The demo desk made {count} "
                        "tickets:", len(tickets)).format(count=len(tickets)))
    for ticket in tickets:
        entries = ticket.messages.count()
        click.echo(f"  {desk.tag(ticket.id):<8} {ticket.requester.address:<36} "
                   f"{ticket.group or '-':<15} {ticket.subject}")
        click.echo("           " + ngettext("{count} message", "{count} messages", entries)
                   .format(count=entries))
    ignored = models.ProcessedMessage.select().where(
        models.ProcessedMessage.outcome == "ignore").count()
    click.echo(ngettext("{count} message ignored (automatic or bulk mail)",
                        "{count} messages ignored (automatic or bulk mail)", ignored)
               .format(count=ignored))
    outgoing = sorted((directory / "outbox").glob("*.eml"))
    click.echo(ngettext("{count} outgoing mail written to {path}",
                        "{count} outgoing mails written to {path}", len(outgoing))
               .format(count=len(outgoing), path=directory / "outbox"))
    click.echo(_("See a ticket: maildesk --config {config} tickets show 1").format(
        config=config_path))
