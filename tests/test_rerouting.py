"""Routing rules with ``on_followup: true`` acting on an existing ticket."""

from __future__ import annotations

from pathlib import Path

from deskfactory import mail, make_desk

from maildesk import models, pipeline
from maildesk.wiring import load_rules

FOLLOWUP_RULES = """\
- name: awaria-krytyczna
  on_followup: true
  when:
    body: {contains: [cała firma, wszyscy użytkownicy]}
  then:
    group: druga-linia
    impact: high
    urgency: high
    tags: [awaria]
- name: tylko-nowe
  when:
    subject: drukark
  then:
    category: drukarki
"""


def _desk(tmp_path: Path, database_url: str):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "10-followup.yaml").write_text(FOLLOWUP_RULES, encoding="utf-8")
    return make_desk(tmp_path, database_url)


def test_followup_rule_escalates_existing_ticket(tmp_path: Path, database_url: str) -> None:
    desk = _desk(tmp_path, database_url)
    rules = load_rules(desk)
    created = pipeline.process(desk, mail(), "test:1", rules)
    ticket = models.Ticket.get_by_id(created.ticket)
    assert ticket.category == "drukarki"
    assert ticket.priority == 3

    reply = mail(subject=f"Re: [#{ticket.id}] Drukarka nie drukuje", message_id="<m2@example.org>",
                 body="Teraz nie drukuje cała firma, wszystkie drukarki stoją.")
    outcome = pipeline.process(desk, reply, "test:2", rules)

    assert outcome.action == "append"
    updated = models.Ticket.get_by_id(ticket.id)
    assert updated.group == "druga-linia"
    assert updated.priority == 1
    assert "awaria" in updated.tags.split()
    applied = models.Event.get(models.Event.action == "rules_applied")
    assert "awaria-krytyczna" in applied.detail


def test_rules_without_opt_in_skip_followups(tmp_path: Path, database_url: str) -> None:
    desk = _desk(tmp_path, database_url)
    rules = load_rules(desk)
    created = pipeline.process(desk, mail(subject="Laptop", body="Nie działa laptop."),
                               "test:1", rules)

    reply = mail(subject=f"Re: [#{created.ticket}] Drukarka też", message_id="<m3@example.org>",
                 body="Drukarka też nie drukuje.")
    pipeline.process(desk, reply, "test:2", rules)

    assert models.Ticket.get_by_id(created.ticket).category is None
    assert not models.Event.select().where(models.Event.action == "rules_applied").exists()
