"""The networks of model.py: the tutorial's untouched, every one a softmax classifier."""

import numpy as np
import pytest

import model

PARAMETERS = {"simple_cnn": 167_562, "wide_cnn": 357_482, "fast_cnn": 113_738}
# 2 x multiply-adds of the convolutions and dense layers, as model.flops_per_image counts.
FLOPS = {"simple_cnn": 2 * (30 * 30 * 32 * 27 + 13 * 13 * 64 * 288 + 2304 * 64 + 64 * 10),
         "wide_cnn": 2 * (32 * 32 * 32 * 27 + 16 * 16 * 64 * 288 + 8 * 8 * 128 * 576
                          + 2048 * 128 + 128 * 10),
         "fast_cnn": 2 * (30 * 30 * 32 * 27 + 13 * 13 * 64 * 288 + 4 * 4 * 128 * 576
                          + 2048 * 10)}


def test_every_registered_model_has_its_parameter_and_flop_counts_recorded_here():
    assert set(model.MODELS) == set(PARAMETERS) == set(FLOPS)


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_builds_with_the_recorded_parameter_count(name):
    network = model.MODELS[name]()
    assert network.name == name.replace("_", "-")
    assert network.count_params() == PARAMETERS[name]


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_flops_per_image_count_the_multiply_adds_of_convolutions_and_dense_layers(name):
    assert model.flops_per_image(model.MODELS[name]()) == FLOPS[name]


def test_simple_cnn_has_the_tutorials_layers_in_order():
    assert [type(layer).__name__ for layer in model.simple_cnn().layers] == [
        "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dense"]


@pytest.mark.parametrize("name", sorted(PARAMETERS))
@pytest.mark.parametrize("training", [False, True])
def test_outputs_class_probabilities(name, training):
    images = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    probabilities = np.asarray(model.MODELS[name]()(images, training=training))
    assert probabilities.shape == (4, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert (probabilities >= 0).all()


def test_each_build_is_a_new_model():
    assert model.MODELS["wide_cnn"]() is not model.MODELS["wide_cnn"]()
