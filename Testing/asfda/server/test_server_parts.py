"""The backend's small parts without a server: path confinement, tokens, upload names, job bookkeeping."""

from __future__ import annotations

import pytest
from asfda.server.auth import host_allowed, new_token, token_matches
from asfda.server.job_records import Job, JobKind, JobState
from asfda.server.jobs import JobManager, close_open_rounds
from asfda.server.paths import InvalidPathError, PathForbiddenError, PathGuard
from asfda.server.schemas import FinetuneRequest, NextRequest
from asfda.server.uploads import safe_file_name, upload_case_name
from asfda.session.store import SessionStore


def test_path_guard_allows_the_session_and_allowed_folders_only(tmp_path):
    session, data, other = tmp_path / "session", tmp_path / "data", tmp_path / "other"
    for folder in (session, data, other):
        folder.mkdir()
    (data / "link").symlink_to(other)
    guard = PathGuard(session, [data])
    assert guard.check(session / "a.nii.gz") == (session / "a.nii.gz").resolve()
    assert guard.check(data / "sub" / "b.nii.gz").is_relative_to(data.resolve())
    outside = (other / "c.nii.gz", data / ".." / "other" / "c.nii.gz", data / "link" / "c.nii.gz", "/etc/x")
    for path in outside:
        with pytest.raises(PathForbiddenError):
            guard.check(path)
    for path in ("relative.nii.gz", "", "/a\x00b"):
        with pytest.raises(InvalidPathError):
            guard.check(path)


def test_token_check():
    token = new_token()
    assert token_matches(f"Bearer {token}", token) and token_matches(f"bearer  {token}", token)
    assert not token_matches(None, token) and not token_matches(token, token)
    assert not token_matches(f"Bearer {token}x", token) and not token_matches(f"Basic {token}", token)
    assert new_token() != token


@pytest.mark.parametrize(
    "name, expected",
    [
        ("scan.nii.gz", "scan.nii.gz"),
        ("../../etc/x.nrrd", "x.nrrd"),
        ("C:\\data\\my scan.mha", "my_scan.mha"),
        ("seg.seg.nrrd", "seg.seg.nrrd"),
        (".nii.gz", "volume.nii.gz"),
        ("Müller-Kopf é.nii.gz", "Muller-Kopf_e.nii.gz"),
        ("Печень 01.nrrd", "01.nrrd"),
        ("肝臓.nii.gz", "volume.nii.gz"),
    ],
)
def test_upload_names_are_made_safe(name, expected):
    assert safe_file_name(name) == expected


@pytest.mark.parametrize(
    "name, expected",
    [
        ("my scan.nii.gz", "my_scan"),
        ("Müller-Kopf é.nii.gz", "Müller-Kopf_é"),
        ("Печень 01.nrrd", "Печень_01"),
        ("肝臓.nii.gz", "肝臓"),
        ("../\u202e evil.mha", "evil"),
        ("..nii.gz", "volume"),
    ],
)
def test_an_uploaded_case_keeps_its_name_in_any_script(name, expected):
    assert upload_case_name(name) == expected


def test_only_loopback_hosts_and_the_allowed_names():
    for host in ("127.0.0.1", "127.0.0.1:8000", "localhost", "LocalHost:1", "[::1]", "[::1]:443"):
        assert host_allowed(host), host
    for host in ("", "evil.example", "localhost.evil.example", "127.0.0.1.nip.io", "[::2]:80", "localhost:x"):
        assert not host_allowed(host), host
    assert host_allowed("GPU-box:8443", ("gpu-box",)) and not host_allowed("gpu-box.evil", ("gpu-box",))


def test_unknown_request_fields_are_one_short_error():
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as caught:
        FinetuneRequest.model_validate({f"k{i}": 0 for i in range(50_000)})
    assert len(caught.value.errors()) == 1 and "and 49997 more" in str(caught.value)
    with pytest.raises(ValidationError, match="the fields are: client"):
        NextRequest.model_validate({"clinet": "me"})


