"""``asfda speed-loop``'s plumbing (not its timings): the real backend driven on a pool of 3 tiny cases for
one round of 2 steps, the record written into speed.json and the report, and records replaced by their key."""

import json
import shutil

import pytest
from asfda.benchmark.speed.speed_loop import LoopSettings, round_options, run_backend_loop, shipped_steps
from asfda.benchmark.speed.speed_report import add_backend_loop_record, merge_backend_loop
from asfda.config import FinetuneConfig


@pytest.fixture(scope="module")
def tiny_pool(tmp_path_factory, tiny_dataset):
    """3 pool cases in a folder of their own (the backend adds the whole folder), labels beside it."""
    root = tmp_path_factory.mktemp("loop_pool")
    pool = []
    for image, label in tiny_dataset.pool[:3]:
        for kind, path in (("images", image), ("labels", label)):
            (root / kind).mkdir(exist_ok=True)
            shutil.copy(path, root / kind / path.name)
        pool.append((root / "images" / image.name, root / "labels" / label.name))
    return pool


@pytest.fixture(scope="module")
def record(tmp_path_factory, tiny_pool, tiny_model):
    work = tmp_path_factory.mktemp("loop_work")
    settings = LoopSettings("segresnet", "cpu", rounds=1, steps=2, work=work, timeout=120.0)
    result = run_backend_loop(tiny_model, tiny_pool, settings)
    (session,) = work.glob("*/session")
    assert not (session / "server.json").exists()  # the backend was stopped cleanly
    return result


def test_a_round_through_the_backend_is_timed(record):
    assert (record["device"], record["model"], record["pool_size"], record["steps"]) == (
        "cpu",
        "segresnet",
        3,
        2,
    )
    assert record["startup_s"] > 0 and 0 < record["first_case_s"] <= record["first_ranking_s"] + 5
    # a pool of 3 is under the 6 cases a provisional ranking waits for: the first case is the complete
    # ranking's first
    assert not record["first_case_provisional"] and record["first_case_scored"] is None
    assert record["first_case_rank"] == 1
    (timings,) = record["rounds"]
    for field in ("upload_s", "save_to_next_case_s", "finetune_s", "rescoring_s", "save_to_ranking_s"):
        assert timings[field] > 0
    assert timings["save_to_ranking_s"] >= timings["finetune_s"] + timings["rescoring_s"]
    assert timings["steps"] == 2  # what the round trained, from its job
    assert timings["save_to_next_case_s"] >= timings["upload_s"]
    assert (timings["model_version_before"], timings["model_version_after"]) == ("v0000", "v0001")
    # the next case came while the round ran: from the ranking of the version before it, prediction too
    assert timings["next_case_model_version"] == timings["next_case_prediction_model_version"] == "v0000"
    assert timings["next_case"] != timings["case"]
    assert record["median_save_to_ranking_s"] == timings["save_to_ranking_s"]
    assert record["median_save_to_next_case_s"] == timings["save_to_next_case_s"]
    assert record["targets_s"] == {
        "save_to_next_case_s": 2.0,
        "first_case_s": 10.0,
        "save_to_ranking_s": 20.0,
    }
    assert record["machine"]["cpu_count"] > 0 and record["commit"]


def test_the_record_goes_to_speed_json_and_the_report(record, tmp_path):
    add_backend_loop_record(tmp_path, record)
    add_backend_loop_record(tmp_path, {**record, "commit": "newer"})
    result = json.loads((tmp_path / "speed.json").read_text())
    assert [r["commit"] for r in result["backend_loop"]] == ["newer"]  # the same key: replaced
    report = (tmp_path / "report.md").read_text()
    assert "# Backend loop: Save to the next case, Save to the refreshed ranking" in report
    assert "median save to next case" in report
    assert "## cpu, segresnet, pool of 3, 2 steps" in report and "| 1 |" in report


def test_a_save_starts_the_shipped_schedule_unless_steps_are_fixed():
    assert "steps" not in round_options(None)  # the backend then trains round_steps, as the module's Save
    assert round_options(7)["steps"] == 7
    assert shipped_steps() == f"{FinetuneConfig().steps} + {FinetuneConfig().steps_per_labelled} x labelled"


def test_backend_loop_records_merge_by_device_model_pool_size_and_steps():
    old = {"device": "cpu", "model": "segresnet", "pool_size": 20, "steps": 60, "commit": "a"}
    others = [{**old, "steps": 5}, {**old, "device": "cuda"}, {**old, "model": "swinunetr48"}]
    merged = merge_backend_loop([old, *others], {**old, "commit": "b"})
    assert len(merged) == 4
    assert [r["commit"] for r in merged if r["commit"] != "a"] == ["b"]
    assert merge_backend_loop([], old) == [old]
    shipped = {**old, "steps": shipped_steps()}  # a rule beside counts: its own record, sortable
    assert len(merge_backend_loop([old, *others], shipped)) == 5
    # the record a new one replaces leaves its figures beside it, for the comparison
    timed = {**old, "first_ranking_s": 20.2, "median_mask_to_ranking_s": 42.2}
    (newer,) = merge_backend_loop([timed], {**old, "commit": "b", "first_ranking_s": 9.0})
    assert newer["previous"] == {"commit": "a", "first_ranking_s": 20.2, "median_mask_to_ranking_s": 42.2}
