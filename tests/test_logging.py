"""Log lines on standard error, and their syslog priorities when journald reads them."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from maildesk.logcontext import configure_logging, mail_context


@pytest.fixture
def restored_root() -> Iterator[None]:
    """Give back the root logger's handlers and level, which configure_logging replaces."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


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


def test_journald_reads_the_priority_of_each_line(tmp_path: Path, restored_root: None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Without the prefix journalctl -p warning showed none of maildesk's warnings.
    lines = _log_to(tmp_path / "journal", True, monkeypatch)

    assert [line[:3] for line in lines] == ["<4>", "<3>", "<3>", "<6>", "<7>"]
    assert lines[0].endswith("WARNING maildesk.test: [maildir:1 <m@x>] mail held")
    assert lines[2] == "<3>lines"


def test_redirected_stderr_gets_plain_lines(tmp_path: Path, restored_root: None,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _log_to(tmp_path / "file", False, monkeypatch)

    assert not any(line.startswith("<") for line in lines)
    assert lines[0].endswith("WARNING maildesk.test: [maildir:1 <m@x>] mail held")
