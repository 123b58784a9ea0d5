"""``maildesk tickets show NUMBER --routing``: the stored routing of a ticket, explained."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from deskfactory import mail, make_ticket, write_config

from maildesk import models, pipeline
from maildesk.cli import main
from maildesk.desk import Desk

RULES = """\
- name: drukarki
  when:
    subject: drukark
  then:
    group: druga-linia
    type: incident
- name: awaria-krytyczna
  on_followup: true
  when:
    body: {contains: cała firma}
  then:
    group: pierwsza-linia
    urgency: high
- name: domyslnie
  when:
    set: {group: {exists: false}}
  then:
    group: pierwsza-linia
"""


def _invoke(config: Path, *args: str, language: str = "en"):
    return CliRunner().invoke(main, ["--config", str(config), *args],
                              env={"MAILDESK_LANGUAGE": language}, catch_exceptions=False)


def _desk_with_rules(tmp_path: Path, database_url: str) -> Path:
    config = write_config(tmp_path, database_url)
    (tmp_path / "rules" / "10-drukarki.yaml").write_text(RULES, encoding="utf-8")
    return config


def _deliver(config: Path, raw: bytes) -> None:
    result = CliRunner().invoke(main, ["--config", str(config), "deliver"], input=raw,
                                env={"MAILDESK_LANGUAGE": "en"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output


def _store_created_detail(ticket: int, change) -> None:
    """Rewrite the stored detail of the ticket's ``created`` event with ``change(detail)``."""
    event = models.Event.get((models.Event.ticket == ticket)
                             & (models.Event.action == "created"))
    detail = json.loads(event.detail)
    change(detail)
    models.Event.update(detail=json.dumps(detail)).where(models.Event.id == event.id).execute()


def test_routing_shows_matched_rule_and_result(tmp_path: Path, database_url: str) -> None:
    config = _desk_with_rules(tmp_path, database_url)
    _deliver(config, mail())
    rules_file = tmp_path / "rules" / "10-drukarki.yaml"

    result = _invoke(config, "tickets", "show", "1", "--routing")

    lines = result.stdout.splitlines()
    assert result.exit_code == 0, result.output
    assert lines[0] == "[#1] Drukarka nie drukuje"
    assert lines[1] == ("Rule files and line numbers are shown as they were when the rules "
                        "ran; the files may have changed since.")
    assert lines[3].startswith("Routing when the ticket was created (")
    assert "Language of the mail: Polish" in lines
    assert f"Rule 'drukarki' ({rules_file}:1): matched" in lines
    assert "  subject contains 'drukark': yes (value: \"Drukarka nie drukuje\")" in lines
    assert "  -> group: druga-linia" in lines
    assert f"Rule 'awaria-krytyczna' ({rules_file}:7): not matched" in lines
    assert f"Rule 'domyslnie' ({rules_file}:14): not matched" in lines
    assert "Result:" in lines
    assert "  group: druga-linia" in lines
    assert "  type: incident" in lines
    assert "Audit trail:" not in result.output


def test_routing_layout_of_rules_test(tmp_path: Path, database_url: str) -> None:
    config = _desk_with_rules(tmp_path, database_url)
    raw = mail()
    _deliver(config, raw)
    mail_file = tmp_path / "zgloszenie.eml"
    mail_file.write_bytes(raw)

    from_ticket = _invoke(config, "tickets", "show", "1", "--routing")
    from_mail = _invoke(config, "rules", "test", str(mail_file))

    # Both print five lines before the explanation: rules test prints the mail's file,
    # sender, subject and time, and --routing the tag and subject, a note and a heading.
    explanation = from_mail.stdout.splitlines()[5:]
    assert from_mail.exit_code == 0, from_mail.output
    assert from_ticket.exit_code == 0, from_ticket.output
    assert from_ticket.stdout.splitlines()[5:] == explanation


def test_routing_in_polish(tmp_path: Path, database_url: str) -> None:
    config = _desk_with_rules(tmp_path, database_url)
    _deliver(config, mail())
    rules_file = tmp_path / "rules" / "10-drukarki.yaml"

    result = _invoke(config, "tickets", "show", "1", "--routing", language="pl")

    lines = result.stdout.splitlines()
    assert result.exit_code == 0, result.output
    assert lines[0] == "[#1] Drukarka nie drukuje"
    assert lines[1] == ("Pliki reguł i numery wierszy są pokazane tak, jak wyglądały w chwili "
                        "działania reguł; od tego czasu pliki mogły się zmienić.")
    assert lines[3].startswith("Przydział przy utworzeniu zgłoszenia (")
    assert "Język wiadomości: polski" in lines
    assert f"Reguła 'drukarki' ({rules_file}:1): spełniona" in lines
    assert "  -> grupa: druga-linia" in lines
    assert "  -> typ: incydent" in lines
    assert f"Reguła 'domyslnie' ({rules_file}:14): niespełniona" in lines
    assert "Wynik:" in lines
    assert "  grupa: druga-linia" in lines
    assert "Rule 'drukarki'" not in result.output


def test_routing_shows_stored_rule_paths(tmp_path: Path, database_url: str) -> None:
    config = _desk_with_rules(tmp_path, database_url)
    _deliver(config, mail())
    rules_file = tmp_path / "rules" / "10-drukarki.yaml"
    rules_file.rename(tmp_path / "rules" / "20-drukarki.yaml")

    result = _invoke(config, "tickets", "show", "1", "--routing")

    assert result.exit_code == 0, result.output
    assert f"Rule 'drukarki' ({rules_file}:1): matched" in result.stdout.splitlines()


