import numpy as np

import model


def test_simple_cnn_matches_the_tutorial():
    network = model.simple_cnn()
    assert network.name == "simple-cnn"
    assert network.count_params() == 167_562
    assert [type(layer).__name__ for layer in network.layers] == [
        "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dense"]


def test_simple_cnn_outputs_class_probabilities():
    images = np.random.default_rng(0).random((3, 32, 32, 3), dtype=np.float32)
    probabilities = np.asarray(model.simple_cnn()(images))
    assert probabilities.shape == (3, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert (probabilities >= 0).all()
