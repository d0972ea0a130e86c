"""The tf.data pipelines (order, full and padded batches) and the preprocessing."""

import numpy as np

import data
from tests.conftest import tiny_split


def _split(rows):
    return tiny_split(rows, seed=7)


def _order(dataset, split):
    """Recovers which examples a dataset (or list of batches) yielded, from their pixels."""
    flat = split.images.reshape(len(split), -1).astype(int)
    found = []
    for images, _ in dataset:
        for image in images.numpy().reshape(len(images), -1).astype(int):
            found.append(int(np.argmin(np.abs(flat - image).sum(axis=1))))
    return found


def test_preprocessing_scales_the_stored_pixels_to_0_1_as_the_tutorial_does():
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    inputs = np.asarray(data.preprocessing()(pixels))
    assert inputs.dtype == np.float32
    np.testing.assert_allclose(inputs, pixels / 255.0, rtol=1e-6)


def test_train_batches_are_full_stored_images_with_their_own_one_hot_labels():
    split = _split(100)
    dataset = data.train_dataset(split, batch_size=32, seed=0, epoch=1)
    assert dataset.element_spec[0].shape == (32, 32, 32, 3)
    batches = list(dataset)
    assert len(batches) == 3  # 100 // 32: the 4 left over wait for another epoch.
    rows = _order(batches, split)
    assert len(set(rows)) == 96
    images = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    assert images.dtype == np.uint8
    np.testing.assert_array_equal(images, split.images[rows])
    np.testing.assert_array_equal(labels, np.eye(10, dtype=np.float32)[split.labels[rows]])


def test_each_epoch_reshuffles_reproducibly_from_the_seed():
    split = _split(64)
    epoch1 = _order(data.train_dataset(split, 16, seed=3, epoch=1), split)
    assert sorted(epoch1) == list(range(64))
    assert epoch1 == _order(data.train_dataset(split, 16, seed=3, epoch=1), split)
    assert epoch1 != _order(data.train_dataset(split, 16, seed=3, epoch=2), split)
    assert epoch1 != _order(data.train_dataset(split, 16, seed=4, epoch=1), split)


def test_evaluation_covers_every_image_once_and_pads_the_last_batch():
    split = _split(70)
    batches = list(data.eval_dataset(split, batch_size=32))
    assert [len(labels) for _, labels in batches] == [32, 32, 32]
    images = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    np.testing.assert_array_equal(images[:70], split.images)
    np.testing.assert_array_equal(labels[:70], np.eye(10, dtype=np.float32)[split.labels])
    # Padding repeats image 0 with an all-zero label, which the metrics weigh 0.
    np.testing.assert_array_equal(images[70:], np.repeat(split.images[:1], 26, axis=0))
    np.testing.assert_array_equal(labels[70:], np.zeros((26, 10)))
