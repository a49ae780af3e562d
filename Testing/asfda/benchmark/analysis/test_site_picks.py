"""Picks by sub-population (table and bars) and the pool's embedding projection, on hand-made records and
tiny arrays."""

import json

import numpy as np
import pytest
from asfda.benchmark.analysis.site_figures import principal_components, write_site_figures
from asfda.benchmark.analysis.site_picks import picks_by_subpopulation, picks_markdown, pool_prevalence
from asfda.benchmark.running.results import RunResult
from asfda.loop import RoundRecord

POOL = {f"tgt_{i:03d}": "routine" for i in range(6)} | {"tgt_006": "rare", "tgt_007": "rare"}
METADATA = {name: {"subpopulation": mode, "split": "pool"} for name, mode in POOL.items()} | {
    "tst_000": {"subpopulation": "rare", "split": "test"}
}


def picking(arm, seed, *rounds):
    records = [RoundRecord(0, 0, [], "v0", None, None, None, 0.0, 0.0)]
    labelled = 0
    for number, picked in enumerate(rounds, start=1):
        labelled += len(picked)
        records.append(RoundRecord(number, labelled, list(picked), f"v{number}", 0.5, 1.0, None, 0.0, 0.0))
    return RunResult(arm, seed, "supervised", records)


def runs():
    return [
        picking("asfda", 0, ["tgt_006"], ["tgt_000", "tgt_007"]),
        picking("asfda", 1, ["tgt_007"], ["tgt_001", "tgt_002"]),
        picking("random", 0, ["tgt_003"], ["tgt_004", "tgt_005"]),
    ]


def test_picks_are_counted_by_subpopulation_per_round_and_against_the_pool():
    picks = picks_by_subpopulation(runs(), POOL)
    asfda = picks["asfda"]
    assert asfda["seeds"] == 2
    assert asfda["rounds"][0] == {"round": 1, "n_labelled": 1, "counts": {"rare": 2}}
    assert asfda["rounds"][1]["counts"] == {"rare": 1, "routine": 3}
    assert asfda["shares"] == pytest.approx({"rare": 0.5, "routine": 0.5})
    assert picks["random"]["counts"] == {"routine": 3}
    prevalence = pool_prevalence(METADATA)
    assert prevalence == pytest.approx({"rare": 0.25, "routine": 0.75})  # the test case is not in the pool
    lines = picks_markdown(picks, prevalence)
    assert "| arm | round (labelled) | rare | routine |" in lines
    assert "| asfda | 1 (1) | 2 | 0 |" in lines and "| asfda | 2 (3) | 1 | 3 |" in lines
    assert "| pool | prevalence | 25 % | 75 % |" in lines and "| random | all picks | 0 % | 100 % |" in lines


def test_the_projection_has_one_point_per_case_and_is_deterministic():
    # two centred, orthogonal directions of spread 10 and 3 along features 0 and 1: the axes are those
    a, b = np.tile([1.0, -1.0], 4), np.repeat([1.0, -1.0, -1.0, 1.0], 2)
    embeddings = np.zeros((8, 5))
    embeddings[:, 0], embeddings[:, 1] = 10 * a, 3 * b
    xy = principal_components(embeddings + 0.5)  # centred: the shift changes nothing
    assert xy.shape == (8, 2)
    assert np.allclose(xy[:, 0], 10 * a) and np.allclose(xy[:, 1], 3 * b)  # signs: largest loading > 0
    assert np.array_equal(xy, principal_components(embeddings + 0.5))
    assert np.allclose(principal_components(-embeddings), -xy)
    assert principal_components(np.random.default_rng(0).standard_normal((6, 4))).shape == (6, 2)
    with pytest.raises(ValueError, match="at least 2 cases"):
        principal_components(np.ones((1, 4)))


def test_the_site_figures_are_written_from_the_summary_and_the_recorded_embeddings(tmp_path):
    rng = np.random.default_rng(1)
    embeddings = {name: rng.standard_normal(6).round(4).tolist() for name in POOL}
    (tmp_path / "pretrained_scoring.json").write_text(json.dumps({"pool_embeddings": embeddings}))
    site = {"picks": picks_by_subpopulation(runs(), POOL), "pool_prevalence": pool_prevalence(METADATA)}
    files = write_site_figures(tmp_path, runs(), {"site": site}, {"case_metadata": METADATA}, "asfda")
    assert [f.name for f in files] == ["picks_by_subpopulation.png", "embedding_projection.png"]
    assert all(f.stat().st_size > 1000 for f in files)
    assert write_site_figures(tmp_path, runs(), {"site": None}, {}, "asfda") == []
