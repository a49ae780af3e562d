"""The cost tables of a benchmark: scoring passes and volumes per round, fine-tuning seconds, peak memory,
and the one-off scoring of the pool by the pretrained model."""

from __future__ import annotations

from dataclasses import dataclass

from ..running.results import SOURCE_ONLY, RunResult
from .report import Cell, _markdown_table, by_arm, cell


@dataclass
class CostRow:
    arm: str
    volumes: int  # volumes scored in all runs, rounds with a fine-tuned model (round 1's are shared)
    passes_per_volume: float
    seconds_per_volume: float
    finetune_seconds: Cell
    peak_rss_mib: float
    peak_cuda_mib: float | None


def cost_rows(results: list[RunResult]) -> list[CostRow]:
    """Per strategy: forward passes and seconds per scored volume (from the rounds whose model was fine-tuned
    here; round 1 starts from a pool scored once for all runs), seconds per fine-tuning round, peak memory."""
    rows = []
    for arm, runs in by_arm(results).items():
        if arm == SOURCE_ONLY:
            continue
        volumes = passes = 0
        seconds = 0.0
        for run in runs:
            scoring_seconds = {r.round: r.scoring_seconds for r in run.records}
            for cost in run.scoring:
                if cost.round >= 2 and cost.volumes > 0:
                    volumes += cost.volumes
                    passes += cost.passes
                    seconds += scoring_seconds.get(cost.round, 0.0)
        cuda = [r.peak_cuda_mib for r in runs if r.peak_cuda_mib is not None]
        rows.append(
            CostRow(
                arm,
                volumes,
                passes / volumes if volumes else 0.0,
                seconds / volumes if volumes else 0.0,
                cell(r.finetune_seconds for run in runs for r in run.records if r.round >= 1),
                max((r.peak_rss_mib for r in runs), default=float("nan")),
                max(cuda) if cuda else None,
            )
        )
    return rows


def costs_markdown(
    results: list[RunResult], pretrained_scoring: dict | None = None, preamble: str = ""
) -> str:
    """The cost table, and the one-off scoring of the pool by the pretrained model (ours against MC
    dropout)."""
    parts = [preamble.strip()] if preamble.strip() else []
    parts.append("## Scoring and fine-tuning cost per strategy (measured in the same run)")
    parts.append(
        _markdown_table(
            [
                "strategy",
                "volumes scored",
                "forward passes / volume",
                "seconds / scored volume",
                "seconds / fine-tuning round",
                "peak RSS (MiB)",
                "peak CUDA (MiB)",
            ],
            (
                [
                    row.arm,
                    str(row.volumes),
                    f"{row.passes_per_volume:.1f}" if row.volumes else "0 (needs no scores)",
                    f"{row.seconds_per_volume:.2f}" if row.volumes else "0",
                    row.finetune_seconds.format(1),
                    f"{row.peak_rss_mib:.0f}",
                    "n/a (CPU)" if row.peak_cuda_mib is None else f"{row.peak_cuda_mib:.0f}",
                ]
                for row in cost_rows(results)
            ),
        )
    )
    parts.append(
        "Scored volumes and passes count the rounds after the first (their model is fine-tuned within the "
        "run; round 1 ranks from the pool scored once by the pretrained model, below). Seconds per "
        "fine-tuning round include the end-of-round validation on the labelled cases. "
        "Peak RSS is `ru_maxrss` of the process that ran the (strategy, seed) run."
    )
    if pretrained_scoring:
        ours, mc = pretrained_scoring.get("ours", {}), pretrained_scoring.get("epistemic", {})
        parts.append("## The pool scored once by the pretrained model")
        parts.append(
            _markdown_table(
                ["scores", "forward passes / volume", "seconds / volume (mean ± sd)", "volumes"],
                [
                    [
                        "ours: ASD, DKD (prototypes, BatchNorm KL), entropy, embedding",
                        f"{ours.get('passes_per_volume', 0):.1f}",
                        cell(ours.get("seconds", [])).format(2),
                        str(len(ours.get("seconds", []))),
                    ],
                    [
                        "MC-dropout epistemic (MONAI Label's, 5 passes; plus the pass above)",
                        f"{mc.get('passes_per_volume', 0):.1f}",
                        cell(mc.get("seconds", [])).format(2),
                        str(len(mc.get("seconds", []))),
                    ],
                ],
            )
        )
    return "\n\n".join(parts) + "\n"
