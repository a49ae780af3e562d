"""The records a session keeps in its JSON files: the cases of the pool and the model versions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class CaseRecord:
    id: str
    name: str
    source_path: str
    added: str = field(default_factory=now_iso)
    last_served: float | None = None


@dataclass
class ModelVersion:
    id: str
    parent: str | None
    created: str
    round: int
    metrics: dict = field(default_factory=dict)
    source: str | None = None  # for the pretrained version: where its weights live (never copied or changed)
