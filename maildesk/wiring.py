"""Assemble the running parts from a Desk: source, sender, rules and the daemon."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from maildesk.business_calendar import BusinessCalendar
from maildesk.config import ImapConfig, MaildirConfig
from maildesk.desk import Desk
from maildesk.errors import ConfigErrors
from maildesk.i18n import _
from maildesk.outbox import Sender
from maildesk.rules import RuleEnvironment, RuleSet, RulesWatcher
from maildesk.rules.loader import LoadedRules, load_rules_with_fallback

# The daemon and the mail sources are imported where they are built: ``maildesk
# deliver`` needs neither, and imapclient alone took 13 ms of its start.
if TYPE_CHECKING:
    from maildesk.daemon import Daemon
    from maildesk.sources import Source

logger = logging.getLogger(__name__)


def rule_environment(desk: Desk) -> RuleEnvironment:
    """The names and addresses rules may refer to, taken from the configuration."""
    config = desk.config
    calendar = BusinessCalendar(timezone=config.desk.timezone)
    return RuleEnvironment(
        groups=frozenset(group.name for group in config.groups),
        agents=frozenset(agent.login for agent in config.agents),
        agent_addresses=desk.agent_addresses,
        templates=frozenset(desk.templates.names()),
        vip=config.vip,
        is_business_hours=calendar.is_open,
        timezone=config.desk.timezone,
    )


# Under the storage directory: the last rules that loaded without errors, and one empty
# marker file per reported breakage (named by the fingerprint of the files as read).
RULES_SNAPSHOT = "rules-last-good.json"
RULES_REPORTS = "rules-errors-reported"


def rules_snapshot_path(desk: Desk) -> Path:
    return desk.config.storage_path / RULES_SNAPSHOT


def load_rules(desk: Desk) -> RuleSet:
    """Load the rules for one process without a rule set in memory (``maildesk deliver``).

    Invalid files never stop delivery: the last good rules (saved by the daemon or an
    earlier delivery) are used, or else the valid files only. The admins get one
    ``rules_error`` mail per breakage, however many processes run into it.
    """
    loaded = load_rules_with_fallback(desk.config.rules_path, rule_environment(desk),
                                      rules_snapshot_path(desk))
    reports = desk.config.storage_path / RULES_REPORTS
    if not loaded.errors:
        _forget_reports(reports)
        return loaded.ruleset

    for error in loaded.errors:
        logger.warning(_("invalid routing rules: {error}").format(error=error))
    if _claim_report(reports, loaded.fingerprint):
        try:
            report_rules_errors(desk, loaded)
        except BaseException:
            # Unclaim, so that the next delivery reports the breakage instead.
            (reports / loaded.fingerprint).unlink(missing_ok=True)
            raise
    return loaded.ruleset


def report_rules_errors(desk: Desk, loaded: LoadedRules) -> None:
    """Queue the ``rules_error`` mail to the admins for one breakage."""
    from maildesk.adminmail import mail_admins, rules_error_context

    mail_admins(desk, template="rules_error",
                context=rules_error_context(desk, loaded.errors, loaded.source),
                kind="rules_error")


def _claim_report(reports: Path, fingerprint: str) -> bool:
    """Create the marker of one breakage; False when another process already created it."""
    try:
        reports.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(reports / fingerprint, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as error:
        # Without a marker every delivery would mail the admins, so none does.
        logger.error(_("could not record that the rules errors were reported, so no "
                       "mail goes to the admins: {error}").format(error=error))
        return False
    os.close(descriptor)
    return True


def _forget_reports(reports: Path) -> None:
    """Remove the markers once the rules are valid, so a later breakage is reported again."""
    try:
        markers = list(reports.iterdir())
    except FileNotFoundError:
        return
    except OSError as error:
        logger.warning(_("cannot list the reported rules errors in {path}: {error}").format(
            path=reports, error=error))
        return
    for marker in markers:
        try:
            marker.unlink(missing_ok=True)
        except OSError as error:
            logger.warning(_("cannot remove the rules error marker {path}: {error}").format(
                path=marker, error=error))


def make_source(desk: Desk) -> Source:
    from maildesk.sources.pipe import PipeSource

    source = desk.config.source
    if isinstance(source, ImapConfig):
        from maildesk.sources.imap import ImapSource

        return ImapSource(source)
    if isinstance(source, MaildirConfig):
        from maildesk.sources.maildir import MaildirSource

        return MaildirSource(source.path)
    logger.info(_("no 'source' section: this daemon reads no mailbox; it runs the SLA tasks "
                  "and sends the outbox for the mail that 'maildesk deliver' records"))
    return PipeSource()


def make_sender(desk: Desk) -> Sender:
    return Sender(desk.config.smtp, local_hostname=desk.message_id_domain)


def check_templates(desk: Desk) -> None:
    """Render every template against a sample; raise their errors (start-up check).

    The caller reports them: the command line prints each once, with its file:line.
    """
    from maildesk.notify import sample_context, sample_variants

    errors = desk.templates.check(sample_context(desk), sample_variants(desk))
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)


def build_daemon(desk: Desk) -> Daemon:
    """Assemble the daemon of an open desk; stored secrets are checked by
    ``Desk.open(check_secrets=True)``, before the database is touched."""
    from maildesk.daemon import SETTLE_SECONDS, Daemon
    from maildesk.orphans import report_at_start
    from maildesk.parseahead import ParseAhead
    from maildesk.scheduler import make_scheduler
    from maildesk.sources.pipe import PipeSource

    check_templates(desk)
    report_at_start(desk)
    watcher = RulesWatcher(desk.config.rules_path, rule_environment(desk),
                           snapshot=rules_snapshot_path(desk), settle=SETTLE_SECONDS)

    source = make_source(desk)
    # A daemon without a mailbox parses nothing, so it forks no parse helper.
    parse_ahead = (ParseAhead.for_this_machine()
                   if desk.config.parse_ahead and not isinstance(source, PipeSource) else None)
    return Daemon(desk, source, make_sender(desk), rules_watcher=watcher,
                  periodic=[make_scheduler(desk)], parse_ahead=parse_ahead)
