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
    models/<version>/            version.json (+ model.pt for fine-tuned versions, + teacher.pt when the
                                 round's EMA teacher persists into the next round)
    scores/<version>/<case>.json scores of each case under each model version (the cache)
    gaps/<case>.json             knowledge gap to the pretrained model (independent of the version)
    rounds/<round>.json          rounds of sessions written before round.json moved into models/
    journal.jsonl                every event, one JSON object a line

A fine-tuning round is committed by one step: the ``round_completed`` line in the journal (appended and
fsynced; a line cut short is ignored). Before it, the round's files (``model.pt``, ``teacher.pt``,
``version.json``, ``round.json``) are staged in a ``.partial`` folder and renamed to ``models/<version>``,
but a version whose round has no ``round_completed`` line is invisible (not listed, not activated, not
counted) and is removed on the next open. After it, ``state.json`` is brought to the journal's active
version, on the next open if a crash came first. The steps are named in :data:`COMMIT_STEPS`;
``asfda.session.faults`` crashes at any of them in the tests.

The crash-safe file primitives (atomic replace, JSON reads, the private folder) are in
:mod:`asfda.session.files`, the case and model-version records in :mod:`asfda.session.records`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

from ..errors import StoreError, UnknownCaseError
from .faults import fault_point
from .files import fsync_directory, make_private, read_json, write_error, write_json_atomic
from .lease import ensure_writer_may_continue
from .records import CaseRecord, ModelVersion, now_iso
from .temporaries import process_alive, sweep_temporaries

FORMAT_VERSION = 1
PRETRAINED_VERSION = "v0000"
TEACHER_FILE = "teacher.pt"
ROUND_END_EVENTS = ("round_completed", "round_failed", "round_cancelled", "round_interrupted")
ACTIVATING_EVENTS = ("round_completed", "version_activated")
# The steps of a round's commit, in order; a crash after any of them leaves the round either wholly visible
# (after "round-committed") or not at all.
COMMIT_STEPS = ("weights-saved", "version-staged", "version-renamed", "round-committed", "version-activated")


def partial_owner(folder: Path) -> int | None:
    """The process id in a ``.partial-<pid>-...`` folder name."""
    parts = folder.name.split("-")
    return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else None


