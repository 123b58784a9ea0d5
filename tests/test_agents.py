"""Agents and groups: the ``commands:`` settings, the start-up sync, ``maildesk agents``."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from deskfactory import make_desk, write_config

from maildesk import models
from maildesk.agents import (
    agent_by_address,
    agent_tier,
    command_settings,
    find_agent,
    find_group,
    group_members,
    load_command_settings,
    sync_agents,
)
from maildesk.cli import main
from maildesk.config import load_config
from maildesk.errors import ConfigError
from maildesk.i18n import current_language, set_language


def settings_from(tmp_path: Path, commands: object):  # type: ignore[no-untyped-def]
    set_language("en")
    path = write_config(tmp_path, "sqlite:///:memory:", commands=commands)
    return load_command_settings(load_config(path))


def test_command_settings_defaults(tmp_path: Path) -> None:
    path = write_config(tmp_path, "sqlite:///:memory:")

    settings = load_command_settings(load_config(path))

    assert settings.note_address == "helpdesk+note@example.com"
    assert settings.authentication == "authentication_results"
    assert settings.trusted_authserv_ids == ()
    assert settings.cc_become_participants is True
    assert settings.stranger_tag == "new_ticket"


def test_command_settings_read_every_key(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, {
        "note_address": "Notatki@Example.com", "authentication": "dkim",
        "trusted_authserv_ids": ["MX.example.com", "mx2.example.com"],
        "cc_become_participants": False, "stranger_tag": "hold"})

    assert settings.note_address == "notatki@example.com"
    assert settings.authentication == "dkim"
    assert settings.trusted_authserv_ids == ("mx.example.com", "mx2.example.com")
    assert settings.cc_become_participants is False
    assert settings.stranger_tag == "hold"


def test_command_settings_single_authserv_id(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, {"trusted_authserv_ids": "mx.example.com"})

    assert settings.trusted_authserv_ids == ("mx.example.com",)


@pytest.mark.parametrize(("commands", "message"), [
    ({"authentication": "spf"}, "'authentication' must be one of"),
    ({"stranger_tag": "drop"}, "'stranger_tag' must be one of"),
    ({"trusted_authserv_ids": [1, ""]}, "'trusted_authserv_ids' must be a list"),
    ({"note_address": "not-an-address"}, "is not an email address"),
    ({"note_address": "helpdesk@example.com"}, "'note_address' must differ"),
    ({"cc_become_participant": True}, "did you mean 'cc_become_participants'"),
    ({"cc_become_participants": "yes"}, "must be true or false"),
])
def test_command_settings_errors_name_the_fix(tmp_path: Path, commands: dict[str, object],
                                              message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        settings_from(tmp_path, commands)

    assert message in str(raised.value)
    assert "maildesk.yaml:" in str(raised.value)


def test_start_up_rejects_invalid_settings(tmp_path: Path, database_url: str) -> None:
    with pytest.raises(ConfigError):
        make_desk(tmp_path, database_url, commands={"authentication": "trust-me"})


def test_start_up_syncs_agents_and_groups(tmp_path: Path, database_url: str) -> None:
    make_desk(tmp_path, database_url)

    marek = models.Agent.get(models.Agent.login == "marek.zielinski")
    assert marek.name == "Marek Zieliński"
    assert marek.addresses == "marek.zielinski@example.com"
    assert marek.groups == "pierwsza-linia"
    assert marek.commands is True
    group = models.Group.get(models.Group.name == "pierwsza-linia")
    assert group.tier == 1
    assert group.escalates_to == "druga-linia"
    assert group.manager == "kierownik@example.com"


def test_sync_deactivates_removed_agent(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    config = load_config(write_config(tmp_path, database_url, agents=[
        {"login": "ewa.nowak", "name": "Ewa Nowak", "addresses": ["ewa.nowak@example.com"],
         "groups": ["druga-linia"], "commands": False}]))

    report = sync_agents(config)

    assert report.deactivated == ("agent:marek.zielinski",)
    assert report.updated == ("agent:ewa.nowak",)
    assert models.Agent.get(models.Agent.login == "marek.zielinski").active is False
    assert agent_by_address("marek.zielinski@example.com") is None
    assert models.Agent.get(models.Agent.login == "ewa.nowak").commands is False
    assert desk.config.agents[0].login == "marek.zielinski"


def test_sync_logs_what_it_changed_by_name(tmp_path: Path, database_url: str,
                                          caplog: pytest.LogCaptureFixture) -> None:
    make_desk(tmp_path, database_url)
    config = load_config(write_config(tmp_path, database_url, agents=[
        {"login": "ewa.nowak", "name": "Ewa Nowak", "addresses": ["ewa.nowak@example.com"],
         "groups": ["druga-linia"], "commands": False}]))
    previous = current_language()
    set_language("pl")
    try:
        with caplog.at_level(logging.INFO, logger="maildesk.agents"):
            sync_agents(config)
    finally:
        set_language(previous)

    assert ("zsynchronizowano konsultantów i grupy; dodano: -; zmieniono: konsultant "
            "ewa.nowak; wyłączono: konsultant marek.zielinski") in caplog.text


def test_sync_reactivates_agent(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    sync_agents(load_config(write_config(tmp_path, database_url, agents=[])))

    report = sync_agents(desk.config)

    assert "agent:marek.zielinski" in report.updated
    assert models.Agent.get(models.Agent.login == "marek.zielinski").active is True


def test_sync_twice_changes_nothing(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)

    report = sync_agents(desk.config)

    assert report.added == ()
    assert report.updated == ()
    assert report.deactivated == ()


def test_look_ups_by_login_and_address(tmp_path: Path, database_url: str) -> None:
    make_desk(tmp_path, database_url)

    assert find_agent("Marek.Zielinski").login == "marek.zielinski"
    assert find_agent("EWA.NOWAK@example.com").login == "ewa.nowak"
    assert find_agent("jan.kowalski") is None
    assert find_group("Druga-Linia").name == "druga-linia"
    assert [agent.login for agent in group_members("druga-linia")] == ["ewa.nowak"]
    assert agent_tier(find_agent("ewa.nowak")) == 2


def test_address_is_not_matched_by_substring(tmp_path: Path, database_url: str) -> None:
    make_desk(tmp_path, database_url)

    assert agent_by_address("nowak@example.com") is None
    assert agent_by_address("a.nowak@example.com") is None


def test_start_up_warns_without_trusted_servers(tmp_path: Path, database_url: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="maildesk.agents"):
        desk = make_desk(tmp_path, database_url)

    assert command_settings(desk).trusted_authserv_ids == ()
    assert any("trusted_authserv_ids" in record.getMessage() for record in caplog.records)


@pytest.fixture
def keep_logging() -> Iterator[None]:
    """Restore the root logger that the CLI reconfigures, for the tests after this one."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("keep_logging")
