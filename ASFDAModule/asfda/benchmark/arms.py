"""The benchmark's arms: each a query strategy and the fine-tuning that follows its picks.

Every query arm fine-tunes supervised, so arm against arm measures the query. The full method, ``asfda``,
is one query (the ``DEFAULT_QUERY``, or with ``--asfda-query auto`` the candidate with the best
*validation* Dice at the endpoint) followed by semi-supervised fine-tuning with relative confidence
thresholds and weak/strong views; its supervised twin is that candidate's own arm.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import QueryStrategy
from .report import ALL_LABELLED


@dataclass(frozen=True)
class Arm:
    """One curve of the benchmark: a query strategy and the fine-tuning that follows its picks."""

    name: str
    strategy: QueryStrategy
    semi_supervised: bool
    description: str
    finetune_overrides: tuple[tuple[str, object], ...] = ()  # FinetuneConfig fields this arm changes

    @property
    def fine_tuning(self) -> str:
        return "semi-supervised" if self.semi_supervised else "supervised"


FULL_METHOD = "asfda"
# The query the full method uses unless --asfda-query says otherwise; chosen on the validation split of
# the heterogeneous benchmark (README, "Choosing the default query").
DEFAULT_QUERY = "typiclust"
# The semi-supervised part: the pool's top quarter by confidence (relative, not 0.9 absolute), the student
# on a strongly augmented view of the teacher's patch.
SSL_OVERRIDES: tuple[tuple[str, object], ...] = (("tau_conf_quantile", 0.75),)

_QUERY_ARMS = (
    Arm("random", QueryStrategy.RANDOM, False, "uniformly random cases (needs no scores)"),
    Arm("entropy", QueryStrategy.ENTROPY, False, "mean voxel entropy over the volume"),
    Arm(
        "epistemic",
        QueryStrategy.EPISTEMIC,
        False,
        "MONAI Label's epistemic score: entropy of the mean of 5 MC-dropout passes",
    ),
    Arm("coreset", QueryStrategy.CORESET, False, "k-center greedy on the class-prototype embeddings"),
    Arm("asfda-v1", QueryStrategy.ASFDA, False, "the first formulation: DKD + ASD + diversity, top-k"),
    Arm("dkd", QueryStrategy.DKD, False, "knowledge gap + diversity only"),
    Arm("asd", QueryStrategy.ASD, False, "anatomical segmentation difficulty only"),
    Arm("typiclust", QueryStrategy.TYPICLUST, False, "TypiClust: most typical case of each new cluster"),
    Arm("density", QueryStrategy.DENSITY, False, "ASD x typicality, greedy diversity (density-weighted)"),
    Arm("stochastic", QueryStrategy.STOCHASTIC, False, "Gumbel-top-k on ASD, temperature annealed"),
    Arm(
        "clasp",
        QueryStrategy.CLASP,
        False,
        "ClaSP PE: class-stratified foreground entropy (a missed class = 1), Gumbel-top-k annealed",
    ),
    Arm(
        "typical-stochastic",
        QueryStrategy.TYPICAL_STOCHASTIC,
        False,
        "TypiClust cold start, then Gumbel-top-k on ASD x typicality, annealed",
    ),
)
QUERY_ARMS: dict[str, Arm] = {arm.name: arm for arm in _QUERY_ARMS}
# Our query formulations: the candidates for the full method's query.
CANDIDATES = ("asfda-v1", "typiclust", "density", "stochastic", "clasp", "typical-stochastic")


def full_method(query: str) -> Arm:
    """The full method with the query of arm ``query`` and the semi-supervised part."""
    base = QUERY_ARMS[query]
    return Arm(
        FULL_METHOD,
        base.strategy,
        True,
        f"query {query}, selective semi-supervised fine-tuning (relative threshold, weak/strong views)",
        SSL_OVERRIDES,
    )


ARMS: dict[str, Arm] = {
    FULL_METHOD: full_method(DEFAULT_QUERY),
    **{name: QUERY_ARMS[name] for name in ("random", "entropy", "epistemic", "coreset", *CANDIDATES)},
}
# Variants run on request with --strategies.
VARIANTS: dict[str, Arm] = {
    arm.name: arm
    for arm in (
        QUERY_ARMS["dkd"],
        QUERY_ARMS["asd"],
        Arm(
            "asfda-v1-ssl",
            QueryStrategy.ASFDA,
            True,
            "the first formulation's full method: absolute tau_conf 0.9 (no case passes on T2)",
        ),
        Arm(
            "asfda-conf0.75",
            QueryStrategy.ASFDA,
            True,
            "the first formulation with absolute tau_conf 0.75 instead of 0.9",
            (("tau_conf", 0.75),),
        ),
        Arm(
            "asfda-no-ssl",
            QueryStrategy.ASFDA,
            False,
            "the first formulation's query, supervised (kept for older reports; same as asfda-v1)",
        ),
    )
}
KNOWN_ARMS: dict[str, Arm] = {**ARMS, **VARIANTS}
CEILING = Arm(
    ALL_LABELLED, QueryStrategy.RANDOM, False, "every pool case labelled in one round (the ceiling)"
)
