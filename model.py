"""The networks, by name: the Keras CIFAR-10 tutorial's CNN and stronger ones.

A network is one function of the number of classes (the dataset's) returning
a new keras.Model from images as `data.preprocessing` makes them to one logit
per class, and one MODELS entry;
--model then accepts its name. What every network needs besides is done once
for all of them: the loss from the logits, in float32 under mixed precision
(learner.py), and the softmax, in float32, of the classifier that users call
and that a run exports (`classifier`).
"""

from cifar10_research.dataset import IMAGE_SHAPE  # First: TensorFlow, quietly.

import functools

import keras
import numpy as np
import tensorflow as tf
from keras import layers

import data
from cifar10_research.batch_norm import MIN_EPSILON, BatchNorm
from cifar10_research.whitening import PatchWhitening


def _tutorial_convolutions() -> list:
    """The Keras tutorial's input and its two valid 3x3 convolutions with pooling."""
    return [keras.Input(shape=IMAGE_SHAPE),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2)]


def simple_cnn(num_classes: int = 10) -> keras.Model:
    """The tutorial's Sequential CNN, 167,562 parameters (its softmax: see `classifier`)."""
    return keras.Sequential([
        *_tutorial_convolutions(),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(num_classes),
    ], name="simple-cnn")


def wide_cnn(num_classes: int = 10) -> keras.Model:
    """A VGG-style CNN with batch norm and dropout, 357,482 parameters.

    Three blocks of one padded 3x3 convolution (32, 64, 128 filters), batch
    norm, relu, 2x2 max-pooling and dropout, then a dropped-out dense layer.
    One convolution per block, not VGG's two: a second one at full resolution
    makes a step about 8.6 times as slow as simple_cnn's on a 2-core CPU; this
    one takes about 3 times as long. The convolutions have no bias, since the
    batch norm that follows subtracts it again. Dropout is light (0.1 to 0.3)
    so that it learns about as fast per epoch as simple_cnn: 0.25 and 0.5, as
    in Keras' old cifar10_cnn example, left it 0.12 behind after 2 epochs.
    """
    blocks = []
    for filters, dropout in ((32, 0.1), (64, 0.2), (128, 0.3)):
        blocks += [layers.Conv2D(filters, 3, padding="same", use_bias=False),
                   BatchNorm(),
                   layers.ReLU(),
                   layers.MaxPooling2D(2),
                   layers.Dropout(dropout)]
    return keras.Sequential([
        keras.Input(shape=IMAGE_SHAPE),
        *blocks,
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.3),
        layers.Dense(num_classes),
    ], name="wide-cnn")


def fast_cnn(num_classes: int = 10) -> keras.Model:
    """The tutorial's CNN made for few epochs: 113,738 parameters, 10.2 MFLOPs an image.

    A third valid 3x3 convolution (128 filters, on the 6x6 maps left after two
    poolings) replaces the 64-unit dense bottleneck, so the classifier sees
    128 features of each of 4x4 places: 1.26 times simple_cnn's FLOPs
    (8.1 MFLOPs), and 0.737 validation accuracy after 6 epochs of the fast
    recipe where simple_cnn reached 0.722 at its best rate. No batch
    normalisation: on a 2-core CPU it made a step of simple_cnn's size 1.5 to
    2.6 times as slow, more than it saved in epochs.
    """
    return keras.Sequential([
        *_tutorial_convolutions(),
        layers.Conv2D(128, 3, activation="relu"),
        layers.Flatten(),
        layers.Dense(num_classes),
    ], name="fast-cnn")


