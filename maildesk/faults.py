"""Named crash points for the crash-safety tests.

When the environment variable MAILDESK_CRASH_AT names a point (``before-commit``,
``after-commit``, ``before-ack``, ``during-send``, ``after-send``, ``purge-after-chunk``),
the process kills itself with SIGKILL on reaching it, which is what a power cut or the
OOM killer does. The variable is unset in production, where each call is one
dictionary lookup.
"""

from __future__ import annotations

import logging
import os
import signal

logger = logging.getLogger(__name__)

POINTS = ("before-commit", "after-commit", "before-ack", "during-send", "after-send",
          "purge-after-chunk")


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL if MAILDESK_CRASH_AT names this point."""
    if os.environ.get("MAILDESK_CRASH_AT") == name:
        logger.critical("crash point %s reached: killing the process (test fault injection)",
                        name)
        os.kill(os.getpid(), signal.SIGKILL)
