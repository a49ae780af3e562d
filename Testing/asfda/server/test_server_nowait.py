"""The radiologist never waits: after a round, ``next`` and the served case's prediction answer at once from
the last complete ranking while the new version's rescoring is still queued (the backend in process, its
job manager never started, so a job that ``next`` waited for would never end)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import SimpleITK as sitk
from asfda.config import FinetuneConfig
from asfda.inference.labelmap import predict_labelmap
from asfda.scoring.query import rank_pool
from asfda.server.backend import Backend, PredictionFormat, ServerSettings
from asfda.server.job_records import JobKind
from asfda.server.jobs import JobManager
from asfda.server.paths import PathGuard
from asfda.server.ranking import cached_scores
from asfda.session.session import AdaptationSession


@pytest.fixture(scope="module")
def after_a_round(tmp_path_factory, tiny_dataset, tiny_model):
    """A session whose pool was scored by v0000, one case labelled, round 1 done (v0001 active, unscored)."""
    session = AdaptationSession.create(tmp_path_factory.mktemp("nowait") / "session", tiny_model, "cpu")
    session.add_folder(tiny_dataset.pool[0][0].parent)
    first = session.next_case(session.rank())
    session.submit_label(first.id, dict(tiny_dataset.pool)[Path(first.source_path)])
    session.finetune(FinetuneConfig(steps=2, semi_supervised=False, accept_worse=True))
    assert session.store.active_version == "v0001"
    return session, first.id


def backend_of(session: AdaptationSession) -> Backend:
    jobs = JobManager(session.store, "cpu", worker=print)  # never started: its jobs stay queued
    settings = ServerSettings(ranking_wait_seconds=1.0)  # a wait for the rescoring would end in a 409
    return Backend(session, PathGuard(session.store.root, ()), settings, jobs)


def test_next_answers_from_the_last_complete_ranking_while_the_new_version_is_unscored(after_a_round):
    session, labelled = after_a_round
    backend = backend_of(session)
    asked = time.perf_counter()
    case = backend.next_case("annotator")
    seconds = time.perf_counter() - asked
    assert case.model_version == "v0000" and case.id != labelled and case.status.value == "suggested"
    assert seconds < 1.0, f"next took {seconds:.2f} s: it waited for the rescoring"
    # the rescoring of the new version is on its way
    assert [job.model_version for job in backend.jobs.active(JobKind.SCORE)] == ["v0001"]
    # the ranking served from: v0000's scores, the labelled case out and its embedding counted for diversity
    records = session.store.cases()
    pool = cached_scores(session.store, "v0000", records)
    served = backend._rank(pool, records, {labelled})
    unlabelled = [pool.scores[r.id] for r in records if r.id != labelled]
    expected = rank_pool(
        unlabelled,
        [pool.scores[labelled].embedding],
        session.query_config,
        [r.last_served for r in records if r.id != labelled],
    )
    assert [(r.case_id, r.rank) for r in served] == [(r.case_id, r.rank) for r in expected]
    assert labelled not in {r.case_id for r in served}


def test_prediction_is_the_saved_one_with_its_version_until_the_rescoring(after_a_round):
    session, labelled = after_a_round
    backend = backend_of(session)
    case_id = next(r.id for r in session.store.cases() if r.id != labelled)
    path, name, version, source = backend.prediction_file(case_id, PredictionFormat.NIFTI)
    assert version == "v0000" and path == session.store.predicted_label_path(case_id, "v0000")
    assert source.source == "model" and "no choice made yet" in source.summary  # made before any choice
    assert name.endswith("_prediction_v0000.nii.gz")
    segmentation, _, version, _ = backend.prediction_file(case_id, PredictionFormat.SEG_NRRD)
    assert version == "v0000" and sitk.ReadImage(str(segmentation)).GetMetaData("Segment0_Name")
    # the label map the scoring kept is the one a prediction of its own would give
    on_demand = predict_labelmap(session.model("v0000"), session.image(case_id))
    assert (sitk.GetArrayFromImage(on_demand) == sitk.GetArrayFromImage(sitk.ReadImage(str(path)))).all()
    session.rank()  # the rescoring: v0001's scores and label maps
    case = backend.next_case("annotator")
    path, _, version, _ = backend.prediction_file(case.id, PredictionFormat.NIFTI)
    assert case.model_version == "v0001" and version == "v0001"
    assert path == session.store.predicted_label_path(case.id, "v0001")
