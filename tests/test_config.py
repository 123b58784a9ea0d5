"""Loading and validating maildesk.yaml: typed values, positions and fixes in errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from servers import make_self_signed_certificate

from maildesk.config import Config, ImapConfig, MaildirConfig, load_config, read_once_per_config
from maildesk.errors import ConfigError, ConfigErrors
from maildesk.i18n import set_language

MINIMAL = """\
desk:
  address: helpdesk@example.com
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "maildesk.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def english_messages():
    set_language("en")
    yield
    set_language("pl")


def _error(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text))
    return caught.value


def test_config_minimal_uses_defaults(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL))

    assert config.language == "pl"
    assert config.desk.ticket_tag == "[SD#{number}]"
    assert config.desk.message_id_domain == "example.com"
    assert config.database_url == f"sqlite:///{tmp_path / 'data' / 'maildesk.db'}"
    assert config.storage_path == tmp_path / "data"
    assert config.smtp.transport == "smtp"
    assert config.source is None


def test_config_parse_ahead_is_on_unless_turned_off(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, MINIMAL)).parse_ahead is True
    assert load_config(_write(tmp_path, MINIMAL + "parse_ahead: false\n")).parse_ahead is False

    error = _error(tmp_path, MINIMAL + "parse_ahead: maybe\n")

    assert error.location == f"{tmp_path / 'maildesk.yaml'}:3:14"
    assert "'parse_ahead' must be true or false, not 'maybe'" in error.message


def test_config_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    error = _error(tmp_path, "desk:\n  address: helpdesk@example.com\n  ticket_tga: x\n")

    assert error.location == f"{tmp_path / 'maildesk.yaml'}:3:3"
    assert "unknown key 'ticket_tga' in 'desk'" in error.message
    assert "did you mean 'ticket_tag'?" in error.message


def test_config_unknown_top_key_names_the_file(tmp_path: Path) -> None:
    # The top level of the file is no section: Polish read "w sekcji 'maildesk.yaml'".
    path = tmp_path / "desk.yaml"
    path.write_text(MINIMAL + "xsource: {}\n", encoding="utf-8")

    with pytest.raises(ConfigError) as english:
        load_config(path)
    set_language("pl")
    with pytest.raises(ConfigError) as polish:
        load_config(path)

    assert ("unknown key 'xsource' at the top level of desk.yaml: did you mean 'source'?"
            in english.value.message)
    assert ("nieznany klucz 'xsource' na najwyższym poziomie pliku desk.yaml: czy chodziło "
            "o 'source'?" in polish.value.message)


def test_config_wrong_type_names_value_and_line(tmp_path: Path) -> None:
    error = _error(tmp_path, MINIMAL + "smtp:\n  port: dwadzieścia pięć\n")

    assert error.location == f"{tmp_path / 'maildesk.yaml'}:4:9"
    assert "'port' must be a whole number" in error.message
    assert "dwadzieścia pięć" in error.message


def test_config_missing_required_address(tmp_path: Path) -> None:
    error = _error(tmp_path, "desk:\n  name: Helpdesk\n")

    assert "missing required key 'address' in 'desk'" in error.message
    assert error.location == f"{tmp_path / 'maildesk.yaml'}:2:3"


def test_config_invalid_address(tmp_path: Path) -> None:
    error = _error(tmp_path, "desk:\n  address: helpdesk\n")

    assert "'helpdesk' is not an email address" in error.message


def test_config_plain_password_is_rejected(tmp_path: Path) -> None:
    error = _error(tmp_path, MINIMAL + "smtp:\n  password: tajne\n")

    assert "password_env" in error.message
    assert "password_file" in error.message
    assert error.location == f"{tmp_path / 'maildesk.yaml'}:4:13"


def test_config_imap_secret_from_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DESK_PASS", "s3cret")
    config = load_config(
        _write(
            tmp_path,
            MINIMAL
            + (
                "source:\n  type: imap\n  host: imap.example.com\n  username: hd\n"
                "  password_env: DESK_PASS\n  security: starttls\n"
            ),
        )
    )

    assert isinstance(config.source, ImapConfig)
    assert config.source.port == 143
    assert config.source.password.reveal() == "s3cret"


def test_config_secret_from_file(tmp_path: Path) -> None:
    (tmp_path / "imap-password").write_text("z-pliku\n", encoding="utf-8")
    config = load_config(
        _write(
            tmp_path,
            MINIMAL
            + (
                "source:\n  host: imap.example.com\n  username: hd\n"
                "  password_file: imap-password\n"
            ),
        )
    )

    assert isinstance(config.source, ImapConfig)
    assert config.source.password.reveal() == "z-pliku"


