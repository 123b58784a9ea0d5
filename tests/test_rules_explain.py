"""The routing explanation as text, word for word, in English and Polish."""

from __future__ import annotations

import textwrap
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from maildesk.i18n import current_language, set_language
from maildesk.parse import parse_message
from maildesk.rules import (
    Routing,
    RuleEnvironment,
    RuleSet,
    explain_messages,
    format_explanation,
    load_rules,
)

WARSAW = ZoneInfo("Europe/Warsaw")
EVENING = datetime(2026, 12, 3, 21, 47, tzinfo=WARSAW)

RULES = """\
- name: vip
  when:
    sender_is_vip: true
  then:
    urgency: high
    tags: [vip]
- name: drukarki
  when:
    any:
      - subject: [drukarka, toner]
      - attachment_name: {ends_with: .pdf}
    not:
      header: {name: List-Id}
  then:
    group: first-line
    type: incident
    impact: medium
- name: siec
  when:
    subject: {regex: 'vpn|wi-?fi'}
  then:
    group: network
- name: stara
  enabled: false
  then: {group: network}
- name: pilne-po-godzinach
  when:
    set: {group: first-line}
    business_hours: false
  then: {group: network, template: none, stop: true}
- name: domyslna
  then: {group: first-line}
"""

MAIL = (
    b"From: Tomasz Zielinski <prezes@zarzad.example.com>\r\n"
    b"To: helpdesk@example.com\r\n"
    b"Subject: DRUKARKA w sekretariacie nie drukuje\r\n"
    b"Date: Thu, 03 Dec 2026 21:47:05 +0100\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Dzie\xc5\x84 dobry, drukarka nie drukuje.\r\n"
)

ENGLISH = """\
Language of the mail: Polish

Rule 'vip' (RULES:1): matched
  the sender is a VIP: yes
  -> urgency: high
  -> tags added: vip
Rule 'drukarki' (RULES:7): matched
  any of the following: yes
    subject contains 'drukarka' or 'toner': yes (value: "DRUKARKA w sekretariacie nie drukuje")
    attachment name ends with '.pdf': no (no value)
  the following is not true: yes
    header List-Id is present: no (no value)
  -> group: first-line
  -> type: incident
  -> impact: medium
Rule 'siec' (RULES:18): not matched
  subject matches the regular expression 'vpn|wi-?fi': no (value: "DRUKARKA w sekretariacie nie drukuje")
Rule 'stara' (RULES:23): disabled (enabled: false)
Rule 'pilne-po-godzinach' (RULES:26): matched
  'group' set by earlier rules is 'first-line': yes (value: "first-line")
  received outside business hours: yes
  -> group: network (was: first-line)
  -> no acknowledgement
  -> stop: later rules do not run
Rule 'domyslna' (RULES:31): not run: rule 'pilne-po-godzinach' has 'stop: true'

Result:
  group: network
  assignee: (not set)
  type: incident
  category: (not set)
  impact: medium
  urgency: high
  tags: vip
  acknowledgement: none
  automatic replies: yes
  ignore: no
  notify: nobody
  language of replies: (not set)
  stopped by rule: pilne-po-godzinach"""  # noqa: E501

POLISH = """\
Język wiadomości: polski

Reguła 'vip' (RULES:1): spełniona
  nadawca jest na liście VIP: tak
  -> pilność: wysoka
  -> dodane tagi: vip
Reguła 'drukarki' (RULES:7): spełniona
  co najmniej jeden z poniższych warunków: tak
    temat zawiera 'drukarka' lub 'toner': tak (wartość: „DRUKARKA w sekretariacie nie drukuje”)
    nazwa załącznika kończy się na '.pdf': nie (brak wartości)
  poniższy warunek nie jest spełniony: tak
    nagłówek List-Id występuje: nie (brak wartości)
  -> grupa: first-line
  -> typ: incydent
  -> wpływ: średni
Reguła 'siec' (RULES:18): niespełniona
  temat pasuje do wyrażenia regularnego 'vpn|wi-?fi': nie (wartość: „DRUKARKA w sekretariacie nie drukuje”)
Reguła 'stara' (RULES:23): wyłączona (enabled: false)
Reguła 'pilne-po-godzinach' (RULES:26): spełniona
  wartość 'group' ustawiona przez wcześniejsze reguły to 'first-line': tak (wartość: „first-line”)
  odebrano poza godzinami pracy: tak
  -> grupa: network (poprzednio: first-line)
  -> bez potwierdzenia przyjęcia zgłoszenia
  -> stop: kolejne reguły nie są sprawdzane
Reguła 'domyslna' (RULES:31): nie sprawdzono: reguła 'pilne-po-godzinach' ma 'stop: true'

Wynik:
  grupa: network
  osoba przypisana: (nie ustawiono)
  typ: incydent
  kategoria: (nie ustawiono)
  wpływ: średni
  pilność: wysoka
  tagi: vip
  potwierdzenie przyjęcia zgłoszenia: brak
  automatyczne odpowiedzi: tak
  zignoruj wiadomość: nie
  powiadom: nikogo
  język odpowiedzi: (nie ustawiono)
  sprawdzanie zatrzymała reguła: pilne-po-godzinach"""  # noqa: E501


def working_hours(moment: datetime) -> bool:
    return 8 <= moment.astimezone(WARSAW).hour < 16


