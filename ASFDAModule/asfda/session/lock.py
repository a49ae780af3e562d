"""One writer a session: the backend (``asfda serve``) and the CLI's writing commands take the same lock.

A second backend on the same folder would run its jobs twice; a CLI ``label`` or ``finetune`` beside a
running backend would race its jobs. The lock is an advisory ``flock`` on ``server.lock``, released by the
system when its holder dies, so a crash never leaves the session locked.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

from ..errors import StoreError

LOCK_FILE = "server.lock"
SERVER_FILE = "server.json"


def lock_holder(root: Path) -> str:
    """`` (pid N)`` of the backend serving ``root`` as its server.json says, or ``""``."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        return f" (pid {json.loads((root / SERVER_FILE).read_text())['pid']})"
    return ""


@contextlib.contextmanager
def session_lock(root: Path, user: str = "backend") -> Iterator[None]:
    """Hold the session's lock for the ``with`` block; refuse at once (StoreError) when another holds it."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock; the module starts one backend a session anyway
        yield
        return
    root = Path(root)
    stream = open(root / LOCK_FILE, "a+")  # noqa: SIM115 - held for the whole block
    try:
        try:
            fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = lock_holder(root)
            if user == "backend":
                message = f"another ASFDA backend{holder} serves this session already"
            else:
                message = (
                    f"an ASFDA backend{holder} or another asfda command is using this session; "
                    f"{user} while it runs would race it: stop the backend (or use the Slicer module, "
                    "which talks to it) and try again"
                )
            raise StoreError(message, root) from error
        yield
    finally:
        stream.close()
