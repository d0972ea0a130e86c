"""BatchNorm, in one fused op, computes what Keras' BatchNormalization computes:
forward and backward, its moving statistics, under mixed precision and over
replicas; and it saves, loads and exports like any Keras layer."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import data
import model
from cifar10_research import batch_norm_benchmark, precision
from cifar10_research.batch_norm import BatchNorm
from cifar10_research.config import Config
from cifar10_research.learner import Learner
from tests.conftest import one_device, tiny_split, two_replicas

# Small batches of few pixels: Bessel's correction of the variance, 18/17 here, shows.
SHAPE = (2, 3, 3, 4)
OPTIONS = [{}, {"scale": False}, {"center": False}, {"scale": False, "center": False},
           {"momentum": 0.9, "epsilon": 1e-4}]
# Relative tolerances of each compute dtype's outputs (float16 keeps 11 bits, bfloat16 8).
TOLERANCE = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}


def images(seed: int, shape=SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).normal(2.0, 3.0, shape).astype(np.float32)


def twins(**options):
    """BatchNorm and Keras' layer with `options`, built, with the same random gamma and beta."""
    ours, keras_layer = BatchNorm(**options), keras.layers.BatchNormalization(**options)
    for layer in (ours, keras_layer):
        layer.build(SHAPE)
        rng = np.random.default_rng(7)
        for weight in layer.trainable_weights:
            weight.assign(rng.normal(1.0, 0.5, weight.shape).astype(np.float32))
    assert [w.name for w in ours.weights] == [w.name for w in keras_layer.weights]
    return ours, keras_layer


def forward_and_gradients(layer, inputs, training: bool):
    """[outputs, the gradients of a weighted sum of them with respect to the
    inputs and each trainable weight], of one compiled call."""
    weights = tf.constant(images(9, inputs.shape))

    @tf.function
    def step(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = layer(inputs, training=training)
            loss = tf.reduce_sum(tf.cast(outputs, tf.float32) * weights)
        return outputs, tape.gradient(loss, [inputs, *layer.trainable_weights])
    outputs, gradients = step(tf.constant(inputs))
    return [np.asarray(values, np.float32) for values in (outputs, *gradients)]


def assert_same(ours, theirs, rtol=1e-5):
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * np.abs(theirs).max())


def assert_same_statistics(ours, keras_layer):
    for name in ("moving_mean", "moving_variance"):
        assert_same(getattr(ours, name).numpy(), getattr(keras_layer, name).numpy())


@pytest.mark.parametrize("options", OPTIONS)
def test_trains_and_infers_like_keras_batch_normalization(options):
    ours, keras_layer = twins(**options)
    for seed in range(4):  # Training steps: the moving statistics move each time.
        for mine, theirs in zip(*(forward_and_gradients(layer, images(seed), training=True)
                                  for layer in (ours, keras_layer))):
            assert_same(mine, theirs)
    assert_same_statistics(ours, keras_layer)
    assert not np.allclose(ours.moving_variance.numpy(), 1.0)
    for mine, theirs in zip(*(forward_and_gradients(layer, images(5), training=False)
                              for layer in (ours, keras_layer))):
        assert_same(mine, theirs)


def test_the_options_and_their_weights():
    ours, keras_layer = twins(scale=False, momentum=0.9)
    assert ours.gamma is None and ours.beta is not None
    assert [w.name for w in ours.trainable_weights] == ["beta"]
    assert ours.momentum == 0.9 and ours.epsilon == keras_layer.epsilon == 1e-3
    assert BatchNorm().momentum == keras_layer.__class__().momentum == 0.99


