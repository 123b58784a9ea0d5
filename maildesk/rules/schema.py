"""Validation of rules files: from positioned YAML to Rule objects, collecting every error.

Each error names the file, line and column and states what to write instead, because the
admin who reads it edits YAML by hand, often during an outage. Validation goes on after
an error, so one run of ``maildesk rules check`` lists every problem of every file.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from maildesk.i18n import LANGUAGES, _
from maildesk.rules.actions import ACTIONS, LEVELS, NO_TEMPLATE, TICKET_TYPES, Action
from maildesk.rules.conditions import (
    ADDRESS_FIELDS,
    COMBINATORS,
    DOMAIN_FIELDS,
    FIELDS,
    FLAG_FIELDS,
    FLAG_OPERATOR,
    HEADER_FIELD,
    OPERATORS,
    SET_FIELD,
    SET_FIELDS,
    AllOf,
    AnyOf,
    Comparison,
    Condition,
    Not,
)
from maildesk.rules.model import Rule, RuleEnvironment, RuleProblem, did_you_mean
from maildesk.rules.routing import Notification
from maildesk.yamlfile import Position, YamlMapping, YamlSequence

RULE_KEYS = ("name", "description", "when", "then", "on_followup", "enabled")
CASE_SENSITIVE = "case_sensitive"

# RFC 5322 field-name: printable US-ASCII except the colon.
_HEADER_NAME = re.compile(r"^[\x21-\x39\x3b-\x7e]+$")
_ADDRESS = re.compile(r"^[^@\s<>\"(),;:]+@[^@\s<>\"(),;:\[\]]+\.[^@\s<>\"(),;:\[\]]+$")
_DOMAIN = re.compile(r"^[^@\s<>\"(),;:]+$")


def describe(value: Any) -> str:
    """Name the YAML type of a value for a 'got ...' part of an error."""
    if value is None:
        return _("nothing")
    if isinstance(value, bool):
        return _("true/false")
    if isinstance(value, int | float):
        return _("a number")
    if isinstance(value, str):
        return _("text")
    if isinstance(value, list):
        return _("a list")
    if isinstance(value, dict):
        return _("a mapping")
    return type(value).__name__


def default_operator(field: str, many: bool) -> str:
    """Return the operator of the short form ``field: value`` (``many``: a list of values)."""
    if field in DOMAIN_FIELDS:
        return "domain"
    if field in ("subject", "body", "attachment_name"):
        return "contains"
    return "in" if many else "equals"


def allowed_operators(field: str, argument: str | None) -> tuple[str, ...]:
    """Return the operators that make sense for a field."""
    if field in ADDRESS_FIELDS or field in DOMAIN_FIELDS:
        return OPERATORS
    if field == "language" or (field == SET_FIELD and argument in _CLOSED_SET_FIELDS):
        return ("equals", "in", "exists")
    return tuple(operator for operator in OPERATORS if operator != "domain")


# ``set`` fields whose values come from a fixed list or the configuration.
_CLOSED_SET_FIELDS = ("group", "assignee", "type", "impact", "urgency", "template", "language")


class RuleValidator:
    """Turn the YAML of one rules file into rules, appending each problem to ``problems``."""

    def __init__(self, environment: RuleEnvironment) -> None:
        self.environment = environment
        self.problems: list[RuleProblem] = []
        self.rule_names: dict[str, Position] = {}

    def problem(self, message: str, position: Position | str | None) -> None:
        self.problems.append(RuleProblem(message, position))

    # -- the file and its rules ------------------------------------------------------------

    def validate_document(self, document: Any, path: str) -> list[Rule]:
        """Return the valid rules of one file; an empty file has none and is valid."""
        if document is None:
            return []
        if not isinstance(document, YamlSequence):
            where = document.position if isinstance(document, YamlMapping) else path
            self.problem(
                _("a rules file must be a list of rules: start each rule with '- name:'"), where
            )
            return []

        rules = []
        for index, item in enumerate(document):
            if not isinstance(item, YamlMapping):
                self.problem(
                    _("a rule must be a mapping with name, when and then (got {actual})").format(
                        actual=describe(item)
                    ),
                    document.where(index),
                )
                continue
            rule = self.validate_rule(item, path)
            if rule is not None:
                rules.append(rule)
        return rules

    def validate_rule(self, mapping: YamlMapping, path: str) -> Rule | None:
        before = len(self.problems)
        self.reject_unknown_keys(mapping, RULE_KEYS, _("unknown key '{key}' in a rule: {hint}"))

        name = self.text(mapping, "name")
        if "name" not in mapping:
            self.problem(
                _("the rule has no 'name': add a short unique name, e.g. 'name: printers'"),
                mapping.position,
            )
        description = self.text(mapping, "description") or ""
        on_followup = self.flag(mapping, "on_followup", default=False)
        enabled = self.flag(mapping, "enabled", default=True)
        conditions = self.validate_when(mapping)
        actions = self.validate_then(mapping)

        where = mapping.where("name")
        if name is not None:
            self.check_unique_name(name, where)
        if len(self.problems) > before or name is None:
            return None
        return Rule(
            name=name,
            conditions=conditions,
            actions=actions,
            path=path,
            line=where.line,
            description=description,
            on_followup=on_followup,
            enabled=enabled,
            stop=any(action.name == "stop" and action.value is True for action in actions),
        )

    def check_unique_name(self, name: str, where: Position) -> None:
        """Reject a second rule of the same name, in any file: traces refer to rules by name."""
        first = self.rule_names.setdefault(name, where)
        if first is not where:
            self.problem(
                _(
                    "duplicate rule name '{name}': the first rule with this name is at "
                    "{location}; rename one of them"
                ).format(name=name, location=first),
                where,
            )

    def validate_when(self, mapping: YamlMapping) -> tuple[Condition, ...]:
        if "when" not in mapping:
            return ()
        when = mapping["when"]
        if not isinstance(when, YamlMapping):
            self.expected_mapping("when", when, mapping.where("when"))
            return ()
        if not when:
            self.problem(
                _("'when' is empty: add a condition, or remove 'when' to match every mail"),
                mapping.where("when"),
            )
            return ()
        return tuple(self.conditions(when))

    def validate_then(self, mapping: YamlMapping) -> tuple[Action, ...]:
        if "then" not in mapping:
            self.problem(
                _(
                    "the rule has no 'then': add the actions to take, "
                    "e.g. 'then: {{group: first-line}}'"
                ).format(),
                mapping.position,
            )
            return ()
        then = mapping["then"]
        if not isinstance(then, YamlMapping):
            self.expected_mapping("then", then, mapping.where("then"))
            return ()
        if not then:
            self.problem(
                _("'then' is empty: add at least one action, e.g. 'group: first-line'"),
                mapping.where("then"),
            )
            return ()
        return tuple(self.actions(then))

    # -- conditions --------------------------------------------------------------------------

    def conditions(self, mapping: YamlMapping) -> list[Condition]:
        """Return the conditions of one mapping; all of them must hold."""
        result: list[Condition] = []
        for key, value in mapping.items():
            where = mapping.where(key)
            if key in ("all", "any"):
                parts = self.condition_list(key, value, where)
                if parts:
                    result.append(AllOf(parts) if key == "all" else AnyOf(parts))
            elif key == "not":
                part = self.condition_group(key, value, where)
                if part is not None:
                    result.append(Not(part))
            elif key in FLAG_FIELDS:
                if self.is_flag(key, value, where):
                    result.append(Comparison(key, FLAG_OPERATOR, bool(value)))
            elif key == HEADER_FIELD:
                result.extend(self.header_conditions(value, where))
            elif key == SET_FIELD:
                result.extend(self.set_conditions(value, where))
            elif key in FIELDS:
                result.extend(self.field_comparisons(key, None, value, where))
            else:
                hint = did_you_mean(key, FIELDS + COMBINATORS)
                self.problem(
                    _("unknown condition '{key}': {hint}").format(key=key, hint=hint),
                    mapping.key_positions.get(key, where),
                )
        return result

    def condition_group(self, key: str, value: Any, where: Position) -> Condition | None:
        """Return the single condition of ``not`` or of one list item of ``all``/``any``."""
        if not isinstance(value, YamlMapping):
            self.expected_mapping(key, value, where)
            return None
        if not value:
            self.problem(_("'{key}' needs at least one condition").format(key=key), where)
            return None
        parts = self.conditions(value)
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def condition_list(self, key: str, value: Any, where: Position) -> tuple[Condition, ...]:
        if not isinstance(value, YamlSequence):
            self.problem(
                _("'{key}' must be a list (got {actual})").format(key=key, actual=describe(value)),
                where,
            )
            return ()
        if not value:
            self.problem(_("'{key}' needs at least one condition").format(key=key), where)
            return ()

        parts = []
        for index, item in enumerate(value):
            part = self.condition_group(key, item, value.where(index))
            if part is not None:
                parts.append(part)
        return tuple(parts)

    def header_conditions(self, value: Any, where: Position) -> list[Condition]:
        if not isinstance(value, YamlMapping):
            self.expected_mapping(HEADER_FIELD, value, where)
            return []
        if "name" not in value:
            self.problem(
                _("'header' needs 'name', the header to test, e.g. 'name: X-Priority'"),
                value.position,
            )
            return []

        name = value["name"]
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            self.problem(
                _("invalid header name '{name}': a header name has no spaces or colons").format(
                    name=name
                ),
                value.where("name"),
            )
            return []

        operators = YamlMapping({key: item for key, item in value.items() if key != "name"})
        operators.position = value.position
        operators.key_positions = value.key_positions
        operators.value_positions = value.value_positions
        if not operators:
            return [Comparison(HEADER_FIELD, "exists", True, argument=name)]
        return list(self.operator_comparisons(HEADER_FIELD, name, operators))

    def set_conditions(self, value: Any, where: Position) -> list[Condition]:
        if not isinstance(value, YamlMapping):
            self.expected_mapping(SET_FIELD, value, where)
            return []
        if not value:
            self.problem(_("'{key}' needs at least one condition").format(key=SET_FIELD), where)
            return []

        result: list[Condition] = []
        for key, item in value.items():
            if key not in SET_FIELDS:
                self.problem(
                    _("unknown routing field '{key}' in 'set': {hint}").format(
                        key=key, hint=did_you_mean(key, SET_FIELDS)
                    ),
                    value.key_positions.get(key, where),
                )
                continue
            result.extend(self.field_comparisons(SET_FIELD, key, item, value.where(key)))
        return result

    def field_comparisons(
        self, field: str, argument: str | None, value: Any, where: Position
    ) -> list[Condition]:
        """Return the comparisons of ``field: value``, the short form or a mapping of operators."""
        label = field_label(field, argument)
        if isinstance(value, YamlMapping):
            if not value:
                self.no_operator(label, field, argument, where)
                return []
            return list(self.operator_comparisons(field, argument, value))

        if isinstance(value, YamlSequence):
            values = self.text_list(label, value, where)
            if values is None:
                return []
            operator = default_operator(field, many=True)
        else:
            single = self.text_value(label, value, where)
            if single is None:
                return []
            values = (single,)
            operator = default_operator(field, many=False)

        test = self.make_comparison(field, argument, operator, values, False, where)
        return [test] if test is not None else []

    def operator_comparisons(
        self, field: str, argument: str | None, operators: YamlMapping
    ) -> list[Condition]:
        label = field_label(field, argument)
        allowed = allowed_operators(field, argument)
        case_sensitive = False
        if CASE_SENSITIVE in operators:
            case_sensitive = self.flag(operators, CASE_SENSITIVE, default=False)

        tests: list[Condition] = []
        for key, value in operators.items():
            if key == CASE_SENSITIVE:
                continue
            where = operators.where(key)
            if key not in OPERATORS:
                self.problem(
                    _("unknown operator '{key}' for '{field}': {hint}").format(
                        key=key, field=label, hint=did_you_mean(key, (*allowed, CASE_SENSITIVE))
                    ),
                    operators.key_positions.get(key, where),
                )
                continue
            if key not in allowed:
                self.problem(
                    _("'{operator}' does not apply to '{field}': use one of {choices}").format(
                        operator=key, field=label, choices=", ".join(allowed)
                    ),
                    operators.key_positions.get(key, where),
                )
                continue
            test = self.operator_comparison(field, argument, key, value, case_sensitive, where)
            if test is not None:
                tests.append(test)

        if not tests and all(key == CASE_SENSITIVE for key in operators):
            self.no_operator(label, field, argument, operators.position)
        return tests

    def operator_comparison(
        self,
        field: str,
        argument: str | None,
        operator: str,
        value: Any,
        case_sensitive: bool,
        where: Position,
    ) -> Comparison | None:
        if operator == "exists":
            if not self.is_flag(operator, value, where):
                return None
            return Comparison(field, operator, bool(value), argument=argument)

        if operator == "equals" and isinstance(value, YamlSequence):
            self.problem(
                _("'equals' compares with one value: for a list of values use 'in'"), where
            )
            return None
        if operator == "in" and not isinstance(value, YamlSequence):
            self.problem(
                _("'in' needs a list, e.g. 'in: [a, b]'; for one value use 'equals'"), where
            )
            return None
        if operator == "regex" and isinstance(value, YamlSequence):
            self.problem(_("'regex' takes one pattern: join alternatives with '|'"), where)
            return None

        if isinstance(value, YamlSequence):
            values = self.text_list(operator, value, where)
        else:
            single = self.text_value(operator, value, where)
            values = (single,) if single is not None else None
        if values is None:
            return None
        return self.make_comparison(field, argument, operator, values, case_sensitive, where)

    def make_comparison(
        self,
        field: str,
        argument: str | None,
        operator: str,
        values: tuple[str, ...],
        case_sensitive: bool,
        where: Position,
    ) -> Comparison | None:
        """Check the values for the operator and the field, then build the comparison."""
        if operator == "regex":
            pattern = self.compile_regex(values[0], case_sensitive, where)
            if pattern is None:
                return None
            return Comparison(field, operator, values, argument, case_sensitive, pattern)

        if operator == "domain":
            domains = self.domains(values, where)
            if domains is None:
                return None
            return Comparison(field, operator, domains, argument, case_sensitive)

        if field in ADDRESS_FIELDS and operator in ("equals", "in"):
            for value in values:
                if value.startswith("@"):
                    self.problem(
                        _(
                            "'{value}' is a domain, not an address: "
                            "write '{field}: {{domain: {domain}}}'"
                        ).format(value=value, field=field, domain=value[1:]),
                        where,
                    )
                    return None

        if not self.closed_values(field, argument, values, where):
            return None
        return Comparison(field, operator, values, argument, case_sensitive)

    def compile_regex(
        self, pattern: str, case_sensitive: bool, where: Position
    ) -> re.Pattern[str] | None:
        flags = 0 if case_sensitive else re.IGNORECASE
        try:
            return re.compile(unicodedata.normalize("NFC", pattern), flags)
        except re.error as error:
            self.problem(
                _("invalid regular expression '{pattern}': {error} at position {position}").format(
                    pattern=pattern, error=error.msg, position=error.pos
                ),
                where,
            )
            return None

    def domains(self, values: tuple[str, ...], where: Position) -> tuple[str, ...] | None:
        result = []
        for value in values:
            domain = value.strip().removeprefix("@")
            if "@" in domain:
                self.problem(
                    _(
                        "'domain' takes a domain such as example.com, not the address '{value}'"
                    ).format(value=value),
                    where,
                )
                return None
            if not _DOMAIN.match(domain):
                self.problem(
                    _("invalid domain '{value}': write a domain such as example.com").format(
                        value=value
                    ),
                    where,
                )
                return None
            result.append(domain)
        return tuple(result)

    def closed_values(
        self, field: str, argument: str | None, values: tuple[str, ...], where: Position
    ) -> bool:
        """Check values that must come from a list, so a typo cannot silently never match."""
        key = argument if field == SET_FIELD else field
        for value in values:
            if key == "language" and value not in LANGUAGES:
                self.invalid_value(key, value, LANGUAGES, where)
                return False
            if field != SET_FIELD:
                continue
            if key in ("type", "impact", "urgency"):
                choices = TICKET_TYPES if key == "type" else LEVELS
                if value not in choices:
                    self.invalid_value(key, value, choices, where)
                    return False
            elif key in ("group", "assignee", "template") and not self.known_name(
                key, value, where
            ):
                return False
        return True

    # -- actions -----------------------------------------------------------------------------

    def actions(self, mapping: YamlMapping) -> list[Action]:
        result = []
        for key, value in mapping.items():
            where = mapping.where(key)
            if key not in ACTIONS:
                self.problem(
                    _("unknown action '{key}': {hint}").format(
                        key=key, hint=did_you_mean(key, ACTIONS)
                    ),
                    mapping.key_positions.get(key, where),
                )
                continue
            action = self.action(key, value, where)
            if action is not None:
                result.append(action)
        return result

    def action(self, key: str, value: Any, where: Position) -> Action | None:
        if key in ("auto_reply", "stop"):
            return Action(key, bool(value)) if self.is_flag(key, value, where) else None
        if key == "tags":
            return self.tags_action(value, where)
        if key == "template":
            return self.template_action(value, where)
        if key == "ignore":
            return self.ignore_action(value, where)
        if key == "notify":
            return self.notify_action(value, where)

        text = self.text_value(key, value, where)
        if text is None:
            return None
        if key in ("group", "assignee") and not self.known_name(key, text, where):
            return None
        choices = {"type": TICKET_TYPES, "impact": LEVELS, "urgency": LEVELS, "language": LANGUAGES}
        if key in choices and text not in choices[key]:
            self.invalid_value(key, text, choices[key], where)
            return None
        return Action(key, text)

    def tags_action(self, value: Any, where: Position) -> Action | None:
        if isinstance(value, YamlSequence):
            tags = self.text_list("tags", value, where)
        else:
            single = self.text_value("tags", value, where)
            tags = (single,) if single is not None else None
        if tags is None:
            return None
        return Action("tags", tuple(tag.strip() for tag in tags))

    def template_action(self, value: Any, where: Position) -> Action | None:
        if value is None:
            return Action("template", None)
        text = self.text_value("template", value, where)
        if text is None:
            return None
        if text.strip().casefold() == NO_TEMPLATE:
            return Action("template", None)
        if not self.known_name("template", text, where):
            return None
        return Action("template", text)

    def ignore_action(self, value: Any, where: Position) -> Action | None:
        if isinstance(value, YamlMapping):
            before = len(self.problems)
            self.reject_unknown_keys(
                value, ("reason",), _("unknown key '{key}' in 'ignore': {hint}")
            )
            if "reason" in value:
                reason = self.text(value, "reason")
                return Action("ignore", reason) if reason is not None else None
            if len(self.problems) > before:
                return None  # a misspelt 'reason' is reported once, as an unknown key
        elif isinstance(value, str) and value.strip():
            return Action("ignore", value.strip())

        self.problem(
            _(
                "'ignore' needs the reason to record, e.g. 'ignore: {{reason: newsletter}}'"
            ).format(),
            where,
        )
        return None

    def notify_action(self, value: Any, where: Position) -> Action | None:
        if isinstance(value, YamlSequence):
            items = [(item, value.where(index)) for index, item in enumerate(value)]
        else:
            items = [(value, where)]

        notifications = []
        for item, item_where in items:
            notification = self.notification(item, item_where)
            if notification is None:
                return None
            notifications.append(notification)
        if not notifications:
            self.problem(_("'notify' needs 'to', the addresses to notify"), where)
            return None
        return Action("notify", tuple(notifications))

    def notification(self, value: Any, where: Position) -> Notification | None:
        if not isinstance(value, YamlMapping):
            self.expected_mapping("notify", value, where)
            return None
        before = len(self.problems)
        self.reject_unknown_keys(
            value, ("to", "template"), _("unknown key '{key}' in 'notify': {hint}")
        )
        if "to" not in value:
            self.problem(_("'notify' needs 'to', the addresses to notify"), value.position)
        if "template" not in value:
            self.problem(
                _("'notify' needs 'template', the template of the notification"), value.position
            )
        if len(self.problems) > before:
            return None

        to = value["to"]
        if isinstance(to, YamlSequence):
            addresses = self.text_list("to", to, value.where("to"))
        else:
            single = self.text_value("to", to, value.where("to"))
            addresses = (single,) if single is not None else None
        template = self.text(value, "template")
        if addresses is None or template is None:
            return None

        for address in addresses:
            if not _ADDRESS.match(address.strip()):
                self.problem(
                    _(
                        "invalid address '{value}': write a full address such as name@example.com"
                    ).format(value=address),
                    value.where("to"),
                )
                return None
        if not self.known_name("template", template, value.where("template")):
            return None
        return Notification(tuple(address.strip() for address in addresses), template)

    # -- values ------------------------------------------------------------------------------

    def known_name(self, kind: str, value: str, where: Position) -> bool:
        """Check a group, agent or template name against the configuration."""
        environment = self.environment
        if kind == "group":
            choices, unknown, none = (
                environment.groups,
                _("unknown group '{value}': {hint}"),
                _("unknown group '{value}': no groups are configured"),
            )
        elif kind == "assignee":
            choices, unknown, none = (
                environment.agents,
                _("unknown agent '{value}': {hint}"),
                _("unknown agent '{value}': no agents are configured"),
            )
        else:
            choices, unknown, none = (
                environment.templates | {NO_TEMPLATE},
                _("unknown template '{value}': {hint}"),
                _("unknown template '{value}': no templates are configured"),
            )

        if value in choices:
            return True
        if not choices or choices == {NO_TEMPLATE}:
            self.problem(none.format(value=value), where)
        else:
            self.problem(unknown.format(value=value, hint=did_you_mean(value, choices)), where)
        return False

    def invalid_value(
        self, key: str, value: str, choices: tuple[str, ...], where: Position
    ) -> None:
        self.problem(
            _("invalid value '{value}' for '{key}': {hint}").format(
                value=value, key=key, hint=did_you_mean(value, choices)
            ),
            where,
        )

    def text(self, mapping: YamlMapping, key: str) -> str | None:
        if key not in mapping:
            return None
        return self.text_value(key, mapping[key], mapping.where(key))

    def text_value(self, key: str, value: Any, where: Position) -> str | None:
        """Return a text value; numbers are accepted as text (``equals: 1``)."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            self.problem(
                _("'{key}' must be text (got {actual})").format(key=key, actual=describe(value)),
                where,
            )
            return None
        if not value.strip():
            self.problem(_("'{key}' is empty: write a value").format(key=key), where)
            return None
        return value

    def text_list(self, key: str, value: YamlSequence, where: Position) -> tuple[str, ...] | None:
        if not value:
            self.problem(_("'{key}' is empty: write a value").format(key=key), where)
            return None
        result = []
        for index, item in enumerate(value):
            if isinstance(item, list | dict | bool) or item is None:
                self.problem(
                    _("'{key}' must be text or a list of texts (got {actual})").format(
                        key=key, actual=describe(item)
                    ),
                    value.where(index),
                )
                return None
            text = self.text_value(key, item, value.where(index))
            if text is None:
                return None
            result.append(text)
        return tuple(result)

    def flag(self, mapping: YamlMapping, key: str, default: bool) -> bool:
        if key not in mapping:
            return default
        value = mapping[key]
        return bool(value) if self.is_flag(key, value, mapping.where(key)) else default

    def is_flag(self, key: str, value: Any, where: Position) -> bool:
        if isinstance(value, bool):
            return True
        self.problem(
            _("'{key}' must be true or false (got {actual})").format(
                key=key, actual=describe(value)
            ),
            where,
        )
        return False

    def expected_mapping(self, key: str, value: Any, where: Position) -> None:
        self.problem(
            _("'{key}' must be a mapping of keys and values (got {actual})").format(
                key=key, actual=describe(value)
            ),
            where,
        )

    def no_operator(self, label: str, field: str, argument: str | None, where: Position) -> None:
        self.problem(
            _("'{field}' has no operator: add one of {choices}").format(
                field=label, choices=", ".join(allowed_operators(field, argument))
            ),
            where,
        )

    def reject_unknown_keys(
        self, mapping: YamlMapping, known: tuple[str, ...], message: str
    ) -> None:
        for key in mapping:
            if key not in known:
                self.problem(
                    message.format(key=key, hint=did_you_mean(key, known)),
                    mapping.key_positions.get(key, mapping.position),
                )


def field_label(field: str, argument: str | None) -> str:
    """Name a field as the admin wrote it: ``subject``, ``header X-Priority``, ``set group``."""
    return f"{field} {argument}" if argument else field
