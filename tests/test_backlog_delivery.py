"""The outbox during a backlog: sent after each fetched batch, not after the last one.

With a storm of mail in the mailbox, the first users' acknowledgements must not wait for
the whole backlog to be recorded. A server that cannot be reached is tried once per run,
not once per batch.
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
