"""CIFAR-10 on disk: find, download, verify and read it into memory.

The files are the official "python version": `cifar-10-batches-py/` holding
the pickles `data_batch_1`..`data_batch_5`, `test_batch` and `batches.meta`,
as unpacked from `cifar-10-python.tar.gz`. `data.py` turns the Splits read
here into tf.data pipelines.
"""

import dataclasses
import functools
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.request

import numpy as np
import tensorflow as tf

from cifar10_research import safe_pickle, stopping
from cifar10_research.errors import Interrupted, UserError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
TARBALL = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10
# Chooses the images --validation_split holds out; fixed, so that every run
# of every seed holds out the same ones.
SPLIT_SEED = 20261129
# CIFAR-10's classes by label, as batches.meta names them; for exported models.
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")


@dataclasses.dataclass(frozen=True)
class Split:
    """Images as uint8 (N, 32, 32, 3) and labels as int32 (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self):
        return len(self.labels)

    def subset(self, mask: np.ndarray) -> "Split":
        """The rows where `mask` is True, in their order."""
        return Split(self.images[mask], self.labels[mask])

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

    def held_out(self, fraction: float) -> tuple[Split, Split]:
        """(images to train on, validation images): `fraction` of each class of the
        training set held out, or (the training set, the test set) for 0.

        The held-out images are chosen by SPLIT_SEED, not by the run's --seed,
        so runs with different seeds validate on the same images and compare.
        """
        if fraction == 0:
            return self.train, self.test
        rng = np.random.default_rng(SPLIT_SEED)
        held = np.zeros(len(self.train), bool)
        for label in range(NUM_CLASSES):
            members = np.flatnonzero(self.train.labels == label)
            held[rng.permutation(members)[:round(fraction * len(members))]] = True
        if not held.any():
            raise UserError(f"--validation_split={fraction} holds out none of the "
                            f"{len(self.train)} training images: pick a larger fraction, or 0")
        return self.train.subset(~held), self.train.subset(held)


def load_cifar10(data_dir: str, url: str = URL, md5: str = MD5) -> Cifar10:
    """Reads CIFAR-10 from `data_dir`, first unpacking or downloading it.

    Looks for the folder, then the tarball (checked against `md5`), then
    downloads the tarball from `url`. Every problem with the files raises a
    UserError naming the file and what to do.
    """
    data_dir = os.path.expanduser(data_dir)
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise UserError(f"--data_dir={data_dir} is a file, not a folder: pass the folder that "
                        f"holds {FOLDER}/ or {TARBALL}")
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
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handle, partial = tempfile.mkstemp(prefix=os.path.basename(path) + ".",
                                           suffix=".part", dir=os.path.dirname(path))
    except OSError as error:
        raise _unwritable(os.path.dirname(path), error, "downloaded") from None
    print(f"Downloading {url} to {path} ...", flush=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, os.fdopen(handle, "wb") as out:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                stopping.check()
                out.write(chunk)
    except (OSError, http.client.HTTPException) as error:
        _remove_if_exists(partial)
        raise UserError(
            f"could not download {url} ({error}): download it by hand and put it "
            f"at {path}, or pass --data_dir where CIFAR-10 already is") from None
    except Interrupted:
        _remove_if_exists(partial)
        raise
    try:
        verify_md5(partial, md5)
    except UserError:
        _remove_if_exists(partial)
        raise
    os.chmod(partial, 0o644)  # mkstemp's 0600 would hide it from a shared --data_dir.
    os.replace(partial, path)


def _unwritable(data_dir: str, error: OSError, needs: str) -> UserError:
    return UserError(f"cannot write into --data_dir={data_dir} ({error.strerror}), where "
                     f"CIFAR-10 must be {needs}: pass a writable --data_dir, or one that "
                     f"holds {FOLDER}/")


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
    try:
        staging = tempfile.mkdtemp(prefix=".extracting-", dir=data_dir)
    except OSError as error:
        raise _unwritable(data_dir, error, "unpacked") from None
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            archive.extractall(staging, filter="data")
        stopping.check()
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


def _unpickle(path: str) -> dict:
    stopping.check()  # Between the files: the ones read so far are only in memory.
    hint = f"re-extract {TARBALL} there, or delete {os.path.dirname(path)} to download again"
    content = safe_pickle.load(path, hint)
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