def test_cli_agents_list(tmp_path: Path, database_url: str) -> None:
    path = write_config(tmp_path, database_url, agents=[
        {"login": "marek.zielinski", "name": "Marek Zieliński",
         "addresses": ["marek.zielinski@example.com", "marek@example.com"],
         "groups": ["pierwsza-linia", "druga-linia"]},
        {"login": "ewa.nowak", "name": "Ewa Nowak", "addresses": ["ewa.nowak@example.com"],
         "groups": ["druga-linia"], "commands": False}])

    result = CliRunner().invoke(main, ["--config", str(path), "agents", "list"],
                                catch_exceptions=False)

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    ewa = next(line for line in lines if line.startswith("ewa.nowak"))
    marek = next(line for line in lines if line.startswith("marek.zielinski"))
    assert "Ewa Nowak" in ewa
    assert "druga-linia" in ewa
    assert ewa.split()[-2:] == ["2", "nie"]
    assert "marek.zielinski@example.com, marek@example.com" in marek
    assert "pierwsza-linia, druga-linia" in marek
    assert marek.split()[-2:] == ["1", "tak"]
    assert lines[-1] == "2 konsultantów"


@pytest.mark.usefixtures("keep_logging")
def test_cli_agents_list_all_shows_removed(tmp_path: Path, database_url: str) -> None:
    make_desk(tmp_path, database_url)
    path = write_config(tmp_path, database_url, agents=[])

    shown = CliRunner().invoke(main, ["--config", str(path), "agents", "list", "--all"],
                               catch_exceptions=False)
    hidden = CliRunner().invoke(main, ["--config", str(path), "agents", "list"],
                                catch_exceptions=False)

    assert "marek.zielinski (usunięty)" in shown.output
    assert "marek.zielinski" not in hidden.output


