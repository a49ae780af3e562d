"""Headroom: how far a choice of cases can move the endpoint, and how much of that each arm captures.

Descriptive, never used to choose anything. Three reference points at the endpoint, on the endpoint's own
metric (the sub-population mean on a site dataset, the plain mean test Dice otherwise):

- random over all its draws: the mean, the 5 / 25 / 50 / 75 / 95 % quantiles and the best draw;
- the oracle: the labelled set found by greedy forward search on the *validation* split (oracle.py), one
  round of the full method's fine-tuning from the source model on it, scored on test;
- the all-labelled ceiling, with the same training compute as an arm's whole schedule.

Per arm, the share of the headroom it captures: (arm - random mean) / (oracle - random mean), and the same
against the ceiling. A share is None where the reference is not above random's mean (no headroom to share).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..running.results import ALL_LABELLED, SOURCE_ONLY, RunResult
from .site_endpoint import site_endpoint

TARGET_POINTS = 0.03  # the target: ASFDA >= random + 3 Dice points with the interval above zero
QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
ORACLE = "oracle"


def endpoint_value(record, subpopulation_of: Mapping[str, str] | None = None) -> float | None:
    """The endpoint's metric of one round: the sub-population mean on a site dataset, else the test Dice."""
    if record is None:
        return None
    if subpopulation_of:
        return (
            site_endpoint(record.per_case_dice, subpopulation_of).subpopulation_mean
            if record.per_case_dice
            else None
        )
    return record.test_dice


def captured_share(value: float | None, random_mean: float, reference: float | None) -> float | None:
    """(value - random mean) / (reference - random mean); None without a reference above random's mean."""
    if value is None or reference is None or reference - random_mean <= 0:
        return None
    return float((value - random_mean) / (reference - random_mean))


def mean_or_none(values: Sequence[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def oracle_summary(oracle: Sequence[RunResult], endpoint: int, subpopulation_of) -> dict | None:
    runs = [r for r in oracle if r.at(endpoint) is not None]
    if not runs:
        return None
    records = [r.at(endpoint) for r in runs]
    validation = [np.mean(list(r.validation_split_dice.values())) for r in records if r.validation_split_dice]
    return {
        "dice": mean_or_none([endpoint_value(r, subpopulation_of) for r in records]),
        "validation_dice": mean_or_none(validation),
        "n_runs": len(runs),
        "picked_by_seed": {  # the whole set at the endpoint: a record's picks are only its round's
            str(run.seed): [name for rec in run.records if rec.n_labelled <= endpoint for name in rec.picked]
            for run in runs
        },
    }


def headroom(
    results: Sequence[RunResult],
    endpoint: int,
    ceiling_steps: int | None = None,
    oracle: Sequence[RunResult] = (),
    subpopulation_of: Mapping[str, str] | None = None,
) -> dict | None:
    """summary.json's ``headroom``: random's spread over all its draws, random at the next budget (what more
    labels gave), the oracle and the ceiling, and each arm's captured share; None with under 2 draws."""
    value = lambda record: endpoint_value(record, subpopulation_of)  # noqa: E731
    draws = [value(run.at(endpoint)) for run in results if run.arm == "random"]
    dice = np.array([d for d in draws if d is not None], dtype=np.float64)
    if dice.size < 2:
        return None
    random_records = [r for run in results if run.arm == "random" for r in run.records]
    following = min((r.n_labelled for r in random_records if r.n_labelled > endpoint), default=None)
    next_dice = mean_or_none([value(r) for r in random_records if r.n_labelled == following])
    ceiling = mean_or_none(
        [value(run.records[-1]) for run in results if run.arm == ALL_LABELLED and run.records]
    )
    mean = float(dice.mean())
    top = oracle_summary(oracle, endpoint, subpopulation_of)
    arms = {}
    for name in dict.fromkeys(r.arm for r in results):
        if name in (SOURCE_ONLY, ALL_LABELLED):
            continue
        at = mean_or_none([value(r.at(endpoint)) for r in results if r.arm == name])
        arms[name] = {
            "dice": at,
            "share_of_oracle": captured_share(at, mean, top and top["dice"]),
            "share_of_ceiling": captured_share(at, mean, ceiling),
        }
    return {
        "metric": "sub-population mean test Dice" if subpopulation_of else "mean test Dice",
        "random_draws": int(dice.size),
        "random_mean": mean,
        "random_quantiles": {str(q): float(np.quantile(dice, q)) for q in QUANTILES},
        "random_best": float(dice.max()),
        "best_draw_gain": float(dice.max() - mean),
        "target_dice": mean + TARGET_POINTS,
        "next_budget": following,
        "random_at_next_budget": next_dice,
        "oracle": top,
        "all_labelled": ceiling,
        "all_labelled_steps": ceiling_steps if ceiling is not None else None,
        "arms": arms,
    }


def headroom_markdown(room: dict | None, endpoint: int) -> list[str]:
    if not room:
        return []
    q = room["random_quantiles"]
    spread = " / ".join(f"{q[str(p)]:.4f}" for p in (0.05, 0.25, 0.5, 0.75, 0.95))
    text = (
        f"How much the choice of cases moved the endpoint in this run (descriptive, {room['metric']}): "
        f"random's {room['random_draws']} draws at {endpoint} labelled cases score {room['random_mean']:.4f} "
        f"on average (5 / 25 / 50 / 75 / 95 % quantiles {spread}); the best draw scores "
        f"{room['random_best']:.4f}, {room['best_draw_gain']:+.4f} above the mean, against the target's "
        f"{room['target_dice']:.4f}."
    )
    if room["random_at_next_budget"] is not None:
        later, gain = room["random_at_next_budget"], room["random_at_next_budget"] - room["random_mean"]
        text += f" Random at {room['next_budget']} labelled cases: {later:.4f} ({gain:+.4f})."
    oracle = room.get("oracle")
    if oracle and oracle["dice"] is not None:
        text += (
            f" The oracle's set (greedy forward search on the validation split, {oracle['n_runs']} run(s)): "
            f"{oracle['dice']:.4f}."
        )
    if room["all_labelled"] is not None:
        steps = f" ({room['all_labelled_steps']} steps)" if room.get("all_labelled_steps") else ""
        text += f" All pool cases labelled{steps}: {room['all_labelled']:.4f}."
    lines = ["", text]
    if room.get("arms"):
        share = lambda v: "n/a" if v is None else f"{100 * v:.0f} %"  # noqa: E731
        lines += [
            "",
            "| arm | at the endpoint | share of the oracle's headroom | share of the ceiling's headroom |",
            "|---|---|---|---|",
        ]
        for name, a in room["arms"].items():
            at = "n/a" if a["dice"] is None else f"{a['dice']:.4f}"
            lines.append(
                f"| {name} | {at} | {share(a['share_of_oracle'])} | {share(a['share_of_ceiling'])} |"
            )
        lines += ["", "Share: (arm - random's mean over all draws) / (reference - random's mean)."]
    return lines