def test_a_frozen_layer_normalises_by_its_moving_statistics_and_keeps_them():
    ours, keras_layer = twins()
    forward_and_gradients(ours, images(0), training=True)
    forward_and_gradients(keras_layer, images(0), training=True)
    ours.trainable = keras_layer.trainable = False
    statistics = [ours.moving_mean.numpy(), ours.moving_variance.numpy()]
    assert_same(np.asarray(ours(images(1), training=True)),
                np.asarray(keras_layer(images(1), training=True)))
    np.testing.assert_array_equal(ours.moving_mean.numpy(), statistics[0])
    np.testing.assert_array_equal(ours.moving_variance.numpy(), statistics[1])


@pytest.mark.parametrize("policy", ["float16", "bfloat16"])
def test_mixed_precision_normalises_in_half_and_keeps_float32_statistics(policy):
    with precision.dtype_policy(policy):
        ours, keras_layer = twins()
    for seed in range(3):
        for mine, theirs in zip(*(forward_and_gradients(layer, images(seed), training=True)
                                  for layer in (ours, keras_layer))):
            assert_same(mine, theirs, TOLERANCE[policy])
    assert ours(images(0)).dtype == keras_layer(images(0)).dtype == policy
    assert {w.dtype for w in ours.weights} == {"float32"}
    assert_same_statistics(ours, keras_layer)


def train_on_replicas(strategy, layer, inputs):
    """Training calls of `layer` on batches of 4 of `inputs`, 2 on each replica."""
    train = tf.function(lambda batch: strategy.run(
        lambda replica_batch: layer(replica_batch, training=True), args=(batch,)))
    for batch in strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensor_slices(inputs).batch(4)):
        train(batch)


def test_each_replica_keeps_its_own_batch_statistics_as_in_keras():
    """Keras' default (synchronized=False): each replica normalises by its own
    share of the batch and averages it into its copy of the moving statistics;
    the first replica's copy is what is read and saved."""
    strategy = two_replicas()
    with strategy.scope():
        ours, keras_layer = twins()
    for layer in (ours, keras_layer):
        train_on_replicas(strategy, layer, np.concatenate([images(0), images(1)]))
    for name in ("moving_mean", "moving_variance"):
        mine, theirs = getattr(ours, name), getattr(keras_layer, name)
        assert mine.value.aggregation == theirs.value.aggregation
        assert mine.value.synchronization == theirs.value.synchronization
        first, second = (copy.numpy() for copy in mine.value.values)
        assert not np.allclose(first, second)
        for my_copy, their_copy in zip(mine.value.values, theirs.value.values):
            assert_same(my_copy.numpy(), their_copy.numpy())
        np.testing.assert_array_equal(mine.numpy(), first)


def network_run(network: str, strategy, replicas: int, steps: int = 4):
    """The losses of `steps` training steps of `network` on 8 images each,
    copied onto each of `replicas` replicas, and the weights after them."""
    keras.utils.set_random_seed(0)
    learner = Learner(strategy, Config(model=network, batch_size=8 * replicas,
                                       learning_rate=1e-3), steps_per_epoch=steps)
    split = tiny_split(8 * steps)
    batches = data.train_dataset(split, 8, seed=0, epoch=1).map(
        lambda images, labels: (tf.concat([images] * replicas, 0),
                                tf.concat([labels] * replicas, 0)))
    iterator = iter(learner.distribute_dataset(batches))
    losses = []
    for _ in range(steps):
        learner.train_totals.reset()
        learner.train_steps(iterator, tf.constant(1))
        sums = learner.train_totals.sums()
        losses.append(sums["loss"] / sums["count"])
    return losses, learner.model


@pytest.mark.parametrize("network", ["wide_cnn", "airbench_64"])
def test_two_replicas_train_a_network_with_batch_norm_like_one_device(network):
    """Each replica gets the one device's batch: its batch statistics, hence
    every step, must be the one device's."""
    single_losses, single = network_run(network, one_device(), 1)
    mirrored_losses, mirrored = network_run(network, two_replicas(), 2)
    np.testing.assert_allclose(mirrored_losses, single_losses, rtol=1e-5)
    assert single_losses[-1] < single_losses[0]
    assert len(mirrored.weights) == len(single.weights) > 0
    for mirrored_weight, single_weight in zip(mirrored.weights, single.weights):
        copies = getattr(mirrored_weight.value, "values", [mirrored_weight.value])
        for copy in copies:
            np.testing.assert_allclose(copy.numpy(), single_weight.numpy(), atol=1e-5,
                                       err_msg=single_weight.path)


