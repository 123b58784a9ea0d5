"""Ids of the maildesk processes that claim shared rows, and whether one has died.

A worker id is ``host:pid``. A mailbox lease and a claimed outbox row both name their
owner by it, so a process that finds a dead owner on its own host can take over at
once instead of waiting for the claim to expire.
"""

from __future__ import annotations

import os
import socket


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def is_dead_local(owner: str) -> bool:
    """Tell whether ``owner`` is a process on this host that no longer runs.

    An owner on another host, or one that is not ``host:pid``, is never called dead.
    NOTE: a pid that the kernel gave to a new process makes a dead owner look alive, so
    its claims wait for their expiry as a remote owner's do.
    """
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # the process exists, under another user
        return False
    return False
