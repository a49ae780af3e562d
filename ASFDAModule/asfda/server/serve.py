"""Run the backend: bind loopback, announce port and token in ``server.json`` (0600), serve until stopped."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from ..errors import StoreError
from ..session.lock import LOCK_FILE, SERVER_FILE, session_lock  # noqa: F401 - LOCK_FILE re-exported
from ..session.temporaries import temporary_path
from .app import create_app
from .auth import new_token
from .backend import ServerSettings

READY_LINE = "ASFDA backend ready on {url}"
HOST = "127.0.0.1"  # loopback only, never configurable: the backend trusts its token, not its network

log = logging.getLogger(__name__)


@dataclass
class ServeOptions:
    session: Path
    model: Path | None = None
    device: str = "auto"
    port: int = 0
    allow_dirs: list[Path] = field(default_factory=list)
    settings: ServerSettings = field(default_factory=ServerSettings)
    verbose: bool = False


def serve(options: ServeOptions) -> int:
    root = Path(options.session).expanduser().resolve()
    if not (root / "session.json").is_file() and options.model is None:
        raise StoreError("no ASFDA session here: give --model MODEL to create one", root)
    os.umask(0o077)  # every file the backend and its workers write is the user's only
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    with session_lock(root):
        token = new_token()
        app = create_app(root, token, options.allow_dirs, options.model, options.device, options.settings)
        listener = bind_loopback(options.port)
        port = listener.getsockname()[1]
        url = f"http://{HOST}:{port}"
        config = uvicorn.Config(
            app,
            log_level="info" if options.verbose else "warning",
            access_log=options.verbose,
            timeout_graceful_shutdown=10,
        )
        server = AnnouncingServer(
            config, on_ready=lambda: announce(root, url, port, token), on_stop=lambda: withdraw(root, token)
        )
        try:
            server.run(sockets=[listener])
        finally:
            withdraw(root, token)
            listener.close()
    return 0


class AnnouncingServer(uvicorn.Server):
    """Calls ``on_ready`` once the socket accepts connections (after the app's startup), ``on_stop`` after
    the shutdown (uvicorn re-raises SIGTERM after it, so code after ``run`` may never run)."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None], on_stop: Callable[[], None]):
        super().__init__(config)
        self.on_ready = on_ready
        self.on_stop = on_stop

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self.on_ready()

    async def shutdown(self, sockets=None) -> None:
        try:
            await super().shutdown(sockets)
        finally:
            self.on_stop()


def bind_loopback(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1; port 0 lets the system pick a free one."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if os.name != "nt":  # on Windows this option would let another process take the port too
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((HOST, port))
    except OSError as error:
        listener.close()
        raise StoreError(f"cannot listen on {HOST}:{port} ({error.strerror or error})") from error
    listener.listen(128)
    listener.set_inheritable(False)
    return listener


def announce(root: Path, url: str, port: int, token: str) -> None:
    """Write ``server.json`` readable by the user only, then print the ready line the module waits for."""
    data = json.dumps({"url": url, "port": port, "token": token, "pid": os.getpid()}, indent=2).encode()
    target = root / SERVER_FILE
    partial = temporary_path(target)
    handle = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(handle, data)
        os.fsync(handle)
    finally:
        os.close(handle)
    os.chmod(partial, 0o600)
    os.replace(partial, target)
    print(READY_LINE.format(url=url), flush=True)
    sys.stdout.flush()


def withdraw(root: Path, token: str) -> None:
    """Remove ``server.json`` when it is still this server's (a client must not find a dead address)."""
    path = root / SERVER_FILE
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()).get("token") == token:
            path.unlink()
