"""SLA policies: first-response and resolution targets per priority, group and ticket type."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

from maildesk.business_calendar import AROUND_THE_CLOCK, BusinessCalendar
from maildesk.i18n import _
from maildesk.sla.priority import PRIORITIES, is_priority

DEFAULT_WARNING_SHARE = 0.75


def business_duration(value: timedelta) -> str:
    """Write a target as maildesk.yaml does (``4h``, ``1h30m``, ``30m``), in any language.

    Python writes a timedelta as ``4:00:00``, which reads as a time of day.
    """
    minutes = round(value.total_seconds() / 60)
    hours, rest = divmod(abs(minutes), 60)
    sign = "-" if minutes < 0 else ""
    if hours and rest:
        return f"{sign}{hours}h{rest}m"
    return f"{sign}{hours}h" if hours else f"{sign}{rest}m"


class SlaTarget(StrEnum):
    """The two ITIL service-level targets that a ticket's clock counts towards."""

    FIRST_RESPONSE = "first_response"
    RESOLUTION = "resolution"


@dataclass(frozen=True)
class SlaPolicy:
    """Targets for one priority, optionally only for one group and/or ticket type.

    ``warning_share`` is the share of a target after which a warning is due.
    ``name`` appears in audit events; it defaults to ``P<priority>`` and the scope.
    """

    priority: int
    first_response: timedelta
    resolution: timedelta
    calendar: BusinessCalendar = field(default_factory=BusinessCalendar)
    group: str | None = None
    ticket_type: str | None = None
    warning_share: float = DEFAULT_WARNING_SHARE
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            scope = "".join(
                f" {key}={value}"
                for key, value in (("group", self.group), ("type", self.ticket_type))
                if value is not None
            )
            object.__setattr__(self, "name", f"P{self.priority}{scope}")

        problems = validate_policy(self)
        if problems:
            raise ValueError("; ".join(problems))

    def target(self, kind: SlaTarget) -> timedelta:
        """Return the duration of the first-response or the resolution target."""
        if kind is SlaTarget.FIRST_RESPONSE:
            return self.first_response
        return self.resolution

    @property
    def specificity(self) -> int:
        """Rank when several policies match: group and type 3, group 2, type 1, neither 0."""
        rank = 0
        if self.group is not None:
            rank += 2
        if self.ticket_type is not None:
            rank += 1
        return rank


def validate_policy(policy: SlaPolicy) -> list[str]:
    """Return the problems of one policy's values, [] if none."""
    problems = []
    if not is_priority(policy.priority):
        problems.append(
            _("invalid priority {value!r} in SLA policy {name}: use 1 to 4").format(
                value=policy.priority, name=policy.name
            )
        )

    if policy.first_response <= timedelta(0):
        problems.append(
            _(
                "the first response target of SLA policy {name} must be positive, got {value}"
            ).format(name=policy.name, value=business_duration(policy.first_response))
        )
    if policy.resolution <= timedelta(0):
        problems.append(
            _("the resolution target of SLA policy {name} must be positive, got {value}").format(
                name=policy.name, value=business_duration(policy.resolution)
            )
        )
    if policy.first_response > policy.resolution:
        problems.append(
            _(
                "the first response target {first} of SLA policy {name} is longer than its "
                "resolution target {resolution}"
            ).format(first=business_duration(policy.first_response), name=policy.name,
                     resolution=business_duration(policy.resolution))
        )

    if not 0 < policy.warning_share < 1:
        problems.append(
            _(
                "invalid warning share {value!r} in SLA policy {name}: use a number between "
                "0 and 1, such as 0.75"
            ).format(value=policy.warning_share, name=policy.name)
        )
    return problems


def validate_policies(policies: Iterable[SlaPolicy]) -> list[str]:
    """Return the problems of a policy set: duplicate scopes and priorities with no default."""
    problems = []
    seen: set[tuple[int, str | None, str | None]] = set()
    for policy in policies:
        scope = (policy.priority, policy.group, policy.ticket_type)
        if scope in seen:
            problems.append(
                _("more than one SLA policy for {name}: keep one").format(name=policy.name)
            )
        seen.add(scope)

    for priority in PRIORITIES:
        if (priority, None, None) not in seen:
            problems.append(
                _("missing SLA policy for priority {priority} without group or type").format(
                    priority=priority
                )
            )
    return problems


@dataclass(frozen=True)
class SlaPolicySet:
    """All configured policies; ``select`` picks the most specific one for a ticket."""

    policies: tuple[SlaPolicy, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "policies", tuple(self.policies))
        problems = validate_policies(self.policies)
        if problems:
            raise ValueError("; ".join(problems))

    def select(
        self, priority: int, group: str | None = None, ticket_type: str | None = None
    ) -> SlaPolicy:
        """Return the matching policy with the highest ``specificity`` (group beats type)."""
        matches = [
            policy
            for policy in self.policies
            if policy.priority == priority
            and policy.group in (None, group)
            and policy.ticket_type in (None, ticket_type)
        ]
        if not matches:
            raise LookupError(f"no SLA policy for priority {priority!r}")
        return max(matches, key=lambda policy: policy.specificity)


def default_policies(
    business: BusinessCalendar | None = None, around_the_clock: BusinessCalendar | None = None
) -> SlaPolicySet:
    """Return starting targets: P1 counts around the clock, P2-P4 in business hours."""
    business = business or BusinessCalendar()
    around_the_clock = around_the_clock or AROUND_THE_CLOCK
    hours = timedelta(hours=1)
    return SlaPolicySet(
        (
            SlaPolicy(1, hours / 2, 4 * hours, around_the_clock),
            SlaPolicy(2, hours, 8 * hours, business),
            SlaPolicy(3, 4 * hours, 24 * hours, business),
            SlaPolicy(4, 8 * hours, 40 * hours, business),
        )
    )