@pytest.mark.parametrize("name", [None, "", "notes.txt", "head.mhd", "scan"])
def test_upload_names_must_be_volumes(name):
    with pytest.raises(ValueError):
        safe_file_name(name)


def make_store(tmp_path) -> SessionStore:
    return SessionStore.create(tmp_path / "session", {"model_source": str(tmp_path / "model"), "labels": {}})


def test_a_killed_round_is_closed_in_the_journal(tmp_path):
    store = make_store(tmp_path)
    store.log("round_started", round=1, parent="v0000")
    partial = store.partial_version_folder()
    assert list(store.open_rounds()) == [1]
    assert close_open_rounds(store, "round_cancelled", "stopped") == [1]
    assert list(store.open_rounds()) == [] and not partial.exists()
    assert SessionStore(store.root).interrupted_rounds == []


def test_jobs_left_running_are_reported_interrupted(tmp_path):
    store = make_store(tmp_path)
    store.log("round_started", round=1, parent="v0000")
    store = SessionStore(store.root)  # the restart: the store finds the unfinished round
    folder = store.root / "jobs"
    folder.mkdir()
    from asfda.session.store import write_json_atomic

    for job in (
        Job("j0001", JobKind.SCORE, JobState.DONE),
        Job("j0002", JobKind.FINETUNE, JobState.RUNNING),
        Job("j0003", JobKind.SCORE, JobState.QUEUED),
    ):
        write_json_atomic(folder / f"{job.id}.json", job.to_json())
    manager = JobManager(store, "cpu", worker=print)
    states = {job.id: (job.state, job.message) for job in manager.list()}
    assert states["j0001"][0] is JobState.DONE
    assert states["j0002"][0] is JobState.INTERRUPTED and "round 1" in states["j0002"][1]
    assert states["j0003"][0] is JobState.INTERRUPTED
    assert JobManager(store, "cpu", worker=print).get("j0002").state is JobState.INTERRUPTED  # persisted


def test_a_job_whose_round_committed_before_the_backend_died_is_done(tmp_path):
    from asfda.session.records import ModelVersion, now_iso

    store = make_store(tmp_path)
    for number, job_id in ((1, "j0001"), (2, "j0002")):
        store.log("round_started", round=number, parent="v0000", pid=4242, job=job_id)
    partial = store.partial_version_folder()
    store.commit_round(partial, ModelVersion("v0001", "v0000", now_iso(), 1, {"val_dice": 0.5}), {"round": 1})
    folder = store.root / "jobs"
    folder.mkdir()
    from asfda.session.store import write_json_atomic

    for job in (
        Job("j0001", JobKind.FINETUNE, JobState.RUNNING, worker_pid=4242),
        Job("j0002", JobKind.FINETUNE, JobState.RUNNING, worker_pid=4242),
    ):
        write_json_atomic(folder / f"{job.id}.json", job.to_json())
    manager = JobManager(SessionStore(store.root), "cpu", worker=print)  # the restart
    done, cut = manager.get("j0001"), manager.get("j0002")
    assert done.state is JobState.DONE and done.model_version == "v0001", done
    assert "round 1 done" in done.message and done.result["metrics"] == {"val_dice": 0.5}
    assert cut.state is JobState.INTERRUPTED and "round 2" in cut.message, cut


def test_one_finetune_at_a_time_and_scoring_jobs_are_shared(tmp_path):
    from asfda.server.job_records import JobConflictError

    manager = JobManager(make_store(tmp_path), "cpu", worker=print)  # never started: jobs stay queued
    first = manager.submit_finetune({"steps": 3})
    with pytest.raises(JobConflictError, match=first.id):
        manager.submit_finetune({"steps": 3})
    assert manager.ensure_scoring("v0000").id == manager.ensure_scoring("v0000").id
    assert manager.cancel(first.id).state is JobState.CANCELLED
    assert manager.submit_finetune({}).id != first.id
