"""The networks of model.py: the tutorial's untouched, every one a classifier of logits."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import data
import model
from cifar10_research import checkpoints
from cifar10_research.batch_norm import BatchNorm
from cifar10_research.config import Config
from cifar10_research.learner import Learner
from tests.conftest import one_device, tiny_cifar

PARAMETERS = {"simple_cnn": 167_562, "wide_cnn": 357_482, "fast_cnn": 113_738,
              "resnet20": 274_042, "resnet32": 469_370, "resnet44": 664_698,
              "resnet56": 860_026, "resnet110": 1_739_002}
# He et al. 2016, section 4.2: "0.27M" (ResNet-20), "0.85M" (56), "1.7M" (110).
PAPER_PARAMETERS = {"resnet20": 0.27e6, "resnet56": 0.85e6, "resnet110": 1.7e6}
# 2 x multiply-adds of the convolutions and dense layers, as model.flops_per_image counts.
FLOPS = {"simple_cnn": 2 * (30 * 30 * 32 * 27 + 13 * 13 * 64 * 288 + 2304 * 64 + 64 * 10),
         "wide_cnn": 2 * (32 * 32 * 32 * 27 + 16 * 16 * 64 * 288 + 8 * 8 * 128 * 576
                          + 2048 * 128 + 128 * 10),
         "fast_cnn": 2 * (30 * 30 * 32 * 27 + 13 * 13 * 64 * 288 + 4 * 4 * 128 * 576
                          + 2048 * 10)}


def resnet_flops(depth: int) -> int:
    """The stem, then per stage of size S and F filters: 2n 3x3 convolutions (the
    first of a halving stage takes F/2 channels in), a 1x1 projection where the
    size halves; the dense layer."""
    n = (depth - 2) // 6
    total = 32 * 32 * 16 * 27 + 64 * 10
    for size, filters, halves in ((32, 16, False), (16, 32, True), (8, 64, True)):
        inputs = filters // 2 if halves else filters
        total += size * size * filters * 9 * (inputs + (2 * n - 1) * filters)
        total += size * size * filters * inputs if halves else 0
    return 2 * total


FLOPS.update({f"resnet{depth}": resnet_flops(depth) for depth in (20, 32, 44, 56, 110)})
AIRBENCH_WIDTHS = {"airbench": (64, 256, 256), "airbench_128": (64, 128, 128),
                   "airbench_64": (32, 64, 64)}


def airbench_counts(widths) -> tuple[int, int]:
    """(parameters, FLOPs): the 2x2 whitening convolution's 24 filters (and
    biases) on 31x31 maps, each block's first convolution before its pooling,
    the second after; batch norm's offsets and two statistics, no scale."""
    sizes, inputs, parameters, multiply_adds = (31, 15, 7), 24, 24 * 12 + 24, 31 * 31 * 24 * 12
    for size, width in zip(sizes, widths):
        parameters += 9 * width * (inputs + width) + 2 * 3 * width
        multiply_adds += 9 * width * (size * size * inputs + (size // 2) ** 2 * width)
        inputs = width
    return parameters + 10 * inputs, 2 * (multiply_adds + 10 * inputs)


for _name, _widths in AIRBENCH_WIDTHS.items():
    PARAMETERS[_name], FLOPS[_name] = airbench_counts(_widths)


def test_every_registered_model_has_its_parameter_and_flop_counts_recorded_here():
    assert set(model.MODELS) == set(PARAMETERS) == set(FLOPS)


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_builds_with_the_recorded_parameter_count(name):
    network = model.MODELS[name]()
    assert network.name == name.replace("_", "-").replace("resnet", "resnet-")
    assert network.count_params() == PARAMETERS[name]


@pytest.mark.parametrize("name", sorted(PAPER_PARAMETERS))
def test_the_resnets_have_the_papers_parameter_counts(name):
    assert PARAMETERS[name] == pytest.approx(PAPER_PARAMETERS[name], rel=0.025)  # 2 digits.


def test_a_resnet_is_6n_plus_2_layers_deep():
    with pytest.raises(ValueError, match="6n . 2 layers, not 21"):
        model.resnet(21)


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_flops_per_image_count_the_multiply_adds_of_convolutions_and_dense_layers(name):
    assert model.flops_per_image(model.MODELS[name]()) == FLOPS[name]


def test_simple_cnn_has_the_tutorials_layers_in_order():
    assert [type(layer).__name__ for layer in model.simple_cnn().layers] == [
        "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dense"]


@pytest.mark.parametrize("name", sorted(PARAMETERS))
@pytest.mark.parametrize("training", [False, True])
def test_outputs_a_logit_per_class_and_its_classifier_probabilities(name, training):
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    # The classifier's own float32 pixels: images / 255 in float64 differ in the last
    # bit, which an untrained ResNet-56's large logits turn into 1e-4 in probability.
    pixels = data.preprocessing()(images)
    network = model.MODELS[name]()
    logits = np.asarray(network(pixels, training=training))
    assert logits.shape == (4, 10)
    assert (logits < 0).any()  # Not probabilities: the softmax is the classifier's.
    probabilities = np.asarray(model.classifier(network)(images))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    inference = np.asarray(network(pixels, training=False), np.float64)
    inference = np.exp(inference - inference.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probabilities, inference / inference.sum(axis=1, keepdims=True),
                               rtol=1e-4, atol=1e-6)


class _Block(keras.layers.Layer):
    """A custom block: its convolution is a layer inside a layer."""

    def __init__(self):
        super().__init__()
        self.convolution = keras.layers.Conv2D(8, 3, padding="same")

    def call(self, inputs):
        return inputs + self.convolution(inputs)[..., :3]


def test_flops_count_layers_nested_in_blocks_and_models():
    inner = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 1)])
    network = keras.Sequential([keras.Input((32, 32, 3)), _Block(), inner,
                                keras.layers.Flatten(), keras.layers.Dense(10)])
    assert model.flops_per_image(network) == 2 * (32 * 32 * 8 * 27 + 32 * 32 * 4 * 3
                                                  + 32 * 32 * 4 * 10)


