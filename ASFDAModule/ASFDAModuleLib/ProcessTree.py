"""Stopping a process with all its descendants, on every platform.

``PythonSlicer`` is a launcher that starts Python as a child, and the server starts data-loader workers: the
whole tree goes. psutil where installed (as SlicerMONAIAuto3DSeg's ``process.py``); without it, the process
group the backend leads on POSIX, ``taskkill /T`` on Windows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def ownProcessGroup() -> dict:
    """Start the backend as the leader of its own process group, so the group can be stopped as one."""
    if os.name == "nt":
        return {
            "creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        }
    return {"start_new_session": True}


def terminateProcessTree(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Ask the process and all its descendants to stop, then kill what is left after ``timeout``."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        _terminateWithPsutil(psutil, process, timeout)
    elif os.name == "nt":
        subprocess.run(["taskkill", "/T", "/F", "/PID", str(process.pid)], capture_output=True, check=False)
    if os.name == "posix":
        # Also the backend's process group: it holds any worker started after psutil listed the tree.
        _terminateProcessGroup(process, timeout)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def _terminateWithPsutil(psutil, process: subprocess.Popen, timeout: float) -> None:
    try:
        parent = psutil.Process(process.pid)
        tree = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    _signalEach(psutil, tree, "terminate")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.poll()  # reap our own child
        if not any(_isRunning(psutil, member) for member in tree):
            return
        time.sleep(0.02)
    _signalEach(psutil, tree, "kill")


def _signalEach(psutil, processes, method: str) -> None:
    for member in processes:
        try:
            getattr(member, method)()
        except psutil.NoSuchProcess:
            pass


def _isRunning(psutil, member) -> bool:
    """A process that exited but waits for its parent (or init) to collect its status is not running."""
    try:
        return member.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _terminateProcessGroup(process: subprocess.Popen, timeout: float) -> None:
    """POSIX without psutil: the backend leads its own group (``start_new_session``), so signal the group."""
    group = process.pid
    if not _signalGroup(group, signal.SIGTERM):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.poll()  # reap the leader, or the group never looks empty
        if not _groupIsRunning(group):
            return
        time.sleep(0.02)
    _signalGroup(group, signal.SIGKILL)


def _signalGroup(group: int, signalNumber: int) -> bool:
    """Send a signal to a process group; False once no process of the group is left."""
    try:
        os.killpg(group, signalNumber)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed user: nothing of ours left to stop
        return False


def _groupIsRunning(group: int) -> bool:
    """Whether a process of the group still runs; an exited child waiting to be reaped by init does not."""
    if not _signalGroup(group, 0):
        return False
    proc = Path("/proc")
    if not proc.is_dir():  # no /proc (macOS): a member that exited is reaped by launchd at once
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited while we looked
            continue
        if int(fields[2]) == group and fields[0] not in ("Z", "X"):
            return True
    return False
