"""The round's plan: which unlabelled cases it pseudo-labels (by the round's own thresholds), which labelled
cases it validates on, and what a session records of them."""

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from asfda.config import FinetuneConfig
from asfda.scoring.case_scores import CaseScores
from asfda.session.rounds import held_out_cases, labelled_in_order, plan_round
from asfda.session.session import AdaptationSession


def scores(case_id: str, confidence: float, embedding: list[float]) -> CaseScores:
    return CaseScores(case_id, "v0000", 0.1, confidence, False, 0.1, 0.0, 0.0, 0.0, embedding)


def planning_session(session_config: FinetuneConfig, pool: dict[str, CaseScores]):
    store = SimpleNamespace(
        labelled_ids=lambda: ["a"],
        active_version="v0000",
        next_round_number=lambda: 1,
        journal=lambda: [],
        rounds=lambda: [],
        cases=lambda: [],
    )
    return SimpleNamespace(store=store, finetune_config=session_config, score_all=lambda cancelled=None: pool)


def test_the_round_pseudo_labels_by_its_own_thresholds_not_the_sessions():
    pool = {
        "a": scores("a", 0.95, [1.0, 0.0]),  # the labelled case
        "b": scores("b", 0.70, [1.0, 0.1]),
        "c": scores("c", 0.95, [0.9, 0.1]),
    }
    strict = FinetuneConfig(semi_supervised=True, tau_conf=0.9, tau_dist=1.0)
    session = planning_session(strict, pool)
    assert plan_round(session, strict, None, ()).reliable == ["c"]
    lenient = replace(strict, tau_conf=0.5)
    assert plan_round(session, lenient, None, ()).reliable == ["b", "c"]
    assert plan_round(session, lenient, None, ("b",)).reliable == ["c"]
    assert plan_round(session, replace(lenient, semi_supervised=False), None, ()).reliable == []


def test_the_validation_set_only_grows_from_cases_no_round_trained_on_never_the_newest():
    config = FinetuneConfig(hold_out_validation=True)  # 20 % of the labelled cases, 1 to 3
    assert held_out_cases(["a"], [], set(), config) == []  # one case: it trains
    assert held_out_cases(["a", "b"], [], set(), config) == ["a"]  # two at once: the older validates
    # one new case a round: the newest trains and every earlier one has been trained on, so nothing joins
    assert held_out_cases(["a", "b"], [], {"a"}, config) == []
    # the set is kept (never the case the previous round trained on) and grows with untrained cases only
    assert held_out_cases(["a", "b", "c"], ["a"], {"b"}, config) == ["a"]
    labelled = [f"c{i}" for i in range(12)]
    assert held_out_cases(labelled, ["c0"], {"c1", "c2"}, config) == ["c0", "c3"]  # round(0.2 x 12) = 2
    assert held_out_cases(labelled, [], set(), config) == ["c0", "c1"]
    assert len(held_out_cases([f"c{i}" for i in range(40)], [], set(), config)) == 3  # at most 3
    assert held_out_cases(["a", "b"], ["a"], {"a"}, config) == []  # trained on since (hold-out was off)
    assert held_out_cases(["a", "b"], [], set(), replace(config, hold_out_validation=False)) == []


def test_the_newest_labelled_case_is_the_last_one_submitted():
    journal = [{"event": "label_submitted", "case": c} for c in ("b", "a", "c", "b")]
    store = SimpleNamespace(labelled_ids=lambda: ["a", "b", "c", "d"], journal=lambda: journal)
    assert labelled_in_order(store) == ["d", "a", "c", "b"]  # d: labelled before the journal said so


@pytest.fixture
def session(tmp_path, tiny_dataset, tiny_model):
    session = AdaptationSession.create(tmp_path / "session", tiny_model, "cpu")
    session.add_folder(tiny_dataset.pool[0][0].parent)
    return session


def label(session, tiny_dataset, record):
    session.submit_label(record.id, dict(tiny_dataset.pool)[Path(record.source_path)])


def test_rounds_validate_on_held_out_cases_and_record_them(session, tiny_dataset):
    first, second, third, _ = session.store.cases()
    label(session, tiny_dataset, first)
    label(session, tiny_dataset, second)
    config = FinetuneConfig(
        steps=2,
        steps_per_labelled=0,
        validate_every=1,
        batch_size=1,
        hold_out_validation=True,
        batchnorm_pool_cases=32,  # the pool's cases join the BatchNorm statistics (off by default)
    )
    session.finetune(config)
    record = session.store.rounds()[-1]
    assert record["held_out"] == [first.id] and record["guard"]["validation"] == "held-out"
    assert record["guard"]["cases"] == [first.name] and set(record["candidates"]) == {"0", "1", "2"}
    assert record["guard"]["parent_dice"] == record["candidates"]["0"]
    assert record["batchnorm"]["pool_cases"] == sorted([c.id for c in (third, _)])
    label(session, tiny_dataset, third)
    session.finetune(config)
    record = session.store.rounds()[-1]
    assert record["held_out"] == [first.id]  # kept; the case round 1 trained on is never validated on
    assert sorted(set(record["labelled"]) - set(record["held_out"])) == sorted([second.id, third.id])


def test_a_round_that_does_not_validate_better_leaves_its_parent_active(session, tiny_dataset):
    first, second = session.store.cases()[:2]
    label(session, tiny_dataset, first)
    label(session, tiny_dataset, second)
    unreachable = FinetuneConfig(
        steps=1, steps_per_labelled=0, batch_size=1, guard_tolerance=-1.0, hold_out_validation=True
    )
    version = session.finetune(unreachable)  # a trained step would have to beat the parent by a whole Dice
    assert not version.metrics["accepted"] and session.store.active_version == "v0000"
    assert "the parent stays active" in version.metrics["guard_reason"]
    assert session.model().network is session.pretrained().network  # inference uses the parent's weights
