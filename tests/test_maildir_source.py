"""The Maildir source: processed mail moves to .Processed, broken mail to .Quarantine."""

from __future__ import annotations

import email
import email.policy
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


def test_maildir_unmovable_quarantine_blocks_no_mail(tmp_path: Path,
                                                     database_url: str) -> None:
    mailbox = tmp_path / "mailbox"
    (mailbox / "new").mkdir(parents=True)
    # A file where the quarantine folder belongs: no mail can be moved there.
    (mailbox / ".Quarantine").write_bytes(b"")
    (mailbox / "new" / "0.empty").write_bytes(b"")
    for number in range(1, 4):
        (mailbox / "new" / f"{number}.good").write_bytes(
            mail(message_id=f"<good.{number}@example.org>", subject=f"Drukarka {number}"))
    desk = make_desk(tmp_path, database_url, source={"type": "maildir", "path": str(mailbox)})
    daemon = build_daemon(desk)
    daemon.source.batch_size = 2

    for _attempt in range(3):
        with pytest.raises(SourceError):
            daemon.drain()

    assert [path.name for path in _files(mailbox / ".Processed")] == [
        "1.good", "2.good", "3.good"]
    assert [path.name for path in _files(mailbox)] == ["0.empty"]
    assert models.Ticket.select().count() == 3
    assert models.Quarantine.select().count() == 1


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

@pytest.fixture
def english_messages(monkeypatch: pytest.MonkeyPatch):
    from maildesk.i18n import current_language, set_language

    previous = current_language()
    monkeypatch.setenv("MAILDESK_LANGUAGE", "en")  # Desk.open sets the language from it
    yield
    set_language(previous)


def _unreadable(path: Path) -> None:
    """Make ``path`` a file that even root cannot open: a symbolic link to itself (ELOOP)."""
    path.symlink_to(path.name)


def _retry_at_once(daemon, attempts: int = 3) -> None:
    from maildesk.sources.retries import ReadRetries

    daemon.source.retries = ReadRetries(daemon.source.name, attempts=attempts, delay=0)


def test_unreadable_file_does_not_stop_pass(tmp_path: Path, database_url: str) -> None:
    mailbox = tmp_path / "mailbox"
    (mailbox / "new").mkdir(parents=True)
    (mailbox / "new" / "1.good").write_bytes(mail(message_id="<m1@example.org>"))
    _unreadable(mailbox / "new" / "2.loop")
    (mailbox / "new" / "3.good").write_bytes(mail(message_id="<m3@example.org>",
                                                  sender="jan.nowak@example.org"))
    desk = make_desk(tmp_path, database_url, source={"type": "maildir", "path": str(mailbox)})
    daemon = build_daemon(desk)

    daemon.run(once=True)

    assert daemon.outcomes == {"create": 2}
    assert [path.name for path in _files(mailbox / ".Processed")] == ["1.good", "3.good"]
    assert (mailbox / "new" / "2.loop").is_symlink()
    assert models.Quarantine.select().count() == 0


