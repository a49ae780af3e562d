"""The benchmark's arms: each a query strategy and the fine-tuning that follows its picks.

Every arm fine-tunes with the shipped recipe (``FinetuneConfig()``, what ``asfda create`` gives a user; only
the seed differs per run) unless its ``finetune_overrides`` say otherwise, so arm against arm measures the
query, and the headline arm ``asfda`` is the product. ``recipe-2026-11`` is the recipe the benchmark ran
before it shipped one recipe (lr 1e-3 constant, no warm-up, no hold-out, every round accepted, augmentation,
BatchNorm statistics from the labelled cases, 100 + 20 steps per labelled case), kept as an arm so the two
compare on the same run; ``RECIPE_VARIANTS`` are the candidate recipes, each a change from the shipped one.
Every query arm fine-tunes supervised, so arm against arm measures the query. The full method, ``asfda``,
is one query (the ``DEFAULT_QUERY``, or with ``--asfda-query auto`` the candidate with the best
*validation* Dice at the endpoint) followed by the fine-tuning chosen on the validation split
(``FULL_FINE_TUNING``: supervised, or one of the semi-supervised settings in ``SSL_SETTINGS``). Each
semi-supervised arm follows the default query's picks, so that query's arm is its supervised twin.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...config import LearningRateSchedule, QueryConfig, QueryStrategy
from .results import ALL_LABELLED


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
# The query the full method uses unless --asfda-query says otherwise: the product's (QueryConfig), chosen on
# the validation split of the heterogeneous benchmark (README, "Choosing the default query").
DEFAULT_QUERY = QueryConfig().strategy.value
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

# The benchmark's fine-tuning before issue 18 (Resources/Benchmark/run.json, finetune_defaults, and the GPU
# run's --augment --recompute-batchnorm --steps 100 --steps-per-labelled 20).
RECIPE_2026_11 = "recipe-2026-11"
RECIPE_2026_11_OVERRIDES: tuple[tuple[str, object], ...] = (
    ("steps", 100),
    ("steps_per_labelled", 20),
    ("learning_rate", 1e-3),
    ("warmup_fraction", 0.0),
    ("lr_schedule", LearningRateSchedule.CONSTANT),
    ("weight_average_decay", 0.0),
    ("hold_out_validation", False),
    ("accept_worse", True),
    ("augment", True),
    ("recompute_batchnorm", True),
    ("batchnorm_pool_cases", 0),
)
# Candidate recipes: the shipped one with a change each, after the default query's picks. The candidates of
# Resources/Benchmark/recipe_parts/ were named against the recipe shipped before it (README there).
RECIPE_VARIANTS: dict[str, tuple[str, tuple[tuple[str, object], ...]]] = {
    "recipe-cosine-average": (
        "the recipe shipped before recipe_parts: peak 5e-4 decayed by a cosine, an EMA of the weights (0.95),"
        " BatchNorm statistics from the training cases and up to 32 pool cases",
        (
            ("learning_rate", 5e-4),
            ("lr_schedule", LearningRateSchedule.COSINE),
            ("batchnorm_pool_cases", 32),  # and the weight average (0.95), the shipped one's
        ),
    ),
    "recipe-cosine": (
        "the shipped recipe, the rate decayed by a cosine to zero after the warm-up",
        (("lr_schedule", LearningRateSchedule.COSINE),),
    ),
    "recipe-lr5e-4": ("the shipped recipe at a rate of 5e-4", (("learning_rate", 5e-4),)),
    "recipe-lr2e-3": ("the shipped recipe at a rate of 2e-3", (("learning_rate", 2e-3),)),
    "recipe-lr2e-3-anneal": (
        "the shipped recipe at a rate of 2e-3, annealed linearly to near zero over the last 20 % of the"
        " steps",
        (("learning_rate", 2e-3), ("lr_schedule", LearningRateSchedule.ANNEAL)),
    ),
    "recipe-last-weights": (
        "the shipped recipe, the student's last weights as the round's result (shipped before recipe_noise)",
        (("weight_average_decay", 0.0),),
    ),
    "recipe-tail-average": (
        "the shipped recipe, the round's result the plain mean of the student's weights over the last half of"
        " the steps (stochastic weight averaging) instead of the EMA",
        (("tail_average_fraction", 0.5),),
    ),
    "recipe-anneal": (
        "the shipped recipe, the rate annealed linearly to near zero over the last 20 % of the steps",
        (("lr_schedule", LearningRateSchedule.ANNEAL),),
    ),
    "recipe-soup2": (
        "the shipped recipe as a soup of 2 students, each with its own seed and half the round's steps, the"
        " round's result the mean of their weights (the same compute)",
        (("students", 2),),
    ),
    "recipe-pool-batchnorm": (
        "the shipped recipe, BatchNorm statistics from the training cases and up to 32 pool cases",
        (("batchnorm_pool_cases", 32),),
    ),
    "recipe-hold-out": (
        "the shipped recipe with the guard's validation: labelled cases held out, a worse round held back",
        (("hold_out_validation", True),),
    ),
    "recipe-tolerant-guard": (
        "the shipped recipe, a round held back only 2 Dice points below its parent",
        (("guard_tolerance", 0.02),),
    ),
    "recipe-encoder-0.1": (
        "the shipped recipe, the encoder at a tenth of the rate",
        (("encoder_lr_factor", 0.1),),
    ),
    "recipe-no-augment": (
        "the shipped recipe without intensity augmentation of the labelled patches",
        (("augment", False),),
    ),
    "recipe-batch4-half": (
        "the shipped recipe at 4 patches a step and 50 + 10 steps per labelled case: against the 100 + 20"
        " shipped when it ran, the same patches and compute, half as many updates of twice the patches",
        (("batch_size", 4), ("steps", 50), ("steps_per_labelled", 10)),
    ),
    "recipe-batch4": (
        "the shipped recipe at 4 patches a step (twice the compute)",
        (("batch_size", 4),),
    ),
    "recipe-steps-100-20": (
        "the shipped recipe at 100 + 20 steps per labelled case: the steps shipped until recipe_batch4"
        " (Resources/Benchmark/; its arm recipe-double-steps, 200 + 40, is the shipped recipe now)",
        (("steps", 100), ("steps_per_labelled", 20)),
    ),
    "recipe-steps-400-80": (
        "the shipped recipe at 400 + 80 steps per labelled case: twice the shipped steps (twice the compute)",
        (("steps", 400), ("steps_per_labelled", 80)),
    ),
    "recipe-pool-batchnorm-no-augment": (
        "the shipped recipe, BatchNorm statistics from the training cases and up to 32 pool cases, without"
        " intensity augmentation",
        (("batchnorm_pool_cases", 32), ("augment", False)),
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
    # Candidates for a site's archive (rare hard sub-populations), scoring/coverage.py; not measured yet.
    Arm(
        "cluster-difficulty",
        QueryStrategy.CLUSTER_DIFFICULTY,
        False,
        "TypiClust's clusters, largest uncovered first, the most difficult case (highest ASD) of each",
    ),
    Arm(
        "relative-dkd",
        QueryStrategy.RELATIVE_DKD,
        False,
        "knowledge gap x cosine distance to the labelled cases and picks so far, greedy",
    ),
)
QUERY_ARMS: dict[str, Arm] = {arm.name: arm for arm in _QUERY_ARMS}
# Our query formulations: the candidates for the full method's query.
CANDIDATES = (
    "asfda-v1",
    "typiclust",
    "density",
    "stochastic",
    "clasp",
    "typical-stochastic",
    "cluster-difficulty",
    "relative-dkd",
)


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


def recipe_arm(name: str, query: str = DEFAULT_QUERY) -> Arm:
    """A fine-tuning recipe other than the shipped one, after the picks of query arm ``query``."""
    if name == RECIPE_2026_11:
        description = "the benchmark's recipe before one recipe shipped (lr 1e-3, every round accepted, ...)"
        return Arm(
            name, QUERY_ARMS[query].strategy, False, f"query {query}; {description}", RECIPE_2026_11_OVERRIDES
        )
    description, overrides = RECIPE_VARIANTS[name]
    return Arm(name, QUERY_ARMS[query].strategy, False, f"query {query}; {description}", overrides)


ARMS: dict[str, Arm] = {
    FULL_METHOD: full_method(DEFAULT_QUERY),
    RECIPE_2026_11: recipe_arm(RECIPE_2026_11),
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
        *(recipe_arm(name) for name in RECIPE_VARIANTS),
        Arm(
            "asfda-no-ssl",
            QueryStrategy.ASFDA,
            False,
            "the first formulation's query, supervised (kept for older reports; same as asfda-v1)",
        ),
    )
}
KNOWN_ARMS: dict[str, Arm] = {**ARMS, **VARIANTS}
RECIPE_ARMS: tuple[str, ...] = (RECIPE_2026_11, *RECIPE_VARIANTS)
CEILING = Arm(
    ALL_LABELLED, QueryStrategy.RANDOM, False, "every pool case labelled in one round (the ceiling)"
)
