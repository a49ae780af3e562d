"""The starting segmentation a session serves: a few-shot proposal when the leave-one-out over the labelled
cases says it validates better than the model (here a random model, deliberately bad), the model with one
labelled case; ICBM152 at 6 mm, affine-only registration (about a second a case)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from asfda.errors import CancelledError
from asfda.inference.predictor import predict
from asfda.models.loading import build_network
from asfda.proposals import ProposalChoice, ProposalKind, foreground_dice
from asfda.session import starting_points
from asfda.session.records import ModelVersion, now_iso
from asfda.session.session import AdaptationSession
from asfda.session.starting_points import ProposalConfig, StartingPoint
from asfda.session.store import PRETRAINED_VERSION

FAST = {"registration": {"deformable": "none", "affine_samples": 4000}, "ahead": 1}


@pytest.fixture
def session(tmp_path, tiny_dataset, tiny_model):
    session = AdaptationSession.create(tmp_path / "session", tiny_model, "cpu")
    session.add_folder(tiny_dataset.pool[0][0].parent)
    session.store.update_settings(proposals=FAST)
    return session


def label_cases(session, tiny_dataset, count: int) -> list[str]:
    """Save the reference masks of the first ``count`` cases, as the radiologist would."""
    references = dict(tiny_dataset.pool)
    records = session.store.cases()
    for record in records[:count]:
        session.submit_label(record.id, references[Path(record.source_path)])
    return [r.id for r in records[:count]]


def save_mask(session, tiny_dataset, case_id: str) -> None:
    record = session.store.case(case_id)
    session.submit_label(case_id, dict(tiny_dataset.pool)[Path(record.source_path)])


def commit_version(session, seed: int) -> str:
    """A new active version with its own random weights: a round's outcome, without the training."""
    store = session.store
    version_id, number, parent = store.next_version_id(), store.next_round_number(), store.active_version
    partial = store.partial_version_folder()
    torch.manual_seed(seed)
    torch.save(build_network(session.pretrained().spec.network).state_dict(), partial / "model.pt")
    store.log("round_started", round=number, parent=parent, pid=os.getpid())
    store.commit_round(partial, ModelVersion(version_id, parent, now_iso(), number), {})
    return version_id