def test_a_classifier_with_it_saves_loads_and_exports_to_the_same_predictions(tmp_path):
    keras.utils.set_random_seed(0)
    network = model.wide_cnn()
    rng = np.random.default_rng(3)
    for layer in network.layers:
        if isinstance(layer, BatchNorm):  # Statistics as training leaves them.
            for weight in layer.weights:
                weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype(np.float32))
    classifier = model.classifier(network)
    classifier.save(str(tmp_path / "model.keras"))
    classifier.export(str(tmp_path / "saved_model"), verbose=False)
    pixels = tiny_split(6).images
    expected = classifier(pixels).numpy()
    loaded = keras.models.load_model(str(tmp_path / "model.keras"))
    np.testing.assert_allclose(loaded(pixels).numpy(), expected, rtol=1e-6)
    exported = tf.saved_model.load(str(tmp_path / "saved_model"))
    np.testing.assert_allclose(exported.serve(tf.constant(pixels)).numpy(), expected, rtol=1e-6)


def test_its_options_are_saved_with_the_model(tmp_path):
    options = {"momentum": 0.9, "epsilon": 1e-4, "center": False, "scale": False}
    network = keras.Sequential([keras.Input(SHAPE[1:]), BatchNorm(**options)])
    network.save(str(tmp_path / "model.keras"))
    (loaded,) = keras.models.load_model(str(tmp_path / "model.keras")).layers
    assert isinstance(loaded, BatchNorm)
    assert {key: loaded.get_config()[key] for key in options} == options


def test_inputs_other_than_nhwc_images_are_refused():
    with pytest.raises(ValueError, match=r"BatchNorm normalises 4-D NHWC inputs \(batch, "
                                         r"height, width, channels\), got shape \(None, 8\)"):
        keras.Sequential([keras.Input((8,)), BatchNorm()])


def test_an_epsilon_below_the_fused_kernels_least_is_refused():
    with pytest.raises(ValueError, match=r"BatchNorm needs epsilon >= 1.001e-05 \(the fused "
                                         r"kernel's least\), got 1e-05"):
        BatchNorm(epsilon=1e-5)


@pytest.mark.parametrize("network", ["wide_cnn", "fast_cnn", "resnet20"])
def test_the_benchmarks_variants_differ_only_in_their_batch_norm(network):
    kinds = {name: [type(layer).__name__ for layer in batch_norm_benchmark.with_batch_norm(
        network, layer).layers] for name, layer in batch_norm_benchmark.VARIANTS.items()}
    fused = kinds["fused"]
    assert fused.count("BatchNorm") == fused.count("Conv2D") > 0  # One for each.
    for name, kind in (("keras", "BatchNormalization"), ("none", "Identity")):
        assert kinds[name] == [kind if layer == "BatchNorm" else layer for layer in fused]
    if network != "fast_cnn":  # Their own shape; fast_cnn, without batch norm, gets some.
        own = [type(layer).__name__ for layer in model.MODELS[network]().layers]
        assert fused == own


def test_the_benchmarks_variants_keep_the_batch_norms_settings(monkeypatch):
    settings = {"momentum": 0.6, "epsilon": 0.01, "center": True, "scale": False}
    monkeypatch.setitem(model.MODELS, "airbench_like", lambda: keras.Sequential([
        keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), BatchNorm(**settings)]))
    for name in ("keras", "fused"):
        norm = batch_norm_benchmark.with_batch_norm("airbench_like",
                                                    batch_norm_benchmark.VARIANTS[name]).layers[1]
        assert {setting: norm.get_config()[setting] for setting in settings} == settings
