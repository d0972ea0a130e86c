"""Learning-rate schedules by name, each after a linear warmup.

A new schedule is one decay function and one SCHEDULES entry; --lr_schedule
then accepts its name.
"""

import math

import tensorflow as tf

STEP_FRACTIONS = (0.5, 0.75)  # Where "step" cuts the rate, as fractions of the run's steps.
STEP_FACTOR = 0.1  # What each cut multiplies the rate by.


def _constant(step, warmup_steps: int, total_steps: int):
    return tf.ones_like(step)


def _cosine(step, warmup_steps: int, total_steps: int):
    """From 1 to 0 along half a cosine over the steps after the warmup."""
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = tf.clip_by_value((step - warmup_steps) / decay_steps, 0.0, 1.0)
    return 0.5 * (1.0 + tf.cos(math.pi * progress))


def _linear(step, warmup_steps: int, total_steps: int):
    """From 1 to 0 along a straight line over the steps after the warmup."""
    decay_steps = max(total_steps - warmup_steps, 1)
    return 1.0 - tf.clip_by_value((step - warmup_steps) / decay_steps, 0.0, 1.0)


def _step(step, warmup_steps: int, total_steps: int):
    """STEP_FACTOR to the power of how many STEP_FRACTIONS of the run have passed."""
    cuts = tf.add_n([tf.cast(step >= fraction * total_steps, tf.float32)
                     for fraction in STEP_FRACTIONS])
    return tf.pow(STEP_FACTOR, cuts)


# The decay after the warmup, by --lr_schedule name: a factor from 1 down.
SCHEDULES = {"constant": _constant, "cosine": _cosine, "linear": _linear, "step": _step}


class WarmupSchedule:
    """`base_rate` times a linear warmup from 0 to 1 over `warmup_steps`, times a decay.

    Called with the run's global step (a Python int or an int64 tensor inside
    tf.function); returns the rate as a float32 tensor.
    """

    def __init__(self, name: str, base_rate: float, total_steps: int, warmup_steps: int):
        self.decay = SCHEDULES[name]
        self.base_rate = base_rate
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = (tf.minimum(step / self.warmup_steps, 1.0) if self.warmup_steps
                  else tf.ones_like(step))
        return self.base_rate * warmup * self.decay(step, self.warmup_steps, self.total_steps)
