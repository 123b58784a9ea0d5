"""Rules compare texts folded for case and diacritics, but addresses only for case.

The trace of a match must still point at the words that matched in the mail's own text.
"""

from __future__ import annotations

import textwrap
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

from maildesk.parse import parse_message
from maildesk.rules import RuleEnvironment, load_rules
from maildesk.rules.routing import ConditionTrace

WARSAW = ZoneInfo("Europe/Warsaw")
MORNING = datetime(2026, 12, 4, 10, 0, tzinfo=WARSAW)
ENVIRONMENT = RuleEnvironment(
    groups=frozenset({"first-line"}),
    agents=frozenset(),
    agent_addresses=frozenset(),
    templates=frozenset(),
    vip=(),
    is_business_hours=lambda moment: True,
)


# -- the trace snippet of a match in a folded text ----------------------------------------


def _contains_trace(tmp_path: Path, expected: str, body: str) -> ConditionTrace:
    """Route a mail with ``body`` through one ``body contains`` rule; return its test line."""
    (tmp_path / "50-test.yaml").write_text(textwrap.dedent(f"""
        - name: under-test
          when:
            body: {{contains: '{expected}'}}
          then:
            tags: [hit]
        """), encoding="utf-8")
    message = EmailMessage()
    message["From"] = "Jan Kowalski <jan.kowalski@example.com>"
    message["To"] = "helpdesk@example.com"
    message["Subject"] = "Pytanie"
    message.set_content(body)

    routing = load_rules(tmp_path, ENVIRONMENT).evaluate(
        parse_message(message.as_bytes()), received_at=MORNING)

    assert routing.tags == ("hit",)
    return routing.trace[0].conditions[0]


def test_snippet_shows_match_after_sharp_s(tmp_path: Path) -> None:
    # Case folding turns each ß into ss, so the folded body is longer than the text.
    body = "Adres: Hauptstraße 5, Berlin. " * 3 + "Od rana VPN nie dziala w biurze. " + "x" * 80

    test = _contains_trace(tmp_path, "nie działa", body)

    assert test.actual is not None
    assert "VPN nie dziala w biurze" in test.actual


def test_snippet_not_shifted_by_folding(tmp_path: Path) -> None:
    # Each ß adds a character and each q̃ (no precomposed form) loses its mark, so the
    # folded text has the original length but its characters sit 30 places further on.
    body = "ß" * 30 + " Od rana VPN nie działa w biurze " + "q\u0303" * 30

    test = _contains_trace(tmp_path, "nie dziala", body)

    assert test.actual is not None
    assert "VPN nie działa w biurze" in test.actual



def _routed_tags(tmp_path: Path, condition: str, sender: str) -> tuple[str, ...]:
    """Route a mail from ``sender`` through one rule with ``condition``; return its tags.

    The mail's Reply-To is the sender too.
    """
    (tmp_path / "50-test.yaml").write_text(textwrap.dedent(f"""
        - name: under-test
          when:
            {condition}
          then:
            tags: [hit]
        """), encoding="utf-8")
    raw = (f"From: Prezes <{sender}>\r\nReply-To: {sender}\r\nTo: helpdesk@example.com\r\n"
           f"Subject: Pilne\r\n\r\nProszę o pomoc.\r\n").encode()
    message = parse_message(raw)
    return load_rules(tmp_path, ENVIRONMENT).evaluate(message, received_at=MORNING).tags


def test_address_keeps_its_diacritics(tmp_path: Path) -> None:
    # firmą.pl is another domain than firma.pl, which anyone may register, so a rule
    # written for the real address must not route mail from the look-alike.
    conditions = ("from: prezes@firma.pl", "from: {ends_with: '@firma.pl'}",
                  "from: {in: [prezes@firma.pl]}", "from: {starts_with: prezes@firma}",
                  "header: {name: Reply-To, ends_with: '@firma.pl'}")

    for condition in conditions:
        assert _routed_tags(tmp_path, condition, "prezes@firmą.pl") == (), condition
        assert _routed_tags(tmp_path, condition, "Prezes@FIRMA.pl") == ("hit",), condition
