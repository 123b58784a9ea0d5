"""The calendar, priority and sla sections: typed values, defaults, file:line errors."""

from __future__ import annotations

from datetime import date, time, timedelta
from pathlib import Path

import pytest
import yaml

from maildesk.business_calendar import WorkingInterval
from maildesk.config import load_config
from maildesk.errors import ConfigError
from maildesk.i18n import current_language, set_language
from maildesk.sla import SlaTarget
from maildesk.slaconfig import (
    DEFAULT_THANKS_PHRASES,
    load_service_levels,
    parse_duration,
)

BASE = """\
desk:
  address: helpdesk@example.com
database: "sqlite:///:memory:"
groups:
  - name: pierwsza-linia
    escalates_to: druga-linia
  - name: druga-linia
    tier: 2
"""

FULL = BASE + """\
calendar:
  timezone: Europe/Warsaw
  holidays: PL
  hours:
    monday: "08:00-16:00"
    tue: "08:00-12:00, 13:00-17:00"
    wednesday: "08:00-16:00"
    thursday: "08:00-16:00"
    friday: "08:00-14:00"
    saturday: closed
  closed_days: [2026-12-24, 2026-12-31]
  working_days: [2026-11-14]
priority:
  matrix:
    high: {high: 1, medium: 1, low: 2}
    medium: {high: 2, medium: 3, low: 3}
    low: {high: 3, medium: 4, low: 4}
sla:
  warning_share: 0.8
  policies:
    - {priority: 1, first_response: 15m, resolution: 2h, hours: 24x7}
    - {priority: 2, first_response: 1h, resolution: 6h}
    - {priority: 3, first_response: 4h, resolution: 16h}
    - {priority: 4, first_response: 8h, resolution: 40h}
    - {priority: 2, group: druga-linia, type: incident, first_response: 30m,
       resolution: 4h, warning_share: 0.5}
  escalation:
    manager_on: warning
    next_tier_on: [first_response, resolution]
  pending:
    reminder_interval: 1d
    max_reminders: 2
    resolve_unanswered: true
  auto_close_after: 3d
  thanks_phrases: [dzięki, thanks]
  notify_requester: [resolved, closed]
  categories:
    incident: [sprzęt, sieć]
  check_interval: 30s
"""


@pytest.fixture(autouse=True)
def english_messages():
    previous = current_language()
    set_language("en")
    yield
    set_language(previous)


def levels_from(tmp_path: Path, text: str):
    path = tmp_path / "maildesk.yaml"
    path.write_text(text, encoding="utf-8")
    return load_service_levels(load_config(path))


