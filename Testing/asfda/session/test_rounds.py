"""The round's plan: which unlabelled cases it pseudo-labels, by the thresholds of the round's own config."""

from dataclasses import replace
from types import SimpleNamespace

from asfda.config import FinetuneConfig
from asfda.scoring.case_scores import CaseScores
from asfda.session.rounds import plan_round


def scores(case_id: str, confidence: float, embedding: list[float]) -> CaseScores:
    return CaseScores(case_id, "v0000", 0.1, confidence, False, 0.1, 0.0, 0.0, 0.0, embedding)


def planning_session(session_config: FinetuneConfig, pool: dict[str, CaseScores]):
    store = SimpleNamespace(labelled_ids=lambda: ["a"], active_version="v0000", next_round_number=lambda: 1)
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
