"""Validation of the ``then`` part of a rule: one Action per key."""

from __future__ import annotations

import re
from typing import Any

from maildesk.i18n import LANGUAGES, _
from maildesk.rules.actions import ACTIONS, LEVELS, NO_TEMPLATE, TICKET_TYPES, Action
from maildesk.rules.model import did_you_mean
from maildesk.rules.routing import Notification
from maildesk.rules.schema_values import ValueChecker
from maildesk.yamlfile import Position, YamlMapping, YamlSequence

_ADDRESS = re.compile(r"^[^@\s<>\"(),;:]+@[^@\s<>\"(),;:\[\]]+\.[^@\s<>\"(),;:\[\]]+$")


class ActionChecker(ValueChecker):
    """The checks that turn the mapping under ``then`` into Actions."""

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
