"""Learning-rate schedules by name, all with linear warmup, and the optimizer that follows one."""

import math

import keras
import tensorflow as tf

from errors import UserError

SCHEDULES = ("constant", "cosine", "step")
STEP_FRACTIONS = (0.5, 0.75)  # Where "step" cuts the rate, as fractions of the run's steps.
STEP_FACTOR = 0.1  # What each cut multiplies the rate by.


def learning_rate_schedule(name: str, base_rate: float, total_steps: int, warmup_steps: int,
                           step_fractions: tuple = STEP_FRACTIONS) -> "WarmupSchedule":
    """The schedule `name` (one of SCHEDULES) for a run of `total_steps` optimizer steps.

    Always a schedule object, "constant" without warmup too, so the loop reads
    and logs the rate the same way for every schedule.
    """
    if name not in SCHEDULES:
        raise UserError(f"unknown --lr_schedule={name}: use one of {', '.join(SCHEDULES)}")
    if not 0 <= warmup_steps <= total_steps:
        raise UserError(f"{warmup_steps} warmup steps do not fit in the run's {total_steps} "
                        f"steps: pick fewer --warmup_epochs")
    return WarmupSchedule(name, base_rate, total_steps, warmup_steps, step_fractions)


@keras.saving.register_keras_serializable(package="cifar10")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`base_rate` times a linear warmup from 0 to 1 over `warmup_steps`, times a decay.

    The decay of `kind` "constant" is 1; "cosine" falls from 1 to 0 along half
    a cosine over the steps after the warmup; "step" is STEP_FACTOR to the
    power of how many of `step_fractions` of `total_steps` have passed.
    The step may be a tensor (the optimizer passes its int64 `iterations`
    inside tf.function); the rate is a float32 tensor. Registered with Keras,
    so an optimizer's config that holds it deserialises.
    """

    def __init__(self, kind: str, base_rate: float, total_steps: int, warmup_steps: int,
                 step_fractions: tuple = STEP_FRACTIONS):
        self.kind = kind
        self.base_rate = base_rate
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.step_fractions = tuple(step_fractions)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        return self.base_rate * self._warmup(step) * self._decay(step)

    def _warmup(self, step):
        if self.warmup_steps == 0:
            return tf.ones_like(step)
        return tf.minimum(step / self.warmup_steps, 1.0)

    def _decay(self, step):
        if self.kind == "cosine":
            decay_steps = max(self.total_steps - self.warmup_steps, 1)
            progress = tf.clip_by_value((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
            return 0.5 * (1.0 + tf.cos(math.pi * progress))
        if self.kind == "step":
            cuts = tf.add_n([tf.cast(step >= fraction * self.total_steps, tf.float32)
                             for fraction in self.step_fractions])
            return tf.pow(STEP_FACTOR, cuts)
        return tf.ones_like(step)

    def get_config(self) -> dict:
        return {"kind": self.kind, "base_rate": self.base_rate, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "step_fractions": list(self.step_fractions)}


def make_optimizer(schedule: keras.optimizers.schedules.LearningRateSchedule,
                   weight_decay: float) -> keras.optimizers.Optimizer:
    """Adam, or AdamW with decoupled `weight_decay` (scaled by the rate) when it is not 0.

    Biases and batch-norm scales and offsets are not decayed: shrinking them
    does not regularise, it only shifts activations.
    """
    if weight_decay == 0:
        return keras.optimizers.Adam(schedule)
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=weight_decay)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer
