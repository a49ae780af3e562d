import numpy as np
import pytest
from asfda.finetune.reliable import relative_threshold, reliable_cases


def test_an_absolute_threshold_above_the_pool_admits_nobody_but_a_quantile_does():
    confidence = np.array([0.78, 0.79, 0.80, 0.795])
    distance = np.array([0.1, 0.1, 0.1, 0.1])
    assert not reliable_cases(confidence, distance, 0.9).any()
    mask = reliable_cases(confidence, distance, 0.9, quantile=0.75)
    assert mask.tolist() == [False, False, True, False]  # the pool's top quarter


def test_the_quantile_is_of_the_pool_and_validated():
    assert relative_threshold(np.array([0.1, 0.2, 0.3]), 0.9, None) == 0.9
    assert relative_threshold(np.array([0.1, 0.2, 0.3]), 0.9, 0.5) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        relative_threshold(np.array([0.1]), 0.9, 1.5)
