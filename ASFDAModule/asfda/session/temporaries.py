"""Temporary files of a session: one naming rule for every file the store and the backend write before it is
complete, so that opening a session can tell them from real files and remove those a crash left.

A temporary file is named ``.<name>.tmp<pid>-<random>[<suffix>]``: hidden, with the writer's pid (only a dead
writer's files are removed: a live backend may be writing one now) and, for volumes, the extension last (the
image readers and writers go by it). Raw copies of uploaded masks are temporaries too, but one whose mask was
never stored (the backend died while checking it) is the annotator's work and stays until a newer mask of
its case is stored (or the case leaves the pool).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

TEMPORARY = re.compile(r"^\..+\.tmp(\d+)-")
PENDING_MASK = re.compile(r"^\.label-([0-9a-f]+)-")  # a raw mask upload, prefix of ``upload_prefix``
PARTIAL = ".part"  # an upload still arriving


def process_alive(pid: int | None) -> bool:
    """Whether a process with this id runs on this machine (None: unknown, taken as dead)."""
    if not pid:
        return False
    try:
        import psutil

        return psutil.pid_exists(pid)
    except ImportError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except (PermissionError, OSError):
            return True
        return True


def temporary_prefix(path: Path) -> str:
    """Name prefix of a temporary file for ``path`` (``tempfile.mkstemp`` adds the random part)."""
    return f".{path.name}.tmp{os.getpid()}-"


def temporary_path(path: Path, suffix: str = "") -> Path:
    """A new temporary name beside ``path``; ``suffix`` (a volume's extension) goes last."""
    name = path.name[: len(path.name) - len(suffix)] if suffix and path.name.endswith(suffix) else path.name
    return path.with_name(f".{name}.tmp{os.getpid()}-{secrets.token_hex(4)}{suffix}")


def temporary_owner(name: str) -> int | None:
    """The pid of the process that writes the temporary file ``name``; None when it is not one."""
    match = TEMPORARY.match(name)
    return int(match.group(1)) if match else None


def sweep_temporaries(root: Path, stored_mask: Callable[[str], Path], cases: set[str] | None) -> list[Path]:
    """Remove the temporary files of dead processes under ``root``; returns what was removed.

    A complete raw mask upload (``uploads/.label-<case>-...``) goes only when ``stored_mask(case)`` holds a
    mask at least as new (the upload's own, or a later one) or the case left the pool (``cases``; None when
    the pool cannot be read); otherwise it is what the annotator sent and the backend never finished checking,
    and it stays.
    """
    removed = []
    for path in root.rglob(".*.tmp*-*"):
        owner = temporary_owner(path.name)
        if owner is None or not path.is_file() or path.is_symlink() or process_alive(owner):
            continue
        pending = PENDING_MASK.match(path.name)
        if (
            pending
            and not path.name.endswith(PARTIAL)
            and (cases is None or pending[1] in cases)
            and not _superseded(path, stored_mask(pending[1]))
        ):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _superseded(upload: Path, stored: Path) -> bool:
    try:
        return stored.stat().st_mtime_ns >= upload.stat().st_mtime_ns
    except OSError:
        return False
