"""The ``calendar``, ``priority`` and ``sla`` sections of maildesk.yaml, as typed values.

``load_service_levels`` reads them into a ``ServiceLevels`` (business calendar, priority
matrix, SLA policies, escalation, reminder, auto-close and reopening settings) and
raises ConfigError with the file, line and column of the first mistake.
``service_levels(desk)`` returns the settings of a running desk, parsed once per
configuration object.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from maildesk.business_calendar import (
    AROUND_THE_CLOCK,
    DEFAULT_HOLIDAY_COUNTRY,
    WEEKDAY_NAMES,
    BusinessCalendar,
    WorkingInterval,
    parse_dates,
    parse_weekday,
    parse_working_hours,
)
from maildesk.config import _Section, read_once_per_config
from maildesk.errors import ConfigError, ConfigErrorCollector
from maildesk.i18n import _
from maildesk.sla import (
    DEFAULT_WARNING_SHARE,
    PriorityMatrix,
    SlaPolicy,
    SlaPolicySet,
    SlaTarget,
    default_policies,
    validate_policies,
    validate_priority_matrix,
)
from maildesk.yamlfile import YamlMapping, YamlSequence

if TYPE_CHECKING:
    from maildesk.config import Config
    from maildesk.desk import Desk

logger = logging.getLogger(__name__)

TICKET_TYPES = ("incident", "service_request")
NOTIFIED_STATUSES = ("assigned", "pending", "resolved", "closed", "reopened")
MANAGER_ON = ("warning", "breach", "never")

# Short replies that thank or confirm and ask for nothing, in Polish and English.
# A reply to a resolved ticket made only of these (plus greetings and a signature)
# leaves the ticket resolved. Longer phrases come first so they are removed whole.
DEFAULT_THANKS_PHRASES = (
    "dziękuję bardzo", "dziękujemy bardzo", "bardzo dziękuję", "bardzo dziękujemy",
    "serdecznie dziękuję", "dziękuję za pomoc", "dziękuję za szybką pomoc",
    "dzięki za pomoc", "dziękuję", "dziękujemy", "dzięki", "dziekuje", "dzieki",
    "wszystko działa", "już działa", "teraz działa", "działa", "wszystko ok",
    "wszystko w porządku", "problem rozwiązany", "sprawa załatwiona", "super", "świetnie",
    "ok", "okej", "git", "pozdrawiam", "pozdrawiam serdecznie", "z poważaniem",
    "miłego dnia", "dzień dobry", "witam",
    "thank you very much", "thank you so much", "thanks a lot", "many thanks",
    "thank you", "thanks", "thx", "ty", "cheers", "it works now", "it works",
    "works now", "all good", "problem solved", "great", "perfect", "ok", "okay",
    "best regards", "kind regards", "regards", "have a nice day", "hello", "hi",
)

_DURATION_PART = re.compile(r"(\d+)\s*(w|d|h|min|m|s)", re.IGNORECASE)
_DURATION_UNITS = {
    "w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1),
    "min": timedelta(minutes=1), "m": timedelta(minutes=1), "s": timedelta(seconds=1),
}
_BUSINESS_UNITS = ("h", "min", "m", "s")


@dataclass(frozen=True)
class EscalationSettings:
    """When the group's manager hears of a ticket, and which breaches move it a tier up."""

    manager_on: str = "breach"
    next_tier_on: frozenset[SlaTarget] = frozenset({SlaTarget.RESOLUTION})


@dataclass(frozen=True)
class PendingSettings:
    """Reminders while a ticket waits for the user; None interval means no reminders."""

    reminder_interval: timedelta | None = timedelta(days=2)
    max_reminders: int = 3
    resolve_unanswered: bool = False


@dataclass(frozen=True)
class ServiceLevels:
    """Everything the lifecycle, the SLA clock and the scheduler read from the configuration."""

    calendar: BusinessCalendar = field(default_factory=BusinessCalendar)
    matrix: PriorityMatrix = field(default_factory=PriorityMatrix)
    policies: SlaPolicySet = field(default_factory=default_policies)
    warning_share: float = DEFAULT_WARNING_SHARE
    escalation: EscalationSettings = field(default_factory=EscalationSettings)
    pending: PendingSettings = field(default_factory=PendingSettings)
    auto_close_after: timedelta | None = timedelta(days=5)
    thanks_phrases: tuple[str, ...] = DEFAULT_THANKS_PHRASES
    notify_requester: frozenset[str] = frozenset(NOTIFIED_STATUSES)
    categories: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    check_interval: timedelta = timedelta(minutes=1)

    def policy_for(self, priority: int, group: str | None, ticket_type: str | None) -> SlaPolicy:
        return self.policies.select(priority, group, ticket_type)


