"""Shared parts of the benchmark scripts: servers on 127.0.0.1, a desk, reporting.

The servers come from ``tests/servers.py`` (a real Dovecot, the aiosmtpd sink, throwaway
PostgreSQL schemas), so the benchmarks run against the same setup as the integration
tests. Everything listens on 127.0.0.1 and lives under a temporary directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

BENCH_DIR = Path(__file__).resolve().parent
REPOSITORY = BENCH_DIR.parent
for _path in (str(REPOSITORY), str(REPOSITORY / "tests"), str(BENCH_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from servers import Dovecot, ImapAccount, PostgresSchema, new_imap_username  # noqa: E402

from maildesk.resources import shipped  # noqa: E402

logger = logging.getLogger(__name__)

IMAP_PASSWORD_ENV = "MAILDESK_BENCH_IMAP_PASSWORD"
APPEND_CHUNK = 200


def machine() -> str:
    """Describe the machine in one line: CPU model, cores, memory, Python and load."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (f"{model}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, "
            f"Python {platform.python_version()}, load average {load}")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile, the usual definition for latency reports."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return (f"median {statistics.median(values):.1f}, "
            f"range {min(values):.1f}-{max(values):.1f}")


@contextlib.contextmanager
def dovecot() -> Iterator[Dovecot]:
    """Start a private Dovecot on a free port of 127.0.0.1; kill and delete it afterwards."""
    server = Dovecot(tempfile.mkdtemp(prefix="dv-"))
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


def new_account(server: Dovecot) -> ImapAccount:
    return ImapAccount(server, new_imap_username())


def append_all(account: ImapAccount, mails: Iterable[bytes], folder: str = "INBOX") -> int:
    """Append mails over one connection with MULTIAPPEND, in chunks; return the count."""
    count = 0
    with account.client() as imap:
        chunk: list[bytes] = []
        for raw in mails:
            chunk.append(raw)
            if len(chunk) >= APPEND_CHUNK:
                imap.multiappend(folder, chunk)
                count += len(chunk)
                chunk = []
        if chunk:
            imap.multiappend(folder, chunk)
            count += len(chunk)
    return count


@contextlib.contextmanager
def database(engine: str, workdir: Path) -> Iterator[str]:
    """Yield a fresh database URL: a SQLite file, or a PostgreSQL schema dropped afterwards."""
    if engine == "sqlite":
        yield f"sqlite:///{workdir / 'maildesk.sqlite3'}"
        return

    schema = PostgresSchema()
    schema.name = f"bench_{schema.name}"
    url = schema.create()
    try:
        yield url
    finally:
        from maildesk import models

        with contextlib.suppress(Exception):
            models.database_proxy.obj.close()
        schema.drop()


def desk_config(workdir: Path, database_url: str, *, account: ImapAccount | None = None,
                smtp: tuple[str, int] | None = None, batch_size: int = 50,
                idle: bool = True, parse_ahead: bool = True) -> Path:
    """Write maildesk.yaml for a benchmark desk with the shipped templates and rules."""
    config: dict[str, Any] = {
        "language": "pl",
        "desk": {
            "name": "Helpdesk IT",
            "address": "helpdesk@example.com",
            "admin_addresses": ["admin@example.com"],
            "ticket_tag": "[#{number}]",
            "message_id_domain": "maildesk.example.com",
            # A benchmark sends thousands of acknowledgements within minutes. The
            # desk-wide limit (500 an hour by default) would leave most of them out, and
            # the pass would measure less work than a desk that raised it for a storm.
            "automatic_mail_desk_limit": 1_000_000,
        },
        "database": database_url,
        "storage": str(workdir / "storage"),
        "templates": str(shipped("templates")),
        "rules": str(shipped("rules")),
        "vip": ["@zarzad.example.com"],
        "parse_ahead": parse_ahead,
        "groups": [
            {"name": "first-line", "tier": 1, "manager": "kierownik@example.com",
             "escalates_to": "network"},
            {"name": "network", "tier": 2, "manager": "kierownik@example.com"},
            {"name": "accounts", "tier": 2, "manager": "kierownik@example.com"},
        ],
        "agents": [
            {"login": "marek.zielinski", "name": "Marek Zieliński",
             "addresses": ["marek.zielinski@example.com"], "groups": ["first-line"]},
            {"login": "ewa.nowak", "name": "Ewa Nowak",
             "addresses": ["ewa.nowak@example.com"], "groups": ["network"]},
        ],
    }
    if smtp is None:
        config["smtp"] = {"transport": "directory", "directory": str(workdir / "outbox")}
    else:
        config["smtp"] = {"transport": "smtp", "host": smtp[0], "port": smtp[1],
                          "security": "none", "timeout": 30}
    if account is not None:
        os.environ[IMAP_PASSWORD_ENV] = account.password
        config["source"] = {
            "type": "imap", "host": account.host, "port": account.port, "security": "none",
            "username": account.username, "password_env": IMAP_PASSWORD_ENV,
            "poll_interval": 300, "batch_size": batch_size, "idle": idle,
        }
    path = workdir / "maildesk.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False),
                    encoding="utf-8")
    return path


def open_desk(config_path: Path) -> Any:
    """Open the desk as ``maildesk run`` does (the raw store keeps fsync on, as shipped)."""
    from maildesk.desk import Desk

    return Desk.open(config_path)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so the servers and temporary folders are cleaned up."""
    import signal

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def quiet_logging() -> None:
    """Keep maildesk's per-mail log lines out of the report (they cost time, too).

    Warnings are left out as well: with two agents, the shipped rules notify the same
    agent about every new ticket, and each notification over the hourly limit of
    automatic mail logs one.
    """
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    exit_on_sigterm()


def start_profiler() -> Any:
    """Start a pyinstrument wall-clock profiler (waits such as fsync included)."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001)
    profiler.start()
    return profiler


def stop_profiler(profiler: Any, path: Path) -> None:
    profiler.stop()
    path.write_text(profiler.output_text(unicode=True, color=False, show_all=False))
    print(f"  profile written to {path}")
