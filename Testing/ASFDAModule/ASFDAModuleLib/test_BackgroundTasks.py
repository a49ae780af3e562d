"""Blocking calls run on workers; callbacks run only when the GUI thread polls."""

from __future__ import annotations

import threading
import time

from ASFDAModuleLib.BackgroundTasks import BackgroundTasks


def test_results_and_errors_come_back_on_the_polling_thread():
    tasks = BackgroundTasks()
    release = threading.Event()
    results, errors, threads = [], [], []

    def slowCall(value):
        release.wait(5)
        return value * 2

    def fail():
        raise RuntimeError("backend said no")

    assert tasks.submit(
        "double",
        slowCall,
        21,
        onDone=lambda v: (results.append(v), threads.append(threading.current_thread())),
    )
    assert tasks.submit("fail", fail, onError=errors.append)
    assert not tasks.submit("double", slowCall, 1)  # still running: a second click starts nothing
    time.sleep(0.05)
    tasks.poll()
    assert results == [] and tasks.isRunning("double")

    release.set()
    tasks.waitAll(timeout=5)

    assert results == [42] and threads == [threading.current_thread()]
    assert [str(e) for e in errors] == ["backend said no"]
    assert not tasks.busy
    tasks.shutdown()
