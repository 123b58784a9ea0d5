"""The rule itself, what the rules are checked against, and the errors a rules file can have."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from maildesk.errors import ConfigError
from maildesk.i18n import _, ngettext
from maildesk.yamlfile import Position

if TYPE_CHECKING:
    from maildesk.rules.actions import Action
    from maildesk.rules.conditions import Condition


def _always_business_hours(_moment: datetime) -> bool:
    return True


@dataclass(frozen=True)
class RuleEnvironment:
    """The parts of the desk configuration that rules refer to, built by the caller.

    ``agent_addresses`` and ``vip`` entries are compared in lower case. A ``vip`` entry is
    either an address or ``@domain``, which also covers the domain's subdomains.
    ``is_business_hours`` receives the time a mail was received (timezone-aware). The
    default treats every moment as business hours. ``timezone`` is the desk's IANA time
    zone, in which a time given without an offset is read.
    """

    groups: frozenset[str] = frozenset()
    agents: frozenset[str] = frozenset()
    agent_addresses: frozenset[str] = frozenset()
    templates: frozenset[str] = frozenset()
    vip: tuple[str, ...] = ()
    is_business_hours: Callable[[datetime], bool] = field(default=_always_business_hours)
    timezone: str = "Europe/Warsaw"


@dataclass(frozen=True)
class Rule:
    """One validated rule; ``path`` and ``line`` point at its ``name`` in the rules file."""

    name: str
    conditions: tuple[Condition, ...]
    actions: tuple[Action, ...]
    path: str
    line: int
    description: str = ""
    on_followup: bool = False
    enabled: bool = True
    stop: bool = False


class RuleProblem(ConfigError):
    """One invalid spot in a rules file; ``position`` is None when only the file is known."""

    def __init__(self, message: str, position: Position | str | None) -> None:
        if isinstance(position, Position):
            self.position: Position | None = position
            location: str | None = str(position)
        else:
            self.position = None
            location = position
        super().__init__(message, location)

    @classmethod
    def from_config_error(cls, error: ConfigError) -> RuleProblem:
        """Wrap an error of the YAML loader, keeping its ``file:line:column`` location."""
        problem = cls(error.message, error.location)
        position = _position_from_location(error.location)
        if position is not None:
            problem.position = position
        return problem


def _position_from_location(location: str | None) -> Position | None:
    if not location:
        return None
    parts = location.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return Position(parts[0], int(parts[1]), int(parts[2]))


class RulesError(ConfigError):
    """The rules directory has invalid files; ``errors`` lists every problem in every file."""

    def __init__(self, errors: list[RuleProblem]) -> None:
        self.errors = list(errors)
        summary = ngettext(
            "{count} error in the routing rules",
            "{count} errors in the routing rules",
            len(self.errors),
        ).format(count=len(self.errors))
        details = "\n".join(str(error) for error in self.errors)
        super().__init__(f"{summary}:\n{details}" if details else summary)


def did_you_mean(value: str, choices: list[str] | frozenset[str] | tuple[str, ...]) -> str:
    """Return the hint that ends an error about an unknown name: the closest name or all names."""
    ordered = sorted(choices)
    if not ordered:
        return _("none is configured")

    close = difflib.get_close_matches(value, ordered, n=1, cutoff=0.6)
    if not close:
        close = difflib.get_close_matches(value.casefold(), ordered, n=1, cutoff=0.6)
    if close:
        return _("did you mean '{suggestion}'?").format(suggestion=close[0])
    return _("write one of: {choices}").format(choices=", ".join(ordered))
