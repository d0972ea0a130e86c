"""What feeds the network: the tf.data pipelines, the training augmentations and
mixes, and the one preprocessing of images.

Reading the files is `cifar10_research.dataset`'s job; this file turns its
Splits (uint8 images in memory) into batches of uint8 images and one-hot
labels, which the training and evaluation steps preprocess. Training batches
may be mixed (mixup, cutmix): their labels are then soft, and mixup's images
float32 on the same 0-255 scale (the preprocessing is affine, so mixing before
it equals mixing after). A new augmentation is one function and one
AUGMENTATIONS entry; a new mix one function and one MIXES entry.
"""

from cifar10_research.dataset import Split  # First: TensorFlow, quietly.

from typing import NamedTuple

import keras
import tensorflow as tf

CROP_PADDING = 4  # Pixels of zeros around an image before "flip_crop" cuts 32x32 out.
TRANSLATION = 2  # Pixels "alternating_flip_translate" moves an image by, at most (airbench's).
# Beta(1, 1): the mixing ratio drawn uniformly, as mixup's paper did on CIFAR-10 and
# timm does for cutmix (timm's mixup: 0.8).
MIX_ALPHA = 1.0
MIX_STREAM = 1  # Folded into a batch's seed for its mix: draws apart from the augmentation's.
RUN_DRAWS = 0  # The epoch number of the seed of draws made once a run (epochs count from 1).


class Draw(NamedTuple):
    """What an augmentation draws from; all its random ops are stateless, so a
    rerun, a resumed run and every worker draw alike.

    `seed` ([2] int64) is the batch's, new for every batch of the run. Draws
    that stay with an image for the whole run come from `run_seed`, taken for
    each of the split's `split_size` images and picked by `ids` (B,), each
    image's index in the split. `epoch` counts from 1.
    """

    seed: tf.Tensor
    ids: tf.Tensor
    epoch: int
    run_seed: tf.Tensor
    split_size: int


def preprocessing() -> keras.layers.Layer:
    """The network's input made from stored uint8 pixels: floats in [0, 1], as the
    Keras tutorial scales them. The one place this is written: the training and
    evaluation steps, the figures, the histograms, the benchmark and every
    exported model (`model.classifier`) apply this layer, so a user feeds raw
    0-255 pixels."""
    return keras.layers.Rescaling(1 / 255)


def train_dataset(split: Split, batch_size: int, seed: int, epoch: int,
                  skip_batches: int = 0, augmentation: str = "none", mixing: str = "none",
                  mix_alpha: float = MIX_ALPHA) -> tf.data.Dataset:
    """One epoch of full batches, in an order fixed by (seed, epoch).

    The images that do not fill a last batch (50,000 % 64 = 16) are left out
    of this epoch only: the next epoch's order differs. Every step then has
    the full global batch, so the loss scaling is exact and the step keeps
    one static shape. `skip_batches` resumes an epoch where a checkpoint left it.
    Batch i of the epoch is augmented (see `augment`), then mixed (see `mix`),
    with seeds made from (seed, epoch, i), so a resumed epoch's batches match
    the uninterrupted ones.
    """
    key = tf.constant([seed, epoch], tf.int64)
    run_seed = tf.constant([seed, RUN_DRAWS], tf.int64)
    order = tf.random.experimental.stateless_shuffle(tf.range(len(split)), seed=key)
    ids = tf.data.Dataset.from_tensor_slices(order[skip_batches * batch_size:]).batch(
        batch_size, drop_remainder=True)

    gather = _gatherer(split)

    def batch(index, batch_ids):
        images, labels = gather(batch_ids)
        draw = Draw(tf.random.fold_in(key, index), batch_ids, epoch, run_seed, len(split))
        images, labels = augment(images, labels, augmentation, draw)
        return mix(images, labels, mixing, mix_alpha, tf.random.fold_in(draw.seed, MIX_STREAM))

    return (ids.enumerate(start=skip_batches)
            .map(batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))


