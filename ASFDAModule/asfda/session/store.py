"""The session store: one folder per adaptation session, safe against crashes.

Every file is replaced atomically (write a temporary file, fsync, rename), the journal is append-only, and a
model version becomes visible only when its folder is complete. A round that was running when the process
died is found on the next open and reported as interrupted; nothing it half-wrote is used.

Layout::

    session.json                 model source, labels, configs (written once)
    state.json                   active model version
    cases.json                   the pool: id, name, source path, last served
    images/                      volumes uploaded into the session
    labels/final/<case>.nii.gz   submitted masks (written before anything else happens to them)
    labels/predicted/<version>/<case>.nii.gz
    models/<version>/            version.json (+ model.pt for fine-tuned versions)
    scores/<version>/<case>.json scores of each case under each model version (the cache)
    gaps/<case>.json             knowledge gap to the pretrained model (independent of the version)
    rounds/<round>.json          what each query/fine-tuning round chose and measured
    journal.jsonl                every event, one JSON object a line
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..errors import StoreError, UnknownCaseError

FORMAT_VERSION = 1
PRETRAINED_VERSION = "v0000"
ROUND_END_EVENTS = ("round_completed", "round_failed", "round_cancelled", "round_interrupted")


def process_alive(pid: int | None) -> bool:
    """Whether a process with this id runs on this machine (None: unknown, taken as dead)."""
    if not pid:
        return False
    try:
        import psutil

        return psutil.pid_exists(pid)
    except ImportError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except (PermissionError, OSError):
            return True
        return True


def partial_owner(folder: Path) -> int | None:
    """The process id in a ``.partial-<pid>-...`` folder name."""
    parts = folder.name.split("-")
    return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` in one rename; on any failure (a full disk) the old file stays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise StoreError(f"could not write ({error.strerror or error})", path) from error


def write_json_atomic(path: Path, data) -> None:
    write_bytes_atomic(path, json.dumps(data, indent=2, sort_keys=True).encode())


def read_json(path: Path, default=None):
    if not path.is_file():
        if default is not None:
            return default
        raise StoreError("missing session file", path)
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise StoreError(f"unreadable session file ({error})", path) from error


@dataclass
class CaseRecord:
    id: str
    name: str
    source_path: str
    added: str = field(default_factory=now_iso)
    last_served: float | None = None


@dataclass
class ModelVersion:
    id: str
    parent: str | None
    created: str
    round: int
    metrics: dict = field(default_factory=dict)
    source: str | None = None  # for the pretrained version: where its weights live (never copied or changed)


class SessionStore:
    """Files of one session; all writes go through here."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self._lock = threading.RLock()
        if not (self.root / "session.json").is_file():
            raise StoreError("not an ASFDA session (session.json missing)", self.root)
        self.settings = read_json(self.root / "session.json")
        self.interrupted_rounds = self._recover()

    # -- creation and recovery ---------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path, settings: dict) -> SessionStore:
        root = Path(root).resolve()
        if (root / "session.json").exists():
            raise StoreError("a session already exists here", root)
        for folder in ("images", "labels/final", "labels/predicted", "models", "scores", "gaps", "rounds"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        pretrained = ModelVersion(PRETRAINED_VERSION, None, now_iso(), 0, {}, settings["model_source"])
        write_json_atomic(root / "models" / PRETRAINED_VERSION / "version.json", asdict(pretrained))
        write_json_atomic(root / "cases.json", {"cases": []})
        write_json_atomic(root / "state.json", {"active_version": PRETRAINED_VERSION})
        write_json_atomic(root / "session.json", {"format": FORMAT_VERSION, "created": now_iso(), **settings})
        store = cls(root)
        store.log("session_created", model_source=settings["model_source"])
        return store

    def open_rounds(self) -> dict[int, dict]:
        """Rounds whose start is in the journal but not their end, with their start events."""
        started: dict[int, dict] = {}
        for event in self.journal():
            if event["event"] == "round_started":
                started[event["round"]] = event
            elif event["event"] in ROUND_END_EVENTS:
                started.pop(event.get("round"), None)
        return started

    def _recover(self) -> list[int]:
        """Mark rounds whose process died as interrupted and drop their partial files.

        A round whose process is still alive (a backend worker training now) is left alone, so opening the
        session from another process never breaks a live round.
        """
        dead = sorted(n for n, event in self.open_rounds().items() if not process_alive(event.get("pid")))
        for partial in (self.root / "models").glob(".partial-*"):
            if not process_alive(partial_owner(partial)):
                shutil.rmtree(partial, ignore_errors=True)
        for number in dead:
            self.log("round_interrupted", round=number)
        return dead

    # -- journal -----------------------------------------------------------------------------------------
    def log(self, event: str, **details) -> None:
        """Append one event; one short line per write, fsynced, so a crash loses at most the last line."""
        line = json.dumps({"time": now_iso(), "event": event, **details}) + "\n"
        try:
            with open(self.root / "journal.jsonl", "a", encoding="utf-8") as stream:
                stream.write(line)
                stream.flush()
                os.fsync(stream.fileno())
        except OSError as error:
            raise StoreError(
                f"could not append to the journal ({error.strerror})", self.root / "journal.jsonl"
            ) from error

    def journal(self) -> list[dict]:
        path = self.root / "journal.jsonl"
        if not path.is_file():
            return []
        events = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
        return events

    # -- cases -------------------------------------------------------------------------------------------
    def cases(self) -> list[CaseRecord]:
        return [CaseRecord(**data) for data in read_json(self.root / "cases.json")["cases"]]

    def case(self, case_id: str) -> CaseRecord:
        for record in self.cases():
            if record.id == case_id:
                return record
        raise UnknownCaseError(f"unknown case id {case_id!r}", self.root / "cases.json")

    def save_cases(self, records: list[CaseRecord]) -> None:
        write_json_atomic(self.root / "cases.json", {"cases": [asdict(r) for r in records]})

    def add_case(self, record: CaseRecord) -> CaseRecord:
        """Add a case unless one with the same content is already there (then return that one)."""
        with self._lock:
            records = self.cases()
            existing = next((r for r in records if r.id == record.id), None)
            if existing is not None:
                return existing
            self.save_cases(records + [record])
            self.log("case_added", case=record.id, path=record.source_path)
            return record

    def mark_served(self, case_id: str, when: float | None = None) -> CaseRecord:
        with self._lock:
            records = self.cases()
            for record in records:
                if record.id == case_id:
                    record.last_served = time.time() if when is None else when
                    self.save_cases(records)
                    return record
        raise UnknownCaseError(f"unknown case id {case_id!r}", self.root / "cases.json")

    # -- labels ------------------------------------------------------------------------------------------
    def final_label_path(self, case_id: str) -> Path:
        return self.root / "labels" / "final" / f"{case_id}.nii.gz"

    def predicted_label_path(self, case_id: str, version: str) -> Path:
        return self.root / "labels" / "predicted" / version / f"{case_id}.nii.gz"

    def labelled_ids(self) -> list[str]:
        return [r.id for r in self.cases() if self.final_label_path(r.id).is_file()]

    # -- model versions ----------------------------------------------------------------------------------
    def versions(self) -> list[ModelVersion]:
        folders = sorted(p for p in (self.root / "models").iterdir() if p.is_dir() and p.name.startswith("v"))
        return [
            ModelVersion(**read_json(folder / "version.json"))
            for folder in folders
            if (folder / "version.json").is_file()
        ]

    def version(self, version_id: str) -> ModelVersion:
        path = self.root / "models" / version_id / "version.json"
        if not path.is_file():
            raise StoreError(f"unknown model version {version_id!r}", path.parent)
        return ModelVersion(**read_json(path))

    def weights_path(self, version_id: str) -> Path:
        return self.root / "models" / version_id / "model.pt"

    @property
    def active_version(self) -> str:
        return read_json(self.root / "state.json")["active_version"]

    def activate(self, version_id: str) -> ModelVersion:
        version = self.version(version_id)
        write_json_atomic(self.root / "state.json", {"active_version": version_id})
        self.log("version_activated", version=version_id)
        return version

    def next_version_id(self) -> str:
        numbers = [int(v.id[1:]) for v in self.versions()]
        return f"v{max(numbers, default=0) + 1:04d}"

    def partial_version_folder(self) -> Path:
        """A folder to write a new version into; it only becomes a version through ``commit_version``."""
        return Path(tempfile.mkdtemp(prefix=f".partial-{os.getpid()}-", dir=self.root / "models"))

    def commit_version(self, partial: Path, version: ModelVersion) -> ModelVersion:
        write_json_atomic(partial / "version.json", asdict(version))
        target = self.root / "models" / version.id
        if target.exists():
            raise StoreError("model version already exists", target)
        os.replace(partial, target)
        return version

    # -- scores and rounds -------------------------------------------------------------------------------
    def scores_path(self, version: str, case_id: str) -> Path:
        return self.root / "scores" / version / f"{case_id}.json"

    def gap_path(self, case_id: str) -> Path:
        return self.root / "gaps" / f"{case_id}.json"

    def rounds(self) -> list[dict]:
        return [read_json(path) for path in sorted((self.root / "rounds").glob("round_*.json"))]

    def save_round(self, number: int, data: dict) -> None:
        write_json_atomic(self.root / "rounds" / f"round_{number:04d}.json", data)

    @property
    def round_number(self) -> int:
        """The number of the last completed fine-tuning round."""
        completed = [e["round"] for e in self.journal() if e["event"] == "round_completed"]
        return max(completed, default=0)

    def next_round_number(self) -> int:
        """Numbers are never reused: a cancelled or interrupted round keeps its number."""
        started = [e["round"] for e in self.journal() if e["event"] == "round_started"]
        return max(started, default=0) + 1
