"""A session's persistent teacher: saved beside each round's weights, the next round's teacher from it."""

from dataclasses import replace

import pytest
import torch
from asfda.config import FinetuneConfig
from asfda.errors import CheckpointError
from asfda.session import rounds
from asfda.session.session import AdaptationSession

PERSISTENT = FinetuneConfig(
    steps=1,
    steps_per_labelled=0,
    semi_supervised=True,
    persistent_teacher=True,
    validate_every=1,
    amp=False,
    batch_size=1,
    accept_worse=True,  # each round's version becomes the next round's parent, whatever its Dice
)


@pytest.fixture
def session(tmp_path, tiny_dataset, tiny_model):
    session = AdaptationSession.create(tmp_path / "session", tiny_model, "cpu")
    (image, label), (unlabelled, _) = tiny_dataset.pool[:2]
    session.submit_label(session.add_volume(image).id, label)
    session.add_volume(unlabelled)
    return session


@pytest.fixture
def given_teachers(monkeypatch):
    """The ``teacher_state`` each round's training was given."""
    given = []
    finetune_round = rounds.finetune_round

    def spy(*args, **kwargs):
        given.append(kwargs["teacher_state"])
        return finetune_round(*args, **kwargs)

    monkeypatch.setattr(rounds, "finetune_round", spy)
    return given


def test_the_next_round_starts_its_teacher_from_the_one_saved_with_its_parent(session, given_teachers):
    first = session.finetune(PERSISTENT)
    saved = session.store.teacher_path(first.id)
    assert given_teachers == [None] and saved.is_file()  # the pretrained version has no teacher: a fresh one
    second = session.finetune(PERSISTENT)
    assert second.parent == first.id and session.store.teacher_path(second.id).is_file()
    expected = torch.load(saved, map_location="cpu", weights_only=True)
    assert given_teachers[1].keys() == expected.keys()
    assert all(torch.equal(given_teachers[1][k], expected[k]) for k in expected)


def test_a_round_without_the_option_saves_no_teacher_and_loads_none(session, given_teachers):
    session.store.teacher_path(session.store.active_version).write_bytes(b"never read")
    version = session.finetune(replace(PERSISTENT, persistent_teacher=False))
    assert given_teachers == [None] and not session.store.teacher_path(version.id).exists()


def test_a_corrupt_teacher_file_fails_the_round_naming_the_file(session):
    corrupt = session.store.teacher_path(session.store.active_version)
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a loadable weights-only checkpoint") as error:
        session.finetune(PERSISTENT)
    assert error.value.path == corrupt and str(corrupt) in str(error.value)
    assert [v.id for v in session.store.versions()] == ["v0000"]
    assert session.store.journal()[-1]["event"] == "round_failed"
