"""Functional and hierarchical escalation, and dispatch to another team's mailbox.

Runs on SQLite and on PostgreSQL. The vendor group serwis-drukarek has its own address,
so a ticket handed to it is forwarded there and the vendor's replies thread back.
"""

from __future__ import annotations

import json
from datetime import datetime
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from deskfactory import base_config, mail, make_desk, make_ticket, start_service_levels

from maildesk import escalation, lifecycle, models, pipeline
from maildesk.i18n import current_language, set_language
from maildesk.lifecycle import LifecycleError, Source

WARSAW = ZoneInfo("Europe/Warsaw")
VENDOR = "serwis@drukarki-vendor.example.net"
REQUESTER = "Zofia Wiśniewska <zofia.wisniewska@example.org>"


def english_desk(tmp_path: Path, database_url: str, **overrides):
    """Build a desk, then switch messages to English, which opening the desk set to Polish."""
    desk = make_desk(tmp_path, database_url, **overrides)
    set_language("en")
    return desk


@pytest.fixture(autouse=True)
def english_messages():
    previous = current_language()
    set_language("en")
    yield
    set_language(previous)


def vendor_desk(tmp_path: Path, database_url: str):
    groups = [*base_config(database_url, tmp_path)["groups"],
              {"name": "serwis-drukarek", "tier": 3, "address": VENDOR,
               "description": "Serwis drukarek"}]
    return english_desk(tmp_path, database_url, groups=groups)


def now() -> datetime:
    return datetime(2026, 11, 30, 10, tzinfo=WARSAW)


def ticket_in(desk, group: str | None = "pierwsza-linia", number: int = 20901,
              assignee: str | None = None, status: str = "new") -> models.Ticket:
    ticket = make_ticket(number, "Drukarka zacina papier", "zofia.wisniewska@example.org",
                         assignee=assignee, status=status)
    ticket.created_at = datetime(2026, 11, 30, 8)
    ticket.group = group
    ticket.save()
    start_service_levels(desk, ticket)
    return models.Ticket.get_by_id(number)


def rows(kind: str) -> list[models.Outbox]:
    return list(models.Outbox.select().where(models.Outbox.kind == kind)
                .order_by(models.Outbox.id))


def test_escalate_moves_to_next_tier(tmp_path: Path, database_url: str) -> None:
    desk = english_desk(tmp_path, database_url)
    ticket = ticket_in(desk, assignee="marek.zielinski", status="in_progress")

    changes, queued = escalation.escalate(desk, ticket, "marek.zielinski", Source.AGENT_COMMAND,
                                          now(), reason="wymaga dostępu administratora")

    moved = models.Ticket.get_by_id(20901)
    assert moved.group == "druga-linia"
    assert moved.assignee is None
    assert moved.status == "new"
    assert moved.escalation_level == 1
    assert lifecycle.Change("group", "pierwsza-linia", "druga-linia") in changes
    assert [mail.recipients for mail in queued] == [("ewa.nowak@example.com",)]
    event = models.Event.get(models.Event.action == "escalated")
    assert json.loads(event.detail)["kind"] == "functional"
    assert json.loads(event.detail)["reason"] == "wymaga dostępu administratora"


def test_escalate_dispatch_says_reply_reaches_requester(tmp_path: Path,
                                                        database_url: str) -> None:
    desk = english_desk(tmp_path, database_url)
    ticket = ticket_in(desk, assignee="marek.zielinski", status="in_progress")

    escalation.escalate(desk, ticket, "marek.zielinski", Source.AGENT_COMMAND, now())

    sent = message_from_bytes(bytes(rows("dispatch")[0].raw), policy=default_policy)
    text = " ".join(sent.get_body(preferencelist=("plain",)).get_content().split())
    # The agents of druga-linia write Polish.
    assert "aby odpisać zgłaszającemu" in text
    assert "Linia „#notatka” wśród poleceń na początku odpowiedzi zapisze ją" in text


def test_escalate_keeps_assignee_of_target_group(tmp_path: Path, database_url: str) -> None:
    desk = english_desk(tmp_path, database_url)
    ticket = ticket_in(desk, assignee="ewa.nowak", status="in_progress")

    escalation.escalate(desk, ticket, "ewa.nowak", Source.AGENT_COMMAND, now())

    moved = models.Ticket.get_by_id(20901)
    assert moved.assignee == "ewa.nowak"
    assert moved.status == "in_progress"


