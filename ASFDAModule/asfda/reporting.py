"""Plain-text tables for the command line."""

from __future__ import annotations

from .scoring.query import RankedCase


def ranking_table(ranking: list[RankedCase], names: dict[str, str]) -> str:
    """The ranking with DKD (knowledge gap), ASD, diversity and the combined score; '<-' marks the picks."""
    lines = [f"{'rank':>4}  {'case':<24} {'DKD':>7} {'ASD':>7} {'diversity':>9} {'score':>7}  next"]
    for row in ranking:
        lines.append(
            f"{row.rank:>4}  {names.get(row.case_id, row.case_id)[:24]:<24} {row.knowledge_gap:7.4f} "
            f"{row.asd:7.4f} {row.diversity:9.3f} {row.score:7.3f}  {'<-' if row.picked else ''}"
        )
    return "\n".join(lines)
