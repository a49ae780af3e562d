"""Helpers to start the real backend (``python -m asfda serve`` in a subprocess) and talk to it over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

READY = "ASFDA backend ready on "
START_TIMEOUT_S = 120.0


@dataclass
class RunningServer:
    process: subprocess.Popen
    session: Path
    url: str
    token: str
    log: Path

    def client(self, token: str | None = None, timeout: float = 300.0) -> httpx.Client:
        token = self.token if token is None else token
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)

    def stop(self) -> None:
        """SIGTERM (a clean stop), then SIGKILL if it hangs."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def kill(self) -> None:
        """SIGKILL: the backend dies at once, like a crash."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def start_server(
    session: Path,
    model: Path | None = None,
    allow: tuple[Path, ...] = (),
    extra: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> RunningServer:
    session.parent.mkdir(parents=True, exist_ok=True)
    log = session.parent / f"{session.name}-server-{time.monotonic_ns()}.log"
    command = [
        sys.executable,
        "-m",
        "asfda",
        "serve",
        "--session",
        str(session),
        "--device",
        "cpu",
        "--port",
        "0",
        *extra,
    ]
    if model is not None:
        command += ["--model", str(model)]
    for folder in allow:
        command += ["--allow-dir", str(folder)]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log, "w") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=environment
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        text = log.read_text()
        if READY in text:
            url = text.split(READY, 1)[1].split()[0]
            info = json.loads((session / "server.json").read_text())
            assert info["url"] == url
            return RunningServer(process, session, url, info["token"], log)
        if process.poll() is not None:
            raise AssertionError(f"the backend exited with {process.returncode}:\n{text}")
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"the backend was not ready after {START_TIMEOUT_S} s:\n{log.read_text()}")


def wait_for_job(client: httpx.Client, job_id: str, timeout: float = 300.0, until=None) -> dict:
    """Poll a job until it has finished (or ``until(job)`` holds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if (until is not None and until(job)) or job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s: {job}")


def pool_folders(dataset) -> tuple[Path, Path]:
    """The pool's image and label folders of the tiny dataset."""
    image, label = dataset.pool[0]
    return Path(image).parent, Path(label).parent
