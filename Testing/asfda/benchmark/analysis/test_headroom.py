"""The headroom on hand-made records: random over all its draws, the oracle's and the ceiling's Dice, and
the share of the headroom each arm captures."""

import pytest
from asfda.benchmark.analysis.headroom import captured_share, headroom, headroom_markdown
from asfda.benchmark.running.results import ALL_LABELLED, RunResult
from asfda.loop import RoundRecord


def flat(arm, seed, dice, budgets=(1, 2, 4), validation=None):
    records = [RoundRecord(0, 0, [], "v0", None, None, None, 0.0, 0.0)]
    for number, n in enumerate(budgets, start=1):
        record = RoundRecord(number, n, [f"tgt_{number:03d}"], f"v{number}", dice, 5.0, None, 0.0, 0.0)
        record.validation_split_dice = validation or {}
        records.append(record)
    return RunResult(arm, seed, "supervised", records)


def runs():
    draws = [flat("random", seed, 0.50 + 0.01 * seed) for seed in range(21)]  # 0.50 .. 0.70, mean 0.60
    return [
        *draws,
        flat("asfda", 0, 0.66),
        flat("asfda", 1, 0.64),  # mean 0.65
        flat("entropy", 0, 0.55),
        flat(ALL_LABELLED, 0, 0.80, budgets=(60,)),
    ]


def test_random_spread_over_all_draws_and_each_arms_share_of_the_headroom():
    oracle = [flat("oracle", 0, 0.70, budgets=(1, 2), validation={"val_000": 0.9})]
    room = headroom(runs(), 2, ceiling_steps=500, oracle=oracle)
    assert room["random_draws"] == 21 and room["random_mean"] == pytest.approx(0.60)
    quantiles = room["random_quantiles"]
    assert quantiles["0.05"] == pytest.approx(0.51) and quantiles["0.25"] == pytest.approx(0.55)
    assert quantiles["0.75"] == pytest.approx(0.65) and quantiles["0.95"] == pytest.approx(0.69)
    assert room["random_best"] == pytest.approx(0.70)
    assert room["oracle"]["dice"] == pytest.approx(0.70) and room["oracle"]["validation_dice"] == 0.9
    assert room["oracle"]["picked_by_seed"] == {"0": ["tgt_001", "tgt_002"]}  # the set, not the last round
    assert room["all_labelled"] == pytest.approx(0.80)
    asfda, entropy = room["arms"]["asfda"], room["arms"]["entropy"]
    assert asfda["dice"] == pytest.approx(0.65)
    assert asfda["share_of_oracle"] == pytest.approx(0.5)  # (0.65 - 0.60) / (0.70 - 0.60)
    assert asfda["share_of_ceiling"] == pytest.approx(0.25)  # (0.65 - 0.60) / (0.80 - 0.60)
    assert entropy["share_of_oracle"] == pytest.approx(-0.5)  # below random's mean: a negative share
    assert ALL_LABELLED not in room["arms"]
    text = "\n".join(headroom_markdown(room, 2))
    assert "| asfda | 0.6500 | 50 % | 25 % |" in text and "oracle's set" in text


def test_without_an_oracle_its_share_is_none_and_no_headroom_has_no_share():
    room = headroom(runs(), 2)
    assert room["oracle"] is None and room["arms"]["asfda"]["share_of_oracle"] is None
    assert room["arms"]["asfda"]["share_of_ceiling"] == pytest.approx(0.25)
    assert captured_share(0.7, 0.6, 0.6) is None and captured_share(0.7, 0.6, 0.5) is None
    assert captured_share(None, 0.6, 0.8) is None
    assert headroom(runs()[:1], 2) is None  # one draw has no spread
