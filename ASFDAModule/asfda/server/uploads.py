"""Uploaded files: bounded in size, written to the session's ``uploads/`` before anything else happens to
them (so an annotator's mask survives a crash during its validation), named safely."""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import BinaryIO

from fastapi import HTTPException

from ..io.volumes import volume_suffix
from ..session.files import write_error
from .auth import send_json

CHUNK_BYTES = 1 << 20
DRAIN_LIMIT_BYTES = 1 << 30  # a refused upload up to this size is read to its end (fast on loopback)
# A .mhd header names a separate .raw file, which one upload cannot carry.
UPLOAD_SUFFIXES = (".nii.gz", ".nii", ".seg.nrrd", ".nrrd", ".mha")


class UploadTooLargeError(HTTPException):
    def __init__(self, limit: int):
        super().__init__(
            413,
            f"the upload is larger than the backend's limit of {limit / 2**20:.1f} MB "
            "(start it with a larger --max-upload-mb)",
        )


class BodySizeLimitMiddleware:
    """Refuses request bodies over ``max_bytes``: at once when Content-Length says so, else while streaming.

    Counting what arrives (not trusting Content-Length alone) bounds chunked uploads too; the error raised
    mid-stream is an HTTPException so that FastAPI's body parsing lets it through as a 413.
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await drain(receive)
            await send_json(
                send, 413, {"detail": UploadTooLargeError(self.max_bytes).detail}, [(b"connection", b"close")]
            )
            return
        received = 0

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if message.get("more_body", False):
                        await drain(receive)
                    raise UploadTooLargeError(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)


async def drain(receive, limit: int = DRAIN_LIMIT_BYTES) -> None:
    """Read and drop the rest of a refused body, so that the client, still sending, reads the 413 instead of
    a connection reset; past ``limit`` the connection is closed anyway."""
    drained = 0
    while drained <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def safe_file_name(name: str | None) -> str:
    """The uploaded file's name reduced to harmless characters, keeping its volume extension."""
    base = Path((name or "").replace("\\", "/")).name
    suffix = volume_suffix(base)
    if suffix not in UPLOAD_SUFFIXES:
        raise ValueError(f"{name!r}: not a volume file name; upload one of {', '.join(UPLOAD_SUFFIXES)}")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", base[: len(base) - len(suffix)]).strip("._")[-100:]
    return (stem or "volume") + suffix


def save_upload(stream: BinaryIO, folder: Path, name: str, prefix: str = "") -> Path:
    """Copy an upload into ``folder`` under a unique name, fsynced; the name appears only when complete."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = folder / f"{prefix}{stamp}-{secrets.token_hex(3)}-{name}"
    partial = target.with_name(f".{target.name}.part")
    try:
        with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
            shutil.copyfileobj(stream, out, CHUNK_BYTES)
            out.flush()
            os.fsync(out.fileno())
            if out.tell() != os.fstat(out.fileno()).st_size:
                raise OSError(errno.ENOSPC, "short write")
        os.replace(partial, target)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise write_error(error, target) from error
    return target
