"""The site benchmark's statistics: the pre-stated site endpoint (site_endpoint.py) per arm, and the full
method's comparisons made on it. A dataset is a site dataset when its dataset.json gives cases a
``subpopulation`` (run.json's ``case_metadata``); otherwise nothing here applies.

The primary endpoint is a weighted mean over test cases, each case weighing 1 / (sub-populations x its
sub-population's test cases), so the comparison is made on exactly that estimand:

- interval: a two-way bootstrap over seeds and over test cases *within their sub-population*
  (:func:`~asfda.benchmark.analysis.significance.stratified_bootstrap`; hierarchical beside it). The test
  split is stratified by design (the same count of every sub-population) and the sub-populations are fixed,
  named parts of the archive, not a sample of them, so a resample keeps each one's count and weight.
  Resampling whole sub-populations instead would treat nine named modes as draws from a population of modes
  and, with nine of them, give intervals that say more about which modes were drawn than about the arms;
- p_value (test cases as units): a paired sign-flip randomisation test of the weighted mean of the per-case
  differences averaged over seeds (:func:`~asfda.benchmark.analysis.significance.weighted_sign_flip_p`). The
  Wilcoxon signed-rank test ranks cases with equal weight, so it tests the case-weighted estimand; the
  sign-flip test needs no more than the same symmetry under the null and tests the weighted one;
- p_value_seeds (seeds as units): the Wilcoxon signed-rank test on the per-seed differences of the
  endpoint itself (the weighted mean over cases), as for the plain endpoint.

On the site builder's splits every sub-population has the same number of test cases, so the weights are
equal and the case-weighted mean equals the sub-population mean; they part where counts differ (a case
missing from a run, a folder dataset with uneven sub-populations). The worst sub-population is reported
beside it with its per-seed paired difference (descriptive: which mode is worst can change with the arm).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..running.results import ALL_LABELLED, SOURCE_ONLY, RunResult
from .significance import signed_rank_p, stratified_bootstrap, weighted_sign_flip_p
from .site_endpoint import SiteEndpoint, group_by_subpopulation, site_endpoint, subpopulation_weights

PRIMARY = "subpopulation_mean"


def site_subpopulations(run_info: Mapping) -> dict[str, str]:
    """{case: sub-population} from run.json's case metadata; empty when the dataset has none (not a site)."""
    metadata = run_info.get("case_metadata") or {}
    return {name: m["subpopulation"] for name, m in metadata.items() if (m or {}).get("subpopulation")}


def endpoint_record(run: RunResult, endpoint: int):
    """The record scored at the endpoint: the source model's round 0 and the ceiling's last round stand
    for every budget."""
    if run.arm in (SOURCE_ONLY, ALL_LABELLED):
        return run.records[-1] if run.records else None
    return run.at(endpoint)


def run_site_endpoint(
    run: RunResult, endpoint: int, subpopulation_of: Mapping[str, str], split: str = "test"
) -> SiteEndpoint | None:
    """The site endpoint of a run on the test split, or with ``split="val"`` on the validation split (what a
    query is chosen by); None where that split has no Dice."""
    record = endpoint_record(run, endpoint)
    if record is None:
        return None
    values = record.per_case_dice if split == "test" else record.validation_split_dice
    return site_endpoint(values, subpopulation_of) if values else None


def arm_site_endpoints(
    results: Sequence[RunResult], endpoint: int, subpopulation_of: Mapping[str, str]
) -> dict[str, dict]:
    """Per arm, over its seeds: the sub-population mean (primary; mean and sd), the case-weighted mean, each
    sub-population's mean Dice and the worst of those, each seed's primary endpoint, and the primary
    endpoint's metric on the validation split (the only split a choice between arms may read)."""
    table: dict[str, dict] = {}
    for arm in dict.fromkeys(r.arm for r in results):
        runs = [r for r in results if r.arm == arm]
        scored = [(r.seed, run_site_endpoint(r, endpoint, subpopulation_of)) for r in runs]
        scored = [(seed, e) for seed, e in scored if e is not None]
        validation = [run_site_endpoint(r, endpoint, subpopulation_of, split="val") for r in runs]
        validation = [e.subpopulation_mean for e in validation if e is not None]
        if not scored:
            continue
        primary = [e.subpopulation_mean for _, e in scored]
        per_subpopulation = {
            name: float(np.mean([e.per_subpopulation[name] for _, e in scored]))
            for name in scored[0][1].per_subpopulation
        }
        worst = min(per_subpopulation, key=lambda name: (per_subpopulation[name], name))
        table[arm] = {
            PRIMARY: float(np.mean(primary)),
            "subpopulation_mean_sd": float(np.std(primary, ddof=1)) if len(primary) > 1 else None,
            "case_weighted_mean": float(np.mean([e.case_weighted_mean for _, e in scored])),
            "worst_subpopulation": worst,
            "worst_dice": per_subpopulation[worst],
            "per_subpopulation": per_subpopulation,
            "n_runs": len(scored),
            "per_seed": {str(seed): e.subpopulation_mean for seed, e in scored},
            "validation_subpopulation_mean": float(np.mean(validation)) if validation else None,
        }
    return table