def labels_of(path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_settings_give_the_registration_and_the_cases_ahead():
    config = ProposalConfig.from_settings(FAST)
    assert config.registration.deformable.value == "none" and config.registration.affine_samples == 4000
    assert config.ahead == 1 and ProposalConfig.from_settings(None) == ProposalConfig()


def test_propagation_is_served_when_it_validates_better_than_a_bad_model(session, tiny_dataset):
    labelled = label_cases(session, tiny_dataset, 3)
    assert session.starting_point() is None  # before any choice, the model's prediction is served
    query = next(r for r in session.store.cases() if r.id not in labelled)
    assert session.proposed_prediction(query.id) is None

    steps = []
    point = session.refresh_starting_points(progress=lambda f, m: steps.append(f), cases=[query.id])

    assert point.proposes and point.cases == tuple(labelled) and point.model_version == "v0000"
    model_dice = point.choice.dice[ProposalKind.MODEL]
    assert point.choice.dice[point.choice.served] > model_dice + 0.2
    assert steps == sorted(steps) and steps[-1] == 1.0
    recorded = StartingPoint.from_json(json.loads((session.store.root / "proposals/choice.json").read_text()))
    assert recorded.choice.summary() == point.choice.summary()
    assert "validated Dice" in recorded.choice.summary() and "from 3 cases" in recorded.choice.summary()

    served = session.proposed_prediction(query.id)
    assert served is not None
    reference = labels_of(dict(tiny_dataset.pool)[Path(query.source_path)])
    proposal, model = labels_of(served), labels_of(session.write_prediction(query.id))
    assert proposal.shape == reference.shape
    classes = session.pretrained().spec.num_classes
    assert foreground_dice(proposal, reference, classes) > foreground_dice(model, reference, classes) + 0.2
    assert session.proposed_prediction(labelled[0]) is None  # a labelled case keeps its own mask
    commit_version(session, seed=3)  # a round: the proposal was built with the older model
    assert session.proposed_prediction(query.id) is None  # the new model's prediction until carried
    session.refresh_starting_points(cases=[query.id])
    assert session.proposed_prediction(query.id) is not None
    session.remove_case(query.id)
    assert not served.exists()  # a case taken out of the pool takes its proposal with it


def test_named_cases_are_built_and_the_cases_ahead_only_when_asked(session, tiny_dataset):
    session.store.update_settings(proposals={**FAST, "ahead": 2})
    (labelled,) = label_cases(session, tiny_dataset, 1)
    unlabelled = [r.id for r in session.store.cases() if r.id != labelled]
    last = unlabelled[-1]  # not among the two cases ahead (the pool's order: there is no ranking yet)
    assert session.cases_ahead(2) == unlabelled[:2]

    point = session.refresh_starting_points(cases=[last])
    assert [c for c in unlabelled if session.proposal_path(c, point).is_file()] == [last]
    point = session.refresh_starting_points(cases=[last], ahead=True)
    assert all(session.proposal_path(c, point).is_file() for c in unlabelled[:2] + [last])


def test_one_labelled_case_serves_the_model_when_the_rule_says_so(session, tiny_dataset):
    session.store.update_settings(proposals={**FAST, "single_case": "model"})
    label_cases(session, tiny_dataset, 1)
    point = session.refresh_starting_points()
    assert not point.proposes and not point.choice.validated
    summary = "starting from: the model's prediction (1 labelled case: no leave-one-out yet)"
    assert point.choice.summary() == summary
    assert all(session.proposed_prediction(r.id) is None for r in session.store.cases())
    assert not (session.store.root / "labels" / "proposed").exists()


def test_one_labelled_case_builds_the_one_case_rule_s_proposal(session, tiny_dataset):
    assert ProposalConfig().single_case is ProposalKind.WEIGHTED  # the rule chosen on validation
    (labelled,) = label_cases(session, tiny_dataset, 1)
    query = next(r for r in session.store.cases() if r.id != labelled)

    point = session.refresh_starting_points(cases=[query.id])

    assert point.proposes and point.choice.served is ProposalKind.WEIGHTED and not point.choice.validated
    assert "propagation from 1 case" in point.choice.summary()
    served = session.proposed_prediction(query.id)
    model = labels_of(session.write_prediction(query.id))
    assert served is not None and labels_of(served).shape == model.shape


def test_a_new_mask_remakes_the_choice(session, tiny_dataset):
    label_cases(session, tiny_dataset, 1)
    first = session.refresh_starting_points()
    label_cases(session, tiny_dataset, 2)
    second = session.refresh_starting_points()
    assert first.cases != second.cases and second.choice.validated


def test_a_round_on_the_same_labelled_cases_carries_the_choice_without_a_new_leave_one_out(
    session, tiny_dataset, monkeypatch
):
    label_cases(session, tiny_dataset, 2)
    first = session.refresh_starting_points()
    version = commit_version(session, seed=3)
    calls = []

    def remade(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("remade")

    monkeypatch.setattr(starting_points, "choose_proposal", remade)

    carried = session.refresh_starting_points()

    assert calls == []  # the leave-one-out scored the versions the cases were corrected from: unchanged
    assert carried.model_version == version and carried.choice == first.choice
    assert (
        carried.model_versions == first.model_versions and session.starting_point().model_version == version
    )
    label_cases(session, tiny_dataset, 3)
    with pytest.raises(RuntimeError, match="remade"):  # a new mask remakes it
        session.refresh_starting_points()
    assert len(calls) == 1


def test_a_cancelled_choice_records_nothing(session, tiny_dataset):
    label_cases(session, tiny_dataset, 2)
    asked = []

    def cancelled() -> bool:  # the user's stop arrives during the leave-one-out
        asked.append(True)
        return len(asked) > 2

    with pytest.raises(CancelledError):
        session.refresh_starting_points(cancelled=cancelled)
    assert session.starting_point() is None and len(asked) > 2


def test_corrected_from_is_the_version_active_at_the_first_save(session, tiny_dataset):
    first, second, unlabelled, older = (r.id for r in session.store.cases())
    save_mask(session, tiny_dataset, first)
    version = commit_version(session, seed=1)
    save_mask(session, tiny_dataset, first)  # a re-save under a version that may have trained on it
    save_mask(session, tiny_dataset, second)
    session.store.log("label_submitted", case=older, source="old.nii.gz")  # a session from before
    save_mask(session, tiny_dataset, older)
    assert session.corrected_from(first) == PRETRAINED_VERSION
    assert session.corrected_from(second) == version != PRETRAINED_VERSION
    assert session.corrected_from(older) == PRETRAINED_VERSION
    assert session.corrected_from(unlabelled) == PRETRAINED_VERSION


def test_the_leave_one_out_predicts_each_case_with_the_version_it_was_corrected_from(
    session, tiny_dataset, monkeypatch
):
    first, second, third, _ = (r.id for r in session.store.cases())
    save_mask(session, tiny_dataset, first)  # corrected from the pretrained model
    corrected = commit_version(session, seed=1)
    save_mask(session, tiny_dataset, second)
    save_mask(session, tiny_dataset, third)
    active = commit_version(session, seed=2)  # trained on all three, in a real session
    save_mask(session, tiny_dataset, first)  # a re-save changes nothing

    load_version = session.load_version

    def probabilities(version: str, case_id: str) -> np.ndarray:
        model = load_version(version)
        return predict(model, session.model_space_image(case_id), "cpu").probabilities.numpy()

    expected = {first: PRETRAINED_VERSION, second: corrected, third: corrected}
    scored: dict[str, np.ndarray] = {}

    def leave_one_out(cases, predictions, *args, **kwargs):  # what the choice is given, without registering
        scored.update({case.case_id: prediction for case, prediction in zip(cases, predictions)})
        return ProposalChoice(ProposalKind.MODEL, len(cases), {ProposalKind.MODEL: 0.5}, {}, "leave-one-out")

    monkeypatch.setattr(starting_points, "choose_proposal", leave_one_out)
    serving = session.model()
    loaded = []
    monkeypatch.setattr(
        session, "load_version", lambda version: loaded.append(version) or load_version(version)
    )
    point = session.choose_starting_point()

    assert set(scored) == set(expected)
    for case_id, version in expected.items():
        assert np.allclose(scored[case_id], probabilities(version, case_id), atol=1e-5), case_id
        assert not np.allclose(scored[case_id], probabilities(active, case_id), atol=1e-3), case_id
    assert loaded == [corrected]  # once for its two cases; the active and pretrained ones are the session's
    assert session.model() is serving  # the model the server uses was not evicted
    assert point.model_version == active and point.model_versions == expected
    recorded = json.loads((session.store.root / "proposals/choice.json").read_text())
    assert recorded["model_versions"] == expected
    assert StartingPoint.from_json(recorded).model_versions == expected
    assert f"{PRETRAINED_VERSION}, {corrected}" in point.choice.reason
