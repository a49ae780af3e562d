"""``asfda speed-loop``: the radiologist's wait through the real backend, from a saved mask to the refreshed
ranking.

It starts ``asfda serve`` in a subprocess as the Slicer module does, adds a pool folder and waits for the
first ranking; then, each round, it uploads the top-ranked case's reference label as the saved mask, starts a
fine-tune round of ``--steps`` steps and stops the clock when the ranking of the new model version is in
hand. The clock is the client's (job records stamp whole seconds, too coarse for a wait of a few seconds):

- ``upload_s``: the PUT of the mask, answered once it is stored;
- ``finetune_s``: from the POST of the round to the poll that sees its job done;
- ``rescoring_s``: from there to the complete ranking of the new version (its scoring job starts on its own);
- ``mask_to_ranking_s``: the whole wait, from before the PUT to the refreshed ranking.

The record (one per device, model, pool size and steps, with machine and commit; a new one replaces the
old) goes to ``speed.json``'s ``backend_loop`` list, shown in ``report.md``, beside ``asfda speed``'s.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from ..errors import ASFDAError
from ..io.volumes import case_name
from .provenance import git_commit
from .speed import MODELS, REPOSITORY, machine, model_folder, pool_cases
from .speed_report import add_backend_loop_record

READY = "ASFDA backend ready on "  # the line ``asfda serve`` prints once server.json is written
TARGET_S = 10.0  # issue 11: mask saved to refreshed ranking, 20 cases, SwinUNETR, 60 steps
POLL_S = 0.1  # fine enough for a wait of seconds, light on the cores the backend needs
ENGINE = Path(__file__).resolve().parents[2]  # the folder holding this ``asfda`` package


@dataclass(frozen=True)
class LoopSettings:
    model_name: str
    device: str
    rounds: int
    steps: int
    work: Path
    timeout: float


def say(text: str) -> None:
    print(f"speed-loop: {text}", flush=True)


# -- the backend process ----------------------------------------------------------------------------------
@dataclass
class BackendProcess:
    process: subprocess.Popen
    session: Path
    url: str
    token: str
    log: Path

    def client(self, timeout: float) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=timeout
        )

    def stop(self) -> bool:
        """SIGTERM (a clean stop: the backend ends its worker), SIGKILL if it hangs; whether it was clean
        (the exit code is -15 after a clean stop too; a clean stop removes server.json)."""
        stop_process(self.process)
        return not (self.session / "server.json").exists()


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def start_backend(session: Path, model: Path, device: str, images: Path, timeout: float) -> BackendProcess:
    """``python -m asfda serve`` on a new session, as the Slicer module starts it; returned once ready."""
    log = session.parent / f"{session.name}-server.log"
    command = [sys.executable, "-m", "asfda", "serve", "--session", str(session), "--model", str(model)]
    command += ["--device", device, "--port", "0", "--allow-dir", str(images)]
    # the backend imports this very engine, also when it runs from a checkout rather than an install
    path = os.pathsep.join(p for p in (str(ENGINE), os.environ.get("PYTHONPATH", "")) if p)
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
    with open(log, "w") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=environment
        )
    try:
        url = wait_until_ready(process, log, timeout)
        token = read_token(session)
    except BaseException:
        stop_process(process)
        raise
    return BackendProcess(process, session, url, token, log)


def wait_until_ready(process: subprocess.Popen, log: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text()
        if READY in text:
            return text.split(READY, 1)[1].split()[0]
        if process.poll() is not None:
            raise ASFDAError(f"the backend exited with {process.returncode}:\n{text[-4000:]}", log)
        time.sleep(POLL_S)
    raise ASFDAError(f"the backend was not ready after {timeout:.0f} s", log)


def read_token(session: Path) -> str:
    return json.loads((session / "server.json").read_text())["token"]


# -- the requests ---------------------------------------------------------------------------------------
def answer(response: httpx.Response):
    if response.status_code != 200:
        raise ASFDAError(
            f"{response.request.method} {response.request.url.path}: {response.status_code} "
            f"{response.text[:500]}"
        )
    return response.json()


def wait_for_job(client: httpx.Client, job_id: str, timeout: float) -> dict:
    """Poll a job until it has finished; a job that did not end ``done`` is an error."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = answer(client.get(f"/jobs/{job_id}"))
        if job["state"] not in ("queued", "running"):
            if job["state"] != "done":
                raise ASFDAError(f"{job['kind']} job {job_id} ended {job['state']}: {job['message']}")
            return job
        time.sleep(POLL_S)
    raise ASFDAError(f"{job['kind']} job {job_id} still {job['state']} after {timeout:.0f} s")