class SessionStore:
    """Files of one session; all writes go through here."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self._lock = threading.RLock()
        if not (self.root / "session.json").is_file():
            raise StoreError("not an ASFDA session (session.json missing)", self.root)
        make_private(self.root)
        self.settings = read_json(self.root / "session.json")
        self.interrupted_rounds = self._recover()

    # -- creation and recovery ---------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path, settings: dict) -> SessionStore:
        root = Path(root).resolve()
        if (root / "session.json").exists():
            raise StoreError("a session already exists here", root)
        root.mkdir(parents=True, exist_ok=True)
        make_private(root)
        for folder in ("images", "labels/final", "labels/predicted", "models", "scores", "gaps", "rounds"):
            (root / folder).mkdir(mode=0o700, parents=True, exist_ok=True)
        pretrained = ModelVersion(PRETRAINED_VERSION, None, now_iso(), 0, {}, settings["model_source"])
        write_json_atomic(root / "models" / PRETRAINED_VERSION / "version.json", asdict(pretrained))
        write_json_atomic(root / "cases.json", {"cases": []})
        write_json_atomic(root / "state.json", {"active_version": PRETRAINED_VERSION})
        write_json_atomic(root / "session.json", {"format": FORMAT_VERSION, "created": now_iso(), **settings})
        store = cls(root)
        store.log("session_created", model_source=settings["model_source"])
        fsync_directory(root)  # the journal's and the first files' names
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

    def update_settings(self, **changes) -> None:
        """Change session-wide settings (``session.json``), written atomically; the journal says what."""
        with self._lock:
            settings = {**self.settings, **changes}
            write_json_atomic(self.root / "session.json", settings)
            self.settings = settings
            self.log("settings_changed", **changes)

    def _recover(self) -> list[int]:
        """Mark rounds whose process died as interrupted and drop what they half-wrote.

        A round whose process is still alive (a backend worker training now) is left alone, so opening the
        session from another process never breaks a live round.
        """
        dead = sorted(n for n, event in self.open_rounds().items() if not process_alive(event.get("pid")))
        for number in dead:
            self.log("round_interrupted", round=number)
        self.remove_uncommitted()
        return dead

    def remove_uncommitted(self) -> None:
        """Remove what no live round will commit: partial and uncommitted version folders, temporary files
        of dead processes; and bring ``state.json`` to the journal's active version."""
        live = {event.get("pid") for event in self.open_rounds().values() if process_alive(event.get("pid"))}
        models = self.root / "models"
        for partial in models.glob(".partial-*"):
            if partial_owner(partial) not in live:
                shutil.rmtree(partial, ignore_errors=True)
        committed = self.committed_rounds() | {0}
        live_rounds = {n for n, e in self.open_rounds().items() if e.get("pid") in live}
        for folder in models.glob("v*"):
            number = _version_round(folder)
            if number is not None and number not in committed and number not in live_rounds:
                shutil.rmtree(folder, ignore_errors=True)
        try:
            cases = {record.id for record in self.cases()}
        except StoreError:  # an unreadable pool: keep every mask upload, the next open decides
            cases = None
        sweep_temporaries(self.root, self.final_label_path, cases)
        self._settle_active_version()

    def _settle_active_version(self) -> None:
        """``state.json`` is a copy of the journal's last activation; a crash between the two is mended."""
        declared = [
            e["version"]
            for e in self.journal()
            if e["event"] in ACTIVATING_EVENTS and "version" in e and e.get("activated", True)
        ]
        known = {v.id for v in self.versions()}
        wanted = next((v for v in reversed(declared) if v in known), PRETRAINED_VERSION)
        state = read_json(self.root / "state.json", {"active_version": None})
        if state.get("active_version") != wanted:
            write_json_atomic(self.root / "state.json", {"active_version": wanted})

    # -- journal -----------------------------------------------------------------------------------------
    def log(self, event: str, **details) -> None:
        """Append one event; one short line per write, fsynced, so a crash loses at most the last line. A
        write that fails (a full disk) is cut off again, so the next line never lands on a broken one."""
        ensure_writer_may_continue()  # a worker whose backend died must not write after its recovery
        line = (json.dumps({"time": now_iso(), "event": event, **details}) + "\n").encode()
        path = self.root / "journal.jsonl"
        try:
            with open(path, "ab") as stream:
                end = stream.tell()
                try:
                    stream.write(line)
                    stream.flush()
                    os.fsync(stream.fileno())
                except OSError:
                    with contextlib.suppress(OSError):
                        stream.truncate(end)
                    raise
        except OSError as error:
            raise write_error(error, path) from error

    def journal(self) -> list[dict]:
        path = self.root / "journal.jsonl"
        try:
            stats = path.stat()
        except OSError:
            return []
        key = (stats.st_size, stats.st_mtime_ns, stats.st_ino)
        cached = getattr(self, "_journal_cache", None)
        if cached is not None and cached[0] == key:
            return list(cached[1])
        events = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
        self._journal_cache = (key, events)
        return list(events)

    def committed_rounds(self) -> set[int]:
        return {e["round"] for e in self.journal() if e["event"] == "round_completed"}

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

    def remove_case(self, case_id: str) -> CaseRecord:
        """Drop a case from the pool with what was computed for it; a volume uploaded into the session goes
        too, a volume added by path stays where the user keeps it."""
        with self._lock:
            records = self.cases()
            record = next((r for r in records if r.id == case_id), None)
            if record is None:
                raise UnknownCaseError(f"unknown case id {case_id!r}", self.root / "cases.json")
            self.save_cases([r for r in records if r.id != case_id])
            self.log("case_removed", case=case_id, name=record.name, path=record.source_path)
        for path in [*self.root.glob(f"scores/*/{case_id}.*json"), self.gap_path(case_id)]:
            path.unlink(missing_ok=True)
        for kept in ("predicted", "proposed"):  # the model's label maps and the few-shot proposals
            for path in self.root.glob(f"labels/{kept}/*/{case_id}.*"):
                path.unlink(missing_ok=True)
        (self.root / "images" / "nifti" / f"{case_id}.nii.gz").unlink(missing_ok=True)
        uploaded = self.root / "images" / case_id
        if Path(record.source_path).resolve().is_relative_to(uploaded):
            shutil.rmtree(uploaded, ignore_errors=True)
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
        """Committed versions: the pretrained one and those whose round has its ``round_completed`` line."""
        committed = self.committed_rounds() | {0}
        folders = sorted(p for p in (self.root / "models").iterdir() if p.is_dir() and p.name.startswith("v"))
        versions = [
            ModelVersion(**read_json(folder / "version.json"))
            for folder in folders
            if (folder / "version.json").is_file()
        ]
        return [v for v in versions if v.round in committed]

    def version(self, version_id: str) -> ModelVersion:
        path = self.root / "models" / version_id / "version.json"
        version = ModelVersion(**read_json(path)) if path.is_file() else None
        if version is None or (version.round and version.round not in self.committed_rounds()):
            raise StoreError(f"unknown model version {version_id!r}", path.parent)
        return version

    def weights_path(self, version_id: str) -> Path:
        return self.root / "models" / version_id / "model.pt"

    def teacher_path(self, version_id: str) -> Path:
        """The persistent EMA teacher saved with a version (absent: the next round starts a fresh one)."""
        return self.root / "models" / version_id / TEACHER_FILE

    @property
    def active_version(self) -> str:
        return read_json(self.root / "state.json")["active_version"]

    def activate(self, version_id: str) -> ModelVersion:
        """The journal line first (it is what counts after a crash), then ``state.json``."""
        version = self.version(version_id)
        self.log("version_activated", version=version_id)
        write_json_atomic(self.root / "state.json", {"active_version": version_id})
        return version

    def next_version_id(self) -> str:
        """Never reuses a number, even that of an uncommitted folder a crash left (it is removed on open)."""
        folders = [p.name for p in (self.root / "models").glob("v*") if p.name[1:].isdigit()]
        return f"v{max((int(name[1:]) for name in folders), default=0) + 1:04d}"

    def partial_version_folder(self) -> Path:
        """A folder to write a new version into; it only becomes a version through ``commit_round``."""
        return Path(tempfile.mkdtemp(prefix=f".partial-{os.getpid()}-", dir=self.root / "models"))

    def commit_round(
        self, partial: Path, version: ModelVersion, round_record: dict, activate: bool = True
    ) -> ModelVersion:
        """Make a round's version visible, and active unless the guard kept its parent (``activate``); the
        journal line is the one atomic commit step."""
        write_json_atomic(partial / "version.json", asdict(version))
        write_json_atomic(partial / "round.json", round_record)
        fault_point("version-staged")
        target = self.root / "models" / version.id
        if target.exists():
            raise StoreError("model version already exists", target)
        os.replace(partial, target)
        fsync_directory(target.parent)
        fault_point("version-renamed")
        try:
            self.log(
                "round_completed",
                round=version.round,
                version=version.id,
                activated=activate,
                **version.metrics,
            )
        except StoreError:
            shutil.rmtree(target, ignore_errors=True)
            raise
        fault_point("round-committed")
        if activate:
            write_json_atomic(self.root / "state.json", {"active_version": version.id})
        fault_point("version-activated")
        return version

    def discard_round(self, version_id: str, number: int) -> None:
        """Remove a staged version whose round did not commit (the caller logs the round's end)."""
        folder = self.root / "models" / version_id
        if number not in self.committed_rounds() and _version_round(folder) == number:
            shutil.rmtree(folder, ignore_errors=True)

    # -- scores and rounds -------------------------------------------------------------------------------
    def scores_path(self, version: str, case_id: str) -> Path:
        return self.root / "scores" / version / f"{case_id}.json"

    def skipped_path(self, version: str, case_id: str) -> Path:
        """Marks a case the scoring of ``version`` could not score, with the reason."""
        return self.root / "scores" / version / f"{case_id}.skipped.json"

    def gap_path(self, case_id: str) -> Path:
        return self.root / "gaps" / f"{case_id}.json"

    def rounds(self) -> list[dict]:
        """Committed rounds, oldest first (``round.json`` of each version; ``rounds/`` of older sessions)."""
        committed = self.committed_rounds()
        found = {}
        for path in sorted((self.root / "rounds").glob("round_*.json")):
            data = read_json(path)
            found[data["round"]] = data
        for version in self.versions():
            path = self.root / "models" / version.id / "round.json"
            if path.is_file():
                found[version.round] = read_json(path)
        return [found[n] for n in sorted(found) if n in committed]

    @property
    def round_number(self) -> int:
        """The number of the last completed fine-tuning round."""
        completed = [e["round"] for e in self.journal() if e["event"] == "round_completed"]
        return max(completed, default=0)

    def next_round_number(self) -> int:
        """Numbers are never reused: a cancelled or interrupted round keeps its number."""
        started = [e["round"] for e in self.journal() if e["event"] == "round_started"]
        return max(started, default=0) + 1


def _version_round(folder: Path) -> int | None:
    """The round that made a version folder (None: not a version folder, or unreadable)."""
    try:
        return int(json.loads((folder / "version.json").read_text())["round"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
