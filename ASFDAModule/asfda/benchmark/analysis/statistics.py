"""The benchmark's statistics: the pre-stated endpoint (Dice at 10 % of the pool labelled), paired by seed
and test case; for the full method against each baseline and against its supervised twin, bootstrap
confidence intervals and p-values over test cases and over seeds (the tests: significance.py); random over
all its draws; the guard's record (guard.py) and the training noise (training_noise.py); ``summary.json``
for machines.

Paired units: seed k of every arm shares the fine-tuning seed, and every arm is evaluated on the same test
cases, so the difference is taken per (seed, case). ci_low/ci_high: a two-way bootstrap that resamples seeds
and cases independently (both are random draws the conclusion should survive); ci_hierarchical_low/high:
seeds resampled, then test cases within each resampled seed. p_value: Wilcoxon signed-rank test on the
per-case differences averaged over seeds (the test cases as units); p_value_seeds: Wilcoxon signed-rank test
on the per-seed differences averaged over cases (the seeds, the unit of replication, as units; exact
two-sided, so 8 seeds cannot go below p = 0.0078). Random's extra draws have no partner: random_all_draws
compares with the mean over every draw, unpaired (compare_all_draws).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..running.arms import DEFAULT_QUERY, FULL_METHOD, LEGACY_FINE_TUNING, SSL_SETTINGS, SUPERVISED
from ..running.results import ALL_LABELLED, SOURCE_ONLY, RunResult
from ..running.training_noise import load_noise_runs, training_noise_markdown, training_noise_summary
from .guard_outcomes import guard_markdown, guard_summary, guarded_rounds, source_dice
from .headroom import TARGET_POINTS, headroom, headroom_markdown
from .set_predictors import set_predictors, set_predictors_markdown
from .significance import (
    draws_bootstrap,
    hierarchical_bootstrap,
    mann_whitney_p,
    paired_bootstrap,
    wilcoxon_p,
    wilcoxon_seeds_p,
)
from .site_picks import picks_by_subpopulation, picks_markdown, pool_prevalence
from .site_statistics import arm_site_endpoints, site_compare, site_markdown, site_subpopulations

__all__ = ["TARGET_POINTS", "headroom", "headroom_markdown"]  # re-exported: they live in headroom.py


def record_at(run: RunResult, n_labelled: int):
    return next((r for r in run.records if r.n_labelled == n_labelled), None)


def per_case(results: Sequence[RunResult], arm: str, n_labelled: int, split: str = "test") -> dict[int, dict]:
    """seed -> {case: Dice} of ``arm`` at ``n_labelled`` (the validation split with ``split="val"``)."""
    table = {}
    for run in results:
        record = record_at(run, n_labelled) if run.arm == arm else None
        if record is not None:
            values = record.per_case_dice if split == "test" else record.validation_split_dice
            if values:
                table[run.seed] = dict(values)
    return table


def paired_matrix(results: Sequence[RunResult], arm: str, baseline: str, n_labelled: int) -> np.ndarray:
    """(seeds x cases) Dice of ``arm`` minus ``baseline`` on the seeds and cases both have."""
    a, b = per_case(results, arm, n_labelled), per_case(results, baseline, n_labelled)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return np.zeros((0, 0))
    cases = sorted(set.intersection(*(set(a[s]) & set(b[s]) for s in seeds)))
    return np.array([[a[s][c] - b[s][c] for c in cases] for s in seeds], dtype=np.float64)


def compare(results: Sequence[RunResult], arm: str, baseline: str, n_labelled: int) -> dict:
    matrix = paired_matrix(results, arm, baseline, n_labelled)
    difference, low, high = paired_bootstrap(matrix)
    _, nested_low, nested_high = hierarchical_bootstrap(matrix)
    return {
        "strategy": baseline,
        "difference": difference,
        "ci_low": low,
        "ci_high": high,
        "ci_hierarchical_low": nested_low,
        "ci_hierarchical_high": nested_high,
        "p_value": wilcoxon_p(matrix),
        "p_value_seeds": wilcoxon_seeds_p(matrix),
        "n_seeds": int(matrix.shape[0]),
        "n_test_cases": int(matrix.shape[1]) if matrix.ndim == 2 else 0,
    }


def unpaired_matrices(
    results: Sequence[RunResult], arm: str, reference: str, n_labelled: int
) -> tuple[np.ndarray, np.ndarray]:
    """(runs x cases) Dice of ``arm`` and of every run of ``reference``, on the cases all of them have."""
    a, b = per_case(results, arm, n_labelled), per_case(results, reference, n_labelled)
    if not a or not b:
        return np.zeros((0, 0)), np.zeros((0, 0))
    cases = sorted(set.intersection(*(set(t) for t in (*a.values(), *b.values()))))
    matrix = lambda table: np.array([[table[s][c] for c in cases] for s in sorted(table)])  # noqa: E731
    return matrix(a), matrix(b)


def compare_all_draws(results: Sequence[RunResult], arm: str, reference: str, n_labelled: int) -> dict | None:
    """``arm`` against the mean over *every* draw of ``reference`` (random's extra seeds have no partner).

    The interval resamples the arm's seeds and the reference's draws independently and the test cases once
    for both (:func:`draws_bootstrap`); ``p_value`` is the Wilcoxon test on the per-case differences (the
    arm's mean over seeds minus the reference's mean over draws), ``p_value_seeds`` the Mann-Whitney U test
    between the arm's per-seed and the reference's per-draw mean Dice."""
    a, b = unpaired_matrices(results, arm, reference, n_labelled)
    if a.size == 0 or b.size == 0:
        return None
    difference, low, high = draws_bootstrap(a, b)
    return {
        "strategy": reference,
        "difference": difference,
        "ci_low": low,
        "ci_high": high,
        "p_value": wilcoxon_p(a.mean(axis=0, keepdims=True) - b.mean(axis=0, keepdims=True)),
        "p_value_seeds": mann_whitney_p(a.mean(axis=1), b.mean(axis=1)),
        "n_seeds": int(a.shape[0]),
        "n_draws": int(b.shape[0]),
        "n_test_cases": int(a.shape[1]),
        "method": (
            f"unpaired: {arm}'s {a.shape[0]} seeds against the mean of all {b.shape[0]} {reference} draws; "
            "bootstrap resampling each arm's runs on its own and the test cases once for both; Wilcoxon "
            "signed-rank over the per-case differences of the means; Mann-Whitney U over the runs' mean Dice"
        ),
    }


def choose_by_validation(
    results: Sequence[RunResult], candidates: Sequence[str], n_labelled: int | None = None
) -> tuple[str, dict[str, float]]:
    """The candidate with the best mean validation-split Dice at ``n_labelled`` (default: each run's last
    round); ties go to the earlier candidate. Never reads the test set."""
    table: dict[str, float] = {}
    for name in candidates:
        values = []
        for run in results:
            if run.arm != name or not run.records:
                continue
            record = record_at(run, n_labelled) if n_labelled is not None else run.records[-1]
            if record is not None and record.validation_split_dice:
                values.append(float(np.mean(list(record.validation_split_dice.values()))))
        if values:
            table[name] = round(float(np.mean(values)), 4)
    if not table:
        raise ValueError("no candidate has validation-split Dice: the dataset needs a val split")
    best = max(table, key=lambda name: (table[name], -list(candidates).index(name)))
    return best, table


def arm_summary(results: Sequence[RunResult], n_labelled: int) -> dict[str, dict]:
    summary: dict[str, dict] = {}
    for name in dict.fromkeys(r.arm for r in results):
        runs = [r for r in results if r.arm == name]
        at = [
            record_at(r, n_labelled if name not in (SOURCE_ONLY, ALL_LABELLED) else r.records[-1].n_labelled)
            for r in runs
        ]
        at = [a for a in at if a is not None]
        dice = [a.test_dice for a in at if a.test_dice is not None]
        hd95 = [a.test_hd95 for a in at if a.test_hd95 is not None]
        val = [float(np.mean(list(a.validation_split_dice.values()))) for a in at if a.validation_split_dice]
        pseudo = [[rec.pseudo_labelled for rec in r.records[1:]] for r in runs]
        summary[name] = {
            "dice_mean": float(np.mean(dice)) if dice else None,
            "dice_sd": float(np.std(dice, ddof=1)) if len(dice) > 1 else None,
            "hd95_mean": float(np.nanmean(hd95)) if hd95 else None,
            "validation_dice_mean": float(np.mean(val)) if val else None,
            "n_runs": len(at),
            "pseudo_labelled_per_round_by_seed": pseudo,
        }
    return summary


def picked_kinds(results: Sequence[RunResult], metadata: dict[str, dict]) -> dict[str, dict[str, int]]:
    """Per arm, how many picks (over seeds and rounds) had each protocol trait."""
    kinds: dict[str, dict[str, int]] = {}
    for run in results:
        counter = Counter()
        for record in run.records:
            for name in record.picked:
                protocol = (metadata.get(name) or {}).get("protocol")
                if not protocol:
                    continue
                counter[protocol["contrast"]] += 1
                counter["skull-stripped" if protocol["skull_stripped"] else "with skull"] += 1
                counter[">= 4 mm slices" if protocol["slice_thickness_mm"] >= 4 else "< 4 mm slices"] += 1
                counter["partial FOV"] += int(protocol["fov_kept"] < 1.0)
                counter["motion"] += int(protocol["ghost"] > 0)
        if counter:
            kinds.setdefault(run.arm, Counter()).update(counter)
    return {arm: dict(sorted(c.items())) for arm, c in kinds.items()}


def semi_supervised_pair(arms: Sequence[str], full: dict) -> tuple[str, str] | None:
    """(semi-supervised arm, its supervised twin: the same query's picks, fine-tuned supervised).

    A semi-supervised full method pairs with its query's arm; a supervised one is itself the twin of the
    semi-supervised arms, which follow the default query's picks."""
    query = full.get("query")
    if full.get("fine_tuning", LEGACY_FINE_TUNING) != SUPERVISED:
        return (FULL_METHOD, query) if FULL_METHOD in arms and query in arms else None
    semi = next((a for a in arms if a in SSL_SETTINGS), None)
    twin = DEFAULT_QUERY if DEFAULT_QUERY in arms else FULL_METHOD if query == DEFAULT_QUERY else None
    return (semi, twin) if semi and twin in arms else None


def summarise(
    results: Sequence[RunResult],
    endpoint: int,
    run_info: dict,
    noise: Sequence[RunResult] = (),
    oracle: Sequence[RunResult] = (),
) -> dict:
    """summary.json: ``noise`` are the training-noise runs (training_noise.py), ``oracle`` the oracle's
    (oracle.py), both kept apart from the arms. On a site dataset the comparisons are made on the site
    endpoint (site_statistics.py) and the plain mean's are kept as ``site.comparisons_case_weighted``."""
    arms = [a for a in dict.fromkeys(r.arm for r in results) if a not in (SOURCE_ONLY, ALL_LABELLED)]
    full = run_info.get("full_method") or {}
    baselines = [a for a in arms if a != FULL_METHOD] if FULL_METHOD in arms else []
    subpopulation_of = site_subpopulations(run_info)
    comparisons = [compare(results, FULL_METHOD, b, endpoint) for b in baselines]
    site = None
    if subpopulation_of:
        site = {
            "arms": arm_site_endpoints(results, endpoint, subpopulation_of),
            "comparisons_case_weighted": comparisons,
            "picks": picks_by_subpopulation(results, subpopulation_of),
            "pool_prevalence": pool_prevalence(run_info.get("case_metadata") or {}),
            "set_predictors": set_predictors(results, endpoint, subpopulation_of),
        }
        comparisons = [site_compare(results, FULL_METHOD, b, endpoint, subpopulation_of) for b in baselines]
    random = next((c for c in comparisons if c["strategy"] == "random"), None)
    config = run_info.get("config") or {}
    semi = None
    pair = semi_supervised_pair(arms, full)
    if pair is not None:
        semi = {"arm": pair[0], **compare(results, *pair, endpoint)}
        semi["pseudo_labelled_per_round_by_seed"] = [
            [rec.pseudo_labelled for rec in r.records[1:]] for r in results if r.arm == pair[0]
        ]
    metric = (
        "mean over sub-populations of their mean test Dice"
        if site
        else "mean foreground Dice on the test split"
    )
    return {
        "endpoint": {
            "n_labelled": endpoint,
            "percent_of_pool": config.get("endpoint_percent", 10.0),
            "metric": metric,
        },
        "full_method": full,
        "comparisons": comparisons,
        "site": site,
        "random_all_draws": compare_all_draws(results, FULL_METHOD, "random", endpoint)
        if FULL_METHOD in arms and "random" in arms
        else None,
        "semi_supervised_vs_supervised_twin": semi,
        "target": None
        if random is None
        else {
            "rule": "ASFDA - random >= 0.03 Dice at the endpoint, 95 % CI excluding zero",
            "met": bool(random["difference"] >= TARGET_POINTS and random["ci_low"] > 0),
        },
        "arms": arm_summary(results, endpoint),
        "picked_kinds": picked_kinds(results, run_info.get("case_metadata") or {}),
        "headroom": headroom(results, endpoint, run_info.get("ceiling_steps"), oracle, subpopulation_of),
        "guard": guard_summary(
            guarded_rounds([*results, *noise], source_dice(results)),
            (run_info.get("finetune_defaults") or {}).get("accept_worse"),
        ),
        "training_noise": training_noise_summary(noise, config.get("training_noise_recipe", FULL_METHOD)),
        "method": __doc__.split("\n\n")[1].replace("\n", " "),
    }


def statistics_markdown(summary: dict) -> str:
    endpoint = summary["endpoint"]["n_labelled"]
    lines = [
        f"## Endpoint: Dice at {endpoint} labelled cases (pre-stated: "
        f"{summary['endpoint'].get('percent_of_pool', 10.0):g} % of the pool)",
        "",
        f"Full method's query: `{summary['full_method'].get('query')}` "
        f"(chosen by {summary['full_method'].get('chosen_by')}).",
        "",
        "| ASFDA minus | difference | 95 % CI (seeds x cases) | 95 % CI (hierarchical) | "
        + ("sign-flip p (cases)" if summary.get("site") else "Wilcoxon p (cases)")
        + " | Wilcoxon p (seeds) | seeds x cases |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in summary["comparisons"]:
        lines.append(
            f"| {c['strategy']} | {c['difference']:+.4f} | [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] | "
            f"[{c['ci_hierarchical_low']:+.4f}, {c['ci_hierarchical_high']:+.4f}] | {c['p_value']:.3g} | "
            f"{c['p_value_seeds']:.3g} | {c['n_seeds']} x {c['n_test_cases']} |"
        )
    lines += [
        "",
        "Intervals: bootstrap, seeds and test cases resampled independently (seeds x cases) or seeds, then "
        "cases within each seed (hierarchical). p (cases): Wilcoxon signed-rank over the per-case "
        "differences averaged over seeds; p (seeds): over the per-seed differences averaged over cases "
        "(exact; the smallest p that n seeds can give is 2 / 2^n).",
    ]
    if summary.get("site"):
        lines += [
            "",
            "Site dataset: the comparisons are on the sub-population mean. Its intervals resample test cases "
            "within their sub-population; its p (cases) is a sign-flip randomisation test of the weighted "
            "mean difference (each sub-population weighing the same), not Wilcoxon; its p (seeds) is "
            "Wilcoxon over the per-seed differences of the sub-population mean (site_statistics.py).",
        ]
        lines += site_markdown(summary)
        lines += set_predictors_markdown(summary["site"].get("set_predictors"))
        lines += picks_markdown(summary["site"]["picks"], summary["site"]["pool_prevalence"])
    draws = summary.get("random_all_draws")
    if draws:
        lines += [
            "",
            f"ASFDA minus random over all its {draws['n_draws']} draws (unpaired; the mean of every draw as "
            f"the reference): {draws['difference']:+.4f} [{draws['ci_low']:+.4f}, {draws['ci_high']:+.4f}], "
            f"p (cases) = {draws['p_value']:.3g}, p (runs, Mann-Whitney U) = {draws['p_value_seeds']:.3g}; "
            f"the bootstrap resamples ASFDA's {draws['n_seeds']} seeds and random's draws on their own and "
            "the test cases once for both.",
        ]
    semi = summary.get("semi_supervised_vs_supervised_twin")
    if semi:
        lines += [
            "",
            f"Semi-supervised part (`{semi['arm']}` minus its supervised twin `{semi['strategy']}`): "
            f"{semi['difference']:+.4f} [{semi['ci_low']:+.4f}, {semi['ci_high']:+.4f}] (hierarchical "
            f"[{semi['ci_hierarchical_low']:+.4f}, {semi['ci_hierarchical_high']:+.4f}]), "
            f"p (cases) = {semi['p_value']:.3g}, p (seeds) = {semi['p_value_seeds']:.3g}; "
            f"pseudo-labelled cases per round, by seed: {semi['pseudo_labelled_per_round_by_seed']}.",
        ]
    target = summary.get("target")
    if target:
        lines += ["", f"Target ({target['rule']}): **{'met' if target['met'] else 'NOT met'}**."]
    lines += headroom_markdown(summary.get("headroom"), endpoint)
    lines += guard_markdown(summary.get("guard"))
    lines += training_noise_markdown(summary.get("training_noise"))
    lines += [
        "",
        "| arm | test Dice at endpoint (mean ± sd) | validation Dice | HD95 (mm) | runs |",
        "|---|---|---|---|---|",
    ]
    for name, a in summary["arms"].items():
        fmt = lambda v, d=4: "n/a" if v is None else f"{v:.{d}f}"  # noqa: E731
        lines.append(
            f"| {name} | {fmt(a['dice_mean'])} ± {fmt(a['dice_sd'])} | {fmt(a['validation_dice_mean'])} | "
            f"{fmt(a['hd95_mean'], 2)} | {a['n_runs']} |"
        )
    if summary.get("picked_kinds"):
        lines += ["", "Which kinds of case each arm picked (counts over seeds and rounds):", ""]
        for arm, kinds in summary["picked_kinds"].items():
            lines.append(f"- {arm}: " + ", ".join(f"{k} {v}" for k, v in kinds.items()))
    return "\n".join(lines) + "\n"


def write_statistics(
    out: Path, results: Sequence[RunResult], schedule: Sequence[int], endpoint: int, run_info: dict
) -> list[Path]:
    """summary.json, statistics.md and the figures (Dice/HD95 curves; slices before/after if kept)."""
    from ..running.oracle import load_oracle_runs
    from .figures import plot_dice_hd95, plot_slices_before_after
    from .site_figures import write_site_figures

    out = Path(out)
    config = run_info.get("config") or {}
    noise = load_noise_runs(out, config.get("training_noise") or (), config.get("seeds"))
    summary = summarise(results, endpoint, run_info, noise, load_oracle_runs(out))
    files = [out / "summary.json", out / "statistics.md", out / "dice_hd95.png"]
    files[0].write_text(json.dumps(summary, indent=2, default=float))
    files[1].write_text(statistics_markdown(summary))
    plot_dice_hd95(results, schedule, endpoint, files[2], run_info.get("n_pool"))
    files += write_site_figures(out, results, summary, run_info, FULL_METHOD)
    slices = plot_slices_before_after(out, run_info)
    return files + ([slices] if slices else [])
