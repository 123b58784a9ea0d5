"""Log lines on standard error, and their syslog priorities when journald reads them."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from maildesk.logcontext import configure_logging, mail_context


def _log_to(path: Path, journal: bool, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    with path.open("w", encoding="utf-8") as stream:
        status = os.fstat(stream.fileno())
        if journal:
            monkeypatch.setenv("JOURNAL_STREAM", f"{status.st_dev}:{status.st_ino}")
        else:
            monkeypatch.setenv("JOURNAL_STREAM", "1:2")  # another stream: a redirect
        configure_logging(logging.DEBUG, stream)
        logger = logging.getLogger("maildesk.test")
        with mail_context(source="maildir:1", message_id="<m@x>"):
            logger.warning("mail held")
        logger.error("two\nlines")
        logger.info("started")
        logger.debug("detail")
    return path.read_text(encoding="utf-8").splitlines()


def test_journal_lines_carry_priority(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Without the prefix journalctl -p warning showed none of maildesk's warnings.
    lines = _log_to(tmp_path / "journal", True, monkeypatch)

    assert [line[:3] for line in lines] == ["<4>", "<3>", "<3>", "<6>", "<7>"]
    assert lines[0].endswith("WARNING maildesk.test: [maildir:1 <m@x>] mail held")
    assert lines[2] == "<3>lines"


def test_redirected_stderr_gets_plain_lines(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _log_to(tmp_path / "file", False, monkeypatch)

    assert not any(line.startswith("<") for line in lines)
    assert lines[0].endswith("WARNING maildesk.test: [maildir:1 <m@x>] mail held")


def test_decision_line_names_the_message_id_once(tmp_path: Path, database_url: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from deskfactory import mail, make_desk

    from maildesk import pipeline

    desk = make_desk(tmp_path, database_url)
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    path = tmp_path / "log.txt"
    with path.open("w", encoding="utf-8") as stream:
        configure_logging(logging.INFO, stream)
        pipeline.process(desk, mail(message_id="<once@example.org>"), "maildir:1")

    decisions = [line for line in path.read_text(encoding="utf-8").splitlines()
                 if " maildesk.decision: " in line]
    assert len(decisions) == 1
    assert decisions[0].count("<once@example.org>") == 1
