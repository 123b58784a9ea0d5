"""Parsing in a helper process: the same results as in the daemon, and no mail lost."""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from deskfactory import mail, record_helper_parses

from maildesk import parseahead
from maildesk.i18n import set_language
from maildesk.parse import parse_message
from maildesk.parseahead import ParseAhead

REPOSITORY = Path(__file__).resolve().parent.parent


def nested_too_deeply(levels: int = 30) -> bytes:
    """A mail whose multiparts nest past the parser's depth limit, which logs a warning."""
    head = b"From: a@example.org\r\nTo: helpdesk@example.com\r\nSubject: deep\r\n"
    body = b"Content-Type: text/plain\r\n\r\ninside\r\n"
    for level in range(levels):
        boundary = f"b{level}".encode()
        body = (b"Content-Type: multipart/mixed; boundary=\"" + boundary + b"\"\r\n\r\n--"
                + boundary + b"\r\n" + body + b"--" + boundary + b"--\r\n")
    return head + b"MIME-Version: 1.0\r\n" + body


def sample_batch() -> list[bytes]:
    return [mail(message_id=f"<p{number}@example.org>", subject=f"Zgłoszenie {number}",
                 body=f"Dzień dobry,\n\nproblem numer {number}.\n\n> cytat\n")
            for number in range(8)]


@pytest.fixture(autouse=True)
def english_messages():
    set_language("en")
    yield
    set_language("pl")


@pytest.fixture(params=["fork", "forkserver"])
def helper(request, monkeypatch):
    """A helper started each way: forked (the daemon) and from a fork server (threads)."""
    context = multiprocessing.get_context(request.param)
    monkeypatch.setattr(parseahead, "_process_context", lambda: context)
    parse_ahead = ParseAhead()
    yield parse_ahead
    parse_ahead.close()


def test_helper_parse_equals_daemon_parse(helper: ParseAhead) -> None:
    raws = sample_batch()

    results = list(helper.parsed(raws))

    assert results == [parse_message(raw) for raw in raws]


def test_helper_returns_unclean_mails_to_daemon(
        helper: ParseAhead, monkeypatch) -> None:
    monkeypatch.setattr(parseahead, "MAX_MAIL_SIZE", 20_000)
    big = mail(message_id="<big@example.org>", body="duży załącznik\n" * 2000)
    raws = [*sample_batch()[:3], b"   \r\n", big, nested_too_deeply(), sample_batch()[3]]

    results = list(helper.parsed(raws))

    # The empty mail fails, the big one is over the limit, the nested one logs a warning.
    assert [result is None for result in results] == [False, False, False, True, True, True,
                                                      False]
    assert results[6] == parse_message(raws[6])


def test_helper_not_started_for_small_batch(helper: ParseAhead) -> None:
    results = list(helper.parsed(sample_batch()[:parseahead.MIN_BATCH - 1]))

    assert results == [None] * (parseahead.MIN_BATCH - 1)
    assert helper._process is None


def test_helper_killed_mid_batch_is_replaced(caplog,
                                                                        monkeypatch) -> None:
    # A forked helper inherits the slowed parse, so it is still busy when it is killed.
    real_parse = parseahead._parse

    def slow_parse(raw, records):
        time.sleep(0.2)
        return real_parse(raw, records)

    monkeypatch.setattr(parseahead, "_parse", slow_parse)
    monkeypatch.setattr(parseahead, "_process_context",
                        lambda: multiprocessing.get_context("fork"))
    helper = ParseAhead()
    raws = sample_batch()
    parses = helper.parsed(raws)
    first = next(parses)
    assert helper._process is not None
    os.kill(helper._process.pid, signal.SIGKILL)
    helper._process.join()

    rest = list(parses)

    assert first == parse_message(raws[0])
    assert rest == [None] * (len(raws) - 1)
    assert "the parse helper process failed" in caplog.text
    monkeypatch.setattr(parseahead, "_parse", real_parse)
    assert list(helper.parsed(raws)) == [parse_message(raw) for raw in raws]
    assert helper._failures == 1
    helper.close()


def test_helper_dead_between_batches_is_replaced(helper: ParseAhead,
                                                                caplog) -> None:
    raws = sample_batch()
    list(helper.parsed(raws))
    assert helper._process is not None
    helper._process.kill()
    helper._process.join()

    results = list(helper.parsed(raws))

    assert results == [parse_message(raw) for raw in raws]
    assert helper._failures == 1
    assert "the parse helper process failed" in caplog.text


