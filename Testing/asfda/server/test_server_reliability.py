"""What the hostile test of issue 9 found, kept as tests against the real backend process: malformed JSON,
files that read outside the allowed folders, volumes the model cannot take, truncated and non-finite files,
decoded sizes past the bound, removing a case, a full disk (on a real small tmpfs), and a worker killed at the
steps of a round's commit.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from server_process import pool_folders, wait_for_job

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(small_server):
    with small_server.client() as client:
        yield client


def stored_state(session: Path) -> tuple:
    uploads = session / "uploads"
    return (
        (session / "cases.json").read_text(),
        sorted(p.name for p in (session / "labels" / "final").iterdir()),
        sorted(p.name for p in uploads.iterdir()) if uploads.is_dir() else [],
        sorted(p.name for p in (session / "images").iterdir()),
    )


def upload(client, path: Path, name: str | None = None):
    with open(path, "rb") as stream:
        return client.post("/cases/upload", files={"file": (name or path.name, stream)})


def random_volume(path: Path, shape=(20, 22, 24), seed=0, dtype=np.float32) -> Path:
    image = sitk.GetImageFromArray(np.random.default_rng(seed).normal(size=shape).astype(dtype))
    image.SetSpacing((2.0, 2.0, 2.0))
    sitk.WriteImage(image, str(path), True)
    return path


# -- malformed requests --------------------------------------------------------------------------------------
@pytest.mark.parametrize("method, url", [("POST", "/cases"), ("POST", "/finetune"), ("POST", "/next")])
def test_malformed_json_is_400(client, method, url):
    answer = client.request(method, url, content=b'{"path": ', headers={"content-type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert "not valid JSON" in answer.json()["detail"]


# -- files that would read outside ---------------------------------------------------------------------------
def detached_headers(folder: Path, data_file: Path) -> dict[str, Path]:
    nrrd, mha = folder / "detached.nrrd", folder / "detached.mha"
    nrrd.write_text(
        f"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 8 8 8\nencoding: raw\ndata file: {data_file}\n\n"
    )
    mha.write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 8 8 8\nElementType = MET_UCHAR\n"
        f"ElementDataFile = {data_file}\n"
    )
    return {"nrrd": nrrd, "mha": mha}


def test_detached_headers_cannot_read_outside(small_server, client, tmp_path):
    secret = tmp_path / "secret.raw"  # outside the session and the allowed folders
    secret.write_bytes(os.urandom(512))
    before = stored_state(small_server.session)
    for kind, header in detached_headers(tmp_path, secret).items():
        answer = upload(client, header)
        assert answer.status_code == 422, (kind, answer.text)
        assert header.name in answer.json()["detail"] and "separate data file" in answer.json()["detail"]
    inside = small_server.session / "headers"  # an allowed folder: the header may be named by path
    inside.mkdir(exist_ok=True)
    for kind, header in detached_headers(inside, secret).items():
        answer = client.post("/cases", json={"path": str(header)})
        assert answer.status_code == 422, (kind, answer.text)
        assert "secret.raw" in answer.json()["detail"] and "outside" in answer.json()["detail"]
    assert stored_state(small_server.session) == before


# -- volumes the model cannot take ---------------------------------------------------------------------------
def test_bad_volumes_are_refused_at_the_door(small_server, client, tmp_path, tiny_dataset):
    vector = tmp_path / "vector.nii.gz"
    sitk.WriteImage(
        sitk.Compose(
            *(sitk.ReadImage(str(random_volume(tmp_path / f"c{i}.nii.gz", seed=i))) for i in (1, 2))
        ),
        str(vector),
    )
    whole = Path(tiny_dataset.pool[3][0]).read_bytes()
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    nan = np.random.default_rng(0).normal(size=(20, 22, 24)).astype(np.float32)
    nan[3, 4, 5] = np.nan
    non_finite = tmp_path / "nan.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(nan), str(non_finite))
    huge = tmp_path / "huge.nii.gz"  # 2 million voxels in a few KB; the server's bound is 1 million
    sitk.WriteImage(sitk.Image(128, 128, 128, sitk.sitkUInt8), str(huge), True)
    assert huge.stat().st_size < 2**20 // 4
    before = stored_state(small_server.session)
    for path, words in (
        (vector, "2 channels per voxel; the model takes 1"),
        (truncated, "truncated"),
        (non_finite, "NaN or infinite"),
        (huge, "2.0 million voxels"),
    ):
        answer = upload(client, path)
        assert answer.status_code == 422, (path.name, answer.text)
        assert path.name in answer.json()["detail"] and words in answer.json()["detail"], answer.text
    assert stored_state(small_server.session) == before


def test_a_truncated_mask_is_refused(small_server, client, tiny_dataset):
    cases = {c["name"]: c for c in client.get("/cases").json()}
    image, label = tiny_dataset.pool[0]
    case = cases[Path(image).name.removesuffix(".nii.gz")]
    data = Path(label).read_bytes()
    before = stored_state(small_server.session)
    answer = client.put(f"/cases/{case['id']}/label", files={"file": ("half.nii.gz", data[: len(data) // 2])})
    assert answer.status_code == 422 and "half.nii.gz" in answer.json()["detail"], answer.text
    assert "truncated" in answer.json()["detail"]
    assert stored_state(small_server.session) == before


# -- removing a case -----------------------------------------------------------------------------------------
def test_a_case_can_be_removed(small_server, client, tmp_path):
    added = upload(client, random_volume(tmp_path / "mistake.nii.gz", seed=7))
    assert added.status_code == 200, added.text
    case = added.json()
    assert (small_server.session / "images" / case["id"]).is_dir()
    removed = client.delete(f"/cases/{case['id']}")
    assert removed.status_code == 200, removed.text
    assert removed.json()["id"] == case["id"] and removed.json()["name"] == "mistake"
    assert client.get(f"/cases/{case['id']}").status_code == 404
    assert case["id"] not in {c["id"] for c in client.get("/cases").json()}
    assert not (small_server.session / "images" / case["id"]).exists()
    again = client.delete(f"/cases/{case['id']}")
    assert again.status_code == 404 and case["id"] in again.json()["detail"]
    paths = client.get("/openapi.json").json()["paths"]
    assert "delete" in paths["/cases/{case_id}"]


# -- a full disk, for real -----------------------------------------------------------------------------------
def mount_tmpfs(folder: Path, size_kb: int) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    folder.mkdir(parents=True, exist_ok=True)
    name = f"asfda-test-{uuid.uuid4().hex[:6]}"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", name, str(folder)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")


def fill(folder: Path, leave_bytes: int) -> Path:
    stats = os.statvfs(folder)
    ballast = folder / "ballast"
    free = stats.f_bavail * stats.f_frsize + (ballast.stat().st_size if ballast.exists() else 0)
    ballast.write_bytes(bytes(max(free - leave_bytes, 0)))
    return ballast


def random_mask(reference: Path, path: Path, labels: list[int]) -> Path:
    """A mask on the case's grid that gzip cannot shrink much (random labels)."""
    image = sitk.ReadImage(str(reference))
    array = (
        np.random.default_rng(5).choice(labels, size=sitk.GetArrayViewFromImage(image).shape).astype(np.uint8)
    )
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(image)
    sitk.WriteImage(mask, str(path), True)
    return path


