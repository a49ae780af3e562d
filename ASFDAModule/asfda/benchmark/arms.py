"""The benchmark's arms: each a query strategy and the fine-tuning that follows its picks.

Every query arm fine-tunes supervised, so arm against arm measures the query. The full method, ``asfda``,
is one query (the ``DEFAULT_QUERY``, or with ``--asfda-query auto`` the candidate with the best
*validation* Dice at the endpoint) followed by the fine-tuning chosen on the validation split
(``FULL_FINE_TUNING``: supervised, or one of the semi-supervised settings in ``SSL_SETTINGS``). Each
semi-supervised arm follows the default query's picks, so that query's arm is its supervised twin.
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
SUPERVISED = "supervised"
# The full method's fine-tuning, chosen on the validation split of the design run (README, "Choosing the
# semi-supervised part"): every semi-supervised setting below validated worse than supervised fine-tuning.
FULL_FINE_TUNING = SUPERVISED
# The semi-supervised setting the default benchmark runs (the best of them on that validation split).
SEMI_SUPERVISED_ARM = "ssl-late-classwise"
# Reports written before that choice (no "fine_tuning" in run.json) had this semi-supervised full method.
LEGACY_FINE_TUNING = "ssl-relative"
# Every semi-supervised arm: the pool's top quarter by confidence (relative, not 0.9 absolute) is pseudo-
# labelled and the student learns on a strongly augmented view of the teacher's patch; then one change each.
SSL_RELATIVE: tuple[tuple[str, object], ...] = (("tau_conf_quantile", 0.75),)
SSL_SETTINGS: dict[str, tuple[str, tuple[tuple[str, object], ...]]] = {
    "ssl-relative": ("relative confidence threshold, weak/strong views, teacher from the round's start", ()),
    "ssl-late-teacher": (
        "as ssl-relative, the teacher copied from the student after half the round's supervised steps",
        (("teacher_start_fraction", 0.5),),
    ),
    "ssl-classwise": (
        "as ssl-relative, class-wise voxel thresholds and every pseudo-label class weighted equally",
        (("classwise_pseudo_labels", True),),
    ),
    "ssl-late-classwise": (
        "as ssl-relative, with the late teacher and the class-wise pseudo-labels together",
        (("teacher_start_fraction", 0.5), ("classwise_pseudo_labels", True)),
    ),
    "ssl-persistent-teacher": (
        "as ssl-late-classwise, with a teacher that persists across rounds",
        (("teacher_start_fraction", 0.5), ("classwise_pseudo_labels", True), ("persistent_teacher", True)),
    ),
}

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


def semi_supervised_arm(name: str, query: str = DEFAULT_QUERY) -> Arm:
    """The semi-supervised setting ``name`` after the picks of query arm ``query``."""
    description, overrides = SSL_SETTINGS[name]
    strategy = QUERY_ARMS[query].strategy
    return Arm(name, strategy, True, f"query {query}; {description}", SSL_RELATIVE + overrides)


def full_method(query: str, fine_tuning: str = FULL_FINE_TUNING) -> Arm:
    """The full method: the query of arm ``query``, then ``fine_tuning`` (supervised or an SSL setting)."""
    if fine_tuning == SUPERVISED:
        return Arm(FULL_METHOD, QUERY_ARMS[query].strategy, False, f"query {query}, supervised fine-tuning")
    arm = semi_supervised_arm(fine_tuning, query)
    return Arm(FULL_METHOD, arm.strategy, True, arm.description, arm.finetune_overrides)


ARMS: dict[str, Arm] = {
    FULL_METHOD: full_method(DEFAULT_QUERY),
    **{name: QUERY_ARMS[name] for name in ("random", "entropy", "epistemic", "coreset", *CANDIDATES)},
    SEMI_SUPERVISED_ARM: semi_supervised_arm(SEMI_SUPERVISED_ARM),
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
        *(semi_supervised_arm(name) for name in SSL_SETTINGS if name != SEMI_SUPERVISED_ARM),
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
