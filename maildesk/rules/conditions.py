"""Conditions of a rule: comparisons on the mail and the combinators all, any and not.

Text is compared after Unicode NFC normalisation, with runs of whitespace read as one
space and, unless a condition sets ``case_sensitive``, after case folding and with
diacritics taken off, so ``ZAMÓWIENIE`` matches ``zamówienie`` however the mail encoded
the accents, and ``nie dziala`` (typed without Polish letters, as many users do) matches
``nie działa``. Addresses, domains and headers keep their diacritics: ``firmą.pl`` is
another domain than ``firma.pl``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from maildesk.parse import ParsedMessage
from maildesk.rules.model import RuleEnvironment
from maildesk.rules.routing import ConditionTrace

# Fields of the mail that conditions test, by the kind of value they hold.
ADDRESS_FIELDS = ("from", "to", "cc", "recipient")
DOMAIN_FIELDS = ("from_domain",)
TEXT_FIELDS = ("subject", "body", "attachment_name", "attachment_type", "language")
FLAG_FIELDS = ("business_hours", "sender_is_agent", "sender_is_vip")
HEADER_FIELD = "header"
SET_FIELD = "set"
FIELDS = (
    *ADDRESS_FIELDS,
    *DOMAIN_FIELDS,
    *TEXT_FIELDS,
    HEADER_FIELD,
    *FLAG_FIELDS,
    SET_FIELD,
)
COMBINATORS = ("all", "any", "not")

# The routing fields a ``set`` condition may test: values that earlier rules set.
SET_FIELDS = (
    "group",
    "assignee",
    "type",
    "category",
    "impact",
    "urgency",
    "tags",
    "template",
    "language",
    "ignore",
)

STRING_OPERATORS = ("equals", "contains", "regex", "in", "starts_with", "ends_with")
OPERATORS = (*STRING_OPERATORS, "domain", "exists")
FLAG_OPERATOR = "is"

_SNIPPET_LENGTH = 60
_SNIPPET_CONTEXT = 25


def normalize_text(value: str) -> str:
    """Return the NFC form of a value with each run of whitespace replaced by one space."""
    return " ".join(unicodedata.normalize("NFC", value).split())


# Letters that carry their mark in the glyph, so Unicode does not decompose them.
_UNDECOMPOSED = str.maketrans({"ł": "l", "đ": "d", "ø": "o", "ħ": "h", "ŧ": "t"})
# Combining marks on a Latin letter (the text is case-folded, so a-z).
_LATIN_MARKS = re.compile(r"(?<=[a-z])[\u0300-\u036f]+")


def strip_diacritics(folded: str) -> str:
    """Take the diacritics off the Latin letters of a case-folded NFC text.

    ``działa`` becomes ``dziala``. Letters of other scripts keep their marks, because in
    Cyrillic or Greek a mark makes another letter (``й`` is not ``и``). A letter written
    as one character stays one character, but a letter with a mark that has no
    precomposed form (``q̃``) shrinks to one, so ``_folded_span`` maps match positions.
    """
    if folded.isascii():
        return folded
    bare = _LATIN_MARKS.sub("", unicodedata.normalize("NFD", folded))
    return unicodedata.normalize("NFC", bare).translate(_UNDECOMPOSED)


def fold(value: str, case_sensitive: bool = False, keep_diacritics: bool = False) -> str:
    """Return the form in which two texts are compared for equality or containment."""
    normalized = normalize_text(value)
    if case_sensitive:
        return normalized
    return _fold_case_and_marks(normalized, keep_diacritics)


def _fold_case_and_marks(normalized: str, keep_diacritics: bool = False) -> str:
    folded = unicodedata.normalize("NFC", normalized.casefold())
    return folded if keep_diacritics else strip_diacritics(folded)


def domain_of(value: str) -> str:
    """Return the domain of an address, or the value itself when it is already a domain."""
    domain = value.rsplit("@", 1)[-1] if "@" in value else value
    return domain.strip().strip(".").casefold()


def in_domain(value: str, domain: str) -> bool:
    """Return whether an address or domain lies in ``domain`` or one of its subdomains."""
    candidate = domain_of(value)
    parent = domain_of(domain)
    return candidate == parent or candidate.endswith("." + parent)


def in_address_list(address: str, entries: tuple[str, ...] | list[str]) -> bool:
    """Return whether an address is one of ``entries`` or lies in one of its ``@domain``s."""
    address = address.strip().casefold()
    for entry in entries:
        entry = entry.strip().casefold()
        if entry.startswith("@"):
            if in_domain(address, entry[1:]):
                return True
        elif entry == address:
            return True
    return False


def snippet(text: str, start: int = 0, end: int = 0) -> str:
    """Shorten a value for the trace, keeping the matched part ``text[start:end]`` visible."""
    if len(text) <= _SNIPPET_LENGTH:
        return text
    if end <= start:
        return text[:_SNIPPET_LENGTH].rstrip() + "…"

    left = max(0, start - _SNIPPET_CONTEXT)
    right = min(len(text), end + _SNIPPET_CONTEXT)
    prefix = "…" if left > 0 else ""
    suffix = "…" if right < len(text) else ""
    return prefix + text[left:right].strip() + suffix


class MailFacts:
    """The values of one mail that conditions test, computed once per evaluation."""

    def __init__(
        self,
        message: ParsedMessage,
        environment: RuleEnvironment,
        received_at: datetime,
        mail_language: str | None,
        current_values: Callable[[str], list[str]],
    ) -> None:
        self.message = message
        self.environment = environment
        self.received_at = received_at
        self.mail_language = mail_language
        self.current_values = current_values
        # Several rules test the same body or subject: normalise and fold each text once.
        self._normalized: dict[str, str] = {}
        self._folded: dict[str, str] = {}

    def normalized(self, value: str) -> str:
        """Return ``normalize_text(value)``, computed once per text of this mail."""
        found = self._normalized.get(value)
        if found is None:
            found = self._normalized[value] = normalize_text(value)
        return found

    def folded(self, value: str, case_sensitive: bool) -> str:
        """Return ``fold(value, case_sensitive)``, computed once per text of this mail."""
        normalized = self.normalized(value)
        if case_sensitive:
            return normalized
        found = self._folded.get(value)
        if found is None:
            found = self._folded[value] = _fold_case_and_marks(normalized)
        return found

    def strings(self, field: str, argument: str | None) -> list[str]:
        message = self.message
        sender = message.from_address
        if field == "from":
            return [sender.address] if sender else []
        if field == "from_domain":
            return [domain_of(sender.address)] if sender else []
        if field == "to":
            return [address.address for address in message.to]
        if field == "cc":
            return [address.address for address in message.cc]
        if field == "recipient":
            return [address.address for address in (*message.to, *message.cc)]
        if field == "subject":
            return [message.subject]
        if field == "body":
            return [message.reply_text or message.text]
        if field == "attachment_name":
            return [attachment.filename for attachment in message.attachments]
        if field == "attachment_type":
            return [attachment.content_type for attachment in message.attachments]
        if field == "language":
            return [self.mail_language] if self.mail_language else []
        if field == HEADER_FIELD:
            return message.header_all(argument or "")
        if field == SET_FIELD:
            return self.current_values(argument or "")
        raise ValueError(f"not a text field: {field}")

    def flag(self, field: str) -> bool:
        if field == "business_hours":
            return self.business_hours
        if field == "sender_is_agent":
            return self.sender_is_agent
        if field == "sender_is_vip":
            return self.sender_is_vip
        raise ValueError(f"not a true/false field: {field}")

    @cached_property
    def business_hours(self) -> bool:
        return bool(self.environment.is_business_hours(self.received_at))

    @cached_property
    def sender_is_agent(self) -> bool:
        sender = self.message.from_address
        if sender is None:
            return False
        agents = {address.strip().casefold() for address in self.environment.agent_addresses}
        return sender.normalized.casefold() in agents

    @cached_property
    def sender_is_vip(self) -> bool:
        sender = self.message.from_address
        if sender is None:
            return False

        return in_address_list(sender.normalized, self.environment.vip)


@dataclass(frozen=True)
class Comparison:
    """One comparison of a field of the mail (or of the routing so far) with values.

    ``expected`` is a tuple of texts, or a bool for ``exists`` and the true/false fields.
    ``pattern`` is the compiled ``regex`` (one pattern, the ``expected`` text).
    """

    field: str
    operator: str
    expected: tuple[str, ...] | bool
    argument: str | None = None
    case_sensitive: bool = False
    pattern: re.Pattern[str] | None = None

    def evaluate(self, facts: MailFacts, depth: int, trace: list[ConditionTrace]) -> bool:
        if self.field in FLAG_FIELDS:
            actual_flag = facts.flag(self.field)
            result = actual_flag == self.expected
            actual: str | None = "true" if actual_flag else "false"
        else:
            result, actual = self._compare(facts, facts.strings(self.field, self.argument))

        trace.append(
            ConditionTrace(
                depth=depth,
                kind="test",
                result=result,
                field=self.field,
                argument=self.argument,
                operator=self.operator,
                expected=self.expected,
                case_sensitive=self.case_sensitive,
                actual=actual,
            )
        )
        return result

    def _compare(self, facts: MailFacts, values: list[str]) -> tuple[bool, str | None]:
        present = [value for value in values if value and value.strip()]
        if self.operator == "exists":
            listed = snippet("; ".join(facts.normalized(value) for value in present))
            return bool(present) == self.expected, listed or None

        for value in present:
            span = self._match(facts, value)
            if span is not None:
                return True, snippet(facts.normalized(value), *span)

        if not present:
            return False, None
        return False, snippet("; ".join(facts.normalized(value) for value in present))

    def _match(self, facts: MailFacts, value: str) -> tuple[int, int] | None:
        """Return the span of the match in the normalised value, (0, 0) when unknown, or None."""
        assert isinstance(self.expected, tuple)

        if self.operator == "regex":
            assert self.pattern is not None
            # NOTE: re has no time limit, so a pattern with nested repetition such as
            # (a+)+$ can stall on a long body. Only admins write patterns.
            found = self.pattern.search(unicodedata.normalize("NFC", value))
            if found is None:
                return None
            return _span_in_normalized(facts.normalized(value), found.group(0))

        if self.operator == "domain":
            inside = any(in_domain(value, domain) for domain in self.expected)
            return (0, 0) if inside else None

        # An address or domain with a diacritic is another mailbox (firmą.pl is not
        # firma.pl, and anyone may register it), so only case folding applies to them,
        # and to headers, which a rule may read for an address (Reply-To, Sender).
        keep_diacritics = (self.field in ADDRESS_FIELDS or self.field in DOMAIN_FIELDS
                           or self.field == HEADER_FIELD)
        if keep_diacritics:
            folded = fold(value, self.case_sensitive, keep_diacritics=True)
        else:
            folded = facts.folded(value, self.case_sensitive)
        for expected_value in self.expected:
            expected_folded = fold(expected_value, self.case_sensitive, keep_diacritics)
            if self.operator in ("equals", "in") and folded == expected_folded:
                return (0, 0)
            if self.operator == "starts_with" and folded.startswith(expected_folded):
                return (0, 0)
            if self.operator == "ends_with" and folded.endswith(expected_folded):
                return (0, 0)
            if self.operator == "contains":
                start = folded.find(expected_folded)
                if start >= 0:
                    return _folded_span(facts.normalized(value), start, len(expected_folded),
                                        keep_diacritics)
        return None


def _folded_span(normalized: str, start: int, length: int,
                 keep_diacritics: bool) -> tuple[int, int]:
    """Map a span in the folded text back to the normalised text it was folded from.

    Folding changes lengths: case folding turns ``ß`` into ``ss``, and a Latin letter
    with a mark that has no precomposed form (``q̃``) loses that mark. Return (0, 0) when
    the span cannot be mapped.
    """
    if normalized.isascii():
        return (start, start + length)
    if length <= 0:
        return (0, 0)

    first = _unfolded_index(normalized, start, keep_diacritics, at_least=False)
    last = _unfolded_index(normalized, start + length, keep_diacritics, at_least=True)
    if first is None or last is None:
        return (0, 0)
    return (first, last)


# How far from the middle of a range _unfolded_index looks for a letter that is not a mark.
_MARK_RUN_LIMIT = 64


def _unfolded_index(normalized: str, target: int, keep_diacritics: bool,
                    at_least: bool) -> int | None:
    """Return the index of the normalised text that folded index ``target`` comes from.

    That is the last letter boundary (an index whose character is not a combining mark)
    whose prefix folds to at most ``target`` characters, or with ``at_least`` the first
    one whose prefix folds to at least ``target``. Folding works letter by letter, so the
    folded length of a range is the sum of its parts, and the binary search folds about
    twice the text. Return None when a run of over ``_MARK_RUN_LIMIT`` marks hides the
    boundaries.
    """
    low, low_length = 0, 0
    high = len(normalized)
    while high - low > 1:
        middle = _letter_boundary(normalized, low, high)
        if middle is None:
            if high - low > _MARK_RUN_LIMIT:
                return None
            break
        part = _fold_case_and_marks(normalized[low:middle], keep_diacritics)
        middle_length = low_length + len(part)
        if middle_length < target or (middle_length == target and not at_least):
            low, low_length = middle, middle_length
        else:
            high = middle
    return high if at_least else low


def _letter_boundary(text: str, low: int, high: int) -> int | None:
    """Return an index strictly between low and high, near their middle, that is no mark."""
    middle = (low + high) // 2
    for offset in range(_MARK_RUN_LIMIT):
        for index in (middle + offset, middle - offset):
            if low < index < high and not unicodedata.category(text[index]).startswith("M"):
                return index
    return None


def _span_in_normalized(normalized: str, matched: str) -> tuple[int, int]:
    start = normalized.find(normalize_text(matched))
    if start < 0 or not matched.strip():
        return (0, 0)
    return (start, start + len(normalize_text(matched)))


@dataclass(frozen=True)
class AllOf:
    """True when every part is true; every part is still evaluated for the trace."""

    parts: tuple[Condition, ...]

    def evaluate(self, facts: MailFacts, depth: int, trace: list[ConditionTrace]) -> bool:
        index = _reserve(trace)
        results = [part.evaluate(facts, depth + 1, trace) for part in self.parts]
        result = all(results)
        trace[index] = ConditionTrace(depth=depth, kind="all", result=result)
        return result


@dataclass(frozen=True)
class AnyOf:
    """True when at least one part is true."""

    parts: tuple[Condition, ...]

    def evaluate(self, facts: MailFacts, depth: int, trace: list[ConditionTrace]) -> bool:
        index = _reserve(trace)
        results = [part.evaluate(facts, depth + 1, trace) for part in self.parts]
        result = any(results)
        trace[index] = ConditionTrace(depth=depth, kind="any", result=result)
        return result


@dataclass(frozen=True)
class Not:
    """True when its single part is false."""

    part: Condition

    def evaluate(self, facts: MailFacts, depth: int, trace: list[ConditionTrace]) -> bool:
        index = _reserve(trace)
        result = not self.part.evaluate(facts, depth + 1, trace)
        trace[index] = ConditionTrace(depth=depth, kind="not", result=result)
        return result


Condition = Comparison | AllOf | AnyOf | Not

_PLACEHOLDER = ConditionTrace(depth=0, kind="all", result=False)


def _reserve(trace: list[ConditionTrace]) -> int:
    """Keep the combinator's line before its parts; it is filled in once they are known."""
    trace.append(_PLACEHOLDER)
    return len(trace) - 1


def evaluate_conditions(
    conditions: tuple[Condition, ...], facts: MailFacts
) -> tuple[bool, tuple[ConditionTrace, ...]]:
    """Evaluate the conditions of a rule (all must hold) and return the result and its trace.

    A rule without conditions matches every mail.
    """
    trace: list[ConditionTrace] = []
    results = [condition.evaluate(facts, 0, trace) for condition in conditions]
    return all(results), tuple(trace)
