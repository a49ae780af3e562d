"""The query, annotate, fine-tune loop, with reference masks playing the annotator (demo and benchmark)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .config import FinetuneConfig, QueryConfig, QueryStrategy, round_steps
from .evaluation import Evaluation, evaluate_model, paired_files
from .io.volumes import case_name
from .loop_records import GuardOutcome, PoolScores, guard_outcome, pool_scores
from .reporting import ranking_table
from .scoring.case_scores import CaseScores
from .scoring.query import RankedCase, rank_pool
from .session.session import AdaptationSession


@dataclass
class LoopSettings:
    """``rounds`` rounds of ``budget`` picks, or, when ``schedule`` is given, one round per entry with the
    labelled set grown to that many cases (e.g. 1, 2, 4, 8)."""

    rounds: int = 3
    budget: int = 1
    schedule: tuple[int, ...] | None = None
    steps: int | None = None  # None: the shipped recipe's rule; a number: exactly that many steps a round
    strategy: QueryStrategy = QueryConfig().strategy
    semi_supervised: bool = FinetuneConfig().semi_supervised
    seed: int = 0
    finetune: FinetuneConfig | None = None  # overrides steps / semi_supervised / seed when given
    evaluate_start: bool = (
        True  # evaluate the starting model (round 0); the benchmark does it once for all runs
    )
    # When non-zero, replaces the fine-tuning's steps_per_labelled (older callers set it here; a round trains
    # steps + steps_per_labelled x labelled cases, the rule of FinetuneConfig, applied by the trainer).
    steps_per_labelled: int = 0
    # Cases the first round labels instead of querying (the benchmark's training-noise runs: one fixed
    # labelled set, trained with several seeds).
    fixed_labelled: tuple[str, ...] = ()
    # Pick from the ranking in hand when the previous round started, as the Slicer module serves the next case
    # at once after Save and next while the round trains (the version before it, labelled cases out, their
    # embeddings counted for diversity); False waits for the new version's ranking (the benchmark's arms).
    pick_while_training: bool = False
    trust_bundle_code: bool = False  # a new session may run its bundle's own code (--trust-bundle-code)


@dataclass
class RoundRecord:
    round: int
    n_labelled: int
    picked: list[str]
    model_version: str
    test_dice: float | None
    test_hd95: float | None
    validation_dice: float | None
    scoring_seconds: float
    finetune_seconds: float
    per_class_dice: dict[int, float] = field(default_factory=dict)
    pseudo_labelled: int | None = None  # unlabelled cases the round trained on with pseudo-labels
    per_case_dice: dict[str, float] = field(default_factory=dict)  # test case name -> mean foreground Dice
    per_case_hd95: dict[str, float] = field(default_factory=dict)
    validation_split_dice: dict[str, float] = field(default_factory=dict)  # held-out validation cases
    activated: bool = True  # False: the round validated worse than its parent, which stayed active
    query_scores: PoolScores | None = None  # what the query saw for every pool case (None: no query)
    guard: GuardOutcome | None = None  # the guard's decision and the test Dice of both versions
    per_class_hd95: dict[int, float] = field(default_factory=dict)  # over the test cases holding the class

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> RoundRecord:
        data = dict(data)
        for key in ("per_class_dice", "per_class_hd95"):
            data[key] = {int(k): v for k, v in data.get(key, {}).items()}
        data["query_scores"] = PoolScores.from_json(data.get("query_scores"))
        data["guard"] = GuardOutcome.from_json(data.get("guard"))
        return cls(**data)


def open_or_create(
    session_dir: Path, model: Path, device: str, finetune: FinetuneConfig, trust_bundle_code: bool = False
) -> AdaptationSession:
    if (Path(session_dir) / "session.json").is_file():
        return AdaptationSession.open(session_dir, device)
    return AdaptationSession.create(
        session_dir, model, device, finetune=finetune, trust_bundle_code=trust_bundle_code
    )


def headline_means(evaluation: Evaluation) -> tuple[float | None, float | None]:
    """A round's mean test Dice and HD95 (None for both without test cases)."""
    return (evaluation.mean_dice, evaluation.mean_hd95) if evaluation.cases else (None, None)


def evaluate_cases(session: AdaptationSession, pairs, known: dict | None = None) -> Evaluation:
    """Every case's Dice and HD95 (the benchmark's bootstrap resamples test cases).

    ``known`` keeps evaluations by (active model version, cases): a round that validated worse leaves its
    parent active, whose Dice on the same cases is already known, so it is not predicted again."""
    if not pairs:
        return Evaluation()
    key = (session.store.active_version, tuple(pairs))
    if known is not None and key in known:
        return known[key]
    evaluation = evaluate_model(session.model(), pairs, session.device)
    if known is not None:
        known[key] = evaluation
    return evaluation


