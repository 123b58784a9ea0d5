"""The mailbox lease: one daemon reads a mailbox, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from deskfactory import make_desk

from maildesk import lease, models


def test_lease_held_by_one_owner(tmp_path: Path, database_url: str) -> None:
    make_desk(tmp_path, database_url)

    first = lease.acquire("imap:INBOX", "host-a:1")
    second = lease.acquire("imap:INBOX", "host-b:2")
    renewed = lease.acquire("imap:INBOX", "host-a:1")

    assert first is True
    assert second is False
    assert renewed is True
    assert lease.holder("imap:INBOX") == "host-a:1"


def test_lease_expires_for_a_dead_owner(tmp_path: Path, database_url: str) -> None:
    make_desk(tmp_path, database_url)
    lease.acquire("imap:INBOX", "host-a:1", duration=timedelta(minutes=2))
    models.MailboxState.update(lease_until=models.utcnow() - timedelta(seconds=1)).execute()

    taken = lease.acquire("imap:INBOX", "host-b:2")

    assert taken is True
    assert lease.holder("imap:INBOX") == "host-b:2"


def test_lease_released_at_clean_stop(tmp_path: Path, database_url: str) -> None:
    make_desk(tmp_path, database_url)
    lease.acquire("imap:INBOX", "host-a:1")

    lease.release("imap:INBOX", "host-a:1")

    assert lease.holder("imap:INBOX") is None
    assert lease.acquire("imap:INBOX", "host-b:2") is True


def test_lease_of_dead_local_process_is_taken_over(tmp_path: Path, database_url: str) -> None:
    import socket

    make_desk(tmp_path, database_url)
    dead_pid = 2 ** 22 + 17  # above the default pid_max, so no process has it
    lease.acquire("imap:INBOX", f"{socket.gethostname()}:{dead_pid}")

    taken = lease.acquire("imap:INBOX", f"{socket.gethostname()}:1")

    assert taken is True


def test_standby_daemon_runs_no_scheduler(tmp_path: Path, database_url: str) -> None:
    # Two daemons running the scheduler at once raced for the same reminders and closes.
    # The daemon without the mailbox lease now runs no scheduler.
    from deskfactory import mail

    from maildesk import pipeline
    from maildesk.wiring import build_daemon

    mailbox = tmp_path / "mailbox"
    for folder in ("new", "cur", "tmp"):
        (mailbox / folder).mkdir(parents=True)
    desk = make_desk(tmp_path, database_url, source={"type": "maildir", "path": str(mailbox)})
    pipeline.process(desk, mail(), "test:1")  # an acknowledgement waits in the outbox
    daemon = build_daemon(desk)
    ticks: list[str] = []
    daemon.periodic = [lambda: ticks.append("tick")]
    lease.acquire(daemon.source.name, "other-host:1")

    daemon.run(once=True)
    standby_ticks = list(ticks)
    lease.release(daemon.source.name, "other-host:1")
    daemon.run(once=True)

    assert standby_ticks == []
    assert models.Outbox.get().state == "sent"
    assert ticks == ["tick"]
