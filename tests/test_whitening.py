"""airbench's network: its whitening layer fitted to the training images at a
run's start and kept from then on, its identity-started convolutions."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import data
import model
from cifar10_research import dataset, run_folder
from cifar10_research.config import Config
from cifar10_research.learner import ADAPT_IMAGES, Learner
from cifar10_research.whitening import PatchWhitening
from tests.conftest import one_device, tiny_cifar, tiny_split, train_tiny, two_replicas


def fitted(images: np.ndarray) -> PatchWhitening:
    layer = PatchWhitening()
    layer.build(images.shape)
    layer.adapt(images)
    return layer


def test_the_first_half_of_its_outputs_is_white_and_the_second_its_negation():
    images = np.random.default_rng(0).random((200, 32, 32, 3)).astype(np.float32)
    images[..., 1] = (images[..., 0] + images[..., 1]) / 2  # Correlated channels.
    outputs = np.asarray(fitted(images)(images)).reshape(-1, 24)
    white = outputs[:, :12]
    np.testing.assert_allclose(white.mean(axis=0), 0, atol=1e-4)
    covariance = np.cov(white.T, bias=True)
    np.testing.assert_allclose(np.diag(covariance), 1, atol=0.01)  # Less by epsilon's share.
    np.testing.assert_allclose(covariance - np.diag(np.diag(covariance)), 0, atol=1e-4)
    np.testing.assert_allclose(outputs[:, 12:], -white, atol=1e-5)


def test_airbench_trains_what_airbench94_trains():
    """Its convolutions (1,967,616 weights), the whitening bias (24), batch
    norm's offsets (1,152) and the dense layer (2,560); not the whitening
    kernel, nor a batch-norm scale."""
    assert sum(int(np.prod(weight.shape))
               for weight in model.MODELS["airbench"]().trainable_weights) == 1_971_352


def test_its_batch_norms_move_40_percent_towards_each_batch_as_airbench94s():
    """airbench94's BatchNorm(momentum=0.6) passes PyTorch 1 - 0.6: running =
    0.6 * running + 0.4 * batch."""
    norms = [layer for layer in model.MODELS["airbench_64"]().layers
             if "moving_mean" in {weight.name for weight in layer.weights}]
    assert len(norms) == 6
    for norm in norms:
        inputs = np.random.default_rng(2).normal(3.0, 1.0, (4, 4, 4, norm.moving_mean.shape[0]))
        norm(inputs.astype(np.float32), training=True)
        np.testing.assert_allclose(norm.moving_mean.numpy(), 0.4 * inputs.mean(axis=(0, 1, 2)),
                                   rtol=1e-5)
        assert [weight.name for weight in norm.trainable_weights] == ["beta"]  # No scale.


def test_its_convolutions_start_by_passing_their_inputs_through():
    convolutions = [layer for layer in model.MODELS["airbench"]().layers
                    if isinstance(layer, keras.layers.Conv2D)]
    assert len(convolutions) == 6
    for convolution in convolutions:
        channels = convolution.kernel.shape[2]
        inputs = np.random.default_rng(1).standard_normal((2, 8, 8, channels)).astype(np.float32)
        outputs = np.asarray(convolution(inputs))
        np.testing.assert_allclose(outputs[..., :channels], inputs, atol=1e-6)
        if convolution.filters > channels:  # The rest as initialised.
            assert np.abs(outputs[..., channels:]).max() > 0.1


def whitening_kernel(path: str) -> np.ndarray:
    network = keras.models.load_model(path).layers[1]  # After the preprocessing.
    return next(layer for layer in network.layers
                if isinstance(layer, PatchWhitening)).kernel.numpy()


def test_a_run_fits_it_once_at_its_start_and_keeps_it_through_resume_and_export(tmp_path):
    """Resumed with other training images, the run keeps the kernel fitted to
    the first: it comes from the checkpoint, as in --mode=eval and the export."""
    first = tiny_cifar(train_rows=96)
    other = dataset.Cifar(tiny_split(96, seed=5), first.test, first.class_names)
    workdir = tmp_path / "airbench"
    train_tiny(workdir, cifar=first, model="airbench_64", epochs=1, learning_rate=0.01)
    train_tiny(workdir, cifar=other, model="airbench_64", epochs=2, learning_rate=0.01,
               force=True)
    expected = fitted(np.asarray(data.preprocessing()(first.train.images[:ADAPT_IMAGES])))
    np.testing.assert_allclose(whitening_kernel(os.path.join(workdir, run_folder.MODEL)),
                               expected.kernel.numpy(), atol=1e-6)


def test_a_weight_average_starts_from_the_fitted_weights():
    learner = Learner(one_device(), Config(model="airbench_64", ema_decay=0.999), 1)
    learner.adapt(tiny_split(64))
    fitted_kernel = learner.model.layers[0].kernel.numpy()
    with learner.averaged():
        np.testing.assert_array_equal(learner.model.layers[0].kernel.numpy(), fitted_kernel)


@pytest.mark.parametrize("strategy", [one_device, two_replicas])
def test_its_bias_trains_in_the_first_epochs_only_when_asked(strategy):
    """--whitening_bias_epochs=1 with 2 steps an epoch: steps 1 and 2 move the
    bias, steps 3 and 4 leave it; the rest trains on."""
    config = Config(model="airbench_64", batch_size=16, optimizer="sgd", learning_rate=0.1,
                    whitening_bias_epochs=1)
    learner = Learner(strategy(), config, steps_per_epoch=2)
    learner.adapt(tiny_split(64))
    iterator = iter(learner.distribute_dataset(
        data.train_dataset(tiny_split(64, seed=3), 16, seed=0, epoch=1)))
    whitening, last = learner.model.layers[0], learner.model.layers[-2]
    biases, kernels = [whitening.bias.numpy()], [last.kernel.numpy()]
    for _ in range(4):
        learner.train_steps(iterator, tf.constant(1))
        biases.append(whitening.bias.numpy())
        kernels.append(last.kernel.numpy())
    moved = [not np.array_equal(after, before) for before, after in zip(biases, biases[1:])]
    assert moved == [True, True, False, False]
    assert all(not np.array_equal(after, before) for before, after in zip(kernels, kernels[1:]))
