"""``maildesk rules check`` and ``maildesk rules test`` through click's CliRunner."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from maildesk.cli_rules import rules
from maildesk.i18n import current_language, set_language
from maildesk.rules import RuleEnvironment

WARSAW = ZoneInfo("Europe/Warsaw")
REPOSITORY = Path(__file__).resolve().parent.parent
EXAMPLE_RULES = REPOSITORY / "rules"
MAILS = Path(__file__).resolve().parent / "data" / "rules"


def working_hours(moment: datetime) -> bool:
    local = moment.astimezone(WARSAW)
    return local.weekday() < 5 and 8 <= local.hour < 16


ENVIRONMENT = RuleEnvironment(
    groups=frozenset({"first-line", "network", "accounts"}),
    templates=frozenset({"acknowledgement"}),
    vip=("@zarzad.example.com",),
    is_business_hours=working_hours,
    timezone="Europe/Warsaw",
)


@dataclass
class StandInApplication:
    """The two methods the main CLI's application object provides to the rules commands."""

    directory: Path
    environment: RuleEnvironment = ENVIRONMENT

    def rules_directory(self) -> Path:
        return self.directory

    def rule_environment(self) -> RuleEnvironment:
        return self.environment


@pytest.fixture(autouse=True)
def english():
    previous = current_language()
    set_language("en")
    yield
    set_language(previous)


def invoke(directory: Path, *arguments: str):
    return CliRunner().invoke(rules, list(arguments), obj=StandInApplication(directory))


def test_cli_check_valid_rules():
    result = invoke(EXAMPLE_RULES, "check")

    assert result.exit_code == 0
    assert result.stdout == f"The rules are valid: 9 rules in {EXAMPLE_RULES}.\n"


def test_cli_check_lists_every_error(tmp_path):
    (tmp_path / "10-a.yaml").write_text("- name: vpn\n  when: {subjet: vpn}\n  then: {group: x}\n")
    (tmp_path / "20-b.yaml").write_text("- name: b\n  then: {impact: hihg}\n")

    result = invoke(tmp_path, "check")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{tmp_path / '10-a.yaml'}:2:10: unknown condition 'subjet': did you mean 'subject'?",
        f"{tmp_path / '10-a.yaml'}:3:17: unknown group 'x': write one of: accounts, first-line, "
        "network",
        f"{tmp_path / '20-b.yaml'}:2:18: invalid value 'hihg' for 'impact': did you mean 'high'?",
        "3 errors in the routing rules; a running daemon keeps the rules it loaded last.",
    ]


def test_cli_check_missing_directory_fails(tmp_path):
    # A typo in 'rules:' used to pass the check, and new tickets then reached no group.
    missing = tmp_path / "rulez"

    result = invoke(missing, "check")

    assert result.exit_code == 1
    assert result.stderr == (f"the rules folder {missing} does not exist: check 'rules' in "
                             "maildesk.yaml; until it exists, no rule routes any mail\n")


def test_daemon_warns_of_missing_rules_directory(tmp_path, caplog):
    from maildesk.rules.loader import RulesWatcher

    with caplog.at_level(logging.WARNING, logger="maildesk.rules.loader"):
        RulesWatcher(tmp_path / "rulez", RuleEnvironment())

    assert f"the rules folder {tmp_path / 'rulez'} does not exist" in caplog.text


def test_cli_check_empty_directory(tmp_path):
    result = invoke(tmp_path, "check")

    assert result.exit_code == 0
    assert result.stdout == f"No rule files in {tmp_path}: the rules route no mail.\n"


def test_cli_check_in_polish(tmp_path):
    (tmp_path / "10-a.yaml").write_text("- {name: a, then: {group: network}}\n")
    set_language("pl")

    result = invoke(tmp_path, "check")

    assert result.exit_code == 0
    assert result.stdout == f"Reguły są poprawne: 1 reguła w {tmp_path}.\n"


