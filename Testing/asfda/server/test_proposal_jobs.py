"""The proposal job a saved mask queues builds the next case's proposal only (it runs before the round the
mask starts; the cases after it are built with the round's model), and a waiting job asked again keeps
both what it was asked for and whether to build the cases ahead.

The backend runs in process with its job manager never started: the test reads the queued jobs."""

from __future__ import annotations

from pathlib import Path

from asfda.server.backend import Backend, ServerSettings
from asfda.server.job_records import JobKind, proposes_ahead
from asfda.server.jobs import JobManager
from asfda.server.paths import PathGuard
from asfda.session.session import AdaptationSession


def backend_of(tmp_path: Path, dataset, model) -> Backend:
    session = AdaptationSession.create(tmp_path / "session", model, "cpu")
    session.add_folder(dataset.pool[0][0].parent)
    jobs = JobManager(session.store, "cpu", worker=print)  # never started
    return Backend(session, PathGuard(session.store.root, ()), ServerSettings(), jobs)


def queued_proposals(backend: Backend) -> list:
    return [job for job in backend.jobs.active() if job.kind is JobKind.PROPOSE]


def test_a_saved_mask_queues_the_next_case_s_proposal_only(tmp_path, tiny_dataset, tiny_model):
    backend = backend_of(tmp_path, tiny_dataset, tiny_model)
    first, following = backend.store.cases()[0], backend.store.cases()[1]
    mask = dict(tiny_dataset.pool)[Path(first.source_path)]
    with open(mask, "rb") as stream:
        backend.submit_label(first.id, mask.name, stream)

    (job,) = queued_proposals(backend)  # one labelled case: the one-case rule's proposal is built
    assert job.options["cases"] == [following.id] and not proposes_ahead(job.options)


def test_a_waiting_job_asked_again_keeps_its_cases_and_its_cases_ahead(tmp_path, tiny_dataset, tiny_model):
    jobs = backend_of(tmp_path, tiny_dataset, tiny_model).jobs
    after_round = jobs.ensure_proposal()  # the next cases, with the new model
    asked = jobs.ensure_proposal(("case-a",))  # a client opened a case meanwhile
    assert asked.id == after_round.id
    assert asked.options["cases"] == ["case-a"] and proposes_ahead(asked.options)
    assert jobs.ensure_proposal(("case-b",)).options["cases"] == ["case-a", "case-b"]
    assert proposes_ahead({"cases": []}) and not proposes_ahead({"cases": ["x"]})  # jobs recorded before
