"""Which sub-populations each arm picked, round by round, against the pool's prevalences: pure functions of
the run records (their picks) and dataset.json's sub-populations (run.json's ``case_metadata``).

A query that covers the rare modes picks them above their share of the pool; random picks them at it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from ..running.results import ALL_LABELLED, SOURCE_ONLY, RunResult


def pool_prevalence(case_metadata: Mapping[str, dict]) -> dict[str, float]:
    """Each sub-population's share of the pool (cases whose metadata says split "pool"); empty without."""
    pool = Counter(
        m["subpopulation"]
        for m in case_metadata.values()
        if m.get("split") == "pool" and m.get("subpopulation")
    )
    total = sum(pool.values())
    return {name: pool[name] / total for name in sorted(pool)} if total else {}


def picks_by_subpopulation(
    results: Sequence[RunResult], subpopulation_of: Mapping[str, str]
) -> dict[str, dict]:
    """Per arm: for each round, how many picks of each sub-population (summed over seeds), and over all
    rounds the counts and shares. A picked case without a sub-population counts as ``unknown``."""
    table: dict[str, dict] = {}
    for run in results:
        if run.arm in (SOURCE_ONLY, ALL_LABELLED):
            continue
        arm = table.setdefault(run.arm, {"rounds": {}, "seeds": 0})
        arm["seeds"] += 1
        for record in run.records:
            if not record.picked:
                continue
            key = (record.round, record.n_labelled)
            counts = arm["rounds"].setdefault(key, Counter())
            counts.update(subpopulation_of.get(name, "unknown") for name in record.picked)
    summary = {}
    for name, arm in table.items():
        total = sum(arm["rounds"].values(), Counter())
        picks = sum(total.values())
        summary[name] = {
            "seeds": arm["seeds"],
            "rounds": [
                {"round": r, "n_labelled": n, "counts": dict(sorted(c.items()))}
                for (r, n), c in sorted(arm["rounds"].items())
            ],
            "counts": dict(sorted(total.items())),
            "shares": {k: v / picks for k, v in sorted(total.items())} if picks else {},
        }
    return summary


def picks_markdown(picks: Mapping[str, dict], prevalence: Mapping[str, float]) -> list[str]:
    """statistics.md's table: a row per (arm, round) with its picks by sub-population, summed over seeds,
    then each arm's share of all its picks beside the pool's prevalence."""
    if not picks:
        return []
    names = sorted({*prevalence, *(k for arm in picks.values() for k in arm["counts"])})
    header = "| arm | round (labelled) | " + " | ".join(names) + " |"
    lines = [
        "",
        "Picks by sub-population (counts over seeds, per round; then each arm's share of all its picks "
        "beside the pool's prevalence):",
        "",
        header,
        "|---|---|" + "---|" * len(names),
    ]
    for arm, entry in picks.items():
        for r in entry["rounds"]:
            cells = " | ".join(str(r["counts"].get(n, 0)) for n in names)
            lines.append(f"| {arm} | {r['round']} ({r['n_labelled']}) | {cells} |")
    if prevalence:
        lines.append(
            "| pool | prevalence | " + " | ".join(f"{100 * prevalence.get(n, 0):.0f} %" for n in names) + " |"
        )
    for arm, entry in picks.items():
        lines.append(
            f"| {arm} | all picks | "
            + " | ".join(f"{100 * entry['shares'].get(n, 0):.0f} %" for n in names)
            + " |"
        )
    return lines
