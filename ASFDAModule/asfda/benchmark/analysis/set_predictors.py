"""Does any score predict a good labelled set? (issue 18: runs record what the query saw, so this can be
asked.)

Over the random arm's draws, the only sets no score chose, each set property is correlated (Spearman)
with the run's site endpoint on the validation and on the test split. The properties: the mean over the
set's cases of each per-case score the pool had before any fine-tuning (round 1's query scores of a scored
arm: the source model's), and the set's count of each sub-population. A property that predicts the
validation endpoint is one a query could be built on; the test column says whether it would carry over.
Exploratory: many properties against a few dozen draws, so a single p-value near 0.05 means little.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import spearmanr

from ..running.results import RunResult
from .site_statistics import run_site_endpoint

SCORES = ("knowledge_gap", "asd", "typicality", "mean_entropy", "class_entropy", "confidence")
MIN_DRAWS = 8


def source_pool_scores(results: Sequence[RunResult]) -> dict[str, dict[str, float]]:
    """{score: {case: value}} from the first scored run's round 1, where the pool was scored by the source
    model; empty when no run recorded scores."""
    for run in results:
        first = next((r for r in run.records if r.round == 1 and r.query_scores is not None), None)
        if first is None:
            continue
        columns = {name: getattr(first.query_scores, name) for name in SCORES}
        return {
            name: {case: value for case, value in zip(first.query_scores.cases, column) if value is not None}
            for name, column in columns.items()
            if column is not None and any(value is not None for value in column)
        }
    return {}


def set_properties(
    picked: Sequence[str],
    scores: Mapping[str, Mapping[str, float]],
    subpopulation_of: Mapping[str, str],
    subpopulations: Sequence[str],
) -> dict[str, float]:
    """The set's mean of each score over the cases that have it, and its count of each sub-population."""
    properties = {}
    for name, values in scores.items():
        known = [values[case] for case in picked if case in values]
        properties[f"mean {name}"] = float(np.mean(known)) if known else float("nan")
    for subpopulation in subpopulations:
        properties[f"count {subpopulation}"] = float(
            sum(subpopulation_of.get(c) == subpopulation for c in picked)
        )
    return properties


def set_predictors(
    results: Sequence[RunResult], endpoint: int, subpopulation_of: Mapping[str, str], arm: str = "random"
) -> dict | None:
    """Per property: Spearman's rho and p against the validation and the test site endpoint, over the
    ``arm``'s draws; None with fewer than :data:`MIN_DRAWS` draws or no recorded scores."""
    scores = source_pool_scores(results)
    pool = {case for values in scores.values() for case in values}
    subpopulations = sorted({subpopulation_of[case] for case in pool if case in subpopulation_of})
    draws = []
    for run in (r for r in results if r.arm == arm):
        test = run_site_endpoint(run, endpoint, subpopulation_of)
        validation = run_site_endpoint(run, endpoint, subpopulation_of, split="val")
        if test is None or validation is None:
            continue
        picked = [case for r in run.records if r.n_labelled <= endpoint for case in r.picked]
        draws.append((set_properties(picked, scores, subpopulation_of, subpopulations), validation, test))
    if len(draws) < MIN_DRAWS or not scores:
        return None
    endpoints = {
        "validation": [v.subpopulation_mean for _, v, _ in draws],
        "test": [t.subpopulation_mean for _, _, t in draws],
    }
    table = {}
    for name in draws[0][0]:
        values = [properties[name] for properties, _, _ in draws]
        if len(set(values)) < 2 or not np.all(np.isfinite(values)):
            continue
        table[name] = {split: correlation(values, ends) for split, ends in endpoints.items()}
    return {
        "arm": arm,
        "n_draws": len(draws),
        "validation_vs_test": correlation(endpoints["validation"], endpoints["test"]),
        "properties": table,
    }


def correlation(x: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    rho, p = spearmanr(x, y)
    return {"rho": float(rho), "p_value": float(p)}


def set_predictors_markdown(predictors: dict | None) -> list[str]:
    if not predictors:
        return []
    agreement = predictors["validation_vs_test"]
    lines = [
        "",
        f"Does a set property predict the endpoint? Spearman over the {predictors['n_draws']} "
        f"`{predictors['arm']}` draws (exploratory). The two splits' endpoints agree at rho "
        f"{agreement['rho']:+.2f}.",
        "",
        "| set property | rho, validation | p | rho, test | p |",
        "|---|---|---|---|---|",
    ]
    for name, row in predictors["properties"].items():
        v, t = row["validation"], row["test"]
        lines.append(
            f"| {name} | {v['rho']:+.2f} | {v['p_value']:.3f} | {t['rho']:+.2f} | {t['p_value']:.3f} |"
        )
    return lines
