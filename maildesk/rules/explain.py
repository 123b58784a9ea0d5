"""The routing trace as text, in Polish or English.

Admins read it in ``maildesk rules test``, and agents read it for a stored routing.
Each rule gets a line with its file and line number. Below it come every condition
with its result and the tested value, and the actions with the values they replaced.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from maildesk.errors import ParseError
from maildesk.i18n import (
    LANGUAGE_NAMES,
    _,
    current_language,
    gettext_for,
    set_language,
    translated_label,
)
from maildesk.parse import ParsedMessage, parse_message
from maildesk.rules.conditions import FLAG_FIELDS, HEADER_FIELD, SET_FIELD
from maildesk.rules.matcher import RuleSet
from maildesk.rules.routing import (
    AFTER_STOP,
    DISABLED,
    MATCHED,
    NEW_TICKETS_ONLY,
    ActionTrace,
    ConditionTrace,
    Routing,
    RuleTrace,
)

logger = logging.getLogger(__name__)

_INDENT = "  "


def format_explanation(routing: Routing, language: str) -> str:
    """Render the routing and its trace as text in ``language`` (``pl`` or ``en``)."""
    return contextvars.copy_context().run(_in_language, language, _explanation, routing)


def explain_messages(
    raw_messages: Iterable[tuple[str, bytes]],
    ruleset: RuleSet,
    language: str,
    *,
    received_at: datetime | None = None,
    followup: bool = False,
) -> str:
    """Evaluate the rules on each ``(label, raw bytes)`` mail and explain the result.

    The label names the mail in the heading: a file name, or ``ticket 123`` for a stored
    mail. ``received_at`` defaults to the mail's Date header, else the current time.
    Nothing is stored or sent.
    """
    sections = [
        contextvars.copy_context().run(
            _in_language, language, _explain_one, label, raw, ruleset, received_at, followup
        )
        for label, raw in raw_messages
    ]
    return "\n\n".join(sections)


def _in_language(language: str, function: Callable[..., str], *arguments: object) -> str:
    set_language(language)
    return function(*arguments)


def _explain_one(
    label: str,
    raw: bytes,
    ruleset: RuleSet,
    received_at: datetime | None,
    followup: bool,
) -> str:
    heading = _("Mail: {label}").format(label=label)
    try:
        message = parse_message(raw)
    except ParseError as error:
        logger.warning(
            "%s", _("{label} could not be parsed: {error}").format(label=label, error=error)
        )
        return "\n".join([heading, _("The mail could not be parsed: {error}").format(error=error)])

    moment = received_at or _received_at(message)
    routing = ruleset.evaluate(message, received_at=moment, followup=followup)
    sender = message.from_address.address if message.from_address else _("(none)")
    lines = [
        heading,
        _("From: {sender}").format(sender=sender),
        _("Subject: {subject}").format(subject=message.subject),
        _("Received: {moment}").format(moment=_local(moment, ruleset.environment.timezone)),
        "",
        _explanation(routing),
    ]
    return "\n".join(lines)


def _local(moment: datetime, timezone: str) -> str:
    """Write the time of receipt in the desk's zone, where business hours are judged."""
    try:
        local = moment.astimezone(ZoneInfo(timezone))
    except (ZoneInfoNotFoundError, ValueError):
        return moment.isoformat(sep=" ", timespec="minutes")
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def _received_at(message: ParsedMessage) -> datetime:
    if message.date is None:
        return datetime.now(UTC)
    if message.date.tzinfo is None:
        return message.date.replace(tzinfo=UTC)
    return message.date


# -- the whole explanation -------------------------------------------------------------------


def _explanation(routing: Routing) -> str:
    lines = [
        _("Language of the mail: {language}").format(language=_language(routing.mail_language))
    ]
    if routing.followup:
        lines.append(_("The mail is a follow-up: only rules with 'on_followup: true' run."))
    lines.append("")

    if not routing.trace:
        lines.append(_("No routing rules are defined."))
    for rule in routing.trace:
        lines.extend(_rule_lines(rule, routing.stopped_by))

    lines.append("")
    lines.extend(_result_lines(routing))
    return "\n".join(lines)


