"""One process per mail: ``maildesk deliver`` as an MTA pipe or Procmail runs it.

Each mail of the corpus is piped into a new ``python -m maildesk deliver`` process, one
after the other, on a desk with the shipped templates and rules and the folder transport
(so ``deliver`` also writes out the mail it queued). The script reports the wall-clock
time of each call, from the start of the process to its exit, and the CPU time the
process used. For reference it also times the bare interpreter and the import of the
``maildesk`` command alone.

Every call pays for the interpreter's start, the imports, reading the configuration and
the rules, compiling the templates it renders and loading the catalogs, on top of the
mail itself. The daemon pays those once, so the per-mail figures of ``throughput.py`` do
not apply here.

The first call migrates the fresh database and is left out of the figures. Python's
bytecode cache is on for the child processes even where PYTHONDONTWRITEBYTECODE is set,
as it is for an installed package.

    python bench/deliver.py                        # 100 mails, SQLite
    python bench/deliver.py --mails 50 --engine postgresql
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from corpus import generate


def _child_environment() -> dict[str, str]:
    environment = dict(os.environ)
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    environment["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(common.REPOSITORY), environment.get("PYTHONPATH")) if part)
    return environment


def _timed(command: list[str], stdin: bytes, environment: dict[str, str],
           workdir: Path) -> tuple[float, float, str]:
    """Run one process; return its wall-clock and CPU seconds and its standard output.

    ``python -m`` puts the working directory first on the module path, ahead of
    PYTHONPATH, so the process runs in ``workdir``: started from another clone it would
    import that clone's maildesk.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    completed = subprocess.run(command, input=stdin, capture_output=True, env=environment,
                               cwd=workdir, check=False)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited with {completed.returncode}:\n"
                         f"{completed.stderr.decode(errors='replace')}")
    return seconds, cpu, completed.stdout.decode(errors="replace").strip()


def _report(label: str, values: list[float]) -> str:
    milliseconds = [value * 1000 for value in values]
    return (f"{label} median {statistics.median(milliseconds):.0f} ms, "
            f"95th percentile {common.percentile(milliseconds, 0.95):.0f} ms, "
            f"range {min(milliseconds):.0f}-{max(milliseconds):.0f} ms")


def run(mails: int, engine: str, seed: int) -> None:
    environment = _child_environment()
    python = sys.executable
    corpus, _stats = generate(mails + 1, seed)

    with tempfile.TemporaryDirectory(prefix="bench-deliver-") as directory:
        workdir = Path(directory)
        bare = [_timed([python, "-c", "pass"], b"", environment, workdir)[0]
                for _ in range(5)]
        imports = [_timed([python, "-c", "import maildesk.cli"], b"", environment, workdir)[0]
                   for _ in range(5)]
        print(_report("interpreter alone:", bare))
        print(_report("import of the maildesk command:", imports))

        with common.database(engine, workdir) as url:
            config = common.desk_config(workdir, url)
            command = [python, "-m", "maildesk", "--config", str(config), "deliver"]
            _timed(command, corpus[0], environment, workdir)

            walls: list[float] = []
            cpus: list[float] = []
            outcomes: dict[str, int] = {}
            for raw in corpus[1:]:
                seconds, cpu, output = _timed(command, raw, environment, workdir)
                walls.append(seconds)
                cpus.append(cpu)
                first_word = output.split(" ", 1)[0] if output else "-"
                outcomes[first_word] = outcomes.get(first_word, 0) + 1

    print(f"{engine} {mails} calls of deliver: " + _report("wall", walls)
          + f"; CPU median {statistics.median(cpus) * 1000:.0f} ms; "
          f"{mails / sum(walls):.2f} mails/s one after the other")
    print("first word of each call's output: "
          + ", ".join(f"{word} {count}" for word, count in sorted(outcomes.items())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mails", type=int, default=100, help="calls timed (default: 100)")
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--seed", type=int, default=1, help="corpus seed (default: 1)")
    arguments = parser.parse_args()

    common.quiet_logging()
    print(common.machine())
    run(arguments.mails, arguments.engine, arguments.seed)


if __name__ == "__main__":
    main()
