"""CIFAR-10: find, download, verify and read it, and feed it through tf.data.

The files are the official "python version": `cifar-10-batches-py/` holding
the pickles `data_batch_1`..`data_batch_5`, `test_batch` and `batches.meta`,
as unpacked from `cifar-10-python.tar.gz`.
"""

import codecs
import dataclasses
import functools
import hashlib
import http.client
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request

import numpy as np
import tensorflow as tf

from errors import UserError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
TARBALL = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10
# CIFAR-10's classes by label, as batches.meta names them; for exported models.
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")
AUGMENTATIONS = ("none", "flip", "flip_crop")
CROP_PADDING = 4  # Pixels of zeros around an image before "flip_crop" cuts 32x32 out.


@dataclasses.dataclass(frozen=True)
class Split:
    """Images as uint8 (N, 32, 32, 3) and labels as int32 (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self):
        return len(self.labels)

    @functools.cached_property
    def tensors(self) -> tuple[tf.Tensor, tf.Tensor]:
        """(images, labels) as tensors, made once: the pipelines of every epoch
        share them. Copying 150 MB into a new tensor each epoch took from
        0.03 s to over 10 s here, as the machine's memory was under pressure."""
        return tf.convert_to_tensor(self.images), tf.convert_to_tensor(self.labels)


@dataclasses.dataclass(frozen=True)
class Cifar10:
    train: Split
    test: Split
    class_names: tuple


def load_cifar10(data_dir: str, url: str = URL, md5: str = MD5) -> Cifar10:
    """Reads CIFAR-10 from `data_dir`, first unpacking or downloading it.

    Looks for the folder, then the tarball (checked against `md5`), then
    downloads the tarball from `url`. Every problem with the files raises a
    UserError naming the file and what to do.
    """
    data_dir = os.path.expanduser(data_dir)
    folder = os.path.join(data_dir, FOLDER)
    if not os.path.isdir(folder):
        tarball = os.path.join(data_dir, TARBALL)
        if not os.path.exists(tarball):
            download(url, tarball, md5)
        extract(tarball, data_dir, md5)
    return read_folder(folder)


def download(url: str, path: str, md5: str) -> None:
    """Downloads `url` to `path`; only a complete file with the right MD5 lands there.

    Each download writes its own `.part` file, so workers that start together
    on one machine do not write into each other's.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    print(f"Downloading {url} to {path} ...", flush=True)
    handle, partial = tempfile.mkstemp(prefix=os.path.basename(path) + ".",
                                       suffix=".part", dir=os.path.dirname(path))
    try:
        with urllib.request.urlopen(url, timeout=60) as response, os.fdopen(handle, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
    except (OSError, http.client.HTTPException) as error:
        _remove_if_exists(partial)
        raise UserError(
            f"could not download {url} ({error}): download it by hand and put it "
            f"at {path}, or pass --data_dir where CIFAR-10 already is") from None
    try:
        verify_md5(partial, md5)
    except UserError:
        _remove_if_exists(partial)
        raise
    os.replace(partial, path)


def verify_md5(path: str, md5: str) -> None:
    digest = hashlib.md5()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != md5:
        raise UserError(
            f"{path} has MD5 {digest.hexdigest()}, not the expected {md5}: it is "
            f"incomplete or not CIFAR-10; delete it and run again to download it")


def extract(tarball: str, data_dir: str, md5: str) -> None:
    """Unpacks the tarball so that the folder appears whole or not at all."""
    verify_md5(tarball, md5)
    staging = tempfile.mkdtemp(prefix=".extracting-", dir=data_dir)
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            archive.extractall(staging, filter="data")
        unpacked = os.path.join(staging, FOLDER)
        if not os.path.isdir(unpacked):
            raise UserError(f"{tarball} holds no {FOLDER}/ folder: it is not the "
                            f"CIFAR-10 python version; delete it and run again")
        os.replace(unpacked, os.path.join(data_dir, FOLDER))
    except (tarfile.TarError, EOFError, OSError) as error:
        if os.path.isdir(os.path.join(data_dir, FOLDER)):
            return  # Another worker unpacked it first.
        raise UserError(f"cannot unpack {tarball} ({error}): delete it and run "
                        f"again to download it") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_folder(folder: str) -> Cifar10:
    """Reads and validates the pickles of an unpacked CIFAR-10 folder."""
    meta = _unpickle(os.path.join(folder, META_FILE))
    class_names = tuple(name.decode() for name in _field(meta, b"label_names", META_FILE, folder))
    if len(class_names) != NUM_CLASSES:
        raise UserError(f"{os.path.join(folder, META_FILE)} names {len(class_names)} "
                        f"classes, not {NUM_CLASSES}: it is not CIFAR-10")
    rows_per_file = _field(meta, b"num_cases_per_batch", META_FILE, folder)
    train = [_read_batch(folder, name, rows_per_file) for name in TRAIN_FILES]
    return Cifar10(
        train=Split(np.concatenate([s.images for s in train]),
                    np.concatenate([s.labels for s in train])),
        test=_read_batch(folder, TEST_FILE, rows_per_file),
        class_names=class_names)


def _read_batch(folder: str, name: str, expected_rows: int) -> Split:
    """One batch file as a Split, checked against the row count in batches.meta."""
    path = os.path.join(folder, name)
    batch = _unpickle(path)
    pixels = np.asarray(_field(batch, b"data", name, folder))
    labels = np.asarray(_field(batch, b"labels", name, folder))
    expected_shape = (expected_rows, int(np.prod(IMAGE_SHAPE)))
    if pixels.dtype != np.uint8 or pixels.shape != expected_shape:
        raise UserError(f"{path} holds {pixels.dtype} pixels of shape {pixels.shape}, "
                        f"not uint8 {expected_shape}: replace it with the original file")
    if labels.shape != (expected_rows,) or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{path} holds labels of shape {labels.shape}, not "
                        f"({expected_rows},): replace it with the original file")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise UserError(f"{path} has a label outside 0-{NUM_CLASSES - 1}: "
                        f"replace it with the original file")
    # Rows are R, G and B planes of 32x32 each; the model wants height, width, channel.
    images = pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return Split(np.ascontiguousarray(images), labels.astype(np.int32))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles CIFAR-10's arrays but refuses every other global, so no code runs.

    `_codecs.encode` is how Python 3 writes bytes into a protocol-2 pickle.
    """

    # numpy.core.multiarray._reconstruct, wherever this numpy version keeps it.
    _reconstruct = np.zeros(0).__reduce__()[0]
    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"): _reconstruct,
                ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
                ("numpy", "ndarray"): np.ndarray,
                ("numpy", "dtype"): np.dtype,
                ("_codecs", "encode"): codecs.encode}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return self._ALLOWED[(module, name)]