def parse_duration(value: object, business: bool = False) -> timedelta:
    """Parse ``30m``, ``4h``, ``1h30m``, ``2d`` or ``1w`` into a positive timedelta.

    Business time (``business=True``) takes hours and minutes only, because a working
    day has no fixed length. Raises ValueError whose message shows the fix.
    """
    text = str(value).strip().lower() if isinstance(value, str) else None
    example = _("8h or 1h30m") if business else _("30m, 4h or 2d")
    if not text or isinstance(value, bool):
        raise ValueError(_("invalid duration {value!r}: write it like {example}").format(
            value=value, example=example))

    total = timedelta(0)
    position = 0
    for match in _DURATION_PART.finditer(text):
        if text[position:match.start()].strip():
            break
        unit = match.group(2).lower()
        if business and unit not in _BUSINESS_UNITS:
            raise ValueError(_(
                "invalid business time {value!r}: give it in hours and minutes, such as "
                "{example}, because a working day has no fixed length"
            ).format(value=value, example=example))
        total += int(match.group(1)) * _DURATION_UNITS[unit]
        position = match.end()
    if position == 0 or text[position:].strip() or total <= timedelta(0):
        raise ValueError(_("invalid duration {value!r}: write it like {example}").format(
            value=value, example=example))
    return total


def _empty_mapping(parent: YamlMapping, key: str) -> YamlMapping:
    mapping = YamlMapping()
    mapping.position = parent.where(key)
    mapping.key_positions, mapping.value_positions = {}, {}
    return mapping


def _section(parent: YamlMapping, key: str, name: str) -> _Section:
    value = parent.get(key)
    if value is None:
        value = _empty_mapping(parent, key)
    return _Section(value, name, parent, key)


def _duration(section: _Section, key: str, default: timedelta | None,
              business: bool = False, allow_never: bool = False) -> timedelta | None:
    value = section.get(key)
    if value is None:
        return default
    if allow_never and value in ("never", False):
        return None
    try:
        return parse_duration(value, business=business)
    except ValueError as error:
        hint = _(" (or never)") if allow_never else ""
        raise section.error(key, f"{error}{hint}") from None


def _calendar(root: YamlMapping, desk_timezone: str) -> BusinessCalendar:
    section = _section(root, "calendar", "calendar")
    # Every key is read even after one fails, so all the mistakes are reported together.
    problems = ConfigErrorCollector()
    read: Callable[[Callable[[], Any], Any], Any] = problems.read

    timezone: str = read(lambda: section.text("timezone", desk_timezone), desk_timezone)
    read(lambda: _check_timezone(root, section, timezone), None)
    values: dict[str, Any] = {
        "timezone": timezone,
        "holiday_country": read(lambda: _holiday_country(section), None),
        "weekly_hours": read(lambda: _weekly_hours(section), ()),
        "closed_days": read(lambda: _dates(section, "closed_days"), frozenset()),
        "working_days": read(lambda: _dates(section, "working_days"), frozenset()),
        "always_open": read(lambda: section.boolean("always_open", False), False),
    }
    extra = section.get("extra_day_hours")
    if extra is not None:
        values["extra_day_hours"] = read(lambda: _hours(section, "extra_day_hours", extra), ())
    read(section.finish, None)
    problems.raise_errors()

    try:
        return BusinessCalendar(**values)
    except ValueError as error:
        raise ConfigError(str(error), str(root.where("calendar"))) from None


def _holiday_country(section: _Section) -> str | None:
    country = section.get("holidays", DEFAULT_HOLIDAY_COUNTRY)
    if country in (None, False, "none"):
        return None
    if not isinstance(country, str):
        raise section.error("holidays", _(
            "'holidays' must be an ISO 3166 country code such as PL, or none"))
    return country.upper()


def _check_timezone(root: YamlMapping, section: _Section, timezone: str) -> None:
    """Raise a ConfigError at the key that set an unknown time zone.

    A calendar without ``timezone`` takes ``desk.timezone``, so the error points there.
    BusinessCalendar's own check would name only the calendar section.
    """
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        pass
    else:
        return

    message = _("unknown time zone {zone!r}: use an IANA name such as Europe/Warsaw").format(
        zone=timezone)
    if "timezone" in section.mapping:
        raise section.error("timezone", message)
    desk = root.get("desk")
    where = desk.where("timezone") if isinstance(desk, YamlMapping) else root.where("desk")
    raise ConfigError(message, str(where))


