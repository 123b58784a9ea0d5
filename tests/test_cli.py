"""The maildesk command line, through click's CliRunner and a real database."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import peewee as pw
import pytest
from click.testing import CliRunner
from deskfactory import mail, write_config

from maildesk import models
from maildesk.cli import EX_TEMPFAIL, main
from maildesk.config import load_config


def _invoke(*args: str, input: bytes | None = None, env: dict | None = None):
    runner = CliRunner()
    environment = {"MAILDESK_LANGUAGE": "en", **(env or {})}
    return runner.invoke(main, list(args), input=input, env=environment,
                         catch_exceptions=False)


def test_demo_prints_the_tickets_it_made(tmp_path: Path) -> None:
    result = _invoke("demo", str(tmp_path / "demo"))

    assert result.exit_code == 0, result.output
    assert "[SD#1]" in result.output
    assert "Drukarka na 2. piętrze nie drukuje" in result.output
    written = len(list((tmp_path / "demo" / "outbox").glob("*.eml")))
    assert f"{written} outgoing mails written to" in result.output
    assert written >= 5
    assert not any((tmp_path / "demo" / "mailbox" / "new").iterdir())
    # A first run that prints warnings reads as a broken install: every group of the
    # demo has an agent, so no notice falls back to the admins.
    assert " WARNING " not in result.stderr
    notices = [path.read_text(encoding="utf-8")
               for path in (tmp_path / "demo" / "outbox").glob("*-new_ticket.eml")]
    assert notices and not any("admin@firma.example" in notice for notice in notices)


@pytest.mark.parametrize(("language", "shown", "hidden"), [
    ("en", "Category: network", "sieć"),
    ("pl", "Kategoria: sieć", "Category"),
])
def test_demo_rules_in_desk_language(tmp_path: Path, language: str, shown: str,
                                     hidden: str) -> None:
    # The demo's rule names and categories appear in "tickets show": an English demo
    # copies the English rules, as "init --language en" does.
    environment = {"MAILDESK_LANGUAGE": language}
    _invoke("demo", str(tmp_path / "demo"), env=environment)
    config = str(tmp_path / "demo" / "maildesk.yaml")

    ticket = _invoke("--config", config, "tickets", "show", "2", env=environment)
    routing = _invoke("--config", config, "tickets", "show", "2", "--routing",
                      env=environment)

    assert shown in ticket.stdout
    assert hidden not in ticket.stdout
    rule = "network-vpn-wifi" if language == "en" else "siec-vpn-wifi"
    assert f"'{rule}'" in routing.stdout


def test_demo_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "precious").mkdir()

    result = _invoke("demo", str(tmp_path / "precious"))

    assert result.exit_code == 1
    assert "is not a demo folder" in result.output


def test_tickets_show_decodes_conversation(tmp_path: Path) -> None:
    _invoke("demo", str(tmp_path / "demo"))
    config = str(tmp_path / "demo" / "maildesk.yaml")

    listing = _invoke("--config", config, "tickets", "list")
    shown = _invoke("--config", config, "tickets", "show", "4")

    assert listing.exit_code == 0
    assert "5 tickets" in listing.output
    assert shown.exit_code == 0, shown.output
    assert "Irena Kozłowska <irena.kozlowska@firma.example>" in shown.output
    assert "Nowy pracownik od poniedziałku – konto i laptop" in shown.output
    assert "formularz-nowy-pracownik.csv" in shown.output
    assert "Audit trail:" in shown.output


def test_tickets_show_classification_and_service_levels(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from maildesk import lifecycle
    from maildesk.desk import Desk

    # A Polish demo copies the Polish rules, whose categories this test reads.
    _invoke("demo", str(tmp_path / "demo"), env={"MAILDESK_LANGUAGE": "pl"})
    config = tmp_path / "demo" / "maildesk.yaml"
    shown = _invoke("--config", str(config), "tickets", "show", "4",
                    env={"MAILDESK_LANGUAGE": "pl"})
    desk = Desk.open(config)
    ticket = models.Ticket.get_by_id(4)
    lifecycle.transition(desk, ticket, "pending", "jan.kowalski", "agent_command",
                         datetime.now(UTC))
    models.Ticket.update(satisfaction=4, satisfaction_at=datetime(2026, 12, 4, 9, 30)).where(
        models.Ticket.id == 4).execute()
    waiting = _invoke("--config", str(config), "tickets", "show", "4")

    # The demo's account rule makes ticket 4 a service request in category "konta".
    assert shown.exit_code == 0, shown.output
    assert ("Typ: wniosek o usługę   Kategoria: konta   Wpływ: średni   Pilność: średnia"
            in shown.output)
    assert "Tagi: onboarding" in shown.output
    assert re.search(r"Termin pierwszej odpowiedzi: \d{4}-\d\d-\d\d \d\d:\d\d CET",
                     shown.output)
    assert "Termin rozwiązania: " in shown.output
    assert "Type: service request   Category: konta" in waiting.output
    assert "SLA clock paused since " in waiting.output
    assert "Rating by the requester: 4/5 (2026-12-04 10:30 CET)" in waiting.output
    assert "Rating" not in shown.output
    assert "Ocena" not in shown.output


def test_tickets_show_unknown_number_fails(tmp_path: Path) -> None:
    _invoke("demo", str(tmp_path / "demo"))

    result = _invoke("--config", str(tmp_path / "demo" / "maildesk.yaml"), "tickets", "show",
                     "999")

    assert result.exit_code == 1
    assert "ticket 999 not found" in result.output


def test_cli_error_prefix_speaks_polish(tmp_path: Path) -> None:
    _invoke("demo", str(tmp_path / "demo"))

    result = _invoke("--config", str(tmp_path / "demo" / "maildesk.yaml"), "tickets", "show",
                     "999", env={"MAILDESK_LANGUAGE": "pl"})

    assert result.exit_code == 1
    assert result.output.startswith("błąd: ")
    assert "Error:" not in result.output


def test_tickets_show_audit_trail_in_polish(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from maildesk import lifecycle
    from maildesk.desk import Desk

    _invoke("demo", str(tmp_path / "demo"))
    config = tmp_path / "demo" / "maildesk.yaml"
    desk = Desk.open(config)
    ticket = models.Ticket.get_by_id(1)
    lifecycle.transition(desk, ticket, "in_progress", "jan.kowalski", "agent_command",
                         datetime.now(UTC))

    shown = _invoke("--config", str(config), "tickets", "show", "1",
                    env={"MAILDESK_LANGUAGE": "pl"})

    assert shown.exit_code == 0, shown.output
    assert "Priorytet: P3 (średni)" in shown.output
    assert "wiadomość użytkownika: Zofia Wiśniewska" in shown.output
    assert "utworzono zgłoszenie" in shown.output
    assert "jan.kowalski: zmiana statusu — nowe → w realizacji" in shown.output
    assert ("maildesk: ustalono priorytet — P3 (średni) (wpływ średni i pilność średnia "
            "dają P3)") in shown.output
    english = _invoke("--config", str(config), "tickets", "show", "1")
    assert ("maildesk: priority set — P3 (medium) (impact medium and urgency medium give "
            "P3)") in english.output
    assert "dodano wiadomość (odpowiedź automatyczna)" in shown.output
    assert " CET " in shown.output
    assert "status_changed" not in shown.output


def test_tickets_show_names_rejected_lines_once(tmp_path: Path, database_url: str) -> None:
    from maildesk import pipeline
    from maildesk.desk import Desk

    config = write_config(tmp_path, database_url, commands={"authentication": "address_only"})
    desk = Desk.open(config)
    first = pipeline.process(desk, mail(), "test:user")
    pipeline.process(desk, mail(sender="marek.zielinski@example.com",
                                subject=f"Re: [#{first.ticket}] Drukarka",
                                body="#priorytet 9\n", message_id="<a1@example.com>"),
                     "test:agent")

    history = _invoke("--config", str(config), "tickets", "show", str(first.ticket),
                    env={"MAILDESK_LANGUAGE": "pl"})

    rejected = [line for line in history.output.splitlines() if "odrzucono" in line]
    # The agent is named by login in every line, whether the event kept the address.
    assert "marek.zielinski@example.com:" not in history.output
    assert "marek.zielinski: dodano wiadomość" in history.output
    assert len(rejected) == 1
    assert rejected[0].count("odrzucono") == 1
    assert rejected[0].endswith("(#priorytet 9)")


def test_tickets_views_escape_bidi_overrides(tmp_path: Path, database_url: str) -> None:
    from maildesk import pipeline
    from maildesk.desk import Desk

    config = write_config(tmp_path, database_url)
    desk = Desk.open(config)
    first = pipeline.process(desk, mail(sender="Jan \u202enimda <jan@example.org>",
                                        subject="Pilne \u202ednarg",
                                        body="Tekst \u202eodwrócony\n"), "test:user")

    listing = _invoke("--config", str(config), "tickets", "list")
    shown = _invoke("--config", str(config), "tickets", "show", str(first.ticket))
    outbox = _invoke("--config", str(config), "outbox", "list", "--state", "pending")

    assert "\u202e" not in listing.output
    assert "\u202e" not in outbox.output
    assert "Pilne \\u202ednarg" in outbox.output
    assert "Pilne \\u202ednarg" in listing.output
    assert "\u202e" not in shown.output
    assert "Jan \\u202enimda <jan@example.org>" in shown.output
    assert "Tekst \\u202eodwrócony" in shown.output


def test_tickets_show_lists_participants(tmp_path: Path, database_url: str) -> None:
    from maildesk import pipeline
    from maildesk.desk import Desk

    config = write_config(tmp_path, database_url)
    desk = Desk.open(config)
    first = pipeline.process(desk, mail(headers={"Cc": "Tomasz Lis <tomasz.lis@example.org>"}),
                             "test:user")

    shown = _invoke("--config", str(config), "tickets", "show", str(first.ticket),
                    env={"MAILDESK_LANGUAGE": "pl"})

    assert ("Uczestnicy (dostają odpowiedzi konsultantów): Tomasz Lis "
            "<tomasz.lis@example.org>") in shown.output
    assert "Poziom eskalacji" not in shown.output


def test_tickets_show_dispatch_mailbox_apart(tmp_path: Path, database_url: str) -> None:
    # A team or vendor mailbox a ticket was dispatched to gets the dispatch mail, never
    # the agents' replies to the requester, so it is not listed among those who do.
    from datetime import datetime

    from maildesk import escalation, models, pipeline
    from maildesk.desk import Desk
    from maildesk.lifecycle import Source

    config = write_config(tmp_path, database_url, groups=[
        {"name": "pierwsza-linia", "tier": 1},
        {"name": "druga-linia", "tier": 2},
        {"name": "serwis", "tier": 3, "address": "serwis@dostawca.example.net",
         "description": "Serwis dostawcy"}])
    desk = Desk.open(config)
    first = pipeline.process(desk, mail(headers={"Cc": "Tomasz Lis <tomasz.lis@example.org>"}),
                             "test:user")
    with models.database_proxy.atomic():
        ticket = models.Ticket.get_by_id(first.ticket)
        escalation.move_to_group(desk, ticket, "serwis", "marek.zielinski",
                                 Source.AGENT_COMMAND,
                                 datetime(2026, 12, 4, 10, 0))

    shown = _invoke("--config", str(config), "tickets", "show", str(first.ticket),
                    env={"MAILDESK_LANGUAGE": "pl"})
    english = _invoke("--config", str(config), "tickets", "show", str(first.ticket),
                      env={"MAILDESK_LANGUAGE": "en"})

    assert ("Uczestnicy (dostają odpowiedzi konsultantów): Tomasz Lis "
            "<tomasz.lis@example.org>\n") in shown.output
    assert ("Przekazano do skrzynki (nie dostaje odpowiedzi konsultantów): Serwis dostawcy "
            "<serwis@dostawca.example.net>\n") in shown.output
    assert ("Dispatched to the mailbox (it does not get the agents' replies): Serwis "
            "dostawcy <serwis@dostawca.example.net>\n") in english.output


def test_tickets_show_names_follow_up_ticket(tmp_path: Path, database_url: str) -> None:
    from maildesk import pipeline
    from maildesk.desk import Desk

    config = write_config(tmp_path, database_url)
    desk = Desk.open(config)
    first = pipeline.process(desk, mail(), "test:user")
    models.Ticket.update(status="closed").where(models.Ticket.id == first.ticket).execute()
    follow_up = pipeline.process(desk, mail(subject=f"Re: [#{first.ticket}] Drukarka",
                                            body="Znowu nie drukuje.",
                                            message_id="<again@example.org>"), "test:user")

    history = _invoke("--config", str(config), "tickets", "show", str(first.ticket))

    assert follow_up.ticket != first.ticket
    assert f"follow-up ticket opened — [#{follow_up.ticket}]" in history.output


def test_tickets_list_headers_and_empty(tmp_path: Path) -> None:
    _invoke("demo", str(tmp_path / "demo"))
    config = str(tmp_path / "demo" / "maildesk.yaml")

    listing = _invoke("--config", config, "tickets", "list", env={"MAILDESK_LANGUAGE": "pl"})
    closed = _invoke("--config", config, "tickets", "list", "--status", "closed",
                     env={"MAILDESK_LANGUAGE": "pl"})

    assert listing.output.splitlines()[0].split() == [
        "zgłoszenie", "SLA", "status", "priorytet", "grupa", "osoba", "przypisana",
        "zgłaszający", "temat"]
    assert "P3 (średni)" in listing.output
    assert closed.output.strip() == "brak zgłoszeń"


def test_tickets_list_by_group_and_assignee(tmp_path: Path) -> None:
    from maildesk.desk import Desk

    _invoke("demo", str(tmp_path / "demo"))
    config = str(tmp_path / "demo" / "maildesk.yaml")
    Desk.open(Path(config))
    agent_login = models.Agent.select().first().login
    models.Ticket.update(assignee=agent_login).where(models.Ticket.id == 3).execute()

    network = _invoke("--config", config, "tickets", "list", "--group", "NETWORK")
    assigned = _invoke("--config", config, "tickets", "list", "--assignee", agent_login)
    unassigned = _invoke("--config", config, "tickets", "list", "--unassigned")
    unknown = _invoke("--config", config, "tickets", "list", "--group", "nope")

    assert network.output.splitlines()[-1] == "3 tickets"
    assert all(" network " in line for line in network.output.splitlines()[1:-1])
    assert assigned.output.splitlines()[-1] == "1 ticket"
    assert f" {agent_login} " in assigned.output
    assert unassigned.output.splitlines()[-1] == "4 tickets"
    assert unknown.exit_code == 2
    assert "there is no group 'nope'; the groups are: accounts, first-line" in unknown.output


def test_outbox_list_translates_states_and_kinds(tmp_path: Path) -> None:
    _invoke("demo", str(tmp_path / "demo"))
    config = str(tmp_path / "demo" / "maildesk.yaml")

    listing = _invoke("--config", config, "outbox", "list", env={"MAILDESK_LANGUAGE": "pl"})
    failed = _invoke("--config", config, "outbox", "list", "--state", "failed")

    assert listing.output.splitlines()[0].split()[:3] == ["nr", "stan", "próby"]
    assert " wysłana " in listing.output
    assert " potwierdzenie przyjęcia " in listing.output
    assert " odpowiedź użytkownika " in listing.output
    assert " user_replied " not in listing.output
    assert failed.output.strip() == "no outgoing mail"


def test_list_filters_accept_names(tmp_path: Path) -> None:
    _invoke("demo", str(tmp_path / "demo"))
    config = str(tmp_path / "demo" / "maildesk.yaml")
    polish = {"MAILDESK_LANGUAGE": "pl"}

    by_code = _invoke("--config", config, "tickets", "list", "--status", "new")
    by_polish = _invoke("--config", config, "tickets", "list", "--status", "Nowe", env=polish)
    sent = _invoke("--config", config, "outbox", "list", "--state", "wysłana", env=polish)
    waiting = _invoke("--config", config, "outbox", "list", "--state", "waiting to be sent")

    assert by_code.exit_code == 0
    # A header, the five new tickets of the demo and a count.
    assert len(by_code.output.splitlines()) == 7
    assert len(by_polish.output.splitlines()) == 7
    assert by_polish.output.count(" nowe ") == 5
    assert sent.output.count(" wysłana ") == models.Outbox.select().count()
    assert waiting.output.strip() == "no outgoing mail"


def test_status_filter_accepts_listed_labels(tmp_path: Path) -> None:
    # Every name that the list prints, the help names and the error offers is accepted.
    _invoke("demo", str(tmp_path / "demo"))
    config = str(tmp_path / "demo" / "maildesk.yaml")

    for language, labels in (("en", ("new", "assigned", "in progress", "waiting for the user",
                                     "resolved", "closed")),
                             ("pl", ("nowe", "przypisane", "w realizacji",
                                     "oczekuje na użytkownika", "rozwiązane", "zamknięte"))):
        for label in labels:
            result = _invoke("--config", config, "tickets", "list", "--status", label,
                             env={"MAILDESK_LANGUAGE": language})

            assert result.exit_code == 0, f"{label!r}: {result.output}"


def test_list_filters_reject_unknown_values(tmp_path: Path) -> None:
    _invoke("demo", str(tmp_path / "demo"))
    config = str(tmp_path / "demo" / "maildesk.yaml")

    status = _invoke("--config", config, "tickets", "list", "--status", "bogus")
    reopened = _invoke("--config", config, "tickets", "list", "--status", "reopened")
    state = _invoke("--config", config, "outbox", "list", "--state", "queued")

    assert status.exit_code == 2
    assert "'bogus' is not a ticket status; use one of: new, assigned" in status.output
    assert reopened.exit_code == 2
    assert state.exit_code == 2
    assert "'queued' is not a state of outgoing mail" in state.output


def test_outbox_kind_labels_cover_queued_kinds() -> None:
    from maildesk.cli_admin import _outbox_kind_label

    package = Path(__file__).resolve().parent.parent / "maildesk"
    # The rules package names kinds of conditions, not of mail.
    source = "\n".join(path.read_text(encoding="utf-8") for path in package.rglob("*.py")
                       if "rules" not in path.relative_to(package).parts[:-1])
    kinds = set(re.findall(r'\bkind="([a-z_]+)"', source))
    # Mail queued by queue_ticket_mail and queue_rejection takes the template's name.
    kinds |= set(re.findall(r'queue_ticket_mail\([^"]*"([a-z_]+)"', source))
    templates = package.parent / "templates" / "en"
    kinds |= {path.stem for path in templates.glob("status_*.j2")}
    kinds |= {path.stem for path in templates.glob("rejection_*.j2")}
    kinds -= {"held"}  # a kind of agent mail, not of outgoing mail

    unlabelled = sorted(kind for kind in kinds if _outbox_kind_label(kind) == kind)

    assert len(kinds) > 20
    assert unlabelled == []


_HELP_TEXTS = """
import json
import click
from maildesk.cli import main