def _rule_lines(rule: RuleTrace, stopped_by: str | None) -> list[str]:
    place = f"{rule.path}:{rule.line}"
    if rule.status == MATCHED:
        status = _("matched")
    elif rule.status == DISABLED:
        status = _("disabled (enabled: false)")
    elif rule.status == NEW_TICKETS_ONLY:
        status = _("skipped: the rule applies to new tickets only")
    elif rule.status == AFTER_STOP:
        status = _("not run: rule '{rule}' has 'stop: true'").format(rule=stopped_by or "?")
    else:
        status = _("not matched")

    lines = [
        _("Rule '{rule}' ({place}): {status}").format(rule=rule.rule, place=place, status=status)
    ]
    lines.extend(_condition_line(condition) for condition in rule.conditions)
    for action in rule.actions:
        lines.extend(_INDENT + "-> " + text for text in _action_texts(action))
    return lines


def _result_lines(routing: Routing) -> list[str]:
    not_set = _("(not set)")
    tags = ", ".join(routing.tags) if routing.tags else not_set
    notify = "; ".join(
        _("{addresses} (template {template})").format(
            addresses=", ".join(item.addresses), template=item.template
        )
        for item in routing.notify
    )
    if routing.ignore_reason is not None:
        ignore = _("yes, reason: {reason}").format(reason=routing.ignore_reason)
    else:
        ignore = _("no")

    lines = [
        _("Result:"),
        _INDENT + _("group: {value}").format(value=routing.group or not_set),
        _INDENT + _("assignee: {value}").format(value=routing.assignee or not_set),
        _INDENT + _("type: {value}").format(value=choice_label("type", routing.type) or not_set),
        _INDENT + _("category: {value}").format(value=routing.category or not_set),
        _INDENT
        + _("impact: {value}").format(value=choice_label("impact", routing.impact) or not_set),
        _INDENT
        + _("urgency: {value}").format(value=choice_label("urgency", routing.urgency) or not_set),
        _INDENT + _("tags: {value}").format(value=tags),
        _INDENT + _("acknowledgement: {value}").format(value=_acknowledgement(routing)),
        _INDENT + _("automatic replies: {value}").format(value=_yes_no(routing.auto_reply)),
        _INDENT + _("ignore: {value}").format(value=ignore),
        _INDENT + _("notify: {value}").format(value=notify or _("nobody")),
        _INDENT
        + _("language of replies: {value}").format(
            value=_language(routing.language) if routing.language else not_set
        ),
    ]
    if routing.stopped_by:
        lines.append(_INDENT + _("stopped by rule: {rule}").format(rule=routing.stopped_by))
    return lines


def _acknowledgement(routing: Routing) -> str:
    if not routing.acknowledge:
        return _("none")
    if routing.template:
        return _("template {template}").format(template=routing.template)
    return _("the default template")


# -- conditions ------------------------------------------------------------------------------


def _condition_line(condition: ConditionTrace) -> str:
    indent = _INDENT * (condition.depth + 1)
    result = _yes_no(condition.result)
    if condition.kind == "all":
        return indent + _("all of the following: {result}").format(result=result)
    if condition.kind == "any":
        return indent + _("any of the following: {result}").format(result=result)
    if condition.kind == "not":
        return indent + _("the following is not true: {result}").format(result=result)

    line = indent + _("{condition}: {result}").format(
        condition=_describe_test(condition), result=result
    )
    if condition.field in FLAG_FIELDS:
        return line
    if condition.actual is None:
        return line + " " + _("(no value)")
    return line + " " + _('(value: "{value}")').format(value=condition.actual)


def _describe_test(condition: ConditionTrace) -> str:
    field = condition.field or ""
    if field in FLAG_FIELDS:
        return _flag_text(field, condition.expected is True)

    subject = _field_label(field, condition.argument)
    if condition.operator == "exists":
        if condition.expected is True:
            return _("{field} is present").format(field=subject)
        return _("{field} is missing").format(field=subject)

    expected = condition.expected if isinstance(condition.expected, tuple) else ()
    values = _(" or ").join(f"'{value}'" for value in expected)
    templates = {
        "equals": _("{field} is {values}"),
        "in": _("{field} is {values}"),
        "contains": _("{field} contains {values}"),
        "regex": _("{field} matches the regular expression {values}"),
        "starts_with": _("{field} starts with {values}"),
        "ends_with": _("{field} ends with {values}"),
        "domain": _("{field} is in the domain {values}"),
    }
    text = templates.get(condition.operator or "", "{field} {values}").format(
        field=subject, values=values
    )
    if condition.case_sensitive:
        text += " " + _("(case-sensitive)")
    return text