def test_config_missing_environment_variable_is_explained(tmp_path: Path) -> None:
    config = load_config(
        _write(
            tmp_path,
            MINIMAL
            + ("source:\n  host: imap.example.com\n  username: hd\n  password_env: NOT_SET_X\n"),
        )
    )

    assert isinstance(config.source, ImapConfig)
    with pytest.raises(ConfigError, match="NOT_SET_X is not set"):
        config.source.password.reveal()


def test_config_imap_without_any_secret_fails(tmp_path: Path) -> None:
    error = _error(tmp_path, MINIMAL + "source:\n  host: imap.example.com\n  username: hd\n")

    assert "password_env, password_file or oauth2_token_command" in error.message


def test_config_maildir_path_is_relative_to_file(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL + "source:\n  type: maildir\n  path: mail\n"))

    assert config.source == MaildirConfig(path=tmp_path / "mail")


def test_config_escalation_to_unknown_group(tmp_path: Path) -> None:
    error = _error(
        tmp_path,
        MINIMAL
        + ("groups:\n  - name: first-line\n    escalates_to: secnd-line\n  - name: second-line\n"),
    )

    assert "escalates to unknown group 'secnd-line'" in error.message
    assert error.location == f"{tmp_path / 'maildesk.yaml'}:5:19"


def test_config_agent_in_unknown_group(tmp_path: Path) -> None:
    error = _error(
        tmp_path,
        MINIMAL
        + ("agents:\n  - login: jan\n    addresses: [jan@example.com]\n    groups: [siec]\n"),
    )

    assert "unknown group 'siec'" in error.message


def test_config_yaml_syntax_error_has_position(tmp_path: Path) -> None:
    error = _error(tmp_path, "desk:\n  address: [helpdesk@example.com\n")

    assert error.location is not None
    assert error.location.startswith(f"{tmp_path / 'maildesk.yaml'}:")
    assert "invalid YAML" in error.message


def test_config_tab_indent_explained(tmp_path: Path) -> None:
    error = _error(tmp_path, "desk:\n\taddress: helpdesk@example.com\n")

    assert error.location == f"{tmp_path / 'maildesk.yaml'}:2:1"
    assert "a tab character; YAML indents with spaces only" in error.message


def test_config_not_utf8_names_position(tmp_path: Path) -> None:
    path = tmp_path / "maildesk.yaml"
    path.write_bytes("desk:\n  name: Dział IT\n".encode("windows-1250"))

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert caught.value.location == f"{path}:2:13"
    assert "not valid UTF-8" in caught.value.message


def test_config_ticket_tag_needs_number(tmp_path: Path) -> None:
    error = _error(tmp_path, MINIMAL + '  ticket_tag: "[SD]"\n')

    assert "{number}" in error.message


def test_config_error_in_polish(tmp_path: Path) -> None:
    set_language("pl")

    error = _error(tmp_path, "desk:\n  address: helpdesk@example.com\n  ticket_tga: x\n")

    assert "nieznany klucz 'ticket_tga' w sekcji 'desk'" in error.message
    assert "czy chodziło o 'ticket_tag'?" in error.message


def test_config_starter_files_load(tmp_path: Path) -> None:
    from maildesk.resources import PACKAGE_DIR

    for language in ("pl", "en"):
        config = load_config(PACKAGE_DIR / "data" / f"maildesk.{language}.yaml")
        assert config.language == language
        assert [group.name for group in config.groups][:2] == ["first-line", "second-line"]


def test_config_starter_commented_examples_load(tmp_path: Path) -> None:
    import re
    from datetime import time

    from maildesk.dailysummary import summary_settings_of
    from maildesk.resources import PACKAGE_DIR

    for language in ("pl", "en"):
        text = (PACKAGE_DIR / "data" / f"maildesk.{language}.yaml").read_text(encoding="utf-8")
        text = re.sub(r"^# (calendar:|sla:|daily_summary:)", r"\1", text, flags=re.M)
        text = re.sub(r"^#(   .*)$", r"\1", text, flags=re.M)
        config = load_config(_write(tmp_path, text))
        assert config.raw is not None
        assert "calendar" in config.raw
        assert "sla" in config.raw
        assert summary_settings_of(config).at == time(8)


