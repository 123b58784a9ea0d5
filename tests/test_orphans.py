"""Open tickets of a group or agent removed from maildesk.yaml: warnings, notices, fixes."""

from __future__ import annotations

import json
import logging
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from deskfactory import ADMIN_ADDRESS, base_config, mail, make_desk, write_config

from maildesk import models, orphans, pipeline
from maildesk.cli import main
from maildesk.desk import Desk
from maildesk.wiring import build_daemon

PIOTR = {"login": "piotr.lis", "name": "Piotr Lis", "addresses": ["piotr.lis@example.com"],
         "groups": ["siec", "pierwsza-linia"]}
SIEC = {"name": "siec", "tier": 1, "description": "Sieć"}
# Priority 3 tickets of pierwsza-linia have their own, shorter targets, so a move there
# re-plans the due times.
SLA = {"policies": [
    {"priority": 1, "first_response": "30m", "resolution": "4h", "hours": "24x7"},
    {"priority": 2, "first_response": "1h", "resolution": "8h"},
    {"priority": 3, "first_response": "4h", "resolution": "24h"},
    {"priority": 4, "first_response": "8h", "resolution": "40h"},
    {"priority": 3, "group": "pierwsza-linia", "first_response": "1h", "resolution": "8h"},
]}


def full_desk(tmp_path: Path, database_url: str, **overrides: Any) -> Desk:
    """The desk before the change: group siec, and agent piotr.lis in it."""
    config = base_config(database_url, tmp_path)
    return make_desk(tmp_path, database_url, groups=[*config["groups"], SIEC],
                     agents=[*config["agents"], PIOTR], sla=SLA, **overrides)


def reconfigure(tmp_path: Path, database_url: str, *, keep_group: bool = False,
                keep_agent: bool = True, **overrides: Any) -> Path:
    """Write the configuration after the change: siec removed, piotr.lis maybe too."""
    config = base_config(database_url, tmp_path)
    groups = [*config["groups"], *([SIEC] if keep_group else [])]
    piotr = {**PIOTR, "groups": PIOTR["groups"] if keep_group else ["pierwsza-linia"]}
    agents = [*config["agents"], *([piotr] if keep_agent else [])]
    return write_config(tmp_path, database_url, groups=groups, agents=agents, sla=SLA,
                        **overrides)


def reopen(path: Path) -> Desk:
    desk = Desk.open(path)
    desk.store.fsync = False
    return desk


def new_ticket(desk: Desk, number: int, *, group: str | None = "siec",
               assignee: str | None = None, status: str | None = None) -> models.Ticket:
    """A user opens a ticket by mail; it is then put in ``group`` for ``assignee``."""
    outcome = pipeline.process(desk, mail(subject=f"Problem {number}",
                                          message_id=f"<t{number}@example.org>"),
                               f"test:{number}")
    ticket = models.Ticket.get_by_id(outcome.ticket)
    ticket.group = group
    ticket.assignee = assignee
    ticket.status = status or ("assigned" if assignee else "new")
    ticket.save()
    return ticket


def follow_up(desk: Desk, ticket: models.Ticket, number: int) -> None:
    pipeline.process(desk, mail(subject=f"Re: [#{ticket.id}] Problem",
                                message_id=f"<f{number}@example.org>",
                                body="Nadal nie działa.\n"), f"test:f{number}")


def outbox(kind: str) -> list[models.Outbox]:
    return list(models.Outbox.select().where(models.Outbox.kind == kind)
                .order_by(models.Outbox.id))


def events(action: str, ticket: models.Ticket | None = None) -> list[models.Event]:
    query = models.Event.select().where(models.Event.action == action)
    if ticket is not None:
        query = query.where(models.Event.ticket == ticket)
    return list(query.order_by(models.Event.id))


def text_of(row: models.Outbox) -> str:
    message = message_from_bytes(bytes(row.raw), policy=default_policy)
    assert isinstance(message, EmailMessage)
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


def reload(ticket: models.Ticket) -> models.Ticket:
    return models.Ticket.get_by_id(ticket.id)


