"""Request and response bodies of the HTTP API (the contract in ``API.md``; FastAPI derives the OpenAPI)."""

from __future__ import annotations

import math
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from ..config import QueryStrategy
from .job_records import JobKind, JobState


def finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: an undefined number (a Dice with nothing to compare) becomes null."""
    return None if value is None or not math.isfinite(value) else float(value)


def finite_tree(value: Any) -> Any:
    if isinstance(value, float):
        return finite(value)
    if isinstance(value, dict):
        return {str(k): finite_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_tree(v) for v in value]
    return value


class StrictRequest(BaseModel):
    """A request body: unknown fields are refused in one short error (a typo must not pass unnoticed, and a
    body of many unknown keys must not cost one error each)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def known_fields_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = [key for key in data if key not in cls.model_fields]
            if unknown:
                shown = ", ".join(repr(str(key)[:40]) for key in unknown[:3])
                more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
                raise PydanticCustomError(
                    "extra_forbidden",
                    "unknown field(s) {shown}{more}; the fields are: {known}",
                    {"shown": shown, "more": more, "known": ", ".join(cls.model_fields) or "none"},
                )
        return data


class ErrorResponse(BaseModel):
    detail: str = Field(description="what went wrong, naming the file or case and the problem")


class Health(BaseModel):
    status: str = "ok"


class Info(BaseModel):
    version: str = Field(description="version of the asfda engine")
    device: str
    gpu_name: str | None
    gpu_free_mb: float | None
    torch: str
    monai: str
    model_version: str = Field(description="the active model version")
    round: int = Field(description="the last completed fine-tuning round")
    labels: dict[str, str] = Field(description="label value -> structure name")
    session: str
    model_source: str
    max_upload_mb: float


class CaseStatus(str, Enum):
    UNLABELLED = "unlabelled"
    SUGGESTED = "suggested"  # picked by the current ranking, or handed to an annotator in the last half hour
    LABELLED = "labelled"
    PSEUDO_LABELLED = "pseudo_labelled"  # used with pseudo-labels by the round that made the active model


class Case(BaseModel):
    id: str
    name: str
    source_path: str
    status: CaseStatus
    dkd: float | None = Field(None, description="knowledge gap to the pretrained model (DKD)")
    asd: float | None = Field(None, description="anatomical segmentation difficulty")
    score: float | None = Field(None, description="combined query score of the current ranking")
    rank: int | None = Field(None, description="1 = annotate first; null for labelled or unscored cases")
    model_version: str | None = Field(None, description="the model version the scores are from")
    last_served: str | None = Field(None, description="when the case was last handed to an annotator")
    added: str | None = None
    provisional: bool = Field(
        False, description="its rank is among the cases scored so far: the pool's first scoring is running"
    )


class AddCases(StrictRequest):
    path: str | None = Field(None, max_length=4096, description="an absolute path to one volume file")
    folder: str | None = Field(None, max_length=4096, description="an absolute path to a folder of volumes")

    @model_validator(mode="after")
    def one_of(self) -> AddCases:
        if (self.path is None) == (self.folder is None):
            raise ValueError("give exactly one of 'path' and 'folder'")
        return self


class NextRequest(StrictRequest):
    client: str = Field("", max_length=200, description="who asks (an annotator or a Slicer instance)")


class Job(BaseModel):
    id: str
    kind: JobKind
    state: JobState
    progress: float = Field(ge=0.0, le=1.0)
    message: str
    model_version: str | None = None
    created: str | None = None
    started: str | None = None
    finished: str | None = None
    worker_pid: int | None = None
    options: dict[str, Any] = Field(default_factory=dict, description="the options it was started with")
    result: dict[str, Any] = Field(default_factory=dict, description="what it produced (version, metrics)")

    @classmethod
    def of(cls, job) -> Job:
        """The view of a ``job_records.Job`` record."""
        return cls(**finite_tree(job.to_json()))


