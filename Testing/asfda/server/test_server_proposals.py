"""The starting segmentation over HTTP, against the real backend process: the model's prediction with one
labelled case ('no leave-one-out yet'); from three labelled cases, a job chooses propagation over a random
model (deliberately bad) and the prediction served for the next case is the proposal, with its source.

The tests of this module share one session and run in file order (the second builds on the first).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
from asfda.proposals import foreground_dice
from asfda.session.session import AdaptationSession
from server_process import pool_folders, start_server, wait_for_job

FAST = {"registration": {"deformable": "none", "affine_samples": 4000}, "ahead": 1}


@pytest.fixture(scope="module")
def backend(tmp_path_factory, tiny_dataset, tiny_model):
    images, labels = pool_folders(tiny_dataset)
    root = tmp_path_factory.mktemp("proposals") / "session"
    session = AdaptationSession.create(root, tiny_model, "cpu")
    session.add_folder(images)
    session.store.update_settings(proposals=FAST)
    cases = sorted(session.store.cases(), key=lambda r: r.name)
    server = start_server(root, allow=(images, labels))
    yield SimpleNamespace(server=server, root=root, cases=cases, labels=labels)
    server.stop()


def submit_mask(client, backend, record):
    mask = backend.labels / f"{record.name}.nii.gz"
    with open(mask, "rb") as stream:
        answer = client.put(f"/cases/{record.id}/label", files={"file": (mask.name, stream)})
    assert answer.status_code == 200, answer.text


def prediction(client, case_id: str, tmp_path):
    answer = client.get(f"/cases/{case_id}/prediction")
    assert answer.status_code == 200, answer.text
    path = tmp_path / f"{case_id}.nii.gz"
    path.write_bytes(answer.content)
    return answer.headers, sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_one_labelled_case_serves_propagation_by_the_one_case_rule(backend, tmp_path):
    query = backend.cases[-1]
    with backend.server.client() as client:
        headers, _ = prediction(client, query.id, tmp_path)
        assert headers["x-asfda-prediction-source"] == "model"  # before any choice: the model's
        assert (
            headers["x-asfda-starting-from"] == "starting from: the model's prediction (no labelled case yet)"
        )

        submit_mask(client, backend, backend.cases[0])
        jobs = [j for j in client.get("/jobs").json() if j["kind"] == "propose"]
        assert jobs, "with one case the proposal to serve is built by a job"
        job = wait_for_job(client, jobs[-1]["id"])
        choice = client.get("/proposal").json()
        sources = [prediction(client, r.id, tmp_path)[0] for r in backend.cases[1:]]
    summary = (
        "starting from: propagation from 1 case (locally weighted) (1 labelled case: no leave-one-out yet; "
        "the one-case rule chosen on a validation split)"
    )
    assert job["state"] == "done", job
    assert choice["summary"] == summary and choice["source"] == "weighted" and not choice["validated"]
    built = [h for h in sources if h["x-asfda-prediction-source"] == "weighted"]
    assert len(built) == 1 and built[0]["x-asfda-starting-from"] == summary  # the one case built ahead


def test_propagation_is_served_when_it_validates_better_than_the_model(backend, tmp_path):
    query = backend.cases[-1]
    with backend.server.client() as client:
        for record in backend.cases[1:3]:
            submit_mask(client, backend, record)
        jobs = [j for j in client.get("/jobs").json() if j["kind"] == "propose"]
        assert jobs, "a saved mask starts a proposal job"
        job = [wait_for_job(client, j["id"]) for j in jobs][-1]  # the one that saw the third mask
        choice = client.get("/proposal").json()
        headers, served = prediction(client, query.id, tmp_path)
        labelled_headers, _ = prediction(client, backend.cases[0].id, tmp_path)
    assert job["state"] == "done" and job["progress"] == 1.0, job
    assert job["result"]["starting_from"]["served"] == choice["served"] != "model"
    assert choice["source"] == choice["served"] and choice["validated"] and choice["labelled_cases"] == 3
    assert choice["dice"][choice["served"]] > choice["dice"]["model"] + 0.2
    assert choice["summary"].startswith("starting from: propagation from 3 cases")
    assert f"against the model's {choice['dice']['model']:.2f}" in choice["summary"]
    recorded = json.loads((backend.root / "proposals" / "choice.json").read_text())
    assert recorded["summary"] == choice["summary"] and recorded["model_version"] == "v0000"
    corrected = {record.id: "v0000" for record in backend.cases[:3]}  # no round yet: saved under v0000
    assert recorded["model_versions"] == choice["model_versions"] == corrected

    assert headers["x-asfda-prediction-source"] == choice["served"]
    assert headers["x-asfda-starting-from"] == choice["summary"]
    assert headers["x-asfda-model-version"] == "v0000"
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(backend.labels / f"{query.name}.nii.gz")))
    model = sitk.GetArrayFromImage(
        sitk.ReadImage(str(backend.root / "labels" / "predicted" / "v0000" / f"{query.id}.nii.gz"))
    )
    classes = int(max(reference.max(), served.max(), model.max())) + 1
    assert not np.array_equal(served, model)
    assert foreground_dice(served, reference, classes) > foreground_dice(model, reference, classes) + 0.2
    assert labelled_headers["x-asfda-prediction-source"] == "model"  # a labelled case is not proposed