def eval_dataset(split: Split, batch_size: int) -> tf.data.Dataset:
    """Every image once, in order, in full batches: the last is padded.

    Padding rows repeat image 0 with an all-zero label, which the metrics
    give zero weight. Full batches split evenly over any number of replicas
    and workers; a replica handed an empty batch fails in TensorFlow's CPU
    convolution, and a ragged last batch would also mean a second trace.
    """
    padding = -len(split) % batch_size
    order = tf.concat([tf.range(len(split)), tf.fill([padding], -1)], axis=0)
    return (tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=True)
            .map(_gatherer(split), num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def _gatherer(split: Split):
    """The function of ids (B,) that gives the batch (uint8 images, one-hot
    float32 labels) of those images of `split`.

    An id of -1 gives a padding row with an all-zero label. The split stays
    in memory as uint8 (150 MB for the training set): that is the cache.
    Batching ids and gathering a whole batch at once keeps the pipeline
    vectorised, and a reshuffle moves ids, not images.
    """
    images, labels = split.tensors  # Made here, not in a traced function.

    def gather(ids):
        rows = tf.maximum(ids, 0)
        batch_labels = tf.where(ids >= 0, tf.gather(labels, rows), -1)
        return tf.gather(images, rows), tf.one_hot(batch_labels, split.num_classes)
    return gather


def augment(images: tf.Tensor, labels: tf.Tensor, mode: str,
            draw: Draw) -> tuple[tf.Tensor, tf.Tensor]:
    """A batch of images (B, 32, 32, 3), each randomly altered by `mode`, an
    AUGMENTATIONS entry, with randomness from `draw`. The whole batch is done
    in a few vectorised ops; shapes, dtypes and the range of values stay as
    they were.
    """
    return AUGMENTATIONS[mode](images, draw), labels


def _unchanged(images: tf.Tensor, draw: Draw) -> tf.Tensor:
    return images


def _random_flip(images: tf.Tensor, draw: Draw) -> tf.Tensor:
    """Mirrors each image left-right with probability 1/2."""
    flip_seed = tf.random.split(draw.seed)[0]
    return _flipped(images, tf.random.stateless_uniform([tf.shape(images)[0]], flip_seed) < 0.5)


def _alternating_flip(images: tf.Tensor, draw: Draw) -> tf.Tensor:
    """Mirrors each image in every other epoch (airbench's alternating flip):
    in odd epochs a random half of the split, drawn once a run, in even epochs
    the other half; so any two epochs in a row show every image both ways."""
    first_half = tf.random.stateless_uniform([draw.split_size], draw.run_seed) < 0.5
    return _flipped(images, tf.gather(first_half, draw.ids) == (draw.epoch % 2 == 1))


def _flipped(images: tf.Tensor, flip: tf.Tensor) -> tf.Tensor:
    """`images` with those where `flip` (B,) holds mirrored left-right."""
    return tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)


def _random_flip_and_crop(images: tf.Tensor, draw: Draw) -> tf.Tensor:
    """Flips, then cuts a 32x32 window at a random offset out of the image
    zero-padded by CROP_PADDING pixels: a shift of up to 4 pixels each way."""
    crop_seed = tf.random.split(draw.seed)[1]
    return _random_crop(_random_flip(images, draw), crop_seed, CROP_PADDING, "CONSTANT")


def _alternating_flip_and_translate(images: tf.Tensor, draw: Draw) -> tf.Tensor:
    """Alternating flips, then a random shift of up to TRANSLATION pixels each
    way, the image extended by reflection (airbench94's augmentation)."""
    crop_seed = tf.random.split(draw.seed)[1]
    return _random_crop(_alternating_flip(images, draw), crop_seed, TRANSLATION, "REFLECT")


def _random_crop(images: tf.Tensor, seed: tf.Tensor, padding: int, mode: str) -> tf.Tensor:
    """Each image's window at a random offset into it padded by `padding`
    pixels (`mode`: tf.pad's), taken by gathering its rows, then its columns."""
    height, width = images.shape[1:3]
    pads = [[0, 0], [padding, padding], [padding, padding], [0, 0]]
    offsets = tf.random.stateless_uniform([tf.shape(images)[0], 2], seed, minval=0,
                                          maxval=2 * padding + 1, dtype=tf.int32)
    rows = offsets[:, :1] + tf.range(height)  # (B, height): row indices into the padded image.
    columns = offsets[:, 1:] + tf.range(width)
    images = tf.gather(tf.pad(images, pads, mode), rows, axis=1, batch_dims=1)
    return tf.gather(images, columns, axis=2, batch_dims=1)


# Training-batch augmentations by name, for --augment; evaluation is never augmented.
AUGMENTATIONS = {"none": _unchanged, "flip": _random_flip, "flip_crop": _random_flip_and_crop,
                 "alternating_flip": _alternating_flip,
                 "alternating_flip_translate": _alternating_flip_and_translate}


