import numpy as np
import pytest
import tensorflow as tf

from cifar10_research import schedules

BASE = 1e-3


def _rates(name, total_steps, warmup_steps, steps):
    schedule = schedules.WarmupSchedule(name, BASE, total_steps, warmup_steps)
    return [float(schedule(step)) / BASE for step in steps]


def _warmed(name, fractions):
    """The factors of a warmup `fractions` of the way through, from the schedule's start."""
    start = schedules.WARMUP_STARTS.get(name, 0.0)
    return [start + (1 - start) * fraction for fraction in fractions]


@pytest.mark.parametrize("name", schedules.SCHEDULES)
def test_warmup_rises_linearly_from_its_start(name):
    np.testing.assert_allclose(_rates(name, 100, 10, [0, 5, 10]), _warmed(name, [0, 0.5, 1]),
                               rtol=1e-6)


def test_constant_keeps_the_base_rate():
    np.testing.assert_allclose(_rates("constant", 100, 0, [0, 50, 99, 100]), [1.0] * 4)


def test_cosine_decays_to_zero_over_the_steps_after_warmup():
    np.testing.assert_allclose(_rates("cosine", 110, 10, [10, 35, 60, 110, 200]),
                               [1.0, 0.5 + 0.5 * np.cos(np.pi / 4), 0.5, 0.0, 0.0],
                               rtol=1e-6, atol=1e-7)


def test_step_cuts_tenfold_at_half_and_three_quarters():
    np.testing.assert_allclose(_rates("step", 100, 0, [0, 49, 50, 74, 75, 99]),
                               [1.0, 1.0, 0.1, 0.1, 0.01, 0.01], rtol=1e-6)


@pytest.mark.parametrize("name", schedules.SCHEDULES)
def test_the_rate_is_a_float32_tensor_of_a_tensor_step_in_a_tf_function(name):
    schedule = schedules.WarmupSchedule(name, BASE, 100, 10)
    rate = tf.function(schedule)(tf.constant(5, tf.int64))
    assert rate.dtype == tf.float32 and rate.shape == ()
    assert float(rate) == pytest.approx(BASE * _warmed(name, [0.5])[0])


def test_linear_decays_to_zero_along_a_line_after_a_fractional_warmup():
    # One-cycle: up over the first 25 steps, down to 0 at step 100.
    np.testing.assert_allclose(_rates("linear", 100, 25, [0, 10, 25, 50, 100, 120]),
                               [0.0, 0.4, 1.0, 2 / 3, 0.0, 0.0], rtol=1e-6, atol=1e-7)


def airbench_triangle(steps, start, end, peak):
    """airbench94's `triangle`: the factor of each step 0 to `steps`, from `start`
    up to 1 at step int(peak * steps), then down to `end` at the last."""
    xp, fp = [0, int(peak * steps), steps], [start, 1, end]
    return np.interp(np.arange(steps + 1), xp, fp)


def test_triangular_with_a_23_percent_warmup_is_airbench94s_triangle():
    total = 97
    ours = _rates("triangular", total, int(0.23 * total), range(total + 1))
    np.testing.assert_allclose(ours, airbench_triangle(total, 0.2, 0.07, 0.23), rtol=1e-5)
