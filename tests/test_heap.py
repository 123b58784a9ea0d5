"""The daemon's fixed mmap threshold gives large freed blocks back to the system."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# Frees a 6 MiB block, which raises glibc's threshold unless it is fixed. Then takes a
# 2 MiB block with a small object above it, frees the 2 MiB block and prints how many
# KiB of it the process still keeps.
PROBE = textwrap.dedent("""
    import ctypes, sys
    from maildesk import heap

    if sys.argv[1] == "fixed":
        assert heap.keep_mmap_threshold()
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = (ctypes.c_void_p,)

    def resident_kib():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * 4

    libc.free(libc.malloc(6 * 1024 * 1024))
    before = resident_kib()
    block = libc.malloc(2 * 1024 * 1024)
    ctypes.memset(block, 1, 2 * 1024 * 1024)
    above = libc.malloc(64)
    libc.free(block)
    print(resident_kib() - before)
""")


def held_after_free(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True,
                            text=True, timeout=60, check=True)
    return int(result.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc only")
def test_fixed_threshold_returns_freed_blocks() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt  # noqa: B018
    except (OSError, AttributeError):
        pytest.skip("this C library is not glibc")

    assert held_after_free("fixed") < 512
