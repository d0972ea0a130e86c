"""The tf.data pipelines: order, scaling, full and padded batches."""

import numpy as np
import tensorflow as tf

import data
from tests.conftest import tiny_split


def _split(rows):
    return tiny_split(rows, seed=7)


def test_train_batches_are_scaled_one_hot_and_full():
    split = _split(100)
    batches = list(data.train_dataset(split, batch_size=32, seed=0, epoch=1))
    assert len(batches) == 3  # 100 // 32: the 4 left over wait for another epoch.
    for images, labels in batches:
        assert images.shape == (32, 32, 32, 3) and images.dtype == tf.float32
        assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1.0
        assert labels.shape == (32, 10)
        np.testing.assert_array_equal(tf.reduce_sum(labels, axis=1), np.ones(32))


def _order(dataset, split):
    """Recovers which examples a dataset yielded, from their pixels."""
    flat = split.images.reshape(len(split), -1).astype(np.float32) / 255.0
    found = []
    for images, _ in dataset:
        for image in images.numpy().reshape(len(images), -1):
            found.append(int(np.argmin(np.abs(flat - image).sum(axis=1))))
    return found


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
    labels = np.concatenate([labels for _, labels in batches])
    np.testing.assert_array_equal(np.argmax(labels[:70], axis=1), split.labels)
    np.testing.assert_array_equal(labels[70:], np.zeros((26, 10)))
    assert _order(data.eval_dataset(split, 32), split)[:70] == list(range(70))
