"""The C allocator's settings for the daemon, which runs for months through large mail.

glibc's malloc serves a block of 128 KiB or more with its own mmap, returned to the
system when freed. Each such free raises that threshold to the freed block's size, up to
32 MiB. So after one mail with a 5 MiB attachment, blocks up to that size come from the
heap instead. The heap only shrinks from its top, and a small object that stays alive
above a freed block keeps the block's pages. Over a 50,000-mail backlog the daemon's
peak RSS grew from 111 to 118-121 MiB once it sent mail between batches
(bench/memory.py). With the threshold fixed it peaked at 107 MiB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

# mallopt's parameter number for the mmap threshold, from glibc's <malloc.h>.
M_MMAP_THRESHOLD = -3
# Twice glibc's starting value, the value measured above. Setting it, whatever the
# value, also turns off the raising (mallopt(3)).
MMAP_THRESHOLD = 256 * 1024


def keep_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold at 256 KiB; return whether the C library took it.

    NOTE: only glibc has ``mallopt`` with this parameter. Elsewhere (musl, macOS) nothing
    changes, and the daemon's memory may grow over a long backlog as described above.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as error:
        logger.debug("the C library has no mallopt, the heap keeps its defaults: %s", error)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1:
        logger.debug("mallopt rejected the mmap threshold, the heap keeps its defaults")
        return False
    return True
