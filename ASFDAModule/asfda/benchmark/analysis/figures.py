"""The benchmark's figures, for a person who would rather look than read: Dice and HD95 against the share
of the pool labelled on full axes with random beside the full method, and slices of a test case with the
prediction before and after adaptation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...loop import RoundRecord
from ..running.arms import FULL_METHOD
from ..running.results import ALL_LABELLED, SOURCE_ONLY, RunResult
from .report import ceiling, source_only, table_rows

HIGHLIGHT = {FULL_METHOD: "tab:red", "random": "tab:blue"}


def curve(runs: Sequence[RunResult], schedule: Sequence[int], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and 95 % normal interval over seeds of ``metric`` ("test_dice"/"test_hd95") at each budget."""
    values = np.full((len(runs), len(schedule)), np.nan)
    for i, run in enumerate(runs):
        for j, n in enumerate(schedule):
            record = next((r for r in run.records if r.n_labelled == n), None)
            if record is not None and getattr(record, metric) is not None:
                values[i, j] = getattr(record, metric)
    mean = np.nanmean(values, axis=0)
    sem = (
        np.nanstd(values, axis=0, ddof=1) / np.sqrt(np.maximum(np.sum(~np.isnan(values), 0), 1))
        if len(runs) > 1
        else np.zeros(len(schedule))
    )
    return mean, 1.96 * np.nan_to_num(sem)


def plot_dice_hd95(
    results: Sequence[RunResult],
    schedule: Sequence[int],
    endpoint: int,
    path: Path,
    n_pool: int | None = None,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [a for a in dict.fromkeys(r.arm for r in results) if a not in (SOURCE_ONLY, ALL_LABELLED)]
    pool = n_pool or max((r.records[-1].n_labelled for r in results if r.arm == ALL_LABELLED), default=None)
    x_of = (lambda n: 100.0 * n / pool) if pool else (lambda n: float(n))
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    source = next((r for r in results if r.arm == SOURCE_ONLY), None)
    ceiling = [r for r in results if r.arm == ALL_LABELLED]
    for axis, metric, label in (
        (axes[0], "test_dice", "Dice (test)"),
        (axes[1], "test_hd95", "HD95 (mm, test)"),
    ):
        for arm in arms:
            runs = [r for r in results if r.arm == arm]
            mean, half = curve(runs, schedule, metric)
            xs = [x_of(n) for n in schedule]
            start = getattr(source.records[0], metric) if source is not None else None
            if start is not None:  # every curve starts at the source model, 0 labelled
                xs, mean, half = [0.0, *xs], np.concatenate([[start], mean]), np.concatenate([[0.0], half])
            colour = HIGHLIGHT.get(arm)
            axis.plot(
                xs,
                mean,
                marker="o",
                lw=2.5 if colour else 1.0,
                color=colour,
                alpha=1 if colour else 0.6,
                label=f"{arm} (n={len(runs)})",
            )
            if colour:
                axis.fill_between(xs, mean - half, mean + half, color=colour, alpha=0.15)
        if source is not None and getattr(source.records[0], metric) is not None:
            axis.axhline(getattr(source.records[0], metric), color="grey", ls=":", label="source only")
        if ceiling:
            values = [
                getattr(r.records[-1], metric) for r in ceiling if getattr(r.records[-1], metric) is not None
            ]
            if values:
                axis.axhline(float(np.mean(values)), color="black", ls="--", label="all labelled")
        axis.axvline(x_of(endpoint), color="tab:green", ls="-.", lw=1, label="endpoint")
        axis.set_xlabel("% of the pool labelled" if pool else "labelled cases")
        axis.set_ylabel(label)
        axis.set_xlim(-0.5 if pool else -0.05, max(x_of(n) for n in schedule) * 1.05)
        if metric == "test_dice":
            axis.set_ylim(0, 1)
        else:
            axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="upper right")
    figure.suptitle("Full method (red) and random (blue) with 95 % intervals over seeds; other arms thin")
    figure.tight_layout()
    return save_figure(figure, path)


