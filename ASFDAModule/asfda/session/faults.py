"""Crash injection for the commit tests (test-only).

``ASFDA_FAULT_AT=<step>`` makes the process that reaches that step die there: with SIGKILL (as a power cut or
``kill -9`` would, nothing cleaned up) or, with ``ASFDA_FAULT_MODE=raise``, with an exception. The steps of a
round's commit are in :data:`asfda.session.store.COMMIT_STEPS`; every atomic file replacement is a step too
(``replace:<file name>`` between the temporary file's fsync and its rename, ``write:<file name>`` for
volumes). Unset (always, outside tests), a step costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

FAULT_VARIABLE = "ASFDA_FAULT_AT"


class InjectedFault(RuntimeError):
    """Raised at the step named in ASFDA_FAULT_AT when ASFDA_FAULT_MODE=raise."""


def fault_point(step: str) -> None:
    if os.environ.get(FAULT_VARIABLE) != step:
        return
    if os.environ.get("ASFDA_FAULT_MODE") == "raise":
        raise InjectedFault(f"injected fault at {step}")
    os.kill(os.getpid(), signal.SIGKILL)