def mix(images: tf.Tensor, labels: tf.Tensor, mode: str, alpha: float,
        seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """A batch whose every image is mixed with its partner by `mode`, a MIXES entry.

    The partner of image i is image B-1-i, the batch reversed (as timm pairs
    them): the batch's order is already random, and the pairing needs no
    draw. (The middle image of an odd batch is its own partner, so unmixed.)
    Each image draws its own mixing ratio, lam ~ Beta(alpha, alpha), and
    cutmix its own box: a batch's mixing is then the mean of many draws, not
    one draw that leaves some steps' batches almost clean and others half
    blended. Its labels are mixed in the proportions its pixels are, so they
    still sum to 1. The random ops are stateless, fed from `seed` (shape [2]).
    """
    return MIXES[mode](images, labels, alpha, seed)


def _unmixed(images: tf.Tensor, labels: tf.Tensor, alpha: float,
             seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return images, labels


def _mixing_ratios(batch_size: tf.Tensor, alpha: float, seed: tf.Tensor) -> tf.Tensor:
    """(B,) draws of Beta(alpha, alpha), as X / (X + Y) of two Gamma(alpha) draws."""
    gamma = tf.random.stateless_gamma([2, batch_size], seed, alpha=alpha)
    return gamma[0] / (gamma[0] + gamma[1])


def _mixup(images: tf.Tensor, labels: tf.Tensor, alpha: float,
           seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """mixup (Zhang et al. 2018): lam * image + (1 - lam) * partner, labels likewise;
    float32 images on the 0-255 scale."""
    partner_share = 1 - _mixing_ratios(tf.shape(images)[0], alpha, seed)
    images = tf.cast(images, tf.float32)
    share = partner_share[:, None, None, None]
    return ((1 - share) * images + share * tf.reverse(images, axis=[0]),
            _mixed_labels(labels, partner_share))


def _cutmix(images: tf.Tensor, labels: tf.Tensor, alpha: float,
            seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """CutMix (Yun et al. 2019): the partner's pixels in a box, pasted over the
    image's; its sides sqrt(1 - lam) of the image's, centred on a random pixel,
    clipped to the image. The labels are mixed by the box's area after clipping.
    Pixels are copied, so the images stay uint8."""
    ratio_seed, centre_seed = tf.unstack(tf.random.split(seed), num=2)
    size = tf.cast(tf.shape(images)[1:3], tf.float32)  # (height, width)
    area = 1 - _mixing_ratios(tf.shape(images)[0], alpha, ratio_seed)
    sides = tf.round(tf.sqrt(area)[:, None] * size)  # (B, 2)
    centres = tf.floor(tf.random.stateless_uniform(tf.shape(sides), centre_seed) * size)
    starts = centres - tf.floor(sides / 2)
    box = (_inside(starts[:, 0], sides[:, 0], size[0])[:, :, None]
           & _inside(starts[:, 1], sides[:, 1], size[1])[:, None, :])  # (B, height, width)
    images = tf.where(box[..., None], tf.reverse(images, axis=[0]), images)
    return images, _mixed_labels(labels, tf.reduce_mean(tf.cast(box, tf.float32), axis=[1, 2]))


def _inside(starts: tf.Tensor, sides: tf.Tensor, length: tf.Tensor) -> tf.Tensor:
    """(B, length): whether each index along an axis of the image lies in its image's
    [start, start + side): the box's part inside the image, however far it sticks out."""
    indices = tf.range(length)
    return (indices >= starts[:, None]) & (indices < (starts + sides)[:, None])


def _mixed_labels(labels: tf.Tensor, partner_share: tf.Tensor) -> tf.Tensor:
    """Each image's labels with `partner_share` (B,) of its partner's mixed in."""
    share = partner_share[:, None]
    return (1 - share) * labels + share * tf.reverse(labels, axis=[0])


def _one_view(images: tf.Tensor) -> list:
    return [(1.0, images)]


def _flip_views(images: tf.Tensor) -> list:
    """The images and their mirror images, alike."""
    return [(0.5, images), (0.5, tf.reverse(images, axis=[2]))]


def _flip_and_translate_views(images: tf.Tensor) -> list:
    """airbench94's 6 views: half the weight on the flip views of the images,
    a quarter on those of the images shifted 1 pixel down and right, a quarter
    on those shifted up and left (borders reflected)."""
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], "REFLECT")
    shifted = (padded[:, :-2, :-2], padded[:, 2:, 2:])
    return ([(weight / 2, view) for weight, view in _flip_views(images)]
            + [(weight / 4, view) for image in shifted for weight, view in _flip_views(image)])


# Test-time augmentation by name, for --tta: each a function of a batch of the
# network's inputs returning the (weight, view) pairs whose predicted
# probabilities, weighted, make the prediction. Evaluation only.
TEST_VIEWS = {"none": _one_view, "flip": _flip_views, "flip_translate": _flip_and_translate_views}


# Training-batch mixes by name, for --mix; evaluation is never mixed.
MIXES = {"none": _unmixed, "mixup": _mixup, "cutmix": _cutmix}
