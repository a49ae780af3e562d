"""The edit-effort benchmark's arithmetic: pure functions from per-case records to the summary and verdict.

A record is one query case's starting segmentations at one labelled budget in one seed: the Dice of the
model's prediction, of each proposal and of the one served (what ``choose_proposal`` picks). Comparisons pair
by seed and query case (the queries are the same cases in every seed), kind minus the model, with the
benchmark's intervals and tests (``significance.py``). A pair is cross-anatomy when no labelled case shares
the query's anatomy: registration between two cases drawn from one template is easier than a site's patients.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum

import numpy as np

from ..analysis.significance import hierarchical_bootstrap, paired_bootstrap, wilcoxon_p, wilcoxon_seeds_p

MODEL = "model"
SERVED = "served"
# What the leave-one-out predicts a labelled case with (a run's "leave_one_out")
CORRECTED_FROM = "corrected_from"
FITTED = "fitted"
LEAVE_ONE_OUT = {
    CORRECTED_FROM: "each labelled case predicted by the model before it was labelled, as the product does",
    FITTED: "each labelled case predicted by the model at the budget, fine-tuned on it (flatters the model)",
}


class PairSet(str, Enum):
    """Which (seed, query case) pairs a comparison pools."""

    ALL = "all"
    CROSS_ANATOMY = "cross_anatomy"  # no labelled case from the query's anatomy
    SAME_ANATOMY = "same_anatomy"  # at least one labelled case from the query's anatomy


@dataclass(frozen=True)
class EffortRecord:
    seed: int
    budget: int  # labelled cases
    case: str  # the query case
    anatomy: str
    support_anatomies: tuple[str, ...]  # the labelled cases' anatomies
    served: str  # the kind served
    dice: dict[str, float] = field(default_factory=dict)  # by kind: model, proposals, served

    @classmethod
    def from_json(cls, data: dict) -> EffortRecord:
        return cls(**{**data, "support_anatomies": tuple(data["support_anatomies"])})

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Target:
    """The issue's target: a proposal worth serving saves edits where few cases are labelled, and the
    served segmentation is never worse than the model's at any budget."""

    gain_budgets: tuple[int, ...] = (1, 2)
    gain: float = 0.10  # served - model, mean Dice, with the interval above 0
    max_loss: float = 0.01  # upper bound of the interval of model - served, at every budget


TARGET = Target()


def cross_anatomy(record: EffortRecord) -> bool:
    return bool(record.support_anatomies) and record.anatomy not in record.support_anatomies


def in_pair_set(record: EffortRecord, pairs: PairSet) -> bool:
    if pairs is PairSet.ALL:
        return True
    if not record.support_anatomies:
        return False  # nothing labelled: no pair of anatomies
    return cross_anatomy(record) == (pairs is PairSet.CROSS_ANATOMY)


def difference_matrix(
    records: Iterable[EffortRecord], budget: int, kind: str, pairs: PairSet = PairSet.ALL
) -> tuple[np.ndarray, list[int], list[str]]:
    """(seeds x query cases) of kind - model Dice at ``budget``: the query cases that are in ``pairs`` in
    every seed (a rectangle, as the paired tests need); a seed missing one of them is left out."""
    cells: dict[tuple[int, str], float] = {}
    for record in records:
        if record.budget == budget and in_pair_set(record, pairs) and kind in record.dice:
            value = record.dice[kind] - record.dice[MODEL]
            if not math.isnan(value):
                cells[record.seed, record.case] = value
    seeds = sorted({s for s, _ in cells})
    cases = sorted({c for _, c in cells})
    cases = [c for c in cases if all((s, c) in cells for s in seeds)]
    seeds = [s for s in seeds if cases and all((s, c) in cells for c in cases)]
    matrix = np.array([[cells[s, c] for c in cases] for s in seeds], dtype=np.float64)
    return matrix.reshape(len(seeds), len(cases)), seeds, cases


def mean_dice(records: Iterable[EffortRecord], budget: int, kind: str, pairs: PairSet) -> float:
    values = [
        r.dice[kind]
        for r in records
        if r.budget == budget and in_pair_set(r, pairs) and not math.isnan(r.dice.get(kind, math.nan))
    ]
    return float(np.mean(values)) if values else math.nan


def comparison(records: Sequence[EffortRecord], budget: int, kind: str, pairs: PairSet) -> dict:
    """Mean Dice of ``kind`` and the model, and kind - model with its intervals and p-values."""
    matrix, seeds, cases = difference_matrix(records, budget, kind, pairs)
    mean, low, high = paired_bootstrap(matrix)
    _, hier_low, hier_high = hierarchical_bootstrap(matrix)
    return {
        "dice": mean_dice(records, budget, kind, pairs),
        "model_dice": mean_dice(records, budget, MODEL, pairs),
        "difference": mean,
        "ci": [low, high],  # seeds and cases resampled, crossed: the verdict's interval
        "ci_hierarchical": [hier_low, hier_high],
        "p_cases": wilcoxon_p(matrix) if matrix.size else math.nan,
        "p_seeds": wilcoxon_seeds_p(matrix) if len(seeds) > 1 else math.nan,
        "seeds": len(seeds),
        "query_cases": len(cases),
    }


