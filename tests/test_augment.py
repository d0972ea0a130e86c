import keras
import numpy as np
import pytest
import tensorflow as tf

import data
from cifar10_research.config import Config
from cifar10_research.learner import Learner
from tests.conftest import one_device, tiny_split

SEED = tf.constant([7, 1], tf.int64)
OTHER_SEED = tf.constant([7, 2], tf.int64)


def _batch(size=16):
    images = np.random.default_rng(0).integers(0, 256, (size, 32, 32, 3), dtype=np.uint8)
    labels = tf.one_hot(np.arange(size) % 10, 10)
    return tf.constant(images), labels


def _augment(mode, seed=SEED, batch=None):
    images, labels = batch or _batch()
    out_images, out_labels = data.augment(images, labels, mode, seed)
    np.testing.assert_array_equal(out_labels, labels)
    return images.numpy(), out_images.numpy()


def _shifts(image):
    """Every image "flip_crop" may make of `image`: 2 flips x 9 x 9 offsets."""
    found = []
    for flipped in (image, image[:, ::-1]):
        padded = np.pad(flipped, [(4, 4), (4, 4), (0, 0)])
        found += [padded[y:y + 32, x:x + 32] for y in range(9) for x in range(9)]
    return found


@pytest.mark.parametrize("mode", data.AUGMENTATIONS)
def test_keeps_shape_dtype_and_values(mode):
    """The stored uint8 pixels, moved (or the zeros of a crop's padding)."""
    images, augmented = _augment(mode)
    assert augmented.shape == images.shape and augmented.dtype == np.uint8
    assert set(np.unique(augmented)) <= set(np.unique(images)) | {0}


def test_none_is_the_identity():
    images, augmented = _augment("none")
    np.testing.assert_array_equal(augmented, images)


def test_flip_mirrors_some_images_and_leaves_the_rest():
    images, augmented = _augment("flip")
    flipped = [np.array_equal(out, image[:, ::-1]) for out, image in zip(augmented, images)]
    kept = [np.array_equal(out, image) for out, image in zip(augmented, images)]
    assert all(f != k for f, k in zip(flipped, kept))
    assert 0 < sum(flipped) < len(images)


@pytest.mark.parametrize("mode", ["flip", "flip_crop"])
def test_the_same_seed_gives_the_same_batch_and_another_seed_another(mode):
    _, first = _augment(mode)
    _, again = _augment(mode)
    _, other = _augment(mode, seed=OTHER_SEED)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def _split(rows=40):
    return tiny_split(rows, seed=3)


def _images(dataset):
    return [images.numpy() for images, _ in dataset]


def test_train_batches_are_the_plain_ones_flipped_and_shifted_reproducibly():
    split = _split()
    augmented = data.train_dataset(split, 8, seed=1, epoch=2, augmentation="flip_crop")
    assert augmented.element_spec[0].shape == (8, 32, 32, 3)
    plain = data.train_dataset(split, 8, seed=1, epoch=2)
    shifted = 0
    for (images, labels), (plain_images, plain_labels) in zip(augmented, plain):
        np.testing.assert_array_equal(labels, plain_labels)
        for out, image in zip(images.numpy(), plain_images.numpy()):
            assert any(np.array_equal(out, candidate) for candidate in _shifts(image))
            shifted += not (np.array_equal(out, image) or np.array_equal(out, image[:, ::-1]))
    assert shifted > len(split) // 2  # 160 of the 162 outcomes shift (or flip and shift).
    again = data.train_dataset(split, 8, seed=1, epoch=2, augmentation="flip_crop")
    np.testing.assert_array_equal(_images(again), _images(augmented))


def test_a_resumed_epoch_augments_its_batches_as_the_whole_epoch_did():
    split = _split()
    whole = _images(data.train_dataset(split, 8, seed=1, epoch=2, augmentation="flip"))
    resumed = _images(data.train_dataset(split, 8, seed=1, epoch=2, skip_batches=3,
                                         augmentation="flip"))
    np.testing.assert_array_equal(resumed, whole[3:])


def test_evaluation_gives_the_same_results_whatever_augmentation_is_named():
    split = _split()
    results = []
    for mode in data.AUGMENTATIONS:
        keras.utils.set_random_seed(0)  # The same initial weights for every mode.
        learner = Learner(one_device(), Config(batch_size=8, augment=mode), steps_per_epoch=5)
        results.append((learner.evaluate(split), learner.confusion.result().tolist()))
    assert results[0][0]["count"] == len(split)
    assert all(result == results[0] for result in results[1:])
