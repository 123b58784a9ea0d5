"""Validation of rules files: from positioned YAML to Rule objects, collecting every error.

Each error names the file, line and column and states what to write instead, because the
admin who reads it edits YAML by hand, often during an outage. Validation goes on after
an error, so one run of ``maildesk rules check`` lists every problem of every file.
The checks of conditions, actions and single values live in ``schema_conditions``,
``schema_actions`` and ``schema_values``.
"""

from __future__ import annotations

from typing import Any

from maildesk.i18n import _
from maildesk.rules.actions import Action
from maildesk.rules.conditions import Condition
from maildesk.rules.model import Rule, RuleEnvironment
from maildesk.rules.schema_actions import ActionChecker
from maildesk.rules.schema_conditions import ConditionChecker
from maildesk.rules.schema_values import describe
from maildesk.yamlfile import Position, YamlMapping, YamlSequence

RULE_KEYS = ("name", "description", "when", "then", "on_followup", "enabled")


class RuleValidator(ConditionChecker, ActionChecker):
    """Turn the YAML of rules files into rules, appending each problem to ``problems``.

    One validator checks all files of a directory, so rule names are unique across files.
    """

    def __init__(self, environment: RuleEnvironment) -> None:
        super().__init__(environment)
        self.rule_names: dict[str, Position] = {}

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