class _RowProjection(keras.layers.Layer):
    """A layer whose product of tensors is a batched matrix product."""

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(96, 10))

    def call(self, inputs):
        return tf.matmul(tf.reshape(inputs, (-1, 32, 96)), self.kernel)


def test_flops_of_an_op_it_cannot_count_are_refused():
    network = keras.Sequential([keras.Input((32, 32, 3)), _RowProjection()])
    with pytest.raises(ValueError, match="cannot count the BatchMatMulV2 op"):
        model.flops_per_image(network)


def test_each_build_is_a_new_model():
    assert model.MODELS["wide_cnn"]() is not model.MODELS["wide_cnn"]()


def test_wide_cnn_resumes_from_a_checkpoint_written_with_keras_batch_normalization(
        tmp_path, monkeypatch):
    """wide_cnn's BatchNorm has the weights, names and places of the Keras layer
    it replaced, so a run's checkpoint from before restores whole."""
    old_config = Config(model="wide_cnn", batch_size=16)
    with monkeypatch.context() as patch:
        patch.setattr(model, "BatchNorm", keras.layers.BatchNormalization)
        old = Learner(one_device(), old_config, steps_per_epoch=8)
    assert isinstance(old.model.layers[1], keras.layers.BatchNormalization)
    old.train_steps(iter(old.distribute_dataset(
        data.train_dataset(tiny_cifar().train, 16, seed=0, epoch=1))), tf.constant(2))
    tf.train.Checkpoint(**old.checkpointed()).save(str(tmp_path / "ckpt"))
    keras.utils.set_random_seed(1)
    new = Learner(one_device(), old_config, steps_per_epoch=8)
    assert isinstance(new.model.layers[1], BatchNorm)
    checkpoints.Checkpoints(new.checkpointed(), str(tmp_path), str(tmp_path), 1).restore_latest()
    old_values = old.model.variables + old.optimizer.variables + [old.step]
    new_values = new.model.variables + new.optimizer.variables + [new.step]
    assert len(new_values) == len(old_values)
    for restored, saved in zip(new_values, old_values):
        np.testing.assert_array_equal(restored.numpy(), saved.numpy(), err_msg=saved.name)