def test_dispatch_skips_the_agent_who_moved_it(tmp_path: Path, database_url: str) -> None:
    desk = english_desk(tmp_path, database_url)
    ticket = ticket_in(desk, group="druga-linia")

    # ewa.nowak, the only agent of the group, moves the ticket there herself.
    queued = escalation.dispatch(desk, ticket, "druga-linia", "ewa.nowak",
                                 Source.AGENT_COMMAND, now())

    assert queued == []
    assert rows("dispatch") == []
    assert models.Event.select().where(models.Event.action == "dispatched").count() == 1


def test_history_names_kind_of_escalation(tmp_path: Path, database_url: str) -> None:
    from click.testing import CliRunner

    from maildesk.cli import main

    desk = english_desk(tmp_path, database_url)
    ticket = ticket_in(desk, assignee="marek.zielinski", status="in_progress")
    escalation.notify_manager(desk, ticket, "maildesk", Source.SCHEDULER, "late")
    escalation.escalate(desk, models.Ticket.get_by_id(20901), "marek.zielinski",
                        Source.AGENT_COMMAND, now())

    history = CliRunner().invoke(main, ["--config", str(desk.config.path), "tickets", "show",
                                      "20901"], env={"MAILDESK_LANGUAGE": "en"})

    assert "escalated to the group's manager" in history.output
    assert "escalated to the next tier" in history.output


def test_escalate_without_next_tier_raises(tmp_path: Path, database_url: str) -> None:
    desk = english_desk(tmp_path, database_url)
    ticket = ticket_in(desk, group="druga-linia")

    with pytest.raises(LifecycleError) as raised:
        escalation.escalate(desk, ticket, "ewa.nowak", Source.AGENT_COMMAND, now())

    assert "escalates to no other group" in str(raised.value)
    assert models.Ticket.get_by_id(20901).escalation_level == 0


def test_escalate_to_unknown_group_raises(tmp_path: Path, database_url: str) -> None:
    desk = english_desk(tmp_path, database_url)
    ticket = ticket_in(desk)

    with pytest.raises(LifecycleError) as raised:
        escalation.escalate(desk, ticket, "ewa.nowak", Source.RULE, now(), to_group="sieci")

    assert "unknown group 'sieci'" in str(raised.value)


def test_notify_manager_mails_group_manager(tmp_path: Path, database_url: str) -> None:
    desk = english_desk(tmp_path, database_url)
    ticket = ticket_in(desk)

    queued = escalation.notify_manager(desk, ticket, "ewa.nowak", Source.AGENT_COMMAND,
                                       "użytkownik z zarządu czeka od rana")

    assert [mail.recipients for mail in queued] == [("kierownik@example.com",)]
    sent = message_from_bytes(bytes(rows("escalation_manager")[0].raw), policy=default_policy)
    assert sent["Subject"] == "[#20901] Eskalacja do kierownika: Drukarka zacina papier"
    assert "użytkownik z zarządu czeka od rana" in sent.get_body(("plain",)).get_content()


def test_dispatch_to_vendor_forwards_with_tag(tmp_path: Path, database_url: str) -> None:
    desk = vendor_desk(tmp_path, database_url)
    ticket = ticket_in(desk)

    escalation.move_to_group(desk, ticket, "serwis-drukarek", "marek.zielinski",
                             Source.AGENT_COMMAND, now(), reason="naprawa gwarancyjna")

    forwarded = rows("dispatch")
    assert [row.recipients.split() for row in forwarded] == [[VENDOR]]
    sent = message_from_bytes(bytes(forwarded[0].raw), policy=default_policy)
    assert sent["Subject"] == "[#20901] Przekazane zgłoszenie: Drukarka zacina papier"
    participant = models.Participant.get(models.Participant.ticket == 20901)
    assert participant.contact.address == VENDOR
    assert participant.role == "dispatch"


def test_vendor_reply_threads_back_by_tag(tmp_path: Path, database_url: str) -> None:
    desk = vendor_desk(tmp_path, database_url)
    ticket = ticket_in(desk)
    escalation.move_to_group(desk, ticket, "serwis-drukarek", "marek.zielinski",
                             Source.AGENT_COMMAND, now())

    answer = mail(sender=f"Serwis <{VENDOR}>", subject="RE: [#20901] Przekazane zgłoszenie",
                  body="Technik będzie jutro o 10:00.", message_id="<v1@vendor.example.net>")
    outcome = pipeline.process(desk, answer, "test:vendor")

    assert outcome.action == "append"
    assert outcome.ticket == 20901