@pytest.mark.usefixtures("keep_logging")
def test_cli_agents_held_and_accept(tmp_path: Path, database_url: str) -> None:
    from deskfactory import mail

    from maildesk import pipeline

    desk = make_desk(tmp_path, database_url, commands={"stranger_tag": "hold"})
    first = pipeline.process(desk, mail(), "test:user")
    pipeline.process(desk, mail(sender="Adam <adam.sikora@example.org>",
                                subject=f"[#{first.ticket}] też nie działa",
                                body="U mnie też.", message_id="<s1@example.org>"),
                     "test:stranger")
    entry = models.Message.get(models.Message.message_id == "<s1@example.org>")
    config = str(desk.config.path)

    listed = CliRunner().invoke(main, ["--config", config, "agents", "held"],
                                catch_exceptions=False)
    accepted = CliRunner().invoke(main, ["--config", config, "agents", "accept", str(entry.id),
                                         "--as", "marek.zielinski"], catch_exceptions=False)
    unknown = CliRunner().invoke(main, ["--config", config, "agents", "accept", str(entry.id),
                                        "--as", "marek.zielinski"], catch_exceptions=False)

    assert "adam.sikora@example.org" in listed.output
    # Log lines from opening the desk come first, on stderr mixed into output.
    assert "  wpis    zgłoszenie  czas wstrzymania  autor" in listed.output
    assert "powód wstrzymania: " in listed.output
    assert "adam.sikora@example.org nie jest uczestnikiem" in listed.output
    assert "maildesk agents accept WPIS --as LOGIN" in listed.output
    assert "maildesk agents discard WPIS --as LOGIN" in listed.output
    assert listed.output.splitlines()[-1] == "1 wstrzymana wiadomość"
    assert accepted.exit_code == 0, accepted.output
    assert models.Message.get_by_id(entry.id).kind == "customer"
    assert unknown.exit_code == 1
    assert "maildesk agents held" in unknown.output


def test_cli_agents_held_escapes_reason(tmp_path: Path, database_url: str) -> None:
    from deskfactory import mail

    from maildesk import pipeline

    desk = make_desk(tmp_path, database_url, commands={"stranger_tag": "hold"})
    first = pipeline.process(desk, mail(), "test:user")
    # An internationalised address (RFC 6532) is raw UTF-8 in the header.
    raw = (f"From: Adam <adam\u202eelpmaxe@example.org>\r\nTo: helpdesk@example.com\r\n"
           f"Subject: [#{first.ticket}] też nie działa\r\nMessage-ID: <s1@example.org>\r\n"
           "Date: Sat, 05 Dec 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n\r\nU mnie też.\r\n").encode()
    pipeline.process(desk, raw, "test:stranger")

    listed = CliRunner().invoke(main, ["--config", str(desk.config.path), "agents", "held"],
                                catch_exceptions=False)

    # The reason names the sender's address, which the sender wrote.
    assert "\u202e" not in listed.output
    assert "adam\\u202eelpmaxe@example.org nie jest uczestnikiem" in listed.output


@pytest.mark.usefixtures("keep_logging")
def test_cli_agents_held_shows_age(tmp_path: Path, database_url: str) -> None:
    from datetime import timedelta

    from deskfactory import mail

    from maildesk import pipeline

    desk = make_desk(tmp_path, database_url, commands={"stranger_tag": "hold"})
    first = pipeline.process(desk, mail(), "test:user")
    for number, days in ((1, 3), (2, 0)):
        pipeline.process(desk, mail(sender="adam.sikora@example.org",
                                    subject=f"[#{first.ticket}] też nie działa",
                                    message_id=f"<s{number}@example.org>"), "test:stranger")
        models.Message.update(created_at=models.utcnow() - timedelta(days=days, minutes=5)).where(
            models.Message.message_id == f"<s{number}@example.org>").execute()
    config = str(desk.config.path)

    polish = CliRunner().invoke(main, ["--config", config, "agents", "held"],
                                catch_exceptions=False)
    english = CliRunner().invoke(main, ["--config", config, "agents", "held"],
                                 env={"MAILDESK_LANGUAGE": "en"}, catch_exceptions=False)

    rows = [line for line in polish.output.splitlines() if line.endswith("też nie działa")]
    assert len(rows) == 2
    assert "  3 dni  " in rows[0]
    assert "  5 minut  " in rows[1]
    assert "  held for  " in english.output
    assert "  3 days  " in english.output