def _weekly_hours(section: _Section) -> tuple[tuple[WorkingInterval, ...], ...]:
    hours = section.get("hours")
    if hours is None:
        return BusinessCalendar().weekly_hours
    if not isinstance(hours, YamlMapping):
        raise section.error("hours", _(
            "'hours' must map weekdays to working hours, e.g. monday: \"08:00-16:00\""))

    weekly: list[tuple[WorkingInterval, ...]] = [() for _day in WEEKDAY_NAMES]
    for day_name, value in hours.items():
        try:
            day = parse_weekday(day_name)
        except ValueError as error:
            raise ConfigError(str(error), str(hours.key_positions.get(day_name))) from None
        weekly[day] = _hours(_Section(hours, "calendar.hours", None, ""), day_name, value)
    return tuple(weekly)


def _hours(section: _Section, key: str, value: object) -> tuple[WorkingInterval, ...]:
    if value in (None, False):
        return ()
    try:
        return parse_working_hours(str(value))
    except ValueError as error:
        raise section.error(key, str(error)) from None


def _dates(section: _Section, key: str) -> frozenset[date]:
    value = section.get(key) or []
    if not isinstance(value, list):
        raise section.error(key, _("'{key}' must be a list of dates such as 2026-12-24").format(
            key=key))
    try:
        return parse_dates(value)
    except ValueError as error:
        raise section.error(key, str(error)) from None


def _matrix(root: YamlMapping) -> PriorityMatrix:
    section = _section(root, "priority", "priority")
    cells = section.get("matrix")
    section.finish()
    if cells is None:
        return PriorityMatrix()

    problems = validate_priority_matrix(cells)
    if problems:
        raise ConfigError("; ".join(problems), str(section.mapping.where("matrix")))
    return PriorityMatrix(cells)


def _policies(section: _Section, business: BusinessCalendar, warning_share: float,
              groups: frozenset[str]) -> SlaPolicySet:
    items = section.get("policies")
    if items is None:
        return default_policies(business)
    if not isinstance(items, YamlSequence):
        raise section.error("policies", _("'policies' must be a list of SLA policies"))

    policies = []
    for index, item in enumerate(items):
        policies.append(_policy(item, items, index, business, warning_share, groups))
    problems = validate_policies(policies)
    if problems:
        raise ConfigError("; ".join(problems), str(section.mapping.where("policies")))
    return SlaPolicySet(tuple(policies))


def _policy(item: Any, items: YamlSequence, index: int, business: BusinessCalendar,
            warning_share: float, groups: frozenset[str]) -> SlaPolicy:
    if not isinstance(item, YamlMapping):
        raise ConfigError(_("each SLA policy must be a mapping with priority, first_response "
                            "and resolution"), str(items.where(index)))
    policy_section = _Section(item, "sla.policies", None, "")
    priority = policy_section.integer("priority", 0, minimum=1)
    first_response = _duration(policy_section, "first_response", None, business=True)
    resolution = _duration(policy_section, "resolution", None, business=True)
    if first_response is None or resolution is None:
        missing = "first_response" if first_response is None else "resolution"
        raise ConfigError(_("missing required key '{key}' in 'sla.policies'").format(
            key=missing), str(items.where(index)))

    hours = policy_section.choice("hours", "business", ("business", "24x7"))
    group = policy_section.text("group")
    if group is not None and group not in groups:
        raise policy_section.error("group", _(
            "unknown group '{group}': define it under 'groups' first").format(group=group))
    ticket_type = policy_section.text("type")
    if ticket_type is not None and ticket_type not in TICKET_TYPES:
        raise policy_section.error("type", _(
            "'type' must be one of: {choices} (not '{value}')").format(
                choices=", ".join(TICKET_TYPES), value=ticket_type))
    share = policy_section.get("warning_share", warning_share)
    policy_section.finish()

    try:
        return SlaPolicy(
            priority=priority, first_response=first_response, resolution=resolution,
            calendar=AROUND_THE_CLOCK if hours == "24x7" else business, group=group,
            ticket_type=ticket_type, warning_share=share,
        )
    except ValueError as error:
        raise ConfigError(str(error), str(items.where(index))) from None


def _escalation(section: _Section) -> EscalationSettings:
    escalation = _Section(section.get("escalation"), "sla.escalation", section.mapping,
                          "escalation")
    manager_on = escalation.choice("manager_on", "breach", MANAGER_ON)
    targets = escalation.get("next_tier_on", [SlaTarget.RESOLUTION.value])
    if not isinstance(targets, list) or any(
            target not in {t.value for t in SlaTarget} for target in targets):
        raise escalation.error("next_tier_on", _(
            "'next_tier_on' must list SLA targets: first_response, resolution, or []"))
    escalation.finish()
    return EscalationSettings(manager_on, frozenset(SlaTarget(target) for target in targets))


