"""Checks of single values in rules files, shared by the condition and action checks.

Each check appends a RuleProblem with the position of the value and returns None or
False, so validation goes on and one run reports every error.
"""

from __future__ import annotations

from typing import Any

from maildesk.i18n import _
from maildesk.rules.actions import NO_TEMPLATE
from maildesk.rules.model import RuleEnvironment, RuleProblem, did_you_mean
from maildesk.yamlfile import Position, YamlMapping, YamlSequence


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


class ValueChecker:
    """The problems of one validation run, in ``problems``, and the checks of single values."""

    def __init__(self, environment: RuleEnvironment) -> None:
        self.environment = environment
        self.problems: list[RuleProblem] = []

    def problem(self, message: str, position: Position | str | None) -> None:
        self.problems.append(RuleProblem(message, position))

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

    def reject_unknown_keys(
        self, mapping: YamlMapping, known: tuple[str, ...], message: str
    ) -> None:
        for key in mapping:
            if key not in known:
                self.problem(
                    message.format(key=key, hint=did_you_mean(key, known)),
                    mapping.key_positions.get(key, mapping.position),
                )
