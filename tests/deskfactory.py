"""Build a real desk (config file, database, storage) for one test."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from maildesk import models, servicehooks
from maildesk.desk import Desk
from maildesk.resources import shipped

DESK_ADDRESS = "helpdesk@example.com"
ADMIN_ADDRESS = "admin@example.com"
MESSAGE_ID_DOMAIN = "maildesk.example.com"


def base_config(database_url: str, tmp_path: Path) -> dict[str, Any]:
    """The desk every pipeline test uses: the conventions of the bug-report cases."""
    return {
        "language": "pl",
        "desk": {
            "name": "Helpdesk IT",
            "address": DESK_ADDRESS,
            "admin_addresses": [ADMIN_ADDRESS],
            "ticket_tag": "[#{number}]",
            "message_id_domain": MESSAGE_ID_DOMAIN,
        },
        "database": database_url,
        "storage": str(tmp_path / "storage"),
        "templates": str(shipped("templates")),
        "rules": str(tmp_path / "rules"),
        "smtp": {"transport": "directory", "directory": str(tmp_path / "outbox")},
        "groups": [
            {"name": "pierwsza-linia", "tier": 1, "manager": "kierownik@example.com",
             "escalates_to": "druga-linia"},
            {"name": "druga-linia", "tier": 2, "manager": "kierownik@example.com"},
        ],
        "agents": [
            {"login": "marek.zielinski", "name": "Marek Zieliński",
             "addresses": ["marek.zielinski@example.com"], "groups": ["pierwsza-linia"]},
            {"login": "ewa.nowak", "name": "Ewa Nowak",
             "addresses": ["ewa.nowak@example.com"], "groups": ["druga-linia"]},
        ],
    }


def write_config(tmp_path: Path, database_url: str, **overrides: Any) -> Path:
    config = base_config(database_url, tmp_path)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    (tmp_path / "rules").mkdir(exist_ok=True)
    path = tmp_path / "maildesk.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False),
                    encoding="utf-8")
    return path


def make_desk(tmp_path: Path, database_url: str, **overrides: Any) -> Desk:
    """Write a config, open (and migrate) the database and return the desk."""
    desk = Desk.open(write_config(tmp_path, database_url, **overrides))
    desk.store.fsync = False
    return desk


def clear_of_hour_end(margin: float = 10.0) -> None:
    """Sleep into the next clock hour when less than ``margin`` seconds of this one remain.

    Limits counted per clock hour start again at the full hour, so a test that fills
    one must not run across it.
    """
    now = models.utcnow()
    left = 3600 - (now.minute * 60 + now.second + now.microsecond / 1e6)
    if left < margin:
        time.sleep(left + 0.1)


def make_ticket(number: int, subject: str, requester: str, *, status: str = "new",
                sent_ids: tuple[str, ...] = (), participants: tuple[str, ...] = (),
                assignee: str | None = None, priority: int = 3) -> models.Ticket:
    """Create a ticket as if maildesk had made it, with the Message-IDs it sent."""
    contact, _ = models.Contact.get_or_create(address=requester.lower())
    ticket = models.Ticket.create(id=number, subject=subject, requester=contact, status=status,
                                  assignee=assignee, priority=priority)
    for address in participants:
        if address.lower() == requester.lower():
            continue
        other, _ = models.Contact.get_or_create(address=address.lower())
        models.Participant.create(ticket=ticket, contact=other)
    for message_id in sent_ids:
        models.MessageReference.create(message_id=message_id, ticket=ticket, direction="out",
                                       kind=message_id.strip("<").split(".")[0],
                                       recipients=requester.lower(), trusted=True)
    return ticket


def start_service_levels(desk: Desk, ticket: models.Ticket) -> None:
    """Set the priority and start the SLA clock of a ``make_ticket`` ticket, as a new mail does.

    The clock starts at the ticket's ``created_at``.
    """
    plan = servicehooks.prepare_new_ticket(desk, None, ticket)
    ticket.save()
    servicehooks.on_ticket_created(desk, None, ticket, plan)


def mail(*, sender: str = "Zofia Wiśniewska <zofia.wisniewska@example.org>",
         to: str = DESK_ADDRESS, subject: str = "Drukarka nie drukuje",
         body: str = "Dzień dobry,\n\ndrukarka nie drukuje.\n\nZofia\n",
         message_id: str | None = "<m1@example.org>", headers: dict[str, str] | None = None,
         png: tuple[str, bytes] | None = None) -> bytes:
    """Build a small, valid UTF-8 mail; ``png`` attaches an image as (file name, bytes)."""
    from email.message import EmailMessage
    from email.policy import SMTP

    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = "Fri, 04 Dec 2026 09:00:00 +0100"
    if message_id:
        message["Message-ID"] = message_id
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    if png is not None:
        filename, content = png
        message.add_attachment(content, maintype="image", subtype="png", filename=filename)
    return message.as_bytes()


def record_sql(database: Any, monkeypatch: Any) -> list[str]:
    """Record the text of every statement ``database`` runs from now on, still running it."""
    executed: list[str] = []
    execute = database.execute_sql

    def recording(sql: str, params: Any = None, *args: Any, **kwargs: Any) -> Any:
        executed.append(sql)
        return execute(sql, params, *args, **kwargs)

    monkeypatch.setattr(database, "execute_sql", recording)
    return executed


def record_helper_parses(monkeypatch: Any, before: Any = None) -> list[bool]:
    """Record, per processed mail, whether the parse helper had parsed it.

    ``before(count)`` runs before each mail is processed, with the mails counted so far.
    """
    from maildesk import pipeline

    real_process = pipeline.process
    parsed_by_helper: list[bool] = []

    def recording_process(desk: Any, raw: bytes, source: str, rules: Any = None,
                          parsed: Any = None) -> Any:
        parsed_by_helper.append(parsed is not None)
        if before is not None:
            before(len(parsed_by_helper))
        return real_process(desk, raw, source, rules, parsed)

    monkeypatch.setattr(pipeline, "process", recording_process)
    return parsed_by_helper
