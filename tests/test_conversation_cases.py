"""Reported real-world failures about agents and commands, with their expected outcomes.

Each case is a mail plus a YAML file of preconditions (tickets, Message-IDs the desk sent,
agents, the authentication policy) and of what a correct desk does with the mail.
"""

from __future__ import annotations

import json
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
import yaml
from deskfactory import make_desk, make_ticket

from maildesk import models, pipeline
from maildesk.desk import Desk

CASES = ("037", "038", "039", "040", "042")

# What the cases call an outgoing mail, as outbox kinds.
MAIL_TYPES = {"agent_reply": "reply", "command_rejected_error": "command_error"}
FORBIDDEN_MAIL = {"a command confirmation": ("command_confirmation",),
                  "a command error mail": ("command_error",),
                  "a status notice": ("status",), "an escalation mail": ("escalation",)}


def load_case(shared_dir: Path, number: str) -> tuple[dict[str, Any], bytes]:
    folder = shared_dir / "cases"
    found = sorted(folder.glob(f"{number}-*.yaml"))
    if not found:
        pytest.skip(f"case {number} is not in {folder}")
    case = yaml.safe_load(found[0].read_text(encoding="utf-8"))
    return case, (folder / case["eml"]).read_bytes()


def set_up(desk: Desk, case: dict[str, Any]) -> None:
    """Create the tickets, sent Message-IDs, history and notes the case assumes."""
    for item in case.get("preconditions") or []:
        if not isinstance(item, dict) or "ticket" not in item:
            continue
        ticket = make_ticket(
            item["ticket"], item["subject"], item["requester"],
            status=item.get("status", "new"),
            sent_ids=tuple(item.get("our_outgoing_message_ids") or ()),
            participants=tuple(item.get("participants") or ()),
            assignee=item.get("assignee"), priority=item.get("priority", 3))
        for line in item.get("history") or []:
            # "... Marek mailed <id@host> with ..." : the agent's own earlier mail.
            for token in str(line).split():
                if token.startswith("<") and token.endswith(">") and "@" in token:
                    models.MessageReference.create(
                        message_id=token, ticket=ticket, direction="in", kind="agent_reply",
                        recipients="helpdesk@example.com", trusted=True)
        for note in item.get("internal_notes") or []:
            models.Message.create(ticket=ticket, direction="in", kind="internal_note",
                                  author="ewa.nowak@example.com", author_name="Ewa Nowak",
                                  text=str(note), reply_text=str(note))


def snapshot(number: int) -> dict[str, Any]:
    ticket = models.Ticket.get_by_id(number)
    entries = list(models.Message.select().where(models.Message.ticket == number))
    return {
        "status": ticket.status, "priority": ticket.priority, "assignee": ticket.assignee,
        "entries": len(entries),
        "visible_entries": sum(1 for entry in entries if entry.kind in ("customer",
                                                                         "agent_reply")),
        "attachments": models.Attachment.select().join(models.Message).where(
            models.Message.ticket == number).count(),
        "participants": sorted(p.contact.address for p in models.Participant.select()
                               .join(models.Contact).where(models.Participant.ticket == number)),
        "sla": (ticket.first_response_due, ticket.resolution_due, ticket.sla_paused_at,
                ticket.sla_state, ticket.first_responded_at),
    }


def parsed(row: models.Outbox) -> EmailMessage:
    message = message_from_bytes(bytes(row.raw), policy=default_policy)
    assert isinstance(message, EmailMessage)
    return message


def body_of(row: models.Outbox) -> str:
    part = parsed(row).get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def audit_text() -> str:
    return "\n".join(f"{event.action} {json.loads(event.detail) if event.detail else ''}"
                     for event in models.Event.select())


@pytest.mark.parametrize("number", CASES)
def test_agent_case(tmp_path: Path, database_url: str, shared_dir: Path, number: str) -> None:
    case, raw = load_case(shared_dir, number)
    expected = case["expected"]
    desk = make_desk(tmp_path, database_url,
                     commands={"trusted_authserv_ids": ["mx.example.com"]})
    set_up(desk, case)
    watched = [int(key.split("_")[1]) for key in expected if key.startswith("ticket_")]
    for key in ("thread_onto_ticket", "must_not_thread_onto_ticket"):
        if key in expected:
            watched.append(int(expected[key]))
    before = {number: snapshot(number) for number in set(watched)}
    tickets_before = models.Ticket.select().count()

    outcome = pipeline.process(desk, raw, f"case:{number}")

    check_action(expected, outcome, tickets_before)
    check_tickets(expected, before)
    check_entry(expected, outcome)
    check_mail(expected)
    for line in expected.get("audit_events_must_include") or []:
        assert line in audit_text()
    if expected.get("commands_applied") == []:
        assert not models.Event.select().where(
            models.Event.action.in_(["field_changed", "status_changed"])).exists()


