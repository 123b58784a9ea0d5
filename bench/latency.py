"""Acknowledgement latency: from a mail's APPEND to the acknowledgement at the SMTP sink.

The daemon runs as a child process (``maildesk run``, IDLE on, ``transport: smtp`` to an
aiosmtpd sink in this process). After a warm-up, new-ticket mails are appended one by
one at a steady rate; each acknowledgement is matched to its mail by In-Reply-To. The
clock starts just before the APPEND command is sent and stops when the sink has
received the DATA of the acknowledgement. Dovecot delays IDLE notifications by about
0.5 s, which is part of every number here.

    python bench/latency.py                      # 300 mails at 3 per second, SQLite
    python bench/latency.py --count 100 --rate 5 --engine postgresql
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import common
from corpus import CorpusGenerator
from servers import Delivery, SmtpSink


class TimedSink(SmtpSink):
    """The test sink, also noting when each acknowledgement arrived, by In-Reply-To."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: dict[str, float] = {}
        self.arrived = threading.Condition()

    def record(self, delivery: Delivery) -> int:
        now = time.perf_counter()
        in_reply_to = str(delivery.message.get("In-Reply-To", "")).strip()
        with self.arrived:
            self.arrivals.setdefault(in_reply_to, now)
            self.arrived.notify_all()
        return super().record(delivery)

    def wait_for_ids(self, message_ids: list[str], timeout: float) -> bool:
        with self.arrived:
            return self.arrived.wait_for(
                lambda: all(mid in self.arrivals for mid in message_ids), timeout)


def message_id_of(raw: bytes) -> str:
    for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode("ascii")
    raise ValueError("generated mail without Message-ID")


def start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    environment = {**os.environ, "PYTHONPATH": str(common.REPOSITORY)}
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "maildesk.cli", "--config", str(config), "run"],
            env=environment, stdout=output, stderr=subprocess.STDOUT,
        )


def stop_daemon(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, which the daemon honours after the mail in hand (and within 1 s in IDLE)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def measure(arguments: argparse.Namespace) -> list[float]:
    mails = list(CorpusGenerator(arguments.count + arguments.warmup, arguments.seed,
                                 replies=False, domain="latency"))
    warmup, timed = mails[:arguments.warmup], mails[arguments.warmup:]
    workdir = Path(tempfile.mkdtemp(prefix="bench-lat-"))
    sink = TimedSink()
    sink.start()
    try:
        with common.dovecot() as server, common.database(arguments.engine, workdir) as url:
            account = common.new_account(server)
            config = common.desk_config(workdir, url, account=account,
                                        smtp=(sink.host, sink.port))
            daemon = start_daemon(config, workdir / "daemon.log")
            try:
                with account.client() as imap:
                    for raw in warmup:
                        imap.append("INBOX", raw)
                    if not sink.wait_for_ids([message_id_of(raw) for raw in warmup], 120):
                        log = (workdir / "daemon.log").read_text(errors="replace")
                        raise RuntimeError(f"no acknowledgement of the warm-up mails:\n"
                                           f"{log[-3000:]}")

                    sent: dict[str, float] = {}
                    interval = 1.0 / arguments.rate
                    next_at = time.perf_counter()
                    for raw in timed:
                        delay = next_at - time.perf_counter()
                        if delay > 0:
                            time.sleep(delay)
                        sent[message_id_of(raw)] = time.perf_counter()
                        imap.append("INBOX", raw)
                        next_at += interval
                sink.wait_for_ids(list(sent), 120)
            finally:
                stop_daemon(daemon)
    finally:
        sink.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)

    missing = [mid for mid in sent if mid not in sink.arrivals]
    if missing:
        print(f"  {len(missing)} of {len(sent)} mails got no acknowledgement within 120 s")
    return [sink.arrivals[mid] - at for mid, at in sent.items() if mid in sink.arrivals]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="timed mails (default: 300)")
    parser.add_argument("--rate", type=float, default=3.0,
                        help="mails appended per second (default: 3)")
    parser.add_argument("--warmup", type=int, default=3,
                        help="mails sent and awaited before timing starts (default: 3)")
    parser.add_argument("--engine", default="sqlite", choices=("sqlite", "postgresql"))
    parser.add_argument("--seed", type=int, default=1)
    arguments = parser.parse_args()

    common.exit_on_sigterm()
    print(f"machine: {common.machine()}")
    latencies = measure(arguments)
    if not latencies:
        raise SystemExit("no acknowledgement arrived")
    print(f"  {arguments.engine}, {len(latencies)} mails at {arguments.rate:g}/s: "
          f"median {statistics.median(latencies):.3f} s, "
          f"p95 {common.percentile(latencies, 0.95):.3f} s, "
          f"min {min(latencies):.3f} s, max {max(latencies):.3f} s")


if __name__ == "__main__":
    main()
