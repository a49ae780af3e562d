"""Draw the catalog picture: slice views of a real volume with the real prediction of the source model.

Not a screenshot of a running Slicer (none exists yet): the volume and the prediction go through the module's
own SceneLogic on slicer-core's MRML (the prediction becomes named segments, and the segments a label map on
the volume's grid, as the module shows and saves them), and matplotlib draws three orthogonal slices.

    asfda create --session S --model Resources/SourceModel --images Resources/SampleData
    asfda predict --session S --case ICBM152-T2-3mm --output prediction.nii.gz
    python Resources/Screenshots/make_screenshot.py Resources/SampleData/ICBM152-T2-3mm.nii.gz \
        prediction.nii.gz Resources/SourceModel/asfda_model.json Resources/Screenshots/ASFDA-prediction-T2.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import slicer  # noqa: E402 - the slicer-core wheel
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "ASFDAModule"))
from ASFDAModuleLib.SceneLogic import SceneLogic  # noqa: E402

LABEL = "Drawn off-screen from the module's own output; not a screenshot of 3D Slicer"

COLOURS = [
    (0.90, 0.62, 0.0),
    (0.34, 0.71, 0.91),
    (0.0, 0.62, 0.45),
    (0.94, 0.89, 0.26),
    (0.0, 0.45, 0.70),
    (0.84, 0.37, 0.0),
    (0.80, 0.47, 0.65),
]


def main(volumeFile: str, predictionFile: str, specFile: str, output: str) -> None:
    labels = {int(k): v for k, v in json.loads(Path(specFile).read_text())["labels"].items()}
    scene = slicer.vtkMRMLScene()
    sceneLogic = SceneLogic(scene)
    volume = sceneLogic.loadVolume(volumeFile, "ICBM152 T2")
    segmentation = sceneLogic.segmentationFromFile(predictionFile, volume, labels, "prediction")
    image = slicer.util.arrayFromVolume(volume).astype(float)
    label = sceneLogic.labelmapArray(segmentation, volume, labels)  # what the module would save
    k, j, i = (s // 2 for s in image.shape)
    views = [
        ("Axial", image[k], label[k]),
        ("Coronal", image[:, j], label[:, j]),
        ("Sagittal", image[:, :, i], label[:, :, i]),
    ]
    colours = ListedColormap([(0, 0, 0, 0)] + [(*COLOURS[(v - 1) % len(COLOURS)], 0.55) for v in range(1, 7)])
    figure, axes = plt.subplots(1, 3, figsize=(12, 4.6), facecolor="black")
    for axis, (title, slab, mask) in zip(axes, views):
        axis.imshow(np.flipud(slab) if title != "Axial" else slab, cmap="gray", interpolation="bilinear")
        axis.imshow(
            np.flipud(mask) if title != "Axial" else mask,
            cmap=colours,
            vmin=0,
            vmax=6,
            interpolation="nearest",
        )
        axis.set_title(title, color="white")
        axis.axis("off")
    names = [
        segmentation.GetSegmentation().GetNthSegment(n).GetName()
        for n in range(segmentation.GetSegmentation().GetNumberOfSegments())
    ]
    handles = [
        Patch(color=COLOURS[(v - 1) % len(COLOURS)], label=labels[v])
        for v in sorted(labels)
        if v and labels[v] in names
    ]
    figure.legend(handles=handles, loc="lower center", ncol=6, frameon=False, labelcolor="white")
    # The catalog shows the picture without a caption: the picture says itself what it is.
    figure.suptitle(
        f"ASFDA: source model (trained on T1) predicting a T2 brain, before adaptation\n({LABEL})",
        color="white",
    )
    figure.savefig(output, dpi=80, facecolor="black", bbox_inches="tight", metadata={"Description": LABEL})
    print(f"wrote {output}")


if __name__ == "__main__":
    main(*sys.argv[1:5])
