"""Parse the next mails of a batch in a helper process while this one records the current.

Parsing is a pure function of the raw bytes and about a fifth of the work on a mail, so on
a machine with two or more CPUs a second process can do it ahead of the pipeline. The
pipeline stays the one place where mail is recorded: the helper only hands back what
``parse.parse_message`` returned, in the order the mails were given.

The helper never decides anything. A mail it cannot parse cleanly, one whose parse logged a
warning or an error, or one too large to be worth sending across, comes back as None and is
parsed again in this process. That repeats the failure and its log lines exactly as they
would have been without a helper, with the mail's context on them. A helper that dies or
stops responding is replaced, and after three failures the daemon parses every mail
itself.

The two processes talk over one pipe, with no thread on either side: the daemon sends a
batch, then reads one result per mail as it gets to that mail.
"""

from __future__ import annotations

import contextvars
import gc
import logging
import multiprocessing
import os
import signal
import socket
import struct
import threading
from collections.abc import Generator, Sequence
from multiprocessing.connection import Connection
from multiprocessing.context import ForkContext, ForkServerContext
from multiprocessing.process import BaseProcess
from pathlib import Path

from maildesk.i18n import _, current_language, set_language
from maildesk.logcontext import mail_context, mail_context_values
from maildesk.parse import ParsedMessage, parse_message

logger = logging.getLogger(__name__)

# A batch smaller than this is parsed in the daemon's process: a single new mail (the
# common case with IDLE) would only wait for the round trip to the helper.
MIN_BATCH = 4
# Mails larger than this are parsed in the daemon's process: the helper would send a large
# attachment across once more and hold a second copy while it does.
MAX_MAIL_SIZE = 1024 * 1024
# The batch goes to the helper as one message, which both processes hold while it is
# read. Mails past this total are parsed in the daemon's process.
MAX_BATCH_BYTES = 8 * 1024 * 1024
# After this many helpers have failed, the daemon parses every mail itself until restarted.
MAX_FAILURES = 3
# A helper that has not returned the next mail's result within this time, or that reads or
# sends no part of a message for this long, is stuck.
RESULT_TIMEOUT = 120.0

_PARSE_LOGGERS = ("maildesk.parse", "maildesk.mimewalk", "maildesk.mimeparts",
                  "maildesk.charsets", "maildesk.quotes", "maildesk.htmltext",
                  "maildesk.largebodies", "maildesk.addresses")

# The helper's result for one mail: the parse, or None, and the debug and info lines its
# parse logged, as (logger name, level, text, the values mail_context set in the parse).
HelperResult = tuple[ParsedMessage | None, list[tuple[str, int, str, dict[str, str]]]]


