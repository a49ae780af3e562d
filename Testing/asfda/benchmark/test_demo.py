"""The demo, shrunk to one round on a few cases, through the command line."""

from pathlib import Path

import asfda
import asfda.loop
from asfda.benchmark.demo import DemoConfig, committed_model, dice_table, run_demo
from asfda.cli.main import main
from asfda.loop import RoundRecord

REPOSITORY = Path(__file__).resolve().parents[3]


def test_demo_finds_the_committed_model_in_the_repository():
    assert committed_model() == REPOSITORY / "Resources" / "SourceModel"
    assert Path(asfda.__file__).resolve().is_relative_to(REPOSITORY)


def test_demo_runs_rounds_and_writes_the_plot(tmp_path, tiny_model, monkeypatch):
    evaluated = []  # the random baseline's round 0 is the source model's, evaluated once
    real = asfda.loop.evaluate_model
    monkeypatch.setattr(
        "asfda.loop.evaluate_model", lambda *args, **kwargs: evaluated.append(1) or real(*args, **kwargs)
    )
    stale = tmp_path / "session" / "from_an_earlier_demo.txt"  # a demo always starts from the source model
    stale.parent.mkdir()
    stale.write_text("")
    lines: list[str] = []
    config = DemoConfig(n_pool=3, n_test=1, rounds=1, steps=1, patch_size=16, device="cpu")
    result = run_demo(tmp_path, tiny_model, config, report=lines.append, progress=False)
    output = "\n".join(lines)
    assert [r.round for r in result.records] == [0, 1] and result.records[1].n_labelled == 1
    assert all(0.0 <= r.test_dice <= 1.0 for r in result.records)
    assert "DKD" in output and "ASD" in output and "<-" in output  # the ranking table
    assert "held-out Dice" in output and result.plot.read_bytes()[:4] == b"\x89PNG"
    assert not stale.exists()
    assert len(evaluated) == 3  # round 0 once, round 1 of each query


def test_demo_without_a_model_says_what_to_do(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--model", str(tmp_path / "missing"), "--no-progress"]) == 2
    assert "--model" in capsys.readouterr().err


def test_dice_table_lists_every_round():
    records = [
        RoundRecord(0, 0, [], "v0000", 0.25, 20.0, None, 0, 0),
        RoundRecord(1, 1, ["tgt_003"], "v0001", 0.4, None, 0.5, 1.0, 2.0),
    ]
    table = dice_table(records)
    assert "0.2500" in table and "0.4000" in table and "tgt_003" in table and "(source model)" in table
