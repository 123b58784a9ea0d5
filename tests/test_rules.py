"""Routing rules: which rules match which mails, and what the routing becomes."""

from __future__ import annotations

import textwrap
import unicodedata
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maildesk.errors import ConfigError
from maildesk.i18n import current_language, set_language
from maildesk.parse import ParsedMessage, parse_message
from maildesk.rules import (
    Notification,
    Routing,
    RuleEnvironment,
    RuleSet,
    detect_language,
    load_rules,
)
from maildesk.rules.conditions import Comparison, MailFacts
from maildesk.rules.routing import AFTER_STOP, DISABLED, MATCHED, NEW_TICKETS_ONLY, NOT_MATCHED

WARSAW = ZoneInfo("Europe/Warsaw")
REPOSITORY = Path(__file__).resolve().parent.parent
EXAMPLE_RULES = REPOSITORY / "rules"
MAILS = Path(__file__).resolve().parent / "data" / "rules"
MORNING = datetime(2026, 12, 4, 10, 0, tzinfo=WARSAW)
EVENING = datetime(2026, 12, 3, 21, 47, tzinfo=WARSAW)


def working_hours(moment: datetime) -> bool:
    local = moment.astimezone(WARSAW)
    return local.weekday() < 5 and 8 <= local.hour < 16


ENVIRONMENT = RuleEnvironment(
    groups=frozenset({"first-line", "network", "accounts", "vip-support"}),
    agents=frozenset({"anna.nowak", "piotr.wisniewski"}),
    agent_addresses=frozenset({"Anna.Nowak@example.com", "piotr.wisniewski@example.com"}),
    templates=frozenset({"acknowledgement", "acknowledgement_vip", "vip_notice"}),
    vip=("@zarzad.example.com", "dyrektor.finansowy@example.com"),
    is_business_hours=working_hours,
)