def test_routing_of_follow_up_rules(tmp_path: Path, database_url: str) -> None:
    config = _desk_with_rules(tmp_path, database_url)
    _deliver(config, mail())
    _deliver(config, mail(subject="Re: [#1] Drukarka nie drukuje",
                          message_id="<m2@example.org>",
                          body="Teraz nie drukuje cała firma.\n"))

    english = _invoke(config, "tickets", "show", "1", "--routing")
    polish = _invoke(config, "tickets", "show", "1", "--routing", language="pl")

    sections = english.stdout.split("\n\n")
    follow_up = [section for section in sections
                 if section.startswith("Routing of the follow-up mail <m2@example.org> (")]
    assert english.exit_code == 0, english.output
    assert sections[1].startswith("Routing when the ticket was created (")
    assert len(follow_up) == 1
    assert ("The mail is a follow-up: only rules with 'on_followup: true' run."
            in english.output)
    assert "  -> group: pierwsza-linia" in english.stdout.splitlines()
    assert "Przydział przy odpowiedzi <m2@example.org> (" in polish.output


def test_routing_not_stored(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url)
    desk = Desk.open(config)
    # Without a rule set the pipeline routes nothing and stores "routing": null.
    created = pipeline.process(desk, mail(), "test:user")

    english = _invoke(config, "tickets", "show", str(created.ticket), "--routing")
    polish = _invoke(config, "tickets", "show", str(created.ticket), "--routing",
                     language="pl")

    assert english.exit_code == 0, english.output
    assert english.stdout.splitlines() == [
        f"[#{created.ticket}] Drukarka nie drukuje",
        "",
        "No routing was stored when this ticket was created. 'maildesk rules test "
        "MAIL_FILE' explains how the current rules would route a mail.",
    ]
    assert polish.exit_code == 0, polish.output
    assert polish.stdout.splitlines()[2] == (
        "Przy utworzeniu tego zgłoszenia nie zapisano przydziału. 'maildesk rules test "
        "PLIK_WIADOMOŚCI' wyjaśnia, jak obecne reguły przydzieliłyby wiadomość.")


def test_routing_without_created_event(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url)
    Desk.open(config)
    make_ticket(7, "Drukarka nie drukuje", "zofia.wisniewska@example.org")

    result = _invoke(config, "tickets", "show", "7", "--routing")

    assert result.exit_code == 0, result.output
    assert "No routing was stored when this ticket was created." in result.output


def test_routing_unsupported_version(tmp_path: Path, database_url: str) -> None:
    config = _desk_with_rules(tmp_path, database_url)
    _deliver(config, mail())
    _store_created_detail(1, lambda detail: detail["routing"].update(version=2))

    english = _invoke(config, "tickets", "show", "1", "--routing")
    polish = _invoke(config, "tickets", "show", "1", "--routing", language="pl")

    assert english.exit_code == 1
    assert english.stdout.splitlines()[0] == "[#1] Drukarka nie drukuje"
    assert english.stdout.splitlines()[2].startswith("Routing when the ticket was created (")
    assert english.stderr.splitlines()[-1].startswith("cannot show the routing stored at ")
    assert english.stderr.splitlines()[-1].endswith(
        ": unsupported version 2 of a stored routing")
    assert polish.exit_code == 1
    assert polish.stderr.splitlines()[-1].startswith("nie można pokazać przydziału zapisanego ")
    assert polish.stderr.splitlines()[-1].endswith(
        ": nieobsługiwana wersja 2 zapisanego przydziału")


def test_routing_invalid_stored_value(tmp_path: Path, database_url: str) -> None:
    config = _desk_with_rules(tmp_path, database_url)
    _deliver(config, mail())
    _deliver(config, mail(subject="Laptop", body="Nie działa.\n", message_id="<m2@example.org>"))
    _store_created_detail(1, lambda detail: detail["routing"]["trace"][0].pop("rule"))
    _store_created_detail(2, lambda detail: detail.update(routing="group: druga-linia"))

    missing_field = _invoke(config, "tickets", "show", "1", "--routing")
    not_an_object = _invoke(config, "tickets", "show", "2", "--routing")

    assert missing_field.exit_code == 1
    assert missing_field.stderr.rstrip().endswith(
        ": invalid stored routing: the field 'rule' is missing")
    assert not_an_object.exit_code == 1
    assert not_an_object.stderr.rstrip().endswith(
        ": invalid stored routing: the routing is not a JSON object")



def test_routing_condition_not_an_object(tmp_path: Path, database_url: str) -> None:
    # A condition that is a number, not an object, is an invalid stored routing too,
    # reported on stderr like the other cases, not a traceback.
    config = _desk_with_rules(tmp_path, database_url)
    _deliver(config, mail())
    _store_created_detail(1, lambda detail: detail["routing"]["trace"][0].update(
        conditions=[1]))

    shown = CliRunner().invoke(main, ["--config", str(config), "tickets", "show", "1",
                                      "--routing"], env={"MAILDESK_LANGUAGE": "en"})

    assert shown.exception is None or isinstance(shown.exception, SystemExit)
    assert shown.exit_code == 1
    assert "invalid stored routing: " in shown.stderr


def test_routing_unknown_ticket(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url)
    Desk.open(config)

    result = _invoke(config, "tickets", "show", "999", "--routing")

    assert result.exit_code == 1
    assert "ticket 999 not found" in result.output
