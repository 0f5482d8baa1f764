"""Focus ramps (DESIGN.md section 4): increasing distances per schedule."""

from __future__ import annotations

import numpy as np
import pytest

from generator.recipe.ramps import focus_ramp


def test_diopter_is_uniform_in_inverse_distance_with_exact_ends():
    ramp = focus_ramp("diopter", 7, near_m=0.3, far_m=1.2)
    assert ramp[0] == 0.3 and ramp[-1] == 1.2
    assert np.all(np.diff(ramp) > 0)
    steps = np.diff(1.0 / ramp)
    np.testing.assert_allclose(steps, steps[0], rtol=1e-12)


def test_linear_is_uniform_in_distance():
    ramp = focus_ramp("linear", 5, near_m=0.5, far_m=2.5)
    np.testing.assert_allclose(ramp, [0.5, 1.0, 1.5, 2.0, 2.5])
    assert ramp[0] == 0.5 and ramp[-1] == 2.5


def test_list_is_exact():
    distances = [0.1, 0.15, 0.3, 0.7, 1.5]
    assert focus_ramp("list", 5, distances_m=distances).tolist() == distances


def test_random_is_sorted_within_bounds_and_follows_the_generator():
    draw = lambda seed: focus_ramp("random", 6, near_m=0.4, far_m=1.6, rng=np.random.default_rng(seed))
    ramp = draw(1)
    assert np.all(np.diff(ramp) > 0)
    assert np.all((ramp >= 0.4) & (ramp <= 1.6))
    np.testing.assert_array_equal(ramp, draw(1))
    assert not np.array_equal(ramp, draw(2))


def test_single_frame_ramp_is_the_near_distance():
    assert focus_ramp("diopter", 1, near_m=0.3, far_m=1.2).tolist() == [0.3]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(schedule="log", frames=3, near_m=0.3, far_m=1.0),
        dict(schedule="list", frames=3, distances_m=[0.3, 0.5]),
        dict(schedule="list", frames=2, distances_m=[0.5, 0.3]),
        dict(schedule="random", frames=3, near_m=0.3, far_m=1.0),
        dict(schedule="diopter", frames=3, near_m=1.0, far_m=0.3),
        dict(schedule="linear", frames=0, near_m=0.3, far_m=1.0),
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        focus_ramp(**kwargs)
