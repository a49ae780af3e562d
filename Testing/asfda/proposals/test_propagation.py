"""Label propagation recovers a known affine map on a tiny phantom, ranks supports by similarity, and
refuses supports it cannot use."""

from __future__ import annotations

import numpy as np
import pytest
from asfda.errors import CancelledError
from asfda.proposals import (
    Case,
    DeformableStage,
    RegistrationSettings,
    foreground_dice,
    normalized_mutual_information,
    propagate,
    propagate_all,
)
from proposal_phantoms import NUM_CLASSES, moved, phantom


@pytest.mark.parametrize("stage", list(DeformableStage))
def test_a_known_rotation_and_translation_is_recovered(stage):
    support = phantom(seed=1)
    query = moved(support, degrees=12.0, shift_mm=(6.0, -4.0, 4.0), case_id="query")
    unregistered = foreground_dice(support.labels, query.labels, NUM_CLASSES)

    warped = propagate(query, support, NUM_CLASSES, RegistrationSettings(deformable=stage))

    registered = foreground_dice(warped.labels, query.labels, NUM_CLASSES)
    assert registered > 0.9
    assert registered > unregistered + 0.2  # unregistered: about 0.6
    assert warped.probabilities.shape == (NUM_CLASSES, *query.image.shape)
    np.testing.assert_allclose(warped.probabilities.sum(0), 1.0, atol=1e-5)
    assert warped.seconds > 0


def test_the_most_similar_supports_are_kept():
    support = phantom(seed=1)
    query = moved(support, degrees=5.0, shift_mm=(2.0, 0.0, 0.0), case_id="query")
    rng = np.random.default_rng(3)
    unrelated = Case(
        rng.random(support.image.shape).astype(np.float32), support.spacing, support.labels, "noise"
    )
    settings = RegistrationSettings(deformable=DeformableStage.NONE)

    kept = propagate_all(query, [unrelated, support], NUM_CLASSES, settings, max_supports=1)

    assert [w.case_id for w in kept] == [support.case_id]
    assert normalized_mutual_information(query.image, kept[0].image) > 0.3


def test_long_propagation_can_be_cancelled_and_reports_progress():
    support, query = phantom(seed=1), phantom(seed=2)
    with pytest.raises(CancelledError):
        propagate_all(query, [support], NUM_CLASSES, cancelled=lambda: True)
    steps = []
    settings = RegistrationSettings(deformable=DeformableStage.NONE)
    propagate_all(
        query, [support, support], NUM_CLASSES, settings, progress=lambda d, t: steps.append((d, t))
    )
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_supports_without_a_usable_label_map_are_refused():
    support, query = phantom(seed=1), phantom(seed=2)
    with pytest.raises(ValueError, match="no label map"):
        propagate(query, Case(support.image, support.spacing, None, "bare"), NUM_CLASSES)
    with pytest.raises(ValueError, match="outside 0..3"):
        propagate(query, Case(support.image, support.spacing, support.labels + 3, "bad"), NUM_CLASSES)
    with pytest.raises(ValueError, match="at least one"):
        propagate_all(query, [], NUM_CLASSES)