def test_cli_test_explains_mail():
    mail = MAILS / "zabbix-problem.eml"

    result = invoke(EXAMPLE_RULES, "test", str(mail))
    lines = result.stdout.splitlines()

    assert result.exit_code == 0
    assert lines[:4] == [
        f"Mail: {mail}",
        "From: zabbix@monitoring.example.com",
        "Subject: PROBLEM: Switch sw-core-01 is unreachable",
        "Received: 2026-12-04 02:31 CET",
    ]
    assert f"Rule 'siec-alarm-zabbix' ({EXAMPLE_RULES / '20-network.yaml'}:19): matched" in lines
    assert "  group: network" in lines
    assert "  automatic replies: no" in lines


def test_cli_test_several_mails_in_polish():
    mails = [MAILS / "newsletter-bulk.eml", MAILS / "en-new-employee-cc.eml"]

    result = invoke(EXAMPLE_RULES, "test", "--language", "pl", *map(str, mails))
    lines = result.stdout.splitlines()

    assert result.exit_code == 0
    assert lines.count(f"Wiadomość: {mails[0]}") == 1
    assert lines.count(f"Wiadomość: {mails[1]}") == 1
    assert "  zignoruj wiadomość: tak, powód: newsletter" in lines
    assert "  grupa: accounts" in lines
    assert "  typ: wniosek o usługę" in lines


def test_cli_test_received_at_changes_business_hours():
    mail = str(MAILS / "pl-vip-vpn-wieczorem.eml")

    evening = invoke(EXAMPLE_RULES, "test", mail)
    morning = invoke(EXAMPLE_RULES, "test", "--received-at", "2026-12-04T10:00+01:00", mail)

    assert "  tags: vip, dyzur" in evening.stdout.splitlines()
    assert "  tags: vip" in morning.stdout.splitlines()
    assert "Received: 2026-12-04 10:00 CET" in morning.stdout.splitlines()


def test_rules_test_naive_time_in_desk_zone():
    mail = str(MAILS / "pl-vip-vpn-wieczorem.eml")

    # 15:30 in Warsaw is inside the 08:00-16:00 business hours, 15:30 UTC is not.
    result = invoke(EXAMPLE_RULES, "test", "--received-at", "2026-12-04T15:30", mail)

    assert "Received: 2026-12-04 15:30 CET" in result.stdout.splitlines()
    assert "  tags: vip" in result.stdout.splitlines()


def test_cli_test_followup():
    mail = str(MAILS / "pl-drukarka-iso-8859-2.eml")

    result = invoke(EXAMPLE_RULES, "test", "--followup", mail)
    lines = result.stdout.splitlines()

    assert "The mail is a follow-up: only rules with 'on_followup: true' run." in lines
    assert "  group: (not set)" in lines


def test_cli_test_rejects_invalid_date():
    result = invoke(EXAMPLE_RULES, "test", "--received-at", "jutro", str(MAILS / "zabbix-ok.eml"))

    assert result.exit_code == 2
    assert "'jutro' is not a date and time: write e.g. 2026-12-04T18:30+01:00" in result.stderr


def test_cli_test_with_invalid_rules(tmp_path):
    (tmp_path / "10-a.yaml").write_text("- {name: a, then: {group: x}}\n")

    result = invoke(tmp_path, "test", str(MAILS / "zabbix-ok.eml"))

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        "1 error in the routing rules; a running daemon keeps the rules it loaded last.")


def test_cli_test_unreadable_mail_exits_with_one(tmp_path):
    empty = tmp_path / "pusty.eml"
    empty.write_bytes(b"")

    result = invoke(EXAMPLE_RULES, "test", str(empty), str(MAILS / "zabbix-ok.eml"))

    assert result.exit_code == 1
    assert "The mail could not be parsed: empty message" in result.stdout.splitlines()
    assert "  ignore: yes, reason: monitoring-resolved" in result.stdout.splitlines()
