"""A SQLite file that another process keeps locked longer than maildesk's busy timeout.

``deliver`` must then exit 75, so the MTA keeps the mail, and the daemon must wait and
retry instead of stopping. Each test waits out the 10-second busy timeout at least once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deskfactory import mail, write_config

from maildesk import models

EX_TEMPFAIL = 75

# Holds a write transaction on the file for the given seconds, as a backup tool or an
# admin's sqlite3 shell left open in a transaction does.
LOCKER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("ROLLBACK")
"""


# Longer than maildesk's 10 s busy timeout plus a start of the process that can take a
# few seconds on a loaded machine, so maildesk gives up waiting before the lock ends.
LOCK_SECONDS = 16


@contextmanager
def locked(database: Path, seconds: float) -> Iterator[subprocess.Popen[str]]:
    """Lock ``database`` from another process for ``seconds``, from when the block starts."""
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(database), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout is not None
        assert locker.stdout.readline().strip() == "locked"
        yield locker
    finally:
        locker.kill()
        locker.wait()


def _maildesk(config: Path, *arguments: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "maildesk.cli", "--config", str(config), *arguments],
        input=stdin, capture_output=True, timeout=120,
        env={**os.environ, "MAILDESK_LANGUAGE": "en"},
    )


def test_deliver_on_locked_database_exits_75(tmp_path: Path) -> None:
    database = tmp_path / "maildesk.sqlite3"
    config = write_config(tmp_path, f"sqlite:///{database}")
    first = _maildesk(config, "deliver", stdin=mail(message_id="<first@example.org>"))
    # A renamed agent makes the next start write the agents table.
    config.write_text(config.read_text(encoding="utf-8").replace("Ewa Nowak", "Ewa Nowacka"),
                      encoding="utf-8")
    second = mail(message_id="<second@example.org>", subject="Skaner nie skanuje")

    with locked(database, seconds=LOCK_SECONDS):
        refused = _maildesk(config, "deliver", stdin=second)
    accepted = _maildesk(config, "deliver", stdin=second)

    assert first.returncode == 0, first.stderr.decode()[-2000:]
    assert refused.returncode == EX_TEMPFAIL, refused.stderr.decode()[-2000:]
    assert b"Traceback" not in refused.stderr
    assert b"database unavailable: database is locked" in refused.stderr
    assert accepted.returncode == 0, accepted.stderr.decode()[-2000:]
    models.open_database(f"sqlite:///{database}", migrate=False)
    assert models.Ticket.select().count() == 2


def test_run_waits_for_a_locked_database(tmp_path: Path) -> None:
    database = tmp_path / "maildesk.sqlite3"
    mailbox = tmp_path / "mailbox"
    (mailbox / "new").mkdir(parents=True)
    (mailbox / "new" / "1.mail").write_bytes(mail())
    config = write_config(tmp_path, f"sqlite:///{database}",
                          source={"type": "maildir", "path": str(mailbox)})
    prepared = _maildesk(config, "tickets", "list")

    with locked(database, seconds=LOCK_SECONDS) as locker:
        finished = _maildesk(config, "run", "--once")
        waited = locker.poll() is not None

    stderr = finished.stderr.decode()
    assert prepared.returncode == 0, prepared.stderr.decode()[-2000:]
    assert finished.returncode == 0, stderr[-2000:]
    assert waited
    assert "Traceback" not in stderr, stderr[-3000:]
    assert "database unavailable: database is locked" in stderr
    assert list((mailbox / "new").iterdir()) == []
    models.open_database(f"sqlite:///{database}", migrate=False)
    assert models.Ticket.select().count() == 1
