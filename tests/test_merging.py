"""Merging a duplicate ticket into another: ``#scal``/``#merge`` and ``tickets merge``.

Every test runs the whole pipeline on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from deskfactory import mail, record_sql
from test_conversation import (
    EWA,
    PASS,
    REQUESTER,
    agent_mail,
    conversation_desk,
    events,
    loads,
    open_ticket,
    outbox,
    parsed,
    process,
    reload,
    text_of,
)

from maildesk import models, statements
from maildesk.cli import main
from maildesk.desk import Desk
from maildesk.tickets import MAX_PARTICIPANTS

ZOFIA = "zofia.wisniewska@example.org"
JAN = "Jan Kowalski <jan.kowalski@example.org>"
TOMASZ = "Tomasz Lis <tomasz.lis@example.org>"


def two_tickets(desk: Desk, *, duplicate_sender: str = REQUESTER,
                cc: str | None = None) -> tuple[models.Ticket, str, models.Ticket, str]:
    """Open the target (Jan's) and then the duplicate; return both with their acks."""
    target, target_ack = open_ticket(desk, sender=JAN, message_id="<target@example.org>")
    duplicate, duplicate_ack = open_ticket(desk, sender=duplicate_sender, cc=cc,
                                           message_id="<duplicate@example.org>")
    return duplicate, duplicate_ack, target, target_ack


def merge_by_mail(desk: Desk, ack: str, number: int, *, body: str = "Duplikat.\n",
                  message_id: str = "<merge@mail.example.com>", sender: str | None = None
                  ) -> Any:
    extra = {"sender": sender} if sender else {}
    return process(desk, agent_mail(f"#scal {number}\n\n{body}", ack, message_id=message_id,
                                    **extra))


def participants(ticket: models.Ticket) -> dict[str, str]:
    rows = (models.Participant.select(models.Participant, models.Contact)
            .join(models.Contact).where(models.Participant.ticket == ticket.id))
    return {row.contact.address: row.role for row in rows}


def clock_state(ticket: models.Ticket) -> str:
    return str(json.loads(reload(ticket).sla_state)["state"])


# --------------------------------------------------------------------------- the merge


def test_merge_moves_messages_and_closes(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    duplicate, ack, target, _target_ack = two_tickets(desk)

    merge_by_mail(desk, ack, target.id)

    merged = reload(duplicate)
    assert merged.status == "closed"
    assert merged.merged_into_id == target.id
    assert reload(target).status == "new"
    assert models.Message.select().where(models.Message.ticket == duplicate.id).count() == 0
    moved = [row.message_id for row in models.Message.select().where(
        models.Message.ticket == target.id).order_by(models.Message.id)]
    assert moved == ["<target@example.org>", "<duplicate@example.org>",
                     "<merge@mail.example.com>"]
    assert models.MessageReference.select().where(
        models.MessageReference.ticket == duplicate.id).count() == 0
    assert models.MessageReference.get(
        models.MessageReference.message_id == ack).ticket_id == target.id


def test_merge_records_events_on_both(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    duplicate, ack, target, _target_ack = two_tickets(desk)

    merge_by_mail(desk, ack, target.id)

    [into] = events("merged_into")
    assert into.ticket_id == duplicate.id
    assert into.actor == "marek.zielinski"
    assert loads(into.detail)["target"] == target.id
    assert loads(into.detail)["message_id"] == "<merge@mail.example.com>"
    [from_] = events("merged_from")
    assert from_.ticket_id == target.id
    assert loads(from_.detail)["merged"] == duplicate.id
    closed = [event for event in events("status_changed") if event.ticket_id == duplicate.id]
    assert [loads(event.after) for event in closed] == ["closed"]
    assert loads(closed[0].detail)["source"] == "agent_command"


def test_merge_stops_duplicate_clock_only(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    duplicate, ack, target, _target_ack = two_tickets(desk)
    target_before = reload(target)

    merge_by_mail(desk, ack, target.id)

    assert clock_state(duplicate) == "resolved"
    merged = reload(duplicate)
    assert merged.first_response_warning_due is None
    assert merged.resolution_warning_due is None
    target_after = reload(target)
    assert target_after.sla_state == target_before.sla_state
    assert target_after.resolution_due == target_before.resolution_due
    # The duplicate's requester gets the merge notice, not the closing notice.
    assert outbox("status_closed") == []


def test_merge_text_stays_internal_note(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    duplicate, ack, target, _target_ack = two_tickets(desk)

    merge_by_mail(desk, ack, target.id, body="To ten sam problem co u Jana.\n")

    assert outbox("reply") == []
    entry = models.Message.get(models.Message.message_id == "<merge@mail.example.com>")
    assert entry.kind == "internal_note"
    assert entry.ticket_id == target.id
    [confirmation] = outbox("command_confirmation")
    assert confirmation.ticket_id == target.id
    text = text_of(confirmation)
    assert f"Wykonano polecenia w zgłoszeniu [#{duplicate.id}]" in text
    assert f"Zgłoszenie [#{duplicate.id}] scalono ze zgłoszeniem [#{target.id}]" in text
    assert "- status: nowe → zamknięte" in text
    assert "ponieważ wiadomość scala zgłoszenie" in text


# --------------------------------------------------------------------------- people


def test_merge_adds_people_as_participants(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    duplicate, ack, target, _target_ack = two_tickets(desk, cc=TOMASZ)

    merge_by_mail(desk, ack, target.id)

    assert participants(target) == {ZOFIA: "cc", "tomasz.lis@example.org": "cc"}
    # The duplicate keeps its own list, for the record.
    assert participants(duplicate) == {"tomasz.lis@example.org": "cc"}


def test_merge_notice_once_per_person(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    duplicate, ack, target, _target_ack = two_tickets(desk, cc=TOMASZ)

    merge_by_mail(desk, ack, target.id)

    [notice] = outbox("ticket_merged")
    assert notice.recipients.split() == [ZOFIA, "tomasz.lis@example.org"]
    assert notice.ticket_id == target.id
    assert notice.subject == (f"[#{target.id}] Zgłoszenie {duplicate.id} scalone ze "
                              f"zgłoszeniem {target.id}: Drukarka nie drukuje")
    text = text_of(notice)
    assert f"Zajmujemy się nim dalej jako zgłoszeniem {target.id}" in text
    assert "Twoje zgłoszenie" not in text
    # The notice continues the requester's own thread.
    assert "<duplicate@example.org>" in parsed(notice)["References"]


def test_merge_keeps_dispatched_mailbox_role(tmp_path: Path, database_url: str) -> None:
    # A vendor mailbox the duplicate was dispatched to follows it, but gets no user notice.
    desk = conversation_desk(tmp_path, database_url)
    duplicate, ack, target, _target_ack = two_tickets(desk)
    vendor = models.Contact.create(address="serwis@dostawca.example.net")
    models.Participant.create(ticket=duplicate.id, contact=vendor, role="dispatch")

    merge_by_mail(desk, ack, target.id)

    assert participants(target) == {ZOFIA: "cc", "serwis@dostawca.example.net": "dispatch"}
    [notice] = outbox("ticket_merged")
    assert notice.recipients.split() == [ZOFIA]


def test_merge_leaves_agent_requester_out(tmp_path: Path, database_url: str) -> None:
    # An agent who opened the duplicate with a new mail is no participant, and no user.
    desk = conversation_desk(tmp_path, database_url)
    target, _target_ack = open_ticket(desk, sender=JAN, message_id="<target@example.org>")
    outcome = process(desk, mail(sender=EWA, subject="Drukarka na 2. piętrze",
                                 message_id="<byagent@mail.example.com>",
                                 headers={"Authentication-Results": PASS}), "test:agent")
    duplicate = models.Ticket.get_by_id(outcome.ticket)
    ack = models.Outbox.get(models.Outbox.ticket == duplicate.id,
                            models.Outbox.kind == "ack").message_id

    merge_by_mail(desk, ack, target.id)

    assert reload(duplicate).merged_into_id == target.id
    assert participants(target) == {}
    assert outbox("ticket_merged") == []


def test_merge_notice_in_each_language(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    duplicate, ack, target, _target_ack = two_tickets(desk, cc=TOMASZ)
    models.Contact.update(language="en").where(
        models.Contact.address == "tomasz.lis@example.org").execute()

    merge_by_mail(desk, ack, target.id)

    notices = {row.recipients.split()[0]: row for row in outbox("ticket_merged")}
    assert set(notices) == {ZOFIA, "tomasz.lis@example.org"}
    english = text_of(notices["tomasz.lis@example.org"])
    assert f"We continue to work on it as ticket {target.id}" in english
    assert "Zajmujemy" in text_of(notices[ZOFIA])


def test_merge_same_requester(tmp_path: Path, database_url: str) -> None:
    # One person wrote twice: the notice names the number to keep, and they stay the
    # requester.
    desk = conversation_desk(tmp_path, database_url)
    target, _target_ack = open_ticket(desk, message_id="<first@example.org>")
    duplicate, ack = open_ticket(desk, message_id="<second@example.org>")

    merge_by_mail(desk, ack, target.id)

    assert participants(target) == {}
    [notice] = outbox("ticket_merged")
    assert notice.recipients.split() == [ZOFIA]
    assert f"Twoje zgłoszenie [#{target.id}]" in text_of(notice)


def test_merge_respects_participant_limit(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    duplicate, ack, target, _target_ack = two_tickets(desk, cc=TOMASZ)
    for number in range(MAX_PARTICIPANTS - 1):
        contact = models.Contact.create(address=f"osoba{number}@example.org")
        models.Participant.create(ticket=target.id, contact=contact)

    merge_by_mail(desk, ack, target.id)

    assert len(participants(target)) == MAX_PARTICIPANTS
    assert ZOFIA in participants(target)
    [from_] = events("merged_from")
    assert loads(from_.detail)["skipped"] == ["tomasz.lis@example.org"]
    text = text_of(outbox("command_confirmation")[0])
    assert "największą dozwoloną liczbę" in text
    assert "tomasz.lis@example.org" in text


# --------------------------------------------------------------------------- later mail


def test_reply_to_duplicate_ack_joins_target(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    duplicate, ack, target, _target_ack = two_tickets(desk)
    merge_by_mail(desk, ack, target.id)

    outcome = process(desk, mail(subject=f"Re: [#{duplicate.id}] Drukarka nie drukuje",
                                 message_id="<later@example.org>",
                                 headers={"In-Reply-To": ack, "References": ack}),
                      "test:user")

    assert outcome.action == "append"
    assert outcome.ticket == target.id
    entry = models.Message.get(models.Message.message_id == "<later@example.org>")
    assert entry.ticket_id == target.id
    assert reload(duplicate).status == "closed"
    assert models.Ticket.select().count() == 2


def test_tag_of_duplicate_joins_target(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    duplicate, ack, target, _target_ack = two_tickets(desk)
    merge_by_mail(desk, ack, target.id)

    outcome = process(desk, mail(subject=f"[#{duplicate.id}] Nadal nie drukuje",
                                 message_id="<tagged@example.org>"), "test:user")

    assert outcome.action == "append"
    assert outcome.ticket == target.id
    [followed] = events("merge_followed")
    assert followed.ticket_id == target.id
    assert loads(followed.detail) == {"merged": duplicate.id,
                                      "message_id": "<tagged@example.org>"}


def test_chain_of_merges_is_followed(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    duplicate, ack, middle, middle_ack = two_tickets(desk)
    last, _last_ack = open_ticket(desk, sender=EWA.replace("ewa.nowak@example.com",
                                                           "ewa@example.org"),
                                  message_id="<last@example.org>")
    merge_by_mail(desk, ack, middle.id)
    merge_by_mail(desk, middle_ack, last.id, message_id="<merge2@mail.example.com>")

    outcome = process(desk, mail(subject=f"[#{duplicate.id}] Nadal nie drukuje",
                                 message_id="<tagged@example.org>"), "test:user")

    assert reload(middle).merged_into_id == last.id
    assert outcome.ticket == last.id
    # Zofia came to the middle ticket with the first merge and went on with the second.
    assert ZOFIA in participants(last)


def test_agent_reply_by_duplicate_tag_acts_on_target(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    duplicate, ack, target, _target_ack = two_tickets(desk)
    merge_by_mail(desk, ack, target.id)

    process(desk, agent_mail("#priorytet 2\n", ack, ticket=duplicate.id,
                             message_id="<a2@mail.example.com>"))

    assert reload(target).priority == 2
    assert reload(duplicate).priority == 3
    assert outbox("command_error") == []


# --------------------------------------------------------------------------- refusals


def refused(desk: Desk) -> str:
    [error] = outbox("command_error")
    return text_of(error)


def test_merge_into_itself_refused(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    duplicate, ack, _target, _target_ack = two_tickets(desk)

    merge_by_mail(desk, ack, duplicate.id)

    assert reload(duplicate).status == "new"
    assert "zgłoszenia nie można scalić z nim samym" in refused(desk)
    assert events("merged_into") == []


def test_merge_into_missing_ticket_refused(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    duplicate, ack, _target, _target_ack = two_tickets(desk)

    merge_by_mail(desk, ack, 999)

    assert reload(duplicate).merged_into_id is None
    text = refused(desk)
    assert "nie ma zgłoszenia 999" in text
    assert "#scal <numer zgłoszenia>" in text


def test_merge_into_closed_ticket_refused(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    duplicate, ack, target, _target_ack = two_tickets(desk)
    models.Ticket.update(status="closed").where(models.Ticket.id == target.id).execute()

    merge_by_mail(desk, ack, target.id)

    assert reload(duplicate).status == "new"
    assert f"zgłoszenie {target.id} jest zamknięte i takie pozostaje" in refused(desk)


def test_merge_back_into_merged_ticket_refused(tmp_path: Path, database_url: str) -> None:
    # Merging the target into the duplicate it took in would make a loop.
    desk = conversation_desk(tmp_path, database_url)
    duplicate, ack, target, target_ack = two_tickets(desk)
    merge_by_mail(desk, ack, target.id)

    merge_by_mail(desk, target_ack, duplicate.id, message_id="<back@mail.example.com>")

    assert reload(target).merged_into_id is None
    assert reload(target).status == "new"
    assert (f"zgłoszenie {duplicate.id} scalono z tym zgłoszeniem, więc tego nie można "
            f"scalić z tamtym") in refused(desk)


def test_merge_into_merged_ticket_names_final(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    duplicate, ack, target, _target_ack = two_tickets(desk)
    third, third_ack = open_ticket(desk, sender="Anna Nowak <anna@example.org>",
                                   message_id="<third@example.org>")
    merge_by_mail(desk, ack, target.id)

    merge_by_mail(desk, third_ack, duplicate.id, message_id="<m3@mail.example.com>")

    assert reload(third).status == "new"
    assert (f"zgłoszenie {duplicate.id} scalono ze zgłoszeniem {target.id}: scal ze "
            f"zgłoszeniem {target.id}") in refused(desk)


def test_merge_with_other_commands_refused(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    duplicate, ack, target, _target_ack = two_tickets(desk)

    process(desk, agent_mail(f"#scal {target.id}\n#priorytet 1\n", ack))

    assert reload(duplicate).status == "new"
    assert "#scal musi być jedynym poleceniem" in refused(desk)


def test_merge_needs_command_permission(tmp_path: Path, database_url: str) -> None:
    agents = [{"login": "marek.zielinski", "name": "Marek Zieliński",
               "addresses": ["marek.zielinski@example.com"], "groups": ["pierwsza-linia"],
               "commands": False}]
    desk = conversation_desk(tmp_path, database_url, agents=agents)
    duplicate, ack, target, _target_ack = two_tickets(desk)

    merge_by_mail(desk, ack, target.id)

    assert reload(duplicate).merged_into_id is None
    assert "nie możesz wydawać poleceń" in refused(desk)


def test_requester_merge_line_is_text(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    duplicate, ack, target, _target_ack = two_tickets(desk)

    process(desk, mail(body=f"#scal {target.id}\n", message_id="<user2@example.org>",
                       headers={"In-Reply-To": ack}), "test:user")

    assert reload(duplicate).merged_into_id is None
    assert outbox("command_error") == []
    assert len(events("command_like_text_ignored")) == 1


# --------------------------------------------------------------------------- cost


def count_statements(monkeypatch: Any) -> list[str]:
    """Record every statement sent to the database, as the pipeline runs it."""
    return record_sql(models.database_proxy.obj, monkeypatch)


def statement_texts(monkeypatch: Any) -> list[str]:
    """Record the SQL text of every statement, once each.

    Cached statements run as EXECUTE on PostgreSQL, so their text is taken where
    ``statements`` runs them, and the EXECUTE itself is not recorded again.
    """
    texts: list[str] = []
    inside: list[bool] = []
    execute = statements._execute
    database = models.database_proxy.obj
    execute_sql = database.execute_sql

    def recording(database: Any, text: str, params: Any) -> Any:
        texts.append(text)
        inside.append(True)
        try:
            return execute(database, text, params)
        finally:
            inside.pop()

    def recording_sql(sql: str, *args: Any, **kwargs: Any) -> Any:
        if not inside:
            texts.append(sql)
        return execute_sql(sql, *args, **kwargs)

    monkeypatch.setattr(statements, "_execute", recording)
    monkeypatch.setattr(database, "execute_sql", recording_sql)
    return texts


def test_reply_to_unmerged_ticket_costs_no_more(tmp_path: Path, database_url: str,
                                                monkeypatch: Any) -> None:
    # The statements of an ordinary reply, measured before merging existed: following
    # merges must cost nothing for a ticket that was never merged. (One fewer than then:
    # a reply that notifies nobody no longer checks for a dispatched mailbox.)
    desk = conversation_desk(tmp_path, database_url)
    ticket, ack = open_ticket(desk)
    # A first reply prepares the cached statements, so the second shows the steady cost.
    process(desk, mail(subject=f"Re: [#{ticket.id}] Drukarka nie drukuje",
                       message_id="<r1@example.org>",
                       headers={"In-Reply-To": ack, "References": ack}), "test:user")
    texts = count_statements(monkeypatch)

    process(desk, mail(subject=f"Re: [#{ticket.id}] Drukarka nie drukuje", body="Nadal nic.\n",
                       message_id="<r2@example.org>",
                       headers={"In-Reply-To": ack, "References": ack}), "test:user")

    expected = 13 if database_url.startswith("sqlite") else 10
    assert len(texts) == expected, "\n".join(texts)


def test_tag_of_merged_ticket_costs_one_read(tmp_path: Path, database_url: str,
                                             monkeypatch: Any) -> None:
    desk = conversation_desk(tmp_path, database_url)
    duplicate, ack, target, _target_ack = two_tickets(desk)
    merge_by_mail(desk, ack, target.id)
    from maildesk.followup import find_follow_up
    from maildesk.parse import parse_message

    message = parse_message(mail(subject=f"[#{duplicate.id}] Nadal", message_id=None))
    recorded = statement_texts(monkeypatch)

    follow_up = find_follow_up(message, "[#{number}]", desk.agent_addresses)

    assert follow_up.ticket is not None
    assert follow_up.ticket.id == target.id
    assert follow_up.merged_from == duplicate.id
    ticket_reads = [sql for sql in recorded if 'FROM "ticket"' in sql]
    # The tagged ticket, then the one it was merged into.
    assert len(ticket_reads) == 2


# --------------------------------------------------------------------------- admin command


def invoke(config: Path, *args: str, language: str = "pl") -> Any:
    return CliRunner().invoke(main, ["--config", str(config), "tickets", "merge", *args],
                              env={"MAILDESK_LANGUAGE": language}, catch_exceptions=False)


def test_cli_merge_in_polish(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    duplicate, _ack, target, _target_ack = two_tickets(desk, cc=TOMASZ)

    result = invoke(tmp_path / "maildesk.yaml", str(duplicate.id), str(target.id))

    assert result.exit_code == 0, result.output
    assert (f"Zgłoszenie [#{duplicate.id}] scalono ze zgłoszeniem [#{target.id}] "
            f"i zamknięto.") in result.output
    assert f"2 nowych uczestników zgłoszenia [#{target.id}]" in result.output
    assert f"Powiadomienie czeka na wysłanie do: {ZOFIA}, tomasz.lis@example.org" \
        in result.output
    merged = reload(duplicate)
    assert merged.merged_into_id == target.id
    assert merged.status == "closed"
    [into] = events("merged_into")
    assert into.actor == "admin"
    assert len(outbox("ticket_merged")) == 1


def test_cli_merge_in_english(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    target, _target_ack = open_ticket(desk, message_id="<first@example.org>")
    duplicate, _ack = open_ticket(desk, message_id="<second@example.org>")

    result = invoke(tmp_path / "maildesk.yaml", str(duplicate.id), str(target.id),
                    language="en")

    assert result.exit_code == 0, result.output
    assert (f"Ticket [#{duplicate.id}] was merged into ticket [#{target.id}] and closed."
            in result.output)
    assert f"Notice queued for: {ZOFIA}" in result.output
    assert "new participant" not in result.output


def test_cli_merge_refusal(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    duplicate, _ack, target, _target_ack = two_tickets(desk)
    models.Ticket.update(status="closed").where(models.Ticket.id == target.id).execute()

    polish = invoke(tmp_path / "maildesk.yaml", str(duplicate.id), str(target.id))
    english = invoke(tmp_path / "maildesk.yaml", str(duplicate.id), "999", language="en")

    assert polish.exit_code == 1
    assert (f"nie można scalić zgłoszenia {duplicate.id} ze zgłoszeniem {target.id}: "
            f"zgłoszenie {target.id} jest zamknięte") in polish.output
    assert english.exit_code == 1
    assert f"ticket {duplicate.id} cannot be merged into ticket 999: there is no ticket 999" \
        in english.output
    assert reload(duplicate).status == "new"
    assert events("merged_into") == []


def test_cli_show_names_merges(tmp_path: Path, database_url: str) -> None:
    desk = conversation_desk(tmp_path, database_url)
    duplicate, _ack, target, _target_ack = two_tickets(desk)
    invoke(tmp_path / "maildesk.yaml", str(duplicate.id), str(target.id))

    def show(number: int) -> str:
        return CliRunner().invoke(main, ["--config", str(tmp_path / "maildesk.yaml"), "tickets",
                                         "show", str(number)],
                                  env={"MAILDESK_LANGUAGE": "en"}).output

    assert f"Merged into ticket [#{target.id}]; its messages are shown there" in show(
        duplicate.id)
    shown = show(target.id)
    assert f"Tickets merged into this one: [#{duplicate.id}]" in shown
    assert f"another ticket merged into this one — [#{duplicate.id}]" in shown


# --------------------------------------------------------------------------- reports, retention


def test_sla_report_counts_duplicate_once(tmp_path: Path, database_url: str) -> None:
    from datetime import UTC, datetime, timedelta

    from maildesk.slareport import build_report

    desk = conversation_desk(tmp_path, database_url)
    duplicate, ack, target, _target_ack = two_tickets(desk)
    merge_by_mail(desk, ack, target.id)
    now = datetime.now(UTC)

    report = build_report(desk, now - timedelta(days=1), now + timedelta(days=1))

    assert report.total.opened == 1
    assert report.resolved_in_period == 0


def test_purged_target_leaves_duplicate_unlinked(tmp_path: Path, database_url: str) -> None:
    from datetime import UTC, datetime, timedelta

    from maildesk import retention

    desk = conversation_desk(tmp_path, database_url)
    duplicate, ack, target, _target_ack = two_tickets(desk)
    merge_by_mail(desk, ack, target.id)
    long_ago = models.utcnow() - timedelta(days=400)
    models.Ticket.update(status="closed", closed_at=long_ago).where(
        models.Ticket.id == target.id).execute()
    models.Outbox.update(state="sent").execute()

    retention.purge(desk, datetime.now(UTC) - timedelta(days=30))

    assert models.Ticket.get_or_none(models.Ticket.id == target.id) is None
    kept = reload(duplicate)
    assert kept.status == "closed"
    assert kept.merged_into_id is None


def test_merge_rejected_when_target_closes_meanwhile(tmp_path: Path, database_url: str,
                                                      monkeypatch: Any) -> None:
    # Another mail may close the target between the check of the commands and the merge.
    from maildesk import conversation

    desk = conversation_desk(tmp_path, database_url)
    duplicate, ack, target, _target_ack = two_tickets(desk)
    models.Ticket.update(status="closed").where(models.Ticket.id == target.id).execute()
    monkeypatch.setattr(conversation, "_check_merge", lambda ticket, number: None)

    merge_by_mail(desk, ack, target.id)

    assert reload(duplicate).merged_into_id is None
    assert reload(duplicate).status == "new"
    entry = models.Message.get(models.Message.message_id == "<merge@mail.example.com>")
    assert entry.kind == "held"
    assert entry.ticket_id == duplicate.id
    assert f"zgłoszenie {target.id} jest zamknięte" in refused(desk)
    assert outbox("command_confirmation") == []