@pytest.mark.usefixtures("keep_logging")
def test_cli_agents_discard_records_actor(tmp_path: Path, database_url: str) -> None:
    from deskfactory import mail

    from maildesk import pipeline

    desk = make_desk(tmp_path, database_url, commands={"stranger_tag": "hold"})
    first = pipeline.process(desk, mail(), "test:user")
    pipeline.process(desk, mail(sender="adam.sikora@example.org",
                                subject=f"[#{first.ticket}] też nie działa",
                                message_id="<s1@example.org>"), "test:stranger")
    entry = models.Message.get(models.Message.message_id == "<s1@example.org>")
    config = str(desk.config.path)
    english = {"MAILDESK_LANGUAGE": "en"}

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return CliRunner().invoke(main, ["--config", config, "agents", *args], env=english,
                                  catch_exceptions=False)

    stranger = invoke("discard", str(entry.id), "--as", "nobody")
    discarded = invoke("discard", str(entry.id), "--as", "marek.zielinski@example.com",
                       "--reason", " spam ")
    again = invoke("discard", str(entry.id), "--as", "marek.zielinski")
    accepted = invoke("accept", str(entry.id), "--as", "marek.zielinski")
    unknown = invoke("discard", "99999", "--as", "marek.zielinski")
    listed = invoke("held")
    history = CliRunner().invoke(main, ["--config", config, "tickets", "show",
                                        str(first.ticket)], env=english, catch_exceptions=False)

    assert stranger.exit_code == 1
    assert "there is no agent 'nobody'" in stranger.output
    assert discarded.exit_code == 0, discarded.output
    assert f"message {entry.id} discarded on ticket {first.ticket}" in discarded.output
    assert models.Message.get_by_id(entry.id).kind == "discarded"
    assert models.Participant.select().count() == 0
    event = models.Event.get(models.Event.action == "held_discarded")
    assert event.actor == "marek.zielinski"
    assert event.ticket_id == first.ticket
    assert json.loads(event.detail) == {"entry": entry.id, "message_id": "<s1@example.org>",
                                        "reason": "spam"}
    assert again.exit_code == 1
    assert (f"message {entry.id} is not held (kind of entry: discarded held message)"
            in again.output)
    assert accepted.exit_code == 1
    assert "is not held" in accepted.output
    assert models.Message.get_by_id(entry.id).kind == "discarded"
    assert unknown.exit_code == 1
    assert "held message 99999 not found: see 'maildesk agents held'" in unknown.output
    assert listed.output.splitlines()[-1] == "0 held messages"
    assert (f"marek.zielinski: held message discarded — entry {entry.id} (spam)"
            in history.output)
    assert "discarded held message:  <adam.sikora@example.org> <s1@example.org>" in (
        history.output)


def test_accept_held_agent_mail_becomes_note(tmp_path: Path, database_url: str) -> None:
    from deskfactory import mail

    from maildesk import pipeline
    from maildesk.conversation import accept_held

    desk = make_desk(tmp_path, database_url)
    first = pipeline.process(desk, mail(), "test:user")
    pipeline.process(desk, mail(sender="marek.zielinski@example.com",
                                subject=f"Re: [#{first.ticket}] Drukarka",
                                body="#status rozwiązane\n", message_id="<a1@example.com>"),
                     "test:agent")
    entry = models.Message.get(models.Message.message_id == "<a1@example.com>")

    listed = CliRunner().invoke(main, ["--config", str(desk.config.path), "agents", "held"],
                                env={"MAILDESK_LANGUAGE": "en"}, catch_exceptions=False)
    accept_held(entry.id, "ewa.nowak")

    assert f"held because: command(s) rejected for {first.ticket}" in listed.output
    assert models.Message.get_by_id(entry.id).kind == "internal_note"
    assert models.Ticket.get_by_id(first.ticket).status == "new"
