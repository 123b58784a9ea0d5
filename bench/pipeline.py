"""The pipeline alone: ``pipeline.process`` over the corpus, without IMAP or the outbox.

Mails go through ``pipeline.process`` in batches of 50, each batch inside the raw
store's batch and ``deferred_durability``, as the daemon's drain runs them. This is the
part of a pass that maildesk's own code decides, so it is the one to compare between
two commits. Two measures:

- mails per second and CPU milliseconds per mail, which on a shared virtual machine
  vary from run to run by up to a quarter;
- with ``--instructions N``, the instructions one mail costs, counted by valgrind's
  callgrind: the difference between a run over ``3 * N`` and one over ``N`` mails,
  divided by ``2 * N``, so start-up, imports and template compiling cancel out. The count
  is the same on every run of the same code, whatever else the machine is doing. It
  does not include the time the kernel spends for the process (file creation, fsync).
- with ``--pages N``, the pages each mail's transaction writes to SQLite's log, by
  outcome and by table or index, over mails ``N+1`` to ``2N`` after ``N`` to fill the
  database. The log is emptied before each of those mails and read after it: each
  frame header names the page it holds, and SQLite's ``dbstat`` table names the table
  or index that owns the page. Like the instruction count it repeats exactly, and it
  shows what the disk work of a commit is made of.

    python bench/pipeline.py                          # 1,000 mails, SQLite
    python bench/pipeline.py --engine postgresql
    python bench/pipeline.py --instructions 50        # needs valgrind; mails 51-150
    python bench/pipeline.py --pages 200              # SQLite; mails 201-400
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from corpus import generate

BATCH_SIZE = 50


def run(size: int, engine: str, seed: int) -> tuple[float, float, dict[str, int]]:
    """Process ``size`` mails and return the wall and CPU seconds and the outcomes."""
    from maildesk import models, pipeline
    from maildesk.wiring import load_rules

    mails, _stats = generate(size, seed)
    outcomes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench-") as directory:
        workdir = Path(directory)
        with common.database(engine, workdir) as url:
            desk = common.open_desk(common.desk_config(workdir, url))
            rules = load_rules(desk)

            started = time.perf_counter()
            cpu_started = time.process_time()
            for first in range(0, len(mails), BATCH_SIZE):
                with models.deferred_durability(), desk.store.batch():
                    for raw in mails[first:first + BATCH_SIZE]:
                        outcome = pipeline.process(desk, raw, "bench", rules)
                        outcomes[outcome.action] = outcomes.get(outcome.action, 0) + 1
            seconds = time.perf_counter() - started
            cpu_seconds = time.process_time() - cpu_started

            models.database_proxy.obj.close()
    return seconds, cpu_seconds, outcomes


def pages(size: int, seed: int) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Return the log pages per mail by outcome, and per outcome by table or index."""
    from maildesk import models, pipeline
    from maildesk.wiring import load_rules

    mails, _stats = generate(2 * size, seed)
    counts: collections.Counter[str] = collections.Counter()
    written: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as directory:
        workdir = Path(directory)
        with common.database("sqlite", workdir) as url:
            desk = common.open_desk(common.desk_config(workdir, url))
            rules = load_rules(desk)
            database = models.database_proxy.obj
            for raw in mails[:size]:
                pipeline.process(desk, raw, "bench", rules)

            log = Path(database.database + "-wal")
            for raw in mails[size:]:
                database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                outcome = pipeline.process(desk, raw, "bench", rules)
                owners = dict(database.execute_sql("SELECT pageno, name FROM dbstat"))
                counts[outcome.action] += 1
                for number in _logged_pages(log.read_bytes()):
                    written[outcome.action][owners.get(number, "(free list)")] += 1
            models.database_proxy.obj.close()

    per_mail = {action: sum(written[action].values()) / count
                for action, count in counts.items()}
    by_owner = {action: {owner: pages / counts[action] for owner, pages in owners.items()}
                for action, owners in written.items()}
    return per_mail, by_owner


def _logged_pages(log: bytes) -> set[int]:
    """Return the page numbers of the frames in a SQLite write-ahead log."""
    if len(log) < 32:
        return set()
    page_size = struct.unpack(">I", log[8:12])[0]
    found = set()
    for offset in range(32, len(log) - 24 + 1, 24 + page_size):
        found.add(struct.unpack(">I", log[offset:offset + 4])[0])
    return found


def instructions(size: int, engine: str, seed: int) -> float:
    """Return the instructions per mail: callgrind over 3 * size mails minus over size."""
    totals = []
    for count in (size, 3 * size):
        with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as directory:
            completed = subprocess.run(
                ["valgrind", "--tool=callgrind",
                 f"--callgrind-out-file={directory}/callgrind.out",
                 sys.executable, __file__, "--size", str(count), "--engine", engine,
                 "--seed", str(seed)],
                capture_output=True, text=True, check=True)
        found = re.search(r"Collected\s*:\s*(\d+)", completed.stderr)
        if found is None:
            raise RuntimeError(f"no instruction count in valgrind's output:\n"
                               f"{completed.stderr[-2000:]}")
        totals.append(int(found.group(1)))
    return (totals[1] - totals[0]) / (2 * size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000, help="mails (default: 1000)")
    parser.add_argument("--engine", default="sqlite", choices=("sqlite", "postgresql"))
    parser.add_argument("--seed", type=int, default=1, help="corpus seed (default: 1)")
    parser.add_argument("--instructions", type=int, metavar="N",
                        help="count instructions per mail over N mails with callgrind")
    parser.add_argument("--pages", type=int, metavar="N",
                        help="count the SQLite log pages of mails N+1 to 2N, by table")
    arguments = parser.parse_args()
    common.quiet_logging()

    if arguments.pages:
        print(f"machine: {common.machine()}; commit {_commit()}")
        per_mail, by_owner = pages(arguments.pages, arguments.seed)
        for action in sorted(per_mail):
            print(f"sqlite {action}: {per_mail[action]:.1f} pages written to the log "
                  f"per mail (mails {arguments.pages + 1}-{2 * arguments.pages})")
            for owner, count in sorted(by_owner[action].items(), key=lambda item: -item[1]):
                print(f"  {count:5.2f}  {owner}")
        return

    if arguments.instructions:
        per_mail = instructions(arguments.instructions, arguments.engine, arguments.seed)
        print(f"{arguments.engine}: {per_mail / 1e6:.2f} million instructions per mail "
              f"(mails {arguments.instructions + 1}-{3 * arguments.instructions} of the "
              f"corpus, callgrind)")
        return

    print(f"machine: {common.machine()}; commit {_commit()}")
    seconds, cpu_seconds, outcomes = run(arguments.size, arguments.engine, arguments.seed)
    summary = ", ".join(f"{action} {count}" for action, count in sorted(outcomes.items()))
    print(f"{arguments.engine} {arguments.size}: {arguments.size / seconds:.1f} mails/s, "
          f"{1000 * seconds / arguments.size:.2f} ms per mail, CPU "
          f"{1000 * cpu_seconds / arguments.size:.2f} ms per mail ({summary})")


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, cwd=os.path.dirname(__file__)
                              ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    main()
