"""The speed benchmark's outputs: ``speed.json`` (records merged by device, model and pool size, so a GPU
machine adds its records to a CPU run's) and ``report.md`` rendered from it.

``speed.json`` also keeps ``demo_loop``: timings of the whole ``asfda demo`` at two commits, taken outside
the speed command (each run a whole process, old and new in turn); ``add_demo_loop_record`` adds one and
the report shows them in its "Demo loop" section, so a later ``asfda speed`` run keeps them. Likewise
``backend_loop``: the radiologist's wait through the real backend (``asfda speed-loop``), added by
``add_backend_loop_record``."""

from __future__ import annotations

import json
from pathlib import Path

from ...errors import ASFDAError
from ...session.store import write_json_atomic

STAGES = ("read", "preprocess", "forward", "scores", "write")
PATHS = ("baseline", "first", "rescoring")
SCENARIO = (
    "first ranking of a pool: prediction with BatchNorm statistics, knowledge gap, ASD, embedding, scores "
    "written as JSON"
)


def merge_records(out: Path, records: list[dict]) -> dict:
    """Add ``records`` to ``out/speed.json`` (replacing those of the same device, model and pool size) and
    rewrite ``out/report.md``."""
    path = Path(out) / "speed.json"
    result = read_results(path)
    key = lambda r: (r["device"], r["model"], r["pool_size"])  # noqa: E731
    kept = {key(r): r for r in result.get("records", [])}
    kept.update({key(r): r for r in records})
    result["records"] = sorted(kept.values(), key=lambda r: (r["device"], r["model"], r["pool_size"]))
    result["scenario"] = SCENARIO
    result["gpu_records"] = any(r["device"] == "cuda" for r in result["records"])
    write_json_atomic(path, result)
    (Path(out) / "report.md").write_text(render_report(result))
    return result


def read_results(path: Path) -> dict:
    """``speed.json`` as written so far, or an empty one."""
    if not path.is_file():
        return {"scenario": SCENARIO, "records": [], "gpu_records": False}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ASFDAError(
            f"unreadable speed results ({error}); move the file away to start anew", path
        ) from error


def render_report(result: dict) -> str:
    """Markdown: per record, each path's stages per volume and their ratio to the network alone."""
    lines = [
        "# Scoring speed",
        "",
        f"Scenario: {result['scenario']}. Paths: `baseline` is the code before the speed work "
        "(`asfda.inference.baseline`), `first` today's code with an empty case-tensor cache, `rescoring` "
        "today's code with the cache filled (every scoring after the first). The limit is a bare "
        "sliding-window pass of the network over the same windows (today's batching), timed in each path's "
        "process beside it on the first volumes; ratios are stage time / that limit, so they compare paths "
        "even when the machine's load drifts between them. Each path runs in a fresh process: its peak host "
        "memory is its own.",
        "",
    ]
    if not result["gpu_records"]:
        lines += [
            "**No GPU records yet**: the runs so far had no GPU. Run the same command on a GPU machine: its "
            "records are added to these.",
            "",
        ]
    for r in result["records"]:
        lines += [
            f"## {r['device']}, {r['model']}, pool of {r['pool_size']}",
            "",
            f"`{r['command'] or 'asfda speed'}` on {machine_text(r['machine'])}, {r['threads']} torch "
            f"threads; commit `{r['commit']}`, {r['created']}.",
            "",
            f"Network alone (beside `rescoring`): {r['network_seconds_per_volume']:.3f} s a volume "
            f"({r['windows_per_volume']} windows, {r['sw_batch_size']} a call).",
            "",
            "| path | " + " | ".join(STAGES) + " | total s/volume | volumes/s | non-network | peak host MiB "
            "| peak GPU MiB |",
            "|---" * (len(STAGES) + 6) + "|",
        ]
        for name in PATHS:
            if name not in r:
                continue
            p = r[name]
            cells = [f"{p['seconds_per_volume'][s]:.3f} ({p['ratio_to_network'][s]:.2f}x)" for s in STAGES]
            gpu = "-" if p["peak_gpu_mib"] is None else f"{p['peak_gpu_mib']:.0f}"
            lines.append(
                f"| {name} | " + " | ".join(cells) + f" | {p['total_seconds_per_volume']:.3f} | "
                f"{p['volumes_per_s']:.2f} | {p['non_network_fraction']:.0%} | "
                f"{p['peak_host_mib']:.0f} | {gpu} |"
            )
        if "speedup_rescoring_vs_baseline" in r:
            lines += [
                "",
                f"Per volume, baseline / today: {r['speedup_first_vs_baseline']:.2f}x on a first scoring, "
                f"{r['speedup_rescoring_vs_baseline']:.2f}x on a rescoring; in units of the network time "
                f"timed beside each path, {r['speedup_rescoring_vs_baseline_in_network_units']:.2f}x "
                "on a rescoring.",
            ]
        lines.append("")
    lines += render_demo_loop(result.get("demo_loop", []))
    lines += render_backend_loop(result.get("backend_loop", []))
    return "\n".join(lines)


