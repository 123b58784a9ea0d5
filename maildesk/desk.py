"""The running desk: configuration plus the objects every step shares.

Built once at start-up (``Desk.open``) and passed down; there is no global state.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import peewee as pw

from maildesk import databaseerrors, models
from maildesk.config import Config, check_stored_secrets, load_config
from maildesk.errors import TemporaryError
from maildesk.followup import format_tag
from maildesk.i18n import _, normalize_language, set_language
from maildesk.rawstore import INLINE_LIMIT, RawStore
from maildesk.resources import shipped
from maildesk.templating import Templates

logger = logging.getLogger(__name__)


@dataclass
class Desk:
    config: Config
    store: RawStore
    templates: Templates
    agent_addresses: frozenset[str] = field(default_factory=frozenset)
    # Looks up the DKIM key TXT record of a selector; None uses the system resolver.
    dns_txt: Callable[..., bytes | str | None] | None = None

    @classmethod
    def from_config(cls, config: Config, *, fsync: bool = True) -> Desk:
        # The configured language is the desk's; MAILDESK_LANGUAGE overrides it for the
        # messages that the admin running this process reads.
        set_language(normalize_language(os.environ.get("MAILDESK_LANGUAGE")) or config.language)
        store = RawStore(config.storage_path, fsync=fsync, inline_limit=INLINE_LIMIT)
        templates = Templates(
            config.templates_path, config.language, config.desk.timezone
        )
        templates.fallback = _shipped_templates(templates)
        agent_addresses = frozenset(
            address.lower() for agent in config.agents for address in agent.addresses
        )
        return cls(config, store, templates, agent_addresses)

    @classmethod
    def open(cls, config_path: Path, *, migrate: bool = True,
             check_secrets: bool = False) -> Desk:
        """Load the configuration, open the database and return the desk.

        Raises TemporaryError when the database fails while the schema is migrated or
        the agents are synced (a lock held too long, a server restart). ``deliver`` then
        exits 75, so the MTA retries instead of bouncing the mail.
        """
        config = load_config(config_path)
        if check_secrets:
            check_stored_secrets(config)
        try:
            models.open_database(config.database_url, migrate=migrate)
            desk = cls.from_config(config)
            if migrate:
                from maildesk.agents import start_up

                start_up(desk)
        except (pw.DatabaseError, pw.InterfaceError) as error:
            if not databaseerrors.is_unavailable(error):
                raise
            raise TemporaryError(_("database unavailable: {error}").format(
                error=databaseerrors.describe(error))) from error
        return desk

    def tag(self, number: int) -> str:
        return format_tag(self.config.desk.ticket_tag, number)

    def local_time(self, value: datetime | None) -> str:
        """Write a time in the desk's time zone, to the minute, with the zone's abbreviation.

        A naive value is taken as UTC, the way the database stores times.
        """
        if value is None:
            return "-"
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        local = aware.astimezone(ZoneInfo(self.config.desk.timezone))
        return local.strftime("%Y-%m-%d %H:%M %Z")

    @property
    def own_addresses(self) -> frozenset[str]:
        return self.config.desk.own_addresses

    @functools.cached_property
    def configured_addresses(self) -> frozenset[str]:
        """Return the addresses maildesk.yaml names: agents, admins, group mailboxes, managers.

        The desk writes to them on the admins' say-so, not because a mail asked it to.
        """
        groups = self.config.groups
        return frozenset({
            *self.agent_addresses,
            *(address.lower() for address in self.config.desk.admin_addresses),
            *(group.address.lower() for group in groups if group.address),
            *(group.manager.strip().lower() for group in groups if group.manager),
        })

    @property
    def message_id_domain(self) -> str:
        return self.config.desk.message_id_domain


def _shipped_templates(own: Templates) -> Templates | None:
    """Return the templates shipped with maildesk, unless ``own`` are those."""
    try:
        root = shipped("templates")
    except FileNotFoundError:
        return None
    if root.resolve() == own.root.resolve():
        return None
    return Templates(root, own.default_language, str(own.timezone))
