"""The benchmark's tables, areas under the curve, comparisons and plots: pure functions of the run records.

Nothing here runs a model. A finished (strategy, seed) run is a
:class:`~asfda.benchmark.running.results.RunResult`: its round records (round 0 = the source model before
any label) and what its scoring cost. Everything else is computed from a list of them, so the report can be
rebuilt from the saved JSON at any time (``asfda benchmark --report-only``).

Conventions:

- Mean and spread are over seeds: the sample standard deviation (0 with one seed).
- The area under the Dice-versus-budget curve is the trapezoid over the *positions* of the schedule divided
  by their number of intervals, so it is in Dice units and each step of the schedule weighs the same (for
  1, 2, 4, 8 labelled cases: each doubling). A linear budget axis would give the 4 -> 8 interval four
  sevenths of the weight and hide the small budgets where active selection matters most.
- A strategy *wins* against another when its paired difference (same seed, same fine-tuning seed) is
  positive for every seed, *loses* when it is negative for every seed, and *ties* otherwise. With three
  seeds this is a consistency statement, not a significance test.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from ..running.results import ALL_LABELLED, SOURCE_ONLY, RunResult


class Verdict(str, Enum):
    WIN = "win"
    TIE = "tie"
    LOSS = "loss"


@dataclass
class Cell:
    """Mean and spread over seeds of one metric at one budget."""

    mean: float
    sd: float
    n: int

    def format(self, digits: int = 3) -> str:
        if self.n == 0 or math.isnan(self.mean):
            return "n/a"
        return f"{self.mean:.{digits}f} ± {self.sd:.{digits}f}" if self.n > 1 else f"{self.mean:.{digits}f}"


@dataclass
class Comparison:
    """Paired by seed: reference minus baseline, at one budget or over the whole curve (``budget`` None)."""

    baseline: str
    budget: int | None
    differences: list[float]

    @property
    def mean(self) -> float:
        return float(np.mean(self.differences)) if self.differences else float("nan")

    @property
    def verdict(self) -> Verdict:
        return verdict(self.differences)


def cell(values: Iterable[float | None]) -> Cell:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return Cell(float("nan"), float("nan"), 0)
    sd = float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0
    return Cell(float(np.mean(finite)), sd, len(finite))


def normalised_auc(values: Sequence[float]) -> float:
    """Trapezoid area under ``values`` taken at equally spaced schedule positions, over the number of
    intervals: the curve's mean height in the metric's own units (a single point is its own area)."""
    values = [float(v) for v in values]
    if not values or any(not math.isfinite(v) for v in values):
        return float("nan")
    if len(values) == 1:
        return values[0]
    return sum((a + b) / 2 for a, b in zip(values, values[1:])) / (len(values) - 1)


def verdict(differences: Sequence[float]) -> Verdict:
    if differences and all(d > 0 for d in differences):
        return Verdict.WIN
    if differences and all(d < 0 for d in differences):
        return Verdict.LOSS
    return Verdict.TIE


def by_arm(results: Iterable[RunResult]) -> dict[str, list[RunResult]]:
    """Runs grouped by strategy, in first-seen order, each sorted by seed."""
    grouped: dict[str, list[RunResult]] = {}
    for result in results:
        grouped.setdefault(result.arm, []).append(result)
    return {arm: sorted(runs, key=lambda r: r.seed) for arm, runs in grouped.items()}


def dice_at(run: RunResult, n_labelled: int) -> float:
    record = run.at(n_labelled)
    return float("nan") if record is None or record.test_dice is None else float(record.test_dice)


def hd95_at(run: RunResult, n_labelled: int) -> float:
    record = run.at(n_labelled)
    return float("nan") if record is None or record.test_hd95 is None else float(record.test_hd95)


def run_auc(run: RunResult, schedule: Sequence[int]) -> float:
    return normalised_auc([dice_at(run, n) for n in schedule])


def source_only(results: Iterable[RunResult]) -> tuple[Cell, Cell]:
    """Dice and HD95 of the source model: its own run when there is one, else the evaluated round 0s (every
    run starts from the same model)."""
    results = list(results)
    own = [r for r in results if r.arm == SOURCE_ONLY]
    rounds = [r.records[0] for r in (own or results) if r.records and r.records[0].round == 0]
    rounds = [r for r in rounds if r.test_dice is not None]
    return cell(r.test_dice for r in rounds), cell(r.test_hd95 for r in rounds)


def ceiling(results: Iterable[RunResult]) -> tuple[Cell, Cell, int]:
    """Dice, HD95 and labelled count of the all-labelled runs (their last round)."""
    runs = [r for r in results if r.arm == ALL_LABELLED and len(r.records) > 1]
    last = [r.records[-1] for r in runs]
    return (
        cell(r.test_dice for r in last),
        cell(r.test_hd95 for r in last),
        max((r.n_labelled for r in last), default=0),
    )


@dataclass
class Row:
    """One strategy's line of the results table."""

    arm: str
    fine_tuning: str
    dice: dict[int, Cell]
    hd95: dict[int, Cell]
    auc: Cell
    seeds: list[int]


