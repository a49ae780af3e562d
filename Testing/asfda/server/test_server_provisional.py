"""The first suggestion before the pool's first scoring ends: ``next`` and ``/ranking?wait=false`` serve a
provisional ranking of the cases scored so far, marked as such, which the complete one replaces; the scoring
takes the pool in an order spread over it; a provisional suggestion is never a labelled or held case.

The backend runs in process with its job manager never started: the test scores cases itself, as the scoring
job would, one after the other (``session.case_scores`` writes each case's scores as the job does)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from asfda.scoring.query import rank_pool
from asfda.server.backend import Backend, ServerSettings
from asfda.server.jobs import JobManager
from asfda.server.paths import PathGuard
from asfda.server.ranking import cached_scores
from asfda.session.query import scoring_order, spread_order
from asfda.session.records import CaseRecord
from asfda.session.session import AdaptationSession
from fastapi import HTTPException

MINIMUM = 2  # cases scored before a provisional ranking (the tiny pool has 4)


def fresh_session(tmp_path: Path, dataset, model) -> AdaptationSession:
    session = AdaptationSession.create(tmp_path / "session", model, "cpu")
    session.add_folder(dataset.pool[0][0].parent)
    return session


def backend_of(session: AdaptationSession) -> Backend:
    jobs = JobManager(session.store, "cpu", worker=print)  # never started: the test does the scoring
    settings = ServerSettings(ranking_wait_seconds=0.6, provisional_min_scored=MINIMUM)
    return Backend(session, PathGuard(session.store.root, ()), settings, jobs)


def score_next(session: AdaptationSession, count: int) -> list[str]:
    """Score the next ``count`` cases in the scoring job's order; their ids."""
    version = session.store.active_version
    waiting = [
        r
        for r in scoring_order(session.store.cases(), time.time())
        if not session.store.scores_path(version, r.id).is_file()
    ]
    for record in waiting[:count]:
        session.case_scores(record.id)
    return [r.id for r in waiting[:count]]


def test_partial_ranking_is_served_provisional_then_replaced_by_the_complete_one(
    tmp_path, tiny_dataset, tiny_model
):
    session = fresh_session(tmp_path, tiny_dataset, tiny_model)
    backend = backend_of(session)
    first = score_next(session, MINIMUM - 1)
    too_few = backend.ranking(wait=False)
    assert not too_few.complete and not too_few.provisional and too_few.next is None
    assert all(case.rank is None for case in too_few.cases)
    with pytest.raises(HTTPException) as waited:  # nothing to serve yet: next waits (here, until 0.6 s)
        backend.next_case("annotator")
    assert waited.value.status_code == 409

    scored = set(first) | set(score_next(session, 1))
    partial = backend.ranking(wait=False)
    assert partial.provisional and not partial.complete
    assert (partial.scored, partial.pool_size) == (MINIMUM, 4)
    ranked = [case for case in partial.cases if case.rank is not None]
    assert {case.id for case in ranked} <= scored and len(ranked) == MINIMUM
    assert all(case.provisional for case in ranked) and partial.next in {case.id for case in ranked}
    # ranked among the scored cases alone: typicality and clusters of the subset, not of the pool
    records = session.store.cases()
    pool = cached_scores(session.store, "v0000", records)
    expected = rank_pool(list(pool.scores.values()), [], session.query_config, [None] * MINIMUM)
    assert [(c.id, c.rank) for c in ranked] == [(r.case_id, r.rank) for r in expected]

    case = backend.next_case("annotator")
    assert case.provisional and case.id == partial.next and case.model_version == "v0000"
    served = [e for e in session.store.journal() if e["event"] == "case_served"]
    assert served[-1]["provisional"] == f"{MINIMUM} of 4 scored"

    session.rank()  # the scoring job's end: every case scored
    complete = backend.ranking(wait=False)
    assert complete.complete and not complete.provisional and complete.scored == 4
    assert sum(c.rank is not None for c in complete.cases) == 4
    assert not any(c.provisional for c in complete.cases)
    following = backend.next_case("annotator")
    assert not following.provisional and following.id != case.id


def test_a_provisional_suggestion_is_never_labelled_or_held(tmp_path, tiny_dataset, tiny_model):
    session = fresh_session(tmp_path, tiny_dataset, tiny_model)
    backend = backend_of(session)
    scored = score_next(session, 3)
    labels = {image.name: label for image, label in tiny_dataset.pool}
    labelled = scored[0]
    session.submit_label(labelled, labels[Path(session.store.case(labelled).source_path).name])
    first = backend.next_case("a")
    second = backend.next_case("b")
    assert first.provisional and second.provisional
    assert {first.id, second.id} == set(scored[1:])  # neither the labelled case nor the one held by "a"
    with pytest.raises(HTTPException) as waited:  # every scored case is labelled or held: wait for more
        backend.next_case("c")
    assert waited.value.status_code == 409
    (last,) = score_next(session, 1)
    third = backend.next_case("c")
    assert third.id == last and third.provisional is False  # the pool is now complete


def test_the_scoring_order_spreads_over_the_pool_after_the_served_cases():
    for count in range(1, 65):
        order = spread_order(count)
        assert sorted(order) == list(range(count))
        for scored in range(1, count + 1):
            # the widest stretch of the pool not scored yet is at most twice an even share
            points = [-1, *sorted(order[:scored]), count]
            widest = max(b - a for a, b in zip(points, points[1:]))
            assert widest <= 2 * (count + 1) / scored, (count, scored, order[:scored])
    now = 10_000.0
    pool = [CaseRecord(f"c{i:02d}", f"c{i:02d}", f"c{i:02d}") for i in range(20)]
    pool[13].last_served = now - 60  # held by an annotator: its scores are awaited first
    order = [r.id for r in scoring_order(pool, now)]
    assert order[0] == "c13" and sorted(order) == sorted(r.id for r in pool)
    first_eight = [int(case_id[1:]) for case_id in order[1:9]]
    assert {i // 5 for i in first_eight} == {0, 1, 2, 3}  # every quarter of the folder among the first 8
