"""Peak memory while the daemon drains a large IMAP backlog, some mails with big attachments.

For each backlog size the seeded corpus is streamed into a fresh Dovecot mailbox (never
held whole in this process), then ``maildesk run --once`` drains it as a child process.
The child's peak resident set size comes from ``os.wait4``, so it is that process
alone, not Dovecot or this script. The daemon parses in a helper process it forks; the
script samples /proc every 0.1 s for the resident and proportional set sizes of the
daemon and its helper together (RSS counts the pages they share twice, PSS splits them).
Two sizes show whether the peak grows with the backlog; it should not, because the
source fetches in batches of ``batch_size``.

    python bench/memory.py                                   # 5,000 and 50,000 mails
    python bench/memory.py --sizes 2000 --large-every 500 --large-mb 4
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from corpus import CorpusGenerator


def tree_memory(pid: int) -> tuple[int, int]:
    """Return the RSS and PSS in KiB of a process and its children together, now."""
    rss = pss = 0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for member in (pid, *(int(child) for child in children)):
        try:
            rollup = Path(f"/proc/{member}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in rollup.splitlines():
            name, _, value = line.partition(":")
            if name == "Rss":
                rss += int(value.split()[0])
            elif name == "Pss":
                pss += int(value.split()[0])
    return rss, pss


def drain_in_child(config: Path, timeout: float) -> tuple[float, float, float, float, int]:
    """Run ``maildesk run --once``.

    Return the seconds, the peak RSS of the daemon process, the peak RSS and PSS of the
    daemon and its helper together (MiB) and the exit status.
    """
    environment = {**os.environ, "PYTHONPATH": str(common.REPOSITORY)}
    log = config.with_name("daemon.log")
    started = time.perf_counter()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "maildesk.cli", "--config", str(config), "run", "--once"],
            env=environment, stdout=output, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout
    tree_rss = tree_pss = 0
    try:
        while True:
            rss, pss = tree_memory(process.pid)
            tree_rss, tree_pss = max(tree_rss, rss), max(tree_pss, pss)
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid == process.pid:
                break
            if time.monotonic() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.1)
    except BaseException:
        process.kill()
        process.wait()
        raise
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.stderr.write(log.read_text(errors="replace")[-3000:])
    return (seconds, usage.ru_maxrss / 1024, tree_rss / 1024, tree_pss / 1024,
            process.returncode)


def run_size(server: common.Dovecot, size: int, arguments: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-mem-"))
    try:
        generator = CorpusGenerator(size, arguments.seed, large_every=arguments.large_every,
                                    large_size=int(arguments.large_mb * 2**20))
        account = common.new_account(server)
        started = time.perf_counter()
        common.append_all(account, generator)
        appended = time.perf_counter() - started
        stats = generator.stats

        with common.database(arguments.engine, workdir) as url:
            config = common.desk_config(workdir, url, account=account,
                                        batch_size=arguments.batch_size)
            seconds, peak, tree_rss, tree_pss, status = drain_in_child(config,
                                                                       arguments.timeout)
        left = len(account.messages("INBOX")) if status == 0 else -1
        print(f"  {size:>6} mails ({stats.total_bytes / 2**20:.0f} MiB, "
              f"{stats.large_attachments} with a {arguments.large_mb:g} MiB attachment; "
              f"appended in {appended:.0f} s): peak RSS {peak:.0f} MiB, with the parse "
              f"helper {tree_rss:.0f} MiB (PSS {tree_pss:.0f} MiB), drained in "
              f"{seconds:.0f} s ({size / seconds:.1f} mails/s), exit status {status}, "
              f"{left} left in INBOX")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000,50000",
                        help="backlog sizes, comma-separated (default: 5000,50000)")
    parser.add_argument("--large-every", type=int, default=1000,
                        help="every n-th mail carries a large attachment (default: 1000)")
    parser.add_argument("--large-mb", type=float, default=5.0,
                        help="size of the large attachments in MiB (default: 5)")
    parser.add_argument("--engine", default="sqlite", choices=("sqlite", "postgresql"))
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=10800,
                        help="give up on one drain after this many seconds (default: 10800)")
    arguments = parser.parse_args()

    common.exit_on_sigterm()
    print(f"machine: {common.machine()}")
    print(f"engine: {arguments.engine}; IMAP batch size {arguments.batch_size}")
    with common.dovecot() as server:
        for size in (int(value) for value in arguments.sizes.split(",")):
            run_size(server, size, arguments)


if __name__ == "__main__":
    main()
