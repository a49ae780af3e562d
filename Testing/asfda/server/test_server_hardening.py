"""What the hostile test of issue 22 still broke, kept as tests against the real backend process on loopback:
files served or written through symbolic links that leave the session, huge JSON bodies, foreign Host
names, non-ASCII upload names; and kills at the worst moments (the backend with its worker right after a
round's commit, the backend alone while its worker starts a round, the backend during a mask upload).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import SimpleITK as sitk
from asfda.io.volumes import content_hash, read_volume
from asfda.server import processes
from asfda.session.store import SessionStore
from server_process import pool_folders, start_server

pytestmark = pytest.mark.slow

ROUND = {"steps": 1, "semi_supervised": False, "validate_every": 1, "accept_worse": True}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_dataset, tiny_model):
    images, labels = pool_folders(tiny_dataset)
    server = start_server(
        tmp_path_factory.mktemp("hardening") / "session", tiny_model, allow=(images, labels)
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(server):
    with server.client() as client:
        yield client


def random_volume(path: Path, seed: int) -> Path:
    image = sitk.GetImageFromArray(np.random.default_rng(seed).normal(size=(20, 22, 24)).astype(np.float32))
    image.SetSpacing((2.0, 2.0, 2.0))
    sitk.WriteImage(image, str(path), True)
    return path


def upload(client, path: Path, name: str | None = None):
    with open(path, "rb") as stream:
        return client.post("/cases/upload", files={"file": (name or path.name, stream)})


# -- item 4: nothing served or written through a link that leaves the session --------------------------------
def test_links_out_of_the_session_are_neither_served_nor_written_through(server, client, tmp_path):
    secret = tmp_path / "secret.nii.gz"
    secret.write_bytes(b"SECRET" * 100)
    case = upload(client, random_volume(tmp_path / "linked.nii.gz", seed=11)).json()
    assert client.get(f"/cases/{case['id']}/prediction").status_code == 200
    predicted = server.session / "labels" / "predicted" / "v0000" / f"{case['id']}.nii.gz"
    volume = Path(case["source_path"])
    assert predicted.is_file() and volume.is_relative_to(server.session)
    for path, url in ((volume, "image"), (predicted, "prediction")):
        path.unlink()
        path.symlink_to(secret)
        answer = client.get(f"/cases/{case['id']}/{url}")
        assert answer.status_code == 403, (url, answer.status_code)
        assert b"SECRET" not in answer.content and "points outside" in answer.json()["detail"]

    outside = tmp_path / "outside"
    outside.mkdir()
    uploads = server.session / "uploads"
    shutil.rmtree(uploads, ignore_errors=True)
    uploads.symlink_to(outside, target_is_directory=True)
    try:
        answer = upload(client, random_volume(tmp_path / "other.nii.gz", seed=12))
        assert answer.status_code == 403 and "points outside" in answer.json()["detail"], answer.text
        with open(random_volume(tmp_path / "mask.nii.gz", seed=13), "rb") as stream:
            answer = client.put(f"/cases/{case['id']}/label", files={"file": ("mask.nii.gz", stream)})
        assert answer.status_code == 403, answer.text
        assert list(outside.iterdir()) == []
    finally:
        uploads.unlink()
    assert client.delete(f"/cases/{case['id']}").status_code == 200


# -- item 5: JSON bodies are bounded, unknown fields refused in a few words ----------------------------------
def test_a_huge_json_body_is_413_and_unknown_fields_are_one_short_error(client):
    keys = {f"key{i}": 0 for i in range(300_000)}  # 4.4 MB, the hostile tester's body
    started = time.monotonic()
    answer = client.post("/finetune", json=keys)
    assert answer.status_code == 413, answer.status_code
    assert "larger than 1 MB" in answer.json()["detail"] and len(answer.content) < 300

    def chunks():  # no Content-Length: the bound is counted as the body arrives
        for _ in range(40):
            yield b" " * 65536

    answer = client.post("/finetune", content=chunks(), headers={"content-type": "application/json"})
    assert answer.status_code == 413, answer.status_code
    assert time.monotonic() - started < 60

    some = {f"key{i}": 0 for i in range(20_000)}  # under the bound: parsed, and refused in one sentence
    for url, body in (("/finetune", some), ("/next", {"clinet": "x"}), ("/query", {"strategyy": "random"})):
        answer = client.request("PUT" if url == "/query" else "POST", url, json=body)
        assert answer.status_code == 422, (url, answer.status_code)
        detail = answer.json()["detail"]
        assert "unknown field" in detail and len(detail) < 600, detail
    assert "and 19997 more" in client.post("/finetune", json=some).json()["detail"]
    assert client.get("/health").status_code == 200


# -- item 6: only loopback host names ------------------------------------------------------------------------
def test_only_loopback_host_names_are_answered(server, client):
    port = server.url.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "localhost.evil", ""):
        answer = client.get("/info", headers={"host": host})
        assert answer.status_code == 400, (host, answer.status_code)
        assert "DNS rebinding" in answer.json()["detail"]
    for host in (f"127.0.0.1:{port}", "127.0.0.1", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}"):
        assert client.get("/info", headers={"host": host}).status_code == 200, host


# -- item 9: an upload keeps its name in any script ----------------------------------------------------------
def test_a_non_ascii_upload_name_is_kept(client, tmp_path):
    case = upload(client, random_volume(tmp_path / "x.nii.gz", seed=14), "Печень Müller 07.nii.gz").json()
    assert case["name"] == "Печень_Müller_07", case
    assert Path(case["source_path"]).name == "Muller_07.nii.gz"
    assert client.delete(f"/cases/{case['id']}").status_code == 200


# -- items 1 and 7: the backend killed around a round --------------------------------------------------------
def labelled_session(client, tiny_dataset) -> str:
    case = client.post("/cases", json={"path": str(tiny_dataset.pool[0][0])}).json()[0]
    with open(tiny_dataset.pool[0][1], "rb") as stream:
        answer = client.put(f"/cases/{case['id']}/label", files={"file": ("m.nii.gz", stream)})
    assert answer.status_code == 200, answer.text
    return case["id"]


def killed_at(server, step: str, timeout: float = 120.0) -> None:
    """Wait until the fault at ``step`` has killed the backend."""
    try:
        server.process.wait(timeout)
    except Exception as error:  # noqa: BLE001 - say which step never came
        raise AssertionError(f"the backend was not killed at {step}") from error


@pytest.mark.parametrize("step", ["round-committed", "version-activated"])
def test_a_round_committed_just_before_the_backend_died_is_done(
    step, tmp_path, server_factory, tiny_dataset, tiny_model
):
    images, labels = pool_folders(tiny_dataset)
    session = tmp_path / "session"
    fault = {"ASFDA_FAULT_AT": step, "ASFDA_FAULT_MODE": "with-backend"}
    server = server_factory(session, tiny_model, allow=(images, labels), env=fault)
    with server.client() as client:
        labelled_session(client, tiny_dataset)
        job = client.post("/finetune", json=ROUND).json()
        killed_at(server, step)
    restarted = server_factory(session, allow=(images, labels))
    with restarted.client() as client:
        job = client.get(f"/jobs/{job['id']}").json()
        versions = {v["id"]: v["active"] for v in client.get("/models").json()}
        info = client.get("/info").json()
    assert job["state"] == "done" and job["model_version"] == "v0001", job
    assert "round 1 done" in job["message"] and job["result"]["model_version"] == "v0001", job
    assert versions == {"v0000": False, "v0001": True} and info["model_version"] == "v0001"


def test_a_worker_whose_backend_died_never_writes_the_journal(
    tmp_path, server_factory, tiny_dataset, tiny_model
):
    images, labels = pool_folders(tiny_dataset)
    session = tmp_path / "session"
    fault = {"ASFDA_FAULT_AT": "round-starting", "ASFDA_FAULT_MODE": "orphan"}
    server = server_factory(session, tiny_model, allow=(images, labels), env=fault)
    with server.client() as client:
        labelled_session(client, tiny_dataset)
        job = client.post("/finetune", json=ROUND).json()
        killed_at(server, "round-starting")
    worker = json.loads((session / "jobs" / f"{job['id']}.json").read_text())["worker_pid"]
    deadline = time.monotonic() + 10
    while processes.is_running(worker) and time.monotonic() < deadline:
        time.sleep(0.05)  # the orphan, if it lived on, would write its round_started line now
    assert not processes.is_running(worker)
    events = [json.loads(line) for line in (session / "journal.jsonl").read_text().splitlines()]
    assert not [e for e in events if e["event"] == "round_started"], events[-3:]
    restarted = server_factory(session, allow=(images, labels))
    with restarted.client() as client:
        job = client.get(f"/jobs/{job['id']}").json()
        assert job["state"] == "interrupted", job
        assert [v["id"] for v in client.get("/models").json()] == ["v0000"]


# -- item 2: what a killed mask upload leaves is swept on the next start -------------------------------------
@pytest.mark.parametrize("step", ["upload-copied", "write:{case}.nii.gz"])
def test_a_mask_upload_killed_leaves_nothing_after_the_next_start(
    step, tmp_path, server_factory, tiny_dataset, tiny_model
):
    images, labels = pool_folders(tiny_dataset)
    image, label = tiny_dataset.pool[0]
    case = content_hash(read_volume(image))
    session = tmp_path / "session"
    step = step.format(case=case)
    server = server_factory(session, tiny_model, allow=(images, labels), env={"ASFDA_FAULT_AT": step})
    with server.client() as client:
        assert client.post("/cases", json={"path": str(image)}).json()[0]["id"] == case
        with open(label, "rb") as stream, pytest.raises(httpx.TransportError):
            client.put(f"/cases/{case}/label", files={"file": ("mask.nii.gz", stream)})
    killed_at(server, step)
    stored = session / "labels" / "final" / f"{case}.nii.gz"

    def leftovers() -> list[str]:  # whatever their names: files of the mask other than the stored one
        files = [*(session / "labels" / "final").iterdir(), *(session / "uploads").iterdir()]
        return sorted(str(p.relative_to(session)) for p in files if p != stored)

    assert leftovers(), "the kill left no file behind: the test proves nothing"
    restarted = server_factory(session, allow=(images, labels))
    # A complete copy of a mask that was never stored is the annotator's work: it stays until a mask is.
    pending = [name for name in leftovers() if name.startswith("uploads/.label-")]
    assert leftovers() == pending and len(pending) == (step != "upload-copied"), leftovers()
    with restarted.client() as client, open(label, "rb") as stream:
        answer = client.put(f"/cases/{case}/label", files={"file": ("mask.nii.gz", stream)})
        assert answer.status_code == 200, answer.text
    restarted.stop()
    SessionStore(session)  # the next open (a backend's, a worker's or the CLI's) sweeps what is left
    assert leftovers() == []
    assert [p.name for p in (session / "labels" / "final").iterdir()] == [f"{case}.nii.gz"]
