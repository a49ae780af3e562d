"""The backend ``asfda speed-loop`` times, driven as the Slicer module drives it: ``asfda serve`` started in
a subprocess on a new session and stopped cleanly, and the HTTP requests of a round (the mask's upload, the
job and ranking polls, the next case fetched with its image and prediction).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from ...errors import ASFDAError

READY = "ASFDA backend ready on "  # the line ``asfda serve`` prints once server.json is written
MODEL_VERSION_HEADER = "X-ASFDA-Model-Version"
POLL_S = 0.1  # fine enough for a wait of seconds, light on the cores the backend needs
ENGINE = Path(__file__).resolve().parents[3]  # the folder holding this ``asfda`` package


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


def fetch_case(client: httpx.Client, folder: Path) -> dict:
    """The next case with its files in hand, as the module fetches them: ``/next``, the image, the
    prediction (whose header names the model version that made it)."""
    case = answer(client.post("/next", json={"client": "speed-loop"}))
    image = client.get(f"/cases/{case['id']}/image")
    answer_file(image, folder / "image.nii.gz")
    prediction = client.get(f"/cases/{case['id']}/prediction")
    answer_file(prediction, folder / "prediction.nii.gz")
    return {**case, "prediction_model_version": prediction.headers.get(MODEL_VERSION_HEADER)}


def answer_file(response: httpx.Response, path: Path) -> None:
    if response.status_code != 200:
        answer(response)  # raises with the backend's message
    path.write_bytes(response.content)
