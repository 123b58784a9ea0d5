"""The Maildir source: processed mail moves to .Processed, broken mail to .Quarantine."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from deskfactory import mail, make_desk, make_ticket

from maildesk import models
from maildesk.errors import SourceError
from maildesk.wiring import build_daemon


def _files(folder: Path) -> list[Path]:
    return sorted(path for sub in ("new", "cur") for path in (folder / sub).glob("*")
                  if path.is_file())


def test_maildir_pass_moves_processed_and_quarantined(tmp_path: Path, database_url: str) -> None:
    mailbox = tmp_path / "mailbox"
    (mailbox / "new").mkdir(parents=True)
    (mailbox / "new" / "1.good").write_bytes(mail())
    (mailbox / "new" / "2.broken").write_bytes(b"Subject: no sender\r\n\r\ntext\r\n")
    desk = make_desk(tmp_path, database_url, source={"type": "maildir", "path": str(mailbox)})

    daemon = build_daemon(desk)
    daemon.run(once=True)

    assert daemon.outcomes == {"create": 1, "quarantined": 1}
    assert _files(mailbox) == []
    assert [path.name for path in _files(mailbox / ".Processed")] == ["1.good"]
    assert [path.name for path in _files(mailbox / ".Quarantine")] == ["2.broken"]
    assert models.Quarantine.get().sender == ""


def test_maildir_dot_files_are_not_mail(tmp_path: Path, database_url: str) -> None:
    # A copied Maildir often contains a .keep file. It used to end in quarantine as an
    # empty mail, with a notice to the admins.
    mailbox = tmp_path / "mailbox"
    for folder in ("new", "cur", "tmp"):
        (mailbox / folder).mkdir(parents=True)
    (mailbox / "cur" / ".keep").write_bytes(b"")
    (mailbox / "new" / ".1.good.swp").write_bytes(b"not a mail")
    (mailbox / "new" / "1.good").write_bytes(mail())
    desk = make_desk(tmp_path, database_url, source={"type": "maildir", "path": str(mailbox)})
    daemon = build_daemon(desk)

    daemon.run(once=True)

    assert daemon.outcomes == {"create": 1}
    assert (mailbox / "cur" / ".keep").exists()
    assert (mailbox / "new" / ".1.good.swp").exists()
    assert models.Quarantine.select().count() == 0


def test_quarantined_earlier_moves_to_quarantine(tmp_path: Path, database_url: str) -> None:
    # The process that quarantined the mail died before moving it out of the inbox.
    from maildesk import pipeline

    mailbox = tmp_path / "mailbox"
    (mailbox / "new").mkdir(parents=True)
    broken = b"Subject: no sender\r\n\r\ntext\r\n"
    (mailbox / "new" / "1.broken").write_bytes(broken)
    desk = make_desk(tmp_path, database_url, source={"type": "maildir", "path": str(mailbox)})
    assert pipeline.process(desk, broken, "maildir:1.broken").action == "quarantined"

    daemon = build_daemon(desk)
    daemon.run(once=True)

    assert daemon.outcomes == {"duplicate": 1}
    assert _files(mailbox / ".Processed") == []
    assert [path.name for path in _files(mailbox / ".Quarantine")] == ["1.broken"]
    assert models.Quarantine.select().count() == 1


def test_pass_summary_names_outcomes(tmp_path: Path, database_url: str,
                                     caplog: pytest.LogCaptureFixture) -> None:
    from maildesk.i18n import current_language, set_language

    mailbox = tmp_path / "mailbox"
    (mailbox / "new").mkdir(parents=True)
    (mailbox / "new" / "1.good").write_bytes(mail())
    (mailbox / "new" / "2.broken").write_bytes(b"Subject: no sender\r\n\r\ntext\r\n")
    desk = make_desk(tmp_path, database_url, source={"type": "maildir", "path": str(mailbox)})
    previous = current_language()
    set_language("pl")
    try:
        with caplog.at_level(logging.INFO, logger="maildesk.daemon"):
            build_daemon(desk).run(once=True)
            build_daemon(desk).run(once=True)
    finally:
        set_language(previous)

    stops = [record.getMessage() for record in caplog.records
             if "zatrzymany" in record.getMessage()]
    assert stops == [
        "maildesk zatrzymany, przetworzone wiadomości: 2 (nowe zgłoszenia: 1, "
        "w kwarantannie: 1)",
        "maildesk zatrzymany, przetworzone wiadomości: 0",
    ]


def test_maildir_second_pass_finds_nothing(tmp_path: Path, database_url: str) -> None:
    mailbox = tmp_path / "mailbox"
    (mailbox / "new").mkdir(parents=True)
    (mailbox / "new" / "1.good").write_bytes(mail())
    desk = make_desk(tmp_path, database_url, source={"type": "maildir", "path": str(mailbox)})
    build_daemon(desk).run(once=True)

    second = build_daemon(desk)
    second.run(once=True)

    assert second.processed == 0
    assert models.Ticket.select().count() == 1


def test_maildir_once_sends_what_the_scheduler_queued(tmp_path: Path, database_url: str) -> None:
    mailbox = tmp_path / "mailbox"
    (mailbox / "new").mkdir(parents=True)
    desk = make_desk(tmp_path, database_url, source={"type": "maildir", "path": str(mailbox)})
    ticket = make_ticket(20901, "Drukarka nie drukuje", "zofia.wisniewska@example.org",
                         status="pending", assignee="marek.zielinski")
    ticket.pending_reminder_due = models.utcnow() - timedelta(minutes=5)
    ticket.save()

    build_daemon(desk).run(once=True)

    reminders = list(models.Outbox.select().where(models.Outbox.ticket == 20901))
    assert [row.kind for row in reminders] == ["pending_reminder"]
    assert [row.state for row in reminders] == ["sent"]


def test_maildir_move_failure_is_retried(tmp_path: Path, database_url: str) -> None:
    mailbox = tmp_path / "mailbox"
    (mailbox / "new").mkdir(parents=True)
    (mailbox / "new" / "1.good").write_bytes(mail())
    processed = mailbox / ".Processed"
    for sub in ("new", "tmp"):
        (processed / sub).mkdir(parents=True)
    # A file where the folder should be: the rename fails as on a broken file system.
    (processed / "cur").write_bytes(b"")
    desk = make_desk(tmp_path, database_url, source={"type": "maildir", "path": str(mailbox)})
    daemon = build_daemon(desk)

    with pytest.raises(SourceError, match="1.good"):
        daemon.drain()
    left = [path.name for path in _files(mailbox)]
    (processed / "cur").unlink()
    (processed / "cur").mkdir()
    daemon.drain()

    assert left == ["1.good"]
    assert daemon.outcomes == {"create": 1, "duplicate": 1}
    assert _files(mailbox) == []
    assert [path.name for path in _files(processed)] == ["1.good"]
    assert models.Ticket.select().count() == 1


def test_daemon_wait_follows_short_check_interval(tmp_path: Path, database_url: str) -> None:
    mailbox = tmp_path / "mailbox"
    (mailbox / "new").mkdir(parents=True)
    source = {"type": "maildir", "path": str(mailbox)}
    for name in ("quick", "usual"):
        (tmp_path / name).mkdir()
    quick = make_desk(tmp_path / "quick", database_url, source=source,
                      sla={"check_interval": "10s"})
    usual = make_desk(tmp_path / "usual", database_url, source=source)

    # The scheduler runs once per wake-up, so the wait decides how late its notices are.
    assert build_daemon(quick)._wait_interval() == 10.0
    assert build_daemon(usual)._wait_interval() == 60.0
