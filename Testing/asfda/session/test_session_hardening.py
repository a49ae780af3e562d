"""Issue 22 at the session's level: the temporary files of dead writers are swept on open (never a real file,
never a mask the backend did not finish storing), a writer bound to a dead backend writes no journal line,
and a version whose weights cannot be used is never activated."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import asfda
import psutil
import pytest
import torch
from asfda.errors import CheckpointError
from asfda.session.records import CaseRecord, ModelVersion, now_iso
from asfda.session.session import AdaptationSession
from asfda.session.store import SessionStore
from asfda.session.temporaries import temporary_path, temporary_prefix

ENGINE = Path(asfda.__file__).resolve().parents[1]  # the engine under test, for the subprocesses
CASE = "0123456789abcdef"


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_opening_a_session_sweeps_dead_writers_temporaries_only(tmp_path, monkeypatch):
    store = SessionStore.create(tmp_path / "session", {"model_source": "m", "labels": {}})
    root = store.root
    other, gone = "fedcba9876543210", "0000111122223333"
    store.save_cases([CaseRecord(case, case, "/x") for case in (CASE, other)])
    live_upload = touch(temporary_path(root / "uploads" / f"label-{CASE}-live.nii.gz", ".nii.gz"))
    pid = dead_pid()
    monkeypatch.setattr(os, "getpid", lambda: pid)  # every name below is a dead process's
    stored = touch(root / "labels" / "final" / f"{CASE}.nii.gz")
    swept = [
        touch(root / (temporary_prefix(root / "cases.json") + "abc")),  # write_bytes_atomic
        touch(root / "labels" / "final" / (temporary_prefix(stored) + "abc.nii.gz")),  # write_volume
        touch(temporary_path(root / "uploads" / "case-scan.nii.gz", ".nii.gz")),  # a volume upload
        touch(Path(f"{temporary_path(root / 'uploads' / f'label-{CASE}-m.nii.gz', '.nii.gz')}.part")),
        touch(root / "cache" / "model_space" / (temporary_prefix(root / "cache" / "k.pt") + "abc")),
        touch(temporary_path(root / "server.json")),
        touch(temporary_path(root / "uploads" / f"label-{gone}-m.nii.gz", ".nii.gz")),  # its case removed
        touch(temporary_path(root / "uploads" / f"label-{other}-m.nii.gz", ".nii.gz")),  # its mask stored
    ]
    later = swept[-1].stat().st_mtime_ns + 10**9
    os.utime(touch(stored.with_name(f"{other}.nii.gz")), ns=(later, later))
    time.sleep(0.01)
    pending = touch(temporary_path(root / "uploads" / f"label-{CASE}-m.nii.gz", ".nii.gz"))  # never stored
    real = [touch(root / ".hidden-note"), touch(root / "images" / "a" / "scan.tmp1-x.nii.gz"), stored]
    monkeypatch.undo()

    SessionStore(root)
    assert [p for p in swept if p.exists()] == []
    assert all(p.exists() for p in [*real, pending, live_upload])
    touch(stored, b"a newer mask")  # the annotator's mask is stored at last: its pending copy goes
    SessionStore(root)
    assert not pending.exists() and live_upload.exists()


CHILD = """
import os, sys, time
from asfda.session import lease
from asfda.session.store import SessionStore
store = SessionStore(sys.argv[1])
parent = os.getppid()
lease._parent_pid = parent  # bound as a worker is, without Linux's parent-death signal
store.log("while_the_backend_lives")
while os.getppid() == parent:
    time.sleep(0.01)
store.log("after_the_backend_died")
"""
PARENT = """
import subprocess, sys, time
log = open(sys.argv[3], "w")
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], stdout=log, stderr=log)
print(child.pid, flush=True)
while b"while_the_backend_lives" not in open(sys.argv[2] + "/journal.jsonl", "rb").read():
    if child.poll() is not None:
        sys.exit(f"the child ended first ({child.returncode})")
    time.sleep(0.01)
"""


def ended(pid: int) -> bool:
    """Gone, or a zombie its new parent has not reaped yet."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_worker_bound_to_a_dead_backend_writes_no_journal_line(tmp_path):
    root = SessionStore.create(tmp_path / "session", {"model_source": "m", "labels": {}}).root
    environment = {**os.environ, "PYTHONPATH": str(ENGINE)}
    done = subprocess.run(
        [sys.executable, "-c", PARENT, CHILD, str(root), str(tmp_path / "child.log")],
        env=environment,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode() + (tmp_path / "child.log").read_text()
    child = int(done.stdout.split()[0])
    deadline = time.monotonic() + 30
    while not ended(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ended(child)
    journal = (root / "journal.jsonl").read_text()
    assert "while_the_backend_lives" in journal and "after_the_backend_died" not in journal


@pytest.mark.slow
def test_a_version_whose_weights_cannot_be_used_is_not_activated(tmp_path, tiny_model):
    session = AdaptationSession.create(tmp_path / "session", tiny_model, "cpu")
    store = session.store
    broken = {
        "v0001": b"not a checkpoint",
        "v0002": None,  # a state dict that does not fit the network
    }
    for number, (version_id, data) in enumerate(broken.items(), start=1):
        partial = store.partial_version_folder()
        if data is None:
            torch.save({"weight": torch.zeros(3)}, partial / "model.pt")
        else:
            (partial / "model.pt").write_bytes(data)
        store.log("round_started", round=number, parent="v0000", pid=os.getpid())
        store.commit_round(partial, ModelVersion(version_id, "v0000", now_iso(), number), {}, activate=False)
    for version_id, words in (("v0001", "not a loadable"), ("v0002", "do not fit")):
        with pytest.raises(CheckpointError, match=words):
            session.activate(version_id)
        assert store.active_version == "v0000"
    assert not [e for e in store.journal() if e["event"] == "version_activated"]
