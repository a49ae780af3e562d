"""Every constant of our formulation as a named, configurable parameter (defaults from the project's
METHOD: see the README's "Our formulation")."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from enum import Enum


class ThresholdRule(str, Enum):
    """How the per-volume entropy threshold tau of the adaptive foreground is found."""

    OTSU = "otsu"
    FIRST_PEAK = "first_peak"  # UGTST: the first valley after the histogram's first peak


class QueryStrategy(str, Enum):
    """Which cases to ask the annotator for next."""

    ASFDA = "asfda"  # the first formulation: DKD + ASD + diversity (benchmark arm "asfda-v1")
    DKD = "dkd"  # knowledge gap + diversity
    ASD = "asd"
    RANDOM = "random"
    ENTROPY = "entropy"  # mean entropy over the whole volume
    EPISTEMIC = "epistemic"  # MC-dropout, as MONAI Label scores it
    CORESET = "coreset"  # k-center greedy on the embeddings
    TYPICLUST = "typiclust"  # cluster the centred embeddings, take the most typical case of each new cluster
    DENSITY = "density"  # foreground difficulty (ASD) x typicality, greedy diversity
    STOCHASTIC = "stochastic"  # Gumbel-top-k on the foreground difficulty, noise annealed over rounds
    TYPICAL_STOCHASTIC = "typical-stochastic"  # typicality cold start, then stochastic density picks
    CLASP = "clasp"  # class-stratified foreground entropy (missing class = 1), Gumbel-top-k annealed
    # Candidates for pools with rare hard modes (scoring/coverage.py); both lost to random in the site loop:
    CLUSTER_DIFFICULTY = "cluster-difficulty"  # typiclust's clusters, the most difficult case of each
    RELATIVE_DKD = "relative-dkd"  # knowledge gap x distance to the labelled cases and picks, greedy


# Queries whose picks are a Gumbel-top-k draw in proportion to the score (scoring/stochastic.py), not its
# maximum: a pick can score below a case ranked after it.
DRAWN_QUERIES = (QueryStrategy.STOCHASTIC, QueryStrategy.TYPICAL_STOCHASTIC, QueryStrategy.CLASP)


class AdaptationMode(str, Enum):
    """Which weights a fine-tuning round changes (``finetune/peft.py``)."""

    FULL = "full"
    NORM = "norm"  # normalisation layers' scale and shift only
    DECODER = "decoder"  # everything after the bottleneck; the encoder stays frozen


@dataclass
class AsdConfig:
    dilation_voxels: int = 2
    threshold_rule: ThresholdRule = ThresholdRule.OTSU
    histogram_bins: int = 256
    fallback_top_fraction: float = 0.01


@dataclass
class QueryConfig:
    # The default query was chosen on the site benchmark's validation split, in the product's loop (README,
    # "Choosing the default query"; Resources/Benchmark/site_rounds/): clasp validated highest of seven arms
    # (0.642 against typiclust's 0.638); on the test split it ties random.
    strategy: QueryStrategy = QueryStrategy.CLASP
    budget: int = 1
    w_kg: float = 1.0
    w_asd: float = 1.0
    w_div: float = 1.0
    mc_dropout_passes: int = 5
    mc_dropout_rate: float = 0.2
    # Typicality (TypiClust): density = 1 / mean distance to the k nearest neighbours in embedding space.
    typicality_neighbours: int = 10
    # Stochastic acquisition: Gumbel-top-k on log(score) / temperature; temperature = t0 / (1 + n_labelled
    # / anneal_labelled), so early picks hedge against outliers and later ones follow the scores.
    gumbel_temperature: float = 1.0
    anneal_labelled: float = 4.0
    # cluster-difficulty picks, inside each uncovered cluster, the case with the highest typicality~^(1 - m)
    # x ASD~^m (percentile ranks): m = 1 the most difficult member (the rule under test; m = 0 is typiclust,
    # measured already), in between the rank product that hedges against a cluster's own outlier.
    cluster_difficulty_mix: float = 1.0
    # Embeddings centred on the pool mean and re-normalised before any distance (spread, see METHOD).
    centre_embeddings: bool = True


class LearningRateSchedule(str, Enum):
    """How the learning rate moves after its linear warm-up (``finetune/schedule.py``)."""

    CONSTANT = "constant"
    COSINE = "cosine"  # half a cosine from the peak down to zero at the round's last step
    ANNEAL = "anneal"  # the peak, then linearly down to near zero over the last anneal_fraction of the steps


@dataclass
class FinetuneConfig:
    """The shipped fine-tuning recipe: what ``asfda create``, the backend, the Slicer module and ``asfda
    demo`` run, and what the benchmark's headline arm measures (``benchmark/running/arms.py``; a test keeps
    them equal). The README's "Fine-tuning defaults" says why each default is what it is."""

    # A round trains steps + steps_per_labelled x labelled cases (``round_steps``), so training grows with
    # the labelled set instead of over-fitting one case. Twice the GPU benchmark's 100 + 20: chosen on two
    # validation splits (Benchmark/recipe_batch4/), where 100 + 20 stopped short (+3.2 and +8.3 Dice points
    # for 200 + 40, every one of 32 paired runs ahead) at no more training noise; on the test split +6.6
    # points over the benchmark's 2026-11 recipe (Benchmark/shipped_recipe/run3/); twice as long a round.
    steps: int = 200
    steps_per_labelled: int = 40
    # Peak rate, held after a linear warm-up; chosen on a validation split (Benchmark/recipe_parts/):
    # 1e-3 held, with the last weights (then the default) and training-case BatchNorm, validated 3.6 Dice
    # points above 5e-4 decayed by a cosine with averaging and pool BatchNorm (0.583 against 0.547 at 4
    # labelled cases, 3 seeds; each part alone gained under 1 point); the warm-up is what keeps a strong
    # model: without it, 1e-3 took deepbet from 0.972 to 0.901 in 5 steps (issue 10).
    learning_rate: float = 1e-3
    warmup_fraction: float = 0.1  # learning rate ramped linearly from 0 over this share of the steps
    lr_schedule: LearningRateSchedule = LearningRateSchedule.CONSTANT
    anneal_fraction: float = 0.2  # the share of the steps the ANNEAL schedule decays over
    # The encoder's rate as a share of the decoder's (1: one rate); the encoder carries what the source
    # data taught, the decoder maps it to this site's labels. Needs a network whose decoder can be told.
    encoder_lr_factor: float = 1.0
    # The round's result is an exponential moving average of the student's weights (decay ramped as
    # (1 + t) / (10 + t) so a short round is not its starting point; 0 keeps the student's last weights).
    # Chosen on a validation split (Benchmark/recipe_noise/): with the held rate it halved the training noise
    # (sd over 8 seeds of one labelled set: 0.69 and 0.41 Dice points against 1.53 and 1.21 for the last
    # weights) and gained 1.2 points of validation Dice (0.543 against 0.531).
    weight_average_decay: float = 0.95
    # > 0: the round's result is instead the plain mean of the student's weights over this last share of the
    # steps (stochastic weight averaging); the EMA above ramps so slowly that it averages ~12 steps.
    tail_average_fraction: float = 0.0
    # > 1: the round is a soup of this many students (each its own seed and its share of the steps, their
    # results averaged; ``finetune/trainer.train_soup``): the same compute, less of one seed's patch order.
    students: int = 1
    adaptation: AdaptationMode = AdaptationMode.FULL
    # The guard validates on labelled cases that no round has trained on: a set that only grows, to
    # validation_fraction of the labelled cases (1 to max_validation_cases), never the newest labelled case
    # (the radiologist's latest correction always trains). See ``session/rounds.py``, ``finetune/guard.py``.
    # Off by default: chosen on a validation split (Resources/Benchmark/recipe_choice/), where holding cases
    # out at 2 and 4 labelled cases held back first rounds and cost 4.3 Dice points against training on
    # every labelled case; --hold-out turns the guard's validation on.
    hold_out_validation: bool = False
    validation_fraction: float = 0.2
    max_validation_cases: int = 3
    # A round is held back (its parent stays active) only when its best validated weights score more than
    # this mean Dice below the parent on the same held-out cases; within it, the round that learnt from the
    # newest correction wins (1 to 3 cases cannot tell 0.2 Dice points apart).
    guard_tolerance: float = 0.002
    accept_worse: bool = False  # activate a round that validates worse than its parent anyway
    weight_decay: float = 1e-5
    batch_size: int = 2
    patch_size: tuple[int, int, int] | None = None  # None: the model's roi_size
    positive_negative_ratio: float = 2.0  # foreground oversampling of labelled patches
    # Off: no semi-supervised setting validated better than supervised fine-tuning (README, "Choosing the
    # semi-supervised part"); kept as an option.
    semi_supervised: bool = False
    ema_decay: float = 0.99  # the semi-supervised teacher's
    tau_conf: float = 0.9
    # Relative threshold: when set, tau_conf is this quantile of the pool's confidence (FlexMatch-like), so a
    # model whose confidence is 0.78-0.80 still trusts its best cases; None keeps the absolute tau_conf.
    tau_conf_quantile: float | None = None
    tau_dist: float | None = None  # None: the median distance to the labelled set over the pool
    tau_vox: float = 0.8
    lambda_u_max: float = 0.5
    # Share of a round's steps trained on the labelled cases alone before the teacher is copied from the
    # student; 0 makes the teacher at the round's start (the parent model, which before the first round is
    # the source model whose errors the pseudo-labels would then teach back).
    teacher_start_fraction: float = 0.0
    # One EMA teacher for the whole session, saved with each version and carried into the next round, so the
    # pseudo-labels come from every round's student (a temporal ensemble); teacher_start_fraction then unused.
    persistent_teacher: bool = False
    # Class-wise voxel thresholds (min(tau_vox, the class's median confidence)) and a loss that weighs every
    # pseudo-label class equally, instead of one tau_vox and one mean dominated by background.
    classwise_pseudo_labels: bool = False
    validate_every: int = 20
    seed: int = 0  # patches, augmentation and the pool sample below: same seed and cases, same weights
    amp: bool = True
    # Intensity augmentation of labelled patches (gamma, bias, noise); the student sees a strongly augmented
    # copy of the teacher's unlabelled patch (weak/strong views). On: part of the recipe that adapted the
    # benchmark's source model.
    augment: bool = True
    # Recompute BatchNorm running statistics at the round's start on whole volumes (AdaBN), then freeze them,
    # so inference on whole volumes does not use statistics of foreground-oversampled patches nor of the few
    # picked cases alone: the volumes are the training cases plus up to batchnorm_pool_cases unlabelled cases
    # of the session's pool drawn with the seed (transductive over the pool; test cases never enter a
    # session's pool). 0, the default, uses the training cases only, as the recipe chosen on validation
    # does (recipe_parts; the pool's statistics did not validate better: 0.547 with them, 0.549 without).
    recompute_batchnorm: bool = True
    batchnorm_pool_cases: int = 0


def round_steps(config: FinetuneConfig, n_labelled: int) -> int:
    """A round's training steps: ``steps`` plus ``steps_per_labelled`` for each labelled case."""
    return config.steps + config.steps_per_labelled * n_labelled


def config_from_dict(cls, data: dict | None):
    """Build a config dataclass from a JSON dict, ignoring unknown keys and restoring enums."""
    data = data or {}
    values = {}
    for field in fields(cls):
        if field.name not in data:
            continue
        value = data[field.name]
        default = getattr(cls(), field.name)
        if isinstance(default, Enum):
            value = type(default)(value)
        elif isinstance(value, list):
            value = tuple(value)
        values[field.name] = value
    return cls(**values)


def config_to_dict(config) -> dict:
    return {k: (v.value if isinstance(v, Enum) else v) for k, v in asdict(config).items()}
