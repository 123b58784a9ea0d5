"""Deleting closed tickets after the retention period, with the mail they stored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from deskfactory import mail, make_desk

from maildesk import models, notify, pipeline, retention
from maildesk.cli import main as cli_main
from maildesk.outbox import Sender, record_bounce

WARSAW = ZoneInfo("Europe/Warsaw")
CUTOFF = datetime(2025, 1, 1, tzinfo=WARSAW)
PNG = b"\x89PNG\r\n\x1a\n" + b"drukarka" * 40


def ticket_from(desk, number: int, closed: datetime | None, png: bytes | None = PNG) -> int:
    """Make a ticket from a real mail through the pipeline; close it at ``closed``."""
    raw = mail(message_id=f"<m{number}@example.org>", subject=f"Zgłoszenie {number}",
               png=("zrzut.png", png) if png else None)
    outcome = pipeline.process(desk, raw, f"test:{number}")
    assert outcome.ticket is not None
    Sender(desk.config.smtp).deliver_due()
    if closed is not None:
        moment = closed.astimezone(UTC).replace(tzinfo=None)
        models.Ticket.update(status="closed", closed_at=moment).where(
            models.Ticket.id == outcome.ticket).execute()
        # The ticket's mail went out before it closed.
        models.Outbox.update(created_at=moment).where(
            models.Outbox.ticket == outcome.ticket).execute()
    return outcome.ticket


def newer_open_ticket(desk) -> int:
    """An open ticket newer than the others: on SQLite a purge never takes the newest."""
    return ticket_from(desk, 90, None, png=None)


@pytest.fixture
def desk(tmp_path: Path, database_url: str):
    return make_desk(tmp_path, database_url)


def test_purge_deletes_old_closed_tickets(desk) -> None:
    old = ticket_from(desk, 1, datetime(2024, 6, 1, 12, tzinfo=WARSAW))
    recent = ticket_from(desk, 2, datetime(2026, 11, 2, tzinfo=WARSAW))  # same attachment
    still_open = ticket_from(desk, 3, None, png=b"\x89PNG\r\n\x1a\n" + b"inny" * 50)
    models.Ticket.update(linked_ticket=old).where(models.Ticket.id == still_open).execute()
    old_message = models.Message.get(models.Message.ticket == old)
    old_raw = old_message.raw_sha256
    shared = models.Attachment.get(models.Attachment.message == old_message).sha256

    counted = retention.preview(CUTOFF)
    done = retention.purge(desk, CUTOFF)

    assert (counted.tickets, counted.messages, counted.attachments) == (1, 1, 1)
    assert counted.outgoing >= 1
    assert (done.tickets, done.messages, done.attachments) == (1, 1, 1)
    assert done.outgoing == counted.outgoing
    assert models.Ticket.get_or_none(models.Ticket.id == old) is None
    assert models.Ticket.get_by_id(recent).status == "closed"
    assert models.Ticket.get_by_id(still_open).linked_ticket_id is None
    assert not models.Event.select().where(models.Event.ticket == old).exists()
    with pytest.raises(FileNotFoundError):
        desk.store.get_message(old_raw)
    # The attachment of ticket 2 has the same bytes, so it stays.
    assert desk.store.get("attachments", shared) == PNG
    event = models.Event.get(models.Event.action == "tickets_purged")
    assert event.ticket_id is None
    assert json.loads(event.detail)["outgoing"] == done.outgoing


def test_purge_keeps_dedupe_record(desk) -> None:
    raw = mail(message_id="<m1@example.org>", subject="Zgłoszenie 1")
    pipeline.process(desk, raw, "test:1")
    Sender(desk.config.smtp).deliver_due()
    models.Ticket.update(status="closed", closed_at=datetime(2024, 6, 1)).execute()
    newer_open_ticket(desk)
    retention.purge(desk, CUTOFF)

    # The same bytes again, as a mailbox synchronised anew delivers them.
    again = pipeline.process(desk, raw, "test:again")

    assert again.ticket is None
    assert models.Ticket.select().count() == 1
    assert models.ProcessedMessage.get(
        models.ProcessedMessage.dedupe_key.contains("m1@example.org")).ticket_id is None


def test_purge_keeps_ticket_with_waiting_mail(desk) -> None:
    number = ticket_from(desk, 1, datetime(2024, 6, 1, tzinfo=WARSAW))
    newer_open_ticket(desk)
    models.Outbox.update(state="pending").where(models.Outbox.ticket == number).execute()

    done = retention.purge(desk, CUTOFF)

    assert done.tickets == 0
    assert done.kept_for_outbox == 1
    assert models.Ticket.get_by_id(number).status == "closed"


def test_purge_cli_counts_first_and_deletes_with_yes(desk) -> None:
    ticket_from(desk, 1, datetime(2024, 6, 1, tzinfo=WARSAW))
    newer_open_ticket(desk)
    runner = CliRunner()
    config = str(desk.config.path)

    dry = runner.invoke(cli_main, ["--config", config, "tickets", "purge", "--closed-before",
                                   "2025-01-01"], env={"MAILDESK_LANGUAGE": "pl"})
    kept = models.Ticket.select().count()
    done = runner.invoke(cli_main, ["--config", config, "tickets", "purge", "--closed-before",
                                    "2025-01-01", "--yes"], env={"MAILDESK_LANGUAGE": "en"})
    future = runner.invoke(cli_main, ["--config", config, "tickets", "purge",
                                      "--closed-before", "2999-01-01"],
                           env={"MAILDESK_LANGUAGE": "en"})
    models.open_database(desk.config.database_url, migrate=False)

    assert dry.exit_code == 0, dry.output
    assert "1 zgłoszenie zamknięte przed 2025-01-01 zostałoby usunięte" in dry.stdout
    assert "Nic nie usunięto" in dry.stdout
    assert kept == 2
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("1 ticket deleted, with its messages (1), attachments (1) "
                                  "and sent mail (")
    assert models.Ticket.select().count() == 1
    assert future.exit_code == 2
    assert "2999-01-01 is in the future" in future.output


def test_purge_cli_sentence_agrees_with_counts(desk) -> None:
    ticket_from(desk, 1, datetime(2024, 6, 1, tzinfo=WARSAW))
    ticket_from(desk, 2, datetime(2024, 7, 1, tzinfo=WARSAW), png=None)
    newer_open_ticket(desk)
    config = str(desk.config.path)
    arguments = ["--config", config, "tickets", "purge", "--closed-before", "2025-01-01"]

    english = CliRunner().invoke(cli_main, arguments, env={"MAILDESK_LANGUAGE": "en"})
    polish = CliRunner().invoke(cli_main, arguments, env={"MAILDESK_LANGUAGE": "pl"})
    done = CliRunner().invoke(cli_main, [*arguments, "--yes"],
                              env={"MAILDESK_LANGUAGE": "pl"})
    models.open_database(desk.config.database_url, migrate=False)

    assert english.stdout.startswith(
        "2 tickets closed before 2025-01-01 would be deleted, with their messages (2), "
        "attachments (1) and sent mail (2).")
    assert polish.stdout.startswith(
        "2 zgłoszenia zamknięte przed 2025-01-01 zostałyby usunięte razem z wiadomościami "
        "(2), załącznikami (1) i wysłaną pocztą (2).")
    assert done.stdout.startswith(
        "usunięto 2 zgłoszenia razem z wiadomościami (2), załącznikami (1) i wysłaną "
        "pocztą (2); usunięte zapisane wiadomości i pliki: ")


def test_purge_rerun_after_kill_removes_files(desk) -> None:
    # Over the raw store's inline limit, so the mails and attachments are files.
    numbers = [ticket_from(desk, index, datetime(2024, 6, 1, tzinfo=WARSAW),
                           png=PNG + bytes([index]) * 70_000) for index in range(3)]
    stored = [path for path in desk.store.root.rglob("*") if path.is_file()]
    newer_open_ticket(desk)
    environment = {**os.environ, "MAILDESK_CRASH_AT": "purge-after-chunk",
                   "MAILDESK_LANGUAGE": "en"}
    command = [sys.executable, "-m", "maildesk.cli", "--config", str(desk.config.path),
               "tickets", "purge", "--closed-before", "2025-01-01", "--yes"]

    killed = subprocess.run(command, env=environment, capture_output=True, text=True,
                            timeout=120)
    models.open_database(desk.config.database_url, migrate=False)
    left_after_kill = models.Ticket.select().count()
    environment.pop("MAILDESK_CRASH_AT")
    again = subprocess.run(command, env=environment, capture_output=True, text=True,
                           timeout=120)
    models.open_database(desk.config.database_url, migrate=False)

    assert len(numbers) == 3
    assert len(stored) == 6
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert left_after_kill == 1  # the three fit in the one chunk that committed
    assert again.returncode == 0, again.stderr[-2000:]
    assert [path for path in stored if path.exists()] == []
    assert not (desk.store.root / retention.PENDING_REMOVALS).exists()


def test_purge_journal_keeps_rolled_back_content(desk, monkeypatch) -> None:
    number = ticket_from(desk, 1, datetime(2024, 6, 1, tzinfo=WARSAW),
                         png=PNG + b"x" * 70_000)
    raw = models.Message.get(models.Message.ticket == number).raw_sha256
    newer_open_ticket(desk)
    real = retention._delete_tickets

    def failing(numbers, report):
        candidates = real(numbers, report)
        retention._write_journal(desk.store.root / retention.PENDING_REMOVALS, candidates)
        raise OSError("disk failed")

    monkeypatch.setattr(retention, "_delete_tickets", failing)
    with pytest.raises(OSError):
        retention.purge(desk, CUTOFF)
    monkeypatch.setattr(retention, "_delete_tickets", real)
    models.Ticket.update(status="open").where(models.Ticket.id == number).execute()

    done = retention.purge(desk, CUTOFF)

    assert done.tickets == 0
    assert b"<m1@example.org>" in desk.store.get_message(raw)
    assert not (desk.store.root / retention.PENDING_REMOVALS).exists()


def test_purged_mail_copy_is_not_stored_again(desk) -> None:
    big = PNG + b"y" * 70_000  # a file, over the raw store's inline limit
    raw = mail(message_id="<m1@example.org>", subject="Zgłoszenie 1", png=("zrzut.png", big))
    small = mail(message_id="<m2@example.org>", subject="Zgłoszenie 2")
    for number, content in enumerate((raw, small)):
        pipeline.process(desk, content, f"test:{number}")
    Sender(desk.config.smtp).deliver_due()
    models.Ticket.update(status="closed", closed_at=datetime(2024, 6, 1)).execute()
    purged = {row.raw_sha256 for row in models.Message.select()}
    newer_open_ticket(desk)
    retention.purge(desk, CUTOFF)

    # A mailbox synchronised anew delivers both mails again, byte for byte.
    copies = [pipeline.process(desk, content, "test:again") for content in (raw, small)]

    assert [copy.action for copy in copies] == ["duplicate", "duplicate"]
    assert [path for path in desk.store.root.rglob("*") if path.is_file()] == []
    assert not models.StoredContent.select().where(
        models.StoredContent.sha256.in_(purged)).exists()


def test_purge_never_reuses_ticket_number(desk) -> None:
    first = ticket_from(desk, 1, datetime(2024, 6, 1, tzinfo=WARSAW))
    newest = ticket_from(desk, 2, datetime(2024, 6, 2, tzinfo=WARSAW))

    retention.purge(desk, CUTOFF)
    created = ticket_from(desk, 3, None)

    assert created not in (first, newest)
    assert models.Ticket.get_or_none(models.Ticket.id == first) is None


def test_purge_deletes_old_ticketless_mail_and_unused_contacts(desk) -> None:
    old = ticket_from(desk, 1, datetime(2024, 6, 1, tzinfo=WARSAW))
    newer_open_ticket(desk)
    stale = datetime(2024, 5, 1)
    models.Contact.update(created_at=stale).execute()
    lonely = models.Contact.create(address="ktos@example.org", created_at=stale)
    recent = models.Contact.create(address="nowy@example.org")
    rejection = models.Outbox.create(kind="rejection_blocked", message_id="<r1@x>",
                                     sender="helpdesk@example.com",
                                     recipients="ktos@example.org", raw=b"...",
                                     state="sent", created_at=stale)
    waiting = models.Outbox.create(kind="rejection_blocked", message_id="<r2@x>",
                                   sender="helpdesk@example.com",
                                   recipients="ktos@example.org", raw=b"...", state="pending",
                                   created_at=stale)
    requester = models.Ticket.get_by_id(old).requester_id

    done = retention.purge(desk, CUTOFF)

    # The open ticket has the same requester, so that contact stays.
    assert models.Contact.get_or_none(models.Contact.id == requester) is not None
    assert models.Contact.get_or_none(models.Contact.id == lonely.id) is None
    assert models.Contact.get_or_none(models.Contact.id == recent.id) is not None
    assert done.contacts == 1
    assert models.Outbox.get_or_none(models.Outbox.id == rejection.id) is None
    assert models.Outbox.get_by_id(waiting.id).state == "pending"


def test_purge_keeps_recent_bounce_mark(desk) -> None:
    old = ticket_from(desk, 1, datetime(2024, 6, 1, tzinfo=WARSAW))
    address = models.Ticket.get_by_id(old).requester.address
    models.Contact.update(created_at=datetime(2024, 5, 1)).execute()
    newer_open_ticket(desk)
    models.Ticket.update(requester=models.Contact.create(address="inny@example.org")).where(
        models.Ticket.id != old).execute()
    # The requester's mailbox is gone: mail to it bounced after the cutoff.
    record_bounce(address, "5.1.1 user unknown")

    done = retention.purge(desk, CUTOFF)
    contact = models.Contact.get_or_none(models.Contact.address == address)

    # Without the mark, a Cc of a new ticket to this address would get every reply again.
    assert contact is not None
    assert contact.bounced_at is not None
    assert done.contacts == 0


def test_purge_cli_names_kept_newest_ticket(desk) -> None:
    only = ticket_from(desk, 1, datetime(2024, 6, 1, tzinfo=WARSAW))
    runner = CliRunner()
    config = str(desk.config.path)

    dry = runner.invoke(cli_main, ["--config", config, "tickets", "purge", "--closed-before",
                                   "2025-01-01"], env={"MAILDESK_LANGUAGE": "pl"})
    done = runner.invoke(cli_main, ["--config", config, "tickets", "purge", "--closed-before",
                                    "2025-01-01", "--yes"], env={"MAILDESK_LANGUAGE": "en"})
    models.open_database(desk.config.database_url, migrate=False)
    left = models.Ticket.get_or_none(models.Ticket.id == only)

    assert dry.exit_code == 0, dry.output
    assert done.exit_code == 0, done.output
    if models.is_postgresql():
        assert left is None
        assert "highest number" not in done.stdout
        return
    # The desk's only ticket is old and closed, and the admin must learn why it stays.
    assert left is not None
    assert f"Zgłoszenie {only} zostaje, bo ma najwyższy numer" in dry.stdout
    assert f"Ticket {only} is kept because it has the highest number" in done.stdout


def test_preview_counts_what_purge_deletes(desk) -> None:
    ticket_from(desk, 1, datetime(2024, 6, 1, tzinfo=WARSAW))
    newer_open_ticket(desk)
    stale = datetime(2024, 5, 1)
    models.Contact.update(created_at=stale).execute()
    models.Contact.create(address="ktos@example.org", created_at=stale)
    models.Outbox.create(kind="rejection_blocked", message_id="<r1@x>",
                         sender="helpdesk@example.com", recipients="ktos@example.org",
                         raw=b"...", state="sent", created_at=stale)
    runner = CliRunner()

    counted = retention.preview(CUTOFF)
    dry = runner.invoke(cli_main, ["--config", str(desk.config.path), "tickets", "purge",
                                   "--closed-before", "2025-01-01"],
                        env={"MAILDESK_LANGUAGE": "en"})
    models.open_database(desk.config.database_url, migrate=False)
    done = retention.purge(desk, CUTOFF)

    assert done.outgoing == counted.outgoing
    assert done.contacts == 1
    assert counted.contacts == done.contacts
    assert dry.exit_code == 0, dry.output
    assert f"and sent mail ({done.outgoing})." in dry.stdout
    assert "Contacts that no ticket would name any more, to be deleted: 1" in dry.stdout


def test_purge_survives_cc_recorded_meanwhile(desk, request) -> None:
    if not models.is_postgresql():
        pytest.skip("SQLite lets one writer in at a time, so no mail is recorded meanwhile")
    old = ticket_from(desk, 1, datetime(2024, 6, 1, tzinfo=WARSAW))
    other = newer_open_ticket(desk)
    models.Ticket.update(requester=models.Contact.create(address="inny@example.org")).where(
        models.Ticket.id == other).execute()
    lonely = models.Contact.create(address="ktos@example.org", created_at=datetime(2024, 5, 1))
    schema = request.getfixturevalue("postgres_schema")
    daemon = schema.connect()
    daemon.autocommit = False
    # The daemon records a Cc of the newer ticket and has not committed yet.
    daemon.cursor().execute("INSERT INTO participant (ticket_id, contact_id, role) "
                            "VALUES (%s, %s, 'cc')", (other, lonely.id))
    outcome: dict[str, object] = {}

    def run_purge() -> None:
        try:
            outcome["report"] = retention.purge(desk, CUTOFF)
        except Exception as error:  # noqa: BLE001 - the test reports any failure
            outcome["error"] = error

    worker = threading.Thread(target=run_purge)
    worker.start()
    watcher = schema.connect()
    blocked = False
    for _attempt in range(200):
        with watcher.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity "
                           "WHERE wait_event_type = 'Lock' AND query LIKE 'DELETE%%contact%%'")
            blocked = bool(cursor.fetchone()[0])
        if blocked:
            break
        time.sleep(0.05)
    daemon.commit()
    worker.join(timeout=30)
    daemon.close()
    watcher.close()

    # The purge's deletion of contacts waited for the daemon's uncommitted Cc.
    assert blocked
    assert "error" not in outcome, outcome
    assert models.Ticket.get_or_none(models.Ticket.id == old) is None
    assert models.Contact.get_or_none(models.Contact.id == lonely.id) is not None
    assert models.Event.select().where(models.Event.action == "tickets_purged").exists()


def test_purge_keeps_mail_the_hourly_limit_counts(desk) -> None:
    newer_open_ticket(desk)
    sent = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=20)
    rejection = models.Outbox.create(kind="rejection_blocked", message_id="<r1@x>",
                                     sender="helpdesk@example.com",
                                     recipients=" petla@example.org ", raw=b"...",
                                     state="sent", created_at=sent)
    models.AutomaticMailRecipient.create(outbox=rejection, address="petla@example.org",
                                         created_at=sent)
    counted_before = notify._recently_sent_automatic("petla@example.org")

    # --closed-before today, run in the first hour after midnight: the cutoff is recent.
    retention.purge(desk, datetime.now(UTC) - timedelta(minutes=5))

    assert counted_before == 1
    assert notify._recently_sent_automatic("petla@example.org") == 1


def test_purge_keeps_last_hour_mail(desk) -> None:
    # A ticket closed minutes ago, purged with today's date: its acknowledgement still
    # counts for the hourly limits, so it stays, without the ticket.
    number = ticket_from(desk, 1, datetime.now(WARSAW) - timedelta(minutes=5))
    newer_open_ticket(desk)
    sent = models.Outbox.get(models.Outbox.ticket == number)
    recipients = models.AutomaticMailRecipient.select().where(
        models.AutomaticMailRecipient.outbox == sent.id).count()
    tomorrow = datetime.now(WARSAW).replace(hour=0, minute=0) + timedelta(days=1)

    counted = retention.preview(tomorrow)
    done = retention.purge(desk, tomorrow)

    assert done.tickets == 1
    assert counted.outgoing == done.outgoing == 0
    assert models.Outbox.get_by_id(sent.id).ticket_id is None
    assert models.AutomaticMailRecipient.select().where(
        models.AutomaticMailRecipient.outbox == sent.id).count() == recipients > 0


def test_purge_deletes_old_daily_summary_records(desk) -> None:
    summary = models.DailySummarySent
    summary.create(day=datetime(2024, 5, 2).date(), recipient="marek.zielinski@example.com",
                   kind="agent", sent_at=datetime(2024, 5, 2, 7))
    recent = summary.create(day=datetime.now(UTC).date(), recipient="ewa.nowak@example.com",
                            kind="agent")

    retention.purge(desk, CUTOFF)

    assert [row.id for row in summary.select()] == [recent.id]
