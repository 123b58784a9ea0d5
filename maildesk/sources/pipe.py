"""No mailbox: the desk whose mail an MTA hands to ``maildesk deliver``.

The daemon of such a desk reads no mail. It runs the SLA tasks and sends the outbox,
which ``deliver`` alone never retries, so the configuration may leave ``source:`` out.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from maildesk.sources import FetchedMail

# The name of the lease that the daemons of a pipe-fed desk share.
PIPE_SOURCE_NAME = "pipe"


class PipeSource:
    """A source that never has mail; ``wait`` only sleeps."""

    name = PIPE_SOURCE_NAME

    def fetch(self) -> list[FetchedMail]:
        return []

    def acknowledge(self, mail: FetchedMail) -> None:
        raise RuntimeError("the pipe source fetched no mail to acknowledge")

    def quarantine(self, mail: FetchedMail) -> None:
        raise RuntimeError("the pipe source fetched no mail to quarantine")

    def wait(self, timeout: float, should_stop: Callable[[], bool]) -> None:
        deadline = time.monotonic() + timeout
        while not should_stop() and time.monotonic() < deadline:
            time.sleep(min(1.0, max(deadline - time.monotonic(), 0)))

    def close(self) -> None:
        pass
