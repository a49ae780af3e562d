"""The whole loop over HTTP against the real backend process, in order: add cases, rank, fetch a prediction,
submit masks, fine-tune, new ranking; then a cancelled round and a backend killed in the middle of a round.

The tests of this module share one session and run in file order (each builds on the one before).
"""

from __future__ import annotations

import json
import stat
import threading
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
import SimpleITK as sitk
from asfda.io.volumes import Geometry
from server_process import pool_folders, start_server, wait_for_job

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loop(tmp_path_factory, tiny_dataset, tiny_model):
    images, labels = pool_folders(tiny_dataset)
    session = tmp_path_factory.mktemp("loop") / "session"
    state = SimpleNamespace(
        session=session,
        images=images,
        labels=labels,
        model=tiny_model,
        figures={},
        server=start_server(session, tiny_model, allow=(images, labels)),
    )
    yield state
    state.server.stop()
    print("\nbackend figures:", json.dumps(state.figures, indent=2))


def reference_mask(loop, case: dict) -> Path:
    return loop.labels / f"{case['name']}.nii.gz"


def submit_mask(client, case_id: str, mask: Path):
    with open(mask, "rb") as stream:
        return client.put(f"/cases/{case_id}/label", files={"file": (mask.name, stream)})


def journal(session: Path) -> list[dict]:
    return [json.loads(line) for line in (session / "journal.jsonl").read_text().splitlines()]


def last_round_event(session: Path, event: str = "") -> dict:
    """The journal's last event of a round (``round_<event>`` when ``event`` is given): proposal jobs log
    events of their own in between."""
    return [e for e in journal(session) if e["event"].startswith(f"round_{event}")][-1]


