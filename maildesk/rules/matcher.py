"""Running a validated rule set over one mail, in file and rule order."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from maildesk.i18n import normalize_language
from maildesk.parse import ParsedMessage
from maildesk.rules.actions import RoutingState
from maildesk.rules.conditions import MailFacts, evaluate_conditions
from maildesk.rules.language import detect_language
from maildesk.rules.model import Rule, RuleEnvironment
from maildesk.rules.routing import (
    AFTER_STOP,
    DISABLED,
    MATCHED,
    NEW_TICKETS_ONLY,
    NOT_MATCHED,
    Routing,
    RuleTrace,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuleSet:
    """The valid rules of a directory, in the order they run, and the files they came from."""

    rules: tuple[Rule, ...]
    environment: RuleEnvironment
    files: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.rules)

    def evaluate(
        self,
        message: ParsedMessage,
        *,
        received_at: datetime,
        followup: bool = False,
        language: str | None = None,
    ) -> Routing:
        """Run every rule over the mail and return the routing with its full trace.

        ``language`` is the mail's language when the caller already knows it (e.g. the
        requester's stored preference); otherwise Content-Language or a guess is used.
        A follow-up runs only the rules with ``on_followup: true``. The evaluation only
        reads the mail: nothing is stored or sent.
        """
        mail_language = normalize_language(language)
        if mail_language is None:
            mail_language, _source = detect_language(message)

        state = RoutingState()
        facts = MailFacts(
            message, self.environment, received_at, mail_language, state.current_values
        )
        trace: list[RuleTrace] = []
        stopped_by: str | None = None

        for rule in self.rules:
            status = _status_before_matching(rule, followup, stopped_by)
            if status is not None:
                trace.append(RuleTrace(rule.name, rule.path, rule.line, status))
                continue

            matched, conditions = evaluate_conditions(rule.conditions, facts)
            if not matched:
                trace.append(RuleTrace(rule.name, rule.path, rule.line, NOT_MATCHED, conditions))
                continue

            applied = tuple(action.apply(state) for action in rule.actions)
            trace.append(RuleTrace(rule.name, rule.path, rule.line, MATCHED, conditions, applied))
            if rule.stop:
                stopped_by = rule.name

        routing = state.to_routing(
            mail_language=mail_language,
            followup=followup,
            stopped_by=stopped_by,
            trace=tuple(trace),
        )
        logger.debug(
            "rules for %s: matched %s, group %s",
            message.message_id,
            ", ".join(routing.matched_rules) or "none",
            routing.group,
        )
        return routing


def _status_before_matching(rule: Rule, followup: bool, stopped_by: str | None) -> str | None:
    """Return why a rule is not tried at all, or None when its conditions are evaluated."""
    if not rule.enabled:
        return DISABLED
    if stopped_by is not None:
        return AFTER_STOP
    if followup and not rule.on_followup:
        return NEW_TICKETS_ONLY
    return None
