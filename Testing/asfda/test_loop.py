"""What the loop prints about each round."""

from __future__ import annotations

from dataclasses import replace

from asfda.evaluation import Evaluation
from asfda.loop import RoundRecord, evaluate_cases, format_round


def test_a_round_the_guard_kept_back_says_so():
    record = RoundRecord(2, 2, ["tgt_003"], "v0002", 0.38, 17.0, None, 0.0, 3.5, activated=False)
    assert "model v0002 (validated worse: not activated, its parent stays active)," in format_round(record)
    assert "not activated" not in format_round(replace(record, activated=True))


class StubSession:
    """Just what evaluate_cases reads: the active version, its model and the device."""

    def __init__(self):
        self.store = type("Store", (), {"active_version": "v0001"})()
        self.device = "cpu"

    def model(self):
        return self.store.active_version


def test_an_evaluation_is_reused_while_its_version_stays_active(monkeypatch):
    calls = []
    monkeypatch.setattr(
        "asfda.loop.evaluate_model", lambda model, pairs, device: calls.append(model) or Evaluation()
    )
    session, known, pairs = StubSession(), {}, [("image.nii.gz", "label.nii.gz")]
    first = evaluate_cases(session, pairs, known)
    assert evaluate_cases(session, pairs, known) is first  # a round that was not activated
    assert evaluate_cases(session, [], known).cases == []  # no cases, nothing predicted
    session.store.active_version = "v0002"
    evaluate_cases(session, pairs, known)
    evaluate_cases(session, pairs)  # without the cache: predicted again
    assert calls == ["v0001", "v0002", "v0002"]


def test_picking_while_training_takes_the_ranking_in_hand_when_the_round_started(
    tmp_path, tiny_dataset, tiny_model
):
    """As after Save and next: round 2's case comes from the pretrained model's ranking (round 1's case
    out, its embedding counted for diversity), not from round 1's new version."""
    import json

    from asfda.config import QueryConfig, QueryStrategy
    from asfda.loop import LoopSettings, rank_scores, run_loop
    from asfda.scoring.case_scores import CaseScores
    from asfda.session.session import AdaptationSession

    images, references = tiny_dataset.pool[0][0].parent, tiny_dataset.pool[0][1].parent
    settings = LoopSettings(
        rounds=2, steps=1, strategy=QueryStrategy.ASFDA, semi_supervised=False, pick_while_training=True
    )
    lines: list[str] = []
    records = run_loop(tmp_path / "s", tiny_model, images, references, settings, "cpu", report=lines.append)
    session = AdaptationSession.open(tmp_path / "s", "cpu")
    by_name = {r.name: r.id for r in session.store.cases()}
    first, second = by_name[records[1].picked[0]], by_name[records[2].picked[0]]
    folder = session.store.root / "scores" / "v0000"
    pretrained = {
        p.stem: CaseScores.from_json(json.loads(p.read_text()))
        for p in folder.glob("*.json")
        if p.name != "ranking.json"
    }
    # the ranking in hand after round 1's Save: v0000's, with round 1's case labelled
    session.store.final_label_path(second).unlink()  # as it was when round 2 picked
    expected = rank_scores(session, pretrained, QueryConfig(strategy=QueryStrategy.ASFDA, budget=1), None)
    assert [r.case_id for r in expected if r.picked] == [second] and second != first
    assert "round 2: picking from model v0000's ranking, as after Save and next" in lines
    assert (session.store.root / "scores" / "v0001").is_dir()  # the new version was still scored, behind
