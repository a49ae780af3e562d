"""Bad requests get a clear 4xx answer that names the file or case and the problem, and change nothing."""

from __future__ import annotations

import os

import numpy as np
import pytest
import SimpleITK as sitk
from server_process import pool_folders

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(small_server):
    with small_server.client() as client:
        yield client


@pytest.fixture(scope="module")
def first_case(client, tiny_dataset):
    cases = {c["name"]: c for c in client.get("/cases").json()}
    image, label = tiny_dataset.pool[0]
    return cases[os.path.basename(image).removesuffix(".nii.gz")], label


def stored_state(session) -> tuple:
    """What a rejected request must not change."""
    uploads, labels = session / "uploads", session / "labels" / "final"
    return (
        (session / "cases.json").read_text(),
        sorted(p.name for p in labels.iterdir()),
        sorted(p.name for p in uploads.iterdir()) if uploads.is_dir() else [],
    )


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}, {"Authorization": "Bearer"}],
)
@pytest.mark.parametrize("path", ["/health", "/cases", "/openapi.json", "/docs", "/no/such/route"])
def test_missing_or_wrong_token_is_401(small_server, headers, path):
    import httpx

    answer = httpx.get(small_server.url + path, headers=headers)
    assert answer.status_code == 401 and "token" in answer.json()["detail"]
    assert answer.headers["www-authenticate"] == "Bearer"


def test_paths_outside_the_allowed_folders_are_403(small_server, client, tiny_dataset, tiny_model):
    before = stored_state(small_server.session)
    outside_file = str(tiny_dataset.test[0][0])  # a real volume, but in no allowed folder
    link = small_server.session / "link.nii.gz"  # inside the session folder, pointing outside it
    link.symlink_to(outside_file)
    try:
        for body in (
            {"path": outside_file},
            {"folder": str(tiny_model)},
            {"path": "/etc/passwd"},
            {"path": str(link)},
            {"path": str(small_server.session / ".." / "x.nii.gz")},
        ):
            answer = client.post("/cases", json=body)
            assert answer.status_code == 403, (body, answer.text)
            assert "--allow-dir" in answer.json()["detail"]
    finally:
        link.unlink()
    assert stored_state(small_server.session) == before


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"path": "relative/tgt.nii.gz"}, 422, "absolute"),
        ({"path": "/a\u0000b"}, 422, "not a valid path"),
        ({}, 422, "exactly one"),
        ({"path": "/x", "folder": "/y"}, 422, "exactly one"),
        ({"paths": "/x"}, 422, "paths"),
    ],
)
def test_malformed_add_requests_are_422(client, body, status, words):
    answer = client.post("/cases", json=body)
    assert answer.status_code == status and words in answer.json()["detail"], answer.text


def test_missing_and_non_volume_files(small_server, client, tiny_dataset):
    images, _ = pool_folders(tiny_dataset)
    missing = client.post("/cases", json={"path": str(images / "nope.nii.gz")})
    assert missing.status_code == 404 and "nope.nii.gz" in missing.json()["detail"]
    folder_as_file = client.post("/cases", json={"path": str(images)})
    assert folder_as_file.status_code == 422 and "folder" in folder_as_file.json()["detail"]
    empty = small_server.session / "empty_folder"
    empty.mkdir(exist_ok=True)
    answer = client.post("/cases", json={"folder": str(empty)})
    assert answer.status_code == 422 and "no volumes" in answer.json()["detail"]
    not_a_volume = small_server.session / "notes.nii.gz"
    not_a_volume.write_bytes(b"not an image")
    try:
        answer = client.post("/cases", json={"path": str(not_a_volume)})
        assert answer.status_code == 422 and "notes.nii.gz" in answer.json()["detail"]
    finally:
        not_a_volume.unlink()


def test_unreadable_uploads_are_422_and_leave_nothing(small_server, client):
    before = stored_state(small_server.session)
    garbage = client.post("/cases/upload", files={"file": ("scan.nii.gz", b"\x00garbage" * 100)})
    assert garbage.status_code == 422 and "scan.nii.gz" in garbage.json()["detail"]
    wrong_name = client.post("/cases/upload", files={"file": ("scan.txt", b"whatever")})
    assert wrong_name.status_code == 422 and "scan.txt" in wrong_name.json()["detail"]
    assert stored_state(small_server.session) == before


def test_oversized_uploads_are_413(small_server, client, first_case):
    before = stored_state(small_server.session)
    big = os.urandom(int(1.5 * 2**20))  # the server was started with --max-upload-mb 1
    for method, url in (("POST", "/cases/upload"), ("PUT", f"/cases/{first_case[0]['id']}/label")):
        answer = client.request(method, url, files={"file": ("big.nii.gz", big)})
        assert answer.status_code == 413 and "limit" in answer.json()["detail"], answer.text
    assert stored_state(small_server.session) == before


