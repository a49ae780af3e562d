"""A writer bound to another process's life: a backend's worker writes the journal only while the backend
that started it lives.

If the backend dies (``kill -9``, a crash), a new one may already have recovered the session (marked the
round interrupted, removed what it half-wrote) when the old worker would write its next journal line; that
line would contradict the recovery. On Linux the kernel kills the worker with its backend
(``PR_SET_PDEATHSIG``); everywhere, :func:`ensure_writer_may_continue` runs before each journal line and ends
the process, as a crash would, once its backend is gone.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

ORPHAN_EXIT_CODE = 70
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

_parent_pid: int | None = None


def bind_to_parent(parent_pid: int) -> None:
    """From now on this process lives only as long as ``parent_pid`` (its parent): killed with it on
    Linux, and stopped before its next journal line elsewhere."""
    global _parent_pid
    _parent_pid = parent_pid
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl: the check below still holds
    ensure_writer_may_continue()  # the parent may have died before the signal was armed


def bound_parent() -> int | None:
    """The process this one is bound to (None: not a backend's worker)."""
    return _parent_pid


def parent_alive(parent_pid: int) -> bool:
    if os.getppid() != parent_pid:  # POSIX: an orphan is adopted by another process at once
        return False
    from .temporaries import process_alive

    return process_alive(parent_pid)


def ensure_writer_may_continue() -> None:
    """End this process at once when it is bound to a parent that has died (a no-op otherwise)."""
    if _parent_pid is not None and not parent_alive(_parent_pid):
        os._exit(ORPHAN_EXIT_CODE)
