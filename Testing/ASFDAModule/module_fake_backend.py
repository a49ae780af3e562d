"""A small in-process stand-in of the backend's HTTP contract (``asfda/server/API.md``) for the module tests.

It runs on 127.0.0.1 with ``http.server``, checks the bearer token, answers errors as ``{"detail": ...}``,
and does what the module relies on: cases from paths or uploads, a ranking, the next case, the volume and a
prediction in the case's geometry (naming its model version in ``X-ASFDA-Model-Version``), label maps checked
against that geometry, and a fine-tuning job that progresses on its own (or is held open by ``roundGate``)
while ``POST /next`` and the predictions keep answering from the active version; the rescoring follows a
round by itself. It scores nothing: DKD and ASD are made up from the case's order. The real server is
tested by its own authors; this double lets the module's workflow run without torch.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import shutil
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import SimpleITK as sitk

LABELS = {"0": "background", "1": "liver", "2": "spleen"}
TOKEN = "test-token"


class HttpError(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass
class FakeCase:
    id: str
    name: str
    source_path: str
    stored: Path
    status: str = "unlabelled"
    label: Path | None = None
    last_served: float | None = None

    def json(self, index: int, version: str, scored: bool = True) -> dict:
        if not scored:
            return {
                "id": self.id,
                "name": self.name,
                "source_path": self.source_path,
                "status": self.status,
                "dkd": None,
                "asd": None,
                "score": None,
                "rank": None,
                "model_version": None,
                "last_served": self.last_served,
            }
        return {
            "id": self.id,
            "name": self.name,
            "source_path": self.source_path,
            "status": self.status,
            "dkd": round(0.1 + 0.07 * index, 3),
            "asd": round(0.9 - 0.05 * index, 3),
            "score": round(1.0 - 0.1 * index, 3),
            "rank": None,
            "model_version": version,
            "last_served": self.last_served,
        }


@dataclass
class FakeJob:
    id: str
    state: str = "queued"
    progress: float = 0.0
    message: str = ""
    model_version: str | None = None
    kind: str = "finetune"
    result: dict = field(default_factory=dict)

    def json(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "progress": self.progress,
            "message": self.message,
            "model_version": self.model_version,
            "result": self.result,
        }


@dataclass
class FakeState:
    session: Path
    allowed: list[Path] = field(default_factory=list)
    cases: dict[str, FakeCase] = field(default_factory=dict)
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    version: str = "v0"
    round: int = 0
    metrics: list[dict] = field(default_factory=list)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    jobSeconds: float = 0.3
    rankingConflicts: int = 0  # how many GET /ranking answer 409 first, as when the pool changed meanwhile
    scoringSeconds: float = 0.0  # > 0: each model version scores the pool case by case in a job this long
    scoredCount: dict[str, int] = field(default_factory=dict)  # model version -> cases scored so far
    versions: list[str] = field(default_factory=lambda: ["v0"])
    strategy: str = "typiclust"
    removeRoute: bool = True  # False: an older backend without DELETE /cases/{id} (FastAPI answers 405)
    guardHoldsBack: bool = False  # True: rounds validate worse than their parent, which stays active
    refusedNames: set[str] = field(default_factory=set)  # files POST /cases refuses as unreadable (400)
    versionHeader: bool = True  # False: an older backend that does not name the prediction's model version
    roundGate: threading.Event | None = None  # set: a round holds at half way until the event is set
    provisionalNext: bool = False  # True: POST /next serves from a provisional ranking (first scoring)
    # set: GET /cases/{id}/prediction serves a few-shot proposal (its kind and summary) instead of the model's
    proposal: tuple[str, str] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeBackend:
    def __init__(self, session: Path, allowed: list[Path] | None = None):
        self.state = FakeState(Path(session), [Path(p) for p in allowed or []])
        self.state.session.mkdir(parents=True, exist_ok=True)
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        state = self.state

        class Handler(_Handler):
            pass

        Handler.state = state
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    state: FakeState

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_PUT(self):
        self._serve("PUT")

    def do_DELETE(self):
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        url = urllib.parse.urlparse(self.path)
        self.state.requests.append((method, url.path, self.headers.get("Authorization")))
        try:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                raise HttpError(401, "missing or wrong token")
            pattern = re.sub(r"^/(cases|jobs|models)/[^/]+", r"/\1/{id}", url.path)
            route = _ROUTES.get((method, url.path)) or _ROUTES.get((method, pattern))
            if route is None:
                raise HttpError(404, f"no route {method} {url.path}")
            answer = route(self, url)
        except HttpError as error:
            self._send(error.status, json.dumps({"detail": error.detail}).encode(), "application/json")
            return
        if isinstance(answer, Path):
            self._send(200, answer.read_bytes(), "application/octet-stream")
        elif isinstance(answer, tuple):  # a file and the headers that describe it
            path, headers = answer
            self._send(200, path.read_bytes(), "application/octet-stream", headers)
        else:
            self._send(200, json.dumps(answer).encode(), "application/json")

    def _send(self, status: int, body: bytes, contentType: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", contentType)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _json(self) -> dict:
        return json.loads(self._body() or b"{}")

    def _uploadedFile(self) -> tuple[str, bytes]:
        raw = (f"Content-Type: {self.headers['Content-Type']}\r\n\r\n").encode() + self._body()
        message = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "file":
                return part.get_filename(), part.get_payload(decode=True)
        raise HttpError(422, "multipart field 'file' is missing")

    def _case(self, url) -> FakeCase:
        caseId = urllib.parse.unquote(url.path.split("/")[2])
        if caseId not in self.state.cases:
            raise HttpError(404, f"no case {caseId!r}")
        return self.state.cases[caseId]

    def _sortedCases(self) -> list[FakeCase]:
        return list(self.state.cases.values())

    def _casesJson(self, cases) -> list[dict]:
        order = self._sortedCases()
        return [
            case.json(order.index(case), self.state.version, self._isScored(order.index(case)))
            for case in cases
        ]

    def _isScored(self, index: int) -> bool:
        if self.state.scoringSeconds <= 0:
            return True
        return index < self.state.scoredCount.get(self.state.version, 0)

    def _scoringJob(self) -> FakeJob:
        """The scoring job of the active version: started once, it scores one case after the other."""
        with self.state.lock:
            version = self.state.version
            for job in self.state.jobs.values():
                if (
                    job.kind == "score"
                    and job.model_version == version
                    and job.state in ("queued", "running")
                ):
                    return job
            job = FakeJob(f"job-{len(self.state.jobs) + 1}", kind="score", model_version=version)
            self.state.jobs[job.id] = job
        threading.Thread(target=self._score, args=(job,), daemon=True).start()
        return job

    def _score(self, job: FakeJob) -> None:
        count = len(self.state.cases)
        for index in range(count):
            time.sleep(self.state.scoringSeconds / max(count, 1))
            if job.state == "cancelled":
                return
            self.state.scoredCount[job.model_version] = index + 1
            job.state, job.progress = "running", (index + 1) / count
            job.message = f"scored {index + 1} of {count} cases"
        job.state = "done"

    # -- routes --------------------------------------------------------------------------------------------

    def health(self, url):
        return {"status": "ok"}

    def info(self, url):
        return {
            "version": "fake",
            "device": "cpu",
            "gpu_name": None,
            "gpu_free_mb": None,
            "torch": None,
            "monai": None,
            "model_version": self.state.version,
            "round": self.state.versions.index(self.state.version),
            "labels": LABELS,
        }

    def listCases(self, url):
        return self._casesJson(self._sortedCases())

    def addCases(self, url):
        body = self._json()
        if "folder" in body:
            folder = Path(body["folder"])
            self._checkAllowed(folder)
            files = sorted(p for p in folder.iterdir() if p.name.endswith((".nii.gz", ".nrrd", ".mha")))
        else:
            files = [Path(body["path"])]
            self._checkAllowed(files[0])
            if files[0].name in self.state.refusedNames:
                raise HttpError(400, f"{files[0]}: not a volume the model can read (no image data)")
        return self._casesJson([self._addCase(path, path) for path in files])

    def uploadCase(self, url):
        name, data = self._uploadedFile()
        uploads = self.state.session / "uploads"
        uploads.mkdir(exist_ok=True)
        path = uploads / name
        path.write_bytes(data)
        return self._casesJson([self._addCase(path, Path(name))])[0]

    def ranking(self, url):
        if self.state.rankingConflicts > 0:
            self.state.rankingConflicts -= 1
            raise HttpError(409, "the pool changed while it was scored: ask again")
        wait = urllib.parse.parse_qs(url.query).get("wait", ["true"])[0] != "false"
        if self.state.scoringSeconds > 0 and self.state.scoredCount.get(self.state.version, 0) < len(
            self.state.cases
        ):
            job = self._scoringJob()
            while wait and job.state in ("queued", "running"):
                time.sleep(0.01)
            if job.state == "cancelled":
                raise HttpError(409, f"scoring job {job.id} cancelled: {job.message}")
            if not wait:
                return {
                    "model_version": self.state.version,
                    "round": self.state.round,
                    "cases": self._casesJson(self._sortedCases()),
                    "next": None,
                    "complete": False,
                    "job": job.json(),
                }
        cases = self._casesJson(self._sortedCases())
        cases.sort(key=lambda c: -c["score"])
        for rank, case in enumerate(cases, start=1):
            case["rank"] = rank
        nextCase = next((c["id"] for c in cases if c["status"] in ("unlabelled", "suggested")), None)
        return {
            "model_version": self.state.version,
            "round": self.state.round,
            "cases": cases,
            "next": nextCase,
            "complete": True,
            "job": None,
        }

    def nextCase(self, url):
        self._json()
        candidates = [c for c in self._sortedCases() if c.status in ("unlabelled", "suggested")]
        if not candidates:
            raise HttpError(404, "every case is labelled")
        case = min(candidates, key=lambda c: c.last_served or 0.0)
        case.status, case.last_served = "suggested", time.time()
        return {**self._casesJson([case])[0], "provisional": self.state.provisionalNext}

    def image(self, url):
        return self._case(url).stored

    def prediction(self, url):
        """The active version's prediction: each round makes the "liver" a little larger."""
        case = self._case(url)
        version = self.state.version
        image = sitk.ReadImage(str(case.stored))
        array = sitk.GetArrayFromImage(image)
        label = np.zeros(array.shape, np.uint8)
        brightest = 80 - 5 * self.state.versions.index(version)
        if self.state.proposal is not None:
            brightest = 50  # the proposal: half the volume, unlike any model version's
        label[array > np.percentile(array, brightest)] = 1  # the "liver": the brightest voxels
        prediction = sitk.GetImageFromArray(label)
        prediction.CopyInformation(image)
        path = self.state.session / f"prediction-{case.id}-{version}.nii.gz"
        sitk.WriteImage(prediction, str(path))
        headers = {"X-ASFDA-Model-Version": version} if self.state.versionHeader else {}
        if self.state.proposal is not None:
            source, summary = self.state.proposal
            headers.update({"X-ASFDA-Prediction-Source": source, "X-ASFDA-Starting-From": summary})
        return path, headers

    def putLabel(self, url):
        case = self._case(url)
        name, data = self._uploadedFile()
        path = self.state.session / f"label-{case.id}.nii.gz"
        path.write_bytes(data)
        _checkLabelFits(path, case.stored)
        case.label, case.status = path, "labelled"
        return self._casesJson([case])[0]

    def finetune(self, url):
        steps = self._json().get("steps")
        with self.state.lock:
            if any(job.state in ("queued", "running") for job in self.state.jobs.values()):
                raise HttpError(409, "a fine-tuning round is running")
            job = FakeJob(f"job-{len(self.state.jobs) + 1}", message=f"steps={steps}")
            self.state.jobs[job.id] = job
        threading.Thread(target=self._runJob, args=(job,), daemon=True).start()
        return job.json()

    def _runJob(self, job: FakeJob) -> None:
        for progress in (0.25, 0.5, 0.75, 1.0):
            time.sleep(self.state.jobSeconds / 4)
            if job.state == "cancelled":
                return
            job.state, job.progress = "running", progress
            if progress == 0.5 and self.state.roundGate is not None:
                self.state.roundGate.wait(timeout=60)
        with self.state.lock:
            self.state.round += 1
            version, parent = f"v{self.state.round}", self.state.version
            self.state.versions.append(version)
            labelled = sum(c.status == "labelled" for c in self.state.cases.values())
            parentDice = next(
                (m["val_dice"] for m in self.state.metrics if m["model_version"] == parent), 0.82
            )
            accepted = not self.state.guardHoldsBack
            # As the real worker reports a round (asfda/session/rounds.py version_metrics).
            metrics = {
                "round": self.state.round,
                "model_version": version,
                "n_labelled": labelled,
                "val_dice": round(0.6 + 0.1 * self.state.round if accepted else parentDice - 0.008, 3),
                "parent_val_dice": parentDice,
                "validation": "held-out",
                "accepted": accepted,
                "seconds": self.state.jobSeconds,
            }
            self.state.metrics.append(metrics)
            if accepted:
                self.state.version = version
            job.result = {"model_version": version, "round": self.state.round, "metrics": metrics}
            job.state, job.model_version = "done", version
            job.message = f"round {self.state.round} done: model {version}" + (
                "" if accepted else " (worse than its parent, which stays active; accept_worse activates it)"
            )
        if accepted and self.state.scoringSeconds > 0:
            # The rescoring follows an activated round by itself, as in the real backend (a version the
            # guard kept back is not scored).
            self._scoringJob()

    def listJobs(self, url):
        return [job.json() for job in self.state.jobs.values()]

    def getJob(self, url):
        jobId = url.path.split("/")[2]
        if jobId not in self.state.jobs:
            raise HttpError(404, f"no job {jobId!r}")
        return self.state.jobs[jobId].json()

    def cancelJob(self, url):
        job = self.state.jobs[url.path.split("/")[2]]
        if job.state in ("queued", "running"):
            job.state, job.message = "cancelled", "cancelled by the user"
        return job.json()

    def listMetrics(self, url):
        return self.state.metrics

    def querySettings(self, url):
        return {"strategy": self.state.strategy, "budget": 1, "strategies": ["typiclust", "random"]}

    def setQuery(self, url):
        self.state.strategy = self._json().get("strategy") or self.state.strategy
        return self.querySettings(url)

    def removeCase(self, url):
        if not self.state.removeRoute:
            raise HttpError(405, "Method Not Allowed")
        case = self._case(url)
        if case.status == "labelled":
            raise HttpError(409, f"case {case.id} is labelled: its mask is kept")
        del self.state.cases[case.id]
        return case.json(0, self.state.version)

    def listModels(self, url):
        return [self._versionJson(version) for version in self.state.versions]

    def activateModel(self, url):
        version = urllib.parse.unquote(url.path.split("/")[2])
        if version not in self.state.versions:
            raise HttpError(404, f"no model version {version!r}")
        running = [j for j in self.state.jobs.values() if j.state in ("queued", "running")]
        if running:
            raise HttpError(
                409, f"job {running[0].id} ({running[0].kind}) is running: activate after it ends"
            )
        self.state.version = version
        return self._versionJson(version)

    def _versionJson(self, version: str) -> dict:
        index = self.state.versions.index(version)
        metrics = next((m for m in self.state.metrics if m["model_version"] == version), {})
        return {
            "id": version,
            "parent": self.state.versions[index - 1] if index else None,
            "created": None,
            "round": index,
            "metrics": {k: v for k, v in metrics.items() if k not in ("round", "model_version")},
            "active": version == self.state.version,
        }

    # -- helpers -----------------------------------------------------------------------------------------

    def _checkAllowed(self, path: Path) -> None:
        path = path.resolve()
        roots = [self.state.session.resolve(), *(p.resolve() for p in self.state.allowed)]
        if not any(path == root or root in path.parents for root in roots):
            raise HttpError(403, f"{path} is outside the session folder and the allowed folders")
        if not path.exists():
            raise HttpError(404, f"{path} does not exist")

    def _addCase(self, path: Path, source: Path) -> FakeCase:
        for case in self.state.cases.values():
            if case.source_path == str(source):
                return case
        caseId = f"case-{len(self.state.cases) + 1}"
        stored = self.state.session / "cases" / f"{caseId}.nii.gz"
        stored.parent.mkdir(parents=True, exist_ok=True)
        if path.name.endswith(".nii.gz"):
            shutil.copyfile(path, stored)
        else:
            sitk.WriteImage(sitk.ReadImage(str(path)), str(stored))
        name = source.name.split(".")[0]
        case = FakeCase(caseId, name, str(source), stored)
        self.state.cases[caseId] = case
        return case