def large_batch() -> list[bytes]:
    """A batch larger than the pipe's buffers, so a send blocks until the helper reads it."""
    return [mail(message_id=f"<l{number}@example.org>", subject=f"Duży {number}",
                 body=f"wiersz {number} z długiego dziennika\n" * 6000)
            for number in range(8)]


class HelperHung(BaseException):
    """Raised by the alarm of a test whose call to the helper never returns."""


@contextmanager
def frozen(process, hang: str) -> Iterator[None]:
    """Stop ``process`` with SIGSTOP for the block, which fails with ``hang`` after 30 s."""
    def hung(signum, frame):
        raise HelperHung(hang)

    os.kill(process.pid, signal.SIGSTOP)
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        if process.is_alive():
            os.kill(process.pid, signal.SIGCONT)


def test_helper_frozen_between_batches_is_replaced(helper: ParseAhead, monkeypatch,
                                                    caplog) -> None:
    monkeypatch.setattr(parseahead, "RESULT_TIMEOUT", 1.0)
    list(helper.parsed(sample_batch()))
    stopped = helper._process
    assert stopped is not None
    raws = large_batch()
    assert sum(len(raw) for raw in raws) > 1024 * 1024

    with frozen(stopped, "sending a batch to a stopped helper never returned"):
        results = list(helper.parsed(raws))

    assert results == [parse_message(raw) for raw in raws]
    assert helper._process is not stopped
    assert helper._failures == 1
    assert "did not read the batch within 1 s" in caplog.text


def test_helper_frozen_mid_result_is_failure(monkeypatch, caplog) -> None:
    from maildesk.parse import ParsedMessage

    def large_result(raw, records):
        return ParsedMessage(message_id=None, subject="x", from_address=None,
                             text="długi tekst " * 200_000), []

    # A forked helper inherits the replaced parse, whose result fills the pipe's buffers.
    monkeypatch.setattr(parseahead, "_parse", large_result)
    monkeypatch.setattr(parseahead, "_process_context",
                        lambda: multiprocessing.get_context("fork"))
    monkeypatch.setattr(parseahead, "RESULT_TIMEOUT", 1.0)
    helper = ParseAhead()
    parses = helper.parsed(sample_batch())
    stopped = helper._process
    assert stopped is not None
    time.sleep(1.0)

    with frozen(stopped, "reading a result from a stopped helper never returned"):
        first = next(parses)
    rest = list(parses)
    helper.close()

    assert first is None
    assert rest == [None] * 7
    assert helper._failures == 1
    assert "no result within 1 s" in caplog.text


def test_helper_gives_up_after_three_failures(helper: ParseAhead,
                                                           caplog) -> None:
    raws = sample_batch()
    for _attempt in range(parseahead.MAX_FAILURES):
        parses = helper.parsed(raws)
        next(parses)
        assert helper._process is not None
        helper._process.kill()
        helper._process.join()
        list(parses)

    assert list(helper.parsed(raws)) == [None] * len(raws)
    assert helper._process is None
    assert "failed 3 times" in caplog.text


def test_helper_stops_when_batch_stops_early(
        helper: ParseAhead) -> None:
    raws = sample_batch()
    parses = helper.parsed(raws)
    next(parses)
    first_helper = helper._process
    assert first_helper is not None

    parses.close()

    assert helper._process is None
    assert not first_helper.is_alive()
    assert list(helper.parsed(raws)) == [parse_message(raw) for raw in raws]
    assert helper._failures == 0


def test_helper_debug_lines_reach_daemon_log(helper: ParseAhead,
                                                         caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="maildesk.parse")

    list(helper.parsed(sample_batch()))

    lines = [record for record in caplog.records if record.name == "maildesk.parse"
             and "parsing message <p5@example.org>" in record.getMessage()]
    assert len(lines) == 1


def test_helper_ignores_stop_signals_of_process_group(helper: ParseAhead) -> None:
    raws = sample_batch()
    list(helper.parsed(raws))
    process = helper._process
    assert process is not None

    os.kill(process.pid, signal.SIGINT)
    os.kill(process.pid, signal.SIGTERM)

    assert list(helper.parsed(raws)) == [parse_message(raw) for raw in raws]
    assert helper._process is process
    assert helper._failures == 0


def test_helper_unreadable_result_is_failure(helper: ParseAhead,
                                             monkeypatch, caplog) -> None:
    raws = sample_batch()
    parses = helper.parsed(raws)
    first = next(parses)
    assert helper._connection is not None

    def unreadable() -> object:
        raise pickle.UnpicklingError("invalid load key")

    monkeypatch.setattr(helper._connection, "recv", unreadable)
    rest = list(parses)

    assert first == parse_message(raws[0])
    assert rest == [None] * (len(raws) - 1)
    assert helper._failures == 1
    assert "invalid load key" in caplog.text