def rules_from(tmp_path: Path, text: str, environment: RuleEnvironment = ENVIRONMENT) -> RuleSet:
    (tmp_path / "50-test.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return load_rules(tmp_path, environment)


def mail(
    subject: str = "Pytanie",
    body: str = "Dzień dobry, mam pytanie.",
    sender: str = "Jan Kowalski <jan.kowalski@example.com>",
    to: str = "helpdesk@example.com",
    cc: str | None = None,
    headers: dict[str, str] | None = None,
    attachments: tuple[tuple[str, str], ...] = (),
) -> ParsedMessage:
    """Build a real MIME mail and parse it, so rules see what the daemon would see."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    if cc:
        message["Cc"] = cc
    message["Subject"] = subject
    message["Date"] = "Fri, 04 Dec 2026 10:00:00 +0100"
    message.set_content(body)
    # set_content() drops Content-* headers, so Content-Language goes in afterwards.
    for name, value in (headers or {}).items():
        message[name] = value
    for filename, content_type in attachments:
        maintype, subtype = content_type.split("/")
        message.add_attachment(b"data", maintype=maintype, subtype=subtype, filename=filename)
    return parse_message(message.as_bytes())


def route(ruleset: RuleSet, message: ParsedMessage, **options) -> Routing:
    options.setdefault("received_at", MORNING)
    return ruleset.evaluate(message, **options)


# -- the example rules shipped under rules/ ------------------------------------------------

EXAMPLE_CASES = [
    (
        "pl-drukarka-iso-8859-2.eml",
        MORNING,
        {"group": "first-line", "matched": ("domyslnie-pierwsza-linia",), "mail_language": "pl"},
    ),
    (
        "pl-vip-vpn-wieczorem.eml",
        EVENING,
        {
            "group": "network",
            "type": "incident",
            "category": "sieć",
            "impact": "high",
            "urgency": "high",
            "tags": ("vip", "dyzur"),
            "matched": ("vip-pilnosc", "vip-awaria-poza-godzinami", "siec-vpn-wifi"),
        },
    ),
    (
        "pl-vip-vpn-wieczorem.eml",
        MORNING,
        {
            "group": "network",
            "impact": None,
            "tags": ("vip",),
            "matched": ("vip-pilnosc", "siec-vpn-wifi"),
        },
    ),
    (
        "en-new-employee-cc.eml",
        MORNING,
        {
            "group": "accounts",
            "type": "service_request",
            "category": "konta",
            "tags": ("onboarding",),
            "mail_language": "en",
        },
    ),
    (
        "pl-reset-hasla-bez-ogonkow.eml",
        MORNING,
        {
            "group": "accounts",
            "type": "service_request",
            "category": "hasła",
            "mail_language": "pl",
        },
    ),
    (
        "newsletter-bulk.eml",
        MORNING,
        {"group": None, "ignore_reason": "newsletter", "stopped_by": "newslettery"},
    ),
    (
        "zabbix-problem.eml",
        MORNING,
        {
            "group": "network",
            "urgency": "high",
            "auto_reply": False,
            "tags": ("zabbix",),
            "stopped_by": "siec-alarm-zabbix",
        },
    ),
    (
        "zabbix-ok.eml",
        MORNING,
        {
            "group": None,
            "ignore_reason": "monitoring-resolved",
            "stopped_by": "siec-alarm-zabbix-ok",
        },
    ),
    (
        "pl-faktura-pdf.eml",
        MORNING,
        {"group": "first-line", "ignore_reason": None, "tags": ()},
    ),
]


@pytest.mark.parametrize(
    ("filename", "received_at", "expected"),
    EXAMPLE_CASES,
    ids=[f"{case[0]}-{case[1].hour}h" for case in EXAMPLE_CASES],
)
def test_example_rules_route_sample_mails(filename, received_at, expected):
    ruleset = load_rules(EXAMPLE_RULES, ENVIRONMENT)
    message = parse_message((MAILS / filename).read_bytes())

    routing = ruleset.evaluate(message, received_at=received_at)

    for field, value in expected.items():
        actual = routing.matched_rules if field == "matched" else getattr(routing, field)
        assert actual == value, f"{field}: {actual!r} != {value!r}"


# Fields whose values the English starter rules name differently.
_NAMED_IN_LANGUAGE = {"category", "tags", "stopped_by", "matched"}


@pytest.mark.parametrize(
    ("filename", "received_at", "expected"),
    EXAMPLE_CASES,
    ids=[f"{case[0]}-{case[1].hour}h" for case in EXAMPLE_CASES],
)
def test_english_example_rules_route_alike(filename, received_at, expected):
    ruleset = load_rules(EXAMPLE_RULES / "en", ENVIRONMENT)
    message = parse_message((MAILS / filename).read_bytes())

    routing = ruleset.evaluate(message, received_at=received_at)

    for field, value in expected.items():
        if field in _NAMED_IN_LANGUAGE:
            continue
        actual = getattr(routing, field)
        assert actual == value, f"{field}: {actual!r} != {value!r}"


def test_example_rules_load_in_file_name_order():
    ruleset = load_rules(EXAMPLE_RULES, ENVIRONMENT)

    names = [Path(path).name for path in ruleset.files]

    assert names == sorted(names)
    assert ruleset.rules[0].name == "vip-pilnosc"
    assert ruleset.rules[-1].name == "domyslnie-pierwsza-linia"


# -- fields and operators ------------------------------------------------------------------

OPERATOR_CASES = [
    # (condition YAML, mail options, expected match)
    ("subject: zamówienie", {"subject": "ZAMÓWIENIE nr 15/2026"}, True),
    (
        "subject: zamówienie",
        {"subject": unicodedata.normalize("NFD", "ZAMÓWIENIE laptopa")},
        True,
    ),
    # Users often type without Polish letters, and admins write rules with them.
    ("subject: 'nie działa'", {"subject": "VPN nie dziala od rana"}, True),
    ("subject: 'brak dostepu'", {"subject": "Brak dostępu do udziału"}, True),
    ("subject: {equals: 'Żółć'}", {"subject": "ZOLC"}, True),
    ("subject: {contains: 'nie działa', case_sensitive: true}", {"subject": "nie dziala"},
     False),
    ("subject: 'йод'", {"subject": "иод"}, False),
    ("subject: {contains: ZAMÓWIENIE, case_sensitive: true}", {"subject": "zamówienie"}, False),
    ("subject: {contains: ZAMÓWIENIE, case_sensitive: true}", {"subject": "ZAMÓWIENIE"}, True),
    ("subject: [toner, drukarka]", {"subject": "Brak tonera w drukarce"}, True),
    ("subject: [toner, drukarka]", {"subject": "Monitor miga"}, False),
    ("subject: {equals: 'Reset hasła'}", {"subject": "reset  HASŁA"}, True),
    ("subject: {equals: 'Reset hasła'}", {"subject": "Reset hasła do VPN"}, False),
    ("subject: {starts_with: '[pilne]'}", {"subject": "[PILNE] Serwer plików"}, True),
    ("subject: {ends_with: [pilne, asap]}", {"subject": "Serwer plików ASAP"}, True),
    ("subject: {regex: 'FV[-/ ]?\\d{4}'}", {"subject": "faktura fv-2026/12"}, True),
    ("subject: {regex: 'FV\\d+', case_sensitive: true}", {"subject": "fv2026"}, False),
    ("subject: {in: [test, próba]}", {"subject": "PRÓBA"}, True),
    ("body: 'nie mogę się zalogować'", {"body": "Od rana nie mogę\nsię zalogować do SAP."}, True),
    ("from: jan.kowalski@example.com", {"sender": "Jan <Jan.Kowalski@EXAMPLE.com>"}, True),
    ("from: {domain: example.com}", {"sender": "ola@oddzial.example.com"}, True),
    ("from: {domain: example.com}", {"sender": "ola@example.com.evil.example"}, False),
    ("from: {domain: '@example.com'}", {"sender": "ola@example.com"}, True),
    ("from_domain: oddzial.example.com", {"sender": "ola@oddzial.example.com"}, True),
    ("from_domain: {equals: example.com}", {"sender": "ola@oddzial.example.com"}, False),
    ("to: kadry@example.com", {"to": "Kadry <kadry@example.com>, helpdesk@example.com"}, True),
    ("cc: {exists: true}", {"cc": "kierownik@example.com"}, True),
    ("cc: {exists: true}", {}, False),
    ("recipient: helpdesk-sap@example.com", {"cc": "helpdesk-sap@example.com"}, True),
    ("recipient: {in: [helpdesk-sap@example.com, sap@example.com]}", {}, False),
    ("header: {name: X-Priority, equals: 1}", {"headers": {"X-Priority": "1"}}, True),
    (
        "header: {name: x-priority, starts_with: '1'}",
        {"headers": {"X-Priority": "1 (Highest)"}},
        True,
    ),
    ("header: {name: List-Id}", {"headers": {"List-Id": "<admini.lists.example.org>"}}, True),
    ("header: {name: List-Id}", {}, False),
    ("header: {name: List-Id, exists: false}", {}, True),
    (
        "attachment_name: {ends_with: .pdf}",
        {"attachments": (("Faktura_FV-031.PDF", "application/pdf"),)},
        True,
    ),
    ("attachment_name: faktura", {"attachments": (("zdjęcie.jpg", "image/jpeg"),)}, False),
    (
        "attachment_type: {starts_with: image/}",
        {"attachments": (("zrzut ekranu.png", "image/png"),)},
        True,
    ),
    ("attachment_type: application/pdf", {}, False),
    ("language: pl", {"subject": "Nie działa drukarka", "body": "Proszę o pomoc."}, True),
    ("language: en", {"subject": "Printer is not working", "body": "Please help."}, True),
    ("language: en", {"headers": {"Content-Language": "en-GB"}}, True),
    ("sender_is_agent: true", {"sender": "anna.nowak@example.com"}, True),
    ("sender_is_agent: false", {"sender": "anna.nowak@example.com"}, False),
    ("sender_is_vip: true", {"sender": "prezes@zarzad.example.com"}, True),
    ("sender_is_vip: true", {"sender": "Dyrektor.Finansowy@example.com"}, True),
    ("sender_is_vip: true", {"sender": "jan.kowalski@example.com"}, False),
]


@pytest.mark.parametrize(("condition", "options", "expected"), OPERATOR_CASES)
def test_condition_matches_mail(tmp_path, condition, options, expected):
    ruleset = rules_from(
        tmp_path,
        f"""
        - name: under-test
          when:
            {condition}
          then:
            tags: [hit]
        """,
    )

    routing = route(ruleset, mail(**options))

    assert (routing.tags == ("hit",)) is expected


def test_business_hours_uses_receive_time(tmp_path):
    ruleset = rules_from(
        tmp_path,
        """
        - name: poza-godzinami
          when: {business_hours: false}
          then: {tags: [dyzur]}
        """,
    )

    in_hours = route(ruleset, mail(), received_at=MORNING)
    after_hours = route(ruleset, mail(), received_at=EVENING)

    assert in_hours.tags == ()
    assert after_hours.tags == ("dyzur",)


def test_combinators_nest(tmp_path):
    ruleset = rules_from(
        tmp_path,
        """
        - name: drukarki-nie-vip
          when:
            all:
              - any:
                  - subject: drukarka
                  - body: toner
              - not:
                  any:
                    - sender_is_vip: true
                    - from: {domain: serwis.example.net}
          then:
            group: first-line
        """,
    )

    user = route(ruleset, mail(subject="Drukarka", sender="ola@example.com"))
    vip = route(ruleset, mail(subject="Drukarka", sender="prezes@zarzad.example.com"))
    service = route(ruleset, mail(body="wymiana tonera", sender="x@serwis.example.net"))

    assert user.group == "first-line"
    assert vip.group is None
    assert service.group is None


def test_several_conditions_in_one_mapping_must_all_hold(tmp_path):
    ruleset = rules_from(
        tmp_path,
        """
        - name: sap-pilne
          when:
            subject: sap
            body: pilne
          then: {group: accounts}
        """,
    )

    both = route(ruleset, mail(subject="SAP", body="To pilne"))
    one = route(ruleset, mail(subject="SAP", body="Kiedy będzie czas"))

    assert both.group == "accounts"
    assert one.group is None


def test_rule_without_when_matches_every_mail(tmp_path):
    ruleset = rules_from(tmp_path, "- {name: wszystko, then: {group: first-line}}")

    routing = route(ruleset, mail(subject=""))

    assert routing.group == "first-line"


# -- order, later rules and the current routing --------------------------------------------


def test_later_rule_overrides_and_trace_keeps_previous(tmp_path):
    ruleset = rules_from(
        tmp_path,
        """
        - name: pierwsza
          then: {group: first-line, tags: [a]}
        - name: druga
          when: {subject: vpn}
          then: {group: network, tags: [a, b]}
        """,
    )

    routing = route(ruleset, mail(subject="VPN"))
    second = routing.trace[1]

    assert routing.group == "network"
    assert routing.tags == ("a", "b")
    assert second.actions[0].action == "group"
    assert second.actions[0].previous == "first-line"
    assert second.actions[1].value == ["b"]


def test_set_condition_sees_earlier_actions(tmp_path):
    ruleset = rules_from(
        tmp_path,
        """
        - name: vpn
          when: {subject: vpn}
          then: {group: network, impact: high}
        - name: siec-pilna
          when:
            set: {group: network, impact: {in: [high, medium]}}
          then: {urgency: high}
        - name: domyslna
          when:
            set: {group: {exists: false}}
          then: {group: first-line}
        """,
    )

    vpn = route(ruleset, mail(subject="VPN"))
    other = route(ruleset, mail(subject="Monitor"))

    assert vpn.urgency == "high"
    assert vpn.group == "network"
    assert other.urgency is None
    assert other.group == "first-line"


def test_stop_skips_later_rules(tmp_path):
    ruleset = rules_from(
        tmp_path,
        """
        - name: spam
          when: {header: {name: X-Spam-Flag, equals: 'YES'}}
          then: {ignore: {reason: spam}, stop: true}
        - name: reszta
          then: {group: first-line}
        """,
    )

    routing = route(ruleset, mail(headers={"X-Spam-Flag": "YES"}))

    assert routing.ignored
    assert routing.ignore_reason == "spam"
    assert routing.stopped_by == "spam"
    assert routing.group is None
    assert [item.status for item in routing.trace] == [MATCHED, AFTER_STOP]


def test_followup_runs_only_rules_that_opt_in(tmp_path):
    ruleset = rules_from(
        tmp_path,
        """
        - name: nowe
          then: {group: first-line}
        - name: odpowiedzi-vip
          on_followup: true
          when: {sender_is_vip: true}
          then: {urgency: high}
        """,
    )
    message = mail(sender="prezes@zarzad.example.com")

    followup = route(ruleset, message, followup=True)
    new = route(ruleset, message)

    assert followup.group is None
    assert followup.urgency == "high"
    assert followup.followup is True
    assert [item.status for item in followup.trace] == [NEW_TICKETS_ONLY, MATCHED]
    assert new.group == "first-line"
    assert new.urgency == "high"


def test_disabled_rule_is_traced_but_not_run(tmp_path):
    ruleset = rules_from(
        tmp_path,
        """
        - name: stara
          enabled: false
          then: {group: network}
        - name: nowa
          when: {subject: nic takiego}
          then: {group: first-line}
        """,
    )

    routing = route(ruleset, mail())

    assert routing.group is None
    assert [item.status for item in routing.trace] == [DISABLED, NOT_MATCHED]


def test_actions_fill_every_routing_field(tmp_path):
    ruleset = rules_from(
        tmp_path,
        """
        - name: wszystko
          then:
            group: vip-support
            assignee: anna.nowak
            type: service_request
            category: sprzęt
            impact: medium
            urgency: low
            tags: zarzad
            template: acknowledgement_vip
            auto_reply: false
            notify:
              - {to: [sekretariat@example.com, kierownik.it@example.com], template: vip_notice}
            language: en
        - name: powiadom-jeszcze
          then:
            notify: {to: dyzur@example.com, template: vip_notice}
        """,
    )

    routing = route(ruleset, mail())

    assert routing.group == "vip-support"
    assert routing.assignee == "anna.nowak"
    assert routing.type == "service_request"
    assert routing.category == "sprzęt"
    assert routing.impact == "medium"
    assert routing.urgency == "low"
    assert routing.tags == ("zarzad",)
    assert routing.template == "acknowledgement_vip"
    assert routing.acknowledge is True
    assert routing.auto_reply is False
    assert routing.language == "en"
    assert routing.notify == (
        Notification(("sekretariat@example.com", "kierownik.it@example.com"), "vip_notice"),
        Notification(("dyzur@example.com",), "vip_notice"),
    )


def test_template_none_turns_acknowledgement_off(tmp_path):
    ruleset = rules_from(
        tmp_path,
        """
        - name: bez-potwierdzenia
          when: {from: {domain: monitoring.example.com}}
          then: {template: none}
        """,
    )

    robot = route(ruleset, mail(sender="zabbix@monitoring.example.com"))
    person = route(ruleset, mail())

    assert robot.acknowledge is False
    assert robot.template is None
    assert person.acknowledge is True


def test_routing_json_round_trip(tmp_path):
    ruleset = load_rules(EXAMPLE_RULES, ENVIRONMENT)
    message = parse_message((MAILS / "pl-vip-vpn-wieczorem.eml").read_bytes())
    routing = ruleset.evaluate(message, received_at=EVENING)

    stored = routing.to_json()

    assert Routing.from_json(stored) == routing
    assert stored["version"] == 1
    assert stored["trace"][0]["conditions"][0]["field"] == "sender_is_vip"


def test_routing_json_missing_field_named(tmp_path):
    ruleset = load_rules(EXAMPLE_RULES, ENVIRONMENT)
    message = parse_message((MAILS / "pl-vip-vpn-wieczorem.eml").read_bytes())
    stored = ruleset.evaluate(message, received_at=EVENING).to_json()
    del stored["trace"][0]["line"]

    previous = current_language()
    set_language("en")
    try:
        with pytest.raises(ConfigError) as raised:
            Routing.from_json(stored)
    finally:
        set_language(previous)

    assert str(raised.value) == "invalid stored routing: the field 'line' is missing"


# -- the language of a mail ----------------------------------------------------------------


def test_language_caller_value_wins(tmp_path):
    ruleset = rules_from(tmp_path, "- {name: en, when: {language: en}, then: {tags: [en]}}")

    routing = route(ruleset, mail(subject="Drukarka nie działa"), language="en_GB")

    assert routing.mail_language == "en"
    assert routing.tags == ("en",)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"subject": "Drukarka nie drukuje", "body": "Proszę o pomoc, pozdrawiam"}, ("pl", "text")),
        ({"subject": "Reset hasla", "body": "Dzien dobry, prosze o pomoc"}, ("pl", "text")),
        (
            {"subject": "Printer", "body": "Hello, the printer does not work. Thanks"},
            ("en", "text"),
        ),
        ({"subject": "Printer", "headers": {"Content-Language": "pl-PL"}}, ("pl", "header")),
        ({"subject": "SAP", "body": "SAP 12345"}, (None, "none")),
        # Polish names in a signature do not make an English mail Polish.
        ({"subject": "Monitor", "body": "Monitor flickers.\n\nŁukasz Wójcik, Kraków office, "
                                        "ul. Długa 5"}, (None, "none")),
        ({"subject": "Mouse broken", "body": "The mouse does not work.\n\nŁukasz Wójcik"},
         ("en", "text")),
        ({"subject": "Żółta kartka", "body": "Drukarka drukuje żółte pasy."}, ("pl", "text")),
    ],
)
def test_detect_language(options, expected):
    assert detect_language(mail(**options)) == expected


# -- properties of matching ----------------------------------------------------------------

POLISH_TEXT = st.text(alphabet="aąbcćdeęfghijklłmnńoópqrsśtuvwxyzźż AĄĆĘŁŃÓŚŹŻ\n-.0123456789")


@st.composite
def text_and_needle(draw):
    """A text and a piece of it that is not only whitespace, drawn without filtering."""
    text = draw(POLISH_TEXT.filter(lambda value: value.strip()))
    visible = [index for index, char in enumerate(text) if not char.isspace()]
    anchor = draw(st.sampled_from(visible))
    start = draw(st.integers(0, anchor))
    end = draw(st.integers(anchor + 1, len(text)))
    return text, text[start:end]


@settings(max_examples=100, deadline=None)
@given(text_and_needle())
def test_contains_ignores_case_of_any_substring(drawn):
    text, needle = drawn
    message = ParsedMessage(message_id=None, subject=text.upper(), from_address=None)
    facts = MailFacts(message, ENVIRONMENT, MORNING, None, lambda _name: [])
    comparison = Comparison("subject", "contains", (needle.lower(),))

    result = comparison.evaluate(facts, 0, [])

    assert result is True
