"""Blocking calls (HTTP to the backend) on worker threads, their results handed back on the GUI thread.

Qt and MRML are not thread-safe, so a worker never touches them: it returns a value, and :meth:`poll`, called
by a ``qt.QTimer`` on the GUI thread, runs the callback that puts the value in the scene or the widgets.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

Callback = Callable[[object], None]
ErrorCallback = Callable[[BaseException], None]


@dataclass
class _Task:
    name: str
    future: Future
    onDone: Callback | None
    onError: ErrorCallback | None


class BackgroundTasks:
    """Named tasks; a task name runs at most once at a time, so a double click does not start two rounds."""

    def __init__(self, workers: int = 2):
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ASFDA")
        self._tasks: list[_Task] = []
        self._lock = threading.Lock()

    def submit(
        self,
        name: str,
        function: Callable,
        *args,
        onDone: Callback | None = None,
        onError: ErrorCallback | None = None,
    ) -> bool:
        """Start ``function(*args)`` on a worker; False (and nothing started) while ``name`` still runs."""
        with self._lock:
            if any(task.name == name for task in self._tasks):
                return False
            self._tasks.append(_Task(name, self._executor.submit(function, *args), onDone, onError))
        return True

    def isRunning(self, name: str) -> bool:
        with self._lock:
            return any(task.name == name for task in self._tasks)

    @property
    def busy(self) -> bool:
        with self._lock:
            return bool(self._tasks)

    def poll(self) -> int:
        """Run the callbacks of finished tasks on the calling thread; returns how many finished."""
        with self._lock:
            finished = [task for task in self._tasks if task.future.done()]
            self._tasks = [task for task in self._tasks if not task.future.done()]
        for task in finished:
            self._deliver(task)
        return len(finished)

    def waitAll(self, timeout: float | None = None) -> None:
        """Block until every task finished and deliver the results (scripts and tests, not the GUI)."""
        with self._lock:
            futures = [task.future for task in self._tasks]
        for future in futures:
            future.exception(timeout=timeout)
        self.poll()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _deliver(task: _Task) -> None:
        error = task.future.exception()
        if error is not None:
            if task.onError is None:
                logging.error("ASFDA: %s failed: %s", task.name, error)
            else:
                task.onError(error)
        elif task.onDone is not None:
            task.onDone(task.future.result())