def test_vendor_reply_threads_back_by_reference(tmp_path: Path, database_url: str) -> None:
    desk = vendor_desk(tmp_path, database_url)
    ticket = ticket_in(desk)
    escalation.move_to_group(desk, ticket, "serwis-drukarek", "marek.zielinski",
                             Source.AGENT_COMMAND, now())
    forwarded_id = rows("dispatch")[0].message_id

    answer = mail(sender=VENDOR, subject="Zlecenie serwisowe 5521",
                  body="Przyjęliśmy zlecenie.", message_id="<v2@vendor.example.net>",
                  headers={"In-Reply-To": forwarded_id})
    outcome = pipeline.process(desk, answer, "test:vendor")

    assert outcome.ticket == 20901


def test_vendor_reply_does_not_end_wait_for_user(tmp_path: Path, database_url: str) -> None:
    desk = vendor_desk(tmp_path, database_url)
    ticket = ticket_in(desk, assignee="marek.zielinski", status="in_progress")
    escalation.dispatch(desk, ticket, "serwis-drukarek", "marek.zielinski",
                        Source.AGENT_COMMAND, now())
    lifecycle.transition(desk, ticket, "pending", "marek.zielinski", Source.AGENT_COMMAND,
                         now())

    answer = mail(sender=VENDOR, subject="RE: [#20901] Przekazane zgłoszenie",
                  body="Czekamy na części.", message_id="<v3@vendor.example.net>")
    pipeline.process(desk, answer, "test:vendor")

    assert models.Ticket.get_by_id(20901).status == "pending"


def test_rule_routed_ticket_to_vendor_is_dispatched(tmp_path: Path, database_url: str) -> None:
    desk = vendor_desk(tmp_path, database_url)
    (tmp_path / "rules" / "10-drukarki.yaml").write_text(
        "- name: drukarki-do-serwisu\n"
        "  when:\n"
        "    subject: [drukarka]\n"
        "  then:\n"
        "    group: serwis-drukarek\n", encoding="utf-8")
    from maildesk.wiring import load_rules

    outcome = pipeline.process(desk, mail(sender=REQUESTER), "test:1", load_rules(desk))

    forwarded = rows("dispatch")
    assert [row.recipients.split() for row in forwarded] == [[VENDOR]]
    assert forwarded[0].ticket_id == outcome.ticket
    detail = json.loads(models.Event.get(models.Event.action == "dispatched").detail)
    assert detail["external"] is True
    assert "drukarki-do-serwisu" in detail["reason"]


PASS = ("mx.example.com; dkim=pass header.d=example.com header.s=sel1; "
        "spf=pass smtp.mailfrom=example.com; dmarc=pass header.from=example.com")


def test_escalate_command_by_mail_tells_next_tier(tmp_path: Path, database_url: str) -> None:
    desk = english_desk(tmp_path, database_url,
                     commands={"trusted_authserv_ids": ["mx.example.com"]})
    created = pipeline.process(desk, mail(sender=REQUESTER), "test:1")
    number = created.ticket
    models.Ticket.update(group="pierwsza-linia").where(models.Ticket.id == number).execute()

    command = mail(sender="Marek Zieliński <marek.zielinski@example.com>",
                   subject=f"Re: [#{number}] Drukarka nie drukuje",
                   body="#eskaluj potrzebny administrator serwera wydruku",
                   message_id="<e1@example.com>", headers={"Authentication-Results": PASS})
    pipeline.process(desk, command, "test:2")

    ticket = models.Ticket.get_by_id(number)
    assert ticket.group == "druga-linia"
    assert ticket.escalation_level == 1
    assert [row.recipients.split() for row in rows("dispatch")] == [["ewa.nowak@example.com"]]
    detail = json.loads(models.Event.get(models.Event.action == "dispatched").detail)
    assert detail["source"] == "agent_command"


def test_group_command_to_vendor_forwards_ticket(tmp_path: Path, database_url: str) -> None:
    groups = [*base_config(database_url, tmp_path)["groups"],
              {"name": "serwis-drukarek", "tier": 3, "address": VENDOR}]
    desk = english_desk(tmp_path, database_url, groups=groups,
                     commands={"trusted_authserv_ids": ["mx.example.com"]})
    created = pipeline.process(desk, mail(sender=REQUESTER), "test:1")
    number = created.ticket

    command = mail(sender="Marek Zieliński <marek.zielinski@example.com>",
                   subject=f"Re: [#{number}] Drukarka nie drukuje",
                   body="#grupa serwis-drukarek", message_id="<e2@example.com>",
                   headers={"Authentication-Results": PASS})
    pipeline.process(desk, command, "test:2")

    assert [row.recipients.split() for row in rows("dispatch")] == [[VENDOR]]
    assert models.Participant.select().join(models.Contact).where(
        models.Contact.address == VENDOR).exists()
