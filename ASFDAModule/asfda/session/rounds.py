"""A session's fine-tuning round: which unlabelled cases are reliable enough to pseudo-label, which labelled
cases are held out to validate on, which pool cases the BatchNorm statistics see, training from the active
version, and the round's commit into the store.

The held-out cases form a validation set that only grows: a case joins it only if no round has trained on it
and it is not the newest labelled case (the radiologist's latest correction always trains, so it counts at
once), and it stays out of training from then on. So the parent never trained on a case the round validates
on, and the comparison is not a fit. The set grows to ``validation_fraction`` of the labelled cases (1 to
``max_validation_cases``); it can only grow in a round that brings two or more new labelled cases (a round
of one new case trains on it, as it must).

The commit order is the store's (see :mod:`asfda.session.store`): the weights, and the round's persistent
teacher if it has one, are written and fsynced into a partial folder first (fault point ``weights-saved``),
then ``SessionStore.commit_round`` stages the version and round records, renames the folder and writes the
journal line that makes the round count.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..config import FinetuneConfig
from ..errors import CancelledError, StoreError
from ..finetune.guard import GuardDecision, guard_decision
from ..finetune.reliable import reliable_cases
from ..finetune.trainer import RoundResult, finetune_round, persists_teacher
from ..io.preprocessing import ModelSpaceCase
from ..models.loading import LoadedModel, load_state_dict
from ..scoring.case_scores import CaseScores
from ..scoring.selection import distance_to_set
from .callbacks import Cancelled, Progress
from .faults import fault_point
from .files import write_bytes_atomic
from .records import ModelVersion, now_iso
from .store import TEACHER_FILE, SessionStore


class RoundSession(Protocol):
    """What a round needs of the session it runs in (an :class:`~asfda.session.session.AdaptationSession`)."""

    store: SessionStore
    device: torch.device

    def score_all(
        self, progress: Progress | None = None, cancelled: Cancelled | None = None, epistemic: bool = False
    ) -> dict[str, CaseScores]: ...

    def load_version(self, version: str) -> LoadedModel: ...

    def model_space_case(self, case_id: str) -> ModelSpaceCase: ...

    def model_space_image(self, case_id: str) -> torch.Tensor: ...


@dataclass(frozen=True)
class RoundPlan:
    """What a round trains on, fixed before training starts (and logged as ``round_started``)."""

    number: int
    parent: str
    labelled: list[str]
    reliable: list[str]
    held_out: list[str]
    statistics_pool: list[str] = field(
        default_factory=list
    )  # unlabelled cases whose images join the BatchNorm statistics


def reliable_unlabelled(
    scores: dict[str, CaseScores], labelled: list[str], config: FinetuneConfig, exclude: Iterable[str] = ()
) -> list[str]:
    """The unlabelled cases confident enough and close enough to the labelled ones to pseudo-label."""
    excluded = set(labelled) | set(exclude)
    pool = [s for case_id, s in scores.items() if case_id not in excluded]
    if not pool or not labelled:
        return []
    embeddings = np.asarray([s.embedding for s in pool])
    labelled_embeddings = np.asarray([scores[c].embedding for c in labelled if c in scores])
    distances = distance_to_set(embeddings, labelled_embeddings)
    mask = reliable_cases(
        np.array([s.confidence for s in pool]),
        distances,
        config.tau_conf,
        config.tau_dist,
        quantile=config.tau_conf_quantile,
    )
    return [s.case_id for s, keep in zip(pool, mask) if keep]


def validation_size(n_labelled: int, config: FinetuneConfig) -> int:
    """How many labelled cases the validation set should hold: none below two labelled cases, else
    ``validation_fraction`` of them, 1 to ``max_validation_cases``."""
    if not config.hold_out_validation or n_labelled < 2:
        return 0
    return min(config.max_validation_cases, max(1, round(config.validation_fraction * n_labelled)))


def held_out_cases(
    labelled_in_order: list[str], previous: list[str], trained: set[str], config: FinetuneConfig
) -> list[str]:
    """The round's validation set: the previous one (less any case that has since been trained on or lost
    its label), grown with the earliest labelled cases no round has trained on, never the newest."""
    if not config.hold_out_validation:
        return []
    labelled = set(labelled_in_order)
    kept = [c for c in previous if c in labelled and c not in trained]
    fresh = [c for c in labelled_in_order[:-1] if c not in trained and c not in kept]
    return kept + fresh[: max(0, validation_size(len(labelled_in_order), config) - len(kept))]


def labelled_in_order(store: SessionStore) -> list[str]:
    """The labelled cases, the most recently labelled last (by the journal's ``label_submitted`` lines; a
    corrected case counts from its last submission)."""
    labelled = store.labelled_ids()
    last = {}
    for index, entry in enumerate(store.journal()):
        if entry.get("event") == "label_submitted":
            last[entry.get("case")] = index
    return sorted(labelled, key=lambda case: last.get(case, -1))


def trained_cases(rounds: list[dict]) -> set[str]:
    """Every case some committed round trained on."""
    return {c for r in rounds for c in r.get("labelled", []) if c not in set(r.get("held_out", []))}


def statistics_pool(
    store: SessionStore, labelled: list[str], config: FinetuneConfig, number: int, exclude: Iterable[str]
) -> list[str]:
    """Up to ``batchnorm_pool_cases`` unlabelled cases, drawn with the seed and the round number."""
    if not config.recompute_batchnorm or config.batchnorm_pool_cases <= 0:
        return []
    excluded = set(labelled) | set(exclude)
    pool = sorted(r.id for r in store.cases() if r.id not in excluded)
    if len(pool) <= config.batchnorm_pool_cases:
        return pool
    rng = np.random.default_rng([config.seed, number])
    return sorted(rng.choice(pool, size=config.batchnorm_pool_cases, replace=False).tolist())


def plan_round(
    session: RoundSession,
    config: FinetuneConfig,
    cancelled: Cancelled | None,
    exclude_from_pseudo: Iterable[str],
) -> RoundPlan:
    store = session.store
    labelled = labelled_in_order(store)
    if not labelled:
        raise StoreError("no labelled case yet: submit a mask before fine-tuning", store.root)
    parent = store.active_version
    number = store.next_round_number()
    scores = session.score_all(cancelled=cancelled) if config.semi_supervised else {}
    # The round's own thresholds, not the session's defaults: the config passed in is the round's truth.
    reliable = (
        reliable_unlabelled(scores, labelled, config, exclude_from_pseudo) if config.semi_supervised else []
    )
    rounds = store.rounds()
    previous = list(rounds[-1].get("held_out", [])) if rounds else []
    held_out = held_out_cases(labelled, previous, trained_cases(rounds), config)
    pool = statistics_pool(store, labelled, config, number, exclude_from_pseudo)
    return RoundPlan(number, parent, labelled, reliable, held_out, pool)


def run_round(
    session: RoundSession,
    config: FinetuneConfig,
    progress: Progress | None = None,
    cancelled: Cancelled | None = None,
    exclude_from_pseudo: Iterable[str] = (),
    job_id: str | None = None,
) -> tuple[ModelVersion, LoadedModel]:
    """One round: train from the active version, save a new version with its parent, activate it unless the
    guard keeps the parent. Returns the version and its trained model; a failed round leaves no version.
    ``job_id`` (a backend's job) is written in the ``round_started`` line, so the job's record can follow
    the journal after a crash."""
    plan = plan_round(session, config, cancelled, exclude_from_pseudo)
    fault_point("round-starting")
    session.store.log(
        "round_started",
        round=plan.number,
        parent=plan.parent,
        labelled=plan.labelled,
        reliable=plan.reliable,
        pid=os.getpid(),
        **({"job": job_id} if job_id else {}),
    )
    version_id = None
    try:
        model = session.load_version(plan.parent)  # never the in-memory pretrained model: it must stay frozen
        result = train(session, model, plan, config, progress, cancelled)
        guard = guard_decision(
            result.parent_validation_dice,
            result.validation_dice,
            result.validation,
            config.accept_worse,
            config.guard_tolerance,
            [session.store.case(c).name for c in plan.held_out],
            result.best_step,
        )
        version_id = session.store.next_version_id()
        version = save_version(session.store, result, plan, version_id, guard)
    except BaseException as error:
        abandon_round(session.store, plan.number, version_id, error)
        raise
    return version, model


def train(
    session: RoundSession,
    model: LoadedModel,
    plan: RoundPlan,
    config: FinetuneConfig,
    progress: Progress | None,
    cancelled: Cancelled | None,
) -> RoundResult:
    return finetune_round(
        model,
        [session.model_space_case(c) for c in plan.labelled if c not in plan.held_out],
        [session.model_space_case(c) for c in plan.reliable],
        config,
        session.device,
        progress=None if progress is None else (lambda s, n, m: progress(s / n, m)),
        cancelled=cancelled,
        validation=[session.model_space_case(c) for c in plan.held_out],
        teacher_state=saved_teacher(session.store, plan.parent) if persists_teacher(config) else None,
        statistics_volumes=[session.model_space_image(c) for c in plan.statistics_pool],
    )


def saved_teacher(store: SessionStore, version_id: str) -> dict[str, torch.Tensor] | None:
    """The persistent teacher saved with a version; None for a version without one (the pretrained model,
    or one made before the option), which gives the round a fresh teacher."""
    path = store.teacher_path(version_id)
    return load_state_dict(path) if path.exists() else None


def abandon_round(store: SessionStore, number: int, version_id: str | None, error: BaseException) -> None:
    """Remove what a failed round staged and log its end, unless its commit already stands."""
    if version_id is not None:
        store.discard_round(version_id, number)
    event = "round_cancelled" if isinstance(error, (CancelledError, KeyboardInterrupt)) else "round_failed"
    if number not in store.committed_rounds():
        store.log(event, round=number, error=str(error))


def save_version(
    store: SessionStore,
    result: RoundResult,
    plan: RoundPlan,
    version_id: str,
    guard: GuardDecision | None = None,
) -> ModelVersion:
    """Stage the round's files in a partial folder, then commit them in one step (see the store)."""
    partial = store.partial_version_folder()
    try:
        return commit(store, result, partial, version_id, plan, guard)
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # gone already when the commit renamed it


def commit(  # the order of these writes is what test_commit_faults checks
    store: SessionStore,
    result: RoundResult,
    partial: Path,
    version_id: str,
    plan: RoundPlan,
    guard: GuardDecision | None,
) -> ModelVersion:
    write_bytes_atomic(partial / "model.pt", tensor_bytes(result.state_dict))  # size-checked, fsynced
    if result.teacher_state_dict is not None:
        write_bytes_atomic(partial / TEACHER_FILE, tensor_bytes(result.teacher_state_dict))
    fault_point("weights-saved")
    accepted = guard is None or guard.accepted
    metrics = version_metrics(result, accepted, guard)
    version = ModelVersion(version_id, plan.parent, now_iso(), plan.number, metrics)
    record = round_record(result, plan, version.id, metrics, guard)
    version = store.commit_round(partial, version, record, activate=accepted)
    if not accepted:  # kept as a version (it can be activated by hand), but the parent stays active
        store.log("round_not_activated", round=plan.number, version=version.id, reason=guard.reason)
    return version


def tensor_bytes(state: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def version_metrics(result: RoundResult, accepted: bool, guard: GuardDecision | None = None) -> dict:
    return {
        "val_dice": result.validation_dice,
        "seconds": round(result.seconds, 2),
        "steps": result.steps,
        "best_step": result.best_step,
        "n_labelled": result.n_labelled,
        "n_pseudo_labelled": result.n_unlabelled,
        "parent_val_dice": result.parent_validation_dice,
        "validation": result.validation,
        "accepted": accepted,
        "guard_reason": guard.reason if guard is not None else None,
    }


def round_record(
    result: RoundResult, plan: RoundPlan, version_id: str, metrics: dict, guard: GuardDecision | None
) -> dict:
    """The round's ``round.json``: what it trained on, its metrics and the guard's decision."""
    return {
        "round": plan.number,
        "model_version": version_id,
        "parent": plan.parent,
        "labelled": plan.labelled,
        "pseudo_labelled": plan.reliable,
        "metrics": metrics,
        "history": result.history,
        "held_out": list(plan.held_out),
        "guard": guard.to_json() if guard is not None else None,
        # step -> validation Dice on the held-out cases; step 0 is the parent (JSON keys are strings)
        "candidates": {str(step): dice for step, dice in result.candidates.items()},
        "batchnorm": {"volumes": result.batchnorm_volumes, "pool_cases": list(plan.statistics_pool)},
    }
