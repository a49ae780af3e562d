"""The file primitives of a session folder, safe against crashes: a file is replaced in one rename after its
bytes are fsynced and their size checked (and the rename is fsynced in its folder, so a power cut keeps it), a
temporary file carries its writer's pid (see :mod:`asfda.session.temporaries`), a full disk is a
:class:`DiskFullError`, and a session folder is private.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

from ..errors import DiskFullError, StoreError, no_space_message
from .faults import fault_point
from .temporaries import temporary_prefix


def write_error(error: OSError, path: Path) -> StoreError:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(no_space_message(path), path)
    return StoreError(f"could not write ({error.strerror or error})", path)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` in one rename, after checking the size on disk; on any failure (a full
    disk) the old file stays and nothing temporary is left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=temporary_prefix(path), dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
            if os.fstat(stream.fileno()).st_size != len(data):
                raise OSError(errno.ENOSPC, "short write")
        fault_point(f"replace:{path.name}")
        os.replace(temporary, path)
        fsync_directory(path.parent)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise write_error(error, path) from error


def fsync_directory(folder: Path) -> None:
    """Make a rename in ``folder`` durable: without this a power cut may undo it (the file's bytes are on
    disk, its new name not yet). POSIX only: Windows cannot open a folder, and NTFS logs renames itself."""
    if os.name == "nt":
        return
    try:
        handle = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass  # a file system that cannot sync folders (some network ones): the rename itself has happened
    finally:
        os.close(handle)


def write_json_atomic(path: Path, data) -> None:
    write_bytes_atomic(path, json.dumps(data, indent=2, sort_keys=True).encode())


def read_json(path: Path, default=None):
    if not path.is_file():
        if default is not None:
            return default
        raise StoreError("missing session file", path)
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise StoreError(f"unreadable session file ({error})", path) from error


def make_private(folder: Path) -> None:
    """Only the user may read a session: its volumes, masks, checkpoints and token are nobody else's."""
    try:
        os.chmod(folder, 0o700)
    except OSError:
        pass  # a folder owned by someone else, or a file system without modes