def _checkLabelFits(labelPath: Path, imagePath: Path, tolerance: float = 1e-5) -> None:
    """The contract: a label map in the case's geometry, with the model's label values."""
    label, image = sitk.ReadImage(str(labelPath)), sitk.ReadImage(str(imagePath))
    if label.GetSize() != image.GetSize():
        raise HttpError(
            400, f"{labelPath.name}: size {label.GetSize()} differs from the case's {image.GetSize()}"
        )
    for what in ("Spacing", "Origin", "Direction"):
        got, want = getattr(label, f"Get{what}")(), getattr(image, f"Get{what}")()
        if not np.allclose(got, want, atol=tolerance):
            raise HttpError(400, f"{labelPath.name}: {what.lower()} {got} differs from the case's {want}")
    values = set(np.unique(sitk.GetArrayFromImage(label)).tolist())
    if not values <= {int(v) for v in LABELS}:
        raise HttpError(400, f"{labelPath.name}: label values {sorted(values)} are not the model's")


_ROUTES = {
    ("GET", "/health"): _Handler.health,
    ("GET", "/info"): _Handler.info,
    ("GET", "/cases"): _Handler.listCases,
    ("POST", "/cases"): _Handler.addCases,
    ("POST", "/cases/upload"): _Handler.uploadCase,
    ("GET", "/ranking"): _Handler.ranking,
    ("POST", "/next"): _Handler.nextCase,
    ("GET", "/cases/{id}/image"): _Handler.image,
    ("GET", "/cases/{id}/prediction"): _Handler.prediction,
    ("PUT", "/cases/{id}/label"): _Handler.putLabel,
    ("POST", "/finetune"): _Handler.finetune,
    ("GET", "/jobs"): _Handler.listJobs,
    ("GET", "/jobs/{id}"): _Handler.getJob,
    ("POST", "/jobs/{id}/cancel"): _Handler.cancelJob,
    ("GET", "/metrics"): _Handler.listMetrics,
    ("GET", "/query"): _Handler.querySettings,
    ("PUT", "/query"): _Handler.setQuery,
    ("DELETE", "/cases/{id}"): _Handler.removeCase,
    ("GET", "/models"): _Handler.listModels,
    ("POST", "/models/{id}/activate"): _Handler.activateModel,
}


def useLocalBackend(logic, fakeBackend) -> None:
    """As after startBackend: the backend shares this computer's disk, so volumes go by path."""
    from ASFDAModuleLib.BackendProcess import ServerInfo

    logic.sessionDir = fakeBackend.state.session
    logic.connectToServer(ServerInfo(fakeBackend.url, 0, TOKEN, None))
