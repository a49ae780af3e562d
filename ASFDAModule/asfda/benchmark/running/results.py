"""A finished benchmark run as it is saved (``OUT/runs/<strategy>-seed<k>.json``) and read back: its round
records (round 0 = the source model before any label) and what its scoring cost. The runs write these
records and the report (analysis/) computes everything from them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ...loop import RoundRecord

SOURCE_ONLY = "source-only"
ALL_LABELLED = "all-labelled"


@dataclass
class RoundCost:
    """What one round's ranking cost: volumes scored (cache misses) and sliding-window passes over them."""

    round: int
    volumes: int
    passes: int


@dataclass
class RunResult:
    """One finished (strategy, seed) run."""

    arm: str
    seed: int
    fine_tuning: str  # "semi-supervised" or "supervised"
    records: list[RoundRecord]
    scoring: list[RoundCost] = field(default_factory=list)
    peak_rss_mib: float = float("nan")
    peak_cuda_mib: float | None = None
    seconds: float = 0.0
    started: str = ""
    finished: str = ""

    def to_json(self) -> dict:
        data = asdict(self)
        data["records"] = [r.to_json() for r in self.records]
        return data

    @classmethod
    def from_json(cls, data: dict) -> RunResult:
        data = dict(data)
        records = [RoundRecord.from_json(record) for record in data.pop("records")]
        scoring = [RoundCost(**cost) for cost in data.pop("scoring", [])]
        known = {f for f in cls.__dataclass_fields__}
        return cls(records=records, scoring=scoring, **{k: v for k, v in data.items() if k in known})

    def at(self, n_labelled: int) -> RoundRecord | None:
        """The record of the round that ended with ``n_labelled`` labelled cases (round 0 for 0)."""
        for record in self.records:
            if record.n_labelled == n_labelled:
                return record
        return None
