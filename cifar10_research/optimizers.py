"""Optimizers by name (--optimizer), and what --weight_decay means for each.

- adam: Adam. A --weight_decay above 0 decays the weights as AdamW does,
  as --weight_decay did before --optimizer existed, so older runs resume
  unchanged.
- adamw: AdamW: decoupled weight decay, each step w -= lr * weight_decay * w.
- sgd: SGD with --momentum, Nesterov's with --nesterov; --weight_decay is
  the L2 penalty of the papers (He et al. 2016 use 1e-4): weight_decay / 2 *
  ||w||^2 added to the loss, so its gradient goes through the momentum.

Biases and batch-norm scales and offsets are never decayed: shrinking them
does not regularise, it only shifts activations. With sgd, batch-norm offsets
may learn faster than the rest (--norm_bias_lr_scale, `rescaled`). A new
optimizer is one function and one OPTIMIZERS entry.
"""

import re

import keras
import tensorflow as tf

NOT_DECAYED = ("bias", "gamma", "beta")  # Matched in variable names, as Keras matches them.
NORM_OFFSET = "beta"  # The name of batch norm's offsets.


def decayed(variable) -> bool:
    return not any(re.search(name, variable.name) for name in NOT_DECAYED)


def _adam(learning_rate, weight_decay: float, momentum: float, nesterov: bool):
    return (_adamw(learning_rate, weight_decay, momentum, nesterov) if weight_decay
            else keras.optimizers.Adam(learning_rate))


def _adamw(learning_rate, weight_decay: float, momentum: float, nesterov: bool):
    optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
    optimizer.exclude_from_weight_decay(var_names=list(NOT_DECAYED))
    return optimizer


def _sgd(learning_rate, weight_decay: float, momentum: float, nesterov: bool):
    return keras.optimizers.SGD(learning_rate, momentum=momentum, nesterov=nesterov)


# The optimizers by --optimizer name: (learning rate, weight decay, momentum, nesterov).
OPTIMIZERS = {"adam": _adam, "adamw": _adamw, "sgd": _sgd}


def make_optimizer(name: str, learning_rate, weight_decay: float = 0.0, momentum: float = 0.9,
                   nesterov: bool = False) -> keras.optimizers.Optimizer:
    """`learning_rate` is a float or a function of no arguments that Keras calls
    at each step."""
    return OPTIMIZERS[name](learning_rate, weight_decay, momentum, nesterov)


def l2_penalty(name: str, weight_decay: float, variables) -> tf.Tensor | float:
    """What --weight_decay adds to the loss: the L2 penalty of `variables()`'
    decayed ones under sgd, else 0 (the Adam optimizers decay the weights
    themselves)."""
    if name != "sgd" or not weight_decay:
        return 0.0
    return weight_decay / 2 * tf.add_n([tf.reduce_sum(tf.square(variable))
                                        for variable in variables() if decayed(variable)])


def rescaled(gradients: list, variables: list, norm_bias_scale: float) -> list:
    """`gradients`, those of batch-norm offsets times `norm_bias_scale`: under SGD
    (linear in the gradients, momentum included) the same as a learning rate
    that many times larger for them alone, as airbench94 gives them (64x)."""
    if norm_bias_scale == 1:
        return gradients
    return [gradient * norm_bias_scale if variable.name == NORM_OFFSET else gradient
            for gradient, variable in zip(gradients, variables)]
