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


def _draw(seed=SEED, size=16, epoch=1):
    """The draw of a batch of the `size` images of a split, in order."""
    return data.Draw(seed, tf.range(size), epoch, tf.constant([7, data.RUN_DRAWS], tf.int64),
                     size)


def _augment(mode, seed=SEED, batch=None):
    images, labels = batch or _batch()
    out_images, out_labels = data.augment(images, labels, mode, _draw(seed))
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


@pytest.mark.parametrize("mode", data.AUGMENTATIONS)
def test_a_resumed_epoch_augments_its_batches_as_the_whole_epoch_did(mode):
    split = _split()
    whole = _images(data.train_dataset(split, 8, seed=1, epoch=2, augmentation=mode))
    resumed = _images(data.train_dataset(split, 8, seed=1, epoch=2, skip_batches=3,
                                         augmentation=mode))
    np.testing.assert_array_equal(resumed, whole[3:])


def _flipped(split, seed: int, epoch: int) -> np.ndarray:
    """Whether "alternating_flip" mirrors each image of `split` (by its index) in `epoch`."""
    flipped = np.zeros(len(split), bool)
    order = data.train_dataset(split, 8, seed=seed, epoch=epoch)
    augmented = data.train_dataset(split, 8, seed=seed, epoch=epoch,
                                   augmentation="alternating_flip")
    seen = 0
    for (images, _), (plain, _) in zip(augmented, order):
        for out, image in zip(images.numpy(), plain.numpy()):
            index = next(i for i, stored in enumerate(split.images)
                         if np.array_equal(stored, image))
            flipped[index] = not np.array_equal(out, image)
            assert flipped[index] <= np.array_equal(out, image[:, ::-1])
            seen += 1
    assert seen == len(split)
    return flipped


def test_alternating_flips_mirror_each_image_in_every_other_epoch():
    split = _split(rows=48)
    first, second, third = (_flipped(split, seed=1, epoch=epoch) for epoch in (1, 2, 3))
    assert 0 < first.sum() < len(split)
    np.testing.assert_array_equal(second, ~first)
    np.testing.assert_array_equal(third, first)
    assert not np.array_equal(_flipped(split, seed=2, epoch=1), first)  # Another run's half.


def _translations(image):
    """Every image "alternating_flip_translate" may make of `image`: 2 flips x 5 x 5
    offsets into it reflected 2 pixels out."""
    found = []
    for flipped in (image, image[:, ::-1]):
        padded = np.pad(flipped, [(2, 2), (2, 2), (0, 0)], mode="reflect")
        found += [padded[y:y + 32, x:x + 32] for y in range(5) for x in range(5)]
    return found


def test_translations_move_images_by_up_to_2_pixels_reflected():
    split = _split()
    augmented = data.train_dataset(split, 8, seed=1, epoch=1,
                                   augmentation="alternating_flip_translate")
    plain = data.train_dataset(split, 8, seed=1, epoch=1)
    moved = 0
    for (images, _), (plain_images, _) in zip(augmented, plain):
        for out, image in zip(images.numpy(), plain_images.numpy()):
            assert any(np.array_equal(out, candidate) for candidate in _translations(image))
            moved += not (np.array_equal(out, image) or np.array_equal(out, image[:, ::-1]))
    assert moved > len(split) // 2  # 24 of the 25 offsets move.


def test_evaluation_gives_the_same_results_whatever_augmentation_is_named():
    split = _split()
    results = []
    for mode in data.AUGMENTATIONS:
        keras.utils.set_random_seed(0)  # The same initial weights for every mode.
        learner = Learner(one_device(), Config(batch_size=8, augment=mode), steps_per_epoch=5)
        results.append((learner.evaluate(split), learner.confusion.result().tolist()))
    assert results[0][0]["count"] == len(split)
    assert all(result == results[0] for result in results[1:])
