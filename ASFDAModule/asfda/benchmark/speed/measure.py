"""One ``asfda speed`` measurement, in its own process so that its peak memory is its own: a pool scored
along one path (``baseline``, ``first`` or ``rescoring``) with each stage timed, and the network's bare
sliding-window pass timed beside it (the limit).
"""

from __future__ import annotations

import multiprocessing
import resource
import sys
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import torch

from .speed_report import STAGES


def measure(job: dict) -> dict:
    """Score ``job['volumes']`` along ``job['path']``; per-volume stage seconds, the limit and peak memory."""
    from ...inference.baseline import baseline_predict, baseline_score_case
    from ...inference.case_cache import CaseTensorCache
    from ...inference.features import class_weights, final_layer
    from ...inference.predictor import pad_to_window, predict, window_batch_size, window_weights
    from ...io.preprocessing import preprocess_case
    from ...io.volumes import content_hash, read_volume
    from ...models.loading import load_model
    from ...scoring.case_scores import knowledge_gap, score_case
    from ...session.store import write_json_atomic

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    device, path = torch.device(job["device"]), job["path"]
    model = load_model(job["model"])
    network = model.network.to(device).eval()
    spec = model.spec
    weights = class_weights(final_layer(network, spec.num_classes), spec.num_classes)
    cache = CaseTensorCache(Path(job["cache"]), job["memory_cache_mib"])
    kept = {}  # the old session kept every model-space case in memory
    seconds = dict.fromkeys(STAGES, 0.0)
    network_seconds, batch, windows = 0.0, 1, 0
    rss_before = peak_rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    @contextmanager
    def stage(name):
        synchronize(device)
        start = time.perf_counter()
        yield
        synchronize(device)
        seconds[name] += time.perf_counter() - start

    for index, volume in enumerate(job["volumes"]):
        if path == "baseline":
            with stage("read"):
                image = read_volume(volume)
            with stage("preprocess"):
                case = preprocess_case(image, spec)
            kept[content_hash(image)] = case
            tensor = case.image.as_tensor()
            with stage("forward"):
                prediction = baseline_predict(model, tensor, device, batchnorm_stats=True)
            with stage("scores"):
                gap = knowledge_gap(prediction, weights)
                scores = baseline_score_case(volume.name, "v0", prediction, gap)
        else:
            # the case id is the content hash, known to the session without reading: read only on a miss
            preprocessing = [0.0]
            with stage("read"):  # the volume (on a miss) or the cache entry (on a hit), minus resampling
                tensor = cache.get(job["case_ids"][index], spec, partial(load, volume, spec, preprocessing))
            seconds["read"] -= preprocessing[0]
            seconds["preprocess"] += preprocessing[0]
            with stage("forward"):
                prediction = predict(model, tensor, device, batchnorm_stats=True, keep_on_device=True)
            with stage("scores"):
                gap = knowledge_gap(prediction, weights)
                scores = score_case(volume.name, "v0", prediction, gap)
        with stage("write"):
            write_json_atomic(Path(job["scores"]) / f"{index:03d}.json", scores.to_json())
        if index < job["limit_volumes"]:  # the limit, timed beside each path so that load drifts cancel
            padded, region = pad_to_window(tensor.float(), tuple(spec.roi_size))
            windows = window_weights(padded.shape[1:], spec.roi_size, spec.overlap, region)[1]
            batch = window_batch_size(model, device, windows)
            network_seconds += forward_only(network, padded, spec, batch, device)
        del prediction
    count = len(job["volumes"])
    return {
        "path": path,
        "volumes": count,
        "seconds_per_volume": {stage: value / count for stage, value in seconds.items()},
        "network_seconds_per_volume": network_seconds / max(1, min(count, job["limit_volumes"])),
        "sw_batch_size": batch if path != "baseline" else spec.sw_batch_size,
        "windows_per_volume": windows or None,
        "cache_hits": dict(cache.hits) if path != "baseline" else None,
        "peak_host_mib": round(peak_rss_mib(), 1),
        "host_mib_before_pool": round(rss_before, 1),
        "peak_gpu_mib": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        if device.type == "cuda"
        else None,
        "kept_cases": len(kept),
    }


def load(volume: Path, spec, preprocessing: list[float]) -> torch.Tensor:
    """Read and resample a volume (a cache miss); the resampling seconds go to ``preprocessing[0]``."""
    from ...io.preprocessing import preprocess_case
    from ...io.volumes import read_volume

    image = read_volume(volume)
    start = time.perf_counter()
    tensor = preprocess_case(image, spec).image
    preprocessing[0] = time.perf_counter() - start
    return tensor


def forward_only(network, padded: torch.Tensor, spec, batch: int, device: torch.device) -> float:
    """Seconds of a bare sliding-window pass: the network and MONAI's blending, nothing else."""
    from monai.inferers import sliding_window_inference

    use_amp = device.type == "cuda"

    def run(windows):
        with torch.autocast(device_type=device.type, enabled=use_amp):
            return network(windows)

    synchronize(device)
    start = time.perf_counter()
    with torch.no_grad():
        sliding_window_inference(padded[None].to(device), spec.roi_size, batch, run, overlap=spec.overlap)
    synchronize(device)
    return time.perf_counter() - start


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _child(job: dict, queue) -> None:
    try:
        queue.put(measure(job))
    except BaseException as error:  # reported by the parent, with the job that failed
        queue.put({"error": f"{type(error).__name__}: {error}"})


def run_in_process(job: dict) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(job, queue))
    process.start()
    try:
        result = queue.get()
    finally:
        process.join()
    if "error" in result:
        raise RuntimeError(f"{job['path']} on {job['model']}: {result['error']}")
    return result
