"""Actions of a rule: each one changes one field of the routing that later rules see."""

from __future__ import annotations

from dataclasses import dataclass, field

from maildesk.rules.routing import ActionTrace, JsonValue, Notification, Routing, RuleTrace

ACTIONS = (
    "group",
    "assignee",
    "type",
    "category",
    "impact",
    "urgency",
    "tags",
    "template",
    "auto_reply",
    "ignore",
    "notify",
    "language",
    "stop",
)
TICKET_TYPES = ("incident", "service_request")
LEVELS = ("high", "medium", "low")
NO_TEMPLATE = "none"

# Actions whose value replaces the previous one.
_REPLACING = ("group", "assignee", "type", "category", "impact", "urgency", "language")


@dataclass
class RoutingState:
    """The routing while rules run; ``to_routing`` freezes it."""

    group: str | None = None
    assignee: str | None = None
    type: str | None = None
    category: str | None = None
    impact: str | None = None
    urgency: str | None = None
    tags: list[str] = field(default_factory=list)
    template: str | None = None
    acknowledge: bool = True
    auto_reply: bool = True
    ignore_reason: str | None = None
    notify: list[Notification] = field(default_factory=list)
    language: str | None = None

    def current_values(self, name: str) -> list[str]:
        """Return the values a ``set`` condition tests: empty when nothing was set."""
        if name == "tags":
            return list(self.tags)
        if name == "ignore":
            return [self.ignore_reason] if self.ignore_reason is not None else []
        if name == "template":
            if not self.acknowledge:
                return [NO_TEMPLATE]
            return [self.template] if self.template else []
        value = getattr(self, name)
        return [value] if value else []

    def to_routing(
        self,
        *,
        mail_language: str | None,
        followup: bool,
        stopped_by: str | None,
        trace: tuple[RuleTrace, ...],
    ) -> Routing:
        return Routing(
            group=self.group,
            assignee=self.assignee,
            type=self.type,
            category=self.category,
            impact=self.impact,
            urgency=self.urgency,
            tags=tuple(self.tags),
            template=self.template,
            acknowledge=self.acknowledge,
            auto_reply=self.auto_reply,
            ignore_reason=self.ignore_reason,
            notify=tuple(self.notify),
            language=self.language,
            mail_language=mail_language,
            followup=followup,
            stopped_by=stopped_by,
            trace=trace,
        )


@dataclass(frozen=True)
class Action:
    """One validated action. ``value`` depends on ``name``.

    It is text for the replacing actions and the ``ignore`` reason, a tuple of texts for
    ``tags``, a bool for ``auto_reply`` and ``stop``, text or None (``none``) for
    ``template`` and a tuple of Notification for ``notify``.
    """

    name: str
    value: str | bool | None | tuple[str, ...] | tuple[Notification, ...]

    def apply(self, state: RoutingState) -> ActionTrace:
        """Change the state and return what changed, for the trace."""
        name = self.name
        value = self.value

        if name in _REPLACING:
            previous = getattr(state, name)
            setattr(state, name, value)
            return ActionTrace(name, _json(value), previous)

        if name == "tags":
            assert isinstance(value, tuple)
            added: list[str] = []
            for tag in value:
                if isinstance(tag, str) and tag not in state.tags:
                    state.tags.append(tag)
                    added.append(tag)
            return ActionTrace(name, added, None)

        if name == "template":
            previous_template = state.current_values("template")
            state.template = value if isinstance(value, str) else None
            state.acknowledge = value is not None
            return ActionTrace(
                name, _json(value), previous_template[0] if previous_template else None
            )

        if name == "auto_reply":
            previous_flag = state.auto_reply
            state.auto_reply = bool(value)
            return ActionTrace(name, bool(value), previous_flag)

        if name == "ignore":
            previous_reason = state.ignore_reason
            state.ignore_reason = str(value)
            return ActionTrace(name, str(value), previous_reason)

        if name == "notify":
            assert isinstance(value, tuple)
            notifications = [item for item in value if isinstance(item, Notification)]
            for item in notifications:
                if item not in state.notify:
                    state.notify.append(item)
            return ActionTrace(name, [item.to_json() for item in notifications], None)

        if name == "stop":
            return ActionTrace(name, bool(value), None)

        raise ValueError(f"unknown action {name!r}")


def _json(value: object) -> JsonValue:
    if value is None or isinstance(value, str | bool | int):
        return value
    raise TypeError(f"not a JSON value: {value!r}")
