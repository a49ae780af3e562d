"""What a case's segmentation starts from: the model's prediction, or a few-shot proposal built from the
labelled cases when the leave-one-out over them says it validates better (:mod:`asfda.proposals`).

The choice is remade in the background (a job after each round and after each saved mask) and kept in
``proposals/choice.json`` with the model version and the labelled cases it was made with; the proposals it
serves are label maps on the cases' own grids under ``labels/proposed/<choice>/``, built ahead for the
best-ranked cases. Until a choice exists, or while a case's proposal is not built, the model's prediction is
served.

The leave-one-out scores the model, for each labelled case, with the prediction of the version that was
active when the case's mask was first saved (``corrected_from``): the active version may have trained on the
case, and its prediction of it would be its fit, which flatters the model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..config import config_from_dict
from ..errors import CancelledError
from ..inference.labelmap import source_grid_labelmap
from ..inference.predictor import predict
from ..io.preprocessing import ModelSpaceCase
from ..io.volumes import write_volume
from ..models.loading import LoadedModel
from ..proposals import (
    Case,
    ProposalChoice,
    ProposalKind,
    RegistrationSettings,
    choose_proposal,
    propose,
    unvalidated,
)
from .callbacks import Cancelled, Progress
from .files import read_json, write_json_atomic
from .records import now_iso
from .store import PRETRAINED_VERSION, SessionStore

CHOICE_FILE = Path("proposals") / "choice.json"
CHOOSING_SHARE = 0.7  # of a refresh's progress bar: the leave-one-out; the rest builds the proposals ahead


@dataclass(frozen=True)
class ProposalConfig:
    """How a session chooses and builds proposals (``session.json``'s ``proposals``)."""

    registration: RegistrationSettings = field(default_factory=RegistrationSettings)
    max_supports: int | None = 5  # deformable registrations per proposal: the most similar cases
    ahead: int = 3  # best-ranked unlabelled cases whose proposal is built as soon as a proposal is chosen
    margin: float = 0.0  # Dice a proposal must validate above the model's to be served
    # What one labelled case starts the others from (no leave-one-out yet): chosen on a validation split
    # (Resources/Benchmark/proposals_single_case/: propagation 0.524 against the model's 0.354, 6 seeds x 9
    # cases; with one support the weighted vote is that support's labels, as the majority is).
    single_case: ProposalKind = ProposalKind.WEIGHTED

    @classmethod
    def from_settings(cls, data: dict | None) -> ProposalConfig:
        data = dict(data or {})
        registration = config_from_dict(RegistrationSettings, data.pop("registration", None))
        known = {k: v for k, v in data.items() if k in ("max_supports", "ahead", "margin")}
        if "single_case" in data:
            known["single_case"] = ProposalKind(data["single_case"])
        return cls(registration, **known)


@dataclass(frozen=True)
class StartingPoint:
    """A recorded choice: what cases start from, and the model version and labelled cases it was made with."""

    choice: ProposalChoice
    model_version: str  # the active one: it predicts the cases the chosen proposal is built for
    cases: tuple[str, ...]  # the labelled cases of the leave-one-out
    made: str = field(default_factory=now_iso)
    # the version whose prediction of each labelled case the leave-one-out scored (the one it was corrected
    # from); empty with fewer than two labelled cases and in choices recorded before it was kept
    model_versions: dict[str, str] = field(default_factory=dict)

    @property
    def proposes(self) -> bool:
        """Whether a proposal, not the model's prediction, is served."""
        return self.choice.served is not ProposalKind.MODEL

    @property
    def key(self) -> str:
        """The folder name of the proposals this choice builds (one per model version and labelled set)."""
        digest = hashlib.sha1(",".join(sorted(self.cases)).encode()).hexdigest()[:10]
        return f"{self.model_version}-{self.choice.served.value}-{digest}"

    def to_json(self) -> dict:
        choice = self.choice
        return {
            "served": choice.served.value,
            "summary": choice.summary(),
            "validated": choice.validated,
            "labelled_cases": choice.labelled_cases,
            "dice": {kind.value: value for kind, value in choice.dice.items()},
            "per_case": {kind.value: list(values) for kind, values in choice.per_case.items()},
            "reason": choice.reason,
            "seconds": choice.seconds,
            "model_version": self.model_version,
            "cases": list(self.cases),
            "model_versions": dict(self.model_versions),
            "made": self.made,
        }

    @classmethod
    def from_json(cls, data: dict) -> StartingPoint:
        choice = ProposalChoice(
            ProposalKind(data["served"]),
            int(data["labelled_cases"]),
            {ProposalKind(k): float(v) for k, v in data.get("dice", {}).items()},
            {ProposalKind(k): tuple(v) for k, v in data.get("per_case", {}).items()},
            data.get("reason", ""),
            float(data.get("seconds", 0.0)),
        )
        return cls(
            choice,
            data["model_version"],
            tuple(data.get("cases", ())),
            data.get("made", ""),
            dict(data.get("model_versions", {})),
        )


def model_space_case(case: ModelSpaceCase, case_id: str) -> Case:
    """A session's model-space case as the proposals take it: the first channel, its spacing, its mask."""
    spacing = tuple(float(s) for s in case.image.pixdim[:3])
    labels = None if case.label is None else np.rint(case.label[0].numpy()).astype(np.int64)
    return Case(case.image[0].numpy().astype(np.float32), spacing, labels, case_id)


def _scaled(progress: Progress | None, start: float, share: float, what: str):
    if progress is None:
        return None
    return lambda done, total: progress(start + share * done / max(total, 1), f"{what} ({done}/{total})")


class StartingSegmentations:
    """The starting segmentations of an :class:`~asfda.session.session.AdaptationSession` (a mixin of it: it
    uses the session's ``model_space_case()``, ``model_space_image()``, ``predict_case()``, ``model()``,
    ``load_version()``, ``corrected_from()``, ``pretrained()``, ``image()`` and ``latest_ranking()``)."""

    store: SessionStore

    @property
    def proposal_config(self) -> ProposalConfig:
        return ProposalConfig.from_settings(self.store.settings.get("proposals"))

    def starting_point(self) -> StartingPoint | None:
        """The last recorded choice (None before any mask was saved)."""
        path = self.store.root / CHOICE_FILE
        return StartingPoint.from_json(read_json(path)) if path.is_file() else None

    def proposal_path(self, case_id: str, point: StartingPoint) -> Path:
        return self.store.root / "labels" / "proposed" / point.key / f"{case_id}.nii.gz"

    def proposed_prediction(self, case_id: str, point: StartingPoint | None = None) -> Path | None:
        """The proposal served for a case when the current choice serves one and it is built with the active
        version, else None (after a round, the new model's prediction until the choice is carried to it)."""
        point = point if point is not None else self.starting_point()
        if point is None or not point.proposes or case_id in point.cases:
            return None
        if point.model_version != self.store.active_version:
            return None
        path = self.proposal_path(case_id, point)
        return path if path.is_file() else None

    def _proposal_inputs(self, case_id: str) -> tuple[ModelSpaceCase, Case, np.ndarray]:
        """A case in model space, as the proposals take it, and the active model's probabilities of it."""
        case = self.model_space_case(case_id)
        probabilities = self.predict_case(case_id).probabilities.detach().float().cpu().numpy()
        return case, model_space_case(case, case_id), probabilities

    def _version_model(self, version: str, active: str) -> LoadedModel:
        """A version's model for the leave-one-out: the session's own for the active and the pretrained ones
        (the active one stays in memory for the server), a fresh copy, dropped after use, for the others."""
        return self.model(version) if version in (active, PRETRAINED_VERSION) else self.load_version(version)

    def _corrected_predictions(
        self, labelled: Sequence[str], active: str, cancelled: Cancelled | None = None
    ) -> tuple[list[Case], list[np.ndarray], dict[str, str]]:
        """The labelled cases as the proposals take them, each one's probabilities by the version it was
        corrected from, and those versions; each version is loaded once."""
        versions = {case_id: self.corrected_from(case_id) for case_id in labelled}
        cases: dict[str, Case] = {}
        predictions: dict[str, np.ndarray] = {}
        for version in dict.fromkeys(versions.values()):
            model = self._version_model(version, active)
            for case_id in (c for c in labelled if versions[c] == version):
                if cancelled is not None and cancelled():
                    raise CancelledError("choosing the starting segmentation cancelled")
                cases[case_id] = model_space_case(self.model_space_case(case_id), case_id)
                prediction = predict(model, self.model_space_image(case_id), self.device)
                predictions[case_id] = prediction.probabilities.detach().float().cpu().numpy()
            del model  # a version neither active nor pretrained is freed before the next one loads
        return [cases[c] for c in labelled], [predictions[c] for c in labelled], versions

    def choose_starting_point(
        self,
        config: ProposalConfig | None = None,
        progress: Progress | None = None,
        cancelled: Cancelled | None = None,
    ) -> StartingPoint:
        """The leave-one-out over the labelled cases, each scored with the prediction of the version it was
        corrected from (the model's Dice and the agreement fusion's), recorded (atomically) with the active
        version, which predicts the cases the chosen proposal is built for."""
        config = config or self.proposal_config
        version = self.store.active_version
        labelled = tuple(self.store.labelled_ids())
        model_versions: dict[str, str] = {}
        if len(labelled) < 2:  # nothing to leave out: no prediction, no registration
            choice = unvalidated(len(labelled), config.single_case)
        else:
            cases, predictions, model_versions = self._corrected_predictions(labelled, version, cancelled)
            choice = choose_proposal(
                cases,
                predictions,
                self.pretrained().spec.num_classes,
                settings=config.registration,
                max_supports=config.max_supports,
                margin=config.margin,
                progress=_scaled(progress, 0.0, CHOOSING_SHARE, "leave-one-out over the labelled cases"),
                cancelled=cancelled,
            )
            corrected = ", ".join(sorted(set(model_versions.values())))
            reason = f"{choice.reason}; the model's by the versions they were corrected from: {corrected}"
            choice = replace(choice, reason=reason)
        point = StartingPoint(choice, version, labelled, model_versions=model_versions)
        write_json_atomic(self.store.root / CHOICE_FILE, point.to_json())
        self.store.log("proposal_chosen", served=choice.served.value, summary=choice.summary(), model=version)
        return point

    def build_proposal(
        self,
        case_id: str,
        point: StartingPoint,
        config: ProposalConfig | None = None,
        progress: Progress | None = None,
        cancelled: Cancelled | None = None,
    ) -> Path:
        """The chosen proposal of an unlabelled case as a label map on its own grid (written once)."""
        path = self.proposal_path(case_id, point)
        if path.is_file():
            return path
        config = config or self.proposal_config
        labelled = [model_space_case(self.model_space_case(c), c) for c in point.cases]
        query_space, query, probabilities = self._proposal_inputs(case_id)
        proposal = propose(
            point.choice.served,
            query,
            labelled,
            probabilities,
            self.pretrained().spec.num_classes,
            config.registration,
            config.max_supports,
            progress,
            cancelled,
        )
        shares = torch.from_numpy(np.ascontiguousarray(proposal.probabilities, dtype=np.float32))
        labelmap = source_grid_labelmap(shares, self.image(case_id), self.pretrained().spec, query_space)
        return write_volume(labelmap, path)

    def cases_ahead(self, count: int) -> list[str]:
        """The unlabelled cases served next: the active ranking's best first, else the pool's order."""
        labelled = set(self.store.labelled_ids())
        ranking = self.latest_ranking()
        order = [r.case_id for r in sorted(ranking, key=lambda r: r.rank)] if ranking else []
        order += [r.id for r in self.store.cases() if r.id not in order]
        return [case_id for case_id in order if case_id not in labelled][:count]

    def _carried_to(self, point: StartingPoint, version: str) -> StartingPoint:
        """The same choice under a new active version: the leave-one-out scored the versions the labelled
        cases were corrected from, not the active one, so a round that leaves the labelled cases as they were
        changes only the model the proposals are built with."""
        point = replace(point, model_version=version, made=now_iso())
        write_json_atomic(self.store.root / CHOICE_FILE, point.to_json())
        self.store.log("proposal_carried", served=point.choice.served.value, model=version)
        return point

    def refresh_starting_points(
        self,
        config: ProposalConfig | None = None,
        progress: Progress | None = None,
        cancelled: Cancelled | None = None,
        cases: Sequence[str] = (),
        ahead: bool | None = None,
    ) -> StartingPoint:
        """Remake the choice when the labelled cases changed since it was made (carry it to a new active
        version otherwise), then build the chosen proposal, when it is not the model, for ``cases`` and,
        with ``ahead`` (default: when no case is given), for the next ``config.ahead`` cases."""
        config = config or self.proposal_config
        point = self.starting_point()
        labelled = tuple(self.store.labelled_ids())
        active = self.store.active_version
        if point is None or point.cases != labelled or not (point.model_versions or len(labelled) < 2):
            point = self.choose_starting_point(config, progress, cancelled)
        elif point.model_version != active:
            point = self._carried_to(point, active)
        pool = {r.id for r in self.store.cases()}  # a case asked for may have left the pool since
        ahead = not cases if ahead is None else ahead
        wanted = dict.fromkeys([*cases, *(self.cases_ahead(config.ahead) if ahead else [])])
        targets = [c for c in wanted if c in pool - set(point.cases)]
        if point.proposes:
            share = (1.0 - CHOOSING_SHARE) / max(len(targets), 1)
            for index, case_id in enumerate(targets):
                start = CHOOSING_SHARE + index * share
                if progress is not None:
                    progress(start, f"building the proposal of case {case_id}")
                what = f"proposal of case {case_id}: registrations"
                self.build_proposal(case_id, point, config, _scaled(progress, start, share, what), cancelled)
        if progress is not None:
            progress(1.0, point.choice.summary())
        return point