def plot_slices_before_after(out: Path, run_info: dict) -> Path | None:
    """Three orthogonal slices of the first test case: reference, source model, adapted full method."""
    case = run_info.get("example_test_case")
    kept = sorted((Path(out) / "models").glob(f"{FULL_METHOD}-seed*"))
    if not case or not kept or not Path(case[0]).is_file():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import SimpleITK as sitk

    from ...inference.labelmap import predict_labelmap
    from ...io.volumes import read_volume
    from ...models.loading import load_model

    image = read_volume(Path(case[0]))
    reference = sitk.GetArrayFromImage(read_volume(Path(case[1])))
    before = sitk.GetArrayFromImage(predict_labelmap(load_model(Path(run_info["model"])), image))
    after = sitk.GetArrayFromImage(predict_labelmap(load_model(kept[0]), image))
    volume = sitk.GetArrayFromImage(image)
    spacing = image.GetSpacing()[::-1]  # (z, y, x)
    figure, axes = plt.subplots(3, 3, figsize=(10, 10))
    titles = ("reference", "source model (before)", f"{FULL_METHOD} ({kept[0].name}, after)")
    for row, axis_index in enumerate((0, 1, 2)):
        centre = volume.shape[axis_index] // 2

        def take(array, centre=centre, axis_index=axis_index):
            return np.take(array, centre, axis=axis_index)

        others = [s for k, s in enumerate(spacing) if k != axis_index]
        for column, labels in enumerate((reference, before, after)):
            axis = axes[row, column]
            axis.imshow(take(volume), cmap="gray", origin="lower", aspect=others[0] / others[1])
            masked = np.ma.masked_equal(take(labels), 0)
            axis.imshow(
                masked, cmap="tab10", vmin=0, vmax=9, alpha=0.45, origin="lower", aspect=others[0] / others[1]
            )
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(titles[column], fontsize=9)
    figure.suptitle(f"Test case {Path(case[0]).name}: prediction before and after adaptation")
    figure.tight_layout()
    return save_figure(figure, Path(out) / "slices_before_after.png")


def plot_curves(
    results: list[RunResult],
    schedule: Sequence[int],
    path: str | Path,
    title: str = "",
    highlight: Sequence[str] = ("asfda", "asfda-no-ssl"),
) -> Path:
    """Held-out Dice and HD95 against labelled cases (mean ± sd band), with the source-only floor and the
    all-labelled ceiling as horizontal lines. matplotlib with the Agg backend: no display needed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table_rows(results, schedule)
    floor = source_only(results)
    top = ceiling(results)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, metric, reference_cells, label in (
        (axes[0], "dice", (floor[0], top[0]), "held-out Dice"),
        (axes[1], "hd95", (floor[1], top[1]), "held-out HD95 (mm)"),
    ):
        for row in rows:
            cells = getattr(row, metric)
            means = np.array([cells[n].mean for n in schedule])
            sds = np.array([cells[n].sd for n in schedule])
            strong = row.arm in highlight
            line = axis.plot(
                schedule,
                means,
                marker="o",
                linewidth=2.4 if strong else 1.2,
                # Dashed when a highlighted curve is the supervised twin, so identical curves stay visible.
                linestyle="--" if strong and row.fine_tuning == "supervised" else "-",
                label=f"{row.arm} ({row.fine_tuning})",
                zorder=3 if strong else 2,
            )[0]
            axis.fill_between(schedule, means - sds, means + sds, color=line.get_color(), alpha=0.12)
        if reference_cells[0].n:
            axis.axhline(
                reference_cells[0].mean, color="grey", linestyle="--", label="source-only (0 labelled)"
            )
        if reference_cells[1].n:
            axis.axhline(
                reference_cells[1].mean, color="black", linestyle=":", label=f"all {top[2]} labelled"
            )
        axis.set_xscale("log", base=2)
        axis.set_xticks(list(schedule), [str(n) for n in schedule])
        axis.set_xlabel("labelled target cases")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    if title:
        figure.suptitle(title, fontsize=10)
    return save_figure(figure, path)


def save_figure(figure, path: str | Path) -> Path:
    """Write a matplotlib figure as a PNG and free it."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_rounds(
    records: Sequence[RoundRecord],
    path: str | Path,
    title: str = "",
    baseline: Sequence[RoundRecord] | None = None,
    baseline_name: str = "random",
) -> Path:
    """The demo's plot: held-out Dice (full 0-1 axis) and HD95 after each round against the labelled cases
    (round 0 = source model), with a baseline's rounds (random) beside them when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    curves = [("ASFDA", records, "tab:red")] + ([(baseline_name, baseline, "tab:blue")] if baseline else [])
    for name, rounds, colour in curves:
        labelled = [r.n_labelled for r in rounds]
        for axis, metric in ((axes[0], "test_dice"), (axes[1], "test_hd95")):
            values = [float("nan") if getattr(r, metric) is None else getattr(r, metric) for r in rounds]
            axis.plot(labelled, values, marker="o", linewidth=2, color=colour, label=name)
            for n, y in zip(labelled, values):
                axis.annotate(
                    f"{y:.2f}", (n, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7
                )
    for axis, label in ((axes[0], "held-out Dice"), (axes[1], "held-out HD95 (mm)")):
        axis.set_xticks(sorted({r.n_labelled for r in records}))
        axis.set_xlabel("labelled target cases (0 = source model)")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.set_ylim(bottom=0)
    axes[0].set_ylim(0, 1)
    axes[0].legend(fontsize=8)
    if title:
        figure.suptitle(title, fontsize=9)
    return save_figure(figure, path)
