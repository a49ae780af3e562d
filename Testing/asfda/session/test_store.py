"""The session store keeps every annotation and never half-applies a round."""

import errno
import json
import os

import pytest
import SimpleITK as sitk
from asfda.errors import MaskError, StoreError, UnknownCaseError
from asfda.session.session import AdaptationSession
from asfda.session.store import SessionStore, write_json_atomic


def snapshot(root):
    """Every file of the session folder with its bytes (the journal aside, which logs attempts)."""
    return {
        p.relative_to(root): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "journal.jsonl"
    }


@pytest.fixture
def session(tmp_path, tiny_dataset, tiny_model):
    session = AdaptationSession.create(tmp_path / "session", tiny_model, "cpu")
    session.add_folder(tiny_dataset.pool[0][0].parent)
    return session


def test_cases_get_content_ids_and_are_not_added_twice(session, tiny_dataset):
    records = session.store.cases()
    assert len(records) == len(tiny_dataset.pool)
    assert len({r.id for r in records}) == len(records)
    again = session.add_volume(tiny_dataset.pool[0][0])
    assert again.id == records[0].id and len(session.store.cases()) == len(records)


def test_submitted_mask_is_stored_and_logged(session, tiny_dataset):
    case = session.store.cases()[0]
    label_path = dict(tiny_dataset.pool)[__import__("pathlib").Path(case.source_path)]
    stored = session.submit_label(case.id, label_path)
    assert stored == session.store.final_label_path(case.id) and stored.is_file()
    assert session.store.labelled_ids() == [case.id]
    assert any(e["event"] == "label_submitted" and e["case"] == case.id for e in session.store.journal())


def test_bad_masks_leave_the_store_as_it_was(session, tiny_dataset, tmp_path):
    case = session.store.cases()[0]
    before = snapshot(session.store.root)
    image = session.image(case.id)
    wrong_grid = sitk.Image(image.GetSize(), sitk.sitkUInt8)  # default origin and spacing
    wrong_grid[2, 2, 2] = 1
    sitk.WriteImage(wrong_grid, str(tmp_path / "wrong_grid.nii.gz"))
    with pytest.raises(MaskError, match="wrong_grid.nii.gz: geometry does not match"):
        session.submit_label(case.id, tmp_path / "wrong_grid.nii.gz")
    background = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    background.CopyInformation(image)
    sitk.WriteImage(background, str(tmp_path / "background.nii.gz"))
    with pytest.raises(MaskError, match="background.nii.gz: the mask is empty"):
        session.submit_label(case.id, tmp_path / "background.nii.gz")
    (tmp_path / "corrupt.nii.gz").write_bytes(b"\x1f\x8b broken")
    with pytest.raises(MaskError, match="corrupt.nii.gz"):
        session.submit_label(case.id, tmp_path / "corrupt.nii.gz")
    with pytest.raises(UnknownCaseError, match="unknown case id 'nope'"):
        session.submit_label("nope", tiny_dataset.pool[0][1])
    assert snapshot(session.store.root) == before


def test_full_disk_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    write_json_atomic(path, {"active_version": "v0000"})

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(StoreError, match="state.json: no space left on device"):
        write_json_atomic(path, {"active_version": "v0001"})
    assert json.loads(path.read_text()) == {"active_version": "v0000"}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary file left behind


DEAD_PID = 2**22 + 12345  # above Linux's pid_max: no process has it


def test_a_round_cut_short_is_reported_interrupted_and_never_applied(session):
    store = session.store
    store.log("round_started", round=1, parent="v0000", labelled=[], reliable=[], pid=DEAD_PID)
    partial = store.root / "models" / f".partial-{DEAD_PID}-abc"
    partial.mkdir()
    (partial / "model.pt").write_bytes(b"half written")
    reopened = SessionStore(store.root)
    assert reopened.interrupted_rounds == [1]
    assert reopened.active_version == "v0000"
    assert [v.id for v in reopened.versions()] == ["v0000"]
    assert not partial.exists()
    assert SessionStore(store.root).interrupted_rounds == []  # reported once
    assert reopened.next_round_number() == 2  # the interrupted round keeps its number


def test_opening_the_session_during_a_live_round_leaves_the_round_alone(session):
    store = session.store
    store.log("round_started", round=1, parent="v0000", labelled=[], reliable=[], pid=os.getpid())
    partial = store.partial_version_folder()  # named after this (live) process
    reopened = SessionStore(store.root)
    assert reopened.interrupted_rounds == []
    assert partial.is_dir()
    assert list(reopened.open_rounds()) == [1]


def test_opening_a_folder_that_is_not_a_session_fails_clearly(tmp_path):
    with pytest.raises(StoreError, match="not an ASFDA session"):
        SessionStore(tmp_path)


def test_creating_over_an_existing_session_is_refused(session, tiny_model):
    with pytest.raises(StoreError, match="a session already exists here"):
        AdaptationSession.create(session.store.root, tiny_model)
