"""Uploaded files: bounded in size, written to the session's ``uploads/`` before anything else happens to
them (so an annotator's mask survives a crash during its validation), named safely."""

from __future__ import annotations

import errno
import os
import re
import shutil
import unicodedata
from pathlib import Path
from typing import BinaryIO

from fastapi import HTTPException

from ..io.volumes import volume_suffix
from ..session.faults import fault_point
from ..session.files import write_error
from ..session.temporaries import PARTIAL, temporary_path
from .auth import send_json

CHUNK_BYTES = 1 << 20
DRAIN_LIMIT_BYTES = 1 << 30  # a refused upload up to this size is read to its end (fast on loopback)
# A .mhd header names a separate .raw file, which one upload cannot carry.
UPLOAD_SUFFIXES = (".nii.gz", ".nii", ".seg.nrrd", ".nrrd", ".mha")
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


MAX_JSON_BYTES = 1 << 20  # the API's JSON requests are a few hundred bytes


class UploadTooLargeError(HTTPException):
    def __init__(self, limit: int):
        super().__init__(
            413,
            f"the upload is larger than the backend's limit of {limit / 2**20:.1f} MB "
            "(start it with a larger --max-upload-mb)",
        )


class JsonTooLargeError(HTTPException):
    def __init__(self, limit: int):
        super().__init__(
            413, f"the request body is larger than {limit / 2**20:.0f} MB; no request of this API needs that"
        )


class BodySizeLimitMiddleware:
    """Refuses request bodies over their bound: at once when Content-Length says so, else while streaming.

    A file upload (``multipart/form-data``) may take ``max_bytes``; any other body (JSON) ``max_json_bytes``,
    so that a huge JSON body is never parsed on the event loop. Counting what arrives (not trusting
    Content-Length alone) bounds chunked bodies too; the error raised mid-stream is an HTTPException so that
    FastAPI's body parsing lets it through as a 413.
    """

    def __init__(self, app, max_bytes: int, max_json_bytes: int = MAX_JSON_BYTES):
        self.app = app
        self.max_bytes = max_bytes
        self.max_json_bytes = max_json_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        upload = headers.get(b"content-type", b"").lower().startswith(b"multipart/form-data")
        limit = self.max_bytes if upload else self.max_json_bytes
        error = UploadTooLargeError if upload else JsonTooLargeError
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await drain(receive)
            await send_json(send, 413, {"detail": error(limit).detail}, [(b"connection", b"close")])
            return
        received = 0

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if message.get("more_body", False):
                        await drain(receive)
                    raise error(limit)
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
    """The uploaded file's name reduced to harmless ASCII characters (accents transliterated: ``Müller`` ->
    ``Muller``), keeping its volume extension; ``volume`` only when no character is left."""
    stem, suffix = upload_stem(name)
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    return (_safe_characters(ascii_stem) or "volume") + suffix


def upload_case_name(name: str | None) -> str:
    """The case's name for an uploaded file: its name without the extension, in any script (``Печень_01``),
    reduced to letters, digits, ``.``, ``_`` and ``-``; the safe file name's stem when nothing is left."""
    stem, suffix = upload_stem(name)
    return _safe_characters(unicodedata.normalize("NFC", stem)) or safe_file_name(name)[: -len(suffix)]


def upload_stem(name: str | None) -> tuple[str, str]:
    base = Path((name or "").replace("\\", "/")).name
    suffix = volume_suffix(base)
    if suffix not in UPLOAD_SUFFIXES:
        raise ValueError(f"{name!r}: not a volume file name; upload one of {', '.join(UPLOAD_SUFFIXES)}")
    return base[: len(base) - len(suffix)], suffix


def _safe_characters(stem: str) -> str:
    return re.sub(r"[^\w.-]+", "_", stem).strip("._")[-100:]


def save_upload(stream: BinaryIO, folder: Path, name: str, prefix: str = "") -> Path:
    """Copy an upload into ``folder`` under a unique temporary name (see :mod:`asfda.session.temporaries`:
    the copy of a dead backend is removed when the session is opened again), fsynced; it appears under that
    name only when complete (``.part`` while it arrives)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = temporary_path(folder / f"{prefix}{name}", volume_suffix(name))
    partial = target.with_name(target.name + PARTIAL)
    try:
        with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o600), "wb") as out:
            shutil.copyfileobj(stream, out, CHUNK_BYTES)
            out.flush()
            os.fsync(out.fileno())
            if out.tell() != os.fstat(out.fileno()).st_size:
                raise OSError(errno.ENOSPC, "short write")
        fault_point("upload-copied")
        os.replace(partial, target)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise write_error(error, target) from error
    return target