def add_demo_loop_record(out: Path, record: dict) -> dict:
    """Add (or replace, by command and load) a demo-loop timing in ``out/speed.json``; rewrite the report."""
    path = Path(out) / "speed.json"
    result = json.loads(path.read_text())
    same = lambda r: (r["command"], r["load"]) == (record["command"], record["load"])  # noqa: E731
    result["demo_loop"] = [r for r in result.get("demo_loop", []) if not same(r)] + [record]
    write_json_atomic(path, result)
    (Path(out) / "report.md").write_text(render_report(result))
    return result


def render_demo_loop(records: list[dict]) -> list[str]:
    """Wall seconds of the whole demo at the old and the new commit: min, median, max, and old / new taken
    run pair by run pair (the pairing keeps the ratio meaningful when the machine's load drifts)."""
    if not records:
        return []
    lines = [
        "# Demo loop",
        "",
        "Wall time of the whole `asfda demo` process (dataset, source model, both sessions, every round, "
        "evaluation, plot), old and new commit run in turn A B A B on the same machine; min / median / max.",
        "",
    ]
    for r in records:
        lines += [
            f"## `{r['command']}`, {r['load']}",
            "",
            f"{machine_text(r['machine'])}, {r['threads']} torch threads; old `{r['old_commit']}`, "
            f"new `{r['new_commit']}`; {r['runs']} runs of each, {r['created']}. {r['note']}",
            "",
            "| | min | median | max |",
            "|---|---|---|---|",
        ]
        for name, label in (("old_wall_s", "old, s"), ("new_wall_s", "new, s"), ("ratio", "old / new")):
            v = r[name]
            lines.append(f"| {label} | {v['min']:.2f} | {v['median']:.2f} | {v['max']:.2f} |")
        lines.append("")
    return lines


def machine_text(machine: dict) -> str:
    gpu = f", GPU {machine['cuda']}" if machine.get("cuda") else ", no GPU"
    return (
        f"{machine['processor']} ({machine['cpu_count']} CPU cores{gpu}), {machine['platform']}, "
        f"torch {machine['torch']}, MONAI {machine.get('monai', '?')}"
    )


PREVIOUS_FIELDS = (
    "commit",
    "created",
    "first_case_s",
    "first_suggestion_s",
    "first_ranking_s",
    "median_save_to_next_case_s",
    "median_save_to_ranking_s",
    "median_mask_to_ranking_s",
)


def backend_loop_key(record: dict) -> tuple:
    # str: a count of steps, or the shipped schedule's rule ("200 + 40 x labelled")
    return (record["device"], record["model"], record["pool_size"], str(record["steps"]))


def merge_backend_loop(records: list[dict], record: dict) -> list[dict]:
    """``records`` with ``record`` added, replacing the one of the same device, model, pool size and steps."""
    kept = {backend_loop_key(r): r for r in records}
    old = kept.get(backend_loop_key(record))
    if old is not None and old.get("commit") != record.get(
        "commit"
    ):  # the figures it replaces, for comparison
        record = {**record, "previous": {k: old[k] for k in PREVIOUS_FIELDS if old.get(k) is not None}}
    kept[backend_loop_key(record)] = record
    return sorted(kept.values(), key=backend_loop_key)


