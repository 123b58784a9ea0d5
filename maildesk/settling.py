"""Tell when files an admin changed have stopped changing, so a half-written file is not used.

A change counts as finished when the newest modification time is ``seconds`` old, or
when the files stayed the same for ``seconds`` by the monotonic clock. Only the second
way can judge a modification time in the future. Such a time comes from a system clock
that went back after the edit (NTP correcting a fast clock), or from files copied with
their times from a host whose clock is ahead.
"""

from __future__ import annotations

import time
from collections.abc import Hashable


class Settling:
    """The state of a set of files last seen changed, and when it was first seen."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._state: Hashable | None = None
        # time.monotonic() when ``_state`` was first seen.
        self._since = 0.0

    def settled(self, state: Hashable, newest_modified: float) -> bool:
        """Tell whether files in ``state``, modified last at ``newest_modified``, are done.

        ``state`` is anything that changes with the files (names, sizes, times or a
        hash), and ``newest_modified`` is in seconds since the epoch, as os.stat gives.
        """
        now = time.monotonic()
        if state != self._state:
            self._state = state
            self._since = now
        if time.time() - newest_modified >= self.seconds:
            return True
        return now - self._since >= self.seconds