def run(path: Path, *arguments: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(main, ["--config", str(path), *arguments], input=stdin,
                              catch_exceptions=False)


# --------------------------------------------------------------------------- notices


def test_followup_on_ticket_of_removed_group_reaches_admins(
        tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    desk = full_desk(tmp_path, database_url)
    ticket = new_ticket(desk, 1)
    desk = reopen(reconfigure(tmp_path, database_url))

    with caplog.at_level(logging.WARNING, logger="maildesk"):
        follow_up(desk, ticket, 1)

    [notice] = outbox("user_replied")
    assert notice.recipients.split() == [ADMIN_ADDRESS]
    assert (f"zgłoszenie {ticket.id}: grupy siec nie ma już w konfiguracji, więc "
            "powiadomienie o odpowiedzi <f1@example.org> dostają administratorzy"
            ) in caplog.text


def test_sla_breach_of_removed_group_reaches_admins(tmp_path: Path, database_url: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    from datetime import timedelta

    from maildesk.scheduler import Scheduler

    desk = full_desk(tmp_path, database_url)
    ticket = new_ticket(desk, 1)
    desk = reopen(reconfigure(tmp_path, database_url))

    with caplog.at_level(logging.WARNING, logger="maildesk"):
        Scheduler(desk).run(models.to_utc(reload(ticket).resolution_due) + timedelta(days=1))

    breaches = outbox("escalation_breach")
    assert breaches
    assert all(row.recipients.split() == [ADMIN_ADDRESS] for row in breaches)
    assert (f"zgłoszenie {ticket.id}: grupy siec nie ma już w konfiguracji, więc "
            "powiadomienie SLA dostają administratorzy") in caplog.text
    assert (f"zgłoszenie {ticket.id}: grupy siec nie ma już w konfiguracji, więc wiadomość "
            "o eskalacji nie trafia do jej kierownika") in caplog.text


# --------------------------------------------------------------------------- detection


def test_removal_warns_and_mails_admins_once(tmp_path: Path, database_url: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    desk = full_desk(tmp_path, database_url)
    for number in (1, 2):
        new_ticket(desk, number)
    new_ticket(desk, 3, status="resolved")
    new_ticket(desk, 4, status="closed")
    new_ticket(desk, 5, group="pierwsza-linia", assignee="piotr.lis")
    new_ticket(desk, 6, group="pierwsza-linia", assignee="piotr.lis@example.com")
    path = reconfigure(tmp_path, database_url, keep_agent=False)

    with caplog.at_level(logging.WARNING, logger="maildesk"):
        desk = reopen(path)
        reopen(path)

    [notice] = outbox("orphaned_tickets")
    assert notice.recipients.split() == [ADMIN_ADDRESS]
    text = text_of(notice)
    assert "siec: 2 otwarte zgłoszenia" in text
    assert "tickets move-group siec NEW-GROUP" in text
    assert "piotr.lis: 2 przypisane otwarte zgłoszenia" in text
    assert "tickets unassign --agent piotr.lis" in text
    warnings = [record.getMessage() for record in caplog.records
                if record.name == "maildesk.orphans"]
    assert len(warnings) == 2
    assert warnings[0].startswith("grupy siec nie ma już w konfiguracji, a nadal są w niej "
                                  "2 otwarte zgłoszenia")
    assert f"maildesk --config {path} tickets move-group siec NEW-GROUP" in warnings[0]
    assert warnings[1].startswith("konsultanta piotr.lis nie ma już w konfiguracji, a nadal "
                                  "ma przypisane 2 otwarte zgłoszenia")

    # Every daemon start warns again, with the counts of the moment; no second mail.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="maildesk"):
        build_daemon(desk)
    started = [record.getMessage() for record in caplog.records
               if record.name == "maildesk.orphans"]
    assert len(started) == 2
    assert "2 otwarte zgłoszenia" in started[0]
    assert len(outbox("orphaned_tickets")) == 1


def test_rename_suggests_the_new_group(tmp_path: Path, database_url: str) -> None:
    desk = full_desk(tmp_path, database_url)
    new_ticket(desk, 1)
    config = base_config(database_url, tmp_path)
    renamed = {**SIEC, "name": "sieci"}
    path = write_config(tmp_path, database_url, groups=[*config["groups"], renamed],
                        agents=[*config["agents"], {**PIOTR, "groups": ["sieci"]}], sla=SLA)

    reopen(path)

    [notice] = outbox("orphaned_tickets")
    assert "tickets move-group siec sieci" in text_of(notice)


def test_cli_agents_check(tmp_path: Path, database_url: str) -> None:
    desk = full_desk(tmp_path, database_url)
    new_ticket(desk, 1)
    new_ticket(desk, 2, group="pierwsza-linia", assignee="piotr.lis")
    path = reconfigure(tmp_path, database_url, keep_agent=False)

    found = run(path, "agents", "check")

    assert found.exit_code == 1, found.output
    lines = found.stdout.splitlines()
    assert lines[0].startswith("grupy siec nie ma już w konfiguracji, a nadal jest w niej 1 "
                               "otwarte zgłoszenie")
    assert lines[1].startswith("konsultanta piotr.lis nie ma już w konfiguracji, a nadal ma "
                               "przypisane 1 otwarte zgłoszenie")
    assert lines[1].endswith(f"maildesk --config {path} tickets unassign --agent piotr.lis")

    assert run(path, "tickets", "move-group", "siec", "druga-linia", "--yes").exit_code == 0
    assert run(path, "tickets", "unassign", "--agent", "piotr.lis", "--yes").exit_code == 0
    clean = run(path, "agents", "check")
    assert clean.exit_code == 0, clean.output


# --------------------------------------------------------------------------- move-group


def test_move_group_moves_replans_and_notifies(tmp_path: Path, database_url: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(orphans, "BATCH_SIZE", 2)
    desk = full_desk(tmp_path, database_url)
    waiting = new_ticket(desk, 1)
    stays_assigned = new_ticket(desk, 2, assignee="piotr.lis")
    released = new_ticket(desk, 3, assignee="ewa.nowak", status="in_progress")
    done = new_ticket(desk, 4, status="closed")
    due_before = reload(waiting).resolution_due
    path = reconfigure(tmp_path, database_url)
    reopen(path)

    result = run(path, "tickets", "move-group", "siec", "pierwsza-linia", "--yes")

    assert result.exit_code == 0, result.output
    assert "przeniesiono 3 zgłoszenia do pierwsza-linia" in result.output
    groups = [reload(ticket).group for ticket in (waiting, stays_assigned, released, done)]
    assert groups == ["pierwsza-linia", "pierwsza-linia", "pierwsza-linia", "siec"]
    # piotr.lis is in pierwsza-linia too; ewa.nowak is not, so her ticket is queued again.
    assert reload(stays_assigned).assignee == "piotr.lis"
    assert reload(released).assignee is None
    assert reload(released).status == "new"
    [moved] = events("group_changed", waiting)
    assert moved.actor.startswith("admin")
    assert (json.loads(moved.before), json.loads(moved.after)) == ("siec", "pierwsza-linia")
    assert json.loads(moved.detail)["source"] == "admin"
    assert len(events("group_changed")) == 3
    assert events("assignee_changed", released)[0].actor.startswith("admin")
    # The shorter targets of pierwsza-linia count from the ticket's start.
    assert reload(waiting).resolution_due < due_before
    assert events("sla_replan", waiting)
    dispatched = outbox("dispatch")
    assert len(dispatched) == 3
    assert all("marek.zielinski@example.com" in row.recipients for row in dispatched)

    again = run(path, "tickets", "move-group", "siec", "pierwsza-linia", "--yes")

    assert again.exit_code == 0, again.output
    assert "grupa siec nie ma otwartych zgłoszeń" in again.output
    assert len(events("group_changed")) == 3
    assert len(outbox("dispatch")) == 3


def test_move_group_dry_run_changes_nothing(tmp_path: Path, database_url: str) -> None:
    desk = full_desk(tmp_path, database_url)
    first = new_ticket(desk, 1)
    second = new_ticket(desk, 2, assignee="ewa.nowak")
    path = reconfigure(tmp_path, database_url)
    reopen(path)
    event_count = models.Event.select().count()
    mail_count = models.Outbox.select().count()

    result = run(path, "tickets", "move-group", "siec", "pierwsza-linia", "--dry-run")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"[#{first.id}] Problem 1: siec -> pierwsza-linia")
    assert "zwolnienie przypisania ewa.nowak (spoza grupy pierwsza-linia)" in lines[1]
    assert lines[-1] == ("2 otwarte zgłoszenia zostałyby przeniesione z siec do "
                         "pierwsza-linia; niczego nie zmieniono (próba)")
    assert reload(first).group == reload(second).group == "siec"
    assert models.Event.select().count() == event_count
    assert models.Outbox.select().count() == mail_count


def test_move_group_refuses_unknown_target_and_asks_first(tmp_path: Path,
                                                          database_url: str) -> None:
    desk = full_desk(tmp_path, database_url)
    ticket = new_ticket(desk, 1)
    path = reconfigure(tmp_path, database_url)
    reopen(path)

    unknown = run(path, "tickets", "move-group", "siec", "siec", "--yes")
    declined = run(path, "tickets", "move-group", "siec", "druga-linia", stdin="n\n")

    assert unknown.exit_code == 2
    assert "siec nie jest skonfigurowaną grupą; grupy to: druga-linia, pierwsza-linia" in (
        unknown.output)
    assert declined.exit_code == 1
    assert "Przenieść 1 otwarte zgłoszenie z grupy siec do druga-linia?" in declined.output
    assert reload(ticket).group == "siec"


# --------------------------------------------------------------------------- unassign


def test_unassign_releases_tickets_of_removed_agent(tmp_path: Path, database_url: str) -> None:
    desk = full_desk(tmp_path, database_url)
    assigned = new_ticket(desk, 1, group="pierwsza-linia", assignee="piotr.lis")
    # A ticket may name its assignee by address.
    working = new_ticket(desk, 2, group="pierwsza-linia", assignee="piotr.lis@example.com",
                         status="in_progress")
    other = new_ticket(desk, 3, group="pierwsza-linia", assignee="marek.zielinski")
    path = reconfigure(tmp_path, database_url, keep_agent=False)
    desk = reopen(path)

    # Meanwhile a reply reaches the group's agents, as on an unassigned ticket.
    follow_up(desk, assigned, 1)
    assert [row.recipients.split() for row in outbox("user_replied")] == [
        ["marek.zielinski@example.com"]]

    result = run(path, "tickets", "unassign", "--agent", "piotr.lis", "--yes")

    assert result.exit_code == 0, result.output
    assert "zwolniono 2 zgłoszenia" in result.output
    for ticket, before in ((assigned, "piotr.lis"), (working, "piotr.lis@example.com")):
        stored = reload(ticket)
        assert (stored.assignee, stored.status) == (None, "new")
        [event] = events("assignee_changed", ticket)
        assert event.actor.startswith("admin")
        assert (json.loads(event.before), event.after) == (before, None)
    assert reload(other).assignee == "marek.zielinski"
    again = run(path, "tickets", "unassign", "--agent", "piotr.lis", "--yes")
    assert "konsultant piotr.lis nie ma otwartych zgłoszeń" in again.output


def test_unassign_to_another_agent(tmp_path: Path, database_url: str) -> None:
    desk = full_desk(tmp_path, database_url)
    ticket = new_ticket(desk, 1, group="pierwsza-linia", assignee="piotr.lis")
    path = reconfigure(tmp_path, database_url, keep_agent=False)
    reopen(path)

    dry = run(path, "tickets", "unassign", "--agent", "piotr.lis", "--to", "marek.zielinski",
              "--dry-run")
    assert reload(ticket).assignee == "piotr.lis"
    assert f"[#{ticket.id}] Problem 1: piotr.lis -> marek.zielinski" in dry.output
    unknown = run(path, "tickets", "unassign", "--agent", "piotr.lis", "--to", "piotr.lis")
    assert unknown.exit_code == 2

    result = run(path, "tickets", "unassign", "--agent", "piotr.lis", "--to",
                 "marek.zielinski", "--yes")

    assert result.exit_code == 0, result.output
    assert reload(ticket).assignee == "marek.zielinski"
    assert events("assignee_changed", ticket)[0].actor.startswith("admin")


# --------------------------------------------------------------------------- daily summary


def test_summary_counts_removed_assignee_unassigned(
        tmp_path: Path, database_url: str) -> None:
    from datetime import UTC, datetime

    from maildesk.dailysummary import DailySummary

    summary = {"daily_summary": {"at": "08:00"}}
    desk = full_desk(tmp_path, database_url, **summary)
    working = new_ticket(desk, 1, group="pierwsza-linia", assignee="piotr.lis",
                         status="in_progress")
    desk = reopen(reconfigure(tmp_path, database_url, keep_agent=False, **summary))

    # Tuesday 8 December 2026, 09:00 in Warsaw: a working day, after the summary time.
    sent = DailySummary(desk).run(datetime(2026, 12, 8, 8, 0, tzinfo=UTC))

    assert "marek.zielinski@example.com" in sent
    assert "kierownik@example.com" in sent
    rows = {row.recipients.strip(): text_of(row) for row in outbox("daily_summary")}
    agent = rows["marek.zielinski@example.com"]
    assert "Nowe i nieprzypisane w grupie pierwsza-linia: 1" in agent
    assert f"[#{working.id}]" in agent
    assert "bez osoby przypisanej: 1" in rows["kierownik@example.com"]


# --------------------------------------------------------------------------- concurrent changes


def test_release_leaves_ticket_resolved_meanwhile(tmp_path: Path, database_url: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from maildesk import lifecycle

    desk = full_desk(tmp_path, database_url)
    first = new_ticket(desk, 1, group="pierwsza-linia", assignee="piotr.lis")
    second = new_ticket(desk, 2, group="pierwsza-linia", assignee="piotr.lis")
    desk = reopen(reconfigure(tmp_path, database_url, keep_agent=False))
    assign = lifecycle.assign

    def assign_while_agent_resolves(*arguments: Any, **keywords: Any) -> Any:
        # The daemon records the agent's "#resolve" of the second ticket after the batch
        # was read: the release must not see the second ticket as still assigned.
        if arguments[1].id == first.id:
            models.Ticket.update(status="resolved").where(
                models.Ticket.id == second.id).execute()
        return assign(*arguments, **keywords)

    monkeypatch.setattr(lifecycle, "assign", assign_while_agent_resolves)

    result = orphans.release_agent(desk, "piotr.lis", "admin:test")

    assert result.changed == [first.id]
    assert (reload(second).status, reload(second).assignee) == ("resolved", "piotr.lis")
    assert not events("assignee_changed", second)


def test_move_leaves_ticket_closed_meanwhile(tmp_path: Path, database_url: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from maildesk import escalation

    desk = full_desk(tmp_path, database_url)
    first = new_ticket(desk, 1)
    second = new_ticket(desk, 2)
    desk = reopen(reconfigure(tmp_path, database_url))
    move_to_group = escalation.move_to_group

    def move_while_agent_closes(*arguments: Any, **keywords: Any) -> Any:
        if arguments[1].id == first.id:
            models.Ticket.update(status="closed").where(
                models.Ticket.id == second.id).execute()
        return move_to_group(*arguments, **keywords)

    monkeypatch.setattr(escalation, "move_to_group", move_while_agent_closes)

    result = orphans.move_group(desk, "siec", "pierwsza-linia", "admin:test")

    assert result.changed == [first.id]
    assert (reload(second).status, reload(second).group) == ("closed", "siec")
    assert not events("group_changed", second)


# --------------------------------------------------------------------------- suggested commands


@pytest.mark.parametrize("group", ["-sieć 'a' $(id)", "sieć zachód", "--yes"])
def test_suggested_move_command_runs_as_printed(tmp_path: Path, database_url: str,
                                                group: str) -> None:
    import shlex

    desk = full_desk(tmp_path, database_url)
    ticket = new_ticket(desk, 1, group=group)
    path = reconfigure(tmp_path, database_url)

    found = run(path, "agents", "check")
    command = shlex.split(found.stdout.splitlines()[0].rpartition(": ")[2])
    assert command[:3] == ["maildesk", "--config", str(path)]
    arguments = [argument.replace(orphans.NEW_GROUP_PLACEHOLDER, "druga-linia")
                 for argument in command[3:]]
    moved = CliRunner().invoke(main, ["--config", str(path), *arguments], input="y\n",
                               catch_exceptions=False)

    assert moved.exit_code == 0, moved.output
    assert reload(ticket).group == "druga-linia"
