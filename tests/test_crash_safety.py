"""SIGKILL at each crash point of a pass, then a restart: every mail is one ticket.

The daemon runs as a real process (``maildesk run --once``) and kills itself at a named
point (see ``maildesk.faults``); a second run without the fault finishes the work.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from deskfactory import mail
from imapdesk import imap_config

from maildesk import models

pytestmark = pytest.mark.servers

MAILS = 3


def _run(config: Path, password: str, crash_at: str | None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "MAILDESK_TEST_IMAP_PASSWORD": password}
    environment.pop("MAILDESK_CRASH_AT", None)
    if crash_at:
        environment["MAILDESK_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, "-m", "maildesk.cli", "--config", str(config), "run", "--once"],
        env=environment, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize("crash_at", ["before-commit", "after-commit", "before-ack",
                                      "during-send", "after-send"])
def test_crash_then_restart_processes_each_mail_once(tmp_path: Path, database_url: str,
                                                     imap_account, smtp,
                                                     crash_at: str) -> None:
    config = imap_config(tmp_path, database_url, imap_account, smtp)
    for number in range(MAILS):
        imap_account.append(mail(message_id=f"<c{number}@example.org>",
                                 sender=f"user{number}@example.org",
                                 subject=f"Awaria {number}"))

    crashed = _run(config, imap_account.password, crash_at)
    # Outbox rows left in "sending" by the killed process count as stale right away here.
    models.open_database(database_url, migrate=False)
    models.Outbox.update(next_attempt_at=models.utcnow().replace(year=2000)).where(
        models.Outbox.state == "sending").execute()
    finished = _run(config, imap_account.password, None)

    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "Traceback" not in finished.stderr, finished.stderr[-3000:]
    assert models.Ticket.select().count() == MAILS
    assert models.ProcessedMessage.select().count() == MAILS
    assert imap_account.messages("INBOX") == {}
    per_recipient = Counter(rcpt for d in smtp.deliveries for rcpt in d.rcpt_tos)
    assert set(per_recipient) == {f"user{n}@example.org" for n in range(MAILS)}
    message_ids = Counter(d.message["Message-ID"] for d in smtp.deliveries)
    assert len(message_ids) == MAILS
    if crash_at == "after-send":
        # The server accepted the first mail just before the kill: it goes out again with
        # the same Message-ID, which receiving systems use to drop the copy.
        assert sorted(message_ids.values()) == [1] * (MAILS - 1) + [2]
    else:
        assert set(per_recipient.values()) == {1}


def test_quick_restart_sends_claimed_mail(tmp_path: Path, database_url: str, imap_account,
                                          smtp) -> None:
    config = imap_config(tmp_path, database_url, imap_account, smtp)
    for number in range(MAILS):
        imap_account.append(mail(message_id=f"<s{number}@example.org>",
                                 sender=f"user{number}@example.org",
                                 subject=f"Awaria {number}"))

    crashed = _run(config, imap_account.password, "during-send")
    models.open_database(database_url, migrate=False)
    left_claimed = models.Outbox.select().where(models.Outbox.state == "sending").count()
    # Restarted at once, as a supervisor does: the claims of the killed process are
    # seconds old, far from stale by age.
    finished = _run(config, imap_account.password, None)

    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    assert left_claimed == MAILS
    assert finished.returncode == 0, finished.stderr[-2000:]
    states = Counter(row.state for row in models.Outbox.select())
    assert states == {"sent": MAILS}
    per_recipient = Counter(rcpt for d in smtp.deliveries for rcpt in d.rcpt_tos)
    assert per_recipient == {f"user{n}@example.org": 1 for n in range(MAILS)}
