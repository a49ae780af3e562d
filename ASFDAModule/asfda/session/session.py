"""The adaptation loop's operations on a session: add cases, score and rank, predict, label, fine-tune (the
round itself, from its plan to its commit, is in :mod:`asfda.session.rounds`)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, replace
from pathlib import Path

import SimpleITK as sitk
import torch

from ..config import AsdConfig, FinetuneConfig, QueryConfig, QueryStrategy, config_from_dict, config_to_dict
from ..errors import (
    ASFDAError,
    CancelledError,
    CaseInUseError,
    StoreError,
    UnknownCaseError,
    VolumeReadError,
)
from ..inference.case_cache import DEFAULT_MEMORY_LIMIT_MIB, CaseTensorCache
from ..inference.features import class_weights, final_layer
from ..inference.predictor import Prediction, predict
from ..io.masks import validated_mask
from ..io.preprocessing import ModelSpaceCase, preprocess_case
from ..io.volumes import (
    VOLUME_SUFFIXES,
    case_name,
    compose_channels,
    content_hash,
    read_volume,
    volume_suffix,
    write_volume,
)
from ..models.loading import LoadedModel, apply_weights, load_model, load_state_dict, resolve_device
from ..scoring.case_scores import CaseScores, KnowledgeGap, knowledge_gap, score_case
from ..scoring.entropy import normalized_entropy
from . import rounds
from .callbacks import Cancelled, Progress
from .files import read_json, write_json_atomic
from .predictions import PredictionFiles
from .query import SERVE_LEASE_SECONDS, PoolQuery, scoring_order
from .records import CaseRecord, ModelVersion
from .starting_points import StartingSegmentations
from .store import PRETRAINED_VERSION, SessionStore

# the public names, those that moved to their own modules included (callers import them from here)
__all__ = ["SERVE_LEASE_SECONDS", "AdaptationSession", "Cancelled", "Progress", "scoring_order"]


class AdaptationSession(PredictionFiles, PoolQuery, StartingSegmentations):
    """One session folder plus the models it needs, loaded lazily and kept in memory."""

    def __init__(self, store: SessionStore, device: str = "auto"):
        self.store = store
        self.device = resolve_device(device if device != "auto" else store.settings.get("device", "auto"))
        self.query_config = config_from_dict(QueryConfig, store.settings.get("query"))
        self.finetune_config = config_from_dict(FinetuneConfig, store.settings.get("finetune"))
        self.asd_config = config_from_dict(AsdConfig, store.settings.get("asd"))
        self._pretrained: LoadedModel | None = None
        self._current: tuple[str, LoadedModel] | None = None
        self._model_space: dict[str, ModelSpaceCase] = {}
        self.skipped: dict[str, str] = {}  # cases the last scoring pass could not score, with the reason
        self._case_tensors = CaseTensorCache(
            store.root / "cache" / "model_space",
            store.settings.get("case_cache_mib", DEFAULT_MEMORY_LIMIT_MIB),
        )

    # -- opening -----------------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        root: str | Path,
        model_source: str | Path,
        device: str = "auto",
        query: QueryConfig | None = None,
        finetune: FinetuneConfig | None = None,
        asd: AsdConfig | None = None,
        trust_bundle_code: bool = False,
    ) -> AdaptationSession:
        """Create a session folder for a model; the model is loaded once here so a bad one fails early.

        ``trust_bundle_code`` (the user's consent to run a bundle's expressions and ``scripts/``) is kept in
        the session, so that every later load of the model, by any process, is made the same way."""
        model = load_model(model_source, trust_bundle_code)
        settings = {
            "model_source": str(Path(model_source).resolve()),
            "trust_bundle_code": bool(trust_bundle_code),
            "in_channels": model.spec.in_channels,
            "model_kind": model.kind.value,
            "labels": {str(k): v for k, v in model.spec.labels.items()},
            "device": device,
            "query": config_to_dict(query or QueryConfig()),
            "finetune": config_to_dict(finetune or FinetuneConfig()),
            "asd": config_to_dict(asd or AsdConfig()),
        }
        session = cls(SessionStore.create(root, settings), device)
        session._pretrained = model
        return session

    @classmethod
    def open(cls, root: str | Path, device: str = "auto") -> AdaptationSession:
        return cls(SessionStore(root), device)

    @property
    def labels(self) -> dict[int, str]:
        return {int(k): v for k, v in self.store.settings["labels"].items()}

    # -- models ------------------------------------------------------------------------------------------
    @property
    def trusts_bundle_code(self) -> bool:
        return bool(self.store.settings.get("trust_bundle_code", False))

    def pretrained(self) -> LoadedModel:
        if self._pretrained is None:
            self._pretrained = load_model(self.store.settings["model_source"], self.trusts_bundle_code)
        return self._pretrained

    def load_version(self, version: str) -> LoadedModel:
        """A fresh copy of a version's model from disk (fine-tuning trains it in place)."""
        model = load_model(self.store.settings["model_source"], self.trusts_bundle_code)
        if version != PRETRAINED_VERSION:
            weights_path = self.store.weights_path(version)
            apply_weights(model.network, load_state_dict(weights_path), weights_path)
        return model

    def model(self, version: str | None = None) -> LoadedModel:
        """The model of ``version`` (default: the active one) for inference, kept in memory."""
        version = version or self.store.active_version
        if version == PRETRAINED_VERSION:
            return self.pretrained()
        if self._current is None or self._current[0] != version:
            self._current = (version, self.load_version(version))
        return self._current[1]

    # -- cases -------------------------------------------------------------------------------------------
    def add_volume(self, path: str | Path) -> CaseRecord:
        """Add one volume (it is read and checked first); the same content twice gives the same case."""
        path = Path(path).resolve()
        image = read_volume(path, components=self.in_channels)
        record = CaseRecord(content_hash(image), case_name(path), str(path))
        return self.store.add_case(record)

    def add_channels(self, paths: list[str | Path]) -> CaseRecord:
        """Add one case given as its co-registered channel volumes, in the model's channel order; they are
        joined into one vector volume under ``imports/``, named after the first."""
        if len(paths) != self.in_channels:
            raise VolumeReadError(
                f"{len(paths)} channel volumes given; the model takes {self.in_channels}", Path(paths[0])
            )
        image = compose_channels(paths)
        path = self.store.root / "imports" / f"{case_name(Path(paths[0]))}.nii.gz"
        write_volume(image, path)
        record = CaseRecord(content_hash(image), case_name(Path(paths[0])), str(path))
        return self.store.add_case(record)

    @property
    def in_channels(self) -> int:
        """Channels of a case: the model's (sessions made before this was kept have one)."""
        return int(self.store.settings.get("in_channels", 1))

    @staticmethod
    def volume_files(folder: str | Path) -> list[Path]:
        """The volume files of a folder, sorted (the order ``add_folder`` adds them in)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise StoreError("not a folder", folder)
        files = sorted(p for p in folder.iterdir() if p.is_file() and volume_suffix(p) in VOLUME_SUFFIXES)
        if not files:
            raise StoreError("no volumes (.nii, .nii.gz, .nrrd, .mha, .mhd) in this folder", folder)
        return files

    def add_folder(self, folder: str | Path) -> list[CaseRecord]:
        """One record a file, in ``volume_files`` order (two files with the same voxels give one case)."""
        return [self.add_volume(path) for path in self.volume_files(folder)]

    def set_query(self, strategy: QueryStrategy | None = None, budget: int | None = None) -> QueryConfig:
        """Choose how the next cases are asked for; kept in ``session.json`` for every later job."""
        changes = {"strategy": strategy, "budget": budget}
        config = replace(self.query_config, **{k: v for k, v in changes.items() if v is not None})
        self.store.update_settings(query=config_to_dict(config))
        self.query_config = config
        return config

    def remove_case(self, case_id: str) -> CaseRecord:
        """Take a case out of the pool; a labelled case is refused (its mask is the annotator's work)."""
        if self.store.final_label_path(case_id).is_file():
            record = self.store.case(case_id)
            raise CaseInUseError(
                f"case {record.name} ({case_id}) is labelled: its mask is used for fine-tuning, so it stays",
                self.store.final_label_path(case_id),
            )
        self._model_space.pop(case_id, None)
        self._case_tensors.forget(case_id)
        return self.store.remove_case(case_id)

    def image(self, case_id: str) -> sitk.Image:
        return read_volume(self.store.case(case_id).source_path, components=self.in_channels)

    def model_space_case(self, case_id: str) -> ModelSpaceCase:
        """The case in the model's space (with its final label when it has one), cached in memory."""
        label_path = self.store.final_label_path(case_id)
        cached = self._model_space.get(case_id)
        if cached is not None and (cached.label is not None or not label_path.is_file()):
            return cached
        label = read_volume(label_path) if label_path.is_file() else None
        case = preprocess_case(self.image(case_id), self.pretrained().spec, label)
        self._model_space[case_id] = case
        return case

    def model_space_image(self, case_id: str) -> torch.Tensor:
        """The case's image in the model's space, from the case-tensor cache (read and resampled once)."""
        spec = self.pretrained().spec
        return self._case_tensors.get(
            case_id, spec, lambda: preprocess_case(self.image(case_id), spec).image.as_tensor()
        )

    def submit_label(self, case_id: str, mask_path: str | Path, **read_options) -> Path:
        """Check a mask against its case and the model's labels, then store it atomically and verified.

        ``read_options`` (``data_roots``, ``max_voxels``) bound what reading the mask may touch."""
        self.store.case(case_id)
        mask = validated_mask(mask_path, self.image(case_id), self.labels, **read_options)
        target = write_volume(mask, self.store.final_label_path(case_id))
        self._model_space.pop(case_id, None)
        # the version active at the save never trained on the case: the leave-one-out scores the model with it
        model = self.store.active_version
        self.store.log("label_submitted", case=case_id, source=str(mask_path), model=model)
        return target

    def corrected_from(self, case_id: str) -> str:
        """The model version active when the case's mask was first saved: it never trained on the case (a
        re-save names a version that may have). Sessions from before the journal named it, and a case with
        no saved mask, give the pretrained version, which never trained on anything."""
        for event in self.store.journal():
            if event.get("event") == "label_submitted" and event.get("case") == case_id:
                return event.get("model") or PRETRAINED_VERSION
        return PRETRAINED_VERSION

    # -- prediction and scores -----------------------------------------------------------------------------
    def predict_case(self, case_id: str, **options) -> Prediction:
        return predict(self.model(), self.model_space_image(case_id), self.device, **options)

    def knowledge_gap(self, case_id: str, prediction: Prediction | None = None) -> KnowledgeGap:
        """KG of a case to the frozen pretrained model, computed once and kept in ``gaps/``."""
        path = self.store.gap_path(case_id)
        if path.is_file():
            return KnowledgeGap(**read_json(path))
        if prediction is None:
            prediction = predict(
                self.pretrained(), self.model_space_image(case_id), self.device, batchnorm_stats=True
            )
        spec = self.pretrained().spec
        layer = final_layer(self.pretrained().network, spec.output_channels)
        multi_label = spec.activation if spec.multi_label else None
        gap = knowledge_gap(prediction, class_weights(layer, spec.num_classes, multi_label))
        write_json_atomic(path, asdict(gap))
        return gap

    def case_scores(self, case_id: str, epistemic: bool = False) -> CaseScores:
        """Scores of a case under the active version: from the cache, else one forward pass (two on the very
        first scoring after fine-tuning, when the knowledge gap to the pretrained model is still unknown)."""
        version = self.store.active_version
        path = self.store.scores_path(version, case_id)
        if path.is_file():
            scores = CaseScores.from_json(read_json(path))
            if not epistemic or scores.epistemic is not None:
                return scores
        on_pretrained = version == PRETRAINED_VERSION
        prediction = self.predict_case(case_id, batchnorm_stats=on_pretrained, keep_on_device=True)
        gap = self.knowledge_gap(case_id, prediction if on_pretrained else None)
        scores = score_case(case_id, version, prediction, gap, self.asd_config)
        self.save_labelmap(case_id, version, prediction)
        if epistemic:
            scores.epistemic = self.epistemic_score(case_id)
        write_json_atomic(path, scores.to_json())
        return scores

    def epistemic_score(self, case_id: str) -> float:
        """MONAI Label's epistemic baseline: mean entropy of the mean of MC-dropout passes."""
        passes = [
            self.predict_case(case_id, mc_dropout_rate=self.query_config.mc_dropout_rate).probabilities
            for _ in range(self.query_config.mc_dropout_passes)
        ]
        return float(normalized_entropy(torch.stack(passes).mean(0)).mean())

    def score_all(
        self, progress: Progress | None = None, cancelled: Cancelled | None = None, epistemic: bool = False
    ) -> dict[str, CaseScores]:
        """Scores of every case that can be scored; a case that fails (its file gone or changed, a volume
        the model cannot take) is skipped, listed in ``self.skipped`` and the journal, not fatal."""
        pool = self.store.cases()
        records = scoring_order(pool, time.time())
        scores = {}
        self.skipped = {}
        for index, record in enumerate(records):
            if cancelled is not None and cancelled():
                raise CancelledError("scoring cancelled")
            if progress is not None:
                progress(index / max(len(records), 1), f"scoring {record.name}")
            skipped_marker = self.store.skipped_path(self.store.active_version, record.id)
            try:
                scores[record.id] = self.case_scores(record.id, epistemic)
            except (ASFDAError, RuntimeError, ValueError) as error:
                if isinstance(error, (CancelledError, StoreError)):
                    raise  # the user's stop, or a full disk: not the case's fault
                self.skipped[record.id] = f"{record.name}: {error}"
                write_json_atomic(
                    skipped_marker, {"case": record.id, "name": record.name, "error": str(error)}
                )
                self.store.log("case_skipped", case=record.id, error=str(error))
            else:
                skipped_marker.unlink(missing_ok=True)
        if progress is not None:
            progress(1.0, "scored" + (f" ({len(self.skipped)} skipped)" if self.skipped else ""))
        return {
            r.id: scores[r.id] for r in pool if r.id in scores
        }  # the pool's order, whatever the scoring's

    # -- fine-tuning -------------------------------------------------------------------------------------
    def finetune(
        self,
        config: FinetuneConfig | None = None,
        progress: Progress | None = None,
        cancelled: Cancelled | None = None,
        exclude_from_pseudo: Iterable[str] = (),
        job_id: str | None = None,
    ) -> ModelVersion:
        """One round: train from the active version, save a new version with its parent, activate it.

        Cases in ``exclude_from_pseudo`` (held-out test cases) are never used as pseudo-labelled cases;
        ``job_id`` names the backend's job in the journal.
        """
        config = config or self.finetune_config
        version, model = rounds.run_round(self, config, progress, cancelled, exclude_from_pseudo, job_id)
        self._current = (version.id, model)
        return version

    # -- evaluation --------------------------------------------------------------------------------------
    def activate(self, version_id: str) -> ModelVersion:
        """Use a version from now on, once its weights have loaded (weights only) and fit the network: a
        version whose ``model.pt`` cannot be used is refused (CheckpointError) and the active one stays."""
        self.store.version(version_id)
        if version_id != PRETRAINED_VERSION:
            self._current = (version_id, self.load_version(version_id))  # kept: the next prediction uses it
        return self.store.activate(version_id)

    def case_by_name(self, name: str) -> CaseRecord:
        for record in self.store.cases():
            if record.name == name:
                return record
        raise UnknownCaseError(f"no case named {name!r}", self.store.root / "cases.json")
