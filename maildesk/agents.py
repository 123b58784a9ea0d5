"""Agents and groups: the ``commands:`` settings, the sync into the database, look-ups.

Agents and groups are defined in maildesk.yaml. At start-up ``start_up`` copies them
into the Agent and Group tables, so tickets and the audit trail can name them even after
one is removed from the configuration (its row stays, marked inactive).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import peewee as pw

from maildesk import models
from maildesk.config import Config, _Section, read_once_per_config
from maildesk.errors import ConfigErrorCollector
from maildesk.i18n import _
from maildesk.models import utcnow

if TYPE_CHECKING:
    from maildesk.desk import Desk

logger = logging.getLogger(__name__)

AUTHENTICATION_POLICIES = ("authentication_results", "dkim", "address_only")
STRANGER_TAG_CHOICES = ("new_ticket", "hold")


@dataclass(frozen=True)
class CommandSettings:
    """The ``commands:`` section: how agent mail is recognised and trusted.

    ``note_address`` receives internal notes. ``authentication`` decides when a mail that
    claims to come from an agent really does: ``authentication_results`` trusts the
    Authentication-Results header of the servers in ``trusted_authserv_ids``, ``dkim``
    verifies the DKIM signature itself, ``address_only`` trusts the From address.
    """

    note_address: str
    authentication: str = "authentication_results"
    trusted_authserv_ids: tuple[str, ...] = ()
    cc_become_participants: bool = True
    stranger_tag: str = "new_ticket"


def default_note_address(desk_address: str) -> str:
    """Return the plus address ``local+note@domain`` of the desk address."""
    local, _separator, domain = desk_address.partition("@")
    return f"{local}+note@{domain}".lower()


def load_command_settings(config: Config) -> CommandSettings:
    """Read and validate the ``commands:`` section; raise ConfigError with its position."""
    document = config.raw
    value: Any = document.get("commands") if document is not None else None
    if document is None:
        return CommandSettings(note_address=default_note_address(config.desk.address))

    section = _Section(value, "commands", document, "commands")
    # Every key is read even after one fails, so all the mistakes are reported together.
    problems = ConfigErrorCollector()
    read = problems.read

    default_note = default_note_address(config.desk.address)
    note_address = str(read(lambda: section.address("note_address", default_note),
                            default_note)).lower()
    settings = CommandSettings(
        note_address=note_address,
        authentication=read(lambda: section.choice("authentication", "authentication_results",
                                                   AUTHENTICATION_POLICIES),
                            "authentication_results"),
        trusted_authserv_ids=read(lambda: _trusted_authserv_ids(section), ()),
        cc_become_participants=read(lambda: section.boolean("cc_become_participants", True),
                                    True),
        stranger_tag=read(lambda: section.choice("stranger_tag", "new_ticket",
                                                 STRANGER_TAG_CHOICES), "new_ticket"),
    )
    read(section.finish, None)
    if note_address in config.desk.own_addresses:
        problems.errors.append(section.error(
            "note_address",
            _("'note_address' must differ from the desk addresses, e.g. {example}").format(
                example=default_note)))
    problems.raise_errors()
    return settings


def _trusted_authserv_ids(section: _Section) -> tuple[str, ...]:
    trusted = section.get("trusted_authserv_ids") or []
    if isinstance(trusted, str):
        trusted = [trusted]
    if not isinstance(trusted, list) or not all(isinstance(item, str) and item.strip()
                                                for item in trusted):
        raise section.error(
            "trusted_authserv_ids",
            _("'trusted_authserv_ids' must be a list of server names, e.g. [mx.example.com]"))
    return tuple(item.strip().lower() for item in trusted)


_cached_settings = read_once_per_config(load_command_settings)


def check_command_settings(config: Config) -> CommandSettings:
    """Validate the ``commands:`` section when the configuration is loaded; cache the result."""
    return _cached_settings(config)


def command_settings(desk: Desk) -> CommandSettings:
    """Return the desk's ``commands:`` settings, read once per configuration."""
    return _cached_settings(desk.config)


@dataclass(frozen=True)
class SyncReport:
    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    deactivated: tuple[str, ...] = ()


def sync_agents(config: Config) -> SyncReport:
    """Copy the configured groups and agents into the database, in one transaction.

    The rows are compared first, outside a transaction. When they already match, nothing
    is written and no write lock is taken, so a daemon starts, and then waits in its loop,
    while another process holds a long write transaction on a SQLite file.
    """
    if _sync(config, write=False) == SyncReport():
        return SyncReport()
    with models.database_proxy.atomic():
        report = _sync(config, write=True)
    if report != SyncReport():
        logger.info(_("agents and groups synced; added: {added}; changed: {updated}; "
                      "deactivated: {deactivated}").format(
            added=_sync_labels(report.added), updated=_sync_labels(report.updated),
            deactivated=_sync_labels(report.deactivated)))
    return report


def _sync_labels(labels: tuple[str, ...]) -> str:
    """Name synced rows for the log: "group siec, agent anna.nowak", or "-" for none."""
    if not labels:
        return "-"
    named = []
    for label in labels:
        kind, _separator, name = label.partition(":")
        named.append(_("group {name}").format(name=name) if kind == "group"
                     else _("agent {name}").format(name=name))
    return ", ".join(named)