def test_unreadable_file_quarantined_after_retries(tmp_path: Path, database_url: str,
                                                   caplog: pytest.LogCaptureFixture,
                                                   english_messages: None) -> None:
    mailbox = tmp_path / "mailbox"
    (mailbox / "new").mkdir(parents=True)
    (mailbox / "new" / "1.good").write_bytes(mail())
    _unreadable(mailbox / "new" / "2.loop")
    desk = make_desk(tmp_path, database_url, source={"type": "maildir", "path": str(mailbox)})
    daemon = build_daemon(desk)
    _retry_at_once(daemon, attempts=3)

    with caplog.at_level(logging.WARNING):
        daemon.drain()  # attempts 1 and 2: the second fetch of the pass tries it again
        left_in_new = [path.name for path in (mailbox / "new").iterdir()]
        daemon.drain()  # attempt 3: given up

    assert left_in_new == ["2.loop"]
    assert daemon.outcomes == {"create": 1, "quarantined": 1}
    assert list((mailbox / "new").iterdir()) == []
    moved = mailbox / ".Quarantine" / "cur" / "2.loop"
    assert moved.is_symlink()
    row = models.Quarantine.get()
    assert row.raw_sha256 == ""
    assert row.state == "held"
    assert row.source == f"maildir:{mailbox}/2.loop"
    assert "Too many levels of symbolic links" in row.error
    assert ".Quarantine" in row.error
    notices = list(models.Outbox.select().where(models.Outbox.kind == "quarantine"))
    assert len(notices) == 1
    assert "admin@example.com" in notices[0].recipients
    notice = email.message_from_bytes(bytes(notices[0].raw), policy=email.policy.default)
    text = notice.get_body(("plain",)).get_content()
    assert "nie mógł odczytać wiadomości w jej źródle" in text
    assert "quarantine delete 1" in text
    assert "quarantine retry" not in text
    errors = [record.getMessage() for record in caplog.records
              if record.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "2.loop" in errors[0]
    assert "Too many levels of symbolic links" in errors[0]
    retries = [record for record in caplog.records if "attempt 2 of 3" in record.getMessage()]
    assert len(retries) == 1


def test_file_readable_again_is_processed(tmp_path: Path, database_url: str,
                                         caplog: pytest.LogCaptureFixture,
                                         english_messages: None) -> None:
    mailbox = tmp_path / "mailbox"
    (mailbox / "new").mkdir(parents=True)
    # A dangling symbolic link, as a file on a share that is not mounted yet would give.
    (mailbox / "new" / "1.late").symlink_to(tmp_path / "share" / "1.late")
    desk = make_desk(tmp_path, database_url, source={"type": "maildir", "path": str(mailbox)})
    daemon = build_daemon(desk)
    _retry_at_once(daemon, attempts=3)

    with caplog.at_level(logging.INFO, logger="maildesk.sources"):
        daemon.drain()
        (tmp_path / "share").mkdir()
        (tmp_path / "share" / "1.late").write_bytes(mail())
        daemon.drain()

    messages = [record.getMessage() for record in caplog.records]
    # Logged, not skipped in silence as a file that vanished.
    assert len([text for text in messages if "cannot read 1.late" in text]) == 1
    assert any("1.late from maildir:" in text and "was read after 1 failed attempt" in text
               for text in messages)
    assert daemon.outcomes == {"create": 1}
    assert [path.name for path in _files(mailbox / ".Processed")] == ["1.late"]
    assert models.Quarantine.select().count() == 0


def test_unreadable_file_waits_for_its_retry(tmp_path: Path, database_url: str) -> None:
    import time

    from maildesk.sources.maildir import MaildirSource

    mailbox = tmp_path / "mailbox"
    (mailbox / "new").mkdir(parents=True)
    _unreadable(mailbox / "new" / "1.loop")
    (mailbox / "new" / "folder").mkdir()  # no mail: mailbox.Maildir skips folders
    source = MaildirSource(mailbox)  # the next read is due READ_RETRY_DELAY (60 s) later
    assert source.fetch() == []

    started = time.monotonic()
    source.wait(1.0, lambda: False)
    waited = time.monotonic() - started
    (mailbox / "new" / "2.good").write_bytes(mail())
    started = time.monotonic()
    source.wait(5.0, lambda: False)
    woken = time.monotonic() - started

    assert waited >= 0.9
    assert woken < 0.5


def test_unreadable_file_move_failure_is_retried(tmp_path: Path, database_url: str) -> None:
    mailbox = tmp_path / "mailbox"
    (mailbox / "new").mkdir(parents=True)
    _unreadable(mailbox / "new" / "1.loop")
    quarantine = mailbox / ".Quarantine"
    for sub in ("new", "tmp"):
        (quarantine / sub).mkdir(parents=True)
    # A file where the folder should be: the rename fails as on a broken file system.
    (quarantine / "cur").write_bytes(b"")
    desk = make_desk(tmp_path, database_url, source={"type": "maildir", "path": str(mailbox)})
    daemon = build_daemon(desk)
    _retry_at_once(daemon, attempts=1)

    with pytest.raises(SourceError, match="1.loop"):
        daemon.drain()
    (quarantine / "cur").unlink()
    (quarantine / "cur").mkdir()
    daemon.drain()

    assert (quarantine / "cur" / "1.loop").is_symlink()
    assert models.Quarantine.select().count() == 1
    assert models.Outbox.select().where(models.Outbox.kind == "quarantine").count() == 1
