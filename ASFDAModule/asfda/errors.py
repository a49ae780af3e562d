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


class StoreError(ASFDAError):
    """The session store could not be written (full disk, permissions) or is busy."""


class CancelledError(ASFDAError):
    """Long work stopped because the user asked for it."""
