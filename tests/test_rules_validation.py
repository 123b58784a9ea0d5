"""Validation of rules files: every kind of error, its message and its position."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from maildesk.i18n import current_language, set_language
from maildesk.parse import parse_message
from maildesk.rules import Routing, RuleEnvironment, RuleProblem, RulesError, load_rules

ENVIRONMENT = RuleEnvironment(
    groups=frozenset({"first-line", "network", "accounts"}),
    agents=frozenset({"anna.nowak", "piotr.wisniewski"}),
    agent_addresses=frozenset({"anna.nowak@example.com"}),
    templates=frozenset({"acknowledgement", "vip_notice"}),
)


@pytest.fixture
def english():
    previous = current_language()
    set_language("en")
    yield
    set_language(previous)


@pytest.fixture
def polish():
    previous = current_language()
    set_language("pl")
    yield
    set_language(previous)


def problems_of(
    directory: Path, files: dict[str, str], environment: RuleEnvironment = ENVIRONMENT
) -> list[RuleProblem]:
    for name, text in files.items():
        (directory / name).write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    with pytest.raises(RulesError) as raised:
        load_rules(directory, environment)
    return raised.value.errors


# Each case: the rules file, then the expected "line:column: message" of its one error.
CASES = {
    "file-not-a-list": (
        """
        name: vpn
        then: {group: network}
        """,
        "1:1: a rules file must be a list of rules: start each rule with '- name:'",
    ),
    "rule-not-a-mapping": (
        """
        - vpn
        """,
        "1:3: a rule must be a mapping with name, when and then (got text)",
    ),
    "unknown-rule-key": (
        """
        - name: vpn
          whne: {subject: vpn}
          then: {group: network}
        """,
        "2:3: unknown key 'whne' in a rule: did you mean 'when'?",
    ),
    "missing-name": (
        """
        - when: {subject: vpn}
          then: {group: network}
        """,
        "1:3: the rule has no 'name': add a short unique name, e.g. 'name: printers'",
    ),
    "name-not-text": (
        """
        - name: [vpn]
          then: {group: network}
        """,
        "1:9: 'name' must be text (got a list)",
    ),
    "missing-then": (
        """
        - name: vpn
          when: {subject: vpn}
        """,
        "1:3: the rule has no 'then': add the actions to take, e.g. 'then: {group: first-line}'",
    ),
    "empty-then": (
        """
        - name: vpn
          then: {}
        """,
        "2:9: 'then' is empty: add at least one action, e.g. 'group: first-line'",
    ),
    "then-not-a-mapping": (
        """
        - name: vpn
          then: [group, network]
        """,
        "2:9: 'then' must be a mapping of keys and values (got a list)",
    ),
    "empty-when": (
        """
        - name: vpn
          when: {}
          then: {group: network}
        """,
        "2:9: 'when' is empty: add a condition, or remove 'when' to match every mail",
    ),
    "on-followup-not-a-flag": (
        """
        - name: vpn
          on_followup: sometimes
          then: {group: network}
        """,
        "2:16: 'on_followup' must be true or false (got text)",
    ),
    "unknown-condition": (
        """
        - name: vpn
          when: {subjet: vpn}
          then: {group: network}
        """,
        "2:10: unknown condition 'subjet': did you mean 'subject'?",
    ),
    "unknown-operator": (
        """
        - name: vpn
          when:
            subject: {contain: vpn}
          then: {group: network}
        """,
        "3:15: unknown operator 'contain' for 'subject': did you mean 'contains'?",
    ),
    "operator-not-for-field": (
        """
        - name: vpn
          when:
            subject: {domain: example.com}
          then: {group: network}
        """,
        "3:15: 'domain' does not apply to 'subject': use one of equals, contains, regex, in, "
        "starts_with, ends_with, exists",
    ),
    "no-operator": (
        """
        - name: vpn
          when:
            subject: {case_sensitive: true}
          then: {group: network}
        """,
        "3:14: 'subject' has no operator: add one of equals, contains, regex, in, starts_with, "
        "ends_with, exists",
    ),
    "equals-with-list": (
        """
        - name: vpn
          when:
            subject: {equals: [vpn, wifi]}
          then: {group: network}
        """,
        "3:23: 'equals' compares with one value: for a list of values use 'in'",
    ),
    "in-with-one-value": (
        """
        - name: vpn
          when:
            subject: {in: vpn}
          then: {group: network}
        """,
        "3:19: 'in' needs a list, e.g. 'in: [a, b]'; for one value use 'equals'",
    ),
    "regex-with-list": (
        """
        - name: vpn
          when:
            subject: {regex: [vpn, wifi]}
          then: {group: network}
        """,
        "3:22: 'regex' takes one pattern: join alternatives with '|'",
    ),
    "invalid-regex": (
        """
        - name: faktury
          when:
            subject: {regex: 'FV(\\d+'}
          then: {group: accounts}
        """,
        "3:22: invalid regular expression 'FV(\\d+': missing ), unterminated subpattern "
        "at position 2",
    ),
    "domain-with-address": (
        """
        - name: serwis
          when:
            from: {domain: biuro@serwis.example.net}
          then: {group: first-line}
        """,
        "3:20: 'domain' takes a domain such as example.com, not the address "
        "'biuro@serwis.example.net'",
    ),
    "invalid-domain": (
        """
        - name: serwis
          when:
            from_domain: 'serwis example net'
          then: {group: first-line}
        """,
        "3:18: invalid domain 'serwis example net': write a domain such as example.com",
    ),
    "address-field-given-a-domain": (
        """
        - name: serwis
          when:
            from: '@serwis.example.net'
          then: {group: first-line}
        """,
        "3:11: '@serwis.example.net' is a domain, not an address: "
        "write 'from: {domain: serwis.example.net}'",
    ),
    "all-not-a-list": (
        """
        - name: vpn
          when:
            all: {subject: vpn}
          then: {group: network}
        """,
        "3:10: 'all' must be a list (got a mapping)",
    ),
    "any-empty": (
        """
        - name: vpn
          when:
            any: []
          then: {group: network}
        """,
        "3:10: 'any' needs at least one condition",
    ),
    "not-not-a-mapping": (
        """
        - name: vpn
          when:
            not: [subject: vpn]
          then: {group: network}
        """,
        "3:10: 'not' must be a mapping of keys and values (got a list)",
    ),
    "header-without-name": (
        """
        - name: priorytet
          when:
            header: {equals: '1'}
          then: {urgency: high}
        """,
        "3:13: 'header' needs 'name', the header to test, e.g. 'name: X-Priority'",
    ),
    "invalid-header-name": (
        """
        - name: priorytet
          when:
            header: {name: 'X Priority:', equals: '1'}
          then: {urgency: high}
        """,
        "3:20: invalid header name 'X Priority:': a header name has no spaces or colons",
    ),
    "unknown-set-field": (
        """
        - name: siec
          when:
            set: {grup: network}
          then: {urgency: high}
        """,
        "3:11: unknown routing field 'grup' in 'set': did you mean 'group'?",
    ),
    "set-unknown-group": (
        """
        - name: siec
          when:
            set: {group: netwrok}
          then: {urgency: high}
        """,
        "3:18: unknown group 'netwrok': did you mean 'network'?",
    ),
    "flag-not-a-flag": (
        """
        - name: dyzur
          when:
            business_hours: 'poza'
          then: {group: network}
        """,
        "3:21: 'business_hours' must be true or false (got text)",
    ),
    "exists-not-a-flag": (
        """
        - name: listy
          when:
            header: {name: List-Id, exists: 'tak'}
          then: {ignore: lista}
        """,
        "3:37: 'exists' must be true or false (got text)",
    ),
    "case-sensitive-not-a-flag": (
        """
        - name: vpn
          when:
            subject: {contains: VPN, case_sensitive: 'yes please'}
          then: {group: network}
        """,
        "3:46: 'case_sensitive' must be true or false (got text)",
    ),
    "language-condition-value": (
        """
        - name: niemiecki
          when:
            language: de
          then: {group: first-line}
        """,
        "3:15: invalid value 'de' for 'language': write one of: en, pl",
    ),
    "empty-text": (
        """
        - name: pusty
          when:
            subject: {contains: ''}
          then: {group: first-line}
        """,
        "3:25: 'contains' is empty: write a value",
    ),
    "text-list-with-mapping": (
        """
        - name: vpn
          when:
            subject: [vpn, {wifi: true}]
          then: {group: network}
        """,
        "3:20: 'subject' must be text or a list of texts (got a mapping)",
    ),
    "unknown-action": (
        """
        - name: vpn
          then: {gruop: network}
        """,
        "2:10: unknown action 'gruop': did you mean 'group'?",
    ),
    "unknown-group": (
        """
        - name: vpn
          then: {group: sieci}
        """,
        "2:17: unknown group 'sieci': write one of: accounts, first-line, network",
    ),
    "unknown-agent": (
        """
        - name: vpn
          then: {assignee: anna.nowakowska}
        """,
        "2:20: unknown agent 'anna.nowakowska': did you mean 'anna.nowak'?",
    ),
    "unknown-template": (
        """
        - name: vpn
          then: {template: potwierdzenie}
        """,
        "2:20: unknown template 'potwierdzenie': write one of: acknowledgement, none, vip_notice",
    ),
    "invalid-type": (
        """
        - name: vpn
          then: {type: incydent}
        """,
        "2:16: invalid value 'incydent' for 'type': did you mean 'incident'?",
    ),
    "invalid-impact": (
        """
        - name: vpn
          then: {impact: wysoki}
        """,
        "2:18: invalid value 'wysoki' for 'impact': write one of: high, low, medium",
    ),
    "invalid-urgency": (
        """
        - name: vpn
          then: {urgency: hihg}
        """,
        "2:19: invalid value 'hihg' for 'urgency': did you mean 'high'?",
    ),
    "invalid-language-action": (
        """
        - name: vpn
          then: {language: english}
        """,
        "2:20: invalid value 'english' for 'language': write one of: en, pl",
    ),
    "stop-not-a-flag": (
        """
        - name: vpn
          then: {stop: now}
        """,
        "2:16: 'stop' must be true or false (got text)",
    ),
    "ignore-without-reason": (
        """
        - name: spam
          then: {ignore: true}
        """,
        "2:18: 'ignore' needs the reason to record, e.g. 'ignore: {reason: newsletter}'",
    ),
    "ignore-unknown-key": (
        """
        - name: spam
          then: {ignore: {reson: spam}}
        """,
        "2:19: unknown key 'reson' in 'ignore': did you mean 'reason'?",
    ),
    "notify-without-template": (
        """
        - name: vip
          then:
            notify: {to: sekretariat@example.com}
        """,
        "3:13: 'notify' needs 'template', the template of the notification",
    ),
    "notify-without-to": (
        """
        - name: vip
          then:
            notify: {template: vip_notice}
        """,
        "3:13: 'notify' needs 'to', the addresses to notify",
    ),
    "notify-invalid-address": (
        """
        - name: vip
          then:
            notify: {to: [sekretariat], template: vip_notice}
        """,
        "3:18: invalid address 'sekretariat': write a full address such as name@example.com",
    ),
    "notify-unknown-template": (
        """
        - name: vip
          then:
            notify: {to: sekretariat@example.com, template: vip_notise}
        """,
        "3:53: unknown template 'vip_notise': did you mean 'vip_notice'?",
    ),
    "yaml-syntax": (
        """
        - name: vpn
          then: {group: network
        """,
        "3:1: invalid YAML: the mapping opened with { at line 2, column 9 lacks a comma or "
        "its closing } (while parsing a flow mapping expected ',' or '}', but got "
        "'<stream end>')",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_validation_error_message_and_position(tmp_path, english, case):
    text, expected = CASES[case]
    path = tmp_path / "10-test.yaml"

    problems = problems_of(tmp_path, {path.name: text})

    assert [str(problem) for problem in problems] == [f"{path}:{expected}"]


def test_validation_error_carries_position(tmp_path, english):
    problems = problems_of(tmp_path, {"10-a.yaml": "- {name: a, then: {group: sieci}}\n"})

    position = problems[0].position

    assert position is not None
    assert position.path == str(tmp_path / "10-a.yaml")
    assert (position.line, position.column) == (1, 27)


def test_validation_collects_errors_of_all_files(tmp_path, english):
    files = {
        "10-a.yaml": """
            - name: vpn
              when: {subjet: vpn}
              then: {group: netwrok}
            """,
        "20-b.yaml": """
            - name: vpn
              then: {urgency: pilna}
            - name: druga
              then: {tags: []}
            """,
        "30-c.yaml": "- name: [zepsuty\n",
    }

    problems = problems_of(tmp_path, files)
    places = [(Path(problem.position.path).name, problem.position.line) for problem in problems]

    assert places == [
        ("10-a.yaml", 2),
        ("10-a.yaml", 3),
        ("20-b.yaml", 1),
        ("20-b.yaml", 2),
        ("20-b.yaml", 4),
        ("30-c.yaml", 2),
    ]


def test_validation_duplicate_name_across_files(tmp_path, english):
    files = {
        "10-a.yaml": "- {name: vpn, then: {group: network}}\n",
        "20-b.yaml": "- name: vpn\n  then: {group: first-line}\n",
    }

    problems = problems_of(tmp_path, files)

    assert [str(problem) for problem in problems] == [
        f"{tmp_path / '20-b.yaml'}:1:9: duplicate rule name 'vpn': the first rule with this "
        f"name is at {tmp_path / '10-a.yaml'}:1:10; rename one of them"
    ]


def test_validation_without_configured_groups(tmp_path, english):
    problems = problems_of(
        tmp_path, {"10-a.yaml": "- {name: vpn, then: {group: network}}\n"}, RuleEnvironment()
    )

    assert problems[0].message == "unknown group 'network': no groups are configured"


def test_validation_rejects_non_utf8_file(tmp_path, english):
    (tmp_path / "10-a.yaml").write_bytes(
        "- name: drukarka\n  description: drukarka na piętrze\n".encode("windows-1250"))

    with pytest.raises(RulesError) as raised:
        load_rules(tmp_path, ENVIRONMENT)

    # The first byte that is not UTF-8 is the "ę" in line 2, column 30.
    assert str(raised.value.errors[0]) == (
        f"{tmp_path / '10-a.yaml'}:2:30: the file is not valid UTF-8: save it as UTF-8"
    )


def test_validation_error_summary_counts(tmp_path, english):
    (tmp_path / "10-a.yaml").write_text("- {name: a, then: {group: x}}\n- {name: b}\n")

    with pytest.raises(RulesError) as raised:
        load_rules(tmp_path, ENVIRONMENT)

    assert str(raised.value).splitlines()[0] == "2 errors in the routing rules:"


def test_validation_messages_in_polish(tmp_path, polish):
    files = {
        "10-a.yaml": """
            - name: vpn
              when: {subjet: vpn}
              then: {group: netwrok, ignore: true}
            """,
    }

    problems = problems_of(tmp_path, files)

    assert [problem.message for problem in problems] == [
        "nieznany warunek 'subjet': czy chodziło o 'subject'?",
        "nieznana grupa 'netwrok': czy chodziło o 'network'?",
        "'ignore' wymaga powodu, który zostanie zapisany, np. 'ignore: {reason: newsletter}'",
    ]


def test_validation_summary_polish_plural(tmp_path, polish):
    rules = "".join(f"- {{name: r{index}, then: {{group: x}}}}\n" for index in range(5))
    (tmp_path / "10-a.yaml").write_text(rules)

    with pytest.raises(RulesError) as raised:
        load_rules(tmp_path, ENVIRONMENT)

    assert str(raised.value).splitlines()[0] == "5 błędów w regułach przydziału:"


@pytest.mark.parametrize("content", ["", "# tylko komentarz\n", "[]\n"])
def test_empty_rules_file_is_valid(tmp_path, content):
    (tmp_path / "10-a.yaml").write_text(content)

    ruleset = load_rules(tmp_path, ENVIRONMENT)

    assert len(ruleset) == 0


def test_missing_directory_is_an_empty_rule_set(tmp_path):
    ruleset = load_rules(tmp_path / "brak", ENVIRONMENT)

    assert len(ruleset) == 0
    assert ruleset.files == ()


def test_hidden_and_backup_files_are_skipped(tmp_path):
    (tmp_path / ".10-a.yaml.swp").write_text("zepsuty: [")
    (tmp_path / "10-a.yaml~").write_text("zepsuty: [")
    (tmp_path / "README.md").write_text("# reguły")
    (tmp_path / "20-b.yml").write_text("- {name: b, then: {group: network}}\n")

    ruleset = load_rules(tmp_path, ENVIRONMENT)

    assert [rule.name for rule in ruleset.rules] == ["b"]


def test_rules_directory_that_is_a_file(tmp_path, english):
    path = tmp_path / "rules"
    path.write_text("- {name: a, then: {group: network}}\n")

    with pytest.raises(RulesError) as raised:
        load_rules(path, ENVIRONMENT)

    assert str(raised.value.errors[0]) == (
        f"{path}: the rules directory is a file: point the configuration at a directory"
    )


def test_unreadable_rules_directory(tmp_path, english, monkeypatch):
    def denied(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "iterdir", denied)

    with pytest.raises(RulesError) as raised:
        load_rules(tmp_path, ENVIRONMENT)

    assert str(raised.value.errors[0]) == (
        f"{tmp_path}: the rules directory could not be read: Permission denied"
    )


SAMPLE_MAIL = parse_message(
    b"From: Jan Kowalski <jan.kowalski@example.com>\r\nTo: helpdesk@example.com\r\n"
    b"Subject: VPN nie dziala\r\nX-Priority: 1\r\n\r\nProsze o pomoc z VPN.\r\n"
)

# Any YAML an admin can type must end in a rule set or a RulesError, never a crash, and
# a rule set that loads must evaluate and survive a JSON round trip.
KEYS = st.sampled_from(
    [
        "name", "when", "then", "all", "any", "not", "subject", "from", "header", "set",
        "group", "tags", "notify", "ignore", "reason", "to", "template", "equals", "in",
        "regex", "domain", "exists", "case_sensitive", "business_hours", "stop", "x",
    ]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from(["network", "vpn", "", "(", "@example.com", "a@example.com", "none"]),
)
YAML_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(KEYS, children, max_size=3)
    ),
    max_leaves=12,
)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(document=st.lists(YAML_VALUES, max_size=3))
def test_validation_never_crashes(tmp_path, document):
    (tmp_path / "10-fuzz.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")

    try:
        ruleset = load_rules(tmp_path, ENVIRONMENT)
    except RulesError as error:
        assert error.errors
        return

    routing = ruleset.evaluate(SAMPLE_MAIL, received_at=datetime(2026, 12, 4, 10, tzinfo=UTC))
    assert Routing.from_json(json.loads(json.dumps(routing.to_json()))) == routing


CONDITION_KEYS = st.sampled_from(
    [
        "subject", "body", "from", "from_domain", "recipient", "language", "attachment_name",
        "all", "any", "not", "sender_is_vip", "business_hours",
    ]
)  # fmt: skip
OPERATOR_VALUES = st.one_of(
    st.sampled_from(["vpn", "VPN NIE", "example.com", "pl", "1"]),
    st.lists(st.sampled_from(["vpn", "pomoc", "en"]), min_size=1, max_size=2),
    st.dictionaries(
        st.sampled_from(["contains", "equals", "in", "regex", "starts_with", "exists"]),
        st.sampled_from(["vpn", "v.n", "pl"]),
        min_size=1,
        max_size=2,
    ),
    st.booleans(),
)
CONDITIONS = st.recursive(
    st.dictionaries(CONDITION_KEYS, OPERATOR_VALUES, min_size=1, max_size=2),
    lambda children: st.dictionaries(
        st.sampled_from(["all", "any", "not"]),
        st.one_of(children, st.lists(children, min_size=1, max_size=2)),
        min_size=1,
        max_size=2,
    ),
    max_leaves=6,
)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(conditions=st.lists(CONDITIONS, min_size=1, max_size=4))
def test_generated_rules_evaluate_or_fail_cleanly(tmp_path, conditions):
    document = [
        {"name": f"r{index}", "when": when, "then": {"tags": [f"t{index}"]}}
        for index, when in enumerate(conditions)
    ]
    (tmp_path / "10-fuzz.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")

    try:
        ruleset = load_rules(tmp_path, ENVIRONMENT)
    except RulesError as error:
        event("invalid rules")
        assert error.errors
        return

    event("valid rules")
    routing = ruleset.evaluate(SAMPLE_MAIL, received_at=datetime(2026, 12, 4, 10, tzinfo=UTC))
    assert len(routing.trace) == len(document)
    assert set(routing.tags) == {f"t{name[1:]}" for name in routing.matched_rules}
