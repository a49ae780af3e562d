"""Model versions and the metrics of each fine-tuning round."""

from __future__ import annotations

from fastapi import APIRouter

from .. import schemas
from . import BackendDep, errors

router = APIRouter(tags=["models"], responses=errors())


@router.get("/models", response_model=list[schemas.ModelVersion], summary="every model version, oldest first")
def versions(backend: BackendDep) -> list[schemas.ModelVersion]:
    return backend.versions()


@router.post(
    "/models/{version}/activate",
    response_model=schemas.ModelVersion,
    responses=errors(404, 409),
    summary="use an earlier (or later) model version from now on",
)
def activate(version: str, backend: BackendDep) -> schemas.ModelVersion:
    return backend.activate(version)


@router.get(
    "/metrics", response_model=list[schemas.RoundMetrics], summary="what each round achieved, for plots"
)
def metrics(backend: BackendDep) -> list[schemas.RoundMetrics]:
    return backend.metrics()