def _unpickle(path: str) -> dict:
    hint = f"re-extract {TARBALL} there, or delete {os.path.dirname(path)} to download again"
    if not os.path.isfile(path):
        raise UserError(f"{path} is missing: {hint}")
    try:
        with open(path, "rb") as file:
            content = _NumpyOnlyUnpickler(file, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as error:
        raise UserError(f"{path} is truncated or corrupt ({error}): {hint}") from None
    if not isinstance(content, dict):
        raise UserError(f"{path} does not hold a CIFAR-10 batch: {hint}")
    return content


def _field(content: dict, key: bytes, name: str, folder: str):
    if key not in content:
        raise UserError(f"{os.path.join(folder, name)} has no '{key.decode()}' entry: "
                        f"it is not a CIFAR-10 file; replace it with the original")
    return content[key]


def _remove_if_exists(path: str) -> None:
    if os.path.exists(path):
        os.remove(path)


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
    _check_augmentation(augmentation)  # Here, not while tf.data traces, for a one-line error.
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
    """Batches of ([0,1] float32 images, one-hot float32 labels) in `order`.

    An index of -1 in `order` gives a padding row with an all-zero label.
    The split stays in memory as uint8 (150 MB for the training set): that is
    the cache. Batching indices and gathering a whole batch at once keeps the
    pipeline vectorised, and a reshuffle moves indices, not images.
    """
    images, labels = split.tensors

    def gather(indices):
        rows = tf.maximum(indices, 0)
        batch_images = tf.cast(tf.gather(images, rows), tf.float32) / 255.0
        batch_labels = tf.where(indices >= 0, tf.gather(labels, rows), -1)
        return batch_images, tf.one_hot(batch_labels, NUM_CLASSES)

    return (tf.data.Dataset.from_tensor_slices(order)
            .batch(batch_size, drop_remainder=drop_remainder)
            .map(gather, num_parallel_calls=tf.data.AUTOTUNE))


def augment(images: tf.Tensor, labels: tf.Tensor, mode: str,
            seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """A batch of [0,1] float32 images (B, 32, 32, 3), each randomly altered by `mode`.

    "none" returns the batch as it is; "flip" mirrors each image left-right
    with probability 1/2; "flip_crop" then also cuts a 32x32 window at a
    random offset out of the image zero-padded by CROP_PADDING pixels, i.e.
    shifts it by up to CROP_PADDING pixels each way. The random ops are
    stateless, fed from `seed` (shape [2], int64), so the same seed gives the
    same batch on a rerun, a resumed run and every worker. The whole batch is
    done in a few vectorised ops; shapes stay static and values stay in [0, 1].
    """
    _check_augmentation(mode)
    if mode == "none":
        return images, labels
    flip_seed, crop_seed = tf.unstack(tf.random.split(seed))
    images = _random_flip(images, flip_seed)
    if mode == "flip_crop":
        images = _random_crop(images, crop_seed)
    return images, labels


def _check_augmentation(mode: str) -> None:
    if mode not in AUGMENTATIONS:
        raise UserError(f"unknown --augment={mode}: use one of {', '.join(AUGMENTATIONS)}")


def _random_flip(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    flip = tf.random.stateless_uniform([tf.shape(images)[0]], seed) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)


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