def table_rows(results: Iterable[RunResult], schedule: Sequence[int]) -> list[Row]:
    """A row per strategy (all-labelled excluded: it is a reference point, not a curve)."""
    rows = []
    for arm, runs in by_arm(results).items():
        if arm in (ALL_LABELLED, SOURCE_ONLY):
            continue
        rows.append(
            Row(
                arm,
                runs[0].fine_tuning,
                {n: cell(dice_at(r, n) for r in runs) for n in schedule},
                {n: cell(hd95_at(r, n) for r in runs) for n in schedule},
                cell(run_auc(r, schedule) for r in runs),
                [r.seed for r in runs],
            )
        )
    return rows


def compare(results: Iterable[RunResult], reference: str, schedule: Sequence[int]) -> list[Comparison]:
    """The reference strategy against each other one, paired by seed: one comparison over the whole curve
    (normalised AUC, ``budget`` None) and one at each budget of the schedule."""
    grouped = by_arm(results)
    if reference not in grouped:
        return []
    ours = {r.seed: r for r in grouped[reference]}
    comparisons = []
    for arm, runs in grouped.items():
        if arm in (reference, ALL_LABELLED, SOURCE_ONLY):
            continue
        paired = [(ours[r.seed], r) for r in runs if r.seed in ours]
        comparisons.append(
            Comparison(arm, None, [run_auc(a, schedule) - run_auc(b, schedule) for a, b in paired])
        )
        for n in schedule:
            comparisons.append(Comparison(arm, n, [dice_at(a, n) - dice_at(b, n) for a, b in paired]))
    return comparisons


# -- files --------------------------------------------------------------------------------------------------
def _markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def results_markdown(
    results: list[RunResult],
    schedule: Sequence[int],
    reference: str = "asfda",
    descriptions: dict[str, str] | None = None,
    preamble: str = "",
) -> str:
    """Held-out Dice and HD95 per strategy and budget, the AUC, the reference points and the comparisons."""
    descriptions = descriptions or {}
    rows = table_rows(results, schedule)
    seeds = sorted({s for row in rows for s in row.seeds})
    budgets = [str(n) for n in schedule]
    floor_dice, floor_hd95 = source_only(results)
    top_dice, top_hd95, top_n = ceiling(results)
    parts = [preamble.strip()] if preamble.strip() else []
    parts.append(f"## Held-out Dice by labelled cases (mean ± sd over seeds {', '.join(map(str, seeds))})")
    parts.append(
        _markdown_table(
            ["strategy", "fine-tuning", *budgets, "AUC"],
            (
                [
                    row.arm,
                    row.fine_tuning,
                    *(row.dice[n].format() for n in schedule),
                    f"**{row.auc.format()}**",
                ]
                for row in sorted(rows, key=lambda r: -r.auc.mean if math.isfinite(r.auc.mean) else 0.0)
            ),
        )
    )
    parts.append(
        f"Reference points: **source-only** (no label, round 0) Dice {floor_dice.format()}, "
        f"HD95 {floor_hd95.format(2)} mm; **all-labelled** (all {top_n} pool cases) "
        f"Dice {top_dice.format()}, HD95 {top_hd95.format(2)} mm. "
        f"AUC: trapezoid over the schedule positions ({', '.join(budgets)}), "
        "divided by the number of intervals (mean Dice over the curve)."
    )
    parts.append("## Held-out HD95 (mm) by labelled cases")
    parts.append(
        _markdown_table(
            ["strategy", *budgets], ([row.arm, *(row.hd95[n].format(2) for n in schedule)] for row in rows)
        )
    )
    comparisons = compare(results, reference, schedule)
    if comparisons:
        parts.append(f"## {reference} against each strategy (Dice difference, paired by seed)")
        by_baseline: dict[str, dict[int | None, Comparison]] = {}
        for comparison in comparisons:
            by_baseline.setdefault(comparison.baseline, {})[comparison.budget] = comparison
        parts.append(
            _markdown_table(
                ["strategy", "ΔAUC", *(f"Δ at {n}" for n in schedule), "verdict (AUC)"],
                (
                    [
                        arm,
                        f"{c[None].mean:+.3f}",
                        *(f"{c[n].mean:+.3f} ({c[n].verdict.value})" for n in schedule),
                        c[None].verdict.value,
                    ]
                    for arm, c in by_baseline.items()
                ),
            )
        )
        parts.append("win: better for every seed; loss: worse for every seed; tie: mixed.")
    if descriptions:
        parts.append("## Strategies")
        parts.append("\n".join(f"- **{arm}**: {text}" for arm, text in descriptions.items()))
    return "\n\n".join(parts) + "\n"


