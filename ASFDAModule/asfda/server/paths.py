"""Path confinement: the backend only reads files inside the session folder or a folder the user allowed.

A request names files on the user's disk; without this check any process able to reach the loopback port
with the token could make the backend read (and, through error messages, probe) any file the user can read.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class PathForbiddenError(Exception):
    """A path outside the session folder and the allowed folders (HTTP 403)."""


class InvalidPathError(ValueError):
    """A path that is not a usable absolute path (HTTP 422)."""


class PathGuard:
    """The folders a request may name; symbolic links are resolved before the check, so a link inside an
    allowed folder that points outside it is refused too."""

    def __init__(self, session_root: str | Path, allowed_dirs: Iterable[str | Path] = ()):
        self.roots = [Path(session_root).resolve()] + [Path(folder).resolve() for folder in allowed_dirs]

    def check(self, path: str | Path) -> Path:
        """The resolved ``path`` when it lies inside an allowed root; raises otherwise."""
        text = str(path)
        if not text or "\x00" in text:
            raise InvalidPathError(f"{text!r}: not a valid path")
        candidate = Path(text).expanduser()
        if not candidate.is_absolute():
            raise InvalidPathError(f"{text}: the path must be absolute")
        try:
            resolved = candidate.resolve()
        except (OSError, RuntimeError) as error:  # name too long, symlink loop
            raise InvalidPathError(f"{text}: not a usable path ({error})") from error
        if not any(resolved == root or resolved.is_relative_to(root) for root in self.roots):
            raise PathForbiddenError(
                f"{text}: outside the session folder and the allowed input folders; start the backend with "
                f"--allow-dir {candidate.parent} to let it read there"
            )
        return resolved

    def in_session(self, path: Path) -> Path:
        """The resolved ``path`` of a file the backend serves or writes in the session folder; a path that a
        symbolic link (the file's or a folder's) takes outside it is refused."""
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(self.roots[0]):
            raise PathForbiddenError(
                f"{path}: a symbolic link in the session folder points outside it; the backend neither "
                "serves nor writes through it"
            )
        return resolved

    def allowed(self, path: str | Path) -> bool:
        try:
            self.check(path)
        except (PathForbiddenError, InvalidPathError):
            return False
        return True