def test_config_starter_calendar_keeps_weekdays_open(tmp_path: Path) -> None:
    # A weekday left out of calendar.hours is closed. An admin who uncomments the
    # starter's example to shorten Friday must not close Tuesday to Thursday with it.
    import re

    from maildesk.resources import PACKAGE_DIR
    from maildesk.slaconfig import load_service_levels

    for language in ("pl", "en"):
        text = (PACKAGE_DIR / "data" / f"maildesk.{language}.yaml").read_text(encoding="utf-8")
        text = re.sub(r"^# (calendar:|sla:|daily_summary:)", r"\1", text, flags=re.M)
        text = re.sub(r"^#(   .*)$", r"\1", text, flags=re.M)
        levels = load_service_levels(load_config(_write(tmp_path, text)))

        open_days = [day for day, hours in enumerate(levels.calendar.weekly_hours) if hours]
        assert open_days == [0, 1, 2, 3, 4], language


def test_config_port_above_65535_is_rejected(tmp_path: Path) -> None:
    error = _error(tmp_path, MINIMAL + "smtp:\n  port: 99999\n")

    assert "'port' must be at most 65535, not 99999" in error.message


def test_config_world_readable_secret_file_warns(tmp_path: Path, caplog) -> None:
    secret = tmp_path / "imap-password"
    secret.write_text("tajne\n", encoding="utf-8")
    secret.chmod(0o644)
    config = load_config(_write(tmp_path, MINIMAL + (
        "source:\n  host: imap.example.com\n  username: hd\n  password_file: imap-password\n")))

    assert isinstance(config.source, ImapConfig)
    assert config.source.password.reveal() == "tajne"
    assert any("readable by every user" in record.getMessage() for record in caplog.records)


AGENTS = """\
groups:
  - name: first-line
agents:
  - login: jan
    addresses: [jan@example.com]
  - login: anna
    addresses: [anna@example.com, Jan@Example.com]
"""


def test_config_agents_share_an_address(tmp_path: Path) -> None:
    error = _error(tmp_path, MINIMAL + AGENTS)

    assert error.location == f"{tmp_path / 'maildesk.yaml'}:9:35"
    assert "'Jan@Example.com'" in error.message
    assert "'jan'" in error.message
    assert "'anna'" in error.message


def test_config_group_escalates_to_itself(tmp_path: Path) -> None:
    error = _error(tmp_path, MINIMAL + "groups:\n  - name: first-line\n"
                                       "    escalates_to: first-line\n")

    assert error.location == f"{tmp_path / 'maildesk.yaml'}:5:19"
    assert "first-line -> first-line" in error.message


def test_config_escalation_cycle(tmp_path: Path) -> None:
    groups = ("groups:\n"
              "  - name: first-line\n    escalates_to: second-line\n"
              "  - name: second-line\n    escalates_to: third-line\n"
              "  - name: third-line\n    escalates_to: second-line\n")

    error = _error(tmp_path, MINIMAL + groups)

    assert error.location == f"{tmp_path / 'maildesk.yaml'}:9:19"
    assert "second-line -> third-line -> second-line" in error.message


def test_config_ticket_tag_error_has_single_braces(tmp_path: Path) -> None:
    for language in ("en", "pl"):
        set_language(language)

        error = _error(tmp_path, MINIMAL + '  ticket_tag: "[SD#]"\n')

        assert "{{" not in error.message
        assert '"[SD#{number}]"' in error.message
        assert error.location == f"{tmp_path / 'maildesk.yaml'}:3:15"


def test_config_yaml_list_names_file_and_line(tmp_path: Path) -> None:
    error = _error(tmp_path, "- a\n- b\n")

    assert error.location == f"{tmp_path / 'maildesk.yaml'}:1:1"
    assert "mapping" in error.message


def test_config_plain_text_document_names_file(tmp_path: Path) -> None:
    error = _error(tmp_path, "just text\n")

    assert error.location == str(tmp_path / "maildesk.yaml")
    assert "mapping" in error.message


def test_config_impossible_holiday_date_has_position(tmp_path: Path) -> None:
    error = _error(tmp_path, MINIMAL + "calendar:\n  closed_days: [2026-12-24, 2026-24-12]\n")

    assert error.location == f"{tmp_path / 'maildesk.yaml'}:4:29"
    assert error.message.startswith("invalid date '2026-24-12': month must be in 1..12")


def test_config_impossible_date_in_polish(tmp_path: Path) -> None:
    set_language("pl")

    error = _error(tmp_path, MINIMAL + "calendar:\n  closed_days: [2026-12-32]\n")

    assert error.message.startswith("nieprawidłowa data '2026-12-32'")


