"""The backend as a background process: command line, readiness, log, and stopping the whole process tree.

Most tests run a stand-in ``asfda`` package (a script that behaves like ``asfda serve``: it starts a child
process, writes ``server.json`` and prints the ready line) through the real command line and PYTHONPATH. The
last test starts the real ``python -m asfda serve`` when the engine has its server.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest
from ASFDAModuleLib.BackendProcess import (
    READY_MARKER,
    BackendLaunch,
    BackendProcess,
    BackendStartError,
    BackendState,
)
from module_processes import isGone, needsRealBackend, waitGone, writeTinyModel

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the process-tree checks read /proc (POSIX only)")

FAKE_SERVE = textwrap.dedent("""
    import argparse, json, os, pathlib, signal, subprocess, sys, time

    parser = argparse.ArgumentParser()
    parser.add_argument("command")
    for option in ("--session", "--model", "--device", "--port"):
        parser.add_argument(option)
    parser.add_argument("--allow-dir", action="append")
    args = parser.parse_args()
    mode = os.environ.get("FAKE_SERVE_MODE", "ready")
    print("fake backend starting:", " ".join(sys.argv[1:]))
    if mode == "crash":
        print("error: cannot load the model")
        sys.exit(3)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    session = pathlib.Path(args.session)
    session.mkdir(parents=True, exist_ok=True)
    (session / "child.pid").write_text(str(child.pid))
    url = "http://127.0.0.1:43210"
    serverJson = json.dumps({"url": url, "port": 43210, "token": "new-token", "pid": os.getpid()})
    if mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if mode == "late-file":
        print(f"ASFDA backend ready on {url}")
        time.sleep(0.4)
        (session / "server.json").write_text(serverJson)
    elif mode != "never":
        time.sleep(0.1)
        (session / "server.json").write_text(serverJson)
        print(f"ASFDA backend ready on {url}")
    time.sleep(120)
