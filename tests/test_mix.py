"""Mixup and cutmix of training batches: the stated blends of each image and its
partner (the batch reversed), drawn from (seed, epoch, batch), and what a step
measures on them."""

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
MIXES = ["mixup", "cutmix"]
SIZE = 16


def _batch(images=None):
    """Random images (or `images`); image i of class i % 10, never its partner's class
    (15 - i), so a mixed label tells how much of each it holds."""
    if images is None:
        images = np.random.default_rng(0).integers(0, 256, (SIZE, 32, 32, 3), dtype=np.uint8)
    return tf.constant(images), tf.one_hot(np.arange(len(images)) % 10, 10)


def _mix(mode, seed=SEED, alpha=1.0, batch=None):
    """The batch's images and labels, and their mix, as numpy arrays."""
    images, labels = batch or _batch()
    mixed, mixed_labels = data.mix(images, labels, mode, alpha, seed)
    return images.numpy(), labels.numpy(), mixed.numpy(), mixed_labels.numpy()


def _own_share(labels, mixed_labels):
    """How much of each image's own label its mixed label holds: lam."""
    return (labels * mixed_labels).sum(axis=1)


def test_mixup_blends_each_image_and_label_with_its_partners_by_a_ratio_of_its_own():
    images, labels, mixed, mixed_labels = _mix("mixup")
    own = _own_share(labels, mixed_labels)
    assert mixed.dtype == np.float32 and mixed.shape == images.shape
    assert len(np.unique(own)) == SIZE and np.all((0 < own) & (own < 1))
    expected = own[:, None] * labels + (1 - own[:, None]) * labels[::-1]
    np.testing.assert_allclose(mixed_labels, expected, rtol=0, atol=1e-7)
    blend = own[:, None, None, None] * images + (1 - own[:, None, None, None]) * images[::-1]
    np.testing.assert_allclose(mixed, blend, rtol=0, atol=1e-3)  # Pixels 0-255.


@pytest.mark.parametrize("alpha", [0.2, 1.0, 5.0])
def test_mixup_draws_its_ratios_from_beta_alpha_alpha(alpha):
    """Beta(a, a) has mean 1/2 and variance 1 / (4 (2a + 1)); over 4,000 images."""
    pixels = np.zeros((4000, 1, 1, 1), np.uint8)
    own = _own_share(*_mix("mixup", alpha=alpha, batch=_batch(pixels))[1::2])
    assert own.mean() == pytest.approx(0.5, abs=0.02)
    assert own.var() == pytest.approx(1 / (4 * (2 * alpha + 1)), rel=0.1)


def _numbered_images(size=SIZE):
    """Image i: every pixel i, so a pixel tells which image it came from."""
    return np.broadcast_to(np.arange(size, dtype=np.uint8)[:, None, None, None],
                           (size, 32, 32, 3)).copy()


def _partner_box(mixed, index, size=SIZE):
    """Where image `index` holds its partner's pixels: checked to be a box, all else its own."""
    partner = mixed[index] == size - 1 - index
    assert np.all(partner | (mixed[index] == index))
    assert np.all(partner == partner[:, :, :1])  # Whole pixels.
    box = partner[:, :, 0]
    rows, columns = box.any(axis=1), box.any(axis=0)
    np.testing.assert_array_equal(box, rows[:, None] & columns[None, :])
    for covered in (np.flatnonzero(rows), np.flatnonzero(columns)):  # Each without gaps.
        assert len(covered) == 0 or covered[-1] - covered[0] + 1 == len(covered)
    return box


def test_cutmix_pastes_a_box_of_the_partner_and_weighs_the_labels_by_its_area():
    images, labels, mixed, mixed_labels = _mix("cutmix", batch=_batch(_numbered_images()))
    assert mixed.dtype == np.uint8
    boxes = [_partner_box(mixed, index) for index in range(SIZE)]
    areas = np.array([box.mean() for box in boxes])
    np.testing.assert_array_equal(mixed_labels, (1 - areas[:, None]) * labels
                                  + areas[:, None] * labels[::-1])
    assert len(np.unique(areas)) > SIZE // 2  # A box of its own for each image.
    edges = [box[0].any() or box[-1].any() or box[:, 0].any() or box[:, -1].any()
             for box in boxes]
    assert 0 < sum(edges) < SIZE  # Some boxes were clipped by the image's edges.


