"""Assemble the running parts from a Desk: source, sender, rules and the daemon."""

from __future__ import annotations

import logging

from maildesk.business_calendar import BusinessCalendar
from maildesk.config import ImapConfig, MaildirConfig
from maildesk.daemon import Daemon
from maildesk.desk import Desk
from maildesk.errors import ConfigError
from maildesk.i18n import _
from maildesk.outbox import Sender
from maildesk.rules import RuleEnvironment, RuleSet, RulesWatcher
from maildesk.sources import Source
from maildesk.sources.imap import ImapSource
from maildesk.sources.maildir import MaildirSource

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
    )


def load_rules(desk: Desk) -> RuleSet:
    """Load the rules once (for ``maildesk deliver``); raise ConfigError when invalid."""
    return RulesWatcher(desk.config.rules_path, rule_environment(desk)).current


def make_source(desk: Desk) -> Source:
    source = desk.config.source
    if isinstance(source, ImapConfig):
        return ImapSource(source)
    if isinstance(source, MaildirConfig):
        return MaildirSource(source.path)
    raise ConfigError(_("no mail source configured: add a 'source' section (imap or maildir)"),
                      str(desk.config.path))


def make_sender(desk: Desk) -> Sender:
    return Sender(desk.config.smtp, local_hostname=desk.message_id_domain)


def check_templates(desk: Desk) -> None:
    """Render every template against a sample; raise the first error (start-up check)."""
    from maildesk.notify import sample_context

    errors = desk.templates.check(sample_context(desk))
    if errors:
        for error in errors:
            logger.error("%s", error)
        raise errors[0]


def check_secrets(desk: Desk) -> None:
    """Read the secrets that come from a variable or a file now, so a missing one stops
    the start with a clear error instead of failing at the first connection."""
    config = desk.config
    secrets = [config.smtp.password]
    if isinstance(config.source, ImapConfig):
        secrets += [config.source.password, config.source.oauth2_token]
    for secret in secrets:
        if secret.env or secret.file:
            secret.reveal()


def build_daemon(desk: Desk) -> Daemon:
    check_secrets(desk)
    check_templates(desk)
    watcher = RulesWatcher(desk.config.rules_path, rule_environment(desk))
    from maildesk.scheduler import make_scheduler

    return Daemon(desk, make_source(desk), make_sender(desk), rules_watcher=watcher,
                  periodic=[make_scheduler(desk)])
