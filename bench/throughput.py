"""End-to-end ingest throughput: mails per second through one daemon pass, and the floor.

For each database engine and corpus size: generate the seeded corpus, APPEND it to a
private Dovecot, then time ``build_daemon(desk).run(once=True)``: fetch, parse,
classify, thread, rules, one commit per mail, the acknowledgement queued, the IMAP MOVE
to Processed and the outbox written (``transport: directory``, or ``--transport smtp``
to an aiosmtpd sink in its own process). The same mails then go
through the floor: the standard library parser (``policy.default``) and one row per mail
in its own transaction, on the same engine. The report gives both rates and the ratio.

    python bench/throughput.py                        # 1,000 and 10,000 mails, both engines
    python bench/throughput.py --sizes 1000 --engines sqlite --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import email
import email.policy
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import common
import peewee as pw
import servers
from corpus import CorpusStats, generate


@dataclass
class PassResult:
    engine: str
    size: int
    seconds: float
    cpu_seconds: float
    drain_seconds: float
    statements: int
    deferred: int
    outcomes: dict[str, int]
    tickets: int
    outbox: int
    # Seconds from the start of the pass to the first outgoing mail marked sent.
    first_sent: float

    @property
    def rate(self) -> float:
        return self.size / self.seconds

    @property
    def ingest_rate(self) -> float:
        """Mails per second through the drain alone: fetch to commit, outbox not written."""
        return self.size / self.drain_seconds


def run_daemon_pass(engine: str, mails: list[bytes], server: common.Dovecot,
                    workdir: Path, batch_size: int, profile: Path | None = None,
                    parse_ahead: bool = True,
                    smtp: tuple[str, int] | None = None) -> PassResult:
    """Append the corpus to a fresh mailbox and time one daemon pass over it."""
    from maildesk import models
    from maildesk.wiring import build_daemon

    account = common.new_account(server)
    common.append_all(account, mails)
    with common.database(engine, workdir) as url:
        desk = common.open_desk(common.desk_config(workdir, url, account=account,
                                                   batch_size=batch_size,
                                                   parse_ahead=parse_ahead,
                                                   smtp=smtp))
        daemon = build_daemon(desk)

        drain, send_outbox = daemon.drain, daemon.send_outbox
        drain_time = [0.0]
        in_drain = [False]

        # The daemon sends the outbox after each batch, inside the drain. The drain column
        # leaves that time out, so it is the time up to "acknowledgement queued".
        def timed_drain() -> int:
            started = time.perf_counter()
            in_drain[0] = True
            try:
                return drain()
            finally:
                in_drain[0] = False
                drain_time[0] += time.perf_counter() - started

        def timed_send_outbox() -> int:
            started = time.perf_counter()
            try:
                return send_outbox()
            finally:
                if in_drain[0]:
                    drain_time[0] -= time.perf_counter() - started

        daemon.drain = timed_drain  # type: ignore[method-assign]
        daemon.send_outbox = timed_send_outbox  # type: ignore[method-assign]
        statements = count_statements(models.database_proxy.obj)
        profiler = common.start_profiler() if profile else None
        started = time.perf_counter()
        started_at = models.utcnow()
        cpu_started = time.process_time()
        handled = daemon.run(once=True)
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
        if profiler is not None and profile is not None:
            common.stop_profiler(profiler, profile)
        if handled != len(mails):
            raise RuntimeError(f"the daemon handled {handled} of {len(mails)} mails")
        unsent = models.Outbox.select().where(models.Outbox.state != "sent").count()
        if unsent:
            raise RuntimeError(f"the pass left {unsent} outgoing mails unsent")

        first_sent = (models.Outbox.select(models.Outbox.sent_at)
                      .order_by(models.Outbox.sent_at).first().sent_at)
        result = PassResult(engine, len(mails), seconds, cpu_seconds, drain_time[0],
                            statements[0] + statements[1], statements[1],
                            dict(daemon.outcomes),
                            models.Ticket.select().count(), models.Outbox.select().count(),
                            (first_sent - started_at).total_seconds())
        models.database_proxy.obj.close()
    return result


def count_statements(database: pw.Database) -> list[int]:
    """Count the SQL statements the database runs from now on (a list, updated in place).

    The first count is of statements sent on their own, the second of those PostgreSQL
    defers to send with the next one: the first is also the count of round trips.
    """
    counter = [0, 0]
    execute = database.execute_sql

    def counting(sql: str, params: object = None, *args: object, **kwargs: object) -> object:
        counter[0] += 1
        return execute(sql, params, *args, **kwargs)

    database.execute_sql = counting  # type: ignore[method-assign]
    defer = getattr(database, "defer", None)
    if defer is not None:
        def counting_deferred(sql: str, params: object) -> None:
            counter[1] += 1
            defer(sql, params)

        database.defer = counting_deferred  # type: ignore[attr-defined]
    return counter


class FloorRow(pw.Model):
    subject = pw.TextField()
    sender = pw.TextField()
    recipients = pw.TextField()
    body = pw.TextField()


def run_floor(engine: str, mails: list[bytes], workdir: Path) -> float:
    """Parse each mail with the standard library and insert one row per transaction."""
    with common.database(engine, workdir / "floor") as url:
        from maildesk.models import make_database

        database = make_database(url.replace("maildesk.sqlite3", "floor.sqlite3"))
        database.bind([FloorRow])
        database.connect()
        database.create_tables([FloorRow])

        started = time.perf_counter()
        for raw in mails:
            message = email.message_from_bytes(raw, policy=email.policy.default)
            subject = str(message["subject"] or "")
            sender = ", ".join(str(a) for a in message["from"].addresses)
            recipients = ", ".join(str(a) for a in message["to"].addresses)
            part = message.get_body(("plain", "html"))
            body = part.get_content() if part is not None else ""
            with database.atomic():
                FloorRow.create(subject=subject, sender=sender, recipients=recipients,
                                body=body)
        seconds = time.perf_counter() - started
        database.close()
    return len(mails) / seconds


def describe_pass(result: PassResult, parse_ahead: bool) -> str:
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(result.outcomes.items()))
    helper = "parse helper" if parse_ahead else "no helper"
    trips = ""
    if result.deferred:
        round_trips = (result.statements - result.deferred) / result.size
        trips = f" in {round_trips:.1f} round trips"
    return (f"({helper}): maildesk {result.rate:6.1f} mails/s ({result.seconds:.1f} s, "
            f"CPU {result.cpu_seconds:.1f} s, drain {result.drain_seconds:.1f} s = "
            f"{result.ingest_rate:.1f} mails/s, {result.statements / result.size:.1f} SQL "
            f"statements per mail{trips}; {outcomes}; {result.tickets} tickets, {result.outbox} "
            f"outgoing mails sent, the first {result.first_sent:.1f} s into the pass)")


def describe_corpus(stats: CorpusStats, size: int) -> str:
    charsets = ", ".join(f"{name} {count}" for name, count in sorted(stats.charsets.items()))
    return (f"{size} mails, {stats.total_bytes / 2**20:.1f} MiB: {stats.new} new, "
            f"{stats.replies_by_reference} replies by In-Reply-To, {stats.replies_by_tag} by "
            f"subject tag, {stats.auto_replies} auto-replies; {stats.with_html} with HTML, "
            f"{stats.with_attachment} with an attachment; charsets {charsets}")


@contextlib.contextmanager
def smtp_sink(enabled: bool) -> Iterator[tuple[str, int] | None]:
    """Run aiosmtpd's discarding handler in a process of its own, if ``enabled``.

    Its own process, so the daemon stays single-threaded and forks its helpers as it
    does in service.
    """
    if not enabled:
        yield None
        return
    port = servers.free_port()
    sink = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
                             "-c", "aiosmtpd.handlers.Sink"])
    try:
        deadline = time.monotonic() + 30
        while not servers.port_answers("127.0.0.1", port):
            if time.monotonic() > deadline or sink.poll() is not None:
                raise RuntimeError("the aiosmtpd sink did not start")
            time.sleep(0.05)
        yield "127.0.0.1", port
    finally:
        sink.terminate()
        sink.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000",
                        help="corpus sizes, comma-separated (default: 1000,10000)")
    parser.add_argument("--engines", default="sqlite,postgresql",
                        help="database engines, comma-separated (default: sqlite,postgresql)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size and engine")
    parser.add_argument("--seed", type=int, default=1, help="corpus seed (default: 1)")
    parser.add_argument("--batch-size", type=int, default=50,
                        help="IMAP fetch batch size (default: 50, as shipped)")
    parser.add_argument("--parse-ahead", choices=("on", "off", "both"), default="on",
                        help="parse in a helper process (on, as shipped), not (off), or "
                             "both, off first, in each run (default: on)")
    parser.add_argument("--transport", choices=("directory", "smtp"), default="directory",
                        help="write the outbox to a folder (default), or send it over SMTP "
                             "to an aiosmtpd sink in its own process on 127.0.0.1")
    parser.add_argument("--profile", type=Path,
                        help="write a pyinstrument wall-clock profile of the daemon pass here")
    arguments = parser.parse_args()
    common.quiet_logging()

    sizes = [int(size) for size in arguments.sizes.split(",")]
    engines = arguments.engines.split(",")
    print(f"machine: {common.machine()}")
    with common.dovecot() as server, smtp_sink(arguments.transport == "smtp") as smtp:
        for size in sizes:
            mails, stats = generate(size, arguments.seed)
            stats.total_bytes = sum(len(raw) for raw in mails)
            print(f"\ncorpus: {describe_corpus(stats, size)}")
            for engine in engines:
                rates: list[float] = []
                floors: list[float] = []
                modes = {"on": [True], "off": [False], "both": [False, True]}
                for _run in range(arguments.repeat):
                    for parse_ahead in modes[arguments.parse_ahead]:
                        workdir = Path(tempfile.mkdtemp(prefix="bench-"))
                        try:
                            result = run_daemon_pass(engine, mails, server, workdir,
                                                     arguments.batch_size, arguments.profile,
                                                     parse_ahead, smtp)
                            floor = run_floor(engine, mails, workdir)
                        finally:
                            shutil.rmtree(workdir, ignore_errors=True)
                        rates.append(result.rate)
                        floors.append(floor)
                        described = describe_pass(result, parse_ahead)
                        print(f"  {engine:10} {size:>6} {described}; "
                              f"floor {floor:6.1f} mails/s; ratio {result.rate / floor:.2f}, "
                              f"drain only {result.ingest_rate / floor:.2f}")
                ratios = [rate / floor for rate, floor in zip(rates, floors, strict=True)]
                print(f"  {engine:10} {size:>6}: maildesk mails/s {common.summary(rates)}; "
                      f"floor mails/s {common.summary(floors)}; ratio "
                      f"{min(ratios):.2f}-{max(ratios):.2f}")


if __name__ == "__main__":
    main()
