"""What a loop round records beside its Dice: the scores its query saw for every pool case, and what the
guard decided with the test Dice of both versions it chose between.

Both exist for analyses after the run: whether any score predicts a good labelled set (``PoolScores``),
and whether the guard's validation signal agrees with held-out test Dice (``GuardOutcome``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import QueryConfig
from .scoring.case_scores import CaseScores
from .scoring.class_entropy import class_stratified_entropy
from .scoring.query import RankedCase
from .scoring.typicality import centred, typicality

SIGNIFICANT_DIGITS = 5  # enough to rank 60 cases; keeps a run file small


@dataclass
class PoolScores:
    """The round's query over the unlabelled pool, one column per score and one row per case (``cases``).

    A column is None where the query computed no such score (random scores nothing). ``score`` is the
    strategy's combined score, ``rank`` its order (1 = asked first); the picks are the record's ``picked``.
    ``typicality`` is TypiClust's, over the same unlabelled pool, for every scored round (only the
    representative strategies rank on it)."""

    cases: list[str]
    rank: list[int]
    score: list[float | None]
    knowledge_gap: list[float | None] | None = None
    asd: list[float | None] | None = None
    mean_entropy: list[float | None] | None = None
    class_entropy: list[float | None] | None = None
    confidence: list[float | None] | None = None
    epistemic: list[float | None] | None = None
    diversity: list[float | None] | None = None
    typicality: list[float | None] | None = None

    @classmethod
    def from_json(cls, data: dict | None) -> PoolScores | None:
        return None if data is None else cls(**data)


def compact(value: float | None) -> float | None:
    """A finite value to ``SIGNIFICANT_DIGITS`` significant digits; None for a missing or non-finite one."""
    if value is None or not np.isfinite(value):
        return None
    return float(f"{float(value):.{SIGNIFICANT_DIGITS}g}")


def pool_scores(
    ranking: list[RankedCase], scores: dict[str, CaseScores] | None, names: dict[str, str]
) -> PoolScores:
    """The round's ranking with the cached case scores it was made from (``scores`` None: nothing scored)."""
    cases = [names[r.case_id] for r in ranking]
    table = PoolScores(cases, [r.rank for r in ranking], [compact(r.score) for r in ranking])
    if not scores:
        return table
    rows = [scores[r.case_id] for r in ranking]
    column = lambda values: [compact(v) for v in values]  # noqa: E731
    config = QueryConfig()
    embeddings = np.asarray([s.embedding for s in rows], dtype=np.float64)
    space = centred(embeddings) if config.centre_embeddings else embeddings
    table.knowledge_gap = column(r.knowledge_gap for r in ranking)
    table.asd = column(r.asd for r in ranking)
    table.diversity = column(r.diversity for r in ranking)
    table.mean_entropy = column(s.mean_entropy for s in rows)
    table.confidence = column(s.confidence for s in rows)
    table.class_entropy = column(
        class_stratified_entropy(s.per_class_entropy) if s.per_class_entropy else None for s in rows
    )
    if any(s.epistemic is not None for s in rows):
        table.epistemic = column(s.epistemic for s in rows)
    if embeddings.ndim == 2 and embeddings.shape[1]:
        table.typicality = column(typicality(space, config.typicality_neighbours))
    return table


@dataclass
class GuardOutcome:
    """The guard's decision on a round and the held-out test Dice of what it chose between.

    ``parent_test_dice`` is None where the parent was not evaluated in the run (the benchmark's round 1:
    its parent, the source model, is evaluated once for all runs in ``source-only.json``)."""

    accepted: bool  # the round's version became the active one
    signal: str | None  # what the guard validated on ("held-out", "fit", ...), as the round recorded it
    validation_dice: float | None
    parent_validation_dice: float | None
    candidate_test_dice: float | None
    parent_test_dice: float | None
    held_out: list[str]  # the labelled cases held out of training to validate on
    reason: str | None

    @classmethod
    def from_json(cls, data: dict | None) -> GuardOutcome | None:
        return None if data is None else cls(**data)

    @property
    def validated_better(self) -> bool | None:
        """Whether validation favoured the round (the guard's own rule), whatever was then done."""
        if self.validation_dice is None or self.parent_validation_dice is None:
            return None
        return self.validation_dice >= self.parent_validation_dice


def guard_outcome(
    metrics: dict,
    round_json: dict | None,
    names: dict[str, str],
    candidate_test_dice: float | None,
    parent_test_dice: float | None,
) -> GuardOutcome:
    """The outcome from a version's metrics and its ``round.json`` (case ids named through ``names``): the
    numbers the guard compared where the round recorded its decision, else the version's metrics."""
    guard = (round_json or {}).get("guard") or {}
    return GuardOutcome(
        accepted=bool(metrics.get("accepted", True)),
        signal=guard.get("validation", metrics.get("validation")),
        validation_dice=guard["dice"] if "dice" in guard else metrics.get("val_dice"),
        parent_validation_dice=guard["parent_dice"]
        if "parent_dice" in guard
        else metrics.get("parent_val_dice"),
        candidate_test_dice=candidate_test_dice,
        parent_test_dice=parent_test_dice,
        held_out=[names.get(c, c) for c in (round_json or {}).get("held_out", [])],
        reason=guard.get("reason"),
    )
