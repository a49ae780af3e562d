"""Plain-text tables for the command line."""

from __future__ import annotations

from .config import DRAWN_QUERIES, QueryStrategy
from .scoring.query import RankedCase


def ranking_table(ranking: list[RankedCase], names: dict[str, str], strategy: QueryStrategy) -> str:
    """The ranking with DKD (knowledge gap), ASD, diversity and the combined score; '<-' marks the picks,
    and a note says why when a pick scores below a case ranked after it."""
    lines = [f"{'rank':>4}  {'case':<24} {'DKD':>7} {'ASD':>7} {'diversity':>9} {'score':>7}  next"]
    for row in ranking:
        lines.append(
            f"{row.rank:>4}  {names.get(row.case_id, row.case_id)[:24]:<24} {row.knowledge_gap:7.4f} "
            f"{row.asd:7.4f} {row.diversity:9.3f} {row.score:7.3f}  {'<-' if row.picked else ''}"
        )
    if pick_below_others(ranking):
        lines.append(pick_note(strategy))
    return "\n".join(lines)


def pick_below_others(ranking: list[RankedCase]) -> bool:
    """Whether a pick scores below a case that was not picked."""
    picked = [row.score for row in ranking if row.picked]
    others = [row.score for row in ranking if not row.picked]
    return bool(picked and others) and min(picked) < max(others)


def pick_note(strategy: QueryStrategy) -> str:
    if strategy in DRAWN_QUERIES:
        why = f"{strategy.value} draws its picks in proportion to the score"
    else:
        why = f"{strategy.value} also weighs how the picks cover the pool"
    return f"(a pick can score below a case ranked after it: {why})"