def _flag_text(field: str, expected: bool) -> str:
    texts = {
        ("business_hours", True): _("received within business hours"),
        ("business_hours", False): _("received outside business hours"),
        ("sender_is_agent", True): _("the sender is an agent"),
        ("sender_is_agent", False): _("the sender is not an agent"),
        ("sender_is_vip", True): _("the sender is a VIP"),
        ("sender_is_vip", False): _("the sender is not a VIP"),
    }
    return texts[(field, expected)]


def _field_label(field: str, argument: str | None) -> str:
    if field == HEADER_FIELD:
        return _("header {name}").format(name=argument)
    if field == SET_FIELD:
        return _("'{name}' set by earlier rules").format(name=argument)
    labels = {
        "from": _("sender"),
        "from_domain": _("sender's domain"),
        "to": _("To"),
        "cc": _("Cc"),
        "recipient": _("recipient (To or Cc)"),
        "subject": _("subject"),
        "body": _("body"),
        "attachment_name": _("attachment name"),
        "attachment_type": _("attachment type"),
        "language": _("language of the mail"),
    }
    return labels.get(field, field)


# -- actions ---------------------------------------------------------------------------------


def _action_texts(action: ActionTrace) -> list[str]:
    name = action.action
    value = action.value

    if name == "notify":
        items = value if isinstance(value, list) else []
        return [
            _("notify {addresses} (template {template})").format(
                addresses=", ".join(item.get("to", [])), template=item.get("template")
            )
            for item in items
            if isinstance(item, dict)
        ]
    if name == "tags":
        added = value if isinstance(value, list) else []
        if not added:
            return [_("tags: already present")]
        return [_("tags added: {tags}").format(tags=", ".join(str(tag) for tag in added))]
    if name == "template":
        if value is None:
            return [_("no acknowledgement")]
        return [_("acknowledgement template: {template}").format(template=value)]
    if name == "auto_reply":
        return [_("automatic replies on") if value else _("no automatic replies")]
    if name == "ignore":
        return [_("ignore the mail (reason: {reason})").format(reason=value)]
    if name == "stop":
        return [_("stop: later rules do not run")]

    text = _replacing_action_text(name, value)
    if action.previous is not None and action.previous != value:
        previous = _action_value(name, action.previous)
        text += " " + _("(was: {previous})").format(previous=previous)
    return [text]


def _replacing_action_text(name: str, value: object) -> str:
    """Describe an action that sets one field, naming an unknown action by its code.

    A stored routing may come from a newer maildesk with actions this one lacks.
    """
    templates = {
        "group": _("group: {value}"),
        "assignee": _("assignee: {value}"),
        "type": _("type: {value}"),
        "category": _("category: {value}"),
        "impact": _("impact: {value}"),
        "urgency": _("urgency: {value}"),
        "language": _("language of replies: {value}"),
    }
    template = templates.get(name, name + ": {value}")
    return template.format(value=_action_value(name, value))


def _action_value(name: str, value: object) -> str:
    if name == "language":
        return _language(str(value))
    if name in ("type", "impact", "urgency"):
        return choice_label(name, str(value)) or str(value)
    return str(value)


# -- words -----------------------------------------------------------------------------------


def _yes_no(value: bool) -> str:
    return _("yes") if value else _("no")


def _language(code: str | None) -> str:
    if code is None:
        return _("unknown")
    return translated_label(LANGUAGE_NAMES, code)


def choice_label(kind: str, value: str | None) -> str | None:
    """Translate a ticket type, impact or urgency; Polish needs the field for the gender."""
    if value is None:
        return None
    english = {"service_request": "service request"}.get(value, value)
    return gettext_for(current_language()).pgettext(kind, english)
