"""Worker processes as a tree: stop one with all its children, recognise it again after a restart.

psutil when installed (every platform, and it tells a worker from another process that got its pid later);
otherwise POSIX process groups: each worker leads its own group, so ``killpg`` takes its children with it.
"""

from __future__ import annotations

import os
import signal
import threading
import time

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is in the server extra
    psutil = None

KILL_WAIT_SECONDS = 5.0


def start_time(pid: int) -> float | None:
    """When process ``pid`` started (to recognise it later), or None when unknown."""
    if psutil is None:
        return None
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def is_running(pid: int | None, started: float | None = None) -> bool:
    """Whether ``pid`` is alive and, when ``started`` is known, still the same process."""
    if not pid:
        return False
    if psutil is not None:
        try:
            process = psutil.Process(pid)
            alive = process.status() != psutil.STATUS_ZOMBIE
            return alive and (started is None or abs(process.create_time() - started) < 0.01)
        except psutil.Error:
            return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def kill_tree(pid: int, started: float | None = None) -> None:
    """Kill ``pid`` and every process it started; waits until they are gone (or a few seconds passed)."""
    if psutil is not None:
        try:
            parent = psutil.Process(pid)
            if started is not None and abs(parent.create_time() - started) >= 0.01:
                return  # the pid now belongs to another process
            processes = parent.children(recursive=True) + [parent]
        except psutil.Error:
            return
        for process in processes:
            try:
                process.kill()
            except psutil.Error:
                pass
        # Our own children are left for their owner (multiprocessing) to reap: reaping them here would make
        # its Process.is_alive() wrong forever.
        others = [p for p in processes if not _is_own_child(p)]
        psutil.wait_procs(others, timeout=KILL_WAIT_SECONDS)
        return
    try:  # pragma: no cover - without psutil
        os.killpg(pid, signal.SIGKILL)
    except (AttributeError, OSError):
        try:
            os.kill(pid, signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
        except OSError:
            return
    deadline = time.monotonic() + KILL_WAIT_SECONDS
    while is_running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _is_own_child(process) -> bool:
    try:
        return process.ppid() == os.getpid()
    except psutil.Error:
        return False


def lead_own_process_group() -> None:
    """Make this process the leader of a new group (POSIX), so its children can be killed with it."""
    if hasattr(os, "setpgid"):
        try:
            os.setpgid(0, 0)
        except OSError:
            pass


def exit_when_parent_dies(parent_pid: int, interval: float = 0.5) -> threading.Thread:
    """A watchdog: when the backend that started this worker dies (killed, crashed), stop at once, as a crash
    would, so the round stays unfinished in the journal and the next start reports it interrupted."""

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent_pid or not is_running(parent_pid):
                os._exit(70)

    thread = threading.Thread(target=watch, name="parent watchdog", daemon=True)
    thread.start()
    return thread
