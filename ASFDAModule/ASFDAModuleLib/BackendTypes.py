"""The records of the backend's HTTP contract (``asfda/server/API.md``) as dataclasses.

Parsing is lenient about extra keys (a newer backend may add fields) and strict about the ones the module
needs (a missing ``id`` is a broken backend, not something to paper over).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from .i18n import _


class CaseStatus(str, Enum):
    UNLABELLED = "unlabelled"
    SUGGESTED = "suggested"
    LABELLED = "labelled"
    PSEUDO_LABELLED = "pseudo_labelled"

    @property
    def label(self) -> str:
        return self.value.replace("_", "-")


class JobKind(str, Enum):
    SCORE = "score"
    FINETUNE = "finetune"
    PROPOSE = "propose"  # the backend chooses the starting segmentation and builds proposals


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


def _optionalFloat(value: Any) -> float | None:
    return None if value is None else float(value)


def _optionalInt(value: Any) -> int | None:
    return None if value is None else int(value)


def _optionalStr(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass
class Case:
    """One volume of the pool, with its scores under the model version that computed them."""

    id: str
    name: str
    status: CaseStatus
    sourcePath: str | None = None
    dkd: float | None = None
    asd: float | None = None
    score: float | None = None
    rank: int | None = None
    modelVersion: str | None = None
    lastServed: str | None = None
    provisional: bool = False  # ranked among the cases scored so far (the pool's first scoring runs)

    @property
    def scored(self) -> bool:
        return self.score is not None

    @classmethod
    def fromJson(cls, data: dict) -> Case:
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or data["id"]),
            status=CaseStatus(data.get("status", CaseStatus.UNLABELLED.value)),
            sourcePath=_optionalStr(data.get("source_path")),
            dkd=_optionalFloat(data.get("dkd")),
            asd=_optionalFloat(data.get("asd")),
            score=_optionalFloat(data.get("score")),
            rank=_optionalInt(data.get("rank")),
            modelVersion=_optionalStr(data.get("model_version")),
            lastServed=_optionalStr(data.get("last_served")),
            provisional=bool(data.get("provisional", False)),
        )


@dataclass
class Job:
    """A scoring pass or a fine-tuning round running in the backend."""

    id: str
    kind: JobKind
    state: JobState
    progress: float = 0.0
    message: str = ""
    modelVersion: str | None = None
    result: dict = field(default_factory=dict)  # a round's: its version, round number and metrics

    @classmethod
    def fromJson(cls, data: dict) -> Job:
        return cls(
            id=str(data["id"]),
            kind=JobKind(data.get("kind", JobKind.FINETUNE.value)),
            state=JobState(data["state"]),
            progress=float(data.get("progress") or 0.0),
            message=str(data.get("message") or ""),
            modelVersion=_optionalStr(data.get("model_version")),
            result=dict(data.get("result") or {}),
        )


@dataclass
class Ranking:
    """The pool sorted by rank, and the case the backend would serve next.

    ``complete`` is False while a scoring job (``job``) still scores the pool: the cases then carry the
    scores computed so far and no rank (``GET /ranking?wait=false``), except in a pool's first scoring once
    enough are scored: then ``provisional``, and those ``scored`` of ``poolSize`` are ranked among themselves.
    """

    modelVersion: str | None
    round: int | None
    cases: list[Case]
    nextCaseId: str | None
    complete: bool = True
    job: Job | None = None
    provisional: bool = False
    scored: int | None = None  # None from a backend older than the provisional ranking
    poolSize: int | None = None

    @property
    def scoredCount(self) -> int:
        return sum(case.scored or case.dkd is not None for case in self.cases)

    @classmethod
    def fromJson(cls, data: dict) -> Ranking:
        job = data.get("job")
        return cls(
            modelVersion=_optionalStr(data.get("model_version")),
            round=_optionalInt(data.get("round")),
            cases=[Case.fromJson(item) for item in data.get("cases", [])],
            nextCaseId=_optionalStr(data.get("next")),
            complete=bool(data.get("complete", True)),
            job=Job.fromJson(job) if job else None,
            provisional=bool(data.get("provisional", False)),
            scored=_optionalInt(data.get("scored")),
            poolSize=_optionalInt(data.get("pool_size")),
        )


@dataclass
class ModelVersion:
    id: str
    parent: str | None
    created: str | None
    round: int | None
    metrics: dict = field(default_factory=dict)
    active: bool = False

    @classmethod
    def fromJson(cls, data: dict) -> ModelVersion:
        return cls(
            id=str(data["id"]),
            parent=_optionalStr(data.get("parent")),
            created=_optionalStr(data.get("created")),
            round=_optionalInt(data.get("round")),
            metrics=dict(data.get("metrics") or {}),
            active=bool(data.get("active", False)),
        )


@dataclass
class QuerySettings:
    """The query strategy in use and every strategy the engine offers (names, as the engine spells them)."""

    strategy: str
    budget: int
    strategies: list[str] = field(default_factory=list)

    @classmethod
    def fromJson(cls, data: dict) -> QuerySettings:
        return cls(
            strategy=str(data["strategy"]),
            budget=int(data.get("budget") or 1),
            strategies=[str(name) for name in data.get("strategies") or []],
        )


@dataclass
class RoundMetrics:
    """What one fine-tuning round achieved; ``valDice`` is None while fewer than 2 cases are labelled."""

    round: int
    modelVersion: str | None
    labelledCount: int
    valDice: float | None
    seconds: float | None

    @classmethod
    def fromJson(cls, data: dict) -> RoundMetrics:
        return cls(
            round=int(data["round"]),
            modelVersion=_optionalStr(data.get("model_version")),
            labelledCount=int(data.get("n_labelled") or 0),
            valDice=_optionalFloat(data.get("val_dice")),
            seconds=_optionalFloat(data.get("seconds")),
        )


@dataclass
class BackendInfo:
    """What the backend runs on and which labels its model segments."""

    version: str
    device: str
    gpuName: str | None
    gpuFreeMb: float | None
    torch: str | None
    monai: str | None
    modelVersion: str | None
    labels: dict[int, str]
    round: int | None = None

    @property
    def summary(self) -> str:
        where = self.gpuName or self.device
        return _("ASFDA {version} on {where}, model version {model}").format(
            version=self.version, where=where, model=self.modelVersion or _("none")
        )

    @classmethod
    def fromJson(cls, data: dict) -> BackendInfo:
        return cls(
            version=str(data.get("version", "?")),
            device=str(data.get("device", "?")),
            gpuName=_optionalStr(data.get("gpu_name")),
            gpuFreeMb=_optionalFloat(data.get("gpu_free_mb")),
            torch=_optionalStr(data.get("torch")),
            monai=_optionalStr(data.get("monai")),
            modelVersion=_optionalStr(data.get("model_version")),
            labels={int(value): str(name) for value, name in (data.get("labels") or {}).items()},
            round=_optionalInt(data.get("round")),
        )


@dataclass(frozen=True)
class PredictionDownload:
    """A case's starting segmentation as downloaded: the file, the model version behind it, what it is
    (``model`` or a proposal kind) and its source in one line ("starting from: ...")."""

    path: Path
    modelVersion: str | None = None
    source: str | None = None
    startingFrom: str | None = None
