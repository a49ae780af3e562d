"""``asfda speed``: where a scoring pass spends its time, stage by stage, against the network's forward pass.

For each device, model and pool size it scores a pool the way a session's first ranking does (prediction
with BatchNorm statistics, knowledge gap, ASD, embedding, scores written as JSON) three ways, each in a fresh
process so that its peak memory is its own:

- ``baseline``: the path before the speed work (``asfda.inference.baseline``): every volume read and
  resampled again, one window per network call, windows copied to the host, model-space volumes kept;
- ``first``: today's path with an empty case-tensor cache (volumes read, resampled, cached on disk);
- ``rescoring``: today's path with the cache filled, as every later rescoring runs.

The limit is the network alone: a bare sliding-window pass over the same windows (no hooks, no scores),
timed in the same process. Each stage is reported per volume and as a ratio to that limit;
``non_network_fraction`` is the share of a path's time spent outside it. Results go to ``speed.json`` (one
record per device, model and pool size, with machine and commit) and ``report.md``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from ..running.provenance import git_commit
from .measure import load, run_in_process
from .speed_report import PATHS, merge_records

REPOSITORY = Path(__file__).resolve().parents[4]
SOURCE_MODEL = REPOSITORY / "Resources" / "SourceModel"
MODELS = ("segresnet", "swinunetr48")


# -- the models and the pool ------------------------------------------------------------------------------
def model_folder(name: str, data: Path) -> Path:
    """The committed SegResNet, or a SwinUNETR of foundation-model size (feature size 48, 96^3 windows;
    seeded random weights: the time of a pass does not depend on what the weights learned)."""
    if name == "segresnet":
        return SOURCE_MODEL
    from ...models.loading import WEIGHTS_FILE, build_network
    from ...models.spec import ModelSpec, NetworkSpec

    folder = data / "swinunetr48"
    if (folder / WEIGHTS_FILE).is_file():
        return folder
    source = ModelSpec.load(SOURCE_MODEL)
    kwargs = {"in_channels": 1, "out_channels": source.num_classes, "feature_size": 48, "spatial_dims": 3}
    spec = ModelSpec(
        labels=source.labels,
        network=NetworkSpec("SwinUNETR", kwargs),
        spacing=source.spacing,
        roi_size=(96, 96, 96),
        overlap=source.overlap,
    )
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(build_network(spec.network).state_dict(), folder / WEIGHTS_FILE)
    spec.save(folder)
    return folder


def pool_cases(data: Path, size: int) -> list[tuple[Path, Path]]:
    """``size`` target-domain (volume, label) pairs from the seeded benchmark builder (built once, reused)."""
    from ..datasets.dataset import DatasetConfig, build_dataset
    from ..datasets.layout import dataset_layout

    root = data / f"pool_{size}"
    build_dataset(root, DatasetConfig(n_source=0, n_pool=size, n_test=0, seed=0), progress=False)
    return list(dataset_layout(root).pool)


def pool_volumes(data: Path, size: int) -> list[Path]:
    """The volumes of ``pool_cases``."""
    return [image for image, _ in pool_cases(data, size)]


# -- the run ----------------------------------------------------------------------------------------------
def machine() -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": multiprocessing.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import monai

        info["monai"] = monai.__version__
    except ImportError:
        pass
    return info


def summarise(device: str, model: str, pool_size: int, paths: dict[str, dict]) -> dict:
    """One record: per path, stage seconds per volume, their ratio to the forward-only limit, the totals."""
    limit = paths["rescoring"]["network_seconds_per_volume"]
    record = {"device": device, "model": model, "pool_size": pool_size, "network_seconds_per_volume": limit}
    record["sw_batch_size"] = paths["rescoring"]["sw_batch_size"]
    record["windows_per_volume"] = paths["rescoring"]["windows_per_volume"]
    for name, result in paths.items():
        stages = result["seconds_per_volume"]
        total = sum(stages.values())
        limit = result["network_seconds_per_volume"]  # timed in the same process, beside this path
        record[name] = {
            "network_seconds_per_volume": round(limit, 4),
            "seconds_per_volume": {k: round(v, 4) for k, v in stages.items()},
            "ratio_to_network": {k: round(v / limit, 3) for k, v in stages.items()},
            "total_seconds_per_volume": round(total, 4),
            "volumes_per_s": round(1.0 / total, 3),
            "non_network_fraction": round(max(0.0, 1.0 - limit / total), 3),
            **{
                k: result[k]
                for k in ("peak_host_mib", "host_mib_before_pool", "peak_gpu_mib", "sw_batch_size")
            },
        }
    if "baseline" in paths:
        record["speedup_rescoring_vs_baseline"] = round(
            record["baseline"]["total_seconds_per_volume"] / record["rescoring"]["total_seconds_per_volume"],
            2,
        )
        record["speedup_first_vs_baseline"] = round(
            record["baseline"]["total_seconds_per_volume"] / record["first"]["total_seconds_per_volume"], 2
        )
        # the same, each path's time first divided by the network time measured beside it (robust to load)
        record["speedup_rescoring_vs_baseline_in_network_units"] = round(
            sum(record["baseline"]["ratio_to_network"].values())
            / sum(record["rescoring"]["ratio_to_network"].values()),
            2,
        )
    return record


def fill_cache(model: Path, volumes: list[Path], case_ids: list[str], folder: Path) -> None:
    from ...inference.case_cache import CaseTensorCache
    from ...models.spec import ModelSpec

    spec, cache = ModelSpec.load(model), CaseTensorCache(folder, 0)
    for volume, case_id in zip(volumes, case_ids):
        cache.get(case_id, spec, partial(load, volume, spec, [0.0]))


def run_speed(args: argparse.Namespace, out: Path) -> list[dict]:
    """Measure every (model, pool size, device); each record is merged into ``out`` as soon as it is done."""
    from ...io.volumes import content_hash, read_volume

    data = Path(args.data)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    context = {
        "command": "asfda speed " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["speed"] else None,
        "machine": machine(),
        "commit": git_commit(REPOSITORY),
        "threads": args.threads or torch.get_num_threads(),
        "memory_cache_mib": args.memory_cache_mib,
    }
    records = []
    for model_name in args.models:
        folder = model_folder(model_name, data)
        sizes = args.pool_sizes if model_name == "segresnet" else [args.swin_pool_size]
        for size in sizes:
            volumes = pool_volumes(data, size)
            case_ids = [content_hash(read_volume(path)) for path in volumes]
            with_baseline = args.baseline and (
                not args.baseline_pool_sizes or size in args.baseline_pool_sizes
            )
            for device in devices:
                paths = {}
                with tempfile.TemporaryDirectory(prefix="asfda-speed-") as scratch:
                    chosen = [p for p in args.paths if with_baseline or p != "baseline"]
                    if "rescoring" in chosen and "first" not in chosen:  # fill the cache, untimed
                        fill_cache(folder, volumes, case_ids, Path(scratch) / "cache")
                    for path in chosen:
                        job = {
                            "path": path,
                            "device": device,
                            "model": str(folder),
                            "volumes": volumes,
                            "case_ids": case_ids,
                            "cache": str(Path(scratch) / "cache"),
                            "scores": str(Path(scratch) / path),
                            "threads": args.threads,
                            "memory_cache_mib": args.memory_cache_mib,
                            "limit_volumes": args.limit_volumes,
                        }
                        start = time.perf_counter()
                        paths[path] = run_in_process(job)
                        print(
                            f"{device} {model_name} pool {size} {path}: "
                            f"{sum(paths[path]['seconds_per_volume'].values()):.3f} s/volume, "
                            f"peak {paths[path]['peak_host_mib']:.0f} MiB "
                            f"({time.perf_counter() - start:.0f} s)",
                            flush=True,
                        )
                record = summarise(device, model_name, size, paths)
                record.update(context, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
                records.append(record)
                merge_records(out, [record])
    return records


def speed(args: argparse.Namespace) -> int:
    """Time scoring stage by stage against the network alone, old path and new; write the report."""
    out = Path(args.out)
    run_speed(args, out)
    print((out / "report.md").read_text())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "speed",
        help="time scoring stage by stage against the network's forward pass",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument(
        "--pool-sizes",
        nargs="+",
        type=int,
        default=[20, 80],
        metavar="N",
        help="pool sizes for the SegResNet (default 20 80)",
    )
    parser.add_argument(
        "--swin-pool-size",
        type=int,
        default=4,
        metavar="N",
        help="pool size for the SwinUNETR-48 (default 4; use 20 or more on a GPU)",
    )
    parser.add_argument(
        "--devices",
        nargs="+",
        choices=("cpu", "cuda"),
        default=None,
        help="default: cpu, and cuda when there is a GPU",
    )
    parser.add_argument(
        "--no-baseline", dest="baseline", action="store_false", help="skip the path before the speed work"
    )
    parser.add_argument(
        "--paths",
        nargs="+",
        choices=PATHS,
        default=list(PATHS),
        help="which paths to time (default all; without 'first' the cache is filled untimed)",
    )
    parser.add_argument(
        "--baseline-pool-sizes",
        nargs="+",
        type=int,
        default=None,
        metavar="N",
        help="time the old path only at these pool sizes (default: at all)",
    )
    parser.add_argument(
        "--limit-volumes",
        type=int,
        default=5,
        metavar="N",
        help="time the network alone on the first N volumes of a pool (default 5)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument(
        "--memory-cache-mib", type=float, default=64.0, help="in-memory limit of the case-tensor cache"
    )
    parser.add_argument(
        "--data",
        default=str(REPOSITORY / "data" / "speed"),
        metavar="DIR",
        help="where the pools and the SwinUNETR weights are built (reused)",
    )
    parser.add_argument("--out", default=str(REPOSITORY / "Resources" / "Speed"), metavar="DIR")
    parser.set_defaults(func=speed)