def wait_for_ranking(client: httpx.Client, version: str, timeout: float) -> dict:
    """The complete ranking of model ``version`` (the scoring job may not be queued yet when asked)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ranking = answer(client.get("/ranking", params={"wait": "true"}))
        if ranking["complete"] and ranking["model_version"] == version:
            return ranking
        time.sleep(POLL_S)
    raise ASFDAError(f"no complete ranking of {version} after {timeout:.0f} s")


def upload_mask(client: httpx.Client, case_id: str, mask: Path) -> None:
    with open(mask, "rb") as stream:
        answer(client.put(f"/cases/{case_id}/label", files={"file": (mask.name, stream)}))


# -- the loop -------------------------------------------------------------------------------------------
def run_round(client: httpx.Client, ranking: dict, labels: dict[str, Path], settings: LoopSettings):
    """One round from the saved mask to the refreshed ranking: its timings and the new ranking."""
    case = next(c for c in ranking["cases"] if c["id"] == ranking["next"])
    start = time.perf_counter()
    upload_mask(client, case["id"], labels[case["name"]])
    uploaded = time.perf_counter()
    options = {"steps": settings.steps, "seed": 0, "accept_worse": True}  # every round makes a new version
    job = answer(client.post("/finetune", json=options))
    finetuned = wait_for_job(client, job["id"], settings.timeout)
    trained = time.perf_counter()
    refreshed = wait_for_ranking(client, finetuned["model_version"], settings.timeout)
    end = time.perf_counter()
    timings = {
        "case": case["name"],
        "model_version_before": ranking["model_version"],
        "model_version_after": refreshed["model_version"],
        "upload_s": round(uploaded - start, 3),
        "finetune_s": round(trained - uploaded, 3),
        "rescoring_s": round(end - trained, 3),
        "mask_to_ranking_s": round(end - start, 3),
    }
    return timings, refreshed


def drive_backend(backend: BackendProcess, images: Path, labels: dict[str, Path], settings: LoopSettings):
    """Add the pool, wait for the first ranking, run the rounds: (first ranking s, rounds, backend info)."""
    with backend.client(settings.timeout) as client:
        info = answer(client.get("/info"))
        start = time.perf_counter()
        answer(client.post("/cases", json={"folder": str(images)}))
        ranking = wait_for_ranking(client, info["model_version"], settings.timeout)
        first_ranking_s = time.perf_counter() - start
        say(f"first ranking of {len(ranking['cases'])} cases: {first_ranking_s:.2f} s")
        rounds = []
        for number in range(1, settings.rounds + 1):
            if ranking["next"] is None:
                say("no unlabelled case left: stopping")
                break
            timings, ranking = run_round(client, ranking, labels, settings)
            rounds.append(timings)
            say(
                f"round {number}: mask to ranking {timings['mask_to_ranking_s']:.2f} s (upload "
                f"{timings['upload_s']:.2f}, fine-tune {timings['finetune_s']:.2f}, rescoring "
                f"{timings['rescoring_s']:.2f}), {timings['model_version_before']} -> "
                f"{timings['model_version_after']}"
            )
    return first_ranking_s, rounds, info


def run_backend_loop(model: Path, pool: list[tuple[Path, Path]], settings: LoopSettings) -> dict:
    """Time the backend on ``pool`` (its volumes one folder, nothing else in it); the record."""
    images = pool[0][0].parent
    labels = {case_name(image): label for image, label in pool}
    with session_parent(settings.work) as parent:
        session = parent / "session"
        say(f"starting the backend ({settings.model_name}, {settings.device}) on {session}")
        start = time.perf_counter()
        backend = start_backend(session, model, settings.device, images, settings.timeout)
        try:
            startup_s = time.perf_counter() - start
            say(f"backend ready: {startup_s:.2f} s")
            first_ranking_s, rounds, info = drive_backend(backend, images, labels, settings)
        finally:
            clean = backend.stop()
            say("backend stopped" + ("" if clean else ": not cleanly, server.json is left"))
    if not rounds:
        raise ASFDAError("no round ran: the pool has no unlabelled case")
    return loop_record(settings, len(pool), startup_s, first_ranking_s, rounds, info)


@contextmanager
def session_parent(work: Path | None) -> Iterator[Path]:
    """A fresh folder for the session: kept under ``work`` (its log and jobs can be read), else removed."""
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)
        yield Path(tempfile.mkdtemp(prefix="asfda-speed-loop-", dir=work))
        return
    with tempfile.TemporaryDirectory(prefix="asfda-speed-loop-") as parent:
        yield Path(parent)


def loop_record(settings: LoopSettings, pool_size: int, startup_s, first_ranking_s, rounds, info) -> dict:
    command = sys.argv[1:2] == ["speed-loop"]
    return {
        "device": info["device"].split(":")[0],  # as the backend resolved it ("auto" becomes cpu or cuda)
        "model": settings.model_name,
        "pool_size": pool_size,
        "steps": settings.steps,
        "startup_s": round(startup_s, 3),
        "first_ranking_s": round(first_ranking_s, 3),
        "rounds": rounds,
        "median_mask_to_ranking_s": round(statistics.median(r["mask_to_ranking_s"] for r in rounds), 3),
        "target_s": TARGET_S,
        "gpu_name": info.get("gpu_name"),
        "command": "asfda " + " ".join(sys.argv[1:]) if command else None,
        "machine": machine(),
        "commit": git_commit(REPOSITORY),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


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
    say(f"median mask to ranking {record['median_mask_to_ranking_s']:.2f} s; written to {out / 'speed.json'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "speed-loop",
        help="time mask saved to refreshed ranking through the real backend",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", choices=MODELS, default="swinunetr48")
    parser.add_argument(
        "--pool-size", type=int, default=20, metavar="N", help="cases in the pool (default 20)"
    )
    parser.add_argument("--rounds", type=int, default=2, metavar="R", help="fine-tune rounds (default 2)")
    parser.add_argument("--steps", type=int, default=60, metavar="S", help="steps of a round (default 60)")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
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