def resnet(depth: int, num_classes: int = 10) -> keras.Model:
    """The ResNet of He et al. 2016 for CIFAR (section 4.2): a 3x3 convolution
    of 16 filters, then 3 stages of (depth - 2) / 6 basic blocks of 16, 32 and
    64 filters (each block two 3x3 convolutions with batch norm, added to its
    input), the second and third stage halving the size in their first block,
    global average pooling and the classifier. Where a block changes the size,
    its shortcut is a strided 1x1 convolution with batch norm (the paper's
    option B; its CIFAR models pad with zeros instead, option A: 1,568 fewer
    parameters for every depth). He initialisation, as the paper's."""
    if (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet has 6n + 2 layers, not {depth}")
    inputs = keras.Input(shape=IMAGE_SHAPE)
    x = _convolution_and_norm(inputs, 16, 1, activation=True)
    for stage, filters in enumerate((16, 32, 64)):
        for block in range((depth - 2) // 6):
            x = _residual_block(x, filters, 2 if stage and not block else 1)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(num_classes)(x), name=f"resnet-{depth}")


def _convolution_and_norm(x, filters: int, stride: int, activation: bool, size: int = 3):
    x = layers.Conv2D(filters, size, strides=stride, padding="same", use_bias=False,
                      kernel_initializer="he_normal")(x)
    x = BatchNorm()(x)
    return layers.ReLU()(x) if activation else x


def _residual_block(x, filters: int, stride: int):
    shortcut = x if stride == 1 and x.shape[-1] == filters else _convolution_and_norm(
        x, filters, stride, activation=False, size=1)
    y = _convolution_and_norm(x, filters, stride, activation=True)
    y = _convolution_and_norm(y, filters, 1, activation=False)
    return layers.ReLU()(layers.Add()([shortcut, y]))


# PyTorch's default initialisation of convolutions and dense layers, which
# airbench keeps: uniform within +-1/sqrt(fan_in).
_TORCH_DEFAULT = keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform")
# airbench's batch norm: PyTorch's momentum 0.4 (40% the batch's statistics a
# step) is Keras' 0.6; its epsilon 1e-12 is below the fused kernel's least.
_AIRBENCH_NORM = {"momentum": 0.6, "epsilon": MIN_EPSILON, "scale": False}


def airbench(widths: tuple[int, int, int], name: str, num_classes: int = 10) -> keras.Model:
    """The network of airbench94 (Jordan 2024), `widths` its blocks' filters
    (64, 256, 256 there): a 2x2 convolution fitted to whiten the training
    images' patches (`whitening.PatchWhitening`: its kernel fitted, not
    learnt), GELU, then three blocks of a 3x3 convolution, 2x2 max-pooling,
    batch norm and GELU, then a second 3x3 convolution, batch norm and GELU;
    3x3 max-pooling of the 3x3 maps left, and a dense layer without bias
    whose logits are scaled by 1/9.

    As airbench's: batch norm without a learnt scale, its moving statistics
    40% the batch's at each step (Keras' momentum 0.6; epsilon 1e-5, the
    fused kernel's least, where airbench's is 1e-12); each 3x3 convolution
    starts as an identity for its first filters (see `_identity_started`) and
    PyTorch's default initialisation elsewhere.
    """
    layers_ = [keras.Input(shape=IMAGE_SHAPE), PatchWhitening(), layers.Activation("gelu")]
    for width in widths:
        layers_ += [_airbench_convolution(width), layers.MaxPooling2D(2),
                    BatchNorm(**_AIRBENCH_NORM), layers.Activation("gelu"),
                    _airbench_convolution(width), BatchNorm(**_AIRBENCH_NORM),
                    layers.Activation("gelu")]
    network = keras.Sequential([
        *layers_, layers.MaxPooling2D(3), layers.Flatten(),
        layers.Dense(num_classes, use_bias=False, kernel_initializer=_TORCH_DEFAULT),
        layers.Rescaling(1 / 9)], name=name)
    for layer in network.layers:
        if isinstance(layer, layers.Conv2D):
            _identity_started(layer)
    return network


def _airbench_convolution(width: int) -> layers.Conv2D:
    return layers.Conv2D(width, 3, padding="same", use_bias=False,
                         kernel_initializer=_TORCH_DEFAULT)


def _identity_started(convolution: layers.Conv2D) -> None:
    """Sets the first min(inputs, filters) filters of `convolution` to pass their
    input channel through unchanged (PyTorch's dirac_ initialisation, as airbench
    makes an implicit residual connection)."""
    kernel = convolution.kernel.numpy()
    height, width, inputs, filters = kernel.shape
    identity = min(inputs, filters)
    kernel[..., :identity] = 0
    kernel[height // 2, width // 2, np.arange(identity), np.arange(identity)] = 1
    convolution.kernel.assign(kernel)


def classifier(network: keras.Model) -> keras.Model:
    """`network` as users call it: stored uint8 pixels (0-255, as a PNG holds
    them) in, class probabilities out: `data.preprocessing`, the network, and a
    float32 softmax. A run's model.keras and saved_model/ hold this model."""
    return keras.Sequential([keras.Input(IMAGE_SHAPE, dtype="uint8"), data.preprocessing(),
                             network, layers.Softmax(dtype="float32")],
                            name=f"{network.name}-classifier")


def flops_per_image(network: keras.Model) -> int:
    """Floating-point operations of one image's forward pass: 2 per multiply-add of
    the convolutions and matrix products (batch norm, activations and pooling,
    a few percent more, are left out, as is usual).

    Counted on the traced graph, so layers nested in blocks or custom layers
    count too; an op of another kind that multiplies tensors is refused.
    """
    forward = tf.function(lambda images: network(images, training=False), autograph=False)
    graph = forward.get_concrete_function(tf.TensorSpec((1, *IMAGE_SHAPE))).graph
    return sum(_flops(op) for op in graph.get_operations())


def _flops(op) -> int:
    if op.type == "Conv2D":  # Each output value: a kernel window over every input channel.
        kernel = op.inputs[1].shape
        return 2 * int(np.prod(op.outputs[0].shape)) * kernel[0] * kernel[1] * kernel[2]
    if op.type == "DepthwiseConv2dNative":
        kernel = op.inputs[1].shape
        return 2 * int(np.prod(op.outputs[0].shape)) * kernel[0] * kernel[1]
    if op.type == "MatMul":
        return 2 * int(np.prod(op.inputs[0].shape)) * op.outputs[0].shape[-1]
    if op.type in ("Conv3D", "BatchMatMulV2", "BatchMatMulV3", "Einsum", "Conv2DBackpropInput"):
        raise ValueError(f"flops_per_image cannot count the {op.type} op {op.name}: add it "
                         f"to model._flops")
    return 0


# The networks by --model name; each call builds a new, randomly initialised model.
MODELS = {"simple_cnn": simple_cnn, "wide_cnn": wide_cnn, "fast_cnn": fast_cnn,
          **{f"resnet{depth}": functools.partial(resnet, depth)
             for depth in (20, 32, 44, 56, 110)},
          # airbench94's widths, then narrower ones for shorter budgets.
          "airbench": functools.partial(airbench, (64, 256, 256), "airbench"),
          "airbench_128": functools.partial(airbench, (64, 128, 128), "airbench-128"),
          "airbench_64": functools.partial(airbench, (32, 64, 64), "airbench-64")}