""")


@pytest.fixture
def fakeEngine(tmp_path):
    package = tmp_path / "engine" / "asfda"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FAKE_SERVE)
    return package.parent


@pytest.fixture(params=["psutil", "process group"])
def stopWith(request, monkeypatch):
    """Both ways of stopping a tree: psutil where it is installed, the process group where it is not."""
    if request.param == "psutil":
        pytest.importorskip("psutil", reason="psutil is not installed")
    else:
        monkeypatch.setitem(sys.modules, "psutil", None)  # as in a Slicer without psutil
    return request.param


def fakeBackend(fakeEngine, session, mode="ready"):
    launch = BackendLaunch(
        sessionDir=session,
        model=Path("/models/bundle"),
        device="cpu",
        python=sys.executable,
        enginePath=fakeEngine,
        environment={**os.environ, "FAKE_SERVE_MODE": mode},
    )
    return BackendProcess(launch, logFile=session.parent / "logs" / "backend.log")


def test_command_line_and_environment(tmp_path):
    launch = BackendLaunch(
        sessionDir=tmp_path / "session",
        model=tmp_path / "bundle",
        device="cuda",
        allowDirs=[tmp_path / "data"],
        python="/opt/Slicer/bin/PythonSlicer",
        enginePath=tmp_path / "modules",
        environment={"PYTHONPATH": "/other"},
    )

    assert launch.command() == [
        "/opt/Slicer/bin/PythonSlicer",
        "-m",
        "asfda",
        "serve",
        "--session",
        str(tmp_path / "session"),
        "--device",
        "cuda",
        "--port",
        "0",
        "--model",
        str(tmp_path / "bundle"),
        "--allow-dir",
        str(tmp_path / "data"),
    ]
    environment = launch.processEnvironment()
    assert environment["PYTHONPATH"] == os.pathsep.join([str(tmp_path / "modules"), "/other"])
    assert environment["PYTHONUNBUFFERED"] == "1"
    assert "--model" not in BackendLaunch(sessionDir=tmp_path).command()


def test_start_wait_ready_keep_the_log_and_stop_with_children(fakeEngine, tmp_path, stopWith):
    backend = fakeBackend(fakeEngine, tmp_path / "session")
    assert backend.state is BackendState.NOT_STARTED

    backend.start()
    info = backend.waitUntilReady(timeout=20)
    childPid = int((tmp_path / "session" / "child.pid").read_text())

    assert (info.url, info.token, info.pid) == ("http://127.0.0.1:43210", "new-token", backend.pid)
    assert backend.state is BackendState.READY
    lines = backend.takeNewLogLines()
    assert (
        lines[0].startswith("fake backend starting: serve --session") and "--model /models/bundle" in lines[0]
    )
    assert any(READY_MARKER in line for line in lines) and backend.takeNewLogLines() == []
    assert not isGone(childPid)

    backend.stop(timeout=5)

    assert backend.state is BackendState.STOPPED
    assert waitGone(backend.pid, childPid)
    assert READY_MARKER in (tmp_path / "logs" / "backend.log").read_text()
    backend.stop()  # twice is harmless


def test_a_server_file_left_by_an_earlier_run_is_not_taken(fakeEngine, tmp_path):
    session = tmp_path / "session"
    session.mkdir()
    (session / "server.json").write_text(
        json.dumps({"url": "http://127.0.0.1:43210", "port": 43210, "token": "stale-token", "pid": 1})
    )
    backend = fakeBackend(fakeEngine, session, mode="late-file")
    backend.start()
    try:
        while not any(READY_MARKER in line for line in backend.log):
            time.sleep(0.01)
        assert backend.pollReady() is None  # ready line seen, but server.json is still the old one
        assert backend.waitUntilReady(timeout=20).token == "new-token"
    finally:
        backend.stop()


def test_a_backend_that_exits_early_reports_its_last_log_lines(fakeEngine, tmp_path):
    backend = fakeBackend(fakeEngine, tmp_path / "session", mode="crash")
    backend.start()

    with pytest.raises(BackendStartError, match="exited with code 3") as raised:
        backend.waitUntilReady(timeout=20)
    assert "error: cannot load the model" in str(raised.value)
    assert backend.state is BackendState.EXITED


def test_a_backend_not_ready_in_time_is_stopped(fakeEngine, tmp_path, stopWith):
    backend = fakeBackend(fakeEngine, tmp_path / "session", mode="never")
    backend.start()

    with pytest.raises(BackendStartError, match="not ready after 1 s"):
        backend.waitUntilReady(timeout=1)
    assert backend.state is BackendState.STOPPED
    assert waitGone(backend.pid, int((tmp_path / "session" / "child.pid").read_text()))


def test_a_backend_that_ignores_the_stop_request_is_killed(fakeEngine, tmp_path, stopWith):
    backend = fakeBackend(fakeEngine, tmp_path / "session", mode="ignore-term")
    backend.start()
    backend.waitUntilReady(timeout=20)
    childPid = int((tmp_path / "session" / "child.pid").read_text())

    started = time.monotonic()
    backend.stop(timeout=0.5)

    assert time.monotonic() - started < 5
    assert backend.returnCode == -9
    assert waitGone(backend.pid, childPid)


@needsRealBackend
def test_the_real_backend_starts_answers_and_stops(tmp_path):
    from ASFDAModuleLib.BackendClient import BackendClient
    from module_paths import MODULE_DIR

    model = writeTinyModel(tmp_path / "model", {0: "background", 1: "liver"})
    launch = BackendLaunch(
        sessionDir=tmp_path / "session",
        model=model,
        device="cpu",
        python=sys.executable,
        enginePath=MODULE_DIR,
    )
    backend = BackendProcess(launch)
    backend.start()
    try:
        info = backend.waitUntilReady(timeout=180)
        client = BackendClient(info.url, info.token)
        assert client.health()
        assert client.info().labels == {0: "background", 1: "liver"}
        assert client.cases() == []
    finally:
        backend.stop()
    assert backend.state is BackendState.STOPPED and waitGone(backend.pid)


def test_inside_slicer_a_missing_python_slicer_is_a_clear_error(tmp_path, monkeypatch):
    """Defect: inside Slicer a missing PythonSlicer silently fell back to sys.executable."""
    from ASFDAModuleLib.BackendProcess import BackendStartError, pythonForBackend

    monkeypatch.setenv("PATH", str(tmp_path))  # no PythonSlicer on the PATH
    with pytest.raises(BackendStartError, match=r"PythonSlicer was not found in .*bin nor on the PATH"):
        pythonForBackend(slicerHome=tmp_path, insideSlicer=True)

    (tmp_path / "bin").mkdir()
    launcher = tmp_path / "bin" / "PythonSlicer"
    launcher.write_text("#!/bin/sh\n")
    assert pythonForBackend(slicerHome=tmp_path, insideSlicer=True) == str(launcher)
    # Outside Slicer (scripts and tests with slicer-core) this interpreter runs the engine.
    assert pythonForBackend(slicerHome=None, insideSlicer=False) == sys.executable