class StartingFrom(BaseModel):
    """What a case's segmentation starts from: the model's prediction or a few-shot proposal, with the
    leave-one-out evidence of the choice (``asfda.proposals``)."""

    source: str = Field(description="model, majority, weighted or agreement: what the served file is")
    summary: str = Field(
        description="one line for the annotator, e.g. 'starting from: propagation from 2 "
        "cases, validated Dice 0.71 against the model's 0.48'"
    )
    served: str = Field(description="what the current choice serves (the source once the proposal is built)")
    validated: bool = Field(description="false with fewer than two labelled cases: no leave-one-out yet")
    labelled_cases: int = 0
    dice: dict[str, float | None] = Field(
        default_factory=dict, description="mean leave-one-out Dice of each candidate, the model's included"
    )
    model_version: str | None = Field(None, description="the model version the choice was made with")
    model_versions: dict[str, str] = Field(
        default_factory=dict,
        description="labelled case id -> the model version whose prediction of it the leave-one-out scored: "
        "the one active when its mask was first saved, which never trained on it",
    )
    made: str | None = Field(None, description="when the choice was made (UTC, ISO 8601)")


class Ranking(BaseModel):
    model_version: str
    round: int
    cases: list[Case] = Field(description="ranked cases by rank, then unscored cases, then labelled cases")
    next: str | None = Field(description="the case the next POST /next would hand out")
    complete: bool = Field(description="false while some cases still wait for their scores")
    provisional: bool = Field(
        False, description="ranks and next are from the cases scored so far (complete is false)"
    )
    scored: int = Field(0, description="cases with scores of model_version")
    pool_size: int = Field(0, description="cases in the pool")
    job: Job | None = Field(None, description="the scoring job, while one is needed")
    skipped: list[str] = Field(
        default_factory=list, description="cases the scoring could not score, each with the reason"
    )


class QuerySettings(BaseModel):
    """How the next cases are chosen; ``strategies`` lists every strategy the engine has."""

    strategy: QueryStrategy
    budget: int
    strategies: list[QueryStrategy] = Field(default_factory=lambda: list(QueryStrategy))


class QueryRequest(StrictRequest):
    strategy: QueryStrategy | None = Field(None, description="query strategy for the next rankings")
    budget: int | None = Field(None, ge=1, le=1000, description="cases to ask for each round")


class FinetuneRequest(StrictRequest):
    steps: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="training steps of this round (alone: exactly these; with steps_per_labelled: plus those "
        "per labelled case)",
    )
    steps_per_labelled: int | None = Field(None, ge=0, le=10_000, description="steps added per labelled case")
    learning_rate: float | None = Field(None, gt=0.0, le=1.0)
    batch_size: int | None = Field(None, ge=1, le=64)
    semi_supervised: bool | None = Field(None, description="use reliable unlabelled cases with pseudo-labels")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    validate_every: int | None = Field(None, ge=1, le=100_000)
    patch_size: tuple[int, int, int] | None = Field(None, description="training patch in voxels (x, y, z)")
    warmup_fraction: float | None = Field(None, ge=0.0, le=1.0, description="share of steps warming up")
    adaptation: Literal["full", "norm", "decoder"] | None = Field(
        None, description="which weights change: all, normalisation layers only, or the decoder only"
    )
    accept_worse: bool | None = Field(
        None, description="activate the round even if it validates worse than its parent"
    )
    hold_out_validation: bool | None = Field(
        None, description="validate on labelled cases no round trained on (with >= 2 labelled cases)"
    )

    @model_validator(mode="after")
    def positive_patch(self) -> FinetuneRequest:
        if self.patch_size is not None and not all(1 <= size <= 1024 for size in self.patch_size):
            raise ValueError("patch_size: each side must be 1 to 1024 voxels")
        return self


class ModelVersion(BaseModel):
    id: str
    parent: str | None
    created: str
    round: int
    metrics: dict[str, Any] = Field(default_factory=dict)
    active: bool


class RoundMetrics(BaseModel):
    round: int
    model_version: str
    parent: str | None = None
    n_labelled: int
    n_pseudo_labelled: int | None = None
    val_dice: float | None = Field(None, description="Dice of the kept weights on the labelled cases")
    seconds: float | None = None
    steps: int | None = None
