"""Live reload of the rules: the last valid set stays in use while a file is broken."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from maildesk.i18n import current_language, set_language
from maildesk.rules import RuleEnvironment, RulesError, RulesWatcher

ENVIRONMENT = RuleEnvironment(groups=frozenset({"first-line", "network"}))

VPN_RULE = "- name: vpn\n  when: {subject: vpn}\n  then: {group: network}\n"
BROKEN_RULE = "- name: vpn\n  when: {subject: vpn}\n  then: {group: netwrok}\n"


@pytest.fixture(autouse=True)
def english():
    previous = current_language()
    set_language("en")
    yield
    set_language(previous)


def names(watcher: RulesWatcher) -> list[str]:
    return [rule.name for rule in watcher.current.rules]


def test_watcher_no_change_returns_none(tmp_path):
    (tmp_path / "10-vpn.yaml").write_text(VPN_RULE)
    watcher = RulesWatcher(tmp_path, ENVIRONMENT)

    result = watcher.check_for_changes()

    assert result is None
    assert names(watcher) == ["vpn"]


def test_watcher_keeps_last_good_rules_on_broken_file(tmp_path, caplog):
    rules_file = tmp_path / "10-vpn.yaml"
    rules_file.write_text(VPN_RULE)
    watcher = RulesWatcher(tmp_path, ENVIRONMENT)
    good = watcher.current

    rules_file.write_text(BROKEN_RULE)
    caplog.clear()  # the constructor's INFO line, captured when an earlier test set INFO
    with caplog.at_level(logging.WARNING, logger="maildesk.rules.loader"):
        errors = watcher.check_for_changes()

    assert errors is not None
    assert [str(error) for error in errors] == [
        f"{rules_file}:3:17: unknown group 'netwrok': did you mean 'network'?"
    ]
    assert watcher.current is good
    assert watcher.errors == errors
    assert [record.levelno for record in caplog.records] == [logging.WARNING]
    assert f"{rules_file}:3:17" in caplog.records[0].getMessage()


def test_watcher_reports_a_broken_file_once(tmp_path):
    rules_file = tmp_path / "10-vpn.yaml"
    rules_file.write_text(VPN_RULE)
    watcher = RulesWatcher(tmp_path, ENVIRONMENT)
    rules_file.write_text(BROKEN_RULE)

    first = watcher.check_for_changes()
    second = watcher.check_for_changes()

    assert first is not None
    assert second is None
    assert len(watcher.errors) == 1


def test_watcher_picks_up_fixed_file(tmp_path):
    rules_file = tmp_path / "10-vpn.yaml"
    rules_file.write_text(VPN_RULE)
    watcher = RulesWatcher(tmp_path, ENVIRONMENT)
    rules_file.write_text(BROKEN_RULE)
    watcher.check_for_changes()

    rules_file.write_text(VPN_RULE.replace("vpn", "vpn-wifi", 1))
    result = watcher.check_for_changes()

    assert result is None
    assert names(watcher) == ["vpn-wifi"]
    assert watcher.errors == []


def test_watcher_sees_same_size_edit(tmp_path):
    rules_file = tmp_path / "10-vpn.yaml"
    rules_file.write_text(VPN_RULE)
    watcher = RulesWatcher(tmp_path, ENVIRONMENT)

    rules_file.write_text(VPN_RULE.replace("name: vpn", "name: wpn"))
    watcher.check_for_changes()

    assert names(watcher) == ["wpn"]


def test_watcher_sees_added_and_removed_files(tmp_path):
    (tmp_path / "10-vpn.yaml").write_text(VPN_RULE)
    watcher = RulesWatcher(tmp_path, ENVIRONMENT)

    (tmp_path / "99-default.yaml").write_text("- {name: default, then: {group: first-line}}\n")
    watcher.check_for_changes()
    after_add = names(watcher)
    (tmp_path / "10-vpn.yaml").unlink()
    watcher.check_for_changes()
    after_remove = names(watcher)

    assert after_add == ["vpn", "default"]
    assert after_remove == ["default"]


def test_watcher_missing_directory_then_created(tmp_path):
    directory = tmp_path / "rules"
    watcher = RulesWatcher(directory, ENVIRONMENT)
    empty = names(watcher)

    directory.mkdir()
    (directory / "10-vpn.yaml").write_text(VPN_RULE)
    result = watcher.check_for_changes()

    assert empty == []
    assert result is None
    assert names(watcher) == ["vpn"]


def test_watcher_rejects_invalid_rules_at_start(tmp_path):
    (tmp_path / "10-vpn.yaml").write_text(BROKEN_RULE)

    with pytest.raises(RulesError) as raised:
        RulesWatcher(tmp_path, ENVIRONMENT)

    assert len(raised.value.errors) == 1


def test_watcher_reload_with_new_environment(tmp_path):
    (tmp_path / "10-vpn.yaml").write_text(VPN_RULE)
    watcher = RulesWatcher(tmp_path, ENVIRONMENT)
    good = watcher.current

    errors = watcher.reload(RuleEnvironment(groups=frozenset({"first-line"})))

    assert errors is not None
    assert errors[0].message == "unknown group 'network': write one of: first-line"
    assert watcher.current is good


def test_watcher_logs_reload_at_info(tmp_path, caplog):
    (tmp_path / "10-vpn.yaml").write_text(VPN_RULE)
    watcher = RulesWatcher(tmp_path, ENVIRONMENT)
    (tmp_path / "20-more.yaml").write_text("- {name: more, then: {tags: [x]}}\n")
    caplog.clear()

    with caplog.at_level(logging.INFO, logger="maildesk.rules.loader"):
        watcher.check_for_changes()

    assert caplog.messages == [f"reloaded 2 routing rules from {Path(tmp_path)}"]


def test_watcher_keeps_rules_on_impossible_date(tmp_path):
    rules_file = tmp_path / "10-vpn.yaml"
    rules_file.write_text(VPN_RULE)
    watcher = RulesWatcher(tmp_path, ENVIRONMENT)
    good = watcher.current

    rules_file.write_text("- name: vpn\n  when: {subject: 2026-02-30}\n  then: {group: network}\n")
    errors = watcher.check_for_changes()

    assert errors is not None
    assert [str(error) for error in errors] == [
        f"{rules_file}:2:19: invalid date '2026-02-30': day is out of range for month; "
        "correct it, or put the value in quotes to mean it as text"
    ]
    assert watcher.current is good


PRINTER_RULE = "- name: printer\n  when: {subject: drukark}\n  then: {group: first-line}\n"


def test_watcher_waits_for_files_to_settle(tmp_path):
    import os
    import time

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "10-vpn.yaml").write_text(VPN_RULE)
    watcher = RulesWatcher(rules, ENVIRONMENT, settle=60)

    # Half of an edit: valid on its own, but written a moment ago.
    (rules / "20-printer.yaml").write_text(PRINTER_RULE)
    during_edit = watcher.check_for_changes()
    names_during_edit = names(watcher)
    past = time.time() - 120
    for path in (rules, *rules.iterdir()):
        os.utime(path, (past, past))
    settled = watcher.check_for_changes()

    assert during_edit is None
    assert names_during_edit == ["vpn"]
    assert settled is None
    assert names(watcher) == ["vpn", "printer"]


def test_watcher_takes_future_dated_change(tmp_path, monkeypatch):
    import os
    import time

    from maildesk import settling

    clock = [1000.0]
    monkeypatch.setattr(settling.time, "monotonic", lambda: clock[0])
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "10-vpn.yaml").write_text(VPN_RULE)
    watcher = RulesWatcher(rules, ENVIRONMENT, settle=60)
    # Edited, then the system clock went back an hour.
    (rules / "20-printer.yaml").write_text(PRINTER_RULE)
    future = time.time() + 3600
    for path in (rules, *rules.iterdir()):
        os.utime(path, (future, future))

    first_sight = watcher.check_for_changes()
    names_at_first_sight = names(watcher)
    clock[0] += 61
    settled = watcher.check_for_changes()

    assert first_sight is None
    assert names_at_first_sight == ["vpn"]
    assert settled is None
    assert names(watcher) == ["vpn", "printer"]


def test_watcher_keeps_rules_when_directory_vanishes(tmp_path):
    import shutil

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "10-vpn.yaml").write_text(VPN_RULE)
    watcher = RulesWatcher(rules, ENVIRONMENT)
    good = watcher.current

    shutil.rmtree(rules)
    errors = watcher.check_for_changes()
    again = watcher.check_for_changes()
    rules.mkdir()
    (rules / "10-vpn.yaml").write_text(VPN_RULE)
    back = watcher.check_for_changes()

    assert errors is not None
    assert [str(error) for error in errors] == [
        f"{rules}: the rules directory no longer exists: still using the previous rules"]
    assert watcher.current is not good or back is None
    assert again is None
    assert back is None
    assert names(watcher) == ["vpn"]
