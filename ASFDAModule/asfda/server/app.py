"""The FastAPI application: routes, the token check, the upload bound, and errors as JSON 4xx answers."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from .. import __version__
from ..errors import (
    ASFDAError,
    CancelledError,
    CaseInUseError,
    CheckpointError,
    DiskFullError,
    MaskError,
    StoreError,
    UnknownCaseError,
    VolumeReadError,
)
from .auth import HostMiddleware, TokenMiddleware
from .backend import Backend, ServerSettings
from .job_records import JobConflictError
from .paths import InvalidPathError, PathForbiddenError
from .routes import cases, jobs, models, query, system
from .uploads import BodySizeLimitMiddleware

log = logging.getLogger(__name__)

# The engine's errors name the file and the problem; the status says whose move it is.
ERROR_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (UnknownCaseError, 404),
    (MaskError, 422),
    (VolumeReadError, 422),
    (CheckpointError, 422),
    (CancelledError, 409),
    (CaseInUseError, 409),
    (DiskFullError, 507),  # nothing was changed; the message says "no space left on device"
    (StoreError, 409),  # busy, or could not write: nothing was changed
    (ASFDAError, 400),
    (PathForbiddenError, 403),
    (InvalidPathError, 422),
    (JobConflictError, 409),
)


def error_status(error: Exception) -> int:
    return next(status for kind, status in ERROR_STATUS if isinstance(error, kind))


def create_app(
    session_dir: str | Path,
    token: str,
    allowed_dirs: Iterable[str | Path] = (),
    model: str | Path | None = None,
    device: str = "auto",
    settings: ServerSettings | None = None,
) -> FastAPI:
    """The backend over the session at ``session_dir`` (created from ``model`` when there is none yet).

    Opening it recovers what an earlier backend left: its workers are stopped, an unfinished round is
    reported interrupted, and its queued or running jobs are marked so.
    """
    backend = Backend.open(session_dir, allowed_dirs, model, device, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        backend.jobs.start()
        try:
            yield
        finally:
            backend.jobs.shutdown()

    app = FastAPI(
        title="ASFDA backend",
        version=__version__,
        lifespan=lifespan,
        description="Active source-free domain adaptation of a 3D segmentation model: the local "
        "backend of the ASFDA Slicer module. Every request needs "
        "'Authorization: Bearer <token>' (the token is in the session's server.json).",
    )
    app.state.backend = backend
    for router in (system.router, cases.router, jobs.router, models.router, query.router):
        app.include_router(router)

    async def engine_error(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=error_status(error))

    for kind, _ in ERROR_STATUS:
        app.add_exception_handler(kind, engine_error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        # One sentence like every other error, instead of FastAPI's list of objects.
        if any(e.get("type") == "json_invalid" for e in error.errors()):
            first = next(e for e in error.errors() if e.get("type") == "json_invalid")
            return JSONResponse(
                {"detail": f"the request body is not valid JSON ({first.get('ctx', {}).get('error', '')})"},
                status_code=400,
            )
        errors = error.errors()
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"[:300] for e in errors[:5]
        )
        more = f" (and {len(errors) - 5} more problems)" if len(errors) > 5 else ""
        return JSONResponse({"detail": f"invalid request: {problems}{more}"}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error: {type(error).__name__}: {error}"}, status_code=500)

    app.openapi = lambda: openapi_with_bearer(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=backend.settings.max_upload_bytes)
    app.add_middleware(TokenMiddleware, token=token)  # nothing runs before the token is checked...
    # ...but the Host is checked first (outermost): see auth.py
    app.add_middleware(HostMiddleware, extra_names=backend.settings.allowed_hosts)
    return app


def openapi_with_bearer(app: FastAPI) -> dict:
    """The generated schema, saying that every operation needs the bearer token."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "the token in DIR/server.json"}
        }
        schema["security"] = [{"bearer": []}]
        app.openapi_schema = schema
    return app.openapi_schema