def add_backend_loop_record(out: Path, record: dict) -> dict:
    """Add (or replace) a backend-loop timing in ``out/speed.json``; rewrite the report."""
    path = Path(out) / "speed.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    result = read_results(path)
    result["backend_loop"] = merge_backend_loop(result.get("backend_loop", []), record)
    write_json_atomic(path, result)
    (Path(out) / "report.md").write_text(render_report(result))
    return result


def render_backend_loop(records: list[dict]) -> list[str]:
    """Per record, each round's waits after Save: to the next case in hand and to the refreshed ranking."""
    if not records:
        return []
    lines = [
        "# Backend loop: Save to the next case, Save to the refreshed ranking",
        "",
        "`asfda speed-loop`: the real backend (`asfda serve`) in its own process, driven over HTTP as the "
        "Slicer module drives it. Per round the served case's reference label is uploaded as the saved mask, "
        "a fine-tune round starts, the next case is fetched (`/next`, image, prediction) while the round "
        "runs, and the clock stops when the ranking of the new model version is in hand. Wall seconds, "
        "timed by the client. Records from before issue 21 have no next-case column (the module then "
        "waited for the ranking).",
        "",
    ]
    for r in records:
        lines += [f"## {r['device']}, {r['model']}, pool of {r['pool_size']}, {r['steps']} steps", ""]
        lines += [backend_loop_summary(r), ""]
        lines += [
            "| round | mask upload s | save to next case s | steps | fine-tune s | rescoring s "
            "| save to ranking s |",
            "|---|---|---|---|---|---|---|",
        ]
        for n, t in enumerate(r["rounds"], 1):
            next_case = t.get("save_to_next_case_s")
            lines.append(
                f"| {n} | {t['upload_s']:.2f} | {'-' if next_case is None else f'{next_case:.2f}'} | "
                f"{t.get('steps', r['steps'])} | {t['finetune_s']:.2f} | {t['rescoring_s']:.2f} | "
                f"{t.get('save_to_ranking_s', t.get('mask_to_ranking_s')):.2f} |"
            )
        lines.append("")
    return lines


def backend_loop_summary(r: dict) -> str:
    targets = r.get("targets_s") or {"save_to_ranking_s": r.get("target_s")}
    to_ranking = r.get("median_save_to_ranking_s", r.get("median_mask_to_ranking_s"))
    text = (
        f"`{r['command'] or 'asfda speed-loop'}` on {machine_text(r['machine'])}; "
        f"commit `{r['commit']}`, {r['created']}. Backend start {r['startup_s']:.1f} s"
    )
    first_case = r.get("first_case_s", r.get("first_suggestion_s"))  # its name before the provisional one
    if first_case is not None:
        target = targets.get("first_case_s", targets.get("first_suggestion_s"))
        text += f", first case in hand {first_case:.1f} s after adding the pool (target {target:.0f} s"
        if r.get("first_case_provisional"):
            text += (
                f"; from the provisional ranking of {r['first_case_scored']} cases scored, rank "
                f"{r['first_case_rank']} in the complete one"
            )
        text += ")"
    text += f", first ranking {r['first_ranking_s']:.1f} s"
    if r.get("median_save_to_next_case_s") is not None:
        text += (
            f"; median save to next case **{r['median_save_to_next_case_s']:.2f} s** "
            f"(target {targets['save_to_next_case_s']:.0f} s)"
        )
    text += f"; median save to ranking **{to_ranking:.1f} s**"
    if targets.get("save_to_ranking_s") is not None:
        text += f" (target {targets['save_to_ranking_s']:.0f} s)"
    previous = r.get("previous")
    if previous:
        before = previous.get("median_save_to_ranking_s", previous.get("median_mask_to_ranking_s"))
        text += (
            f". The record it replaced (commit `{previous['commit'][:10]}`, {previous.get('created')}): "
            f"first ranking {previous['first_ranking_s']:.1f} s, save to ranking {before:.1f} s"
        )
    if r.get("load"):
        text += f". Machine load (1-minute average) before and after: {r['load']}"
    return text + "."