def check_action(expected: dict[str, Any], outcome: Any, tickets_before: int) -> None:
    action = expected["action"]
    if action == "new_ticket":
        assert outcome.action == "create"
        ticket = models.Ticket.get_by_id(outcome.ticket)
        if "ticket.requester" in expected:
            assert ticket.requester.address == expected["ticket.requester"]
    if action == "thread":
        assert outcome.action == "append"
        assert outcome.ticket == expected["thread_onto_ticket"]
    if action == "no_new_ticket" or expected.get("no_new_ticket"):
        assert models.Ticket.select().count() == tickets_before
    if "must_not_thread_onto_ticket" in expected:
        assert outcome.ticket != expected["must_not_thread_onto_ticket"]


def check_tickets(expected: dict[str, Any], before: dict[int, dict[str, Any]]) -> None:
    for key, wanted in expected.items():
        if not key.startswith("ticket_"):
            continue
        number = int(key.split("_")[1])
        old, new = before[number], snapshot(number)
        if "status_unchanged" in wanted:
            assert new["status"] == old["status"] == wanted["status_unchanged"]
        if "priority_unchanged" in wanted:
            assert new["priority"] == old["priority"] == wanted["priority_unchanged"]
        if "assignee_unchanged" in wanted:
            assert new["assignee"] == old["assignee"] == wanted["assignee_unchanged"]
        if wanted.get("no_new_thread_entry"):
            assert new["entries"] == old["entries"]
        if wanted.get("no_customer_visible_thread_entry"):
            assert new["visible_entries"] == old["visible_entries"]
        if wanted.get("no_new_attachment"):
            assert new["attachments"] == old["attachments"]
        if wanted.get("participants_unchanged"):
            assert new["participants"] == old["participants"]
        if wanted.get("sla_clock_unchanged"):
            assert new["sla"] == old["sla"]


def check_entry(expected: dict[str, Any], outcome: Any) -> None:
    if expected["action"] != "thread":
        return
    entry = (models.Message.select().where(models.Message.ticket == outcome.ticket)
             .order_by(models.Message.id.desc()).first())
    if "thread_entry.author" in expected:
        assert entry.author == expected["thread_entry.author"]
    if "thread_entry.kind" in expected:
        assert entry.kind == expected["thread_entry.kind"]
    for text in expected.get("thread_entry.body_contains") or []:
        assert text in entry.text


def check_mail(expected: dict[str, Any]) -> None:
    rows = list(models.Outbox.select().order_by(models.Outbox.id))
    for address in expected.get("outgoing_mail_must_not_be_addressed_to") or []:
        assert [row.kind for row in rows if f" {address} " in row.recipients] == []
    if expected.get("outgoing_mail_to_requester") == []:
        requesters = {ticket.requester.address for ticket in models.Ticket.select()}
        assert [row.kind for row in rows
                if set(row.recipients.split()) & requesters] == []

    for wanted in expected.get("outgoing_mail") or []:
        kind = MAIL_TYPES.get(wanted["type"], wanted["type"])
        matching = [row for row in rows if row.kind == kind
                    and row.recipients.split() == [wanted["to"]]]
        assert len(matching) == 1, f"{kind} to {wanted['to']}: {[r.kind for r in rows]}"
        body = body_of(matching[0])
        for text in wanted.get("body_contains") or []:
            assert text in body
        for text in wanted.get("body_must_not_contain") or []:
            assert text not in body
        if wanted.get("body_contains_any"):
            assert any(text in body for text in wanted["body_contains_any"])
    if "outgoing_mail" in expected:
        expected_kinds = sorted(MAIL_TYPES.get(m["type"], m["type"])
                                for m in expected["outgoing_mail"])
        assert sorted(row.kind for row in rows) == expected_kinds

    for description in expected.get("outgoing_mail_must_not_include") or []:
        kinds = next(value for key, value in FORBIDDEN_MAIL.items()
                     if description.startswith(key))
        assert [row.kind for row in rows if row.kind.startswith(kinds)] == []
