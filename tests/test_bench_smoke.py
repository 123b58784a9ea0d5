"""Each benchmark script runs to its report on a tiny size; no timing is checked here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from servers import find_dovecot

pytestmark = pytest.mark.servers

BENCH = Path(__file__).resolve().parent.parent / "bench"

SCRIPTS = {
    "throughput": (["--sizes", "20", "--engines", "sqlite"], "ratio"),
    "latency": (["--count", "5", "--rate", "5", "--warmup", "1"], "median"),
    "pipeline": (["--size", "20"], "ms per mail"),
    "memory": (["--sizes", "20", "--large-every", "10", "--large-mb", "0.2"], "peak RSS"),
    "scale": (["--tickets", "50,100", "--scheduler-tickets", "200", "--due", "2",
               "--samples", "5", "--engines", "sqlite"], "threading by In-Reply-To"),
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_bench_script_prints_report(script: str) -> None:
    if find_dovecot() is None and script != "pipeline":
        pytest.skip("Dovecot is not installed; run scripts/setup-test-env.sh as root")
    arguments, expected = SCRIPTS[script]

    result = subprocess.run([sys.executable, str(BENCH / f"{script}.py"), *arguments],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(BENCH.parent)})

    assert result.returncode == 0, result.stderr[-3000:]
    assert "machine:" in result.stdout
    assert expected in result.stdout, result.stdout[-3000:]


def test_bench_pipeline_counts_log_pages() -> None:
    result = subprocess.run([sys.executable, str(BENCH / "pipeline.py"), "--pages", "10"],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(BENCH.parent)})

    assert result.returncode == 0, result.stderr[-3000:]
    assert "sqlite create:" in result.stdout, result.stdout[-3000:]
    assert "ticket_first_response_due" in result.stdout
