"""The pool of cases: add, list, rank, serve the next one, download its volume and prediction, label it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile
from fastapi.responses import FileResponse

from .. import schemas
from ..backend import PredictionFormat
from . import FILE_RESPONSE, BackendDep, errors

MODEL_VERSION_HEADER = "X-ASFDA-Model-Version"  # the model version that made a prediction
STARTING_FROM_HEADER = "X-ASFDA-Starting-From"  # the source of the served segmentation, in one line
SOURCE_HEADER = "X-ASFDA-Prediction-Source"  # model, majority, weighted or agreement
router = APIRouter(tags=["cases"], responses=errors())


def media_type(file_name: str) -> str:
    return "application/gzip" if file_name.endswith(".gz") else "application/octet-stream"


@router.get("/cases", response_model=list[schemas.Case], summary="every case with its status and scores")
def cases(backend: BackendDep) -> list[schemas.Case]:
    return backend.cases()


@router.post(
    "/cases",
    response_model=list[schemas.Case],
    responses=errors(403, 404),
    summary="add a volume file or a folder of volumes (a case already there is returned)",
)
def add_cases(request: schemas.AddCases, backend: BackendDep) -> list[schemas.Case]:
    return backend.add_path(request.path) if request.path is not None else backend.add_folder(request.folder)


@router.post(
    "/cases/upload",
    response_model=schemas.Case,
    responses=errors(413),
    summary="add a volume sent in the request (.nii.gz, .nii, .nrrd, .mha)",
)
def upload_case(
    file: Annotated[UploadFile, File(description="the volume file")], backend: BackendDep
) -> schemas.Case:
    return backend.upload_case(file.filename, file.file)


@router.get("/cases/{case_id}", response_model=schemas.Case, responses=errors(404), summary="one case")
def case(case_id: str, backend: BackendDep) -> schemas.Case:
    return backend.case(case_id)


@router.delete(
    "/cases/{case_id}",
    response_model=schemas.Case,
    responses=errors(404, 409),
    summary="remove a case from the pool (409 if it is labelled or a job is running); returns it",
)
def remove_case(case_id: str, backend: BackendDep) -> schemas.Case:
    return backend.remove_case(case_id)


@router.get(
    "/cases/{case_id}/image",
    response_class=FileResponse,
    responses={200: FILE_RESPONSE, **errors(404)},
    summary="the case's volume (.nii.gz)",
)
def image(case_id: str, backend: BackendDep) -> FileResponse:
    path, name = backend.image_file(case_id)
    return FileResponse(path, media_type=media_type(name), filename=name)


@router.get(
    "/cases/{case_id}/prediction",
    response_class=FileResponse,
    responses={200: FILE_RESPONSE, **errors(404)},
    summary="the starting segmentation of the case on the case's grid (the model's label map or the chosen "
    "proposal); headers X-ASFDA-Model-Version, X-ASFDA-Prediction-Source and X-ASFDA-Starting-From",
)
def prediction(
    case_id: str,
    backend: BackendDep,
    format: Annotated[PredictionFormat, Query(description="file format")] = PredictionFormat.NIFTI,
) -> FileResponse:
    path, name, version, source = backend.prediction_file(case_id, format)
    headers = {
        MODEL_VERSION_HEADER: version,
        SOURCE_HEADER: source.source,
        STARTING_FROM_HEADER: source.summary,
    }
    return FileResponse(path, media_type=media_type(name), filename=name, headers=headers)


@router.get(
    "/proposal",
    response_model=schemas.StartingFrom,
    summary="what the next cases start from (the model or a few-shot proposal) and the evidence for it",
)
def proposal(backend: BackendDep) -> schemas.StartingFrom:
    return backend.starting_point()


@router.put(
    "/cases/{case_id}/label",
    response_model=schemas.Case,
    responses=errors(404, 413),
    summary="submit the final mask of a case (stored on disk before the answer)",
)
def submit_label(
    case_id: str,
    file: Annotated[UploadFile, File(description="a label map on the case's grid")],
    backend: BackendDep,
) -> schemas.Case:
    return backend.submit_label(case_id, file.filename, file.file)


@router.get(
    "/ranking",
    response_model=schemas.Ranking,
    responses=errors(409),
    summary="the pool ranked by the query strategy (scores it first, as a job, when needed)",
)
def ranking(
    backend: BackendDep,
    wait: Annotated[
        bool,
        Query(description="wait for scoring; false: answer at once, incomplete while a scoring job runs"),
    ] = True,
) -> schemas.Ranking:
    return backend.ranking(wait)


@router.post(
    "/next",
    response_model=schemas.Case,
    responses=errors(404, 409),
    summary="the case to annotate next, at once from the last complete ranking (also while a round or a "
    "rescoring runs); two clients never get the same one",
)
def next_case(backend: BackendDep, request: schemas.NextRequest | None = None) -> schemas.Case:
    return backend.next_case(request.client if request is not None else "")
