"""Who holds a lease: 'host:pid:run', and whether that process is still alive (for owners on this host)."""
from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable


def owner_id(run: object) -> str:
    """The lease owner name of one dispatcher run in this process."""
    return f"{socket.gethostname()}:{os.getpid()}:{id(run):x}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def dead_here(owners: Iterable[str | None], *, host: str | None = None, alive: Callable[[int], bool] = pid_alive) -> list[str]:
    """The owners that ran on this host in a process that no longer exists: their leases can be settled at
    once, without waiting for them to expire (a run killed and started again at once, as an operator does).
    Owners on other hosts are left to their leases' expiry."""
    host = host or socket.gethostname()
    dead = []
    for owner in owners:
        where, _, rest = (owner or "").rpartition(":")[0].rpartition(":")
        pid = rest
        if owner and where == host and pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
            dead.append(owner)
    return dead
