import numpy as np
import pytest
import tensorflow as tf

import data
from tests.conftest import tiny_split

SEED = tf.constant([7, 1], tf.int64)
OTHER_SEED = tf.constant([7, 2], tf.int64)


def _batch(size=16):
    images = np.random.default_rng(0).random((size, 32, 32, 3), dtype=np.float32)
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
def test_keeps_shape_dtype_and_range(mode):
    images, augmented = _augment(mode)
    assert augmented.shape == images.shape and augmented.dtype == np.float32
    assert augmented.min() >= 0.0 and augmented.max() <= 1.0


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


def test_crop_shifts_each_image_by_up_to_4_pixels_with_zeros():
    images, augmented = _augment("flip_crop", batch=_batch(6))
    for image, out in zip(images, augmented):
        assert any(np.array_equal(out, candidate) for candidate in _shifts(image))
    shifted = [not np.array_equal(out, image) and not np.array_equal(out, image[:, ::-1])
               for image, out in zip(images, augmented)]
    assert any(shifted)


def _split(rows=40):
    return tiny_split(rows, seed=3)


def _images(dataset):
    return [images.numpy() for images, _ in dataset]


def test_train_batches_are_augmented_reproducibly_with_static_shapes():
    split = _split()
    dataset = data.train_dataset(split, 8, seed=1, epoch=2, augmentation="flip_crop")
    assert dataset.element_spec[0].shape == (8, 32, 32, 3)
    augmented = _images(dataset)
    plain = _images(data.train_dataset(split, 8, seed=1, epoch=2))
    np.testing.assert_array_equal(
        augmented, _images(data.train_dataset(split, 8, seed=1, epoch=2,
                                              augmentation="flip_crop")))
    assert all(not np.array_equal(a, p) for a, p in zip(augmented, plain))
    assert not np.array_equal(augmented[0], augmented[1])


def test_a_resumed_epoch_augments_its_batches_as_the_whole_epoch_did():
    split = _split()
    whole = _images(data.train_dataset(split, 8, seed=1, epoch=2, augmentation="flip"))
    resumed = _images(data.train_dataset(split, 8, seed=1, epoch=2, skip_batches=3,
                                         augmentation="flip"))
    np.testing.assert_array_equal(resumed, whole[3:])


def test_evaluation_batches_are_never_augmented():
    split = _split()
    images = np.concatenate(_images(data.eval_dataset(split, 8)))
    np.testing.assert_array_equal(images, split.images.astype(np.float32) / 255.0)