def finished_jobs(client, timeout: float = 60.0) -> list[dict]:
    """Every job once none is running: a ranking is complete as soon as its scores are on disk, a moment
    before the backend marks the scoring job finished."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = client.get("/jobs").json()
        if all(j["state"] not in ("queued", "running") for j in jobs):
            return jobs
        assert time.monotonic() < deadline, jobs
        time.sleep(0.05)


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def wait_until_training(client, job_id: str) -> dict:
    job = wait_for_job(client, job_id, until=lambda j: j["state"] == "running" and j["progress"] > 0)
    assert job["state"] == "running", job
    return job


def test_backend_announces_itself(loop):
    server_file = loop.session / "server.json"
    assert stat.S_IMODE(server_file.stat().st_mode) == 0o600
    info = json.loads(server_file.read_text())
    assert info["url"].startswith("http://127.0.0.1:") and info["port"] > 0 and len(info["token"]) >= 32
    with loop.server.client() as client:
        assert client.get("/health").json() == {"status": "ok"}
        answer = client.get("/info").json()
    assert answer["device"] == "cpu" and answer["gpu_name"] is None
    assert answer["model_version"] == "v0000" and answer["torch"] and answer["monai"]
    assert answer["labels"]["0"] == "background"


def test_add_cases_once(loop, tiny_dataset):
    with loop.server.client() as client:
        added = client.post("/cases", json={"folder": str(loop.images)})
        assert added.status_code == 200, added.text
        again = client.post("/cases", json={"path": str(tiny_dataset.pool[0][0])})
        assert again.status_code == 200
        cases = client.get("/cases").json()
    assert len(added.json()) == len(tiny_dataset.pool) == len(cases)
    assert again.json()[0]["id"] in {c["id"] for c in added.json()}
    assert {c["status"] for c in cases} == {"unlabelled"}


def test_ranking_scored_by_a_job_while_requests_are_answered(loop):
    with loop.server.client() as client:
        started = time.perf_counter()
        job = client.post("/score").json()
        partial = client.get("/ranking?wait=false").json()  # answers at once, while the job scores
        timings, failures = [], []

        def ask() -> None:
            sent = time.perf_counter()
            answer = client.get("/cases")
            (timings if answer.status_code == 200 else failures).append(time.perf_counter() - sent)

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ranking = client.get("/ranking").json()  # waits for the scoring job
        loop.figures["first_ranking_seconds"] = round(time.perf_counter() - started, 1)
        first = client.post("/next", json={"client": "annotator A"}).json()
        second = client.post("/next", json={"client": "annotator B"}).json()
        jobs = client.get("/jobs").json()
    assert job["kind"] == "score" and partial["job"]["id"] == job["id"]
    assert partial["complete"] is False and partial["next"] is None
    assert not failures and max(timings) < 5.0
    assert ranking["complete"] and ranking["model_version"] == "v0000" and ranking["job"] is None
    assert [c["rank"] for c in ranking["cases"]] == [1, 2, 3, 4]
    assert all(c["dkd"] is not None and c["asd"] is not None for c in ranking["cases"])
    assert first["id"] == ranking["next"]
    assert second["id"] != first["id"], "two clients got the same case"
    assert first["last_served"] is not None and first["status"] == "suggested"
    assert [(j["id"], j["kind"], j["state"]) for j in jobs] == [(job["id"], "score", "done")]
    loop.first, loop.second = first, second


def test_prediction_and_image_keep_the_geometry(loop, tmp_path):
    case = loop.first
    source = sitk.ReadImage(case["source_path"])
    with loop.server.client() as client:
        for name, url in (
            ("prediction.nii.gz", f"/cases/{case['id']}/prediction"),
            ("prediction.seg.nrrd", f"/cases/{case['id']}/prediction?format=seg.nrrd"),
            ("image.nii.gz", f"/cases/{case['id']}/image"),
        ):
            answer = client.get(url)
            assert answer.status_code == 200, answer.text
            (tmp_path / name).write_bytes(answer.content)
    for name in ("prediction.nii.gz", "prediction.seg.nrrd", "image.nii.gz"):
        assert Geometry.of(source).mismatch(Geometry.of(sitk.ReadImage(str(tmp_path / name)))) is None, name
    segmentation = sitk.ReadImage(str(tmp_path / "prediction.seg.nrrd"))
    assert segmentation.GetMetaData("Segment0_Name") == "other in-brain"
    image = sitk.ReadImage(str(tmp_path / "image.nii.gz"))
    assert (sitk.GetArrayViewFromImage(image) == sitk.GetArrayViewFromImage(source)).all()


def test_mask_finetune_and_new_ranking(loop):
    """The figure: seconds from a mask submitted to the ranking of the new model; and requests served while
    the round runs."""
    with loop.server.client() as client:
        started = time.perf_counter()
        answer = submit_mask(client, loop.first["id"], reference_mask(loop, loop.first))
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "labelled"
        assert (loop.session / "labels" / "final" / f"{loop.first['id']}.nii.gz").is_file()
        # The new model's ranking is the subject: the guard must not keep its parent (tested elsewhere).
        job = client.post("/finetune", json={"steps": 4, "accept_worse": True}).json()
        assert job["kind"] == "finetune" and job["state"] in ("queued", "running")

        served, slowest = 0, 0.0
        while client.get(f"/jobs/{job['id']}").json()["state"] in ("queued", "running"):
            for url in ("/cases", "/ranking?wait=false", "/info", "/jobs", "/models"):
                sent = time.perf_counter()
                assert client.get(url).status_code == 200, url
                slowest = max(slowest, time.perf_counter() - sent)
                served += 1
            time.sleep(0.05)
        job = client.get(f"/jobs/{job['id']}").json()
        assert job["state"] == "done", job
        ranking = client.get("/ranking").json()
        loop.figures["mask_to_new_ranking_seconds_cpu"] = round(time.perf_counter() - started, 1)
        loop.figures["finetune_steps"] = 4
        loop.figures["requests_served_during_round"] = served
        loop.figures["slowest_request_during_round_s"] = round(slowest, 3)
        versions = client.get("/models").json()
        metrics = client.get("/metrics").json()
        jobs = finished_jobs(client)
    for kind in ("finetune", "score"):  # where the time goes: each job from its start to its end
        last = [j for j in jobs if j["kind"] == kind][-1]
        loop.figures[f"{kind}_job_seconds"] = seconds_between(last["started"], last["finished"])
    assert job["model_version"] == "v0001" and ranking["model_version"] == "v0001" and ranking["complete"]
    assert {c["id"] for c in ranking["cases"] if c["status"] == "labelled"} == {loop.first["id"]}
    assert [(v["id"], v["parent"], v["active"]) for v in versions] == [
        ("v0000", None, False),
        ("v0001", "v0000", True),
    ]
    assert len(metrics) == 1 and metrics[0]["model_version"] == "v0001" and metrics[0]["n_labelled"] == 1
    # the last scoring is the new version's (a propose job may finish after it)
    scoring = [j for j in jobs if j["kind"] == "score"][-1]
    assert (scoring["state"], scoring["model_version"]) == ("done", "v0001")
    assert {j["kind"] for j in jobs} <= {"finetune", "score", "propose"}
    round_one = json.loads((loop.session / "models" / "v0001" / "round.json").read_text())
    assert round_one["labelled"] == [loop.first["id"]]
    assert served > 0


def test_second_round_refused_then_cancelled(loop):
    """A second round is refused while one runs, and a mask sent while a round trains waits for the next
    round (a round far too long to end first, so that nothing here depends on the machine's speed)."""
    with loop.server.client() as client:
        job = client.post("/finetune", json={"steps": 100_000}).json()
        refused = client.post("/finetune", json={"steps": 3})
        assert refused.status_code == 409 and job["id"] in refused.json()["detail"]
        job = wait_until_training(client, job["id"])
        busy = client.post("/models/v0000/activate")
        assert busy.status_code == 409 and job["id"] in busy.json()["detail"]
        late_mask = submit_mask(client, loop.second["id"], reference_mask(loop, loop.second))
        assert late_mask.status_code == 200, late_mask.text
        started = last_round_event(loop.session, "started")
        assert started["round"] == 2 and started["labelled"] == [loop.first["id"]]
        cancel_sent = time.perf_counter()
        cancelled = client.post(f"/jobs/{job['id']}/cancel").json()
        loop.figures["cancel_seconds"] = round(time.perf_counter() - cancel_sent, 1)
        info = client.get("/info").json()
    assert cancelled["state"] == "cancelled", cancelled
    assert not psutil.pid_exists(job["worker_pid"]) or psutil.Process(job["worker_pid"]).status() == "zombie"
    assert last_round_event(loop.session)["event"] == "round_cancelled"
    assert info["model_version"] == "v0001"
    assert not list((loop.session / "models").glob(".partial-*"))


def test_killed_backend_restarts_with_nothing_lost(loop):
    with loop.server.client() as client:
        job = wait_until_training(client, client.post("/finetune", json={"steps": 100_000}).json()["id"])
    loop.server.kill()
    deadline = time.monotonic() + 15
    while psutil.pid_exists(job["worker_pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not psutil.pid_exists(job["worker_pid"]), "the worker outlived its backend"

    loop.server = start_server(loop.session, allow=(loop.images, loop.labels))  # no --model: it exists
    with loop.server.client() as client:
        jobs = {j["id"]: j for j in client.get("/jobs").json()}
        info = client.get("/info").json()
        versions = [v["id"] for v in client.get("/models").json()]
        cases = {c["id"]: c for c in client.get("/cases").json()}
        ranking = client.get("/ranking").json()
    # round 2 was cancelled above; numbers are never reused, so this was round 3
    assert jobs[job["id"]]["state"] == "interrupted" and "round 3" in jobs[job["id"]]["message"]
    assert [j["state"] for j in jobs.values()].count("cancelled") == 1
    assert info["model_version"] == "v0001" and versions == ["v0000", "v0001"]
    for case in (loop.first, loop.second):
        assert cases[case["id"]]["status"] == "labelled"
        assert (loop.session / "labels" / "final" / f"{case['id']}.nii.gz").is_file()
    assert ranking["complete"] and ranking["model_version"] == "v0001"
    assert any(e["event"] == "round_interrupted" and e["round"] == 3 for e in journal(loop.session))
    started = last_round_event(loop.session, "started")
    assert started["round"] == 3  # the mask sent while round 2 trained is used now
    assert set(started["labelled"]) == {loop.first["id"], loop.second["id"]}
    assert not list((loop.session / "models").glob(".partial-*"))
