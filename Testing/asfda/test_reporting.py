"""The command line's ranking table: a pick that scores below a case ranked after it is explained."""

from asfda.config import QueryStrategy
from asfda.reporting import ranking_table
from asfda.scoring.query import RankedCase


def ranked(scores_and_picks):
    return [
        RankedCase(f"c{i}", 0.5, 0.3, 1.0, score, rank=i + 1, picked=picked)
        for i, (score, picked) in enumerate(scores_and_picks)
    ]


def test_a_drawn_pick_below_the_top_score_is_explained_as_a_draw():
    table = ranking_table(ranked([(0.667, True), (1.0, False), (0.5, False)]), {}, QueryStrategy.CLASP)
    lines = table.splitlines()
    assert len(lines) == 5 and lines[1].rstrip().endswith("<-")
    assert lines[-1] == (
        "(a pick can score below a case ranked after it: clasp draws its picks in proportion to the score)"
    )


def test_a_covering_query_names_coverage_instead():
    table = ranking_table(ranked([(0.4, True), (0.9, False)]), {}, QueryStrategy.TYPICLUST)
    assert table.splitlines()[-1].endswith("typiclust also weighs how the picks cover the pool)")


def test_no_note_when_the_picks_score_highest():
    ranking = ranked([(1.0, True), (0.9, True), (0.2, False)])
    table = ranking_table(ranking, {"c0": "tgt_000"}, QueryStrategy.CLASP)
    lines = table.splitlines()
    assert len(lines) == 4 and "tgt_000" in lines[1] and not lines[-1].startswith("(")
