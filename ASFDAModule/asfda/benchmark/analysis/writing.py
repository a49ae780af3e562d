"""Writing the benchmark's report files from the saved runs: results.md, results.csv, records.csv, costs.md,
curves.png and run.json, then the statistics (summary.json, statistics.md).

The tables, plots and statistics themselves are pure functions in report.py, costs.py, figures.py and
statistics.py; this module only names the arms for the reader, composes the preamble (dataset, command,
machine, commit) and puts each file in its place. It runs no model, so ``--report-only`` rebuilds the same
files from ``OUT/runs`` at any time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..running.arms import CEILING, FULL_METHOD, KNOWN_ARMS, LEGACY_FINE_TUNING, full_method
from ..running.results import ALL_LABELLED, RunResult
from . import report
from .costs import costs_markdown
from .figures import plot_curves
from .statistics import write_statistics

if TYPE_CHECKING:
    from ..running.config import BenchmarkConfig


def write_report(out: Path, config: BenchmarkConfig, run_info: dict, results: list[RunResult]) -> list[Path]:
    """results.md, results.csv, records.csv, costs.md, curves.png and run.json from the saved runs
    (``results``: as the runner loads and orders them, ``ordered(load_results(out), config)``)."""
    schedule = tuple(run_info.get("schedule") or config.schedule)
    scoring_path = out / "pretrained_scoring.json"
    pretrained = json.loads(scoring_path.read_text()) if scoring_path.is_file() else None
    runs_made_by = run_info.get("invocations") or [run_info]
    per_labelled = f" plus {config.steps_per_labelled} per labelled case" if config.steps_per_labelled else ""
    commands = "`  \nthen `".join(i.get("command", "") for i in runs_made_by)
    preamble = (
        f"# ASFDA benchmark\n\nDataset `{run_info.get('dataset', '')}` "
        f"({run_info.get('dataset_summary', '')}); source model `{run_info.get('model', '')}`; schedule "
        f"{', '.join(map(str, schedule))} labelled cases, one round each, {config.steps} fine-tuning "
        f"steps a round{per_labelled}; seeds {', '.join(map(str, config.seeds))}.\n\n"
        f"Command{'s, in order' if len(runs_made_by) > 1 else ''}: `{commands}`  \n"
        f"Machine: {run_info.get('machine_summary', '')}  \n"
        f"Commit: {run_info.get('git_commit', '')}; runs from {runs_made_by[0].get('started', '')} "
        f"to {runs_made_by[-1].get('finished', '')}."
    )
    descriptions = {name: KNOWN_ARMS[name].description for name in config.arms}
    full = run_info.get("full_method") or {}
    if FULL_METHOD in descriptions and full.get("query"):
        fine_tuning = full.get("fine_tuning", LEGACY_FINE_TUNING)
        descriptions[FULL_METHOD] = full_method(full["query"], fine_tuning).description
    ceiling_steps, schedule_steps = run_info.get("ceiling_steps"), config.schedule_steps(schedule)
    ceiling_steps = ceiling_steps or config.ceiling_steps(schedule)
    descriptions[ALL_LABELLED] = f"{CEILING.description}, {ceiling_steps} supervised steps" + (
        " (the compute of a whole schedule)"
        if ceiling_steps == schedule_steps
        else f" (an arm trains {schedule_steps} over the whole schedule)"
    )
    descriptions["source-only"] = "the source model, no adaptation (the floor)"
    files = [
        out / "results.md",
        out / "results.csv",
        out / "records.csv",
        out / "costs.md",
        out / "curves.png",
        out / "run.json",
    ]
    files[0].write_text(report.results_markdown(results, schedule, "asfda", descriptions, preamble))
    files[1].write_text(report.results_csv(results, schedule))
    files[2].write_text(report.records_csv(results))
    files[3].write_text(costs_markdown(results, pretrained, preamble))
    plot_curves(
        results,
        schedule,
        files[4],
        title=f"{run_info.get('dataset_summary', '')}; mean ± sd over {len(config.seeds)} seeds",
    )
    run_info = {
        **run_info,
        "runs": [
            {
                "strategy": r.arm,
                "seed": r.seed,
                "started": r.started,
                "finished": r.finished,
                "seconds": round(r.seconds, 1),
            }
            for r in results
        ],
    }
    files[5].write_text(json.dumps(run_info, indent=2, default=str))
    files += write_statistics(out, results, schedule, run_info.get("endpoint") or schedule[-1], run_info)
    return files