def run_loop(
    session_dir: Path,
    model: Path,
    images: Path,
    references: Path,
    settings: LoopSettings,
    device: str = "auto",
    test_images: Path | None = None,
    test_references: Path | None = None,
    report: Callable[[str], None] = print,
    on_round: Callable[[RoundRecord], None] | None = None,
    validation_images: Path | None = None,
    validation_references: Path | None = None,
) -> list[RoundRecord]:
    """Run ``settings.rounds`` rounds; round 0 is the pretrained model before any annotation.

    ``on_round`` is called with each record as soon as its round is evaluated (the benchmark meters costs).
    """
    finetune = settings.finetune or replace(
        FinetuneConfig(),
        semi_supervised=settings.semi_supervised,
        seed=settings.seed,
        **({} if settings.steps is None else {"steps": settings.steps, "steps_per_labelled": 0}),
    )
    if settings.steps_per_labelled:
        finetune = replace(finetune, steps_per_labelled=settings.steps_per_labelled)
    session = open_or_create(session_dir, model, device, finetune, settings.trust_bundle_code)
    session.add_folder(images)
    reference_by_name = {case_name(p): p for p in Path(references).iterdir()}
    test_pairs = paired_files(test_images, test_references) if test_images and test_references else []
    validation_pairs = (
        paired_files(validation_images, validation_references)
        if validation_images and validation_references
        else []
    )
    rng = np.random.default_rng(settings.seed)
    scores_in_hand = None  # (version, scores) of the ranking the previous round's pick came from
    known: dict = {}  # evaluations by model version, reused while a version stays active

    start = evaluate_cases(session, test_pairs if settings.evaluate_start else [], known)
    dice, hd95 = headline_means(start)
    records = [
        RoundRecord(
            0,
            len(session.store.labelled_ids()),
            [],
            session.store.active_version,
            dice,
            hd95,
            None,
            0.0,
            0.0,
            start.per_class_dice(),
            per_class_hd95=start.per_class_hd95(),
        )
    ]
    report(format_round(records[-1]))
    if on_round is not None:
        on_round(records[-1])
    for number, budget in enumerate(round_budgets(settings, len(session.store.labelled_ids())), start=1):
        started = time.perf_counter()
        if number == 1 and settings.fixed_labelled:
            ranking, picked = None, [session.case_by_name(name).id for name in settings.fixed_labelled]
        else:
            report(f"round {number}: ranking the pool by {settings.strategy.value}")
            ranking = query(session, settings.strategy, budget, rng)
            seen = ranked_scores(session, settings.strategy, ranking)
            if settings.pick_while_training and settings.strategy is not QueryStrategy.RANDOM:
                in_hand, scores_in_hand = scores_in_hand, (session.store.active_version, session.score_all())
                if in_hand is not None:
                    used = in_hand[0]
                    report(f"round {number}: picking from model {used}'s ranking, as after Save and next")
                    config = QueryConfig(strategy=settings.strategy, budget=budget)
                    ranking, seen = rank_scores(session, in_hand[1], config, rng), in_hand[1]
            picked = [row.case_id for row in ranking if row.picked]
        scoring_seconds = time.perf_counter() - started
        scores = None
        if ranking is not None:
            by_id = case_names(session)
            scores = pool_scores(ranking, seen, by_id)
            if number == 1:
                report(ranking_table(ranking, by_id, settings.strategy))
        for case_id in picked:  # the annotator: the reference mask stands in for the corrected prediction
            session.submit_label(case_id, reference_by_name[session.store.case(case_id).name])
        n_labelled = len(session.store.labelled_ids())
        names = ", ".join(session.store.case(c).name for c in picked)
        steps = round_steps(finetune, n_labelled)
        report(f"round {number}: {names} labelled; fine-tuning {steps} steps on {n_labelled} labelled")
        version = session.finetune(finetune)
        held_back = version.id != session.store.active_version  # the guard kept the parent active
        candidate = version_test_dice(session, version.id, test_pairs) if held_back else None
        test = evaluate_cases(session, test_pairs, known)
        dice, hd95 = headline_means(test)
        validation = evaluate_cases(session, validation_pairs, known)
        guard = guard_outcome(
            version.metrics,
            round_json(session, version.id),
            case_names(session),
            candidate if held_back else dice,
            records[-1].test_dice,  # the active model before the round: the parent
        )
        records.append(
            RoundRecord(
                number,
                len(session.store.labelled_ids()),
                [session.store.case(c).name for c in picked],
                version.id,
                dice,
                hd95,
                version.metrics.get("val_dice"),
                scoring_seconds,
                version.metrics.get("seconds", 0.0),
                test.per_class_dice(),
                version.metrics.get("n_pseudo_labelled"),
                {c.name: c.mean_dice for c in test.cases},
                {c.name: c.mean_hd95 for c in test.cases},
                {c.name: c.mean_dice for c in validation.cases},
                version.metrics.get("accepted", True),
                scores,
                guard,
                test.per_class_hd95(),
            )
        )
        report(format_round(records[-1]))
        if on_round is not None:
            on_round(records[-1])
    return records


