"""The query strategy: how the next cases are chosen."""

from __future__ import annotations

from fastapi import APIRouter

from .. import schemas
from . import BackendDep, errors

router = APIRouter(tags=["query"], responses=errors())


@router.get("/query", response_model=schemas.QuerySettings, summary="the query strategy and budget in use")
def query_settings(backend: BackendDep) -> schemas.QuerySettings:
    return backend.query_settings()


@router.put(
    "/query",
    response_model=schemas.QuerySettings,
    responses=errors(507),
    summary="choose the query strategy (and budget) for the next rankings; kept in the session",
)
def set_query(request: schemas.QueryRequest, backend: BackendDep) -> schemas.QuerySettings:
    return backend.set_query(request)
