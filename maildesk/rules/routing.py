"""The result of the rules for one mail, with the trace that explains it.

The pipeline stores ``Routing.to_json()`` with the ticket's creation event, so an agent
can later see which rule put the ticket where it is. The trace keeps structured values,
not sentences, so ``format_explanation`` can render it in the reader's language.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from maildesk.errors import ConfigError
from maildesk.i18n import _

JSON_VERSION = 1

# RuleTrace.status values.
MATCHED = "matched"
NOT_MATCHED = "not_matched"
DISABLED = "disabled"
NEW_TICKETS_ONLY = "new_tickets_only"
AFTER_STOP = "after_stop"
STATUSES = (MATCHED, NOT_MATCHED, DISABLED, NEW_TICKETS_ONLY, AFTER_STOP)

JsonValue = str | bool | int | None | list[Any] | dict[str, Any]


@dataclass(frozen=True)
class ConditionTrace:
    """One evaluated condition, flattened from the condition tree in evaluation order.

    ``kind`` is ``test`` for a single comparison or ``all``, ``any``, ``not`` for a
    combinator whose parts follow it with ``depth + 1``. ``field`` names what was
    tested (``subject``, ``header``, ``set``, ...), ``argument`` the header name or the
    routing field for ``header`` and ``set``. ``operator`` is ``is`` for true/false
    conditions. ``actual`` is the tested value, shortened around a match.
    """

    depth: int
    kind: str
    result: bool
    field: str | None = None
    argument: str | None = None
    operator: str | None = None
    expected: tuple[str, ...] | bool | None = None
    case_sensitive: bool = False
    actual: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the trace with unset fields left out: every new ticket stores one."""
        expected = list(self.expected) if isinstance(self.expected, tuple) else self.expected
        data: dict[str, Any] = {"depth": self.depth, "kind": self.kind, "result": self.result}
        optional = (("field", self.field), ("argument", self.argument),
                    ("operator", self.operator), ("expected", expected),
                    ("actual", self.actual))
        data.update((name, value) for name, value in optional if value is not None)
        if self.case_sensitive:
            data["case_sensitive"] = True
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConditionTrace:
        expected = data.get("expected")
        return cls(
            depth=int(data["depth"]),
            kind=str(data["kind"]),
            result=bool(data["result"]),
            field=data.get("field"),
            argument=data.get("argument"),
            operator=data.get("operator"),
            expected=tuple(expected) if isinstance(expected, list) else expected,
            case_sensitive=bool(data.get("case_sensitive", False)),
            actual=data.get("actual"),
        )


@dataclass(frozen=True)
class ActionTrace:
    """One action a matched rule applied: the new value and the value it replaced."""

    action: str
    value: JsonValue
    previous: JsonValue = None

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "value": self.value, "previous": self.previous}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ActionTrace:
        return cls(str(data["action"]), data.get("value"), data.get("previous"))


@dataclass(frozen=True)
class RuleTrace:
    """The outcome of one rule; ``status`` is one of ``STATUSES``."""

    rule: str
    path: str
    line: int
    status: str
    conditions: tuple[ConditionTrace, ...] = ()
    actions: tuple[ActionTrace, ...] = ()

    @property
    def matched(self) -> bool:
        return self.status == MATCHED

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "path": self.path,
            "line": self.line,
            "status": self.status,
            "conditions": [condition.to_json() for condition in self.conditions],
            "actions": [action.to_json() for action in self.actions],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RuleTrace:
        status = str(data["status"])
        if status not in STATUSES:
            raise ValueError(f"unknown rule status {status!r}")
        return cls(
            rule=str(data["rule"]),
            path=str(data["path"]),
            line=int(data["line"]),
            status=status,
            conditions=tuple(ConditionTrace.from_json(item) for item in data["conditions"]),
            actions=tuple(ActionTrace.from_json(item) for item in data["actions"]),
        )


@dataclass(frozen=True)
class Notification:
    """Extra addresses that get a mail from ``template`` when the ticket is created."""

    addresses: tuple[str, ...]
    template: str

    def to_json(self) -> dict[str, Any]:
        return {"to": list(self.addresses), "template": self.template}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notification:
        return cls(tuple(str(address) for address in data["to"]), str(data["template"]))


@dataclass(frozen=True)
class Routing:
    """The decision of the rules for one mail; None means that no rule set the field.

    ``template`` None with ``acknowledge`` True means the desk's default acknowledgement.
    ``acknowledge`` False (``template: none``) means no acknowledgement at all.
    ``auto_reply`` False means no automatic mail of any kind to the requester.
    ``language`` is the reply language a rule chose, None when no rule chose one.
    ``mail_language`` is the language of the mail, as given by the caller, read from
    Content-Language or guessed.
    """

    group: str | None = None
    assignee: str | None = None
    type: str | None = None
    category: str | None = None
    impact: str | None = None
    urgency: str | None = None
    tags: tuple[str, ...] = ()
    template: str | None = None
    acknowledge: bool = True
    auto_reply: bool = True
    ignore_reason: str | None = None
    notify: tuple[Notification, ...] = ()
    language: str | None = None
    mail_language: str | None = None
    followup: bool = False
    stopped_by: str | None = None
    trace: tuple[RuleTrace, ...] = field(default=())

    @property
    def ignored(self) -> bool:
        return self.ignore_reason is not None

    @property
    def matched_rules(self) -> tuple[str, ...]:
        return tuple(item.rule for item in self.trace if item.matched)

    def to_json(self) -> dict[str, Any]:
        """Return a dict of plain JSON types; ``from_json`` reads it back unchanged."""
        return {
            "version": JSON_VERSION,
            "group": self.group,
            "assignee": self.assignee,
            "type": self.type,
            "category": self.category,
            "impact": self.impact,
            "urgency": self.urgency,
            "tags": list(self.tags),
            "template": self.template,
            "acknowledge": self.acknowledge,
            "auto_reply": self.auto_reply,
            "ignore_reason": self.ignore_reason,
            "notify": [notification.to_json() for notification in self.notify],
            "language": self.language,
            "mail_language": self.mail_language,
            "followup": self.followup,
            "stopped_by": self.stopped_by,
            "trace": [item.to_json() for item in self.trace],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Routing:
        """Rebuild a Routing stored by ``to_json``; raise ConfigError for another version."""
        version = data.get("version")
        if version != JSON_VERSION:
            raise ConfigError(
                _("unsupported version {version} of a stored routing").format(version=version)
            )

        try:
            return cls(
                group=data.get("group"),
                assignee=data.get("assignee"),
                type=data.get("type"),
                category=data.get("category"),
                impact=data.get("impact"),
                urgency=data.get("urgency"),
                tags=tuple(data.get("tags", ())),
                template=data.get("template"),
                acknowledge=bool(data.get("acknowledge", True)),
                auto_reply=bool(data.get("auto_reply", True)),
                ignore_reason=data.get("ignore_reason"),
                notify=tuple(Notification.from_json(item) for item in data.get("notify", ())),
                language=data.get("language"),
                mail_language=data.get("mail_language"),
                followup=bool(data.get("followup", False)),
                stopped_by=data.get("stopped_by"),
                trace=tuple(RuleTrace.from_json(item) for item in data.get("trace", ())),
            )
        except KeyError as error:
            raise ConfigError(
                _("invalid stored routing: the field {field} is missing").format(field=error)
            ) from error
        except (AttributeError, TypeError, ValueError) as error:
            # AttributeError: a list or number where an object with .get() belongs.
            raise ConfigError(_("invalid stored routing: {error}").format(error=error)) from error
