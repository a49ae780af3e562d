"""The model versions a backend offers: their list, which one is active, and the rounds' metrics."""

from __future__ import annotations

from fastapi import HTTPException

from ..session.session import AdaptationSession
from ..session.store import SessionStore
from . import schemas
from .jobs import JobManager


class ModelVersions:
    """The model-version routes of a :class:`~asfda.server.backend.Backend` (a mixin of it)."""

    session: AdaptationSession
    store: SessionStore
    jobs: JobManager

    def versions(self) -> list[schemas.ModelVersion]:
        active = self.store.active_version
        return [
            schemas.ModelVersion(
                id=v.id,
                parent=v.parent,
                created=v.created,
                round=v.round,
                metrics=schemas.finite_tree(v.metrics),
                active=v.id == active,
            )
            for v in self.store.versions()
        ]

    def activate(self, version_id: str) -> schemas.ModelVersion:
        if version_id not in {v.id for v in self.store.versions()}:
            raise HTTPException(404, f"unknown model version {version_id!r}")
        busy = self.jobs.blocking()
        if busy:
            raise HTTPException(
                409,
                f"job {busy[0].id} ({busy[0].kind.value}) is {busy[0].state.value}: "
                f"activate a model version after it ends or cancel it",
            )
        self.session.activate(version_id)
        if len(self.store.labelled_ids()) >= 2:
            self.jobs.ensure_proposal()  # the starting segmentation, chosen again with this model
        return next(v for v in self.versions() if v.id == version_id)

    def metrics(self) -> list[schemas.RoundMetrics]:
        rows = []
        for data in self.store.rounds():
            metrics = schemas.finite_tree(data.get("metrics") or {})
            rows.append(
                schemas.RoundMetrics(
                    round=data["round"],
                    model_version=data["model_version"],
                    parent=data.get("parent"),
                    # every mask the round had, the one held out to validate on included
                    n_labelled=len(data["labelled"]) if data.get("labelled") else metrics.get("n_labelled"),
                    n_pseudo_labelled=metrics.get("n_pseudo_labelled"),
                    val_dice=metrics.get("val_dice"),
                    seconds=metrics.get("seconds"),
                    steps=metrics.get("steps"),
                )
            )
        return rows