def test_a_valid_upload_is_added_once(small_server, client, tiny_dataset):
    image = tiny_dataset.pool[2][0]
    with open(image, "rb") as stream:
        first = client.post("/cases/upload", files={"file": ("../../evil name.nii.gz", stream)})
    with open(image, "rb") as stream:
        again = client.post("/cases/upload", files={"file": ("copy.nii.gz", stream)})
    assert first.status_code == 200, first.text
    assert again.json()["id"] == first.json()["id"]
    stored = first.json()["source_path"]
    assert stored.startswith(str(small_server.session / "images")) and stored.endswith("evil_name.nii.gz")
    assert sum(c["id"] == first.json()["id"] for c in client.get("/cases").json()) == 1


def write_like(reference_path, array_zyx: np.ndarray, path, spacing=None):
    reference = sitk.ReadImage(str(reference_path))
    image = sitk.GetImageFromArray(array_zyx)
    image.CopyInformation(reference)
    if spacing is not None:
        image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path


def test_bad_masks_are_422_and_nothing_is_stored(small_server, client, first_case, tmp_path):
    case, label_path = first_case
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(label_path)))
    masks = {
        "geometry": write_like(label_path, label, tmp_path / "shifted.nii.gz", spacing=(1.0, 1.0, 1.0)),
        "size": tmp_path / "cropped.nii.gz",
        "not labels of the model": write_like(label_path, np.full_like(label, 99), tmp_path / "99.nii.gz"),
        "empty": write_like(label_path, np.zeros_like(label), tmp_path / "empty.nii.gz"),
    }
    sitk.WriteImage(sitk.ReadImage(str(label_path))[2:, :, :], str(masks["size"]))
    before = stored_state(small_server.session)
    for problem, mask in masks.items():
        with open(mask, "rb") as stream:
            answer = client.put(f"/cases/{case['id']}/label", files={"file": (mask.name, stream)})
        detail = answer.json()["detail"]
        assert answer.status_code == 422, answer.text
        assert problem in detail and mask.name in detail and case["name"] in detail, detail
    assert stored_state(small_server.session) == before
    assert client.get(f"/cases/{case['id']}").json()["status"] != "labelled"


@pytest.mark.parametrize(
    "method, url",
    [
        ("GET", "/cases/0123456789abcdef"),
        ("GET", "/cases/0123456789abcdef/image"),
        ("GET", "/cases/0123456789abcdef/prediction"),
        ("GET", "/cases/..%2F..%2Fetc/image"),
        ("GET", "/jobs/j9999"),
        ("POST", "/jobs/j9999/cancel"),
        ("POST", "/models/v9999/activate"),
        ("POST", "/models/..%2F..%2Fv0000/activate"),
    ],
)
def test_unknown_ids_are_404(client, method, url):
    answer = client.request(method, url)
    assert answer.status_code == 404, answer.text
    assert answer.json()["detail"]


def test_label_for_an_unknown_case_is_404_before_anything_is_written(small_server, client, first_case):
    before = stored_state(small_server.session)
    with open(first_case[1], "rb") as stream:
        answer = client.put("/cases/0123456789abcdef/label", files={"file": ("mask.nii.gz", stream)})
    assert answer.status_code == 404 and "0123456789abcdef" in answer.json()["detail"]
    assert stored_state(small_server.session) == before


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"steps": 0}, 422, "steps"),
        ({"steps": "many"}, 422, "steps"),
        ({"epochs": 3}, 422, "epochs"),
        ({"steps": 3}, 409, "no labelled case"),
    ],
)
def test_bad_finetune_requests(client, body, status, words):
    answer = client.post("/finetune", json=body)
    assert answer.status_code == status and words in answer.json()["detail"], answer.text


def test_bad_query_values_are_422(client, first_case):
    answer = client.get(f"/cases/{first_case[0]['id']}/prediction", params={"format": "png"})
    assert answer.status_code == 422 and "format" in answer.json()["detail"]
    assert client.get("/ranking", params={"wait": "perhaps"}).status_code == 422


def test_openapi_documents_every_endpoint(client):
    schema = client.get("/openapi.json").json()
    paths = {(method.upper(), path) for path, item in schema["paths"].items() for method in item}
    expected = {
        ("GET", "/health"),
        ("GET", "/info"),
        ("GET", "/cases"),
        ("POST", "/cases"),
        ("POST", "/cases/upload"),
        ("GET", "/ranking"),
        ("POST", "/next"),
        ("GET", "/cases/{case_id}/image"),
        ("GET", "/cases/{case_id}/prediction"),
        ("PUT", "/cases/{case_id}/label"),
        ("POST", "/finetune"),
        ("GET", "/jobs"),
        ("GET", "/jobs/{job_id}"),
        ("POST", "/jobs/{job_id}/cancel"),
        ("GET", "/models"),
        ("POST", "/models/{version}/activate"),
        ("GET", "/metrics"),
    }
    assert expected <= paths
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
