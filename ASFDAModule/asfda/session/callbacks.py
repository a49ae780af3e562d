"""How long work (scoring a pool, a round) reports progress and learns that the user asked it to stop."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[float, str], None]  # (fraction done, message)
Cancelled = Callable[[], bool]
