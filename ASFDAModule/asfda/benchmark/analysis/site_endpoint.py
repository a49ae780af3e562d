"""The site benchmark's endpoints, stated before any run: pure functions of per-case test Dice.

Primary: Dice at 10 % of the pool labelled, averaged per sub-population and then over sub-populations, so
every mode counts equally (a radiologist judges a model that fails on a fifth of its protocols by that
fifth, not by the routine scans it already gets right). Beside it: the case-weighted mean (what the plain
mean over test cases gives) and the worst sub-population. On the i.i.d. ``heterogeneous`` configuration the
endpoint stays the plain mean over test cases at 10 % of the pool (cases without a sub-population).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

ENDPOINT_POOL_FRACTION = 0.10


def endpoint_labelled(n_pool: int, fraction: float = ENDPOINT_POOL_FRACTION) -> int:
    """Labelled cases at the endpoint: 10 % of the pool, at least one (6 of a 60-case pool)."""
    return max(1, round(fraction * n_pool))


@dataclass(frozen=True)
class SiteEndpoint:
    """The endpoints of one labelled set (one arm, seed and budget) on the test split."""

    per_subpopulation: dict[str, float]  # mean Dice of each sub-population's test cases
    cases: dict[str, int]  # test cases per sub-population
    subpopulation_mean: float  # the primary endpoint: the mean of per_subpopulation
    case_weighted_mean: float  # the mean over test cases
    worst_subpopulation: str
    worst_dice: float

    def to_json(self) -> dict:
        return {
            "per_subpopulation": self.per_subpopulation,
            "cases": self.cases,
            "subpopulation_mean": self.subpopulation_mean,
            "case_weighted_mean": self.case_weighted_mean,
            "worst_subpopulation": self.worst_subpopulation,
            "worst_dice": self.worst_dice,
        }


def group_by_subpopulation(
    case_names: Iterable[str], subpopulation_of: Mapping[str, str]
) -> dict[str, list[str]]:
    """Sub-population -> its cases; a case without a recorded sub-population is an error, not dropped."""
    groups: dict[str, list[str]] = {}
    for name in case_names:
        if name not in subpopulation_of:
            raise ValueError(f"test case {name!r} has no sub-population in dataset.json")
        groups.setdefault(subpopulation_of[name], []).append(name)
    return groups


def site_endpoint(
    case_dice: Mapping[str, float], subpopulation_of: Mapping[str, str], min_cases: int = 1
) -> SiteEndpoint:
    """The endpoints from {test case: Dice} and {case: sub-population}. A sub-population with fewer than
    ``min_cases`` scored test cases (the site builder gives 5) is refused: its mean would be noise."""
    if not case_dice:
        raise ValueError("no test case has a Dice score")
    values = {name: float(dice) for name, dice in case_dice.items()}
    if not all(np.isfinite(list(values.values()))):
        raise ValueError("a test case's Dice is not a finite number")
    groups = group_by_subpopulation(values, subpopulation_of)
    small = {name: len(cases) for name, cases in groups.items() if len(cases) < min_cases}
    if small:
        raise ValueError(f"sub-populations with fewer than {min_cases} test cases: {small}")
    per_subpopulation = {
        name: float(np.mean([values[c] for c in cases])) for name, cases in sorted(groups.items())
    }
    worst = min(per_subpopulation, key=lambda name: (per_subpopulation[name], name))
    return SiteEndpoint(
        per_subpopulation=per_subpopulation,
        cases={name: len(cases) for name, cases in sorted(groups.items())},
        subpopulation_mean=float(np.mean(list(per_subpopulation.values()))),
        case_weighted_mean=float(np.mean(list(values.values()))),
        worst_subpopulation=worst,
        worst_dice=per_subpopulation[worst],
    )


def subpopulation_weights(case_names: Iterable[str], subpopulation_of: Mapping[str, str]) -> dict[str, float]:
    """Per-case weights (summing to 1) under which a weighted mean over cases is the sub-population mean:
    1 / (sub-populations x cases of the case's sub-population). For paired tests over cases."""
    groups = group_by_subpopulation(list(case_names), subpopulation_of)
    return {case: 1.0 / (len(groups) * len(cases)) for cases in groups.values() for case in cases}