def served_counts(records: Iterable[EffortRecord], budget: int) -> dict[str, int]:
    """How many seeds served each kind at ``budget`` (one choice a seed and budget)."""
    chosen = {(r.seed, r.served) for r in records if r.budget == budget}
    counts: dict[str, int] = {}
    for _, kind in chosen:
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def verdict(served_vs_model: dict[int, dict], target: Target = TARGET) -> dict:
    """The target met or not, with a reason for each budget that misses it (``served_vs_model``: the
    comparison of the served kind over all pairs, by budget)."""
    misses = []
    for budget in target.gain_budgets:
        result = served_vs_model.get(budget)
        if result is None or math.isnan(result["difference"]):
            misses.append(f"{budget} labelled: not measured")
            continue
        low = result["ci"][0]
        if result["difference"] < target.gain or not low > 0:
            misses.append(
                f"{budget} labelled: served - model {100 * result['difference']:+.1f} points "
                f"(CI low {100 * low:+.1f}); the target is >= {100 * target.gain:+.0f} with the CI above 0"
            )
    for budget, result in sorted(served_vs_model.items()):
        loss_bound = -result["ci"][0]
        if math.isnan(loss_bound) or loss_bound >= target.max_loss:
            misses.append(
                f"{budget} labelled: the loss against the model may reach {100 * loss_bound:.1f} points "
                f"(the target: under {100 * target.max_loss:.0f})"
            )
    return {"met": not misses, "misses": misses, "target": asdict(target)}


def summarize(records: Sequence[EffortRecord], kinds: Sequence[str], target: Target = TARGET) -> dict:
    """Per budget, per pair set and kind: mean Dice and the paired comparison with the model."""
    budgets = sorted({r.budget for r in records})
    summary: dict = {"budgets": {}, "seeds": sorted({r.seed for r in records})}
    for budget in budgets:
        by_pairs = {}
        for pairs in PairSet:
            by_kind = {kind: comparison(records, budget, kind, pairs) for kind in (MODEL, *kinds, SERVED)}
            if any(v["query_cases"] for v in by_kind.values()):
                by_pairs[pairs.value] = by_kind
        summary["budgets"][str(budget)] = {"pairs": by_pairs, "served": served_counts(records, budget)}
    summary["verdict"] = verdict(
        {b: summary["budgets"][str(b)]["pairs"][PairSet.ALL.value][SERVED] for b in budgets}, target
    )
    return summary


def results_markdown(summary: dict, kinds: Sequence[str]) -> str:
    """The summary as tables: Dice of the starting segmentation, and each kind minus the model."""
    lines = ["# Edit effort: Dice of the starting segmentation", ""]
    lines.append(
        f"Seeds: {summary['seeds']}. Differences are kind - model, 95 % CI (seeds x cases, crossed)."
    )
    for kind in summary.get("leave_one_out", ()):
        lines.append(f"The served start's leave-one-out: {LEAVE_ONE_OUT.get(kind, kind)}.")
    for pairs in PairSet:
        rows = []
        for budget, entry in summary["budgets"].items():
            for kind, result in entry["pairs"].get(pairs.value, {}).items():
                if not result["query_cases"] and kind != MODEL:
                    continue
                difference = (
                    ""
                    if kind == MODEL
                    else f"{100 * result['difference']:+.1f} [{100 * result['ci'][0]:+.1f}, "
                    f"{100 * result['ci'][1]:+.1f}]"
                )
                rows.append(
                    f"| {budget} | {kind} | {result['dice']:.3f} | {difference} | "
                    f"{_p(result['p_cases'])} | {_p(result['p_seeds'])} | {result['seeds']} x "
                    f"{result['query_cases']} |"
                )
        if not rows:
            continue
        lines += ["", f"## Pairs: {pairs.value.replace('_', ' ')}", ""]
        lines.append("| labelled | start | Dice | - model (points) | p cases | p seeds | seeds x cases |")
        lines.append("|---|---|---|---|---|---|---|")
        lines += rows
    lines += ["", "## Served", ""]
    for budget, entry in summary["budgets"].items():
        served = ", ".join(f"{k} {n}" for k, n in sorted(entry["served"].items()))
        lines.append(f"- {budget} labelled: {served} (seeds)")
    result = summary["verdict"]
    lines += ["", f"## Target: {'met' if result['met'] else 'not met'}", ""]
    lines += [f"- {miss}" for miss in result["misses"]] or ["- every budget within the target"]
    return "\n".join(lines) + "\n"


def _p(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3g}"
