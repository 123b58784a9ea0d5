"""The outbox during a backlog: sent after each fetched batch, not after the last one.

With a storm of mail in the mailbox, the first users' acknowledgements must not wait for
the whole backlog to be recorded. A server that cannot be reached is tried once per run,
not once per batch. A stop request ends the run after the mail in hand, and what is
queued waits in the outbox for the next start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from deskfactory import mail, make_desk
from servers import free_port

from maildesk import models, pipeline
from maildesk.wiring import build_daemon


def backlog_desk(tmp_path: Path, database_url: str, count: int, **overrides: Any):
    """Build a daemon over a maildir of ``count`` new mails, fetched two at a time."""
    mailbox = tmp_path / "mailbox"
    for folder in ("new", "cur", "tmp"):
        (mailbox / folder).mkdir(parents=True)
    for number in range(count):
        (mailbox / "new" / f"{number:03d}.mail").write_bytes(
            mail(sender=f"user{number}@example.org", subject=f"Awaria {number}",
                 message_id=f"<backlog{number}@example.org>"))
    desk = make_desk(tmp_path, database_url, source={"type": "maildir", "path": str(mailbox)},
                     parse_ahead=False, **overrides)
    daemon = build_daemon(desk)
    daemon.source.batch_size = 2  # type: ignore[attr-defined]
    return daemon


def test_acknowledgements_sent_between_batches(tmp_path: Path, database_url: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    daemon = backlog_desk(tmp_path, database_url, 6)
    sent_before: list[int] = []
    process = pipeline.process

    def recording(*args: Any, **kwargs: Any) -> Any:
        sent_before.append(
            models.Outbox.select().where(models.Outbox.state == "sent").count())
        return process(*args, **kwargs)

    monkeypatch.setattr(pipeline, "process", recording)

    assert daemon.run(once=True) == 6

    # Each new ticket queues one acknowledgement (the test desk routes to no group).
    assert sent_before == [0, 0, 2, 2, 4, 4]
    assert models.Outbox.select().where(models.Outbox.state != "sent").count() == 0
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 6


def test_unreachable_server_tried_once_per_run(tmp_path: Path, database_url: str) -> None:
    # Nothing listens on the port, so every connection is refused.
    smtp = {"transport": "smtp", "host": "127.0.0.1", "port": free_port(),
            "security": "none", "timeout": 1.0}
    daemon = backlog_desk(tmp_path, database_url, 6, smtp=smtp)
    connections: list[int] = []
    send_batch = daemon.sender._send_batch

    async def counting(rows: list[models.Outbox]) -> int:
        connections.append(len(rows))
        return await send_batch(rows)

    daemon.sender._send_batch = counting  # type: ignore[method-assign]

    assert daemon.run(once=True) == 6

    # One try after the first batch. The drain's later batches and the two sends of the
    # run loop after it wait for the pause.
    assert connections == [2]
    assert daemon.sender.unreachable
    assert models.Outbox.select().where(models.Outbox.state == "sent").count() == 0
    assert models.Outbox.select().count() == 6


def test_stop_leaves_queued_mail_for_the_next_start(tmp_path: Path, database_url: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # SIGTERM during the second mail: that mail is finished and nothing is sent after
    # it, so an SMTP server that does not respond cannot delay the stop.
    daemon = backlog_desk(tmp_path, database_url, 6)
    process = pipeline.process
    handled: list[str] = []

    def stopping_after_two(*args: Any, **kwargs: Any) -> Any:
        outcome = process(*args, **kwargs)
        handled.append(outcome.action)
        if len(handled) == 2:
            daemon.request_stop()
        return outcome

    monkeypatch.setattr(pipeline, "process", stopping_after_two)

    assert daemon.run() == 2

    assert models.Outbox.select().count() == 2
    assert models.Outbox.select().where(models.Outbox.state == "pending").count() == 2
    assert list((tmp_path / "outbox").glob("*.eml")) == []


def test_stop_between_mails_of_a_delivery_pass(tmp_path: Path, database_url: str,
                                               smtp: Any) -> None:
    settings = {"transport": "smtp", "host": "127.0.0.1", "port": smtp.port,
                "security": "none", "timeout": 1.0}
    daemon = backlog_desk(tmp_path, database_url, 4, smtp=settings)
    daemon.send_outbox = lambda: 0  # type: ignore[method-assign]
    daemon.run(once=True)
    send_one = daemon.sender._send_one

    async def stopping_after_one(client: Any, row: models.Outbox) -> int:
        sent = await send_one(client, row)
        daemon.request_stop()
        return sent

    daemon.sender._send_one = stopping_after_one  # type: ignore[method-assign]

    assert daemon.sender.deliver_due() == 1

    assert len(smtp.deliveries) == 1
    waiting = list(models.Outbox.select().where(models.Outbox.state == "pending"))
    assert len(waiting) == 3
    assert all(row.claimed_by is None and row.last_error is None for row in waiting)


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_stop_signals_request_a_clean_stop(tmp_path: Path, database_url: str,
                                           signal_name: str) -> None:
    # A closed terminal sends SIGHUP; it used to end the process in the middle of a mail.
    import os
    import signal

    daemon = backlog_desk(tmp_path, database_url, 0)
    number = getattr(signal, signal_name)
    previous = signal.getsignal(number)
    try:
        daemon.install_signal_handlers()
        os.kill(os.getpid(), number)
    finally:
        signal.signal(number, previous)

    assert daemon.stopping


def test_sighup_says_it_stops_daemon(tmp_path: Path, database_url: str,
                                     monkeypatch: pytest.MonkeyPatch,
                                     caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import signal

    monkeypatch.setenv("MAILDESK_LANGUAGE", "en")
    daemon = backlog_desk(tmp_path, database_url, 0)

    with caplog.at_level(logging.INFO, logger="maildesk.daemon"):
        daemon.request_stop(signal.SIGHUP)

    assert daemon.stopping
    assert "SIGHUP received: maildesk stops after the message in hand" in caplog.text
    assert "restart it (systemctl restart maildesk)" in caplog.text


def test_stop_summary_counts_one_message(tmp_path: Path, database_url: str,
                                         monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    import logging

    monkeypatch.setenv("MAILDESK_LANGUAGE", "en")
    daemon = backlog_desk(tmp_path, database_url, 1)

    with caplog.at_level(logging.INFO, logger="maildesk.daemon"):
        daemon.run(once=True)

    assert "maildesk stopped after 1 message (" in caplog.text
