"""maildesk.yaml: load, validate and turn into typed, immutable settings.

Every problem is reported with the file, line and column, and with what to write
instead. Relative paths are resolved against the directory of the configuration file.
Secrets (IMAP and SMTP passwords, OAuth2 tokens) come from an environment variable, a
file or a command, never from the command line.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from maildesk.errors import ConfigError, ConfigErrorCollector
from maildesk.i18n import _, normalize_language
from maildesk.yamlfile import YamlMapping, YamlSequence, load_yaml_file

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")


@dataclass(frozen=True)
class Secret:
    """Where a password or token comes from; ``reveal()`` reads it when it is needed."""

    env: str | None = None
    file: Path | None = None
    command: str | None = None

    def reveal(self) -> str | None:
        if self.env:
            value = os.environ.get(self.env)
            if value is None:
                raise ConfigError(
                    _("environment variable {name} is not set: export it before starting")
                    .format(name=self.env)
                )
            return value
        if self.file:
            try:
                if self.file.stat().st_mode & 0o004:
                    logger.warning(_("the secret file {path} is readable by every user: "
                                     "chmod 600 it").format(path=self.file))
                return self.file.read_text(encoding="utf-8").strip()
            except OSError as error:
                raise ConfigError(
                    _("cannot read the secret file {path}: {error}")
                    .format(path=self.file, error=error.strerror)
                ) from error
        if self.command:
            # The command prints a fresh token (e.g. an OAuth2 access token) on stdout.
            completed = subprocess.run(
                self.command, shell=True, capture_output=True, text=True, timeout=60
            )
            if completed.returncode != 0:
                raise ConfigError(
                    _("the token command failed with exit code {code}: {stderr}")
                    .format(code=completed.returncode, stderr=completed.stderr.strip()[:200])
                )
            return completed.stdout.strip()
        return None

    def __bool__(self) -> bool:
        return bool(self.env or self.file or self.command)


@dataclass(frozen=True)
class DeskConfig:
    name: str
    address: str
    other_addresses: tuple[str, ...] = ()
    admin_addresses: tuple[str, ...] = ()
    ticket_tag: str = "[SD#{number}]"
    message_id_domain: str = ""
    default_charset: str = "windows-1250"
    timezone: str = "Europe/Warsaw"
    automatic_mail_limit: int = 10
    max_message_size: int = 50 * 1024 * 1024
    blocked_senders: tuple[str, ...] = ()
    # Automatic mails per ticket in 24 hours; beyond it the ticket gets none (mail loops).
    automatic_mail_ticket_limit: int = 20
    # Automatic mails to addresses other than agents and admins per clock hour, for the
    # whole desk: a bound on backscatter from mail with forged senders.
    automatic_mail_desk_limit: int = 500
    # The user's files that go with one notice to agents, in bytes; 0 sends none
    # (maildesk.noticefiles).
    notification_attachments_max_size: int = 7 * 1024 * 1024

    @property
    def own_addresses(self) -> frozenset[str]:
        """Every address that reaches this desk, lower-cased (loop protection)."""
        return frozenset(a.lower() for a in (self.address, *self.other_addresses))


@dataclass(frozen=True)
class ImapConfig:
    host: str
    username: str
    port: int = 993
    security: str = "tls"
    password: Secret = field(default_factory=Secret)
    oauth2_token: Secret = field(default_factory=Secret)
    ca_file: Path | None = None
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    quarantine_folder: str = "Quarantine"
    idle: bool = True
    poll_interval: float = 60.0
    batch_size: int = 50
    timeout: float = 60.0


@dataclass(frozen=True)
class MaildirConfig:
    path: Path


@dataclass(frozen=True)
class SmtpConfig:
    transport: str = "smtp"
    host: str = "127.0.0.1"
    port: int = 25
    security: str = "none"
    username: str | None = None
    password: Secret = field(default_factory=Secret)
    ca_file: Path | None = None
    directory: Path | None = None
    timeout: float = 60.0
    max_attempts: int = 12


@dataclass(frozen=True)
class AgentConfig:
    login: str
    name: str
    addresses: tuple[str, ...]
    groups: tuple[str, ...] = ()
    commands: bool = True
    language: str | None = None
    daily_summary: bool = True


@dataclass(frozen=True)
class GroupConfig:
    name: str
    tier: int = 1
    manager: str | None = None
    escalates_to: str | None = None
    address: str | None = None
    description: str = ""


@dataclass(frozen=True)
class Config:
    """The whole validated configuration of one desk."""

    path: Path
    language: str
    desk: DeskConfig
    database_url: str
    storage_path: Path
    templates_path: Path
    rules_path: Path
    smtp: SmtpConfig
    source: ImapConfig | MaildirConfig | None = None
    agents: tuple[AgentConfig, ...] = ()
    groups: tuple[GroupConfig, ...] = ()
    vip: tuple[str, ...] = ()
    # Parse the mails of a batch in a helper process when the machine has a second CPU.
    parse_ahead: bool = True
    raw: YamlMapping | None = field(default=None, repr=False, compare=False)

    def agent_by_address(self, address: str) -> AgentConfig | None:
        wanted = address.strip().lower()
        for agent in self.agents:
            if wanted in (a.lower() for a in agent.addresses):
                return agent
        return None


class _Section:
    """Reads typed values out of one YAML mapping and reports mistakes with positions."""

    def __init__(self, mapping: Any, name: str, parent: YamlMapping | None, key: str) -> None:
        if mapping is None:
            mapping = YamlMapping()
            mapping.position = parent.where(key) if parent is not None else _nowhere()
            mapping.key_positions, mapping.value_positions = {}, {}
        if not isinstance(mapping, YamlMapping):
            where = parent.where(key) if parent is not None else None
            raise ConfigError(
                _("'{section}' must be a mapping of keys and values").format(section=name),
                str(where) if where else None,
            )
        self.mapping = mapping
        self.name = name
        self.used: set[str] = set()
        # The whole file, whose keys are no section's: its name is the file's.
        self.top = False

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, str(self.mapping.where(key)))

    def get(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        return self.mapping.get(key, default)

    def text(self, key: str, default: str | None = None, required: bool = False) -> Any:
        self.used.add(key)
        if key not in self.mapping or self.mapping[key] is None:
            if required:
                raise ConfigError(
                    _("missing required key '{key}' in '{section}'").format(
                        key=key, section=self.name
                    ),
                    str(self.mapping.where()),
                )
            return default
        value = self.mapping[key]
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.error(key, _("'{key}' must be text").format(key=key))
        return str(value)

    def integer(self, key: str, default: int, minimum: int = 0,
                maximum: int | None = None) -> int:
        self.used.add(key)
        value = self.mapping.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(
                key,
                _("'{key}' must be a whole number of at least {minimum}, not '{value}'").format(
                    key=key, minimum=minimum, value=value
                ),
            )
        if maximum is not None and value > maximum:
            raise self.error(key, _("'{key}' must be at most {maximum}, not {value}").format(
                key=key, maximum=maximum, value=value))
        return value

    def number(self, key: str, default: float) -> float:
        self.used.add(key)
        value = self.mapping.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise self.error(
                key, _("'{key}' must be a positive number, not '{value}'").format(
                    key=key, value=value
                )
            )
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        self.used.add(key)
        value = self.mapping.get(key, default)
        if not isinstance(value, bool):
            raise self.error(
                key, _("'{key}' must be true or false, not '{value}'").format(key=key, value=value)
            )
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(key, default)
        if value not in choices:
            raise self.error(
                key,
                _("'{key}' must be one of: {choices} (not '{value}')").format(
                    key=key, choices=", ".join(choices), value=value
                ),
            )
        return str(value)

    def address(self, key: str, default: str | None = None, required: bool = False) -> Any:
        value = self.text(key, default, required)
        if value is not None and not _EMAIL.match(value):
            raise self.error(
                key,
                _("'{value}' is not an email address: write it as name@example.com").format(
                    value=value
                ),
            )
        return value

    def addresses(self, key: str) -> tuple[str, ...]:
        self.used.add(key)
        value = self.mapping.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise self.error(key, _("'{key}' must be a list of email addresses").format(key=key))
        for index, item in enumerate(value):
            if not isinstance(item, str) or not _EMAIL.match(item):
                where = value.where(index) if isinstance(value, YamlSequence) else None
                raise ConfigError(
                    _("'{value}' is not an email address: write it as name@example.com").format(
                        value=item
                    ),
                    str(where or self.mapping.where(key)),
                )
        return tuple(value)

    def path(self, key: str, default: str | None, base: Path) -> Path | None:
        value = self.text(key, default)
        if value is None:
            return None
        path = Path(os.path.expandvars(os.path.expanduser(value)))
        return path if path.is_absolute() else (base / path).resolve()

    def ca_file(self, base: Path) -> Path | None:
        """Resolve ``ca_file`` and load it once, so that a wrong file is a configuration error.

        Left to the first connection, a missing file looked like an outage to the IMAP
        retries and raised out of the SMTP client with outbox rows still claimed.
        """
        path = self.path("ca_file", None, base)
        if path is None:
            return None

        try:
            ssl.create_default_context(cafile=str(path))
        except (OSError, ssl.SSLError) as error:
            raise self.error(
                "ca_file",
                _("cannot load the CA certificates in {path} ({error}): name a readable "
                  "PEM file").format(path=path, error=getattr(error, "strerror", None) or error),
            ) from error
        return path

    def secret(self, prefix: str, base: Path) -> Secret:
        if prefix in self.mapping:
            raise self.error(
                prefix,
                _(
                    "do not write the {key} into the configuration: use {key}_env (an "
                    "environment variable) or {key}_file (a file readable only by maildesk)"
                ).format(key=prefix),
            )
        return Secret(
            env=self.text(f"{prefix}_env"),
            file=self.path(f"{prefix}_file", None, base),
            command=self.text(f"{prefix}_command"),
        )

    def finish(self, extra_allowed: tuple[str, ...] = ()) -> None:
        """Reject keys that no code read, suggesting the closest known key."""
        known = self.used | set(extra_allowed)
        for key in self.mapping:
            if key in known:
                continue
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = (
                _("did you mean '{suggestion}'?").format(suggestion=close[0])
                if close
                else _("known keys: {keys}").format(keys=", ".join(sorted(known)))
            )
            if self.top:
                message = _("unknown key '{key}' at the top level of {file}: {hint}").format(
                    key=key, file=self.name, hint=hint)
            else:
                message = _("unknown key '{key}' in '{section}': {hint}").format(
                    key=key, section=self.name, hint=hint)
            raise ConfigError(
                message, str(self.mapping.key_positions.get(key, self.mapping.where())))


def read_once_per_config(load: Callable[[Config], _T]) -> Callable[[Config], _T]:
    """Wrap ``load`` so that it reads each Config object once.

    The cache is keyed by the object's identity: equal configs may differ in ``raw``,
    which dataclass equality ignores, so caching on the value could return stale
    settings. A reloaded configuration is a new object and is read again. Tests open
    many desks in one process, so the oldest of 16 entries gives way.
    """
    cache: dict[int, tuple[Config, _T]] = {}

    def read(config: Config) -> _T:
        cached = cache.get(id(config))
        if cached is not None and cached[0] is config:
            return cached[1]

        value = load(config)
        if len(cache) >= 16:
            cache.pop(next(iter(cache)))
        cache[id(config)] = (config, value)
        return value

    return read


def _nowhere() -> Any:
    from maildesk.yamlfile import Position

    return Position("<defaults>", 0, 0)


def check_stored_secrets(config: Config) -> None:
    """Read the passwords kept in variables and files; raise ConfigError if one is missing.

    The daemon calls it before it opens the database, so a missing variable stops it
    before migrations and the agent sync change anything. Secrets printed by a command
    are left to the first connection, since one call may cost a token.
    """
    secrets = [config.smtp.password]
    if isinstance(config.source, ImapConfig):
        secrets += [config.source.password, config.source.oauth2_token]
    for secret in secrets:
        if secret.env or secret.file:
            secret.reveal()


def load_config(path: Path) -> Config:
    """Read and validate maildesk.yaml; raise ConfigError naming file, line and fix."""
    path = path.resolve()
    document = load_yaml_file(path)
    if document is None:
        document = YamlMapping()
        document.position = _nowhere()
        document.key_positions, document.value_positions = {}, {}
    if not isinstance(document, YamlMapping):
        where = document.where() if isinstance(document, YamlSequence) else str(path)
        raise ConfigError(
            _("the configuration must be a mapping of keys and values, starting with "
              "'desk:', not a list or plain text"),
            str(where),
        )
    root = _Section(document, path.name, None, "")
    root.top = True
    base = path.parent

    # The sections are read one by one, and a mistake in one does not hide the mistakes
    # of the others: all of them are reported together, as rules check does.
    problems = ConfigErrorCollector()

    def read(reader: Callable[[], _T]) -> _T | None:
        return problems.read(reader, None)

    language = root.text("language", "pl")
    if normalize_language(language) is None:
        problems.errors.append(root.error("language", _("'language' must be pl or en, not "
                                                        "'{value}'").format(value=language)))
    desk_mapping = root.get("desk")
    desk = read(lambda: _desk(_Section(desk_mapping, "desk", document, "desk")))
    database_url = read(lambda: _database_url(root, base))
    storage_path = read(lambda: root.path("storage", "data", base))
    templates_path = read(lambda: root.path("templates", "templates", base))
    rules_path = read(lambda: root.path("rules", "rules", base))
    smtp_mapping = root.get("smtp")
    smtp = read(lambda: _smtp(_Section(smtp_mapping, "smtp", document, "smtp"), base))
    source_mapping = root.get("source")
    source = read(lambda: _source(source_mapping, document, base))
    groups_list = root.get("groups")
    groups = read(lambda: _groups(groups_list, document))
    agents_list = root.get("agents")
    agents = None
    # Without valid groups every agent's groups would be reported as unknown.
    if groups is not None:
        group_names = {group.name for group in groups}
        agents = read(lambda: _agents(agents_list, document, group_names))
    vip = tuple(str(v) for v in (root.get("vip") or []))
    parse_ahead = read(lambda: root.boolean("parse_ahead", True))
    read(lambda: root.finish(extra_allowed=("sla", "calendar", "priority", "commands",
                                            "threading", "daily_summary")))
    problems.raise_errors()
    assert desk is not None
    assert database_url is not None
    assert smtp is not None
    assert storage_path is not None
    assert templates_path is not None
    assert rules_path is not None
    assert groups is not None
    assert agents is not None
    assert parse_ahead is not None

    config = Config(
        path=path,
        language=normalize_language(language) or "pl",
        desk=desk,
        database_url=database_url,
        storage_path=storage_path,
        templates_path=templates_path,
        rules_path=rules_path,
        smtp=smtp,
        source=source,
        agents=agents,
        groups=groups,
        vip=vip,
        parse_ahead=parse_ahead,
        raw=document,
    )
    from maildesk import holidaycache
    from maildesk.agents import check_command_settings
    from maildesk.dailysummary import summary_settings_of
    from maildesk.slaconfig import service_levels_of

    # Before the calendars are checked, which reads the holiday country codes.
    holidaycache.use_storage(storage_path)

    # 'calendar', 'priority', 'sla', 'commands' and 'daily_summary', each error with
    # file:line.
    problems.read(lambda: service_levels_of(config), None)
    problems.read(lambda: check_command_settings(config), None)
    problems.read(lambda: summary_settings_of(config), None)
    problems.raise_errors()
    return config


def _desk(section: _Section) -> DeskConfig:
    address = section.address("address", required=True)
    tag = section.text("ticket_tag", "[SD#{number}]")
    if "{number}" not in tag:
        raise section.error(
            "ticket_tag",
            _("'ticket_tag' must contain {placeholder}, e.g. \"{example}\"").format(
                placeholder="{number}", example="[SD#{number}]"),
        )
    desk = DeskConfig(
        name=section.text("name", "Service Desk"),
        address=address,
        other_addresses=section.addresses("other_addresses"),
        admin_addresses=section.addresses("admin_addresses"),
        ticket_tag=tag,
        message_id_domain=section.text("message_id_domain", address.split("@", 1)[1]),
        default_charset=section.text("default_charset", "windows-1250"),
        timezone=section.text("timezone", "Europe/Warsaw"),
        automatic_mail_limit=section.integer("automatic_mail_limit", 10, minimum=1),
        max_message_size=section.integer("max_message_size", 50 * 1024 * 1024, minimum=1024),
        blocked_senders=_sender_patterns(section, "blocked_senders"),
        automatic_mail_ticket_limit=section.integer("automatic_mail_ticket_limit", 20,
                                                    minimum=1),
        automatic_mail_desk_limit=section.integer("automatic_mail_desk_limit", 500,
                                                  minimum=1),
        notification_attachments_max_size=section.integer(
            "notification_attachments_max_size", 7 * 1024 * 1024, minimum=0),
    )
    section.finish()
    return desk


def _sender_patterns(section: _Section, key: str) -> tuple[str, ...]:
    """Read a list of addresses and ``@domain`` entries (a domain covers its subdomains)."""
    value = section.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise section.error(key, _("'{key}' must be a list of addresses or @domains")
                            .format(key=key))
    patterns = []
    for item in value:
        text = str(item).strip().lower()
        if not (_EMAIL.match(text) or (text.startswith("@") and "." in text)):
            raise section.error(key, _("'{value}' is neither an address nor an @domain: write "
                                       "jan@example.com or @example.com").format(value=item))
        patterns.append(text)
    return tuple(patterns)


def _database_url(root: _Section, base: Path) -> str:
    value = root.text("database", "sqlite:///data/maildesk.db")
    if value.startswith("sqlite:///") and not value.startswith("sqlite:////"):
        relative = value[len("sqlite:///"):]
        if relative != ":memory:":
            return "sqlite:///" + str((base / relative).resolve())
    if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise root.error(
            "database",
            _("'database' must be sqlite:///path/to/file.db or "
              "postgresql://user@host:5432/name, not '{value}'").format(value=value),
        )
    return value


def _smtp(section: _Section, base: Path) -> SmtpConfig:
    transport = section.choice("transport", "smtp", ("smtp", "directory"))
    security = section.choice("security", "none", ("tls", "starttls", "none"))
    default_port = {"tls": 465, "starttls": 587, "none": 25}[security]
    smtp = SmtpConfig(
        transport=transport,
        host=section.text("host", "127.0.0.1"),
        port=section.integer("port", default_port, minimum=1, maximum=65535),
        security=security,
        username=section.text("username"),
        password=section.secret("password", base),
        ca_file=section.ca_file(base),
        directory=section.path("directory", "outbox" if transport == "directory" else None, base),
        timeout=section.number("timeout", 60.0),
        max_attempts=section.integer("max_attempts", 12, minimum=1),
    )
    section.finish()
    return smtp


def _source(value: Any, document: YamlMapping, base: Path) -> ImapConfig | MaildirConfig | None:
    if value is None:
        return None
    section = _Section(value, "source", document, "source")
    kind = section.choice("type", "imap", ("imap", "maildir"))
    if kind == "maildir":
        path = section.path("path", None, base)
        if path is None:
            raise section.error("path", _("missing required key 'path' in 'source'"))
        section.finish()
        return MaildirConfig(path=path)

    security = section.choice("security", "tls", ("tls", "starttls", "none"))
    imap = ImapConfig(
        host=section.text("host", required=True),
        username=section.text("username", required=True),
        port=section.integer("port", 993 if security == "tls" else 143, minimum=1,
                             maximum=65535),
        security=security,
        password=section.secret("password", base),
        oauth2_token=section.secret("oauth2_token", base),
        ca_file=section.ca_file(base),
        folder=section.text("folder", "INBOX"),
        processed_folder=section.text("processed_folder", "Processed"),
        quarantine_folder=section.text("quarantine_folder", "Quarantine"),
        idle=section.boolean("idle", True),
        poll_interval=section.number("poll_interval", 60.0),
        batch_size=section.integer("batch_size", 50, minimum=1),
        timeout=section.number("timeout", 60.0),
    )
    if not imap.password and not imap.oauth2_token:
        raise section.error(
            "host",
            _("IMAP needs password_env, password_file or oauth2_token_command"),
        )
    section.finish()
    return imap


def _groups(value: Any, document: YamlMapping) -> tuple[GroupConfig, ...]:
    if value is None:
        return ()
    if not isinstance(value, YamlSequence):
        raise ConfigError(_("'groups' must be a list"), str(document.where("groups")))
    groups = []
    for item in value:
        section = _Section(item, "groups", document, "groups")
        groups.append(
            GroupConfig(
                name=section.text("name", required=True),
                tier=section.integer("tier", 1, minimum=1),
                manager=section.address("manager"),
                escalates_to=section.text("escalates_to"),
                address=section.address("address"),
                description=section.text("description", ""),
            )
        )
        section.finish()

    names = {g.name for g in groups}
    for index, group in enumerate(groups):
        if group.escalates_to and group.escalates_to not in names:
            item = value[index]
            raise ConfigError(
                _("group '{group}' escalates to unknown group '{target}': known groups: {known}")
                .format(group=group.name, target=group.escalates_to,
                        known=", ".join(sorted(names))),
                str(item.where("escalates_to")),
            )
    _check_escalation_cycles(groups, value)
    return tuple(groups)


def _check_escalation_cycles(groups: list[GroupConfig], items: YamlSequence) -> None:
    """Reject escalation chains that come back to a group, including a group to itself."""
    index_of = {group.name: index for index, group in enumerate(groups)}
    for start in groups:
        chain = [start.name]
        current = start
        while current.escalates_to:
            target = current.escalates_to
            if target in chain:
                cycle = chain[chain.index(target):] + [target]
                item = items[index_of[current.name]]
                raise ConfigError(
                    _("the escalation of group '{group}' goes round in a circle: {cycle}. "
                      "Remove 'escalates_to' from the group at the top of the chain").format(
                        group=current.name, cycle=" -> ".join(cycle)),
                    str(item.where("escalates_to")),
                )
            chain.append(target)
            current = groups[index_of[target]]


def _agents(value: Any, document: YamlMapping, groups: set[str]) -> tuple[AgentConfig, ...]:
    if value is None:
        return ()
    if not isinstance(value, YamlSequence):
        raise ConfigError(_("'agents' must be a list"), str(document.where("agents")))
    agents = []
    owners: dict[str, str] = {}
    for item in value:
        section = _Section(item, "agents", document, "agents")
        addresses = section.addresses("addresses")
        if not addresses:
            raise section.error("addresses", _("an agent needs at least one address"))
        login = section.text("login", required=True)
        _check_address_owners(section, addresses, login, owners)
        member_of = tuple(str(g) for g in (section.get("groups") or []))
        for group in member_of:
            if group not in groups:
                raise section.error(
                    "groups",
                    _("unknown group '{group}': define it under 'groups' first").format(
                        group=group
                    ),
                )
        agents.append(
            AgentConfig(
                login=login,
                name=section.text("name", "") or login,
                addresses=addresses,
                groups=member_of,
                commands=section.boolean("commands", True),
                language=normalize_language(section.text("language")),
                daily_summary=section.boolean("daily_summary", True),
            )
        )
        section.finish()
    return tuple(agents)


def _check_address_owners(section: _Section, addresses: tuple[str, ...], login: str,
                          owners: dict[str, str]) -> None:
    """Reject an address that an earlier agent already has (compared case-insensitively).

    maildesk could not tell which agent sent a mail from a shared address, so it would act
    for whichever agent comes first. ``owners`` maps each lower-cased address to its
    agent's login.
    """
    listed = section.mapping.get("addresses")
    for index, address in enumerate(addresses):
        owner = owners.setdefault(address.lower(), login)
        if owner == login:
            continue
        where = (listed.where(index) if isinstance(listed, YamlSequence)
                 else section.mapping.where("addresses"))
        raise ConfigError(
            _("the address '{address}' of agent '{login}' already belongs to agent "
              "'{owner}': each agent needs addresses of their own").format(
                address=address, login=login, owner=owner),
            str(where),
        )
