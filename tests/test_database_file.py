"""A SQLite database file deleted or replaced under a running daemon."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from deskfactory import mail, make_desk

from maildesk import models, pipeline
from maildesk.databasefile import DatabaseFileReplacedError
from maildesk.wiring import build_daemon


def _maildir_desk(tmp_path: Path) -> Any:
    (tmp_path / "mailbox" / "new").mkdir(parents=True)
    return make_desk(tmp_path, f"sqlite:///{tmp_path / 'maildesk.sqlite3'}",
                     source={"type": "maildir", "path": str(tmp_path / "mailbox")})


def _deliver(tmp_path: Path, raw: bytes, name: str) -> Path:
    path = tmp_path / "mailbox" / "new" / name
    path.write_bytes(raw)
    return path


def _processed(tmp_path: Path) -> list[str]:
    folder = tmp_path / "mailbox" / ".Processed" / "cur"
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


def test_database_replaced_during_batch_keeps_mail(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    desk = _maildir_desk(tmp_path)
    daemon = build_daemon(desk)
    database = tmp_path / "maildesk.sqlite3"
    backup = tmp_path / "backup.sqlite3"
    shutil.copyfile(database, backup)
    waiting = _deliver(tmp_path, mail(message_id="<m1@example.org>"), "1.mail")
    real_process = pipeline.process

    def process_then_restore(*args: Any, **kwargs: Any) -> Any:
        outcome = real_process(*args, **kwargs)
        # What an admin's restore with mv does while the daemon runs.
        backup.replace(database)
        return outcome

    monkeypatch.setattr(pipeline, "process", process_then_restore)

    with pytest.raises(DatabaseFileReplacedError) as raised:
        daemon.run(once=True)

    assert "replaced" in str(raised.value)
    assert str(database) in str(raised.value)
    assert waiting.exists()
    assert _processed(tmp_path) == []


def test_database_deleted_while_idle_stops_daemon(tmp_path: Path) -> None:
    desk = _maildir_desk(tmp_path)
    daemon = build_daemon(desk)
    daemon.run(once=True)
    database = tmp_path / "maildesk.sqlite3"
    for path in tmp_path.glob("maildesk.sqlite3*"):
        path.unlink()
    waiting = _deliver(tmp_path, mail(message_id="<m2@example.org>"), "2.mail")

    with pytest.raises(DatabaseFileReplacedError) as raised:
        daemon.run(once=True)

    assert "deleted" in str(raised.value)
    assert str(database) in str(raised.value)
    assert waiting.exists()
    assert daemon.processed == 0


def test_database_in_place_keeps_daemon_running(tmp_path: Path) -> None:
    desk = _maildir_desk(tmp_path)
    daemon = build_daemon(desk)
    _deliver(tmp_path, mail(message_id="<m3@example.org>"), "3.mail")

    daemon.run(once=True)

    assert _processed(tmp_path) == ["3.mail"]
    assert models.Ticket.select().count() == 1


def test_database_deleted_daemon_waits_for_restore(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # A supervisor restarts a daemon that exits (systemd's Restart=on-failure after
    # RestartSec), and the restarted daemon would open a new, empty database. So the
    # daemon waits until the admin puts a file back, then stops to be started on it.
    desk = _maildir_desk(tmp_path)
    daemon = build_daemon(desk)
    daemon.run(once=True)
    database = tmp_path / "maildesk.sqlite3"
    backup = tmp_path / "backup.sqlite3"
    shutil.copy2(database, backup)
    # A backup taken earlier, not a file still being written.
    os.utime(backup, (backup.stat().st_atime - 3600, backup.stat().st_mtime - 3600))
    database.unlink()
    waiting = _deliver(tmp_path, mail(message_id="<m4@example.org>"), "4.mail")
    waits: list[float] = []

    def admin_restores(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            backup.replace(database)

    monkeypatch.setattr(daemon, "_sleep", admin_restores)

    with pytest.raises(DatabaseFileReplacedError) as raised:
        daemon.run()

    assert type(raised.value) is DatabaseFileReplacedError
    assert str(database) in str(raised.value)
    assert len(waits) >= 3
    assert waiting.exists()
    assert daemon.processed == 0
    assert _processed(tmp_path) == []


def test_database_deleted_daemon_stops_on_request(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    desk = _maildir_desk(tmp_path)
    daemon = build_daemon(desk)
    daemon.run(once=True)
    database = tmp_path / "maildesk.sqlite3"
    database.unlink()
    waiting = _deliver(tmp_path, mail(message_id="<m5@example.org>"), "5.mail")

    def stop_requested(seconds: float) -> None:
        daemon.request_stop()

    monkeypatch.setattr(daemon, "_sleep", stop_requested)

    daemon.run()

    assert not database.exists()
    assert waiting.exists()
    assert daemon.processed == 0


def test_database_moved_back_daemon_goes_on(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    desk = _maildir_desk(tmp_path)
    daemon = build_daemon(desk)
    daemon.run(once=True)
    database = tmp_path / "maildesk.sqlite3"
    moved = tmp_path / "moved.sqlite3"
    database.replace(moved)
    _deliver(tmp_path, mail(message_id="<m6@example.org>"), "6.mail")
    waits: list[float] = []

    def admin_moves_back(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            os.utime(moved, (moved.stat().st_atime - 3600, moved.stat().st_mtime - 3600))
            moved.replace(database)
        if _processed(tmp_path) or len(waits) > 50:
            daemon.request_stop()

    monkeypatch.setattr(daemon, "_sleep", admin_moves_back)
    monkeypatch.setattr(daemon.source, "wait", lambda timeout, stop: admin_moves_back(timeout))

    daemon.run()

    assert _processed(tmp_path) == ["6.mail"]
    assert models.Ticket.select().count() == 1
