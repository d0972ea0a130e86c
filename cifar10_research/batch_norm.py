"""`BatchNorm`: Keras' BatchNormalization for NHWC images, in one fused op.

Keras 3's layer computes the batch moments, then normalises, in separate ops;
this one calls `tf.nn.fused_batch_norm`, one kernel for both (cuDNN's on a
GPU). It keeps Keras' semantics and names: momentum 0.99 and epsilon 1e-3 by
default, `center` and `scale`, the weights gamma, beta, moving_mean and
moving_variance (created as Keras creates them, so a checkpoint of either
layer restores into the other), the moving averages of the batch mean and
biased batch variance, float32 statistics under mixed precision, per-replica
batch statistics under a MirroredStrategy (Keras' `synchronized=False`), and
inference on the moving statistics when called with training=False or made
non-trainable.
"""

import keras
import tensorflow as tf

# The smallest epsilon the fused kernel accepts (cuDNN's CUDNN_BN_MIN_EPSILON, 1e-5,
# with a margin for float32 rounding).
MIN_EPSILON = 1.001e-5


@keras.saving.register_keras_serializable(package="cifar10_research")
class BatchNorm(keras.layers.Layer):
    """Batch normalisation of 4-D NHWC inputs (batch, height, width, channels),
    per channel, in one fused op; otherwise as `keras.layers.BatchNormalization`.

    In training: gamma * (x - mean(batch)) / sqrt(var(batch) + epsilon) + beta,
    and each moving statistic becomes moving * momentum + batch * (1 - momentum),
    with the batch's biased variance, as Keras uses (the fused op returns the
    Bessel-corrected one for running averages; it is uncorrected here). In
    inference, the moving statistics replace the batch's.
    """

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, **kwargs):
        super().__init__(**kwargs)
        if epsilon < MIN_EPSILON:
            raise ValueError(f"BatchNorm needs epsilon >= {MIN_EPSILON} (the fused kernel's "
                             f"least), got {epsilon}")
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = center
        self.scale = scale
        self.gamma = None
        self.beta = None

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(f"BatchNorm normalises 4-D NHWC inputs (batch, height, width, "
                             f"channels), got shape {tuple(input_shape)}: use "
                             f"keras.layers.BatchNormalization for other shapes")
        shape = (input_shape[-1],)
        if self.scale:
            self.gamma = self._statistic("gamma", shape, "ones", trainable=True)
        if self.center:
            self.beta = self._statistic("beta", shape, "zeros", trainable=True)
        self.moving_mean = self._statistic("moving_mean", shape, "zeros", trainable=False)
        self.moving_variance = self._statistic("moving_variance", shape, "ones", trainable=False)
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: input_shape[-1]})

    def _statistic(self, name: str, shape: tuple, initializer: str, trainable: bool):
        """A float32 weight, never cast to a mixed-precision compute dtype, with
        Keras' default aggregation, as Keras' layer makes its four."""
        return self.add_weight(shape=shape, name=name, initializer=initializer,
                               trainable=trainable, autocast=False)

    def call(self, inputs, training=None):
        channels = inputs.shape[-1]
        scale = self.gamma if self.scale else tf.ones((channels,), tf.float32)
        offset = self.beta if self.center else tf.zeros((channels,), tf.float32)
        if not (training and self.trainable):
            return self._fused(inputs, scale, offset, self.moving_mean, self.moving_variance,
                               is_training=False).y
        fused = self._fused(inputs, scale, offset, tf.zeros((0,)), tf.zeros((0,)),
                            is_training=True)
        # The kernel multiplied the batch variance by n / max(n - 1, 1); undone.
        count = tf.cast(tf.size(inputs) // channels, tf.float32)
        variance = fused.batch_variance * (tf.maximum(count - 1.0, 1.0) / count)
        mean = fused.batch_mean
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return fused.y

    def _fused(self, inputs, scale, offset, mean, variance, is_training: bool):
        """The op of tf.compat.v1.nn.fused_batch_norm (TensorFlow 2 exports no wrapper)."""
        return tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=scale, offset=offset, mean=mean, variance=variance,
            epsilon=self.epsilon, data_format="NHWC", is_training=is_training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale}