def _sync(config: Config, write: bool) -> SyncReport:
    """Bring the group and agent rows in line with ``config``, or with ``write`` off, only
    report what that would change."""
    added: list[str] = []
    updated: list[str] = []
    deactivated: list[str] = []
    for group in config.groups:
        values = {
            "tier": group.tier, "manager": (group.manager or "").lower() or None,
            "escalates_to": group.escalates_to,
            "address": (group.address or "").lower() or None,
            "description": group.description, "active": True,
        }
        _upsert(models.Group, models.Group.name, group.name, values,
                f"group:{group.name}", added, updated, write)
    configured_groups = [group.name for group in config.groups]
    deactivated += _deactivate(models.Group, models.Group.name, configured_groups, "group",
                               write)

    for agent in config.agents:
        values = {
            "name": agent.name,
            "addresses": " ".join(address.lower() for address in agent.addresses),
            "groups": " ".join(agent.groups), "language": agent.language,
            "commands": agent.commands, "active": True,
        }
        _upsert(models.Agent, models.Agent.login, agent.login, values,
                f"agent:{agent.login}", added, updated, write)
    configured_agents = [agent.login for agent in config.agents]
    deactivated += _deactivate(models.Agent, models.Agent.login, configured_agents, "agent",
                               write)
    return SyncReport(tuple(added), tuple(updated), tuple(deactivated))


def _upsert(model: Any, key_field: Any, key: str, values: dict[str, Any], label: str,
            added: list[str], updated: list[str], write: bool) -> None:
    row = model.get_or_none(key_field == key)
    if row is None:
        if write:
            model.create(**{key_field.name: key}, **values)
        added.append(label)
        return
    if any(getattr(row, name) != value for name, value in values.items()):
        if write:
            model.update(**values, updated_at=utcnow()).where(key_field == key).execute()
        updated.append(label)


def _deactivate(model: Any, key_field: Any, keep: list[str], kind: str,
                write: bool) -> list[str]:
    stale = [row for row in model.select().where(model.active == True)  # noqa: E712
             if getattr(row, key_field.name) not in keep]
    if write:
        for row in stale:
            model.update(active=False, updated_at=utcnow()).where(model.id == row.id).execute()
    return [f"{kind}:{getattr(row, key_field.name)}" for row in stale]


def start_up(desk: Desk) -> SyncReport:
    """Validate the ``commands:`` settings, sync agents and groups, warn about weak trust.

    A group or agent that the sync deactivates while open tickets still name it is
    reported to the admins once (``maildesk.orphans``).
    """
    settings = command_settings(desk)
    try:
        report = sync_agents(desk.config)
    except pw.IntegrityError:
        # Another daemon on the same database inserted the same rows first; now they exist.
        logger.info(_("agents and groups were synced by another process; syncing again"))
        report = sync_agents(desk.config)
    if report.deactivated:
        from maildesk.orphans import report_removals

        report_removals(desk, report.deactivated, report.added)

    if settings.authentication == "address_only":
        logger.warning(_(
            "commands.authentication is address_only: anyone who forges an agent's From "
            "address can reply to users and run commands; use authentication_results or dkim"))
    elif (settings.authentication == "authentication_results"
          and not settings.trusted_authserv_ids and desk.config.agents):
        logger.warning(_(
            "commands.trusted_authserv_ids is empty: agent replies and commands will be "
            "rejected until you name your receiving server (e.g. [mx.example.com])"))
    return report


def agent_by_address(address: str) -> models.Agent | None:
    """Return the active agent who has this address, or None."""
    normalized = address.strip().lower()
    if not normalized:
        return None
    for agent in models.Agent.select().where(models.Agent.active == True,  # noqa: E712
                                             models.Agent.addresses.contains(normalized)):
        if normalized in agent.addresses.split():
            return agent
    return None


def find_agent(value: str) -> models.Agent | None:
    """Return the active agent with this login or address (case-insensitive), or None."""
    normalized = value.strip().lower()
    if "@" in normalized:
        return agent_by_address(normalized)
    for agent in models.Agent.select().where(models.Agent.active == True):  # noqa: E712
        if agent.login.lower() == normalized:
            return agent
    return None


def find_group(name: str) -> models.Group | None:
    normalized = name.strip().lower()
    for group in models.Group.select().where(models.Group.active == True):  # noqa: E712
        if group.name.lower() == normalized:
            return group
    return None


def group_members(name: str) -> list[models.Agent]:
    return [agent for agent in models.Agent.select().where(models.Agent.active == True)  # noqa: E712
            if name in agent.groups.split()]


def primary_address(agent: models.Agent) -> str:
    """Return the first configured address of an agent: where maildesk writes to them."""
    return agent.addresses.split()[0]


def agent_tier(agent: models.Agent) -> int | None:
    """Return the lowest (first-line) tier of the agent's groups, None without groups."""
    names = agent.groups.split()
    if not names:
        return None
    tiers = [group.tier for group in models.Group.select().where(models.Group.name.in_(names))]
    return min(tiers) if tiers else None


def resolve_assignee(value: str | None) -> models.Agent | None:
    """Return the agent a ticket's ``assignee`` names (a login or an address), or None."""
    if not value:
        return None
    return find_agent(value)


__all__ = [
    "AUTHENTICATION_POLICIES",
    "CommandSettings",
    "SyncReport",
    "agent_by_address",
    "agent_tier",
    "check_command_settings",
    "command_settings",
    "default_note_address",
    "find_agent",
    "find_group",
    "group_members",
    "load_command_settings",
    "primary_address",
    "resolve_assignee",
    "start_up",
    "sync_agents",
]