def query(
    session: AdaptationSession, strategy: QueryStrategy, budget: int, rng: np.random.Generator
) -> list[RankedCase]:
    """The round's ranking. Random picks need no scores, so they do not pay for a pass over the pool (the
    benchmark's cost table would otherwise charge random with our scoring)."""
    if strategy is not QueryStrategy.RANDOM:
        return session.rank(QueryConfig(strategy=strategy, budget=budget), rng=rng)
    labelled = set(session.store.labelled_ids())
    pool = [r.id for r in session.store.cases() if r.id not in labelled]
    draws = rng.random(len(pool))
    order = sorted(range(len(pool)), key=lambda i: -draws[i])
    nan = float("nan")
    return [
        RankedCase(pool[i], nan, nan, nan, float(draws[i]), rank + 1, rank < budget)
        for rank, i in enumerate(order)
    ]


def case_names(session: AdaptationSession) -> dict[str, str]:
    return {r.id: r.name for r in session.store.cases()}


def ranked_scores(
    session: AdaptationSession, strategy: QueryStrategy, ranking: list[RankedCase]
) -> dict | None:
    """The cached scores the ranking was made from (no forward pass: ``rank`` has just scored every case);
    None for random, which scores nothing."""
    if strategy is QueryStrategy.RANDOM:
        return None
    return {row.case_id: session.case_scores(row.case_id) for row in ranking}


def version_test_dice(session: AdaptationSession, version: str, test_pairs) -> float | None:
    """Held-out Dice of a version that is not the active one (a round the guard held back)."""
    if not test_pairs:
        return None
    return evaluate_model(session.model(version), test_pairs, session.device).mean_dice


def round_json(session: AdaptationSession, version: str) -> dict | None:
    return next((r for r in session.store.rounds() if r.get("model_version") == version), None)


def rank_scores(
    session: AdaptationSession, scores: dict[str, CaseScores], config: QueryConfig, rng: np.random.Generator
) -> list[RankedCase]:
    """The unlabelled cases ranked from ``scores`` (of an earlier version) as ``AdaptationSession.rank``
    ranks the active version's: labelled cases out, their embeddings counted for diversity."""
    labelled = set(session.store.labelled_ids())
    records = {r.id: r for r in session.store.cases()}
    pool = [s for case_id, s in scores.items() if case_id not in labelled]
    labelled_embeddings = [scores[case_id].embedding for case_id in labelled if case_id in scores]
    return rank_pool(pool, labelled_embeddings, config, [records[s.case_id].last_served for s in pool], rng)


def round_budgets(settings: LoopSettings, already_labelled: int) -> list[int]:
    """Picks per round: constant, or the steps between the schedule's cumulative labelled counts; a fixed
    labelled set is the first round's picks."""
    if settings.fixed_labelled:
        targets = [n for n in settings.schedule or () if n > len(settings.fixed_labelled)]
        first = len(settings.fixed_labelled)
        return [first] + [b - a for a, b in zip([first, *targets], targets)]
    if settings.schedule is None:
        return [settings.budget] * settings.rounds
    targets = [n for n in settings.schedule if n > already_labelled]
    return [b - a for a, b in zip([already_labelled, *targets], targets)]


def format_round(record: RoundRecord) -> str:
    dice = "n/a" if record.test_dice is None else f"{record.test_dice:.4f}"
    hd95 = "n/a" if record.test_hd95 is None else f"{record.test_hd95:.2f} mm"
    picked = ", ".join(record.picked) or "-"
    return (
        f"round {record.round}: {record.n_labelled} labelled (picked {picked}), "
        f"model {record.model_version}"
        + ("" if record.activated else " (validated worse: not activated, its parent stays active)")
        + ", "
        f"held-out Dice {dice}, HD95 {hd95}, scoring {record.scoring_seconds:.1f} s, "
        f"fine-tuning {record.finetune_seconds:.1f} s"
    )