def available_cpus(cgroup_root: Path = Path("/sys/fs/cgroup"),
                   own_cgroup: Path = Path("/proc/self/cgroup")) -> int:
    """Return the CPUs this process may use: its affinity, lowered by a CPU quota.

    A container limited to one CPU by its quota still lists every CPU of the host.
    NOTE: only a cgroup v2 quota (cpu.max) of the process's own cgroup is read.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota(cgroup_root, own_cgroup)
    if quota is not None:
        cpus = min(cpus, max(1, int(quota)))
    return cpus


def _cgroup_cpu_quota(cgroup_root: Path, own_cgroup: Path) -> float | None:
    """Return the CPUs a cgroup v2 quota allows, or None without a quota."""
    try:
        lines = own_cgroup.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if not line.startswith("0::"):
            continue
        try:
            fields = (cgroup_root / line[3:].lstrip("/") / "cpu.max").read_text().split()
        except OSError:
            return None
        if len(fields) != 2 or fields[0] == "max":
            return None
        try:
            return int(fields[0]) / int(fields[1])
        except (ValueError, ZeroDivisionError):
            return None
    return None


class ParseAhead:
    """A helper process that parses the mails of a batch ahead of the pipeline.

    ``parsed(raws)`` yields, for each raw mail in order, its ``ParsedMessage`` or None
    when the caller must parse it. The helper starts with the first batch large enough
    to need it and stops with ``close``.
    """

    def __init__(self) -> None:
        self._process: BaseProcess | None = None
        self._connection: Connection | None = None
        self._failures = 0
        self._started = False
        # Results the helper still owes for the last batch sent to it.
        self._owed = 0

    @classmethod
    def for_this_machine(cls) -> ParseAhead | None:
        """Return a helper when a second CPU can run it, else None."""
        if available_cpus() < 2:
            return None
        return cls()

    def parsed(self, raws: Sequence[bytes]) -> Generator[ParsedMessage | None, None, None]:
        """Send a batch to the helper; return what yields each mail's parse, in order.

        The generator yields None for the mails the caller must parse. The helper works
        through the whole batch while the caller records each mail. Closing the generator
        early stops the helper, which the next batch replaces. The batch is sent before
        this returns, so the helper's start is logged outside any one mail's context.
        """
        if len(raws) < MIN_BATCH or self._failures >= MAX_FAILURES:
            return (None for _raw in raws)
        connection = self._send(raws)
        if connection is None:
            return (None for _raw in raws)
        return self._results(connection, len(raws))

    def _results(self, connection: Connection,
                 count: int) -> Generator[ParsedMessage | None, None, None]:
        received = 0
        try:
            for _number in range(count):
                parsed = self._next_result(connection)
                received += 1
                yield parsed
        finally:
            if received < count and self._connection is connection:
                # The caller stopped early, so the rest of the results are of no use.
                self._stop()

    def _send(self, raws: Sequence[bytes]) -> Connection | None:
        """Send a batch to the helper, replacing a helper found dead once, right away."""
        batch: list[bytes | None] = []
        total = 0
        for raw in raws:
            fits = len(raw) <= MAX_MAIL_SIZE and total + len(raw) <= MAX_BATCH_BYTES
            total += len(raw) if fits else 0
            batch.append(raw if fits else None)
        if self._owed:
            # The last batch was not read to its end, so its results would come first.
            self._stop()
        for _attempt in range(2):
            try:
                connection = self._start()
                try:
                    connection.send(batch)
                except BlockingIOError as error:
                    raise TimeoutError(_("the parse helper did not read the batch within "
                                         "{seconds:.0f} s").format(seconds=RESULT_TIMEOUT)
                                       ) from error
                self._owed = len(batch)
                return connection
            except (OSError, ValueError) as error:
                self._failed(error)
                if self._failures >= MAX_FAILURES:
                    break
        return None

    def _next_result(self, connection: Connection) -> ParsedMessage | None:
        """Read the helper's result for the next mail, or None when the helper failed."""
        if self._connection is not connection:
            return None
        try:
            if not connection.poll(RESULT_TIMEOUT):
                raise _no_result()
            try:
                parsed, lines = connection.recv()
            except BlockingIOError as error:
                # The helper stopped sending in the middle of a result (see _limit_blocking).
                raise _no_result() from error
            self._owed -= 1
        except Exception as error:  # a closed pipe, a timeout, a result that cannot be read
            # Whatever went wrong, the daemon can parse the mail itself.
            self._failed(error)
            return None
        for name, level, text, context in lines:
            # The caller's context names the mail's source, and the parse's adds its Message-ID.
            with mail_context(**context):
                logging.getLogger(name).log(level, "%s", text)
        return parsed

    def _start(self) -> Connection:
        if self._connection is not None:
            return self._connection
        context = _process_context()
        ours, theirs = context.Pipe()
        _limit_blocking(ours, RESULT_TIMEOUT)
        level = min(logging.getLogger(name).getEffectiveLevel() for name in _PARSE_LOGGERS)
        # A forked helper inherits the daemon's end of the pipe, which it must close.
        inherited = ours if context.get_start_method() == "fork" else None
        process = context.Process(target=_serve,
                                  args=(theirs, inherited, current_language(), level),
                                  name="maildesk-parse", daemon=True)
        if inherited is not None:
            # Objects the daemon already had stay out of the helper's garbage collection,
            # which would otherwise write to, and so copy, every page that contains them.
            # NOTE: the daemon's own writes still copy the shared pages over a long
            # backlog. The two processes measured 110 MiB PSS after 5,000 mails and 130 MiB
            # after 50,000, and forking a fresh helper every 50 batches did not lower it.
            gc.freeze()
        try:
            process.start()
        finally:
            if inherited is not None:
                gc.unfreeze()
        theirs.close()
        self._process, self._connection = process, ours
        self._started = True
        logger.info(_("parsing mail ahead in helper process {pid}").format(pid=process.pid))
        return ours

    def _failed(self, error: BaseException) -> None:
        """Stop a failed helper; the next batch starts another, up to MAX_FAILURES."""
        self._stop()
        self._failures += 1
        logger.warning(_("the parse helper process failed, the daemon parses the mail itself: "
                         "{error}").format(error=str(error) or type(error).__name__))
        if self._failures >= MAX_FAILURES:
            logger.warning(_("the parse helper failed {count} times: until maildesk restarts, "
                             "every mail is parsed in the daemon's process").format(
                                 count=self._failures))

    def _stop(self) -> None:
        process, connection = self._process, self._connection
        self._process = self._connection = None
        self._owed = 0
        if connection is not None:
            connection.close()
        if process is not None:
            # Closing the pipe ends a waiting helper; one busy with a mail is stopped.
            process.join(1.0)
            if process.is_alive():
                process.kill()
                process.join()

    def close(self) -> None:
        # A batch ended early has stopped the helper already, but not logged it.
        if self._process is not None or self._started:
            self._stop()
            self._started = False
            logger.info(_("parse helper stopped"))