def test_config_reports_every_section_mistake(tmp_path: Path) -> None:
    # An admin should not fix one mistake per restart. rules check lists every mistake,
    # and so does the configuration now.
    error = _error(tmp_path, MINIMAL.replace("desk:", "desk:\n  adminaddresses: [a@b.pl]")
                   + "smtp:\n  port: many\n"
                   + "groups:\n  - name: first-line\n    tier: x\n"
                   + "parse_ahaed: false\n")

    assert isinstance(error, ConfigErrors)
    lines = str(error).splitlines()
    assert len(lines) == 4
    assert "'adminaddresses'" in lines[0]
    assert ":2:" in lines[0]
    assert "port" in lines[1]
    assert "tier" in lines[2]
    assert "'parse_ahaed'" in lines[3]
    assert "'parse_ahead'" in lines[3]


def test_config_agents_not_checked_against_broken_groups(tmp_path: Path) -> None:
    error = _error(tmp_path, MINIMAL + "groups: first-line\n"
                   + "agents:\n  - login: jan\n    addresses: [jan@example.com]\n"
                     "    groups: [first-line]\n")

    assert not isinstance(error, ConfigErrors)
    assert "'groups' must be a list" in str(error)


def test_config_reports_later_sections_together(tmp_path: Path) -> None:
    # Each of these once needed a run of its own: the SLA settings stopped at the first
    # mistake, and the commands section was read only when they were right.
    error = _error(tmp_path, """\
desk:
  address: helpdesk@example.com
  timezone: Europe/Warszawa
sla:
  warning_share: 2
  auto_close_after: soon
commands:
  stranger_tag: maybe
""")

    assert isinstance(error, ConfigErrors)
    where = {str(item.location).rsplit(":", 2)[-2] for item in error.errors}
    assert where == {"3", "5", "6", "8"}
    assert "unknown time zone 'Europe/Warszawa'" in str(error)
    assert "invalid warning share 2" in str(error)


def test_config_ca_file_is_loaded_at_start(tmp_path: Path) -> None:
    cert, _key = make_self_signed_certificate(tmp_path)
    (tmp_path / "not-a-certificate.pem").write_text("garbage\n", encoding="utf-8")
    imap = ("source:\n  type: imap\n  host: imap.example.com\n  username: helpdesk\n"
            "  password_file: secret\n  ca_file: {name}\n")
    smtp = "smtp:\n  security: starttls\n  ca_file: {name}\n"

    config = load_config(_write(tmp_path, MINIMAL + imap.format(name="cert.pem")
                                + smtp.format(name="cert.pem")))
    missing = _error(tmp_path, MINIMAL + smtp.format(name="brak.pem"))
    invalid = _error(tmp_path, MINIMAL + imap.format(name="not-a-certificate.pem"))

    assert isinstance(config.source, ImapConfig)
    assert config.source.ca_file == cert
    assert config.smtp.ca_file == cert
    assert missing.location == f"{tmp_path / 'maildesk.yaml'}:5:12"
    assert f"cannot load the CA certificates in {tmp_path / 'brak.pem'}" in missing.message
    assert "No such file or directory" in missing.message
    assert invalid.location == f"{tmp_path / 'maildesk.yaml'}:8:12"
    assert "not-a-certificate.pem" in invalid.message


def test_config_sla_not_mapping_keeps_calendar_error(tmp_path: Path) -> None:
    error = _error(tmp_path, """\
desk:
  address: helpdesk@example.com
calendar:
  timezone: Europe/Warszawa
sla: 5
""")

    assert isinstance(error, ConfigErrors)
    assert "unknown time zone 'Europe/Warszawa'" in str(error)
    assert "'sla' must be a mapping" in str(error)


def test_config_reports_every_mistake_of_the_commands_section(tmp_path: Path) -> None:
    error = _error(tmp_path, MINIMAL + """\
commands:
  authentication: sometimes
  stranger_tag: maybe
  trusted_authserv_ids: 5
  colour: blue
""")

    assert isinstance(error, ConfigErrors)
    lines = sorted(int(str(item.location).rsplit(":", 2)[-2]) for item in error.errors)
    assert lines == [4, 5, 6, 7]


def test_config_reports_every_mistake_of_the_calendar_section(tmp_path: Path) -> None:
    error = _error(tmp_path, MINIMAL + """\
calendar:
  timezone: Europe/Warszawa
  holidays: 48
  closed_days: [jutro]
""")

    assert isinstance(error, ConfigErrors)
    lines = sorted(int(str(item.location).rsplit(":", 2)[-2]) for item in error.errors)
    assert lines == [4, 5, 6]


def test_read_once_per_config_reads_each_config_object_once(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL)
    first, reloaded = load_config(path), load_config(path)
    calls: list[Config] = []
    read = read_once_per_config(lambda config: calls.append(config) or len(calls))

    values = [read(first), read(first), read(reloaded), read(first)]

    # An equal configuration loaded again is a new object and is read again.
    assert values == [1, 1, 2, 1]
    assert calls == [first, reloaded]
