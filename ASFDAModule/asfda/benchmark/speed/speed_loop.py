"""``asfda speed-loop``: the radiologist's wait through the real backend, timed as the module drives it.

It starts ``asfda serve`` in a subprocess as the module does, adds a pool folder and asks for the first case
(``POST /next``, then the case's image and prediction, as the module fetches them). Each round then plays
Save and next: the served case's reference label is uploaded as the saved mask, a fine-tune round with the
shipped options is started (``round_steps``: steps plus steps per labelled case; ``--steps`` fixes a count),
and the next case is asked for and fetched while the round runs; the clock runs on until the ranking of the
new model version is in hand (an annotator takes longer than a round, so the next round starts from there).
The clock is the client's (job records stamp whole seconds):

- ``first_case_s``: from adding the pool to the first case's files in hand (``/next``, image, prediction),
  served from a provisional ranking once enough cases are scored (``first_case_provisional``, with
  ``first_case_scored`` cases of the pool scored then, and ``first_case_rank``, its rank in the complete
  first ranking: what serving early cost);
- ``first_ranking_s``: from adding the pool to the complete first ranking;
- ``upload_s``: the PUT of the mask, answered once it is stored;
- ``save_to_next_case_s``: from before the PUT to the next case's files in hand (``/next``, image,
  prediction), with the round running behind;
- ``finetune_s``: from the upload to the poll that sees the round's job done;
- ``rescoring_s``: from there to the complete ranking of the new version (its scoring job starts on its own);
- ``save_to_ranking_s``: the whole wait, from before the PUT to the refreshed ranking.

The record (one per device, model, pool size and steps, with machine and commit; a new one replaces the
old) goes to ``speed.json``'s ``backend_loop`` list, shown in ``report.md``, beside ``asfda speed``'s.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from ...config import FinetuneConfig
from ...errors import ASFDAError
from ...io.volumes import case_name
from ..running.provenance import git_commit
from .backend import (
    BackendProcess,
    answer,
    fetch_case,
    start_backend,
    upload_mask,
    wait_for_job,
    wait_for_ranking,
)
from .speed import MODELS, REPOSITORY, machine, model_folder, pool_cases
from .speed_report import add_backend_loop_record

# Issue 21's targets (pool of 20, the shipped fine-tuning defaults): on 2 CPU cores with the SegResNet, and
# save to refreshed ranking on a GPU with the SwinUNETR-48 (issue 11's 10 s).
TARGETS_S = {
    "save_to_next_case_s": 2.0,
    "first_case_s": 10.0,
    "save_to_ranking_s": {"cpu": 20.0, "cuda": 10.0},
}


@dataclass(frozen=True)
class LoopSettings:
    model_name: str
    device: str
    rounds: int
    steps: int | None  # None: the shipped schedule, as the module's Save starts it
    work: Path
    timeout: float


def say(text: str) -> None:
    print(f"speed-loop: {text}", flush=True)


# -- the loop -------------------------------------------------------------------------------------------
def round_options(steps: int | None) -> dict:
    """The fine-tune request of a Save: the shipped schedule, or ``steps`` steps every round."""
    options = {"seed": 0, "accept_worse": True}  # accept_worse: every round makes a new version
    return options if steps is None else {**options, "steps": steps}


def run_round(client: httpx.Client, case: dict, labels: dict[str, Path], settings: LoopSettings, folder):
    """Save and next: the served case's mask uploaded, the round started, the next case fetched while it
    runs; then the wait for the refreshed ranking. Its timings and the next case."""
    active = answer(client.get("/info"))["model_version"]  # the version the round starts from
    start = time.perf_counter()
    upload_mask(client, case["id"], labels[case["name"]])
    uploaded = time.perf_counter()
    job = answer(client.post("/finetune", json=round_options(settings.steps)))
    following = fetch_case(client, folder)
    in_hand = time.perf_counter()
    finetuned = wait_for_job(client, job["id"], settings.timeout)
    trained = time.perf_counter()
    refreshed = wait_for_ranking(client, finetuned["model_version"], settings.timeout)
    end = time.perf_counter()
    timings = {
        "case": case["name"],
        "next_case": following["name"],
        "next_case_model_version": following["model_version"],
        "next_case_prediction_model_version": following["prediction_model_version"],
        "case_model_version": case["model_version"],  # the ranking that served the saved case
        "model_version_before": active,
        "model_version_after": refreshed["model_version"],
        "upload_s": round(uploaded - start, 3),
        "save_to_next_case_s": round(in_hand - start, 3),
        "finetune_s": round(trained - uploaded, 3),
        "steps": finetuned["result"]["metrics"]["steps"],
        "rescoring_s": round(end - trained, 3),
        "save_to_ranking_s": round(end - start, 3),
    }
    return timings, following


def first_case_served(session: Path) -> dict:
    """What the journal says of the first case served: its ``provisional`` count ("8 of 20 scored")."""
    for line in (session / "journal.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "case_served":
            return event
    return {}


def drive_backend(backend: BackendProcess, images: Path, labels: dict[str, Path], settings: LoopSettings):
    """Add the pool, fetch the first case, run the rounds: (first case times and facts, rounds, backend
    info)."""
    folder = backend.session.parent / "fetched"
    folder.mkdir(exist_ok=True)
    with backend.client(settings.timeout) as client:
        info = answer(client.get("/info"))
        start = time.perf_counter()
        answer(client.post("/cases", json={"folder": str(images)}))
        case = fetch_case(client, folder)
        first_case_s = time.perf_counter() - start
        ranking = wait_for_ranking(client, info["model_version"], settings.timeout)
        first_ranking_s = time.perf_counter() - start
        provisional = first_case_served(backend.session).get("provisional")
        rank = next((c["rank"] for c in ranking["cases"] if c["id"] == case["id"]), None)
        first = {
            "first_case_s": first_case_s,
            "first_ranking_s": first_ranking_s,
            "first_case_provisional": bool(case.get("provisional")),
            "first_case_scored": (provisional or "").replace(" scored", "") or None,
            "first_case_rank": rank,
        }
        say(
            f"first case in hand {first_case_s:.2f} s"
            + (f" (provisional: {provisional}; rank {rank} in the complete ranking)" if provisional else "")
            + f", first ranking of {len(ranking['cases'])} cases {first_ranking_s:.2f} s"
        )
        rounds = []
        for number in range(1, settings.rounds + 1):
            timings, case = run_round(client, case, labels, settings, folder)
            rounds.append(timings)
            say(
                f"round {number}: save to next case {timings['save_to_next_case_s']:.2f} s (served from "
                f"{timings['next_case_model_version']}), save to ranking "
                f"{timings['save_to_ranking_s']:.2f} s "
                f"(upload {timings['upload_s']:.2f}, fine-tune {timings['finetune_s']:.2f}, rescoring "
                f"{timings['rescoring_s']:.2f}), {timings['model_version_before']} -> "
                f"{timings['model_version_after']}"
            )
    return first, rounds, info


def run_backend_loop(model: Path, pool: list[tuple[Path, Path]], settings: LoopSettings) -> dict:
    """Time the backend on ``pool`` (its volumes one folder, nothing else in it); the record."""
    images = pool[0][0].parent
    labels = {case_name(image): label for image, label in pool}
    with session_parent(settings.work) as parent:
        session = parent / "session"
        say(f"starting the backend ({settings.model_name}, {settings.device}) on {session}")
        load_before = os.getloadavg()[0]  # the cores may be shared: the record says how busy they were
        start = time.perf_counter()
        backend = start_backend(session, model, settings.device, images, settings.timeout)
        try:
            startup_s = time.perf_counter() - start
            say(f"backend ready: {startup_s:.2f} s")
            first, rounds, info = drive_backend(backend, images, labels, settings)
        finally:
            clean = backend.stop()
            say("backend stopped" + ("" if clean else ": not cleanly, server.json is left"))
    if not rounds:
        raise ASFDAError("no round ran: the pool has no unlabelled case")
    times = {"startup_s": startup_s, "first_case_s": first.pop("first_case_s")}
    times["first_ranking_s"] = first.pop("first_ranking_s")
    record = loop_record(settings, len(pool), times, rounds, info)
    record.update(first)
    record["load"] = f"{load_before:.2f} / {os.getloadavg()[0]:.2f}"
    return record


@contextmanager
def session_parent(work: Path | None) -> Iterator[Path]:
    """A fresh folder for the session: kept under ``work`` (its log and jobs can be read), else removed."""
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)
        yield Path(tempfile.mkdtemp(prefix="asfda-speed-loop-", dir=work))
        return
    with tempfile.TemporaryDirectory(prefix="asfda-speed-loop-") as parent:
        yield Path(parent)


def loop_record(settings: LoopSettings, pool_size: int, times: dict, rounds, info) -> dict:
    command = sys.argv[1:2] == ["speed-loop"]
    device = info["device"].split(":")[0]  # as the backend resolved it ("auto" becomes cpu or cuda)
    targets = {name: (t.get(device) if isinstance(t, dict) else t) for name, t in TARGETS_S.items()}
    return {
        "device": device,
        "model": settings.model_name,
        "pool_size": pool_size,
        "steps": shipped_steps() if settings.steps is None else settings.steps,
        **{name: round(seconds, 3) for name, seconds in times.items()},
        "rounds": rounds,
        "median_save_to_next_case_s": round(statistics.median(r["save_to_next_case_s"] for r in rounds), 3),
        "median_save_to_ranking_s": round(statistics.median(r["save_to_ranking_s"] for r in rounds), 3),
        "targets_s": targets,
        "gpu_name": info.get("gpu_name"),
        "command": "asfda " + " ".join(sys.argv[1:]) if command else None,
        "machine": machine(),
        "commit": git_commit(REPOSITORY),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def shipped_steps() -> str:
    config = FinetuneConfig()
    return f"{config.steps} + {config.steps_per_labelled} x labelled"


def speed_loop(args: argparse.Namespace) -> int:
    """Build the model and the pool, time the loop through the backend, record it, print the report."""
    data, out = Path(args.data), Path(args.out)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line a poll would drown the progress lines
    say(f"building (or reusing) {args.model} and a pool of {args.pool_size} in {data}")
    model = model_folder(args.model, data)
    pool = pool_cases(data, args.pool_size)
    work = Path(args.work) if args.work else None
    settings = LoopSettings(args.model, args.device, args.rounds, args.steps, work, args.timeout)
    record = run_backend_loop(model, pool, settings)
    add_backend_loop_record(out, record)
    say(
        f"first case in hand {record['first_case_s']:.2f} s (first ranking {record['first_ranking_s']:.2f} "
        f"s); median save to next case "
        f"{record['median_save_to_next_case_s']:.2f} s, save to ranking "
        f"{record['median_save_to_ranking_s']:.2f} s; "
        f"written to {out / 'speed.json'}"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "speed-loop",
        help="time Save to the next case and to the refreshed ranking through the real backend",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", choices=MODELS, default="swinunetr48")
    parser.add_argument(
        "--pool-size", type=int, default=20, metavar="N", help="cases in the pool (default 20)"
    )
    parser.add_argument("--rounds", type=int, default=2, metavar="R", help="fine-tune rounds (default 2)")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        metavar="S",
        help=f"steps of every round (default: the shipped schedule, {shipped_steps()})",
    )
    parser.add_argument("--device", choices=("cpu", "cuda", "mps", "auto"), default="auto")
    parser.add_argument(
        "--data",
        default=str(REPOSITORY / "data" / "speed"),
        metavar="DIR",
        help="where the pools and the SwinUNETR weights are built (reused)",
    )
    parser.add_argument("--out", default=str(REPOSITORY / "Resources" / "Speed"), metavar="DIR")
    parser.add_argument(
        "--work", default=None, metavar="DIR", help="parent of the session (default: a temp dir)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        metavar="S",
        help="seconds allowed for each wait (default 1800)",
    )
    parser.set_defaults(func=speed_loop)
