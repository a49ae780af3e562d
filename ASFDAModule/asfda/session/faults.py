"""Crash injection for the commit tests (test-only).

``ASFDA_FAULT_AT=<step>`` makes the process that reaches that step die there: with SIGKILL (as a power cut or
``kill -9`` would, nothing cleaned up) or, with ``ASFDA_FAULT_MODE=raise``, with an exception. The steps of a
round's commit are in :data:`asfda.session.store.COMMIT_STEPS`; every atomic file replacement is a step too
(``replace:<file name>`` between the temporary file's fsync and its rename, ``write:<file name>`` for
volumes), ``round-starting`` comes just before a round's ``round_started`` line and ``upload-copied`` between
an upload's fsync and its rename. In a backend's worker, ``ASFDA_FAULT_MODE=with-backend`` kills the backend
first and then the worker (``kill -9`` of both), and ``ASFDA_FAULT_MODE=orphan`` kills only the backend and
lets the worker go on once it is gone (an orphaned worker). Unset (always, outside tests), a step costs one
dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import time

from . import lease

FAULT_VARIABLE = "ASFDA_FAULT_AT"
ORPHAN_WAIT_SECONDS = 10.0


class InjectedFault(RuntimeError):
    """Raised at the step named in ASFDA_FAULT_AT when ASFDA_FAULT_MODE=raise."""


def fault_point(step: str) -> None:
    if os.environ.get(FAULT_VARIABLE) != step:
        return
    mode = os.environ.get("ASFDA_FAULT_MODE")
    if mode == "raise":
        raise InjectedFault(f"injected fault at {step}")
    if mode in ("with-backend", "orphan") and lease.bound_parent() is not None:  # a backend's worker only
        kill_parent()
        if mode == "orphan":
            return
    os.kill(os.getpid(), signal.SIGKILL)


def kill_parent() -> None:
    """SIGKILL this process's parent and wait until it is gone (this process adopted by another)."""
    parent = os.getppid()
    os.kill(parent, signal.SIGKILL)
    deadline = time.monotonic() + ORPHAN_WAIT_SECONDS
    while os.getppid() == parent and time.monotonic() < deadline:
        time.sleep(0.01)
