"""Errors that name the file and the problem, so that a radiologist can act on them."""

from __future__ import annotations

from pathlib import Path


class ASFDAError(Exception):
    """Base class of every error the engine raises on purpose."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class VolumeReadError(ASFDAError):
    """A volume could not be read, or holds values no model can use (NaN, empty)."""


class MaskError(ASFDAError):
    """A submitted mask does not fit its case: geometry, label values or content."""


class CheckpointError(ASFDAError):
    """A model file is missing, unreadable or does not fit the network."""


class UnknownCaseError(ASFDAError, KeyError):
    """A case id that the session does not hold."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]


class CaseInUseError(ASFDAError):
    """A case that cannot be removed now: it is labelled (HTTP 409)."""


class StoreError(ASFDAError):
    """The session store could not be written (full disk, permissions) or is busy."""


class CancelledError(ASFDAError):
    """Long work stopped because the user asked for it."""


class DiskFullError(StoreError):
    """A write did not fit on the disk (HTTP 507): the file it would have replaced is unchanged."""


def no_space_message(path: str | Path) -> str:
    """The sentence every full-disk error carries, with the room left where ``path`` was written."""
    import os

    try:
        stats = os.statvfs(Path(path).parent)
        left = f" ({stats.f_bavail * stats.f_frsize / 1024:.0f} KB left)"
    except (OSError, AttributeError):
        left = ""
    return f"no space left on device{left}: the file was not written; free some space and try again"