def _no_result() -> TimeoutError:
    return TimeoutError(_("no result within {seconds:.0f} s").format(seconds=RESULT_TIMEOUT))


def _limit_blocking(connection: Connection, seconds: float) -> None:
    """Make a read or write on ``connection`` raise BlockingIOError after ``seconds`` idle.

    ``Connection.send`` and ``recv`` have no timeout. A batch or a result larger than the
    socket buffers is written in parts, so a helper that stops reading or writing (frozen
    by SIGSTOP, say) would otherwise block the daemon for good, a stop request included.
    The limit applies to each system call, so a slow but moving transfer still completes.
    """
    # Pipe() is a socketpair on POSIX. fromfd duplicates the descriptor, and the options
    # set through the duplicate apply to the socket that both share.
    with socket.fromfd(connection.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as shared:
        whole = int(seconds)
        # NOTE: "ll" is struct timeval on LP64 Linux and BSD. A 32-bit build with 64-bit
        # time_t may reject it, and the pipe then has no time limit.
        timeval = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
        try:
            shared.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
            shared.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        except OSError as error:
            logger.debug("cannot limit blocking on the parse helper's pipe: %s", error)


def _process_context() -> ForkContext | ForkServerContext:
    """Choose how to start the helper.

    The daemon has one thread, and a forked copy of it starts in milliseconds. The helper
    never touches the inherited database connection or IMAP socket. It leaves with
    ``os._exit``, so neither is closed or flushed twice.

    A process with other threads (an embedding program, the test suite) could fork while
    one of them has a lock taken. It starts its helpers from a fork server instead, which
    took about a second the first time on a two-CPU test machine.
    """
    if threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["maildesk.parse"])
    return context


class _Collector(logging.Handler):
    """Keep the records of one parse in the helper, to be replayed or to force a re-parse."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.mail_context = mail_context_values()
        self.records.append(record)


def _serve(connection: Connection, daemons_end: Connection | None, language: str,
           level: int) -> None:
    """Run in the helper: parse each batch the daemon sends until it closes the pipe."""
    if daemons_end is not None:
        daemons_end.close()  # a forked copy of the daemon's end would keep the pipe open
    # Ctrl-C and systemd's stop signal reach the whole process group. The daemon finishes
    # the mail in hand and then closes the pipe, which ends the helper.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    collector = _Collector()
    root = logging.getLogger()
    root.handlers[:] = [collector]
    root.setLevel(level)
    # A forked helper starts in the daemon's mail context, which names the batch's first
    # mail, so it parses in an empty one, with the daemon's language set again.
    contextvars.Context().run(_serve_batches, connection, collector, language)


def _serve_batches(connection: Connection, collector: _Collector, language: str) -> None:
    set_language(language)
    while True:
        try:
            batch = connection.recv()
        except (EOFError, OSError):
            return
        for raw in batch:
            collector.records.clear()
            try:
                connection.send(_parse(raw, collector.records))
            except (BrokenPipeError, OSError):
                return


def _parse(raw: bytes | None, records: list[logging.LogRecord]) -> HelperResult:
    """Parse one mail, or return None for the daemon to parse it itself.

    None is returned for a mail too large to send, one whose parse failed, and one whose
    parse logged a warning, which the daemon must log with the mail's context, in order.
    """
    if raw is None:
        return None, []
    try:
        parsed = parse_message(raw)
    except Exception:  # the daemon's own parse repeats the failure and handles it
        return None, []
    if any(record.levelno >= logging.WARNING for record in records):
        return None, []
    return parsed, [(record.name, record.levelno, record.getMessage(),
                     getattr(record, "mail_context", None) or {}) for record in records]
