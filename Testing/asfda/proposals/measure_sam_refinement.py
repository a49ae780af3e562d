"""Dice per structure of LiteMedSAM's slice-by-slice refinement against the coarse proposal it starts from.

Not a test (minutes on CPU): run it by hand on a dataset from `asfda make-dataset`, e.g.
    PYTHONPATH=ASFDAModule python -m asfda make-dataset --config heterogeneous --out /tmp/p23sam --n-pool 4 \
        --n-val 2 --n-test 2 --spacing 3 --seed 7 --no-progress
    PYTHONPATH=ASFDAModule python Testing/asfda/proposals/measure_sam_refinement.py /tmp/p23sam
Coarse proposals: the reference grown or shrunk by one voxel (3-D), and the committed source model's label map
(trained on T1, so a crude proposal on these T2-like cases). Each slice is embedded once per case and shared
by the proposals (the embedding depends on the image only); the first proposal's run is timed uncached.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from asfda.inference.labelmap import predict_labelmap
from asfda.models.loading import load_model
from asfda.proposals.sam import LiteMedSAM
from asfda.proposals.slices import RefinementConfig, dice, refine_label_map
from scipy import ndimage

STRUCTURES = {2: "cortex", 3: "ventricles", 4: "deep grey", 5: "cerebellum", 6: "brainstem"}
SOURCE_MODEL = Path(__file__).resolve().parents[3] / "Resources" / "SourceModel"


class CachedEmbeddings:
    """LiteMedSAM whose embeddings are kept per slice image, so that several proposals share them."""

    def __init__(self, sam: LiteMedSAM):
        self.sam, self.cache, self.seconds = sam, {}, []

    def embed(self, image, intensity_window=None):
        key = (image.tobytes(), intensity_window)
        if key not in self.cache:
            start = time.process_time()
            self.cache[key] = self.sam.embed(image, intensity_window)
            self.seconds.append(time.process_time() - start)
        return self.cache[key]

    def segment(self, embedding, boxes):
        return self.sam.segment(embedding, boxes)


def per_structure(labels: np.ndarray, grow: int) -> np.ndarray:
    """Each structure of the reference grown (grow > 0) or shrunk (grow < 0) by |grow| voxels in 3-D."""
    proposal = np.where(np.isin(labels, list(STRUCTURES)), 1, labels).astype(np.uint8)
    for label in STRUCTURES:
        mask = labels == label
        if grow > 0:
            mask = ndimage.binary_dilation(mask, iterations=grow) & (proposal <= 1)
        elif grow < 0:
            mask = ndimage.binary_erosion(mask, iterations=-grow)
        proposal[mask] = label
    return proposal


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--splits", nargs="+", default=["val", "test"])
    parser.add_argument("--axis", type=int, default=0)
    parser.add_argument("--min-neighbour-dice", type=float, default=0.5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    manifest = json.loads((args.dataset / "dataset.json").read_text())
    cases = [case for split in args.splits for case in manifest["cases"][split]]
    source_model = load_model(SOURCE_MODEL)
    sam = LiteMedSAM()
    config = RefinementConfig(axis=args.axis, min_neighbour_dice=args.min_neighbour_dice)
    rows = []
    for case in cases:
        image = sitk.ReadImage(str(args.dataset / case["image"]))
        volume = sitk.GetArrayFromImage(image).astype(np.float32)
        reference = sitk.GetArrayFromImage(sitk.ReadImage(str(args.dataset / case["label"])))
        proposals = {
            "reference dilated 1 voxel": per_structure(reference, 1),
            "reference eroded 1 voxel": per_structure(reference, -1),
            "source model (T1-trained)": sitk.GetArrayFromImage(predict_labelmap(source_model, image)),
        }
        model = CachedEmbeddings(sam)
        for name, coarse in proposals.items():
            start = time.process_time()
            refined = refine_label_map(volume, coarse, list(STRUCTURES), model, config)
            seconds = time.process_time() - start
            for label, structure in STRUCTURES.items():
                truth = reference == label
                row = {
                    "case": case["name"],
                    "proposal": name,
                    "structure": structure,
                    "coarse": dice(coarse == label, truth),
                    "refined": dice(refined.labels == label, truth),
                    "alone": dice(refined.structure_masks[label], truth),
                    "accepted": float(refined.accepted_slices[label].sum()),
                    "slices": int(np.any(np.moveaxis(coarse == label, args.axis, 0), axis=(1, 2)).sum()),
                    "cpu_s": seconds,
                }
                rows.append(row)
                print(
                    f"{case['name']} {name:27s} {structure:11s} coarse {row['coarse']:.3f} "
                    f"refined {row['refined']:.3f} (alone {row['alone']:.3f}) "
                    f"SAM kept on {row['accepted']:.0f}/{row['slices']} slices",
                    flush=True,
                )
        first, last = rows[-len(STRUCTURES) * len(proposals)]["cpu_s"], rows[-1]["cpu_s"]
        print(
            f"{case['name']} {volume.shape}: {len(model.seconds)} embeddings, "
            f"{np.mean(model.seconds):.2f} CPU s each; first refinement {first:.1f} CPU s, "
            f"the last (embeddings cached) {last:.1f} s",
            flush=True,
        )
    print("\nmean over cases: proposal, structure, coarse Dice -> refined Dice")
    for name in proposals:
        for structure in STRUCTURES.values():
            chosen = [r for r in rows if r["proposal"] == name and r["structure"] == structure]
            coarse, refined = np.mean([r["coarse"] for r in chosen]), np.mean([r["refined"] for r in chosen])
            print(f"{name:27s} {structure:11s} {coarse:.3f} -> {refined:.3f} ({refined - coarse:+.3f})")
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
