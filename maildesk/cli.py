"""The ``maildesk`` command: run the daemon, deliver one mail, inspect and repair.

The root group reads ``--config`` (or MAILDESK_CONFIG, else ./maildesk.yaml) into
``ctx.obj``; the configuration and the database are opened only by subcommands that
need them. Exit codes follow sendmail's sysexits where an MTA may call maildesk.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click

from maildesk import __version__, cli_language
from maildesk.clicktext import PathType, translate_click, translate_usage
from maildesk.config import ConfigError
from maildesk.errors import MaildeskError, TemporaryError
from maildesk.i18n import _, ngettext, set_language

if TYPE_CHECKING:
    from maildesk.desk import Desk

logger = logging.getLogger(__name__)

EX_OK = 0
EX_DATAERR = 65
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_CONFIG = 78


@dataclass
class App:
    """The state subcommands share: the config path and, once opened, the desk."""

    config_path: Path
    _desk: object | None = field(default=None, repr=False)

    @property
    def desk(self):
        from maildesk.desk import Desk

        if self._desk is None:
            self._desk = Desk.open(self.config_path)
        return self._desk

    def open(self, check_secrets: bool = False) -> None:
        """Load the configuration and open the database, reporting errors as CLI errors.

        ``check_secrets`` reads the passwords kept in variables and files first, for the
        daemon, which needs them; the admin's commands do not.
        """
        from maildesk.desk import Desk

        if self._desk is None:
            self._desk = Desk.open(self.config_path, check_secrets=check_secrets)

    @property
    def inspected_desk(self):
        """The desk for commands that only check files: no migration and no agent sync.

        ``rules check`` and ``templates check`` run beside a live daemon, so they must not
        change its database.
        """
        from maildesk.desk import Desk

        if self._desk is None:
            self._desk = Desk.open(self.config_path, migrate=False)
        return self._desk

    def rules_directory(self) -> Path:
        return self.inspected_desk.config.rules_path

    def rule_environment(self):
        from maildesk.wiring import rule_environment

        return rule_environment(self.inspected_desk)


def _fail(message: str, code: int) -> None:
    click.echo(message, err=True)
    sys.exit(code)


# The help texts below are translated as the commands are defined, so the language of
# this run is chosen now, from the configuration its arguments name.
set_language(cli_language.interface_language(
    cli_language.config_path(sys.argv[1:], os.environ), os.environ))


class MaildeskGroup(click.Group):
    """The root group: turns maildesk's own errors into one clear line and an exit status.

    A configuration error exits with 78 (EX_CONFIG), a temporary failure with 75
    (EX_TEMPFAIL), anything else maildesk raises on purpose with 1 (or the exit status
    of a ClickException). A database error that a command did not handle (a lock held
    too long, a full disk) is a temporary failure too. Other exceptions keep their
    traceback, because they are bugs.
    """

    def invoke(self, ctx: click.Context) -> object:
        import peewee as pw

        try:
            return super().invoke(ctx)
        except (pw.DatabaseError, pw.InterfaceError) as error:
            from maildesk import databaseerrors

            if not databaseerrors.is_unavailable(error):
                raise
            description = databaseerrors.describe(error)
            logger.debug("database error in a command", exc_info=error)
            _fail(_("temporary failure, try again later: {error}").format(
                error=_("database unavailable: {error}").format(error=description)),
                EX_TEMPFAIL)
        except ConfigError as error:
            _fail(_("configuration error: {error}").format(error=error), EX_CONFIG)
        except TemporaryError as error:
            _fail(_("temporary failure, try again later: {error}").format(error=error),
                  EX_TEMPFAIL)
        except MaildeskError as error:
            _fail(_("error: {error}").format(error=error), 1)
        except click.UsageError:
            raise  # click's wording, translated by maildesk.clicktext, with the usage line
        except click.ClickException as error:
            # Raised by subcommands with a translated message: click would put its
            # English "Error:" in front of it.
            _fail(_("error: {error}").format(error=error.format_message()), error.exit_code)
        return None


@click.group(cls=MaildeskGroup, help=_("maildesk: an ITIL service desk that lives in email."))
# readable=False: the configuration loader reports an unreadable file itself, so that
# ``deliver`` can turn it into EX_TEMPFAIL instead of click's usage error (exit 2).
@click.option("--config", "config_path", type=PathType(readable=False, path_type=Path),
              metavar=_("FILE"),
              envvar="MAILDESK_CONFIG", default=Path("maildesk.yaml"), show_default=True,
              help=_("Configuration file (YAML)."))
@click.option("-v", "--verbose", is_flag=True, help=_("Log debug messages too."))
@click.version_option(__version__, prog_name="maildesk",
                      message=_("%(prog)s, version %(version)s"),
                      help=_("Show the version and exit."))
@click.pass_context
def main(ctx: click.Context, config_path: Path, verbose: bool) -> None:
    from maildesk.logcontext import configure_logging

    configure_logging(logging.DEBUG if verbose else logging.INFO)
    set_language(cli_language.interface_language(config_path, os.environ))
    ctx.obj = App(config_path)


@main.command(help=_("Run the daemon in the foreground (logs to stderr; SIGTERM stops it "
                      "cleanly)."))
@click.option("--once", is_flag=True,
              help=_("Process the mail waiting now, then exit. A mailbox or database "
                     "server that stays unreachable ends the run with exit status 75 after "
                     "6 attempts: about 30 s when it refuses connections, longer when each "
                     "attempt waits for the configured timeout. Mail for an unreachable "
                     "SMTP server stays in the outbox for the next run, and the exit "
                     "status is 0."))
@click.pass_obj
def run(app: App, once: bool) -> None:
    """Run the daemon in the foreground (logs to stderr; SIGTERM stops it cleanly)."""
    from maildesk.wiring import build_daemon

    app.open(check_secrets=True)
    daemon = build_daemon(app.desk)
    daemon.install_signal_handlers()
    try:
        count = daemon.run(once=once)
    except TemporaryError as error:
        _fail(_("temporary failure, try again later: {error}").format(error=error), EX_TEMPFAIL)
    click.echo(ngettext("{count} message processed", "{count} messages processed", count)
               .format(count=count))


@main.command(help=_("Process one mail from standard input (for an MTA pipe or Procmail).\n\n"
                      "Exit status 0 means the mail is safe in maildesk (ticket, follow-up or "
                      "quarantine); 75 asks the MTA to keep the mail and try again later."))
@click.option("--source", default="pipe", show_default=True, metavar=_("NAME"),
              help=_("Name recorded as the mail's source."))
@click.pass_obj
def deliver(app: App, source: str) -> None:
    """Process one mail from standard input (for an MTA pipe or Procmail).

    Exit status 0 means the mail is safe in maildesk (ticket, follow-up or quarantine);
    75 asks the MTA to keep the mail and try again later.
    """
    from maildesk import models, pipeline
    from maildesk.wiring import load_rules

    try:
        if sys.stdin is None:
            # Python sets sys.stdin to None when descriptor 0 is closed.
            raise OSError(_("standard input is closed: deliver reads the mail from its "
                            "standard input, so pipe the mail to it"))
        raw = sys.stdin.buffer.read()
        desk = app.desk
        # Exit status 0 lets the MTA delete its copy, so the commit is flushed first.
        with models.deferred_durability():
            outcome = pipeline.process(desk, raw, source, load_rules(desk))
    except (TemporaryError, ConfigError, OSError) as error:
        # A standard input that cannot be read, a broken configuration, an unreadable
        # file or a full disk must not bounce the user's mail: with EX_TEMPFAIL the MTA
        # keeps it and delivers it again later.
        logger.warning(_("deliver failed, the MTA keeps the mail: {error}").format(error=error))
        _fail(_("temporary failure, the MTA should retry: {error}").format(error=error),
              EX_TEMPFAIL)
    except Exception as error:
        # A bug must not bounce the user's mail either. Postfix's pipe(8) returns the
        # mail to its sender on exit status 1, which an uncaught exception gives.
        logger.exception(_("deliver failed unexpectedly, the MTA keeps the mail: {error}")
                         .format(error=error))
        _fail(_("temporary failure, the MTA should retry: {error}").format(error=error),
              EX_TEMPFAIL)

    _send_queued(desk)

    from maildesk.reasons import outcome_text

    _print_outcome(outcome_text(outcome.action, outcome.ticket, outcome.reason))


def _print_outcome(text: str) -> None:
    """Print what ``deliver`` did; a standard output that fails changes no exit status.

    The mail is stored by now. Exit status 1 from a failed write (a closed pipe, a full
    disk) would make Postfix's pipe(8) return the mail to its sender.
    """
    try:
        click.echo(text)
        sys.stdout.flush()
    except OSError as error:
        logger.warning(_("the mail is stored, but its result could not be written to "
                         "standard output: {error}").format(error=error))
        # Python flushes standard output again at exit, and a failure there would end
        # the process with status 120.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError) as redirect_error:
            logger.debug("redirecting standard output failed: %s", redirect_error)


def _send_queued(desk: Desk) -> None:
    """Send the mail that ``deliver`` queued; on failure the outbox keeps it.

    The incoming mail is stored by now, so a failure here must not change the exit
    status: with 75 the MTA would deliver it again, and it would be ignored as a copy.
    """
    import peewee as pw

    from maildesk import databaseerrors, pipeline
    from maildesk.wiring import make_sender

    try:
        make_sender(desk).deliver_due()
    except Exception as error:
        description: object = error
        if isinstance(error, (pw.OperationalError, pw.InterfaceError)):
            pipeline.drop_connection()
            description = databaseerrors.describe(error)
        logger.warning(_("sending the queued mail failed, it stays in the outbox until the "
                         "daemon or 'maildesk outbox send' sends it: {error}").format(
            error=description))


def _register_subcommands() -> None:
    from maildesk.cli_admin import contacts, outbox, quarantine, templates, tickets
    from maildesk.cli_rules import rules
    from maildesk.cli_setup import demo, init

    for command in (tickets, contacts, outbox, quarantine, templates, demo, init, rules):
        main.add_command(command)

    from maildesk import (
        cli_attachments,  # noqa: F401 (adds 'tickets attachments')
        cli_merge,  # noqa: F401 (adds 'tickets merge')
        cli_orphans,  # noqa: F401 (adds 'tickets move-group', 'agents check')
        cli_retention,  # noqa: F401 (adds 'tickets purge')
    )
    from maildesk.cli_agents import agents
    from maildesk.cli_report import report

    main.add_command(agents)
    main.add_command(report)


_register_subcommands()
translate_click()
translate_usage(main)


if __name__ == "__main__":
    main(prog_name="maildesk")
