"""One bad case never blocks the session: scoring skips and reports it, and it can be removed."""

from __future__ import annotations

import shutil

import pytest
from asfda.errors import CaseInUseError, UnknownCaseError
from asfda.session.session import AdaptationSession


@pytest.fixture
def session(tmp_path, tiny_dataset, tiny_model):
    folder = tmp_path / "volumes"
    folder.mkdir()
    for image, _ in tiny_dataset.pool[:3]:
        shutil.copy(image, folder / image.name)
    session = AdaptationSession.create(tmp_path / "session", tiny_model, "cpu")
    session.add_folder(folder)
    return session


def test_a_case_that_cannot_be_scored_is_skipped_and_reported(session, tiny_dataset):
    records = session.store.cases()
    broken = records[1]
    with open(broken.source_path, "r+b") as stream:  # the file changed on disk after it was added
        stream.truncate(200)
    ranking = session.rank()
    assert {row.case_id for row in ranking} == {records[0].id, records[2].id}
    assert list(session.skipped) == [broken.id]
    assert broken.name in session.skipped[broken.id] and "truncated" in session.skipped[broken.id]
    assert session.store.skipped_path(session.store.active_version, broken.id).is_file()
    assert any(e["event"] == "case_skipped" and e["case"] == broken.id for e in session.store.journal())

    removed = session.remove_case(broken.id)
    assert removed.id == broken.id and broken.id not in {r.id for r in session.store.cases()}
    assert not session.store.skipped_path(session.store.active_version, broken.id).exists()
    assert not list(session.store.root.glob(f"scores/*/{broken.id}*"))
    with pytest.raises(UnknownCaseError):
        session.remove_case(broken.id)


def test_a_labelled_case_cannot_be_removed(session, tiny_dataset):
    image, label = tiny_dataset.pool[0]
    case = session.case_by_name(image.name.removesuffix(".nii.gz"))
    session.submit_label(case.id, label)
    with pytest.raises(CaseInUseError, match="is labelled"):
        session.remove_case(case.id)
    assert case.id in {r.id for r in session.store.cases()}
