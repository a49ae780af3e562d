"""The HTTP routes, one module a concern; each route is a thin call into :class:`..backend.Backend`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..backend import Backend
from ..schemas import ErrorResponse


def get_backend(request: Request) -> Backend:
    return request.app.state.backend


BackendDep = Annotated[Backend, Depends(get_backend)]


def errors(*codes: int) -> dict:
    """OpenAPI documentation of error answers (all ``{"detail": "..."}``); 400 is a body that is not even
    JSON, 401 a missing token, 422 a request that does not fit the schema."""
    return {code: {"model": ErrorResponse} for code in (400, 401, 422, *codes)}


FILE_RESPONSE = {
    "description": "the file",
    "content": {
        "application/gzip": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}
