"""Server health and what it runs on."""

from __future__ import annotations

from fastapi import APIRouter

from .. import schemas
from . import BackendDep, errors

router = APIRouter(tags=["server"], responses=errors())


@router.get("/health", response_model=schemas.Health, summary="the backend answers")
def health() -> schemas.Health:
    return schemas.Health()


@router.get("/info", response_model=schemas.Info, summary="engine, device, GPU memory, active model version")
def info(backend: BackendDep) -> schemas.Info:
    return backend.info()
