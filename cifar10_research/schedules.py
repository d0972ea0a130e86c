"""Learning-rate schedules by name, each after a linear warmup.

A new schedule is one decay function and one SCHEDULES entry (and, if its
warmup starts above 0, a WARMUP_STARTS one); --lr_schedule then accepts its
name.
"""

import math

import tensorflow as tf

STEP_FRACTIONS = (0.5, 0.75)  # Where "step" cuts the rate, as fractions of the run's steps.
STEP_FACTOR = 0.1  # What each cut multiplies the rate by.
TRIANGLE_START, TRIANGLE_END = 0.2, 0.07  # airbench94's triangle: its first and last factors.


def _constant(step, warmup_steps: int, total_steps: int):
    return tf.ones_like(step)


def _linear_progress(step, warmup_steps: int, total_steps: int):
    """From 0 at the warmup's end to 1 at the last step."""
    decay_steps = max(total_steps - warmup_steps, 1)
    return tf.clip_by_value((step - warmup_steps) / decay_steps, 0.0, 1.0)


def _cosine(step, warmup_steps: int, total_steps: int):
    """From 1 to 0 along half a cosine over the steps after the warmup."""
    return 0.5 * (1.0 + tf.cos(math.pi * _linear_progress(step, warmup_steps, total_steps)))


def _linear(step, warmup_steps: int, total_steps: int):
    """From 1 to 0 along a straight line over the steps after the warmup."""
    return 1.0 - _linear_progress(step, warmup_steps, total_steps)


def _step(step, warmup_steps: int, total_steps: int):
    """STEP_FACTOR to the power of how many STEP_FRACTIONS of the run have passed."""
    cuts = tf.add_n([tf.cast(step >= fraction * total_steps, tf.float32)
                     for fraction in STEP_FRACTIONS])
    return tf.pow(STEP_FACTOR, cuts)


def _triangular(step, warmup_steps: int, total_steps: int):
    """From 1 to TRIANGLE_END along a straight line over the steps after the warmup."""
    return 1.0 - (1.0 - TRIANGLE_END) * _linear_progress(step, warmup_steps, total_steps)


# The decay after the warmup, by --lr_schedule name: a factor from 1 down.
SCHEDULES = {"constant": _constant, "cosine": _cosine, "linear": _linear, "step": _step,
             "triangular": _triangular}
# Where the warmup starts, for the schedules whose warmup does not start at 0.
WARMUP_STARTS = {"triangular": TRIANGLE_START}


class WarmupSchedule:
    """`base_rate` times a linear warmup over `warmup_steps` (from 0, or the
    schedule's WARMUP_STARTS, to 1), times the schedule's decay.

    Called with the run's global step (a Python int or an int64 tensor inside
    tf.function); returns the rate as a float32 tensor.
    """

    def __init__(self, name: str, base_rate: float, total_steps: int, warmup_steps: int):
        self.decay = SCHEDULES[name]
        self.warmup_start = WARMUP_STARTS.get(name, 0.0)
        self.base_rate = base_rate
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        rise = tf.minimum(step / self.warmup_steps, 1.0) if self.warmup_steps else 1.0
        warmup = self.warmup_start + (1.0 - self.warmup_start) * rise
        return self.base_rate * warmup * self.decay(step, self.warmup_steps, self.total_steps)