def walk(command, path):
    yield path, command.help
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help":
            yield f"{path} {param.opts[-1]}", param.help
    for name, sub in getattr(command, "commands", {}).items():
        yield from walk(sub, f"{path} {name}")

print(json.dumps(dict(walk(main, "maildesk"))))
"""


def _help_texts(language: str) -> dict[str, str | None]:
    """Collect the help of every command and option in a fresh process, as a user sees it."""
    import json

    result = subprocess.run([sys.executable, "-c", _HELP_TEXTS], capture_output=True,
                            env={**os.environ, "MAILDESK_LANGUAGE": language}, check=True)
    return json.loads(result.stdout)


def test_cli_help_polish_and_english() -> None:
    polish = _help_texts("pl")
    english = _help_texts("en")

    assert "maildesk tickets show" in polish
    assert polish["maildesk outbox list --limit"] == "Maksymalna liczba wiadomości."
    assert english["maildesk outbox list --limit"] == "Maximum number of mails."
    missing = [path for path, text in polish.items() if not text]
    assert missing == []
    untranslated = [path for path, text in polish.items() if text == english[path]]
    assert untranslated == []


def test_cli_polish_command_help_is_imperative() -> None:
    # Every command's help names what the admin should do ("Usuń", "Pokaż"), as the English
    # does. A third-person verb ("Usuwa", "Pokazuje") ends in a vowel, which no Polish
    # imperative and no noun that starts a help here ("Raport") does.
    polish = _help_texts("pl")

    commands = {path: text for path, text in polish.items()
                if " --" not in path and path != "maildesk" and text}
    descriptive = [f"{path}: {text.split()[0]}" for path, text in commands.items()
                   if re.match(r"[^\W\d_]*[aeiouyąę]\b", text.split()[0])]

    assert len(commands) > 30
    assert descriptive == []


def test_cli_held_help_keeps_discard_apart() -> None:
    # "agents discard" is "odrzuć": the held mail that accept and held describe is mail
    # maildesk did not take ("nieprzyjęta", "wstrzymana"), not discarded mail.
    polish = _help_texts("pl")

    assert polish["maildesk agents discard"].startswith("Odrzuć wstrzymaną wiadomość")
    for command in ("maildesk agents accept", "maildesk agents held"):
        assert "odrzuc" not in polish[command].lower(), command


def test_cli_root_help_in_polish() -> None:
    result = subprocess.run([sys.executable, "-m", "maildesk.cli", "--help"],
                            capture_output=True, text=True,
                            env={**os.environ, "MAILDESK_LANGUAGE": "pl"}, check=True)

    assert "Pokaż wersję i zakończ." in result.stdout
    assert "Wyświetlaj i usuwaj zgłoszenia." in result.stdout


_EVENT_ACTION = re.compile(
    r'(?:record_event|_record)\(\s*[^,()]+,\s*[^,()]+,\s*"([a-z_]+)"'
    r'(?: if \w+ else "([a-z_]+)")?'
    r'|action="([a-z_]+)"'
    r'|\(\w+(?:\.id)?, "([a-z_]+)", \{'
)
_SLA_TRANSITION = re.compile(r'self\._record\(\s*"([a-z_]+)"')


def test_audit_labels_cover_event_actions() -> None:
    from maildesk.cli_admin import _action_label
    from maildesk.i18n import current_language, set_language

    package = Path(__file__).resolve().parent.parent / "maildesk"
    actions = set()
    for source in package.rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        for match in _EVENT_ACTION.finditer(text):
            actions.update(group for group in match.groups() if group)
        actions |= {f"sla_{kind}" for kind in _SLA_TRANSITION.findall(text)}
    previous = current_language()
    set_language("pl")
    try:
        unlabelled = sorted(action for action in actions if _action_label(action) == action)
    finally:
        set_language(previous)

    assert "status_changed" in actions
    assert "sla_start" in actions
    assert unlabelled == []


def test_deliver_creates_ticket_from_stdin(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url)

    result = _invoke("--config", str(config), "deliver", input=mail())

    assert result.exit_code == 0, result.output
    assert "ticket 1 created (new ticket)" in result.output
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1


def test_deliver_outcomes_in_polish(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url)
    polish = {"MAILDESK_LANGUAGE": "pl"}

    created = _invoke("--config", str(config), "deliver", input=mail(), env=polish)
    duplicate = _invoke("--config", str(config), "deliver", input=mail(), env=polish)
    quarantined = _invoke("--config", str(config), "deliver", env=polish,
                          input=b"Subject: bez nadawcy\r\n\r\ntresc\r\n")

    # The output also carries the log lines, so the outcome is the last line.
    assert created.output.splitlines()[-1] == "utworzono zgłoszenie 1 (nowe zgłoszenie)"
    assert duplicate.output.splitlines()[-1] == (
        "duplikat, nie przetworzono ponownie (wiadomość została już przetworzona)")
    assert quarantined.output.splitlines()[-1].startswith(
        "przeniesiono do kwarantanny (wpis kwarantanny 1: ")
    assert "zgłoszenie -" not in quarantined.output


def test_history_reason_in_reader_language(tmp_path: Path, database_url: str) -> None:
    from maildesk.desk import Desk
    from maildesk.i18n import N_
    from maildesk.reasons import Reason
    from maildesk.tickets import record_event

    config = write_config(tmp_path, database_url)
    _invoke("--config", str(config), "deliver", input=mail())
    Desk.open(config)
    ticket = models.Ticket.get_by_id(1)
    loop = Reason(N_("mail loop suspected with {address} (automatic acknowledgements "
                     "answered each other)"), address="robot@example.net")
    record_event(ticket, "maildesk", "mail_loop_suspected", {"reason": loop})
    # A row written before reasons carried a msgid keeps its stored text.
    record_event(ticket, "maildesk", "ignored", {"reason": "stary powód zapisany tekstem"})

    polish = _invoke("--config", str(config), "tickets", "show", "1",
                     env={"MAILDESK_LANGUAGE": "pl"})
    english = _invoke("--config", str(config), "tickets", "show", "1")

    assert "(podejrzenie pętli pocztowej z robot@example.net (automatyczne" in polish.output
    assert "mail loop suspected with" not in polish.output
    assert "(stary powód zapisany tekstem)" in polish.output
    assert "(mail loop suspected with robot@example.net (automatic" in english.output


def test_tickets_list_columns_fit_polish_status(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url)
    _invoke("--config", str(config), "deliver", input=mail())
    _invoke("--config", str(config), "deliver", input=mail(message_id="<m2@example.org>"))
    models.Ticket.update(status="pending").where(models.Ticket.id == 1).execute()

    listing = _invoke("--config", str(config), "tickets", "list",
                      env={"MAILDESK_LANGUAGE": "pl"})

    # The output starts with the log lines of opening the database.
    lines = listing.output.splitlines()
    header = next(line for line in lines if "priorytet" in line)
    waiting, new = lines[lines.index(header) + 1:lines.index(header) + 3]
    assert "oczekuje na użytkownika P3" not in waiting
    assert waiting.index("P3") == header.index("priorytet")
    assert new.index("P3") == header.index("priorytet")
    assert waiting.index("zofia") == header.index("zgłaszający")


def test_tickets_list_fits_long_requester(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url)
    long_sender = "Robert Kamiński <robert.kaminski@zarzad.logistyka.example>"
    _invoke("--config", str(config), "deliver", input=mail(sender=long_sender))
    _invoke("--config", str(config), "deliver", input=mail(message_id="<m2@example.org>"))

    listing = _invoke("--config", str(config), "tickets", "list")

    lines = listing.output.splitlines()
    header = next(line for line in lines if "requester" in line)
    short, long = lines[lines.index(header) + 1:lines.index(header) + 3]
    assert long.index("robert.kaminski") == header.index("requester")
    assert long.index("Drukarka") == header.index("subject")
    assert short.index("Drukarka") == header.index("subject")


def test_outbox_list_fits_long_recipient(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url)
    long_sender = "Robert Kamiński <robert.kaminski@zarzad.logistyka.example>"
    _invoke("--config", str(config), "deliver", input=mail(sender=long_sender))

    listing = _invoke("--config", str(config), "outbox", "list")

    lines = listing.output.splitlines()
    header = next(line for line in lines if "recipients" in line)
    rows = [line for line in lines if "Drukarka" in line]
    assert any("robert.kaminski" in row for row in rows)
    for row in rows:
        assert row.index("[#1]") == header.index("subject"), row


def test_contacts_bounced_lists_and_clears(tmp_path: Path, database_url: str) -> None:
    from maildesk.outbox import record_bounce

    config = str(write_config(tmp_path, database_url))
    _invoke("--config", config, "deliver", input=mail())
    # The reason comes from a bounce, which anyone can write, so ESC must not reach the terminal.
    record_bounce("zofia.wisniewska@example.org", "550 5.1.1 user unknown \x1b[2J")

    listed = _invoke("--config", config, "contacts", "bounced")
    listed_polish = _invoke("--config", config, "contacts", "bounced",
                            env={"MAILDESK_LANGUAGE": "pl"})
    cleared = _invoke("--config", config, "contacts", "clear-bounce",
                      "Zofia.Wisniewska@example.org")
    listed_after = _invoke("--config", config, "contacts", "bounced")
    again = _invoke("--config", config, "contacts", "clear-bounce",
                    "zofia.wisniewska@example.org", env={"MAILDESK_LANGUAGE": "pl"})

    assert listed.exit_code == 0, listed.output
    header, row, total = listed.stdout.splitlines()
    assert header.split() == ["address", "bounced", "at", "reason"]
    assert row.startswith("zofia.wisniewska@example.org ")
    assert row.endswith(" 550 5.1.1 user unknown \\x1b[2J")
    assert total == "1 address marked as bounced"
    assert listed_polish.stdout.splitlines()[-1] == "1 adres oznaczony jako niedoręczalny"
    assert cleared.exit_code == 0, cleared.output
    assert cleared.stdout == ("zofia.wisniewska@example.org is no longer marked as bounced; "
                              "maildesk writes to it again\n")
    contact = models.Contact.get(models.Contact.address == "zofia.wisniewska@example.org")
    assert contact.bounced_at is None
    [event] = models.Event.select().where(models.Event.action == "bounce_cleared")
    assert (event.ticket_id, event.actor) == (None, "admin")
    assert listed_after.stdout == "no address is marked as bounced\n"
    assert again.exit_code == 1
    assert "adres zofia.wisniewska@example.org nie jest oznaczony jako niedoręczalny" in (
        again.output)


def test_deliver_exits_75_when_database_is_down(tmp_path: Path) -> None:
    config = write_config(tmp_path, "postgresql://postgres@127.0.0.1:1/none")

    result = _invoke("--config", str(config), "deliver", input=mail())

    assert result.exit_code == EX_TEMPFAIL


def test_deliver_exits_75_when_final_flush_fails(tmp_path: Path, database_url: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path, database_url)

    def failing(database, postgresql) -> None:
        raise pw.OperationalError("database is locked")

    monkeypatch.setattr(models, "_flush_commits", failing)

    result = _invoke("--config", str(config), "deliver", input=mail())

    assert result.exit_code == EX_TEMPFAIL
    assert "database is locked" in result.output


def test_deliver_exits_75_on_unexpected_error(tmp_path: Path, database_url: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from maildesk import pipeline

    config = write_config(tmp_path, database_url)

    def broken(*args, **kwargs):
        raise KeyError("a bug in the pipeline")

    monkeypatch.setattr(pipeline, "process", broken)

    result = _invoke("--config", str(config), "deliver", input=mail())

    assert result.exit_code == EX_TEMPFAIL
    assert "a bug in the pipeline" in result.output


def test_deliver_unwritable_outbox_keeps_exit_0(tmp_path: Path, database_url: str) -> None:
    # The outbox directory is a file, so writing the acknowledgement fails after the
    # mail was stored: the MTA must not deliver the mail again.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("", encoding="utf-8")
    config = write_config(tmp_path, database_url,
                          smtp={"transport": "directory", "directory": str(blocker)})

    result = _invoke("--config", str(config), "deliver", input=mail())

    assert result.exit_code == 0
    assert models.Ticket.select().count() == 1
    rows = list(models.Outbox.select())
    assert rows
    assert {row.state for row in rows} == {"pending"}
    assert all(str(blocker) in row.last_error for row in rows)


def test_deliver_send_failure_keeps_exit_0(tmp_path: Path, database_url: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from maildesk import outbox

    config = write_config(tmp_path, database_url)

    def locked(self, limit: int = 50) -> int:
        raise pw.OperationalError("database is locked")

    monkeypatch.setattr(outbox.Sender, "deliver_due", locked)

    result = _invoke("--config", str(config), "deliver", input=mail())

    assert result.exit_code == 0
    assert "maildesk outbox send" in result.output
    assert models.Ticket.select().count() == 1


def test_deliver_exits_75_on_invalid_config(tmp_path: Path) -> None:
    config = tmp_path / "maildesk.yaml"
    config.write_text("desk:\n  adress: x@example.com\n", encoding="utf-8")

    result = _invoke("--config", str(config), "deliver", input=mail())

    assert result.exit_code == EX_TEMPFAIL
    assert "maildesk.yaml:" in result.output


def test_deliver_exits_75_when_stdin_fails(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")

    # Reading a descriptor opened for writing only fails with EBADF.
    with (tmp_path / "write-only").open("wb") as stdin:
        completed = subprocess.run(
            [sys.executable, "-m", "maildesk.cli", "--config", str(config), "deliver"],
            stdin=stdin, capture_output=True, timeout=60,
            env={**os.environ, "MAILDESK_LANGUAGE": "en"},
        )

    output = completed.stderr.decode()
    assert completed.returncode == EX_TEMPFAIL, output
    assert "temporary failure, the MTA should retry: [Errno 9] Bad file descriptor" in output
    assert "Traceback" not in output


def test_deliver_exits_75_on_closed_stdin(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")

    completed = subprocess.run(
        [sys.executable, "-m", "maildesk.cli", "--config", str(config), "deliver"],
        capture_output=True, timeout=60, preexec_fn=lambda: os.close(0),
        env={**os.environ, "MAILDESK_LANGUAGE": "en"},
    )

    output = completed.stderr.decode()
    assert completed.returncode == EX_TEMPFAIL, output
    assert "temporary failure, the MTA should retry: standard input is closed" in output
    assert "Traceback" not in output


def test_deliver_exits_0_when_stdout_fails(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")

    # Writing to /dev/full fails with ENOSPC, as a full disk or a closed pipe would.
    with open("/dev/full", "wb") as stdout:
        completed = subprocess.run(
            [sys.executable, "-m", "maildesk.cli", "--config", str(config), "deliver"],
            input=mail(), stdout=stdout, stderr=subprocess.PIPE, timeout=60,
            env={**os.environ, "MAILDESK_LANGUAGE": "en"},
        )

    output = completed.stderr.decode()
    assert completed.returncode == 0, output
    assert "the mail is stored, but its result could not be written" in output
    assert "Traceback" not in output
    models.open_database(f"sqlite:///{tmp_path / 'db.sqlite'}", migrate=False)
    assert models.Ticket.select().count() == 1


def test_deliver_as_mta_pipe_process(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")

    completed = subprocess.run(
        [sys.executable, "-m", "maildesk.cli", "--config", str(config), "deliver"],
        input=mail(), capture_output=True, timeout=60,
        env={**os.environ, "MAILDESK_LANGUAGE": "en"},
    )

    assert completed.returncode == 0, completed.stderr.decode()[-2000:]
    models.open_database(f"sqlite:///{tmp_path / 'db.sqlite'}", migrate=False)
    assert models.Ticket.select().count() == 1


@pytest.mark.parametrize("language", ["pl", "en"])
def test_init_writes_a_loadable_starter(tmp_path: Path, language: str) -> None:
    result = _invoke("init", str(tmp_path / "desk"), "--language", language)

    assert result.exit_code == 0, result.output
    config = load_config(tmp_path / "desk" / "maildesk.yaml")
    assert config.language == language
    assert (tmp_path / "desk" / "templates" / "pl" / "acknowledgement.j2").exists()
    assert config.source is not None


@pytest.mark.parametrize(("language", "default_rule"),
                         [("pl", "domyslnie-pierwsza-linia"), ("en", "default-first-line")])
def test_init_rules_in_desk_language(tmp_path: Path, language: str, default_rule: str) -> None:
    from maildesk.desk import Desk
    from maildesk.rules import load_rules
    from maildesk.wiring import rule_environment

    _invoke("init", str(tmp_path / "desk"), "--language", language)
    rules_dir = tmp_path / "desk" / "rules"
    desk = Desk.open(tmp_path / "desk" / "maildesk.yaml")

    ruleset = load_rules(rules_dir, rule_environment(desk))

    names = [rule.name for rule in ruleset.rules]
    assert len(names) == 9
    assert names[-1] == default_rule
    assert not (rules_dir / "en").exists()


def test_check_commands_leave_database_alone(tmp_path: Path) -> None:
    import sqlite3

    _invoke("init", str(tmp_path / "desk"), "--language", "en")
    config = tmp_path / "desk" / "maildesk.yaml"
    text = config.read_text(encoding="utf-8")
    database = tmp_path / "check.sqlite"
    config.write_text(text.replace("sqlite:///data/maildesk.db", f"sqlite:///{database}"),
                      encoding="utf-8")

    rules = _invoke("--config", str(config), "rules", "check")
    templates = _invoke("--config", str(config), "templates", "check")

    assert rules.exit_code == 0, rules.output
    assert templates.exit_code == 0, templates.output
    if database.exists():
        tables = sqlite3.connect(database).execute("select count(*) from sqlite_master")
        assert tables.fetchone() == (0,)


@pytest.mark.parametrize("language", ["pl", "en"])
def test_init_names_rules_check(tmp_path: Path, language: str) -> None:
    # The starter rules name the starter's groups, so an admin who renames the groups
    # must check the rules before the first run, which would stop on them.
    config = tmp_path / "desk" / "maildesk.yaml"

    result = _invoke("init", str(tmp_path / "desk"), "--language", language,
                     env={"MAILDESK_LANGUAGE": language})

    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"maildesk --config {config} rules check" in text
    assert f"maildesk --config {config} templates check" in text
    assert f"maildesk --config {config} run" in text


def test_init_help_says_default_language() -> None:
    shown = _invoke("init", "--help", env={"MAILDESK_LANGUAGE": "pl"})

    text = " ".join(shown.output.split())
    assert "domyślnie: język tej pomocy, z MAILDESK_LANGUAGE albo z ustawień locale" in text
    assert "bieżący" not in text


def test_init_does_not_overwrite(tmp_path: Path) -> None:
    _invoke("init", str(tmp_path / "desk"))

    again = _invoke("init", str(tmp_path / "desk"))

    assert again.exit_code == 1
    assert "already exists" in again.output


def test_templates_check_reports_file_and_line(tmp_path: Path, database_url: str) -> None:
    templates = tmp_path / "templates"
    import shutil

    from maildesk.resources import shipped

    shutil.copytree(shipped("templates"), templates)
    broken = templates / "pl" / "acknowledgement.j2"
    lines = broken.read_text(encoding="utf-8").splitlines()
    lines.insert(5, "{{ ticket.no_such_field }}")
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = write_config(tmp_path, database_url, templates=str(templates))

    result = _invoke("--config", str(config), "templates", "check")

    assert result.exit_code == 1
    assert f"{broken}:6" in result.output
    assert "no_such_field" in result.output
    assert "1 error in the templates;" in result.output


def test_quarantine_list_and_retry(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url)
    _invoke("--config", str(config), "deliver", input=b"Subject: no sender here\r\n\r\nbody\r\n")

    listing = _invoke("--config", str(config), "quarantine", "list")
    retried = _invoke("--config", str(config), "quarantine", "retry", "1")

    assert "1 message in quarantine" in listing.output
    assert "   id quarantined at" in listing.output
    assert "no usable From address" in listing.output
    assert retried.exit_code == 1
    assert "failed again and stays in quarantine as 1" in retried.output
    assert models.Quarantine.select().count() == 1
    assert models.Outbox.select().where(models.Outbox.kind == "quarantine").count() == 1


def test_quarantine_list_header_in_polish(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url)
    _invoke("--config", str(config), "deliver", input=b"Subject: no sender here\r\n\r\nbody\r\n")

    listing = _invoke("--config", str(config), "quarantine", "list",
                      env={"MAILDESK_LANGUAGE": "pl"})

    header = next(line for line in listing.output.splitlines() if line.lstrip().startswith("nr"))
    assert header.split()[:5] == ["nr", "w", "kwarantannie", "od", "nadawca"]


def test_quarantine_retry_of_deleted_raw_file(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url)
    large = b"Subject: no sender here\r\n\r\n" + b"x" * 100_000 + b"\r\n"
    _invoke("--config", str(config), "deliver", input=large)
    stored = list((tmp_path / "storage" / "raw").rglob("*"))
    raw_files = [path for path in stored if path.is_file()]
    for path in raw_files:
        path.unlink()

    retried = _invoke("--config", str(config), "quarantine", "retry", "1")

    assert len(raw_files) == 1
    assert retried.exit_code == 1
    assert "cannot read the raw mail of quarantine entry 1" in retried.output
    assert models.Quarantine.get_by_id(1).state == "held"


def test_run_with_missing_password_variable_exits_78(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url, source={
        "type": "imap", "host": "127.0.0.1", "port": 1, "security": "none",
        "username": "helpdesk", "password_env": "MAILDESK_TEST_UNSET_VARIABLE"})

    result = _invoke("--config", str(config), "run", "--once")
    database = models.open_database(database_url, migrate=False)

    assert result.exit_code == 78
    assert "configuration error" in result.output
    assert "MAILDESK_TEST_UNSET_VARIABLE is not set" in result.output
    assert "Traceback" not in result.output
    # Found before the database was opened: no migration ran.
    assert not database.table_exists(models.SchemaVersion._meta.table_name)


def test_run_with_missing_maildir_exits_78(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url,
                          source={"type": "maildir", "path": str(tmp_path / "literowka")})

    result = _invoke("--config", str(config), "run", "--once")

    assert result.exit_code == 78
    assert "literowka does not exist" in result.output


def test_templates_render_unknown_name_is_one_line(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url)

    result = _invoke("--config", str(config), "templates", "render", "potwierdzenie")

    assert result.exit_code == 1
    assert "template 'potwierdzenie' not found; the templates are: acknowledgement," in (
        result.output)


def test_templates_render_outbox_kind_names_template(tmp_path: Path,
                                                     database_url: str) -> None:
    # The demo's outbox files end in -ack.eml and -new_ticket.eml, the kinds of the mail.
    config = write_config(tmp_path, database_url)

    ack = _invoke("--config", str(config), "templates", "render", "ack")
    new_ticket = _invoke("--config", str(config), "templates", "render", "new_ticket")
    misspelt = _invoke("--config", str(config), "templates", "render", "acknowledgment")

    assert ack.exit_code == 1
    assert "template 'ack' not found; did you mean acknowledgement? The templates are:" in (
        ack.output)
    assert new_ticket.exit_code == 1
    assert "did you mean new_ticket_agents?" in new_ticket.output
    assert misspelt.exit_code == 1
    assert "did you mean acknowledgement?" in misspelt.output


def test_templates_render_samples_in_ticket_language(tmp_path: Path,
                                                    database_url: str) -> None:
    # The preview of a ticket's mail is in the ticket's language, and so are the sample
    # texts that no ticket contains (a status, a reply, an escalation reason).
    config = write_config(tmp_path, database_url)
    english = mail(sender="John Smith <john.smith@example.org>", message_id="<en@example.org>",
                   subject="The VPN connection drops",
                   body="Hello,\n\nthe VPN connection drops every few minutes.\n\nJohn\n")
    _invoke("--config", str(config), "deliver", input=mail())
    _invoke("--config", str(config), "deliver", input=english)
    models.open_database(load_config(config).database_url, migrate=False)
    languages = {ticket.id: ticket.language for ticket in models.Ticket.select()}

    previews = {number: "\n".join(
        _invoke("--config", str(config), "templates", "render", name, "--ticket",
                str(number), env={"MAILDESK_LANGUAGE": "pl"}).output
        for name in ("user_replied", "command_confirmation", "escalation_manager"))
        for number in (1, 2)}

    assert languages == {1: "pl", 2: "en"}
    assert "Status: in progress, priority: P3 (medium)." in previews[2]
    assert "- priority: P3 (medium) → P2 (high)" in previews[2]
    assert "resolution time exceeded." in previews[2]
    for polish in ("w realizacji", "priorytet", "przekroczony", "Dzień dobry"):
        assert polish not in previews[2], polish
    assert "Status: w realizacji, priorytet: P3 (średni)." in previews[1]


def test_deliver_exits_75_when_config_is_a_directory(tmp_path: Path) -> None:
    result = _invoke("--config", str(tmp_path), "deliver", input=mail())

    assert result.exit_code == EX_TEMPFAIL
    assert str(tmp_path) in result.output
    assert "is a directory" in result.output
    assert "Traceback" not in result.output


def _run_as_nobody(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run the CLI in a fresh process as the user ``nobody``, as an MTA pipe runs it."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is needed to drop root privileges")
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
         sys.executable, "-m", "maildesk.cli", *args],
        input=mail(), capture_output=True, timeout=60,
        env={**os.environ, "MAILDESK_LANGUAGE": "en"},
    )


def test_deliver_exits_75_when_config_is_unreadable(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    tmp_path.chmod(0o755)
    config.chmod(0o600 if os.geteuid() == 0 else 0o000)

    if os.geteuid() == 0:
        completed = _run_as_nobody("--config", str(config), "deliver")
        exit_code, output = completed.returncode, completed.stderr.decode()
    else:
        result = _invoke("--config", str(config), "deliver", input=mail())
        exit_code, output = result.exit_code, result.output

    assert exit_code == EX_TEMPFAIL, output
    assert str(config) in output
    assert "permission denied" in output
    assert "Traceback" not in output


def test_tickets_list_with_directory_config_exits_78(tmp_path: Path) -> None:
    result = _invoke("--config", str(tmp_path), "tickets", "list")

    assert result.exit_code == 78
    assert f"{tmp_path}: " in result.output
    assert "is a directory" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_init_under_a_regular_file_fails_cleanly(tmp_path: Path) -> None:
    regular = tmp_path / "maildesk.yaml"
    regular.write_text("desk: {}\n", encoding="utf-8")

    result = _invoke("init", str(regular / "sub"))

    assert result.exit_code == 1
    assert str(regular / "sub") in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def _unused_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _desk_with_unreachable_smtp(tmp_path: Path, database_url: str) -> Path:
    """Deliver one mail to a desk whose SMTP server is down, so the outbox keeps its replies."""
    config = write_config(tmp_path, database_url, smtp={
        "transport": "smtp", "host": "127.0.0.1", "port": _unused_port(), "security": "none",
        "timeout": 5})
    delivered = _invoke("--config", str(config), "deliver", input=mail())
    assert delivered.exit_code == 0, delivered.output
    return config


def test_outbox_retry_reports_unreachable_smtp(tmp_path: Path, database_url: str) -> None:
    config = _desk_with_unreachable_smtp(tmp_path, database_url)
    first = models.Outbox.select().order_by(models.Outbox.id).get()

    result = _invoke("--config", str(config), "outbox", "retry", str(first.id))

    assert result.exit_code == EX_TEMPFAIL, result.output
    assert "0 mails sent" not in result.output
    assert f"mail {first.id} was not sent" in result.output
    assert "SMTP server unreachable" in result.output
    assert models.Outbox.get_by_id(first.id).state == "pending"


def test_command_on_locked_database_fails_temporarily(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    database = tmp_path / "db.sqlite"
    config = write_config(tmp_path, f"sqlite:///{database}")
    assert _invoke("--config", str(config), "outbox", "list").exit_code == 0
    monkeypatch.setattr(models, "SQLITE_BUSY_TIMEOUT_MS", 100)
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = _invoke("--config", str(config), "outbox", "retry", "1")
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert result.exit_code == EX_TEMPFAIL, result.output
    assert "temporary failure, try again later: database unavailable: database is " \
        "locked" in result.output
    assert f"held a write lock on {database}" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", [("tickets", "list"), ("deliver",)])
def test_command_on_damaged_database_fails_temporarily(tmp_path: Path,
                                                       command: tuple[str, ...]) -> None:
    database = tmp_path / "db.sqlite"
    config = write_config(tmp_path, f"sqlite:///{database}")
    database.write_bytes(b"not a database, but a file copied over it\n" * 100)

    result = CliRunner().invoke(main, ["--config", str(config), *command], input=mail(),
                                env={"MAILDESK_LANGUAGE": "en"})

    assert result.exit_code == EX_TEMPFAIL, result.output
    assert "file is not a database" in result.output
    assert f"{database} is damaged or is not a SQLite database: restore it from a " \
        "backup" in result.output
    assert "Traceback" not in result.output


def test_outbox_send_reports_unreachable_smtp(tmp_path: Path, database_url: str) -> None:
    from datetime import UTC, datetime, timedelta

    config = _desk_with_unreachable_smtp(tmp_path, database_url)
    models.Outbox.update(next_attempt_at=datetime.now(UTC) - timedelta(minutes=1)).execute()
    queued = models.Outbox.select().count()

    result = _invoke("--config", str(config), "outbox", "send",
                     env={"MAILDESK_LANGUAGE": "pl"})

    assert result.exit_code == EX_TEMPFAIL, result.output
    assert "wysłano 0 wiadomości" not in result.output
    assert result.output.count("nie została wysłana") == queued
    assert "serwer SMTP jest nieosiągalny" in result.output


def test_outbox_send_names_mail_waiting_for_retry(tmp_path: Path, database_url: str) -> None:
    from datetime import UTC, datetime, timedelta

    config = _desk_with_unreachable_smtp(tmp_path, database_url)
    later = datetime.now(UTC).replace(tzinfo=None) + timedelta(minutes=30)
    models.Outbox.update(next_attempt_at=later, state="pending").execute()
    waiting = models.Outbox.select().count()

    result = _invoke("--config", str(config), "outbox", "send")

    assert result.exit_code == 0, result.output
    assert "0 mails sent" in result.output
    assert f"{waiting} mail" in result.output
    assert "wait" in result.output
    assert "maildesk outbox list --state pending" in result.output


def test_contacts_language_show_set_and_clear(tmp_path: Path) -> None:
    # The requester's stored language comes before the rules' and the guess, and until
    # now only SQL could correct a wrong guess.
    _invoke("demo", str(tmp_path / "demo"))
    config = str(tmp_path / "demo" / "maildesk.yaml")
    address = "Zofia.Wisniewska@firma.example"

    before = _invoke("--config", config, "contacts", "language", address)
    changed = _invoke("--config", config, "contacts", "language", address, "en")
    after = _invoke("--config", config, "contacts", "language", address)
    cleared = _invoke("--config", config, "contacts", "language", address, "none",
                      env={"MAILDESK_LANGUAGE": "pl"})
    unknown = _invoke("--config", config, "contacts", "language", "nobody@example.org")

    assert before.stdout == "zofia.wisniewska@firma.example: Polish\n"
    assert changed.exit_code == 0, changed.output
    assert changed.stdout == ("mail to zofia.wisniewska@firma.example is now in English; "
                              "1 open ticket switched\n")
    assert models.Ticket.get_by_id(1).language == "en"
    assert after.stdout == "zofia.wisniewska@firma.example: English\n"
    assert cleared.stdout == ("wyczyszczono język adresu zofia.wisniewska@firma.example; "
                              "następne nowe zgłoszenie ustali go z treści wiadomości\n")
    assert ("administrator wyczyścił zapisany język adresu zofia.wisniewska@firma.example"
            in cleared.stderr)
    assert " na -" not in cleared.stderr
    assert models.Contact.get(
        models.Contact.address == "zofia.wisniewska@firma.example").language is None
    assert unknown.exit_code == 1
    assert "no requester with the address nobody@example.org" in unknown.output


def test_cli_runs_as_python_module() -> None:
    result = subprocess.run([sys.executable, "-m", "maildesk", "--help"], capture_output=True,
                            text=True, check=False,
                            env={**os.environ, "MAILDESK_LANGUAGE": "en"})

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: maildesk ")


def test_run_warns_once_of_a_world_readable_secret_file(
        tmp_path: Path, database_url: str) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text("tajne\n", encoding="utf-8")
    secret.chmod(0o644)
    config = write_config(tmp_path, database_url, smtp={"password_file": str(secret)})

    result = _invoke("--config", str(config), "run", "--once")

    assert result.exit_code == 0, result.output
    assert result.output.count("readable by every user") == 1


def test_deliver_start_loads_no_unneeded_modules(tmp_path: Path, database_url: str) -> None:
    """A warm deliver process imports neither holidays, the IMAP client nor the daemon."""
    config = write_config(tmp_path, database_url)
    probe = (
        "import sys\n"
        "from maildesk.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:], prog_name='maildesk')\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "print(sorted(name for name in ('holidays', 'imapclient', 'maildesk.daemon')\n"
        "             if name in sys.modules), file=sys.stderr)\n"
    )
    environment = dict(os.environ, MAILDESK_LANGUAGE="en",
                       PYTHONPATH=str(Path(__file__).resolve().parent.parent))

    runs = []
    for number in range(3):
        runs.append(subprocess.run(
            [sys.executable, "-c", probe, "--config", str(config), "deliver"],
            input=mail(message_id=f"<start{number}@example.org>"), capture_output=True,
            env=environment, check=False))

    assert [run.returncode for run in runs] == [0, 0, 0], runs[-1].stderr
    assert "created" in runs[2].stdout.decode()
    assert runs[2].stderr.decode().strip().splitlines()[-1] == "[]"
