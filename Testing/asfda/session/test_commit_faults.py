"""A round's commit, crashed at every step: after reopening, the round is either complete and active or not
visible at all (no listed version, no round record, no temporary file, the old version active).

Each crash is a real SIGKILL of a process running ``AdaptationSession.finetune``, delivered by
``asfda.session.faults`` at the step named in ``ASFDA_FAULT_AT`` (test-only). The processes run side by side,
one session copy each, so the whole sweep costs about one interpreter start per core.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from asfda.session.session import AdaptationSession
from asfda.session.store import COMMIT_STEPS, PRETRAINED_VERSION, SessionStore

REPOSITORY = Path(__file__).resolve().parents[3]
# The named commit steps, and the atomic replacements inside them (between a temporary file's fsync and its
# rename): before the journal's round_completed line the round must vanish, after it the round must stand.
CRASH_STEPS = {
    "replace:model.pt": False,
    "weights-saved": False,
    "replace:version.json": False,
    "replace:round.json": False,
    "version-staged": False,
    "version-renamed": False,
    "round-committed": True,
    "replace:state.json": True,
    "version-activated": True,
}
ROUND = """
import sys
from asfda.session.session import AdaptationSession
session = AdaptationSession.open(sys.argv[1], "cpu")
config = session.finetune_config
config.steps, config.semi_supervised, config.validate_every, config.amp = 1, False, 1, False
config.accept_worse = True  # the commit is the subject here, not the guard
session.finetune(config)
"""


@pytest.fixture(scope="module")
def labelled_session(tmp_path_factory, tiny_dataset, tiny_model):
    root = tmp_path_factory.mktemp("commit") / "session"
    session = AdaptationSession.create(root, tiny_model, "cpu")
    image, label = tiny_dataset.pool[0]
    case = session.add_volume(image)
    session.add_volume(tiny_dataset.pool[1][0])
    session.submit_label(case.id, label)
    return root


def leftovers(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if ".tmp" in p.name or p.name.startswith(".partial")
    )


def test_every_step_names_a_real_point():
    assert set(COMMIT_STEPS) <= set(CRASH_STEPS)


def test_a_crash_at_every_commit_step_leaves_the_round_whole_or_invisible(labelled_session, tmp_path):
    runs = {}
    for step in CRASH_STEPS:
        copy = tmp_path / step.replace(":", "_")
        shutil.copytree(labelled_session, copy)
        environment = {
            **os.environ,
            "ASFDA_FAULT_AT": step,
            "PYTHONPATH": str(REPOSITORY / "ASFDAModule"),
            "OMP_NUM_THREADS": "1",
        }
        runs[step] = (copy, subprocess.Popen([sys.executable, "-c", ROUND, str(copy)], env=environment))
    for step, (root, process) in runs.items():
        assert process.wait(300) == -signal.SIGKILL, f"{step}: the process was not killed at the step"
        store = SessionStore(root)  # what a restarted backend or CLI sees
        versions = [v.id for v in store.versions()]
        assert leftovers(root) == [], step
        if CRASH_STEPS[step]:
            assert versions == [PRETRAINED_VERSION, "v0001"], step
            assert store.active_version == "v0001", step
            assert store.round_number == 1 and [r["round"] for r in store.rounds()] == [1], step
            assert store.rounds()[0]["model_version"] == "v0001", step
            assert (root / "models" / "v0001" / "model.pt").is_file(), step
            assert store.interrupted_rounds == [], step
        else:
            assert versions == [PRETRAINED_VERSION], step
            assert store.active_version == PRETRAINED_VERSION, step
            assert store.round_number == 0 and store.rounds() == [], step
            assert not (root / "models" / "v0001").exists(), step
            assert store.interrupted_rounds == [1], step
            assert store.next_round_number() == 2 and store.next_version_id() == "v0001", step


def test_a_failed_commit_in_a_live_process_leaves_nothing(labelled_session, tmp_path, monkeypatch):
    """ASFDA_FAULT_MODE=raise: the process survives (a warm worker) and cleans up after itself."""
    root = tmp_path / "session"
    shutil.copytree(labelled_session, root)
    session = AdaptationSession.open(root, "cpu")
    config = session.finetune_config
    config.steps, config.semi_supervised, config.validate_every, config.amp = 1, False, 1, False
    monkeypatch.setenv("ASFDA_FAULT_MODE", "raise")
    monkeypatch.setenv("ASFDA_FAULT_AT", "version-renamed")
    with pytest.raises(RuntimeError, match="injected fault at version-renamed"):
        session.finetune(config)
    assert [v.id for v in session.store.versions()] == [PRETRAINED_VERSION]
    assert not (root / "models" / "v0001").exists() and leftovers(root) == []
    assert session.store.journal()[-1]["event"] == "round_failed"
