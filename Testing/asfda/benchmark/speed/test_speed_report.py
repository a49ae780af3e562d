"""Demo-loop timings live in speed.json beside the scoring records and survive a later speed run."""

import json

from asfda.benchmark.speed.speed_report import add_demo_loop_record, merge_records

MACHINE = {"processor": "x86_64", "cpu_count": 2, "platform": "Linux", "torch": "2", "cuda": None}


def demo_record(load: str, median_ratio: float) -> dict:
    spread = {"min": 1.0, "median": median_ratio, "max": 9.0}
    return {
        "command": "asfda demo --out DIR --rounds 2",
        "load": load,
        "machine": MACHINE,
        "threads": 2,
        "old_commit": "aaa",
        "new_commit": "bbb",
        "runs": 3,
        "created": "now",
        "note": "Same Dice.",
        "old_wall_s": {"min": 300.0, "median": 400.0, "max": 500.0},
        "new_wall_s": {"min": 60.0, "median": 80.0, "max": 100.0},
        "ratio": spread,
    }


def test_demo_loop_records_are_reported_replaced_and_kept(tmp_path):
    merge_records(tmp_path, [])
    add_demo_loop_record(tmp_path, demo_record("2 benchmark processes beside it", 4.0))
    add_demo_loop_record(tmp_path, demo_record("2 benchmark processes beside it", 5.0))  # replaces
    add_demo_loop_record(tmp_path, demo_record("idle", 1.5))
    merge_records(tmp_path, [])  # a later `asfda speed` run
    result = json.loads((tmp_path / "speed.json").read_text())
    assert [r["ratio"]["median"] for r in result["demo_loop"]] == [5.0, 1.5]
    report = (tmp_path / "report.md").read_text()
    assert "# Demo loop" in report and "| old / new | 1.00 | 5.00 | 9.00 |" in report
    assert "| old, s | 300.00 | 400.00 | 500.00 |" in report and "old `aaa`, new `bbb`" in report
