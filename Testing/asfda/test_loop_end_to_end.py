"""The whole loop on real anatomy: the committed source model (trained on ICBM152 T1) adapts to T2 cases.

The reference masks play the annotator. Fine-tuning on two labelled target cases must raise the held-out
Dice above the source model's: that is the point of the project.
"""

import pytest
from asfda.benchmark.datasets.dataset import DatasetConfig, build_dataset
from asfda.benchmark.datasets.layout import dataset_layout
from asfda.config import FinetuneConfig, QueryStrategy
from asfda.loop import LoopSettings, run_loop


@pytest.fixture(scope="module")
def target_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("t1_to_t2")
    build_dataset(root, DatasetConfig(n_source=1, n_pool=4, n_test=2, spacing_mm=3.0, seed=7), progress=False)
    return dataset_layout(root)


def test_fine_tuning_on_labelled_target_cases_raises_held_out_dice(tmp_path, target_dataset, source_model):
    pool_images, pool_labels = (target_dataset.pool[0][i].parent for i in (0, 1))
    test_images, test_labels = (target_dataset.test[0][i].parent for i in (0, 1))
    lines = []
    settings = LoopSettings(
        schedule=(2,),
        strategy=QueryStrategy.ASFDA,
        finetune=FinetuneConfig(steps=30, steps_per_labelled=0, validate_every=15, seed=0),
    )
    records = run_loop(
        tmp_path / "session",
        source_model,
        pool_images,
        pool_labels,
        settings,
        "cpu",
        test_images=test_images,
        test_references=test_labels,
        report=lines.append,
    )
    before, after = records[0], records[1]
    assert after.n_labelled == 2 and len(after.picked) == 2
    assert after.model_version == "v0001"
    assert 0.0 < before.test_dice < 1.0
    assert after.test_dice > before.test_dice + 0.02, lines
    assert any("DKD" in line and "ASD" in line for line in lines)  # the ranking table was reported
