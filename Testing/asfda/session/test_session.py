"""The loop's operations on a small real volume set (ICBM152 T2 at 6 mm) with a small random model."""

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from asfda.config import FinetuneConfig, QueryConfig, QueryStrategy
from asfda.errors import CancelledError, StoreError
from asfda.io.volumes import Geometry, read_volume
from asfda.session.session import AdaptationSession


@pytest.fixture
def session(tmp_path, tiny_dataset, tiny_model):
    session = AdaptationSession.create(tmp_path / "session", tiny_model, "cpu")
    session.add_folder(tiny_dataset.pool[0][0].parent)
    return session


def reference_of(session, case_id, tiny_dataset):
    return dict(tiny_dataset.pool)[Path(session.store.case(case_id).source_path)]


def test_ranking_scores_every_case_once_per_model_version(session):
    ranking = session.rank(QueryConfig(budget=2))
    assert sorted(r.rank for r in ranking) == [1, 2, 3, 4]
    assert [r.picked for r in sorted(ranking, key=lambda r: r.rank)] == [True, True, False, False]
    assert all(np.isfinite([r.knowledge_gap, r.asd, r.score]).all() for r in ranking)
    cached = sorted((session.store.root / "scores" / "v0000").glob("*.json"))
    assert len(cached) == 4 + 1  # four cases and the ranking
    mtimes = [p.stat().st_mtime_ns for p in cached if p.name != "ranking.json"]
    session.rank(QueryConfig(budget=2))
    assert mtimes == [p.stat().st_mtime_ns for p in cached if p.name != "ranking.json"]


@pytest.mark.parametrize("strategy", list(QueryStrategy))
def test_every_strategy_ranks_the_pool(session, strategy):
    ranking = session.rank(
        QueryConfig(strategy=strategy, budget=1, mc_dropout_passes=2), rng=np.random.default_rng(0)
    )
    assert len(ranking) == 4 and sum(r.picked for r in ranking) == 1


def test_next_case_is_not_handed_to_two_annotators(session):
    session.rank()
    first, second = session.next_case(), session.next_case()
    assert first.id != second.id


def test_prediction_is_written_on_the_case_grid(session, tmp_path):
    case = session.store.cases()[0]
    for name in ("prediction.nii.gz", "prediction.seg.nrrd"):
        path = session.write_prediction(case.id, tmp_path / name)
        assert Geometry.of(read_volume(path)).mismatch(Geometry.of(session.image(case.id))) is None
    header = sitk.ReadImage(str(tmp_path / "prediction.seg.nrrd"))
    assert header.GetMetaData("Segment0_Name") == "other in-brain"


def test_finetune_needs_a_label(session):
    with pytest.raises(StoreError, match="no labelled case yet"):
        session.finetune(FinetuneConfig(steps=1))


def test_a_round_makes_a_new_version_with_its_parent(session, tiny_dataset):
    ranking = session.rank(QueryConfig(budget=2))
    for row in ranking[:2]:
        session.submit_label(row.case_id, reference_of(session, row.case_id, tiny_dataset))
    version = session.finetune(
        FinetuneConfig(steps=4, steps_per_labelled=0, validate_every=2, accept_worse=True)
    )
    assert version.id == "v0001" and version.parent == "v0000" and version.round == 1
    assert 0.0 <= version.metrics["val_dice"] <= 1.0
    assert session.store.active_version == "v0001"
    assert (session.store.root / "models" / "v0001" / "model.pt").is_file()
    assert sorted(session.store.rounds()[0]["labelled"]) == sorted(session.store.labelled_ids())
    # the new version scores the pool afresh; the pretrained weights are untouched
    session.rank()
    assert (session.store.root / "scores" / "v0001" / "ranking.json").is_file()
    pretrained = session.model("v0000").network.state_dict()
    fine_tuned = session.model("v0001").network.state_dict()
    assert any((pretrained[k].float() - fine_tuned[k].float()).abs().max() > 0 for k in pretrained)
    reopened = AdaptationSession.open(session.store.root, "cpu")
    assert reopened.store.active_version == "v0001" and reopened.store.round_number == 1


def test_cancelled_round_changes_nothing(session, tiny_dataset):
    case = session.store.cases()[0]
    session.submit_label(case.id, reference_of(session, case.id, tiny_dataset))
    calls = iter([False] * 2 + [True] * 1000)
    with pytest.raises(CancelledError):
        session.finetune(
            FinetuneConfig(steps=20, steps_per_labelled=0, semi_supervised=False),
            cancelled=lambda: next(calls),
        )
    assert session.store.active_version == "v0000"
    assert [v.id for v in session.store.versions()] == ["v0000"]
    assert session.store.journal()[-1]["event"] == "round_cancelled"


def test_served_cases_are_scored_first_the_latest_first():
    from asfda.session.records import CaseRecord
    from asfda.session.session import SERVE_LEASE_SECONDS, scoring_order

    now = 10_000.0
    pool = [
        CaseRecord("a", "a", "a"),
        CaseRecord("b", "b", "b", last_served=now - 60),
        CaseRecord("c", "c", "c", last_served=now - SERVE_LEASE_SECONDS - 1),  # its lease is over
        CaseRecord("d", "d", "d", last_served=now - 5),
    ]
    assert [r.id for r in scoring_order(pool, now)] == ["d", "b", "a", "c"]