@pytest.fixture
def full_disk_server(tmp_path, server_factory, tiny_dataset, tiny_model):
    disk = tmp_path / "disk"
    mount_tmpfs(disk, 16 * 1024)
    images, labels = pool_folders(tiny_dataset)
    try:
        yield disk, server_factory(disk / "session", tiny_model, allow=(images, labels, tmp_path))
    finally:
        for leftover in disk.glob("ballast"):
            leftover.unlink()
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_answers_507_and_stores_nothing_broken(full_disk_server, tiny_dataset, tmp_path):
    disk, server = full_disk_server
    session = server.session
    with server.client() as client:
        ids = []
        for image, _ in tiny_dataset.pool[:2]:
            answer = client.post("/cases", json={"path": str(image)})
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()[0]["id"])
        first_mask = Path(tiny_dataset.pool[0][1])
        with open(first_mask, "rb") as stream:
            assert (
                client.put(f"/cases/{ids[0]}/label", files={"file": ("a.nii.gz", stream)}).status_code == 200
            )
        stored = session / "labels" / "final" / f"{ids[0]}.nii.gz"
        stored_bytes = stored.read_bytes()

        # Private: the folder is the user's only, and so is every file in it.
        assert stat.S_IMODE(session.stat().st_mode) == 0o700
        for path in (stored, session / "journal.jsonl", session / "cases.json", session / "server.json"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert list((session / "uploads").iterdir()) == []  # the raw copy is gone once the mask is stored

        # A labelled case stays.
        answer = client.delete(f"/cases/{ids[0]}")
        assert answer.status_code == 409 and "labelled" in answer.json()["detail"], answer.text

        # The mask of the second case arrives on a full disk: room for the upload, none for the stored copy.
        mask = random_mask(tiny_dataset.pool[1][0], tmp_path / "b.nii.gz", sorted(tiny_dataset.labels))
        size = mask.stat().st_size
        for leave in (0, size + 4096):
            fill(disk, leave)
            with open(mask, "rb") as stream:
                answer = client.put(f"/cases/{ids[1]}/label", files={"file": ("b.nii.gz", stream)})
            assert answer.status_code == 507, (leave, answer.text)
            detail = answer.json()["detail"]
            assert "no space left on device" in detail and ids[1] in detail, detail
            assert sorted(p.name for p in stored.parent.iterdir()) == [stored.name]  # nothing half-written
            assert stored.read_bytes() == stored_bytes
        assert client.get(f"/cases/{ids[1]}").json()["status"] != "labelled"

        # A round on a full disk fails saying so, and leaves no version behind.
        fill(disk, 0)
        job = client.post(
            "/finetune", json={"steps": 1, "semi_supervised": False, "accept_worse": True}
        ).json()
        job = wait_for_job(client, job["id"], timeout=120)
        assert job["state"] == "failed" and "no space left on device" in job["message"], job
        (disk / "ballast").unlink()
        assert [v["id"] for v in client.get("/models").json()] == ["v0000"]
        assert client.get("/info").json()["model_version"] == "v0000"
        for line in (session / "journal.jsonl").read_text().splitlines():
            json.loads(line)  # no line broken by the full disk


# -- a worker killed at the steps of the commit --------------------------------------------------------------
@pytest.mark.parametrize("step, kept", [("version-renamed", False), ("round-committed", True)])
def test_a_worker_killed_during_the_commit(step, kept, tmp_path, server_factory, tiny_dataset, tiny_model):
    images, labels = pool_folders(tiny_dataset)
    session = tmp_path / "session"
    server = server_factory(session, tiny_model, allow=(images, labels), env={"ASFDA_FAULT_AT": step})
    with server.client() as client:
        case = client.post("/cases", json={"path": str(tiny_dataset.pool[0][0])}).json()[0]
        with open(tiny_dataset.pool[0][1], "rb") as stream:
            assert (
                client.put(f"/cases/{case['id']}/label", files={"file": ("m.nii.gz", stream)}).status_code
                == 200
            )
        other = client.post("/cases", json={"path": str(tiny_dataset.pool[1][0])}).json()[0]
        job = client.post(
            "/finetune",
            json={"steps": 1, "semi_supervised": False, "validate_every": 1, "accept_worse": True},
        ).json()
        busy = client.delete(f"/cases/{other['id']}")  # the round's worker is still starting
        assert busy.status_code == 409 and job["id"] in busy.json()["detail"], busy.text
        job = wait_for_job(client, job["id"], timeout=180)
    server.stop()
    restarted = server_factory(session, allow=(images, labels))
    with restarted.client() as client:
        versions = [v["id"] for v in client.get("/models").json()]
        info = client.get("/info").json()
        metrics = client.get("/metrics").json()
    leftovers = [p.name for p in session.rglob("*") if ".tmp" in p.name or p.name.startswith(".partial")]
    assert leftovers == []
    if kept:
        assert job["state"] == "done" and job["model_version"] == "v0001", job
        assert versions == ["v0000", "v0001"] and info["model_version"] == "v0001" and info["round"] == 1
        assert [m["round"] for m in metrics] == [1]
    else:
        assert job["state"] == "failed", job
        assert versions == ["v0000"] and info["model_version"] == "v0000" and info["round"] == 0
        assert metrics == []
