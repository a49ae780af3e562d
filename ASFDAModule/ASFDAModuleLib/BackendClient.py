"""HTTP client of the ASFDA backend (contract: ``asfda/server/API.md``).

Standard library only (``urllib``), because it runs inside Slicer's Python before any dependency is installed
and must not pull ``requests`` into it. Every call is blocking: the module calls it off the GUI thread.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from .BackendTypes import (
    BackendInfo,
    Case,
    Job,
    ModelVersion,
    PredictionDownload,
    QuerySettings,
    Ranking,
    RoundMetrics,
)
from .i18n import _
from .Paths import temporaryName

# Short calls answer in well under a second; a generous limit still notices a hung backend.
DEFAULT_TIMEOUT_S = 30.0
# GET /ranking?wait=true may score the whole pool first, and files may be hundreds of MB.
LONG_TIMEOUT_S = 1800.0
CHUNK_BYTES = 1 << 20
# The statuses the module acts on (the others reach the user as the backend's detail).
HTTP_FORBIDDEN = 403  # a folder the backend may not read: upload its files instead
HTTP_METHOD_NOT_ALLOWED = 405  # a route an older backend does not have
HTTP_CONFLICT = 409  # a job in the way, or the pool changed during scoring
# The model version that made a prediction (GET /cases/{id}/prediction); an older backend does not send it.
MODEL_VERSION_HEADER = "X-ASFDA-Model-Version"
# What the served segmentation is (model, majority, weighted, agreement) and its source in one line.
PREDICTION_SOURCE_HEADER = "X-ASFDA-Prediction-Source"
STARTING_FROM_HEADER = "X-ASFDA-Starting-From"


class BackendError(Exception):
    """The backend answered with an error; ``detail`` is its own explanation (it names the file or case)."""

    def __init__(self, method: str, path: str, status: int | None, detail: str):
        self.method = method
        self.path = path
        self.status = status
        self.detail = detail
        where = f"{method} {path}"
        super().__init__(f"{where} failed ({status}): {detail}" if status else f"{where} failed: {detail}")


class BackendUnreachableError(BackendError):
    """No answer at all: the backend is not running, the URL is wrong, or it timed out."""


class BackendClient:
    """One backend, addressed by its URL and the token it wrote to ``server.json``."""

    def __init__(
        self,
        url: str,
        token: str | None,
        timeout: float = DEFAULT_TIMEOUT_S,
        longTimeout: float = LONG_TIMEOUT_S,
    ):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.longTimeout = longTimeout

    @classmethod
    def fromServerFile(cls, serverFile: str | Path, **kwargs) -> BackendClient:
        """A client for the backend that wrote ``serverFile`` (``DIR/server.json``)."""
        data = json.loads(Path(serverFile).read_text())
        return cls(data["url"], data.get("token"), **kwargs)

    def __repr__(self) -> str:  # never print the token
        return f"BackendClient({self.url!r})"

    # -- the contract, one method an endpoint ------------------------------------------------------

    def health(self) -> bool:
        return self._getJson("/health").get("status") == "ok"

    def info(self) -> BackendInfo:
        return BackendInfo.fromJson(self._getJson("/info"))

    def cases(self) -> list[Case]:
        return [Case.fromJson(item) for item in self._getJson("/cases")]

    def addCaseFile(self, path: str | Path) -> list[Case]:
        """Add a volume the backend can read from disk (inside its session folder or an allowed folder)."""
        answer = self._sendJson("POST", "/cases", {"path": str(Path(path).resolve())})
        return [Case.fromJson(item) for item in answer]

    def addCaseFolder(self, folder: str | Path) -> list[Case]:
        answer = self._sendJson(
            "POST", "/cases", {"folder": str(Path(folder).resolve())}, timeout=self.longTimeout
        )
        return [Case.fromJson(item) for item in answer]

    def uploadCase(self, path: str | Path) -> Case:
        """Send a volume file to a backend that cannot read this machine's disk."""
        answer = self._sendFile("POST", "/cases/upload", Path(path))
        return Case.fromJson(answer)

    def ranking(self, wait: bool = True) -> Ranking:
        """``wait=False`` answers at once: while the pool is scored, ``complete`` is False and ``job`` is
        the scoring job to follow (and cancel); ``wait=True`` blocks until the scores are there."""
        if not wait:
            return Ranking.fromJson(self._getJson("/ranking?wait=false"))
        return Ranking.fromJson(self._getJson("/ranking?wait=true", timeout=self.longTimeout))

    def removeCase(self, caseId: str) -> Case:
        """``DELETE /cases/{id}``: the removed case; 404 unknown, 409 labelled or in a running job."""
        return Case.fromJson(self._decode("DELETE", f"/cases/{_quote(caseId)}"))

    def nextCase(self, client: str) -> Case:
        return Case.fromJson(self._sendJson("POST", "/next", {"client": client}, timeout=self.longTimeout))

    def downloadImage(self, caseId: str, destination: str | Path) -> Path:
        return self._download(f"/cases/{_quote(caseId)}/image", Path(destination))

    def downloadPrediction(self, caseId: str, destination: str | Path, fileFormat: str = "nii.gz") -> Path:
        return self.downloadVersionedPrediction(caseId, destination, fileFormat)[0]

    def downloadVersionedPrediction(
        self, caseId: str, destination: str | Path, fileFormat: str = "nii.gz"
    ) -> tuple[Path, str | None]:
        """The prediction and the model version that made it (None from a backend that does not say)."""
        download = self.downloadStartingSegmentation(caseId, destination, fileFormat)
        return download.path, download.modelVersion

    def downloadStartingSegmentation(
        self, caseId: str, destination: str | Path, fileFormat: str = "nii.gz"
    ) -> PredictionDownload:
        """The segmentation a case starts from (the model's prediction or a few-shot proposal) and where it
        comes from (None where an older backend does not say)."""
        query = urllib.parse.urlencode({"format": fileFormat})
        headers = {}
        path = self._download(f"/cases/{_quote(caseId)}/prediction?{query}", Path(destination), headers)
        return PredictionDownload(
            path,
            headers.get(MODEL_VERSION_HEADER.lower()) or None,
            headers.get(PREDICTION_SOURCE_HEADER.lower()) or None,
            headers.get(STARTING_FROM_HEADER.lower()) or None,
        )

    def submitLabel(self, caseId: str, labelFile: str | Path) -> Case:
        answer = self._sendFile("PUT", f"/cases/{_quote(caseId)}/label", Path(labelFile))
        return Case.fromJson(answer)

    def startFineTuning(self, steps: int | None = None, acceptWorse: bool = False) -> Job:
        """``acceptWorse``: activate the round even when it validates worse than its parent."""
        body = {} if steps is None else {"steps": int(steps)}
        if acceptWorse:
            body["accept_worse"] = True
        return Job.fromJson(self._sendJson("POST", "/finetune", body))

    def jobs(self) -> list[Job]:
        return [Job.fromJson(item) for item in self._getJson("/jobs")]

    def job(self, jobId: str) -> Job:
        return Job.fromJson(self._getJson(f"/jobs/{_quote(jobId)}"))

    def cancelJob(self, jobId: str) -> Job:
        return Job.fromJson(self._sendJson("POST", f"/jobs/{_quote(jobId)}/cancel", None))

    def modelVersions(self) -> list[ModelVersion]:
        return [ModelVersion.fromJson(item) for item in self._getJson("/models")]

    def activateModelVersion(self, version: str) -> ModelVersion:
        return ModelVersion.fromJson(self._sendJson("POST", f"/models/{_quote(version)}/activate", None))

    def querySettings(self) -> QuerySettings:
        return QuerySettings.fromJson(self._getJson("/query"))

    def setQuery(self, strategy: str | None = None, budget: int | None = None) -> QuerySettings:
        """``PUT /query``: the strategy (and budget) of the next rankings, kept in the session."""
        body = {k: v for k, v in {"strategy": strategy, "budget": budget}.items() if v is not None}
        return QuerySettings.fromJson(self._sendJson("PUT", "/query", body))

    def metrics(self) -> list[RoundMetrics]:
        return [RoundMetrics.fromJson(item) for item in self._getJson("/metrics")]

    # -- transport ---------------------------------------------------------------------------------

    def _decode(self, method: str, path: str):
        return _decodeJson(method, path, self._call(method, path))

    def _getJson(self, path: str, timeout: float | None = None):
        return _decodeJson("GET", path, self._call("GET", path, timeout=timeout))

    def _sendJson(self, method: str, path: str, body: dict | None, timeout: float | None = None):
        data = json.dumps(body if body is not None else {}).encode()
        headers = {"Content-Type": "application/json"}
        return _decodeJson(method, path, self._call(method, path, data, headers, timeout))

    def _sendFile(self, method: str, path: str, file: Path):
        if not file.is_file():
            raise FileNotFoundError(_("{file}: no such file to send to the backend").format(file=file))
        body, headers = _multipartFile(file)
        return _decodeJson(method, path, self._call(method, path, body, headers, self.longTimeout))

    def _download(self, path: str, destination: Path, headers: dict | None = None) -> Path:
        """``headers``, when given, receives the answer's headers (names in lower case)."""
        destination.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the destination and rename, so a cancelled download never leaves half a volume.
        prefix = temporaryName(destination)
        handle, partial = tempfile.mkstemp(dir=destination.parent, prefix=prefix, suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out, self._open("GET", path, timeout=self.longTimeout) as answer:
                if headers is not None:
                    headers.update((name.lower(), value) for name, value in answer.headers.items())
                shutil.copyfileobj(answer, out, CHUNK_BYTES)
            os.replace(partial, destination)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
        return destination

    def _call(self, method: str, path: str, data=None, headers=None, timeout=None) -> bytes:
        with self._open(method, path, data, headers, timeout) as answer:
            return answer.read()

    def _open(self, method: str, path: str, data=None, headers=None, timeout=None):
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            return urllib.request.urlopen(request, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as error:
            raise BackendError(method, path.split("?")[0], error.code, _errorDetail(error)) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            reason = getattr(error, "reason", error)
            raise BackendUnreachableError(
                method,
                path.split("?")[0],
                None,
                _("no answer from {url} ({reason})").format(url=self.url, reason=reason),
            ) from None


def caseOfFile(cases: list[Case], path: Path) -> Case:
    """The case the backend made from a file (``POST /cases`` answers with a list, one per file)."""
    resolved = str(Path(path).resolve())
    match = next((c for c in cases if c.sourcePath and str(Path(c.sourcePath).resolve()) == resolved), None)
    if match is None and len(cases) == 1:
        match = cases[0]
    if match is None:
        raise RuntimeError(
            _("{path}: the backend did not say which case it made of this file").format(path=path)
        )
    return match


def _quote(segment: str) -> str:
    return urllib.parse.quote(str(segment), safe="")


def _decodeJson(method: str, path: str, raw: bytes):
    try:
        return json.loads(raw.decode() or "null")
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BackendError(
            method, path.split("?")[0], None, _("the answer is not JSON: {start!r}").format(start=raw[:200])
        ) from None


def _errorDetail(error: urllib.error.HTTPError) -> str:
    """The server's ``{"detail": ...}``; FastAPI validation errors carry a list there."""
    raw = error.read() or b""
    try:
        detail = json.loads(raw.decode()).get("detail")
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        detail = None
    if detail is None:
        return raw.decode(errors="replace").strip() or error.reason or "no detail"
    if isinstance(detail, list):
        return "; ".join(
            str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in detail
        )
    return str(detail)


def _multipartFile(file: Path) -> tuple[Iterator[bytes], dict[str, str]]:
    """A ``multipart/form-data`` body with one field ``file``, streamed so large volumes stay on disk."""
    boundary = uuid.uuid4().hex
    safeName = file.name.replace('"', "_")
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{safeName}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def chunks() -> Iterator[bytes]:
        yield head
        with file.open("rb") as stream:
            while chunk := stream.read(CHUNK_BYTES):
                yield chunk
        yield tail

    headers = {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(len(head) + file.stat().st_size + len(tail)),
    }
    return chunks(), headers
