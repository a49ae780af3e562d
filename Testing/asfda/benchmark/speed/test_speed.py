"""The speed benchmark's plumbing (not its timings): one path measured in-process on a tiny pool, and the
records merged into speed.json and the report."""

import json

import pytest
from asfda.benchmark.speed.measure import measure
from asfda.benchmark.speed.speed import summarise
from asfda.benchmark.speed.speed_report import STAGES, merge_records
from asfda.io.volumes import content_hash, read_volume


@pytest.fixture(scope="module")
def measured(tmp_path_factory, tiny_dataset, tiny_model):
    root = tmp_path_factory.mktemp("speed")
    volumes = [image for image, _ in tiny_dataset.pool[:2]]
    job = {
        "device": "cpu",
        "model": str(tiny_model),
        "volumes": volumes,
        "case_ids": [content_hash(read_volume(v)) for v in volumes],
        "cache": str(root / "cache"),
        "threads": None,
        "memory_cache_mib": 64,
        "limit_volumes": 1,
    }
    return {
        path: measure({**job, "path": path, "scores": str(root / path)})
        for path in ("baseline", "first", "rescoring")
    }


def test_each_path_times_every_stage_and_the_network(measured):
    for result in measured.values():
        assert set(result["seconds_per_volume"]) == set(STAGES)
        assert result["network_seconds_per_volume"] > 0 and result["peak_host_mib"] > 0
    assert measured["first"]["cache_hits"] == {"memory": 0, "disk": 0, "computed": 2}
    assert measured["rescoring"]["cache_hits"] == {"memory": 0, "disk": 2, "computed": 0}
    assert measured["rescoring"]["seconds_per_volume"]["preprocess"] == 0.0  # served from the cache
    assert measured["baseline"]["kept_cases"] == 2  # the old session kept every case in memory


def test_records_merge_by_device_model_and_pool_size(measured, tmp_path):
    record = summarise("cpu", "segresnet", 2, measured)
    assert 0.0 <= record["rescoring"]["non_network_fraction"] < 1.0
    assert record["speedup_rescoring_vs_baseline"] > 0
    context = {"command": "asfda speed", "commit": "abc", "created": "now", "threads": 2}
    machine = {"processor": "x86_64", "cpu_count": 2, "platform": "Linux", "torch": "2", "cuda": None}
    merge_records(tmp_path, [{**record, **context, "machine": machine}])
    gpu = {**record, **context, "device": "cuda", "machine": {**machine, "cuda": "H100"}}
    result = merge_records(tmp_path, [gpu, {**record, **context, "machine": machine, "commit": "def"}])
    assert [(r["device"], r["commit"]) for r in result["records"]] == [("cpu", "def"), ("cuda", "abc")]
    assert json.loads((tmp_path / "speed.json").read_text())["gpu_records"] is True
    report = (tmp_path / "report.md").read_text()
    assert "## cuda, segresnet, pool of 2" in report and "No GPU records" not in report
