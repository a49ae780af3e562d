"""Fine-tuning rounds and scoring passes as jobs: start, follow, cancel."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from .. import schemas
from ..job_records import UnknownJobError
from . import BackendDep, errors

router = APIRouter(tags=["jobs"], responses=errors())


@router.post(
    "/finetune",
    response_model=schemas.Job,
    responses=errors(409),
    summary="start a fine-tuning round on the labelled cases (409 while one is queued or running)",
)
def finetune(backend: BackendDep, request: schemas.FinetuneRequest | None = None) -> schemas.Job:
    options = request.model_dump(exclude_none=True) if request is not None else {}
    return backend.start_finetune(options)


@router.post("/score", response_model=schemas.Job, summary="score the pool with the active model (as a job)")
def score(backend: BackendDep) -> schemas.Job:
    return schemas.Job.of(backend.jobs.ensure_scoring(backend.store.active_version))


@router.get("/jobs", response_model=list[schemas.Job], summary="every job of this session, oldest first")
def jobs(backend: BackendDep) -> list[schemas.Job]:
    return [schemas.Job.of(job) for job in backend.jobs.list()]


@router.get("/jobs/{job_id}", response_model=schemas.Job, responses=errors(404), summary="one job's state")
def job(job_id: str, backend: BackendDep) -> schemas.Job:
    try:
        return schemas.Job.of(backend.jobs.get(job_id))
    except UnknownJobError as error:
        raise HTTPException(404, str(error)) from error


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=schemas.Job,
    responses=errors(404),
    summary="stop a job (its worker process is killed if it does not stop within seconds)",
)
def cancel(job_id: str, backend: BackendDep) -> schemas.Job:
    try:
        return schemas.Job.of(backend.jobs.cancel(job_id))
    except UnknownJobError as error:
        raise HTTPException(404, str(error)) from error
