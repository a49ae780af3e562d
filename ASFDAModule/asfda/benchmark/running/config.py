"""What one benchmark runs: the arms, seeds, schedule or budgets, the pre-stated endpoint, the inference
window, the workers, and the fine-tuning each arm's run gets (the shipped recipe, then the arm's overrides).

Kept apart from the runner so that provenance.py and the report's writing.py can take the config without
importing the runner that imports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ...config import FinetuneConfig, round_steps
from ...errors import ASFDAError
from ..analysis.site_endpoint import endpoint_labelled
from .arms import (
    ARMS,
    FULL_FINE_TUNING,
    FULL_METHOD,
    KNOWN_ARMS,
    QUERY_ARMS,
    RECIPE_ARMS,
    SSL_SETTINGS,
    SUPERVISED,
    Arm,
)
from .preparation import Window


@dataclass
class BenchmarkConfig:
    arms: tuple[str, ...] = tuple(ARMS)
    seeds: tuple[int, ...] = (0, 1, 2)
    schedule: tuple[int, ...] = (1, 2, 4, 8)
    window: Window = Window.VOLUME
    all_labelled: bool = True
    all_labelled_steps: int | None = None  # None: the steps of a whole schedule (ceiling_steps)
    device: str = "auto"
    threads: int | None = None  # torch threads per run (None: torch's default)
    workers: int = 1  # runs at a time
    isolate: bool = True  # each run in its own process (exact peak memory per run; needed for workers > 1)
    keep_sessions: bool = False
    # Budgets as percentages of the pool (replace ``schedule`` when given); the endpoint is stated before
    # the run: Dice at ``endpoint_percent`` labelled.
    budgets: tuple[float, ...] | None = None
    endpoint_percent: float = 10.0
    asfda_query: str = "default"  # "default": DEFAULT_QUERY; "auto": best candidate on validation; or a name
    asfda_fine_tuning: str = "default"  # "default": FULL_FINE_TUNING; "supervised"; or an SSL setting's name
    random_seeds: tuple[int, ...] = ()  # extra draws for random (cheap: it needs no scores)
    # Sizes of the fixed labelled sets the full method's fine-tuning trains once per seed (training_noise.py)
    training_noise: tuple[int, ...] = ()
    # Whose fine-tuning the fixed sets train with: the full method's, or a recipe arm's (to compare noise)
    training_noise_recipe: str = FULL_METHOD

    def __post_init__(self) -> None:
        if self.training_noise_recipe != FULL_METHOD and self.training_noise_recipe not in RECIPE_ARMS:
            raise ASFDAError(f"--training-noise-recipe must be a recipe arm: {self.training_noise_recipe}")
        unknown = [a for a in self.arms if a not in KNOWN_ARMS]
        if unknown:
            raise ASFDAError(f"unknown strategies {unknown}; known: {', '.join(KNOWN_ARMS)}")
        if list(self.schedule) != sorted(set(self.schedule)) or not self.schedule or self.schedule[0] < 1:
            raise ASFDAError(f"the schedule must be increasing labelled counts >= 1, got {self.schedule}")
        self.window = Window(self.window)
        if self.asfda_query not in ("default", "auto", *QUERY_ARMS):
            raise ASFDAError(f"--asfda-query must be default, auto or one of {', '.join(QUERY_ARMS)}")
        if self.asfda_fine_tuning not in ("default", SUPERVISED, *SSL_SETTINGS):
            choices = ", ".join(("default", SUPERVISED, *SSL_SETTINGS))
            raise ASFDAError(f"--asfda-fine-tuning must be one of {choices}")

    @property
    def full_fine_tuning(self) -> str:
        return FULL_FINE_TUNING if self.asfda_fine_tuning == "default" else self.asfda_fine_tuning

    def resolved_schedule(self, n_pool: int) -> tuple[int, ...]:
        """Labelled counts after each round: the budgets as fractions of the pool, or the schedule."""
        if not self.budgets:
            return tuple(self.schedule)
        counts = sorted({max(1, round(b / 100 * n_pool)) for b in self.budgets})
        return tuple(c for c in counts if c <= n_pool)

    def endpoint(self, n_pool: int) -> int:
        """The pre-stated endpoint's labelled count (10 % of the pool by default); with a schedule of counts,
        that count when the schedule reaches it, else the schedule's middle round."""
        wanted = endpoint_labelled(n_pool, self.endpoint_percent / 100)
        if not self.budgets and wanted not in self.schedule:
            return self.schedule[min(len(self.schedule) - 1, len(self.schedule) // 2)]
        return wanted

    @property
    def recipe(self) -> FinetuneConfig:
        """The shipped fine-tuning recipe: the headline arm's, every query arm's and the ceiling's."""
        return FinetuneConfig()

    @property
    def steps(self) -> int:
        return self.recipe.steps

    @property
    def steps_per_labelled(self) -> int:
        return self.recipe.steps_per_labelled

    def schedule_steps(self, schedule: Sequence[int]) -> int:
        """The headline arm's steps over the whole schedule: each round's steps plus those per labelled
        case."""
        return sum(round_steps(self.recipe, n) for n in schedule)

    def ceiling_steps(self, schedule: Sequence[int]) -> int:
        """The all-labelled ceiling's steps: an arm's whole schedule unless set, so that the ceiling is not
        the arm with the least training."""
        return self.all_labelled_steps or self.schedule_steps(schedule)

    def finetune(self, arm: Arm, seed: int, patch: tuple[int, int, int]) -> FinetuneConfig:
        """An arm's fine-tuning in run ``seed``: the shipped recipe with the seed and the model's own window
        as the patch (what a session reads from the model), then the arm's overrides."""
        config = replace(self.recipe, seed=seed, patch_size=tuple(patch), semi_supervised=arm.semi_supervised)
        return replace(config, **dict(arm.finetune_overrides))