def error_from(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as raised:
        levels_from(tmp_path, text)
    return raised.value


def test_slaconfig_defaults_without_sections(tmp_path: Path) -> None:
    levels = levels_from(tmp_path, BASE)

    assert levels.calendar.timezone == "Europe/Warsaw"
    assert levels.calendar.holiday_country == "PL"
    assert levels.matrix.priority("high", "high") == 1
    assert levels.policy_for(1, None, None).calendar.always_open
    assert levels.warning_share == 0.75
    assert levels.auto_close_after == timedelta(days=5)
    assert levels.thanks_phrases == DEFAULT_THANKS_PHRASES
    assert levels.escalation.manager_on == "breach"
    assert levels.escalation.next_tier_on == frozenset({SlaTarget.RESOLUTION})


def test_slaconfig_reads_every_setting(tmp_path: Path) -> None:
    levels = levels_from(tmp_path, FULL)

    assert levels.calendar.weekly_hours[1] == (
        WorkingInterval(time(8), time(12)), WorkingInterval(time(13), time(17)))
    assert levels.calendar.weekly_hours[5] == ()
    assert levels.calendar.closed_days == frozenset({date(2026, 12, 24), date(2026, 12, 31)})
    assert levels.calendar.working_days == frozenset({date(2026, 11, 14)})
    assert levels.matrix.priority("high", "medium") == 1
    assert levels.policy_for(2, None, None).resolution == timedelta(hours=6)
    assert levels.policy_for(2, None, None).warning_share == 0.8
    special = levels.policy_for(2, "druga-linia", "incident")
    assert special.first_response == timedelta(minutes=30)
    assert special.warning_share == 0.5
    assert levels.policy_for(2, "druga-linia", "service_request").resolution == timedelta(hours=6)
    assert levels.escalation.manager_on == "warning"
    assert levels.escalation.next_tier_on == frozenset(SlaTarget)
    assert levels.pending.reminder_interval == timedelta(days=1)
    assert levels.pending.max_reminders == 2
    assert levels.pending.resolve_unanswered is True
    assert levels.auto_close_after == timedelta(days=3)
    assert levels.thanks_phrases == ("dzięki", "thanks")
    assert levels.notify_requester == frozenset({"resolved", "closed"})
    assert levels.categories["incident"] == ("sprzęt", "sieć")
    assert levels.check_interval == timedelta(seconds=30)


@pytest.mark.parametrize(
    ("text", "duration"),
    [("30m", timedelta(minutes=30)), ("4h", timedelta(hours=4)),
     ("1h30m", timedelta(hours=1, minutes=30)), ("2d", timedelta(days=2)),
     ("1w", timedelta(weeks=1)), ("90 min", timedelta(minutes=90))],
)
def test_parse_duration_accepts(text: str, duration: timedelta) -> None:
    assert parse_duration(text) == duration


@pytest.mark.parametrize("text", ["", "4", "4 hours", "h", "0m", "-1h", "4h tomorrow"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_parse_duration_business_rejects_days() -> None:
    with pytest.raises(ValueError) as raised:
        parse_duration("1d", business=True)

    assert "a working day has no fixed length" in str(raised.value)


@pytest.mark.parametrize(("text", "business", "example"), [
    ("-30m", True, "8h lub 1h30m"),
    ("1d", True, "8h lub 1h30m"),
    ("4 hours", False, "30m, 4h lub 2d"),
])
def test_parse_duration_example_in_polish(text: str, business: bool, example: str) -> None:
    set_language("pl")

    with pytest.raises(ValueError) as raised:
        parse_duration(text, business=business)

    assert example in str(raised.value)
    assert " or " not in str(raised.value)


def test_slaconfig_bad_policy_duration_names_line(tmp_path: Path) -> None:
    error = error_from(tmp_path, BASE + """\
sla:
  policies:
    - {priority: 1, first_response: 15m, resolution: 2h}
    - {priority: 2, first_response: 1d, resolution: 6h}
""")

    assert error.location is not None
    assert error.location.endswith(":12:37")
    assert "give it in hours and minutes" in error.message


def test_slaconfig_missing_priority_policy(tmp_path: Path) -> None:
    error = error_from(tmp_path, BASE + """\
sla:
  policies:
    - {priority: 1, first_response: 15m, resolution: 2h}
""")

    assert "missing SLA policy for priority 2 without group or type" in error.message
    assert error.location is not None
    assert error.location.endswith(":11:5")


def test_slaconfig_unknown_group_in_policy(tmp_path: Path) -> None:
    error = error_from(tmp_path, BASE + """\
sla:
  policies:
    - {priority: 1, first_response: 15m, resolution: 2h, group: trzecia-linia}
""")

    assert "unknown group 'trzecia-linia'" in error.message


def test_slaconfig_first_response_longer_than_resolution(tmp_path: Path) -> None:
    error = error_from(tmp_path, BASE + """\
sla:
  policies:
    - {priority: 1, first_response: 5h30m, resolution: 2h}
""")

    # The targets read as the admin wrote them, not as Python's "5:30:00".
    assert ("the first response target 5h30m of SLA policy P1 is longer than its "
            "resolution target 2h") in error.message


def test_slaconfig_unknown_weekday(tmp_path: Path) -> None:
    error = error_from(tmp_path, BASE + """\
calendar:
  hours:
    poniedziałek: "08:00-16:00"
""")

    assert "unknown weekday 'poniedziałek'" in error.message
    assert error.location is not None
    assert error.location.endswith(":11:5")


def test_slaconfig_bad_working_hours(tmp_path: Path) -> None:
    error = error_from(tmp_path, BASE + """\
calendar:
  hours:
    monday: "8-16"
""")

    assert "invalid working hours '8-16'" in error.message
    assert error.location is not None
    assert error.location.endswith(":11:13")


def test_slaconfig_bad_matrix(tmp_path: Path) -> None:
    error = error_from(tmp_path, BASE + """\
priority:
  matrix:
    high: {high: 1, medium: 2}
    medium: {high: 2, medium: 3, low: 4}
    low: {high: 3, medium: 4, low: 5}
""")

    assert "missing priority for impact=high, urgency=low" in error.message
    assert "invalid priority 5 for impact=low, urgency=low" in error.message


def test_slaconfig_unknown_key_suggests(tmp_path: Path) -> None:
    error = error_from(tmp_path, BASE + """\
sla:
  auto_close_afer: 3d
""")

    assert "did you mean 'auto_close_after'?" in error.message


def test_slaconfig_bad_warning_share(tmp_path: Path) -> None:
    error = error_from(tmp_path, BASE + "sla:\n  warning_share: 75\n")

    assert "invalid warning share 75" in error.message


def test_slaconfig_unknown_time_zone(tmp_path: Path) -> None:
    error = error_from(tmp_path, BASE + "calendar:\n  timezone: Europe/Warszawa\n")

    assert "unknown time zone 'Europe/Warszawa'" in error.message


def test_slaconfig_unknown_time_zone_names_its_line(tmp_path: Path) -> None:
    error = error_from(tmp_path, BASE + "calendar:\n  holidays: PL\n  timezone: Mars/Olympus\n")

    assert "unknown time zone 'Mars/Olympus'" in error.message
    assert error.location is not None
    assert error.location.endswith(":11:13")


def test_slaconfig_unknown_desk_time_zone_names_desk_line(tmp_path: Path) -> None:
    # The calendar takes desk.timezone when it has none, so the error must point there
    # and not at the calendar section, which does not mention a time zone.
    text = BASE.replace("desk:\n", "desk:\n  timezone: Europe/Warszawa\n")
    error = error_from(tmp_path, text + "calendar:\n  holidays: PL\n")

    assert "unknown time zone 'Europe/Warszawa'" in error.message
    assert error.location is not None
    assert error.location.endswith(":2:13")


def test_slaconfig_unknown_desk_time_zone_without_calendar(tmp_path: Path) -> None:
    text = BASE.replace("desk:\n", "desk:\n  timezone: Europe/Warszawa\n")
    error = error_from(tmp_path, text)

    assert error.location is not None
    assert error.location.endswith(":2:13")


def test_slaconfig_never_disables_auto_close(tmp_path: Path) -> None:
    levels = levels_from(tmp_path, BASE + "sla:\n  auto_close_after: never\n")

    assert levels.auto_close_after is None


def test_slaconfig_shipped_starters_are_valid(tmp_path: Path) -> None:
    from maildesk.resources import PACKAGE_DIR

    for path in sorted((PACKAGE_DIR / "data").glob("**/*.yaml")):
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(config, dict) or "desk" not in config:
            continue
        config["database"] = "sqlite:///:memory:"
        config.pop("source", None)
        copy = tmp_path / path.name
        copy.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")

        assert load_service_levels(load_config(copy)) is not None, path


@pytest.mark.parametrize("model", ["call-centre", "unskilled", "skilled", "expert"])
@pytest.mark.parametrize("language", ["pl", "en"])
def test_init_model_writes_working_desk(tmp_path: Path, model: str, language: str) -> None:
    from click.testing import CliRunner

    from maildesk.cli import main
    from maildesk.desk import Desk
    from maildesk.wiring import check_templates, load_rules

    target = tmp_path / "desk"
    result = CliRunner().invoke(main, ["init", str(target), "--model", model,
                                       "--language", language])
    assert result.exit_code == 0, result.output

    path = target / "maildesk.yaml"
    assert f"language: {language}" in path.read_text(encoding="utf-8")
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["database"] = f"sqlite:///{tmp_path / 'desk.db'}"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    desk = Desk.open(path)

    levels = load_service_levels(desk.config)
    assert levels.policy_for(1, None, None).calendar.always_open
    assert load_rules(desk) is not None
    check_templates(desk)