def _pending(section: _Section) -> PendingSettings:
    pending = _Section(section.get("pending"), "sla.pending", section.mapping, "pending")
    settings = PendingSettings(
        reminder_interval=_duration(pending, "reminder_interval", timedelta(days=2),
                                    allow_never=True),
        max_reminders=pending.integer("max_reminders", 3, minimum=0),
        resolve_unanswered=pending.boolean("resolve_unanswered", False),
    )
    pending.finish()
    return settings


def _text_list(section: _Section, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = section.get(key)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise section.error(key, _("'{key}' must be a list of texts").format(key=key))
    return tuple(item.strip().lower() for item in value if item.strip())


def _notified(section: _Section) -> frozenset[str]:
    statuses = _text_list(section, "notify_requester", NOTIFIED_STATUSES)
    for status in statuses:
        if status not in NOTIFIED_STATUSES:
            raise section.error("notify_requester", _(
                "'notify_requester' lists unknown status '{status}': use {choices}").format(
                    status=status, choices=", ".join(NOTIFIED_STATUSES)))
    return frozenset(statuses)


def _categories(section: _Section) -> Mapping[str, tuple[str, ...]]:
    value = section.get("categories")
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, YamlMapping) or any(
            key not in TICKET_TYPES or not isinstance(items, list) for key, items in value.items()):
        raise section.error("categories", _(
            "'categories' must map incident and service_request to lists of categories"))
    return MappingProxyType({key: tuple(str(item) for item in items)
                             for key, items in value.items()})


def load_service_levels(config: Config) -> ServiceLevels:
    """Read the calendar, priority and SLA sections; raise ConfigError naming file:line.

    Every setting is read even after one fails, and all the mistakes are raised together
    (ConfigErrors), so an admin fixes them in one round.
    """
    root = config.raw
    if root is None:
        return ServiceLevels(calendar=BusinessCalendar(timezone=config.desk.timezone))

    problems = ConfigErrorCollector()
    read = problems.read

    calendar = read(lambda: _calendar(root, config.desk.timezone), BusinessCalendar())
    matrix = read(lambda: _matrix(root), PriorityMatrix())
    # An 'sla' that is no mapping is read as an empty one, so the mistakes of the calendar
    # and the priority matrix above are still reported with it.
    section = read(lambda: _section(root, "sla", "sla"), _Section(None, "sla", root, "sla"))
    warning_share = read(lambda: _warning_share(section), DEFAULT_WARNING_SHARE)
    groups = frozenset(group.name for group in config.groups)
    defaults = ServiceLevels(calendar=calendar)
    levels = ServiceLevels(
        calendar=calendar,
        matrix=matrix,
        policies=read(lambda: _policies(section, calendar, warning_share, groups),
                      defaults.policies),
        warning_share=warning_share,
        escalation=read(lambda: _escalation(section), defaults.escalation),
        pending=read(lambda: _pending(section), defaults.pending),
        auto_close_after=read(lambda: _duration(section, "auto_close_after",
                                                timedelta(days=5), allow_never=True),
                              defaults.auto_close_after),
        thanks_phrases=read(lambda: _text_list(section, "thanks_phrases",
                                               DEFAULT_THANKS_PHRASES),
                            defaults.thanks_phrases),
        notify_requester=read(lambda: _notified(section), defaults.notify_requester),
        categories=read(lambda: _categories(section), defaults.categories),
        check_interval=read(lambda: _duration(section, "check_interval",
                                              timedelta(minutes=1)),
                            None) or timedelta(minutes=1),
    )
    read(section.finish, None)
    problems.raise_errors()
    return levels


def _warning_share(section: _Section) -> float:
    warning_share = section.get("warning_share", DEFAULT_WARNING_SHARE)
    if isinstance(warning_share, bool) or not isinstance(warning_share, int | float) or not (
            0 < warning_share < 1):
        raise section.error("warning_share", _(
            "invalid warning share {value!r}: use a number between 0 and 1, such as 0.75"
        ).format(value=warning_share))
    return float(warning_share)


def service_levels(desk: Desk) -> ServiceLevels:
    """Return the service-level settings of a desk, parsed once per configuration object."""
    return service_levels_of(desk.config)


service_levels_of = read_once_per_config(load_service_levels)