def test_cutmix_boxes_have_sides_of_the_square_root_of_the_partners_share():
    """With alpha large, lam is near 1/2: a box's side away from the image's edges is 22
    or 23 pixels (32 sqrt(1/2) = 22.6); one clipped by an edge is shorter."""
    _, _, mixed, _ = _mix("cutmix", alpha=1000.0, batch=_batch(_numbered_images(200)))
    unclipped = []
    for index in range(200):
        box = _partner_box(mixed, index, size=200)
        for covered in (box.any(axis=1), box.any(axis=0)):  # Its rows, its columns.
            assert 1 <= covered.sum() <= 23
            if not (covered[0] or covered[-1]):
                unclipped.append(covered.sum())
    assert len(unclipped) > 50 and set(unclipped) == {22, 23}


@pytest.mark.parametrize("alpha", [0.01, 1.0, 100.0])
@pytest.mark.parametrize("mode", MIXES)
def test_labels_still_sum_to_one_and_pixels_stay_in_range(mode, alpha):
    """Exactly 1: the metrics count each training image by its label's sum."""
    _, _, mixed, mixed_labels = _mix(mode, alpha=alpha)
    np.testing.assert_array_equal(mixed_labels.sum(axis=1), np.ones(SIZE, np.float32))
    assert np.isfinite(mixed).all() and 0 <= mixed.min() and mixed.max() <= 255


@pytest.mark.parametrize("mode", MIXES)
def test_the_same_seed_gives_the_same_mix_and_another_seed_another(mode):
    first, again, other = (_mix(mode, seed)[2:] for seed in (SEED, SEED, OTHER_SEED))
    for array in range(2):
        np.testing.assert_array_equal(first[array], again[array])
        assert not np.array_equal(first[array], other[array])


def _batches(mode, **options):
    """The batches of an epoch of 40 images, flipped and cropped, then mixed by `mode`."""
    dataset = data.train_dataset(tiny_split(40, seed=3), 8, seed=1, epoch=2,
                                 augmentation="flip_crop", mixing=mode, **options)
    assert dataset.element_spec[0].shape == (8, 32, 32, 3)  # Static.
    return [(images.numpy(), labels.numpy()) for images, labels in dataset]


@pytest.mark.parametrize("mode", MIXES)
def test_a_resumed_epoch_mixes_its_batches_as_the_whole_epoch_did(mode):
    whole, resumed = _batches(mode), _batches(mode, skip_batches=3)
    assert len(resumed) == 2
    for (images, labels), (whole_images, whole_labels) in zip(resumed, whole[3:]):
        np.testing.assert_array_equal(images, whole_images)
        np.testing.assert_array_equal(labels, whole_labels)


def test_cutmix_mixes_the_flipped_and_cropped_batch_the_augmentation_alone_gives():
    """The flips and crops draw as without a mix: each pixel is the augmented image's
    own or its partner's."""
    for (mixed, labels), (augmented, plain_labels) in zip(_batches("cutmix"),
                                                          _batches("none")):
        assert np.all((mixed == augmented) | (mixed == augmented[::-1]))
        assert not np.array_equal(mixed, augmented)
        assert not np.array_equal(labels, plain_labels)


def test_a_mixed_step_takes_the_soft_labels_loss_and_the_dominant_labels_accuracy():
    keras.utils.set_random_seed(0)
    learner = Learner(one_device(), Config(batch_size=SIZE), steps_per_epoch=2)
    batches = data.train_dataset(tiny_split(32, seed=3), SIZE, seed=0, epoch=1, mixing="mixup")
    images, labels = (tensor.numpy() for tensor in next(iter(batches)))
    assert labels.max(axis=1).min() < 0.9  # Mixed.
    logits = learner.model(learner.preprocess(images), training=True).numpy().astype(np.float64)
    learner.train_steps(iter(learner.distribute_dataset(batches)), tf.constant(1))
    sums = learner.train_totals.sums()
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    assert sums["count"] == SIZE
    assert sums["loss"] == pytest.approx(-(labels * log_p).sum(), rel=1e-5)
    predicted, dominant = logits.argmax(axis=1), labels.argmax(axis=1)
    minor = np.where(labels > 0, labels, 2).argmin(axis=1)  # The smaller share of each.
    assert np.sum(predicted == dominant) != np.sum(predicted == minor)  # Told apart.
    assert sums["accuracy"] == np.sum(predicted == dominant)
