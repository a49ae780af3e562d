"""The site benchmark's figures: which sub-populations each arm picked against the pool's prevalences
(stacked bars), and the pool in the pretrained model's embedding space, coloured by sub-population, with one
arm's picks marked (a 2-D principal-component projection of the class-prototype embeddings that every
arm's first query ranks on, recorded in ``pretrained_scoring.json``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .figures import save_figure


def principal_components(embeddings: np.ndarray, n: int = 2) -> np.ndarray:
    """(cases x n) projection on the first ``n`` principal axes (centred SVD). Each axis's sign is fixed so
    that its largest loading is positive: the same embeddings always give the same picture."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if embeddings.ndim != 2 or len(embeddings) < 2:
        raise ValueError(
            f"need a (cases x features) matrix of at least 2 cases, got shape {embeddings.shape}"
        )
    centred = embeddings - embeddings.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    axes = axes[:n]
    signs = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])
    projection = centred @ (axes * signs[:, None]).T
    if projection.shape[1] < n:  # fewer axes than asked (fewer cases or features): zeros for the rest
        projection = np.hstack([projection, np.zeros((len(projection), n - projection.shape[1]))])
    return projection


def colours(names: Sequence[str]) -> dict[str, tuple]:
    import matplotlib

    palette = matplotlib.colormaps["tab10"]
    return {name: palette(i % 10) for i, name in enumerate(sorted(names))}


def plot_picks_by_subpopulation(
    picks: Mapping[str, dict], prevalence: Mapping[str, float], path: Path, palette: dict | None = None
) -> Path | None:
    """One stacked bar per arm (its share of all picks by sub-population) beside the pool's bar."""
    if not picks:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({*prevalence, *(k for arm in picks.values() for k in arm["shares"])})
    bars = ({"pool (prevalence)": dict(prevalence)} if prevalence else {}) | {
        arm: entry["shares"] for arm, entry in picks.items()
    }
    colour = palette or colours(names)
    figure, axis = plt.subplots(figsize=(4.5 + 0.8 * len(bars), 4.8))
    bottom = np.zeros(len(bars))
    for name in names:
        heights = np.array([shares.get(name, 0.0) for shares in bars.values()])
        axis.bar(
            list(bars), heights, bottom=bottom, color=colour[name], label=name, edgecolor="white", lw=0.5
        )
        bottom += heights
    axis.set_ylabel("share of picks over seeds and rounds (pool: prevalence)")
    axis.set_ylim(0, 1)
    axis.set_xticks(range(len(bars)), list(bars), rotation=30, ha="right")
    axis.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    axis.set_title("Picked sub-populations per arm, against the pool", fontsize=10)
    return save_figure(figure, path)


def plot_embedding_projection(
    embeddings: Mapping[str, Sequence[float]],
    subpopulation_of: Mapping[str, str],
    picked: Sequence[str],
    arm: str,
    path: Path,
    palette: dict | None = None,
) -> Path | None:
    """The pool's embeddings on their first two principal axes, a colour per sub-population; ``picked``
    (one run's picks, in order) ringed and numbered."""
    names = sorted(embeddings)
    if len(names) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xy = principal_components(np.array([embeddings[n] for n in names]))
    groups = [subpopulation_of.get(n, "unknown") for n in names]
    colour = palette or colours(set(groups))
    figure, axis = plt.subplots(figsize=(7, 5.5))
    for group in sorted(set(groups)):
        rows = [i for i, g in enumerate(groups) if g == group]
        axis.scatter(xy[rows, 0], xy[rows, 1], s=28, color=colour[group], label=group, alpha=0.85)
    for order, name in enumerate(picked, start=1):
        if name in embeddings:
            x, y = xy[names.index(name)]
            axis.scatter([x], [y], s=160, facecolors="none", edgecolors="black", linewidths=1.5)
            axis.annotate(str(order), (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    axis.set_xlabel("principal axis 1")
    axis.set_ylabel("principal axis 2")
    axis.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    axis.set_title(f"Pool embeddings (pretrained model); {arm}'s picks ringed, in order", fontsize=10)
    return save_figure(figure, path)


def write_site_figures(out: Path, results, summary: dict, run_info: dict, arm: str) -> list[Path]:
    """picks_by_subpopulation.png and, where the pool's embeddings were recorded, embedding_projection.png
    with the first seed's picks of ``arm`` (the full method)."""
    import json

    site = summary.get("site") or {}
    if not site:
        return []
    out = Path(out)
    subpopulation_of = {
        n: m.get("subpopulation", "unknown") for n, m in (run_info.get("case_metadata") or {}).items()
    }
    palette = colours({*subpopulation_of.values(), "unknown"})  # one colour per mode in both figures
    picks, prevalence = site.get("picks") or {}, site.get("pool_prevalence") or {}
    files = [plot_picks_by_subpopulation(picks, prevalence, out / "picks_by_subpopulation.png", palette)]
    scoring = out / "pretrained_scoring.json"
    embeddings = json.loads(scoring.read_text()).get("pool_embeddings") if scoring.is_file() else None
    runs = sorted((r for r in results if r.arm == arm), key=lambda r: r.seed)
    if embeddings:
        picked = [name for record in runs[0].records for name in record.picked] if runs else []
        name = f"{arm} (seed {runs[0].seed})" if runs else arm
        path = out / "embedding_projection.png"
        files.append(plot_embedding_projection(embeddings, subpopulation_of, picked, name, path, palette))
    return [f for f in files if f is not None]