def test_helper_batch_closed_unread_leaves_no_results(helper: ParseAhead) -> None:
    first_batch = sample_batch()
    second_batch = [mail(message_id=f"<q{number}@example.org>", subject=f"Inne {number}")
                    for number in range(6)]
    helper.parsed(first_batch).close()

    results = list(helper.parsed(second_batch))

    assert results == [parse_message(raw) for raw in second_batch]


def test_helper_stop_logged_after_early_end(helper: ParseAhead, caplog) -> None:
    caplog.set_level(logging.INFO, logger="maildesk.parseahead")
    parses = helper.parsed(sample_batch())
    next(parses)
    parses.close()

    helper.close()

    assert "parse helper stopped" in caplog.text


def test_helper_stops_on_close(helper: ParseAhead) -> None:
    list(helper.parsed(sample_batch()))
    process = helper._process
    assert process is not None

    helper.close()

    assert not process.is_alive()


def test_helper_forked_from_single_thread() -> None:
    """The daemon's own case: no other thread, so the helper is a fork, started at once."""
    script = textwrap.dedent("""
        import sys
        sys.path.insert(0, "tests")
        from deskfactory import mail
        from maildesk.parse import parse_message
        from maildesk.parseahead import ParseAhead, _process_context

        raws = [mail(message_id=f"<f{n}@example.org>") for n in range(6)]
        helper = ParseAhead()
        results = list(helper.parsed(raws))
        print(_process_context().get_start_method(),
              results == [parse_message(raw) for raw in raws])
        helper.close()
    """)

    finished = subprocess.run([sys.executable, "-c", script], cwd=REPOSITORY,
                              capture_output=True, text=True, timeout=60, check=True)

    assert finished.stdout.split() == ["fork", "True"]


def test_helper_batch_stops_at_byte_budget(helper: ParseAhead, monkeypatch) -> None:
    raws = sample_batch()
    monkeypatch.setattr(parseahead, "MAX_BATCH_BYTES", sum(len(raw) for raw in raws[:5]))

    results = list(helper.parsed(raws))

    assert results[:5] == [parse_message(raw) for raw in raws[:5]]
    assert results[5:] == [None, None, None]


@pytest.mark.parametrize(("cpu_max", "expected"), [
    ("max 100000\n", 2), ("100000 100000\n", 1), ("150000 100000\n", 1),
    ("50000 100000\n", 1), ("400000 100000\n", 2), (None, 2),
])
def test_available_cpus_follows_cgroup_quota(tmp_path: Path, monkeypatch, cpu_max,
                                             expected) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    (tmp_path / "proc").write_text("0::/system.slice/maildesk.service\n")
    service = tmp_path / "cgroup" / "system.slice" / "maildesk.service"
    service.mkdir(parents=True)
    if cpu_max is not None:
        (service / "cpu.max").write_text(cpu_max)

    cpus = parseahead.available_cpus(tmp_path / "cgroup", tmp_path / "proc")

    assert cpus == expected


def test_helper_needs_second_cpu(monkeypatch) -> None:
    monkeypatch.setattr(parseahead, "available_cpus", lambda: 1)
    assert ParseAhead.for_this_machine() is None

    monkeypatch.setattr(parseahead, "available_cpus", lambda: 2)
    assert isinstance(ParseAhead.for_this_machine(), ParseAhead)


def test_daemon_helper_follows_configuration(
        tmp_path: Path, monkeypatch) -> None:
    from deskfactory import make_desk

    from maildesk.wiring import build_daemon

    monkeypatch.setattr(parseahead, "available_cpus", lambda: 2)
    database_url = f"sqlite:///{tmp_path / 'maildesk.sqlite3'}"
    maildir = {"type": "maildir", "path": str(tmp_path / "Maildir")}
    for folder in ("cur", "new", "tmp"):
        (tmp_path / "Maildir" / folder).mkdir(parents=True)
    desk = make_desk(tmp_path, database_url, source=maildir)
    assert isinstance(build_daemon(desk).parse_ahead, ParseAhead)

    desk = make_desk(tmp_path, database_url, source=maildir, parse_ahead=False)

    assert build_daemon(desk).parse_ahead is None


def undecodable_mail(message_id: str) -> bytes:
    """A mail whose body is invalid UTF-8 under a UTF-8 label, which logs a debug line."""
    return (b"From: a@example.org\r\nTo: helpdesk@example.com\r\nSubject: x\r\n"
            b"Message-ID: " + message_id.encode() + b"\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\nZa\xbf\xf3\xb3\xe6 g\xea\x9cl\xb9\r\n")


