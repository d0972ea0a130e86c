"""What feeds the network: the tf.data pipelines, the training augmentations, and
the one preprocessing of images.

Reading the files is `cifar10_research.dataset`'s job; this file turns its
Splits (uint8 images in memory) into batches of uint8 images and one-hot
labels, which the training and evaluation steps preprocess. A new
augmentation is one function and one AUGMENTATIONS entry.
"""

from cifar10_research.dataset import Split  # First: TensorFlow, quietly.

import keras
import tensorflow as tf

CROP_PADDING = 4  # Pixels of zeros around an image before "flip_crop" cuts 32x32 out.


def preprocessing() -> keras.layers.Layer:
    """The network's input made from stored uint8 pixels: floats in [0, 1], as the
    Keras tutorial scales them. The one place this is written: the training and
    evaluation steps, the figures, the histograms, the benchmark and every
    exported model (`model.classifier`) apply this layer, so a user feeds raw
    0-255 pixels."""
    return keras.layers.Rescaling(1 / 255)


def train_dataset(split: Split, batch_size: int, seed: int, epoch: int,
                  skip_batches: int = 0, augmentation: str = "none") -> tf.data.Dataset:
    """One epoch of full batches, in an order fixed by (seed, epoch).

    The images that do not fill a last batch (50,000 % 64 = 16) are left out
    of this epoch only: the next epoch's order differs. Every step then has
    the full global batch, so the loss scaling is exact and the step keeps
    one static shape. `skip_batches` resumes an epoch where a checkpoint left it.
    Batch i of the epoch is augmented (see `augment`) with a seed made from
    (seed, epoch, i), so a resumed epoch's batches match the uninterrupted ones.
    """
    key = tf.constant([seed, epoch], tf.int64)
    order = tf.random.experimental.stateless_shuffle(tf.range(len(split)), seed=key)
    batches = _batches(split, order[skip_batches * batch_size:], batch_size, drop_remainder=True)
    if augmentation != "none":
        batches = batches.enumerate(start=skip_batches).map(
            lambda index, batch: augment(*batch, augmentation, tf.random.fold_in(key, index)),
            num_parallel_calls=tf.data.AUTOTUNE)
    return batches.prefetch(tf.data.AUTOTUNE)


def eval_dataset(split: Split, batch_size: int) -> tf.data.Dataset:
    """Every image once, in order, in full batches: the last is padded.

    Padding rows repeat image 0 with an all-zero label, which the metrics
    give zero weight. Full batches split evenly over any number of replicas
    and workers; a replica handed an empty batch fails in TensorFlow's CPU
    convolution, and a ragged last batch would also mean a second trace.
    """
    padding = -len(split) % batch_size
    order = tf.concat([tf.range(len(split)), tf.fill([padding], -1)], axis=0)
    return _batches(split, order, batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _batches(split: Split, order: tf.Tensor, batch_size: int,
             drop_remainder: bool) -> tf.data.Dataset:
    """Batches of (uint8 images, one-hot float32 labels) in `order`.

    An index of -1 in `order` gives a padding row with an all-zero label.
    The split stays in memory as uint8 (150 MB for the training set): that is
    the cache. Batching indices and gathering a whole batch at once keeps the
    pipeline vectorised, and a reshuffle moves indices, not images.
    """
    images, labels = split.tensors

    def gather(indices):
        rows = tf.maximum(indices, 0)
        batch_labels = tf.where(indices >= 0, tf.gather(labels, rows), -1)
        return tf.gather(images, rows), tf.one_hot(batch_labels, split.num_classes)

    return (tf.data.Dataset.from_tensor_slices(order)
            .batch(batch_size, drop_remainder=drop_remainder)
            .map(gather, num_parallel_calls=tf.data.AUTOTUNE))


def augment(images: tf.Tensor, labels: tf.Tensor, mode: str,
            seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """A batch of images (B, 32, 32, 3), each randomly altered by `mode`.

    `mode` names an AUGMENTATIONS entry. The random ops are stateless, fed
    from `seed` (shape [2], int64), so the same seed gives the same batch on a
    rerun, a resumed run and every worker. The whole batch is done in a few
    vectorised ops; shapes, dtypes and the range of values stay as they were.
    """
    return AUGMENTATIONS[mode](images, seed), labels


def _unchanged(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    return images


def _random_flip(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Mirrors each image left-right with probability 1/2."""
    flip_seed = tf.random.split(seed)[0]
    flip = tf.random.stateless_uniform([tf.shape(images)[0]], flip_seed) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)


def _random_flip_and_crop(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Flips, then cuts a 32x32 window at a random offset out of the image
    zero-padded by CROP_PADDING pixels: a shift of up to 4 pixels each way."""
    crop_seed = tf.random.split(seed)[1]
    return _random_crop(_random_flip(images, seed), crop_seed)


def _random_crop(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Each padded image's window, taken by gathering its rows, then its columns."""
    height, width = images.shape[1:3]
    padding = [[0, 0], [CROP_PADDING, CROP_PADDING], [CROP_PADDING, CROP_PADDING], [0, 0]]
    offsets = tf.random.stateless_uniform([tf.shape(images)[0], 2], seed, minval=0,
                                          maxval=2 * CROP_PADDING + 1, dtype=tf.int32)
    rows = offsets[:, :1] + tf.range(height)  # (B, height): row indices into the padded image.
    columns = offsets[:, 1:] + tf.range(width)
    images = tf.gather(tf.pad(images, padding), rows, axis=1, batch_dims=1)
    return tf.gather(images, columns, axis=2, batch_dims=1)


# Training-batch augmentations by name, for --augment; evaluation is never augmented.
AUGMENTATIONS = {"none": _unchanged, "flip": _random_flip, "flip_crop": _random_flip_and_crop}
