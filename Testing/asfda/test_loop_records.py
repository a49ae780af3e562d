"""What a loop round records for later analyses: the query's scores of every pool case, the guard's decision
with the test Dice of both versions (on a tiny dataset, with the guard made to hold a round back), and the
test HD95 per class."""

from __future__ import annotations

import json
import math

import pytest
from asfda.config import FinetuneConfig, QueryStrategy
from asfda.evaluation import evaluate_model, paired_files
from asfda.finetune.guard import GuardDecision
from asfda.loop import LoopSettings, RoundRecord, run_loop
from asfda.loop_records import GuardOutcome, compact, pool_scores
from asfda.scoring.case_scores import CaseScores
from asfda.scoring.query import RankedCase
from asfda.session.session import AdaptationSession

NAMES = {"c1": "tgt_001", "c2": "tgt_002", "c3": "tgt_003"}


def scores(case_id, entropy, embedding, epistemic=None):
    return CaseScores(
        case_id, "v0", 0.5, 0.9, False, entropy, 0.2, 0.1, 0.1, embedding, epistemic, {"1": 0.2, "2": 0.4}
    )


def test_pool_scores_keep_every_case_in_rank_order_and_leave_uncomputed_scores_null():
    ranking = [
        RankedCase("c2", 0.3, 0.7, 1.0, 0.123456789, 1, True),
        RankedCase("c1", 0.1, 0.2, 0.5, 0.05, 2, False),
        RankedCase("c3", 0.2, 0.4, 0.0, float("nan"), 3, False),
    ]
    cached = {
        "c1": scores("c1", 0.11, [1.0, 0.0]),
        "c2": scores("c2", 0.22, [0.0, 1.0]),
        "c3": scores("c3", 0.33, [1.0, 1.0]),
    }
    table = pool_scores(ranking, cached, NAMES)
    assert table.cases == ["tgt_002", "tgt_001", "tgt_003"] and table.rank == [1, 2, 3]
    assert table.score == [0.12346, 0.05, None]  # five significant digits; NaN is null
    assert table.knowledge_gap == [0.3, 0.1, 0.2] and table.asd == [0.7, 0.2, 0.4]
    assert table.mean_entropy == [0.22, 0.11, 0.33] and table.class_entropy == [0.3, 0.3, 0.3]
    assert table.epistemic is None  # no MC dropout in this round
    assert len(table.typicality) == 3 and all(t > 0 for t in table.typicality)
    random = pool_scores(ranking, None, NAMES)  # random scores nothing
    assert random.cases == table.cases and random.knowledge_gap is None and random.typicality is None
    record = RoundRecord(1, 1, ["tgt_002"], "v1", 0.5, 1.0, None, 0.0, 0.0, query_scores=table)
    assert RoundRecord.from_json(record.to_json()) == record
    assert compact(None) is None and compact(math.inf) is None


def test_a_held_back_round_records_the_test_dice_of_both_versions(
    tmp_path, tiny_dataset, tiny_model, monkeypatch
):
    monkeypatch.setattr(
        "asfda.session.rounds.guard_decision",
        lambda parent, dice, validation, *rest: GuardDecision(False, 0.5, 0.4, validation, "held"),
    )
    images, references = tiny_dataset.pool[0][0].parent, tiny_dataset.pool[0][1].parent
    test_images, test_references = tiny_dataset.test[0][0].parent, tiny_dataset.test[0][1].parent
    fixed = ("tgt_001", "tgt_003")
    settings = LoopSettings(
        schedule=(2,),
        strategy=QueryStrategy.TYPICLUST,
        finetune=FinetuneConfig(steps=1, validate_every=1, batch_size=1, semi_supervised=False, seed=0),
        fixed_labelled=fixed,
    )
    records = run_loop(
        tmp_path / "session",
        tiny_model,
        images,
        references,
        settings,
        "cpu",
        test_images,
        test_references,
        report=lambda line: None,
    )
    before, after = records
    assert after.picked == list(fixed) and after.query_scores is None  # the fixed set, not a query
    guard = after.guard
    assert isinstance(guard, GuardOutcome) and not guard.accepted and not after.activated
    assert guard.reason == "held" and guard.validated_better is False
    assert after.test_dice == before.test_dice == guard.parent_test_dice  # the parent stayed active
    session = AdaptationSession.open(tmp_path / "session", "cpu")
    candidate = evaluate_model(
        session.model(after.model_version), paired_files(test_images, test_references), "cpu"
    )
    assert guard.candidate_test_dice == pytest.approx(candidate.mean_dice)
    source = evaluate_model(
        session.model(before.model_version), paired_files(test_images, test_references), "cpu"
    )
    assert before.per_class_hd95 and before.per_class_hd95 == pytest.approx(source.per_class_hd95())
    saved = json.loads(json.dumps(before.to_json()))  # JSON keys are strings
    assert RoundRecord.from_json(saved).per_class_hd95 == before.per_class_hd95
