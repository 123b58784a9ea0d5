"""Routing rules: YAML files that decide the group, priority and replies of a new ticket.

Admins write the rules under a rules directory. ``load_rules`` validates every file and
returns a ``RuleSet``; ``RuleSet.evaluate`` returns a ``Routing`` that records, rule by
rule, why a mail was routed as it was. ``RulesWatcher`` reloads changed files and keeps
the last valid set while a file is broken.
"""

from maildesk.rules.explain import explain_messages, format_explanation
from maildesk.rules.language import detect_language
from maildesk.rules.loader import RulesWatcher, load_rules
from maildesk.rules.matcher import RuleSet
from maildesk.rules.model import Rule, RuleEnvironment, RuleProblem, RulesError
from maildesk.rules.routing import (
    ActionTrace,
    ConditionTrace,
    Notification,
    Routing,
    RuleTrace,
)

__all__ = [
    "ActionTrace",
    "ConditionTrace",
    "Notification",
    "Routing",
    "Rule",
    "RuleEnvironment",
    "RuleProblem",
    "RuleSet",
    "RuleTrace",
    "RulesError",
    "RulesWatcher",
    "detect_language",
    "explain_messages",
    "format_explanation",
    "load_rules",
]
