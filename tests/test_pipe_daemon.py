"""The daemon of a desk fed by ``maildesk deliver``: no mailbox, but SLA tasks and sends."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from deskfactory import mail, make_desk

from maildesk import models, pipeline
from maildesk.sources.pipe import PipeSource
from maildesk.wiring import build_daemon


def test_daemon_without_source_runs_scheduler_and_outbox(
        tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    # Such a daemon refused to start ("no mail source configured"), so a pipe-fed desk
    # had no SLA warnings, reminders or outbox retries unless it faked a Maildir.
    desk = make_desk(tmp_path, database_url)  # no 'source' section
    pipeline.process(desk, mail(), "pipe")  # what deliver records; its mail waits
    with caplog.at_level(logging.INFO, logger="maildesk.wiring"):
        daemon = build_daemon(desk)
    ticks: list[str] = []
    daemon.periodic = [lambda: ticks.append("tick")]

    handled = daemon.run(once=True)

    assert isinstance(daemon.source, PipeSource)
    assert daemon.parse_ahead is None
    assert handled == 0
    assert ticks == ["tick"]
    assert models.Outbox.get().state == "sent"
    assert "reads no mailbox" in caplog.text or "nie czyta żadnej skrzynki" in caplog.text


def test_pipe_source_wait_ends_on_stop() -> None:
    source = PipeSource()
    calls: list[int] = []

    def stop_on_second_look() -> bool:
        calls.append(1)
        return len(calls) >= 2

    source.wait(30.0, stop_on_second_look)

    assert source.fetch() == []
    assert len(calls) == 2
