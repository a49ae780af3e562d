"""The local backend as a background process: ``PythonSlicer -m asfda serve ...``.

Like SlicerMONAIAuto3DSeg's background process: a reader thread keeps the output (the GUI shows it), readiness
is polled, never waited for on the GUI thread, and stopping takes the whole process tree down (the launcher,
the server and any data-loader workers), because ``PythonSlicer`` is a launcher that starts Python as a child.
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Protocol

from .i18n import _
from .ProcessTree import ownProcessGroup, terminateProcessTree

READY_MARKER = "ASFDA backend ready on "
SERVER_FILE = "server.json"


class BackendState(Enum):
    NOT_STARTED = "not started"
    STARTING = "starting"
    READY = "ready"
    EXITED = "exited"
    STOPPED = "stopped"


class BackendStartError(RuntimeError):
    """The backend exited or did not become ready; the message ends with the last lines of its log."""


@dataclass
class ServerInfo:
    """What a ready backend wrote to ``DIR/server.json``."""

    url: str
    port: int
    token: str | None
    pid: int | None

    @classmethod
    def fromJson(cls, data: dict) -> ServerInfo:
        return cls(
            url=str(data["url"]).rstrip("/"),
            port=int(data["port"]),
            token=data.get("token"),
            pid=data.get("pid"),
        )

    @classmethod
    def fromFile(cls, path: str | Path) -> ServerInfo:
        return cls.fromJson(json.loads(Path(path).read_text()))


def pythonForBackend(slicerHome: str | Path | None = None, insideSlicer: bool | None = None) -> str:
    """``PythonSlicer`` inside Slicer (Slicer's Python with its environment), this interpreter elsewhere.

    Inside the Slicer application a missing ``PythonSlicer`` is an error: Slicer's own executable is not a
    Python interpreter, and another Python would run the engine without Slicer's packages. Outside Slicer
    (scripts and tests with the ``slicer-core`` wheel) ``sys.executable`` runs the engine.
    """
    if insideSlicer is None:
        insideSlicer, slicerHome = _slicerApplicationHome()
    name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
    candidates = [Path(slicerHome) / "bin" / name] if slicerHome else []
    found = next((str(c) for c in candidates if c.is_file()), None) or shutil.which("PythonSlicer")
    if found:
        return found
    if insideSlicer:
        where = f" in {Path(slicerHome) / 'bin'}" if slicerHome else ""
        raise BackendStartError(
            _(
                "PythonSlicer was not found{where} nor on the PATH: the ASFDA backend runs with Slicer's "
                "Python launcher. Reinstall Slicer, or start the backend yourself (`PythonSlicer -m asfda "
                "serve ...`) and connect to it by its URL."
            ).format(where=where)
        )
    return sys.executable


def _slicerApplicationHome() -> tuple[bool, str | None]:
    """(inside the Slicer application, its home folder); slicer-core has ``slicer`` but no ``slicer.app``."""
    slicer = sys.modules.get("slicer")
    app = getattr(slicer, "app", None) if slicer is not None else None
    if app is None:
        return False, None
    return True, getattr(app, "slicerHome", None)


@dataclass
class BackendLaunch:
    """How to start ``asfda serve``; ``enginePath`` is the folder holding the ``asfda`` package."""

    sessionDir: Path
    model: Path | None = None
    device: str = "auto"
    port: int = 0
    allowDirs: list[Path] = field(default_factory=list)
    python: str | None = None
    enginePath: Path | None = None
    environment: dict[str, str] | None = None

    def command(self) -> list[str]:
        command = [
            self.python or pythonForBackend(),
            "-m",
            "asfda",
            "serve",
            "--session",
            str(self.sessionDir),
            "--device",
            self.device,
            "--port",
            str(self.port),
        ]
        if self.model is not None:
            command += ["--model", str(self.model)]
        for folder in self.allowDirs:
            command += ["--allow-dir", str(folder)]
        return command

    def processEnvironment(self) -> dict[str, str]:
        environment = dict(os.environ if self.environment is None else self.environment)
        # Line by line, or the ready line sits in a pipe buffer and the module waits for nothing.
        environment["PYTHONUNBUFFERED"] = "1"
        if self.enginePath is not None:
            paths = [str(self.enginePath)] + [
                p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p
            ]
            environment["PYTHONPATH"] = os.pathsep.join(paths)
        return environment


class BackendProcessProtocol(Protocol):
    """What the module needs of a backend process; tests and scripts may pass their own."""

    serverInfo: ServerInfo | None

    @property
    def state(self) -> BackendState: ...

    @property
    def returnCode(self) -> int | None: ...

    def logTail(self, count: int = 20) -> str: ...

    def start(self) -> None: ...

    def pollReady(self) -> ServerInfo | None: ...

    def waitUntilReady(self, timeout: float) -> ServerInfo: ...

    def takeNewLogLines(self) -> list[str]: ...

    def stop(self, timeout: float = 10.0) -> None: ...


class BackendProcess:
    """One ``asfda serve`` process, its log, its readiness and its shutdown."""

    def __init__(self, launch: BackendLaunch, logFile: Path | None = None, keptLogLines: int = 5000):
        self.launch = launch
        self.logFile = logFile
        self.serverInfo: ServerInfo | None = None
        self._process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._lines: collections.deque[str] = collections.deque(maxlen=keptLogLines)
        self._newLines: collections.deque[str] = collections.deque(maxlen=keptLogLines)
        self._readyUrl: str | None = None
        self._stopped = False
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returnCode(self) -> int | None:
        return self._process.poll() if self._process else None

    @property
    def state(self) -> BackendState:
        if self._process is None:
            return BackendState.NOT_STARTED
        if self._process.poll() is not None:
            return BackendState.STOPPED if self._stopped else BackendState.EXITED
        return BackendState.READY if self.serverInfo else BackendState.STARTING

    @property
    def log(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError(_("this backend process was already started; make a new one"))
        serverFile = self.launch.sessionDir / SERVER_FILE
        # A server.json left by an earlier run must not pass for this one's: its token is stale.
        self._staleServerText = _readText(serverFile)
        self._process = subprocess.Popen(
            self.launch.command(),
            env=self.launch.processEnvironment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            **ownProcessGroup(),
        )
        self._reader = threading.Thread(target=self._readOutput, name="ASFDA backend log", daemon=True)
        self._reader.start()
        atexit.register(_stopAtExit, weakref.ref(self))

    def takeNewLogLines(self) -> list[str]:
        """Log lines since the last call, for a GUI that appends them to its log view."""
        with self._lock:
            lines = list(self._newLines)
            self._newLines.clear()
        return lines

    def pollReady(self) -> ServerInfo | None:
        """The server's address once it is ready, None while it starts; raises once it has exited."""
        if self._process is None:
            raise BackendStartError(_("the backend was not started"))
        if self._process.poll() is not None:
            self._reader.join(timeout=2)
            when = _("after it was ready") if self.serverInfo else _("before it was ready")
            raise BackendStartError(
                _("the backend exited with code {code} {when}. Last lines of its log:\n{log}").format(
                    code=self._process.returncode, when=when, log=self.logTail()
                )
            )
        if self.serverInfo is None and self._readyUrl is not None:
            info = self._readServerFile()
            if info is not None and info.url == self._readyUrl:
                self.serverInfo = info
        return self.serverInfo

    def waitUntilReady(self, timeout: float = 120.0, interval: float = 0.1) -> ServerInfo:
        """Blocking wait, for scripts and tests; the GUI polls :meth:`pollReady` from a timer instead."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.pollReady()
            if info is not None:
                return info
            time.sleep(interval)
        self.stop()
        raise BackendStartError(
            _(
                "the backend was not ready after {timeout:.0f} s and was stopped. "
                "Last lines of its log:\n{log}"
            ).format(timeout=timeout, log=self.logTail())
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the backend and every process it started; safe to call twice."""
        if self._process is None:
            return
        self._stopped = True
        terminateProcessTree(self._process, timeout)
        if self._reader is not None:
            self._reader.join(timeout=2)

    def _readServerFile(self) -> ServerInfo | None:
        text = _readText(self.launch.sessionDir / SERVER_FILE)
        if text is None or text == self._staleServerText:
            return None
        try:
            return ServerInfo.fromJson(json.loads(text))
        except (ValueError, KeyError, TypeError):  # being written
            return None

    def _readOutput(self) -> None:
        logStream = self._openLogFile()
        try:
            for line in self._process.stdout:
                line = line.rstrip("\n")
                with self._lock:
                    self._lines.append(line)
                    self._newLines.append(line)
                if logStream:
                    logStream.write(line + "\n")
                    logStream.flush()
                if READY_MARKER in line and self._readyUrl is None:
                    self._readyUrl = line.split(READY_MARKER, 1)[1].strip().split()[0].rstrip("/")
        finally:
            if logStream:
                logStream.close()

    def _openLogFile(self):
        if self.logFile is None:
            return None
        self.logFile.parent.mkdir(parents=True, exist_ok=True)
        return self.logFile.open("a", encoding="utf-8")

    def logTail(self, count: int = 20) -> str:
        return "\n".join(self.log[-count:]) or "(no output)"


def _readText(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _stopAtExit(reference: weakref.ReferenceType) -> None:
    backend = reference()
    if backend is not None and backend.state in (BackendState.STARTING, BackendState.READY):
        backend.stop(timeout=5.0)
