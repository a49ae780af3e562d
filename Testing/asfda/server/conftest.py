"""Fixtures of the backend tests: real server processes, each stopped at teardown."""

from __future__ import annotations

import pytest
from server_process import RunningServer, pool_folders, start_server


@pytest.fixture
def server_factory():
    """Start servers; every one started is stopped at teardown."""
    started: list[RunningServer] = []

    def start(*args, **kwargs) -> RunningServer:
        server = start_server(*args, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="package")
def small_server(tmp_path_factory, tiny_dataset, tiny_model):
    """One backend on a pool of 2 cases, no labels, a 1 MB upload limit and a 1 million voxel bound: for bad
    input and fuzzing."""
    images, labels = pool_folders(tiny_dataset)
    server = start_server(
        tmp_path_factory.mktemp("small") / "session",
        tiny_model,
        allow=(images, labels),
        extra=("--max-upload-mb", "1", "--max-megavoxels", "1"),
    )
    with server.client() as client:
        for image, _ in tiny_dataset.pool[:2]:
            assert client.post("/cases", json={"path": str(image)}).status_code == 200
    yield server
    server.stop()
