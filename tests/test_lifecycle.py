"""The lifecycle state machine: allowed transitions, who may make them, their effects.

Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from deskfactory import make_desk, make_ticket, start_service_levels

from maildesk import lifecycle, models
from maildesk.i18n import current_language, set_language
from maildesk.lifecycle import TRANSITIONS, LifecycleError, Source
from maildesk.sla import ClockState

WARSAW = ZoneInfo("Europe/Warsaw")
REQUESTER = "zofia.wisniewska@example.org"


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


def warsaw(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=WARSAW)


def new_ticket(desk, number: int = 20601, *, created: datetime | None = None,
               assignee: str | None = None, status: str = "new") -> models.Ticket:
    created = created or warsaw(11, 30, 9)
    ticket = make_ticket(number, "Drukarka nie drukuje", REQUESTER, status=status,
                         assignee=assignee)
    ticket.created_at = created.astimezone(UTC).replace(tzinfo=None)
    ticket.group = "pierwsza-linia"
    ticket.save()
    start_service_levels(desk, ticket)
    return models.Ticket.get_by_id(number)


def events(action: str) -> list[models.Event]:
    return list(models.Event.select().where(models.Event.action == action)
                .order_by(models.Event.id))


def outbox(kind: str) -> list[models.Outbox]:
    return list(models.Outbox.select().where(models.Outbox.kind == kind)
                .order_by(models.Outbox.id))


def clock_state(ticket: models.Ticket) -> str:
    return json.loads(models.Ticket.get_by_id(ticket.id).sla_state)["state"]


def test_lifecycle_every_allowed_transition_applies(tmp_path: Path, database_url: str) -> None:
    desk = english_desk(tmp_path, database_url)
    number = 30000

    for (origin, target), sources in TRANSITIONS.items():
        for source in sorted(sources):
            number += 1
            ticket = make_ticket(number, "Test", f"user{number}@example.org",
                                 status=origin.value, assignee="marek.zielinski")

            changes = lifecycle.transition(desk, ticket, target, "marek.zielinski", source,
                                           datetime.now(UTC))

            stored = models.Ticket.get_by_id(number)
            assert stored.status == target.value, (origin, target, source)
            assert changes[0] == lifecycle.Change("status", origin.value, target.value)
            event = models.Event.select().where(
                models.Event.ticket == number,
                models.Event.action.in_(["status_changed", "reopened"])).get()
            assert json.loads(event.before) == origin.value
            assert json.loads(event.after) == target.value
            assert json.loads(event.detail)["source"] == source


@pytest.mark.parametrize(
    ("origin", "target", "source"),
    [
        ("new", "resolved", Source.USER_MAIL),
        ("in_progress", "resolved", Source.SCHEDULER),
        ("resolved", "in_progress", Source.SCHEDULER),
        ("closed", "in_progress", Source.AGENT_COMMAND),
        ("closed", "new", Source.USER_MAIL),
        ("new", "pending", Source.RULE),
        ("pending", "closed", Source.SCHEDULER),
    ],
)
def test_lifecycle_disallowed_transition_raises(tmp_path: Path, database_url: str, origin: str,
                                                target: str, source: Source) -> None:
    desk = english_desk(tmp_path, database_url)
    ticket = make_ticket(20602, "Test", REQUESTER, status=origin, assignee="marek.zielinski")

    with pytest.raises(LifecycleError) as raised:
        lifecycle.transition(desk, ticket, target, "someone", source, datetime.now(UTC))

    assert f"cannot go from {origin} to {target} by {source.value}" in str(raised.value)
    assert models.Ticket.get_by_id(20602).status == origin


def test_lifecycle_error_lists_allowed_targets(tmp_path: Path, database_url: str) -> None:
    desk = english_desk(tmp_path, database_url)
    ticket = make_ticket(20603, "Test", REQUESTER, status="resolved")

    with pytest.raises(LifecycleError) as raised:
        lifecycle.transition(desk, ticket, "pending", "jan", Source.SCHEDULER, datetime.now(UTC))

    assert str(raised.value).endswith("allowed are closed")


def test_lifecycle_unknown_status_raises(tmp_path: Path, database_url: str) -> None:
    desk = english_desk(tmp_path, database_url)
    ticket = make_ticket(20604, "Test", REQUESTER)

    with pytest.raises(LifecycleError) as raised:
        lifecycle.transition(desk, ticket, "done", "jan", Source.AGENT_COMMAND,
                             datetime.now(UTC))

    assert "unknown status 'done'" in str(raised.value)


def test_lifecycle_assigned_needs_assignee(tmp_path: Path, database_url: str) -> None:
    desk = english_desk(tmp_path, database_url)
    ticket = make_ticket(20605, "Test", REQUESTER)

    with pytest.raises(LifecycleError) as raised:
        lifecycle.transition(desk, ticket, "assigned", "jan", Source.AGENT_COMMAND,
                             datetime.now(UTC))

    assert "has no assignee" in str(raised.value)


def test_lifecycle_same_status_changes_nothing(tmp_path: Path, database_url: str) -> None:
    desk = english_desk(tmp_path, database_url)
    ticket = make_ticket(20606, "Test", REQUESTER, status="in_progress")

    changes = lifecycle.transition(desk, ticket, "in_progress", "jan", Source.AGENT_COMMAND,
                                   datetime.now(UTC))

    assert changes == []
    assert events("status_changed") == []


def test_lifecycle_assign_makes_new_ticket_assigned(tmp_path: Path, database_url: str) -> None:
    desk = english_desk(tmp_path, database_url)
    ticket = new_ticket(desk)

    changes = lifecycle.assign(desk, ticket, "marek.zielinski", "ewa.nowak", Source.AGENT_COMMAND,
                               warsaw(11, 30, 9, 10))

    assert [change.field for change in changes][:2] == ["assignee", "status"]
    stored = models.Ticket.get_by_id(ticket.id)
    assert stored.status == "assigned"
    assert stored.assignee == "marek.zielinski"
    assert len(outbox("status_assigned")) == 1
    assert json.loads(events("assignee_changed")[0].after) == "marek.zielinski"


def test_lifecycle_unassign_returns_ticket_to_queue(tmp_path: Path, database_url: str) -> None:
    desk = english_desk(tmp_path, database_url)
    ticket = new_ticket(desk, assignee="marek.zielinski", status="in_progress")

    lifecycle.assign(desk, ticket, None, "ewa.nowak", Source.AGENT_COMMAND, warsaw(11, 30, 10))

    stored = models.Ticket.get_by_id(ticket.id)
    assert stored.status == "new"
    assert stored.assignee is None


def test_lifecycle_pending_pauses_and_sets_reminder(tmp_path: Path, database_url: str) -> None:
    desk = english_desk(tmp_path, database_url)
    ticket = new_ticket(desk, assignee="marek.zielinski", status="in_progress")

    changes = lifecycle.transition(desk, ticket, "pending", "marek.zielinski",
                                   Source.AGENT_COMMAND, warsaw(11, 30, 10),
                                   reason="Proszę o numer seryjny drukarki.")

    stored = models.Ticket.get_by_id(ticket.id)
    assert clock_state(stored) == ClockState.PAUSED
    assert stored.resolution_due is None
    assert stored.first_responded_at == datetime(2026, 11, 30, 9)
    assert stored.pending_reminder_due == datetime(2026, 12, 2, 9)
    assert "pending_reminder_due" in [change.field for change in changes]
    assert [event.action for event in models.Event.select().where(
        models.Event.action.startswith("sla_")).order_by(models.Event.id)] == [
        "sla_start", "sla_respond", "sla_pause"]
    notice = outbox("status_pending")
    assert len(notice) == 1
    assert notice[0].subject == "[#20601] Czekamy na Twoją odpowiedź: Drukarka nie drukuje"


def test_lifecycle_resolve_sets_auto_close(tmp_path: Path, database_url: str) -> None:
    desk = english_desk(tmp_path, database_url)
    ticket = new_ticket(desk, assignee="marek.zielinski", status="in_progress")

    lifecycle.transition(desk, ticket, "resolved", "marek.zielinski", Source.AGENT_COMMAND,
                         warsaw(11, 30, 11), reason="Wymieniono toner.")

    stored = models.Ticket.get_by_id(ticket.id)
    assert stored.resolved_at == datetime(2026, 11, 30, 10)
    assert stored.auto_close_due == datetime(2026, 12, 5, 10)
    assert clock_state(stored) == ClockState.RESOLVED
    assert outbox("status_resolved")[0].subject == (
        "[#20601] Zgłoszenie rozwiązane: Drukarka nie drukuje")


def test_lifecycle_reopen_restarts_clock(tmp_path: Path, database_url: str) -> None:
    desk = english_desk(tmp_path, database_url)
    ticket = new_ticket(desk, assignee="marek.zielinski", status="in_progress")
    lifecycle.transition(desk, ticket, "resolved", "marek.zielinski", Source.AGENT_COMMAND,
                         warsaw(11, 30, 11))

    lifecycle.transition(desk, ticket, lifecycle.reopen_status(ticket), REQUESTER,
                         Source.USER_MAIL, warsaw(12, 1, 9))

    stored = models.Ticket.get_by_id(ticket.id)
    assert stored.status == "in_progress"
    assert stored.resolved_at is None
    assert stored.auto_close_due is None
    assert clock_state(stored) == ClockState.RUNNING
    assert len(events("reopened")) == 1
    assert len(outbox("status_reopened")) == 1


def test_lifecycle_close_after_resolution_keeps_resolved_at(tmp_path: Path,
                                                             database_url: str) -> None:
    desk = english_desk(tmp_path, database_url)
    ticket = new_ticket(desk, assignee="marek.zielinski", status="in_progress")
    lifecycle.transition(desk, ticket, "resolved", "marek.zielinski", Source.AGENT_COMMAND,
                         warsaw(11, 30, 11))

    lifecycle.transition(desk, ticket, "closed", "maildesk", Source.SCHEDULER, warsaw(12, 5, 11))

    stored = models.Ticket.get_by_id(ticket.id)
    assert stored.status == "closed"
    assert stored.resolved_at == datetime(2026, 11, 30, 10)
    assert stored.closed_at == datetime(2026, 12, 5, 10)
    assert stored.auto_close_due is None


def test_lifecycle_priority_from_matrix_with_reason(tmp_path: Path, database_url: str) -> None:
    desk = english_desk(tmp_path, database_url)
    ticket = new_ticket(desk)

    changes = lifecycle.set_priority(desk, ticket, "ewa.nowak", Source.AGENT_COMMAND,
                                     warsaw(11, 30, 10), impact="high", urgency="high")

    assert lifecycle.Change("priority", 3, 1) in changes
    stored = models.Ticket.get_by_id(ticket.id)
    assert stored.priority == 1
    event = events("priority_changed")[0]
    assert json.loads(event.before) == {"impact": "medium", "urgency": "medium", "priority": 3}
    assert json.loads(event.detail)["reason"] == "impact high and urgency high give P1"
    assert len(events("sla_replan")) == 1


def test_lifecycle_priority_change_replans_due_times(tmp_path: Path,
                                                     database_url: str) -> None:
    desk = english_desk(tmp_path, database_url)
    ticket = new_ticket(desk)

    lifecycle.set_priority(desk, ticket, "ewa.nowak", Source.AGENT_COMMAND, warsaw(11, 30, 10),
                           priority=1, reason="awaria całego działu")

    stored = models.Ticket.get_by_id(ticket.id)
    # P1 counts around the clock from the original start, Monday 09:00 in Warsaw.
    assert stored.first_response_due == datetime(2026, 11, 30, 8, 30)
    assert stored.resolution_due == datetime(2026, 11, 30, 12)
    assert json.loads(events("priority_changed")[0].detail)["reason"] == "awaria całego działu"


def test_lifecycle_classify_checks_type(tmp_path: Path, database_url: str) -> None:
    desk = english_desk(tmp_path, database_url)
    ticket = new_ticket(desk)

    with pytest.raises(LifecycleError):
        lifecycle.classify(desk, ticket, "ewa.nowak", Source.AGENT_COMMAND, warsaw(11, 30, 10),
                           ticket_type="problem")
    changes = lifecycle.classify(desk, ticket, "ewa.nowak", Source.AGENT_COMMAND,
                                 warsaw(11, 30, 10), ticket_type="service_request",
                                 category="konta")

    assert [change.field for change in changes] == ["type", "category"]
    stored = models.Ticket.get_by_id(ticket.id)
    assert stored.type == "service_request"
    assert stored.category == "konta"


def test_lifecycle_category_must_be_configured(tmp_path: Path, database_url: str) -> None:
    desk = english_desk(tmp_path, database_url,
                     sla={"categories": {"incident": ["sprzęt", "sieć"]}})
    ticket = new_ticket(desk)

    with pytest.raises(LifecycleError) as raised:
        lifecycle.classify(desk, ticket, "ewa.nowak", Source.AGENT_COMMAND, warsaw(11, 30, 10),
                           category="konta")

    assert "use sprzęt, sieć" in str(raised.value)


def test_lifecycle_notify_requester_can_be_limited(tmp_path: Path, database_url: str) -> None:
    desk = english_desk(tmp_path, database_url, sla={"notify_requester": ["resolved"]})
    ticket = new_ticket(desk, assignee="marek.zielinski", status="in_progress")

    lifecycle.transition(desk, ticket, "pending", "marek.zielinski", Source.AGENT_COMMAND,
                         warsaw(11, 30, 10))

    assert outbox("status_pending") == []


def test_lifecycle_created_ticket_gets_matrix_priority(tmp_path: Path,
                                                       database_url: str) -> None:
    desk = english_desk(tmp_path, database_url,
                     priority={"matrix": {"high": {"high": 1, "medium": 1, "low": 2},
                                          "medium": {"high": 2, "medium": 2, "low": 3},
                                          "low": {"high": 3, "medium": 4, "low": 4}}})

    ticket = new_ticket(desk)

    assert ticket.priority == 2
    event = events("priority_set")[0]
    assert json.loads(event.before) == 3
    assert json.loads(event.after) == 2
    assert ticket.first_response_due == datetime(2026, 11, 30, 9)


def test_lifecycle_error_in_polish(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    ticket = make_ticket(20607, "Test", REQUESTER, status="closed")

    with pytest.raises(LifecycleError) as raised:
        lifecycle.transition(desk, ticket, "new", "jan", Source.USER_MAIL, datetime.now(UTC))

    assert str(raised.value) == (
        "zgłoszenie 20607 nie może przejść ze statusu closed do new przez user_mail: "
        "user_mail nie może zmieniać zgłoszenia w statusie closed")


def test_lifecycle_assigned_notice_names_agent(tmp_path: Path, database_url: str) -> None:
    from email import message_from_bytes
    from email.policy import default as default_policy

    desk = english_desk(tmp_path, database_url)
    ticket = new_ticket(desk)

    lifecycle.assign(desk, ticket, "marek.zielinski", "ewa.nowak", Source.AGENT_COMMAND,
                     warsaw(11, 30, 9, 10))

    sent = message_from_bytes(bytes(outbox("status_assigned")[0].raw), policy=default_policy)
    text = sent.get_body(("plain",)).get_content()
    assert "Osoba przypisana: Marek Zieliński\n" in text.replace("\r\n", "\n")
    assert "Grupa: pierwsza-linia" in text
    assert "marek.zielinski" not in text
    assert "Planowany termin rozwiązania: 3 grudnia 2026 r., 09:00" in text
