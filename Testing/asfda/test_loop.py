"""What the loop prints about each round."""

from __future__ import annotations

from dataclasses import replace

from asfda.loop import RoundRecord, format_round


def test_a_round_the_guard_kept_back_says_so():
    record = RoundRecord(2, 2, ["tgt_003"], "v0002", 0.38, 17.0, None, 0.0, 3.5, activated=False)
    assert "model v0002 (validated worse: not activated, its parent stays active)," in format_round(record)
    assert "not activated" not in format_round(replace(record, activated=True))