def maildir_daemon(tmp_path: Path, raws: list[bytes]):
    """Build a daemon with a parse helper over a maildir that contains ``raws`` in order."""
    import mailbox

    from deskfactory import make_desk

    from maildesk.wiring import build_daemon

    maildir = mailbox.Maildir(tmp_path / "Maildir", create=True)
    for number, raw in enumerate(raws):
        key = maildir.add(raw)
        # The maildir source reads in the order of the file names.
        (tmp_path / "Maildir" / "new" / key).rename(
            tmp_path / "Maildir" / "new" / f"{number:04d}.{key}")
    desk = make_desk(tmp_path, f"sqlite:///{tmp_path / 'maildesk.sqlite3'}",
                     source={"type": "maildir", "path": str(tmp_path / "Maildir")})
    daemon = build_daemon(desk)
    assert isinstance(daemon.parse_ahead, ParseAhead)
    return daemon


def test_daemon_logs_helper_lines_with_mail_context(
        tmp_path: Path, monkeypatch, caplog) -> None:
    from maildesk.logcontext import MailContextFilter

    monkeypatch.setattr(parseahead, "available_cpus", lambda: 2)
    monkeypatch.setattr(parseahead, "_process_context",
                        lambda: multiprocessing.get_context("fork"))
    raws = [undecodable_mail(f"<u{number}@example.org>") for number in range(6)]
    daemon = maildir_daemon(tmp_path, raws)
    parsed_by_helper = record_helper_parses(monkeypatch)
    caplog.handler.addFilter(MailContextFilter())
    caplog.set_level(logging.DEBUG, logger="maildesk.parse")
    caplog.set_level(logging.DEBUG, logger="maildesk.charsets")

    assert daemon.run(once=True) == 6

    assert parsed_by_helper == [True] * 6
    parsing = [record.mail for record in caplog.records
               if record.getMessage().startswith("parsing message")]
    invalid = [record.mail for record in caplog.records
               if "bytes are invalid" in record.getMessage()]
    sources = [f"[maildir:{tmp_path / 'Maildir'}/{number:04d}." for number in range(6)]
    assert len(parsing) == 6
    assert len(invalid) == 6
    for lines in (parsing, invalid):
        assert [mail.startswith(source)
                for mail, source in zip(lines, sources, strict=True)] == [True] * 6
    # The charset line is logged inside the parse's own context, which adds the Message-ID.
    assert [mail.split()[1] for mail in invalid] == [
        f"<u{number}@example.org>]" for number in range(6)]


def test_daemon_stop_waits_for_no_further_parse(
        tmp_path: Path, monkeypatch) -> None:
    from maildesk import pipeline

    # A forked helper inherits the slowed parse.
    real_parse = parseahead._parse
    pulled = []

    def slow_parse(raw, records):
        time.sleep(0.5)
        return real_parse(raw, records)

    monkeypatch.setattr(parseahead, "_parse", slow_parse)
    monkeypatch.setattr(parseahead, "available_cpus", lambda: 2)
    monkeypatch.setattr(parseahead, "_process_context",
                        lambda: multiprocessing.get_context("fork"))
    daemon = maildir_daemon(tmp_path, sample_batch())
    real_next_result = ParseAhead._next_result

    def recording_next_result(self, connection):
        pulled.append(connection)
        return real_next_result(self, connection)

    real_process = pipeline.process

    def process_then_stop(*args, **kwargs):
        outcome = real_process(*args, **kwargs)
        daemon.stopping = True
        return outcome

    monkeypatch.setattr(ParseAhead, "_next_result", recording_next_result)
    monkeypatch.setattr(pipeline, "process", process_then_stop)

    handled = daemon.drain()
    daemon.parse_ahead.close()

    assert handled == 1
    # The helper's result for the second mail is not waited for once a stop is requested.
    assert len(pulled) == 1


def test_helper_translates_in_daemon_language(monkeypatch) -> None:
    """A helper started by an English desk writes its texts in English."""
    from maildesk.parse import ParsedMessage

    def note_language(raw: bytes) -> ParsedMessage:
        from maildesk.i18n import current_language

        return ParsedMessage(message_id=None, subject=current_language(), from_address=None)

    # A forked helper inherits the replaced parse.
    monkeypatch.setattr(parseahead, "parse_message", note_language)
    monkeypatch.setattr(parseahead, "_process_context",
                        lambda: multiprocessing.get_context("fork"))
    helper = ParseAhead()

    results = list(helper.parsed(sample_batch()))

    helper.close()
    assert [result.subject for result in results if result is not None] == ["en"] * 8