def results_csv(results: list[RunResult], schedule: Sequence[int]) -> str:
    """One line per (strategy, budget) plus one per strategy for the AUC (``n_labelled`` = auc), and the
    two reference points (source-only at 0, all-labelled at the pool size)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["strategy", "fine_tuning", "n_labelled", "dice_mean", "dice_sd", "hd95_mean", "hd95_sd", "n_seeds"]
    )

    def number(value: float) -> str:
        return "" if value is None or not math.isfinite(value) else f"{value:.5f}"

    floor_dice, floor_hd95 = source_only(results)
    writer.writerow(
        [
            SOURCE_ONLY,
            "none",
            0,
            number(floor_dice.mean),
            number(floor_dice.sd),
            number(floor_hd95.mean),
            number(floor_hd95.sd),
            floor_dice.n,
        ]
    )
    for row in table_rows(results, schedule):
        for n in schedule:
            writer.writerow(
                [
                    row.arm,
                    row.fine_tuning,
                    n,
                    number(row.dice[n].mean),
                    number(row.dice[n].sd),
                    number(row.hd95[n].mean),
                    number(row.hd95[n].sd),
                    row.dice[n].n,
                ]
            )
        writer.writerow(
            [row.arm, row.fine_tuning, "auc", number(row.auc.mean), number(row.auc.sd), "", "", row.auc.n]
        )
    top_dice, top_hd95, top_n = ceiling(results)
    if top_dice.n:
        writer.writerow(
            [
                ALL_LABELLED,
                "supervised",
                top_n,
                number(top_dice.mean),
                number(top_dice.sd),
                number(top_hd95.mean),
                number(top_hd95.sd),
                top_dice.n,
            ]
        )
    return out.getvalue()


def records_csv(results: list[RunResult]) -> str:
    """Every round of every run, with its scoring cost: the raw numbers behind the tables."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "strategy",
            "seed",
            "round",
            "n_labelled",
            "picked",
            "model_version",
            "test_dice",
            "test_hd95",
            "validation_dice",
            "scoring_seconds",
            "finetune_seconds",
            "volumes_scored",
            "forward_passes",
            "pseudo_labelled",
        ]
    )
    for run in results:
        costs = {c.round: c for c in run.scoring}
        for r in run.records:
            cost = costs.get(r.round)
            writer.writerow(
                [
                    run.arm,
                    run.seed,
                    r.round,
                    r.n_labelled,
                    " ".join(r.picked),
                    r.model_version,
                    r.test_dice,
                    r.test_hd95,
                    r.validation_dice,
                    round(r.scoring_seconds, 3),
                    round(r.finetune_seconds, 3),
                    cost.volumes if cost else "",
                    cost.passes if cost else "",
                    "" if r.pseudo_labelled is None else r.pseudo_labelled,  # not recorded by older runs
                ]
            )
    return out.getvalue()
