"""What the module keeps itself: settings (QSettings), case marks and edit effort (JSON in the session)."""

from __future__ import annotations

import numpy as np
import pytest
from ASFDAModuleLib.CaseMarks import CaseMark, CaseMarks
from ASFDAModuleLib.EditEffort import EditEffortLog, EditRecord, changedFraction, editDice
from ASFDAModuleLib.Settings import LeavePolicy, ModuleSettings


class DictSettings:
    """QSettings' value/setValue over a dictionary (QSettings itself needs Qt)."""

    def __init__(self):
        self.values = {}

    def value(self, key, default=None):
        return self.values.get(key, default)

    def setValue(self, key, value):
        self.values[key] = value


def test_settings_survive_a_new_settings_object_and_unknown_keys_are_refused():
    store = DictSettings()
    ModuleSettings(store).save(modelPath="/models/ct", sessionFolder="/data/s1", device="cuda", backendUrl="")
    again = ModuleSettings(store)

    assert again.load() == {"modelPath": "/models/ct", "sessionFolder": "/data/s1", "device": "cuda"}
    assert again.leavePolicy is LeavePolicy.ASK
    again.leavePolicy = LeavePolicy.HIDE
    assert (
        ModuleSettings(store).leavePolicy is LeavePolicy.HIDE and store.values["ASFDA/leavePolicy"] == "hide"
    )
    with pytest.raises(KeyError, match="token"):
        again.save(token="secret")  # a secret never goes to the settings file


def test_case_marks_are_written_at_once_and_read_back(tmp_path):
    marks = CaseMarks(tmp_path / "slicer")
    marks.mark("a", CaseMark.SKIPPED)
    marks.mark("b", CaseMark.FLAGGED, "wrong anatomy")
    marks.unmark("a")

    again = CaseMarks(tmp_path / "slicer")
    assert again.ids() == {"b"} and again.get("b").note == "wrong anatomy"
    assert again.ids(CaseMark.SKIPPED) == set()
    (tmp_path / "slicer" / "case_marks.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"case_marks.json: not a list of case marks"):
        CaseMarks(tmp_path / "slicer")


def test_edit_dice_is_the_mean_over_labels_in_either_map():
    prediction = np.zeros((4, 4, 4), np.uint8)
    corrected = prediction.copy()
    prediction[0, :2, :2] = 1  # 4 voxels
    corrected[0, :2, :1] = 1  # 2 of them kept
    corrected[3, 3, 3] = 2  # a structure the model missed

    assert editDice(prediction, corrected) == pytest.approx((2 * 2 / 6 + 0.0) / 2)
    assert editDice(prediction, prediction) == 1.0
    assert editDice(np.zeros(3), np.zeros(3)) is None
    assert changedFraction(prediction, corrected) == pytest.approx(3 / 64)
    with pytest.raises(ValueError, match="differ in shape"):
        editDice(prediction, corrected[:2])


def test_edit_effort_per_round_keeps_the_last_record_of_a_case(tmp_path):
    log = EditEffortLog(tmp_path)
    log.add(EditRecord("a", "A", "v0", 0, 0.5, 0.1))
    log.add(EditRecord("b", "B", "v0", 0, 0.7, 0.1))
    log.add(EditRecord("c", "C", "v1", 1, 0.9, 0.01))
    log.add(EditRecord("a", "A", "v1", 1, 0.8, 0.02))  # saved again after the round

    rounds = EditEffortLog(tmp_path).perRound()
    assert [(r.round, r.cases) for r in rounds] == [(0, 1), (1, 2)]
    assert rounds[0].meanDice == pytest.approx(0.7) and rounds[1].meanDice == pytest.approx(0.85)
