"""Validation of the ``when`` part of a rule: fields, operators and combinators."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from maildesk.i18n import LANGUAGES, _
from maildesk.rules.actions import LEVELS, TICKET_TYPES
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
from maildesk.rules.model import did_you_mean
from maildesk.rules.schema_values import ValueChecker, describe
from maildesk.yamlfile import Position, YamlMapping, YamlSequence

CASE_SENSITIVE = "case_sensitive"

# RFC 5322 field-name: printable US-ASCII except the colon.
_HEADER_NAME = re.compile(r"^[\x21-\x39\x3b-\x7e]+$")
_DOMAIN = re.compile(r"^[^@\s<>\"(),;:]+$")


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


class ConditionChecker(ValueChecker):
    """The checks that turn the mappings under ``when`` into Condition trees."""

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

    def no_operator(self, label: str, field: str, argument: str | None, where: Position) -> None:
        self.problem(
            _("'{field}' has no operator: add one of {choices}").format(
                field=label, choices=", ".join(allowed_operators(field, argument))
            ),
            where,
        )


def field_label(field: str, argument: str | None) -> str:
    """Name a field as the admin wrote it: ``subject``, ``header X-Priority``, ``set group``."""
    return f"{field} {argument}" if argument else field