ENVIRONMENT = RuleEnvironment(
    groups=frozenset({"first-line", "network"}),
    templates=frozenset({"acknowledgement", "vip_notice"}),
    vip=("@zarzad.example.com",),
    is_business_hours=working_hours,
)


@pytest.fixture
def ruleset(tmp_path) -> RuleSet:
    (tmp_path / "10-test.yaml").write_text(RULES, encoding="utf-8")
    return load_rules(tmp_path, ENVIRONMENT)


@pytest.fixture
def rules_path(tmp_path) -> str:
    return str(tmp_path / "10-test.yaml")


@pytest.mark.parametrize(("language", "expected"), [("en", ENGLISH), ("pl", POLISH)])
def test_explanation_word_for_word(ruleset, rules_path, language, expected):
    routing = ruleset.evaluate(parse_message(MAIL), received_at=EVENING)

    text = format_explanation(routing, language)

    assert text.splitlines() == expected.replace("RULES", rules_path).splitlines()


def test_explanation_leaves_interface_language_alone(ruleset):
    previous = current_language()
    set_language("en")
    routing = ruleset.evaluate(parse_message(MAIL), received_at=EVENING)

    format_explanation(routing, "pl")
    after = current_language()
    set_language(previous)

    assert after == "en"


def test_explanation_of_stored_routing_matches(ruleset):
    routing = ruleset.evaluate(parse_message(MAIL), received_at=EVENING)
    stored = type(routing).from_json(routing.to_json())

    assert format_explanation(stored, "en") == format_explanation(routing, "en")


def test_explanation_names_unknown_action(ruleset):
    # A routing stored by a newer maildesk may hold an action this version lacks.
    stored = ruleset.evaluate(parse_message(MAIL), received_at=EVENING).to_json()
    stored["trace"][0]["actions"].append({"action": "sla", "value": "gold", "previous": None})

    lines = format_explanation(Routing.from_json(stored), "en").splitlines()

    assert lines[6] == "  -> sla: gold"


def test_explanation_followup_and_ignore(tmp_path):
    (tmp_path / "10-a.yaml").write_text(
        textwrap.dedent(
            """\
            - name: newsletter
              on_followup: true
              when: {header: {name: List-Unsubscribe}}
              then: {ignore: {reason: newsletter}, tags: [bulk, bulk]}
            - name: nowe
              then: {group: first-line}
            """
        )
    )
    ruleset = load_rules(tmp_path, ENVIRONMENT)
    message = parse_message(
        b"From: newsletter@vendor.example.org\r\nTo: helpdesk@example.com\r\n"
        b"Subject: December offers\r\nList-Unsubscribe: <mailto:u@vendor.example.org>\r\n"
        b"\r\nThe best offers of the year, please read.\r\n"
    )

    routing = ruleset.evaluate(message, received_at=EVENING, followup=True)
    lines = format_explanation(routing, "en").splitlines()

    assert lines[0] == "Language of the mail: English"
    assert lines[1] == "The mail is a follow-up: only rules with 'on_followup: true' run."
    assert (
        '  header List-Unsubscribe is present: yes (value: "<mailto:u@vendor.example.org>")'
        in lines
    )
    assert "  -> ignore the mail (reason: newsletter)" in lines
    assert "  -> tags added: bulk" in lines
    assert routing.tags == ("bulk",)
    assert any(line.endswith("skipped: the rule applies to new tickets only") for line in lines)
    assert "  ignore: yes, reason: newsletter" in lines


def test_explanation_without_rules():
    routing = RuleSet((), ENVIRONMENT).evaluate(parse_message(MAIL), received_at=EVENING)

    lines = format_explanation(routing, "pl").splitlines()

    assert lines[2] == "Nie zdefiniowano żadnych reguł przydziału."


def test_explain_messages_heading_and_body(ruleset, rules_path):
    text = explain_messages([("zgloszenie.eml", MAIL)], ruleset, "pl", received_at=EVENING)

    lines = text.splitlines()

    assert lines[:5] == [
        "Wiadomość: zgloszenie.eml",
        "Od: prezes@zarzad.example.com",
        "Temat: DRUKARKA w sekretariacie nie drukuje",
        "Odebrano: 2026-12-03 21:47 CET",
        "",
    ]
    assert "\n".join(lines[5:]) == POLISH.replace("RULES", rules_path)


def test_explain_messages_uses_date_header_by_default(ruleset):
    text = explain_messages([("a.eml", MAIL)], ruleset, "en")

    assert "Received: 2026-12-03 21:47 CET" in text.splitlines()
    assert "  received outside business hours: yes" in text.splitlines()


@pytest.mark.parametrize(("date", "local"), [
    (b"Thu, 03 Dec 2026 20:47:05 +0000", "2026-12-03 21:47 CET"),
    (b"Fri, 26 Jun 2026 06:00:00 -0400", "2026-06-26 12:00 CEST"),
])
def test_explain_messages_gives_receipt_in_the_desk_zone(ruleset, date, local):
    # Business hours are judged in the desk's zone, so the time is shown there too.
    mail = MAIL.replace(b"Thu, 03 Dec 2026 21:47:05 +0100", date)

    text = explain_messages([("a.eml", mail)], ruleset, "en")

    assert f"Received: {local}" in text.splitlines()


def test_explain_messages_reports_unreadable_mail(ruleset):
    text = explain_messages([("pusty.eml", b"  \r\n")], ruleset, "en")

    assert text.splitlines() == [
        "Mail: pusty.eml",
        "The mail could not be parsed: empty message",
    ]