def paired_cases(
    results: Sequence[RunResult], arm: str, baseline: str, endpoint: int
) -> tuple[list[int], list[str], np.ndarray]:
    """(seeds, test cases, seeds x cases Dice of ``arm`` minus ``baseline``) on what both have."""

    def table(name: str) -> dict[int, dict[str, float]]:
        records = {r.seed: r.at(endpoint) for r in results if r.arm == name}
        return {seed: dict(rec.per_case_dice) for seed, rec in records.items() if rec and rec.per_case_dice}

    a, b = table(arm), table(baseline)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return [], [], np.zeros((0, 0))
    cases = sorted(set.intersection(*(set(a[s]) & set(b[s]) for s in seeds)))
    return seeds, cases, np.array([[a[s][c] - b[s][c] for c in cases] for s in seeds], dtype=np.float64)


def site_compare(
    results: Sequence[RunResult], arm: str, baseline: str, endpoint: int, subpopulation_of: Mapping[str, str]
) -> dict:
    """``arm`` minus ``baseline`` on the sub-population mean, paired by seed and test case (module doc)."""
    seeds, cases, matrix = paired_cases(results, arm, baseline, endpoint)
    comparison = {
        "strategy": baseline,
        "endpoint": PRIMARY,
        "n_seeds": len(seeds),
        "n_test_cases": len(cases),
    }
    if not seeds or not cases:
        nan = float("nan")
        keys = ("difference", "ci_low", "ci_high", "ci_hierarchical_low", "ci_hierarchical_high")
        return {**comparison, **dict.fromkeys(keys, nan), "p_value": nan, "p_value_seeds": nan}
    groups = group_by_subpopulation(cases, subpopulation_of)
    strata = [[cases.index(c) for c in members] for _, members in sorted(groups.items())]
    weights = subpopulation_weights(cases, subpopulation_of)
    w = np.array([weights[c] for c in cases])
    difference, low, high = stratified_bootstrap(matrix, strata)
    _, nested_low, nested_high = stratified_bootstrap(matrix, strata, nested=True)
    worst = [
        run_worst(results, arm, seed, endpoint, subpopulation_of)
        - run_worst(results, baseline, seed, endpoint, subpopulation_of)
        for seed in seeds
    ]
    return {
        **comparison,
        "difference": difference,
        "ci_low": low,
        "ci_high": high,
        "ci_hierarchical_low": nested_low,
        "ci_hierarchical_high": nested_high,
        "p_value": weighted_sign_flip_p(matrix.mean(axis=0), w),
        "p_value_seeds": signed_rank_p(matrix @ w),
        "case_weighted_difference": float(matrix.mean()),
        "worst_difference": float(np.mean(worst)),
        "worst_p_value_seeds": signed_rank_p(np.array(worst)),
        "n_subpopulations": len(strata),
    }


def run_worst(
    results: Sequence[RunResult], arm: str, seed: int, endpoint: int, subpopulation_of: Mapping[str, str]
) -> float:
    run = next(r for r in results if r.arm == arm and r.seed == seed)
    return run_site_endpoint(run, endpoint, subpopulation_of).worst_dice


def site_markdown(summary: dict) -> list[str]:
    """statistics.md's table of the site endpoint per arm (each sub-population a column) and the worst
    sub-population's paired differences."""
    arms = (summary.get("site") or {}).get("arms")
    if not arms:
        return []
    names = list(next(iter(arms.values()))["per_subpopulation"])
    lines = [
        "",
        "Site endpoint per arm (means over seeds): the sub-population mean (primary), the case-weighted "
        "mean, the worst sub-population, and each sub-population's mean test Dice.",
        "",
        "| arm | sub-population mean (± sd) | case-weighted | worst | " + " | ".join(names) + " | runs | "
        "validation sub-population mean |",
        "|---|---|---|---|" + "---|" * len(names) + "---|---|",
    ]
    for arm, a in arms.items():
        sd = "" if a["subpopulation_mean_sd"] is None else f" ± {a['subpopulation_mean_sd']:.4f}"
        cells = " | ".join(f"{a['per_subpopulation'].get(n, float('nan')):.3f}" for n in names)
        validation = a.get("validation_subpopulation_mean")
        lines.append(
            f"| {arm} | {a[PRIMARY]:.4f}{sd} | {a['case_weighted_mean']:.4f} | "
            f"{a['worst_subpopulation']} {a['worst_dice']:.3f} | {cells} | {a['n_runs']} | "
            f"{'n/a' if validation is None else f'{validation:.4f}'} |"
        )
    worst = [c for c in summary.get("comparisons", []) if "worst_difference" in c]
    if worst:
        lines += [
            "",
            "Worst sub-population, ASFDA minus each arm (paired by seed; Wilcoxon over seeds): "
            + "; ".join(
                f"{c['strategy']} {c['worst_difference']:+.4f} (p {c['worst_p_value_seeds']:.3g})"
                for c in worst
            )
            + ".",
        ]
    return lines
