"""A SQLite desk shared by several processes that write: daemons and CLI commands.

In WAL mode a transaction that read first and then writes cannot wait for another
writer: SQLite fails it at once with "database is locked" when a commit came in between.
maildesk's transactions therefore take the write lock when they begin.
"""

from __future__ import annotations

import logging
import mailbox
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from deskfactory import mail, make_desk

from maildesk import models
from maildesk.wiring import build_daemon

# Another process that commits small writes back to back, as a second daemon renewing
# its lease or an admin's CLI command would.
WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import peewee
    from maildesk import models
    database = models.open_database(sys.argv[1], migrate=False)
    ready, stop = Path(sys.argv[2]), Path(sys.argv[3])
    ready.touch()
    failures = writes = 0
    while not stop.exists():
        try:
            with database.atomic():
                models.Outbox.select().where(models.Outbox.state == "pending").count()
                database.execute_sql('UPDATE schema_version SET version = version')
            writes += 1
        except peewee.OperationalError as error:
            failures += 1
            print(error, file=sys.stderr)
        time.sleep(0.001)
    print(writes)
    sys.exit(1 if failures else 0)
""")


def test_mail_transactions_wait_for_another_writer(tmp_path: Path, caplog) -> None:
    database = tmp_path / "maildesk.sqlite3"
    maildir = mailbox.Maildir(tmp_path / "Maildir", create=True)
    for number in range(40):
        maildir.add(mail(sender=f"user{number}@example.org", subject=f"Awaria {number}",
                         message_id=f"<w{number}@example.org>"))
    desk = make_desk(tmp_path, f"sqlite:///{database}",
                     source={"type": "maildir", "path": str(tmp_path / "Maildir")},
                     parse_ahead=False)
    daemon = build_daemon(desk)
    ready, stop = tmp_path / "ready", tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, f"sqlite:///{database}", str(ready), str(stop)],
        stdout=subprocess.PIPE, text=True)
    caplog.set_level(logging.WARNING)

    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ready.exists(), "the writer process did not start"
        handled = daemon.run(once=True)
    finally:
        stop.touch()
        output, _errors = writer.communicate(timeout=30)

    assert writer.returncode == 0, "the other process could not write"
    # The two processes wrote at the same time, not one after the other.
    assert int(output) >= 5
    assert handled == 40
    assert models.Ticket.select().count() == 40
    assert not [record.getMessage() for record in caplog.records
                if record.levelno >= logging.WARNING and record.name != "maildesk.agents"]
