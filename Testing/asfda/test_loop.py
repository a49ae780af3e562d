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
