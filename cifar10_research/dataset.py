"""CIFAR-10 and CIFAR-100 on disk: find, download, verify and read them into memory.

Each dataset is its official "python version", described by one DATASETS
entry: the tarball, its URL and MD5, the folder it unpacks to and the pickles
in it. CIFAR-10's `cifar-10-batches-py/` holds `data_batch_1`..`data_batch_5`,
`test_batch` and `batches.meta`; CIFAR-100's `cifar-100-python/` holds
`train`, `test` and `meta`, read with its 100 fine labels. `data.py` turns the
Splits read here into tf.data pipelines.
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


@dataclasses.dataclass(frozen=True)
class Description:
    """One dataset's official python version, as its home page
    (https://www.cs.toronto.edu/~kriz/cifar.html) gives it."""

    name: str  # As messages name it.
    url: str
    md5: str  # The tarball's.
    tarball: str
    folder: str  # What the tarball unpacks to.
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    names_key: bytes  # The meta file's entry of class names, by label.
    labels_key: bytes  # The batch files' entry of labels.
    num_classes: int
    # Rows of each batch file, by name; None: the meta file's num_cases_per_batch, for each.
    rows: dict | None = None


CIFAR10 = Description(
    name="CIFAR-10", url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a", tarball="cifar-10-python.tar.gz",
    folder="cifar-10-batches-py", train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_file="test_batch", meta_file="batches.meta", names_key=b"label_names",
    labels_key=b"labels", num_classes=10)
CIFAR100 = Description(
    name="CIFAR-100", url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    md5="eb9058c3a382ffc7106e4002c42a8d85", tarball="cifar-100-python.tar.gz",
    folder="cifar-100-python", train_files=("train",), test_file="test", meta_file="meta",
    names_key=b"fine_label_names", labels_key=b"fine_labels", num_classes=100,
    rows={"train": 50_000, "test": 10_000})
# The datasets by --dataset name.
DATASETS = {"cifar10": CIFAR10, "cifar100": CIFAR100}
IMAGE_SHAPE = (32, 32, 3)
# Chooses the images --validation_split holds out; fixed, so that every run
# of every seed holds out the same ones.
SPLIT_SEED = 20261129
# CIFAR-10's classes by label, as batches.meta names them: those of a model
# exported without its run's class names.
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")


@dataclasses.dataclass(frozen=True)
class Split:
    """Images as uint8 (N, 32, 32, 3) and labels as int32 (N,), each below `num_classes`."""

    images: np.ndarray
    labels: np.ndarray
    num_classes: int = CIFAR10.num_classes

    def __len__(self):
        return len(self.labels)

    def subset(self, mask: np.ndarray) -> "Split":
        """The rows where `mask` is True, in their order."""
        return Split(self.images[mask], self.labels[mask], self.num_classes)

    @functools.cached_property
    def tensors(self) -> tuple[tf.Tensor, tf.Tensor]:
        """(images, labels) as tensors, made once: the pipelines of every epoch
        share them. Copying 150 MB into a new tensor each epoch took from
        0.03 s to over 10 s here, as the machine's memory was under pressure."""
        return tf.convert_to_tensor(self.images), tf.convert_to_tensor(self.labels)


@dataclasses.dataclass(frozen=True)
class Cifar:
    """A dataset read into memory: its training and test images, its classes by label."""

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
        for label in range(self.train.num_classes):
            members = np.flatnonzero(self.train.labels == label)
            held[rng.permutation(members)[:round(fraction * len(members))]] = True
        if not held.any():
            raise UserError(f"--validation_split={fraction} holds out none of the "
                            f"{len(self.train)} training images: pick a larger fraction, or 0")
        return self.train.subset(~held), self.train.subset(held)


def load(data_dir: str, described: Description = CIFAR10) -> Cifar:
    """Reads the `described` dataset from `data_dir`, first unpacking or downloading it.

    Looks for its folder, then its tarball (checked against its MD5), then
    downloads the tarball from its URL. Every problem with the files raises a
    UserError naming the file and what to do.
    """
    data_dir = os.path.expanduser(data_dir)
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise UserError(f"--data_dir={data_dir} is a file, not a folder: pass the folder that "
                        f"holds {described.folder}/ or {described.tarball}")
    folder = os.path.join(data_dir, described.folder)
    if not os.path.isdir(folder):
        tarball = os.path.join(data_dir, described.tarball)
        if not os.path.exists(tarball):
            download(described, tarball)
        extract(described, tarball, data_dir)
    return read_folder(folder, described)


def download(described: Description, path: str) -> None:
    """Downloads the tarball to `path`; only a complete file with the right MD5 lands there.

    Each download writes its own `.part` file, so workers that start together
    on one machine do not write into each other's.
    """
    url = described.url
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handle, partial = tempfile.mkstemp(prefix=os.path.basename(path) + ".",
                                           suffix=".part", dir=os.path.dirname(path))
    except OSError as error:
        raise _unwritable(described, os.path.dirname(path), error, "downloaded") from None
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
            f"at {path}, or pass --data_dir where {described.name} already is") from None
    except Interrupted:
        _remove_if_exists(partial)
        raise
    try:
        verify_md5(described, partial)
    except UserError:
        _remove_if_exists(partial)
        raise
    os.chmod(partial, 0o644)  # mkstemp's 0600 would hide it from a shared --data_dir.
    os.replace(partial, path)


def _unwritable(described: Description, data_dir: str, error: OSError, needs: str) -> UserError:
    return UserError(f"cannot write into --data_dir={data_dir} ({error.strerror}), where "
                     f"{described.name} must be {needs}: pass a writable --data_dir, or one "
                     f"that holds {described.folder}/")


def verify_md5(described: Description, path: str) -> None:
    digest = hashlib.md5()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != described.md5:
        raise UserError(
            f"{path} has MD5 {digest.hexdigest()}, not the expected {described.md5}: it is "
            f"incomplete or not {described.name}; delete it and run again to download it")


def extract(described: Description, tarball: str, data_dir: str) -> None:
    """Unpacks the tarball so that the folder appears whole or not at all."""
    verify_md5(described, tarball)
    try:
        staging = tempfile.mkdtemp(prefix=".extracting-", dir=data_dir)
    except OSError as error:
        raise _unwritable(described, data_dir, error, "unpacked") from None
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            archive.extractall(staging, filter="data")
        stopping.check()
        unpacked = os.path.join(staging, described.folder)
        if not os.path.isdir(unpacked):
            raise UserError(f"{tarball} holds no {described.folder}/ folder: it is not the "
                            f"{described.name} python version; delete it and run again")
        os.replace(unpacked, os.path.join(data_dir, described.folder))
    except (tarfile.TarError, EOFError, OSError) as error:
        if os.path.isdir(os.path.join(data_dir, described.folder)):
            return  # Another worker unpacked it first.
        raise UserError(f"cannot unpack {tarball} ({error}): delete it and run "
                        f"again to download it") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_folder(folder: str, described: Description) -> Cifar:
    """Reads and validates the pickles of an unpacked dataset folder."""
    meta_path = os.path.join(folder, described.meta_file)
    meta = _unpickle(meta_path, described)
    class_names = tuple(name.decode() for name in _field(meta, described.names_key, meta_path,
                                                         described))
    if len(class_names) != described.num_classes:
        raise UserError(f"{meta_path} names {len(class_names)} classes, not "
                        f"{described.num_classes}: it is not {described.name}")
    rows = described.rows or dict.fromkeys(
        (*described.train_files, described.test_file),
        _field(meta, b"num_cases_per_batch", meta_path, described))
    train = [_read_batch(folder, name, rows[name], described) for name in described.train_files]
    return Cifar(
        train=Split(np.concatenate([s.images for s in train]),
                    np.concatenate([s.labels for s in train]), described.num_classes),
        test=_read_batch(folder, described.test_file, rows[described.test_file], described),
        class_names=class_names)


def _read_batch(folder: str, name: str, expected_rows: int, described: Description) -> Split:
    """One batch file as a Split, checked against its expected row count."""
    path = os.path.join(folder, name)
    batch = _unpickle(path, described)
    pixels = np.asarray(_field(batch, b"data", path, described))
    labels = np.asarray(_field(batch, described.labels_key, path, described))
    expected_shape = (expected_rows, int(np.prod(IMAGE_SHAPE)))
    if pixels.dtype != np.uint8 or pixels.shape != expected_shape:
        raise UserError(f"{path} holds {pixels.dtype} pixels of shape {pixels.shape}, "
                        f"not uint8 {expected_shape}: replace it with the original file")
    if labels.shape != (expected_rows,) or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{path} holds labels of shape {labels.shape}, not "
                        f"({expected_rows},): replace it with the original file")
    if labels.min() < 0 or labels.max() >= described.num_classes:
        raise UserError(f"{path} has a label outside 0-{described.num_classes - 1}: "
                        f"replace it with the original file")
    # Rows are R, G and B planes of 32x32 each; the model wants height, width, channel.
    images = pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return Split(np.ascontiguousarray(images), labels.astype(np.int32), described.num_classes)


def _unpickle(path: str, described: Description) -> dict:
    stopping.check()  # Between the files: the ones read so far are only in memory.
    hint = (f"re-extract {described.tarball} there, or delete {os.path.dirname(path)} to "
            f"download again")
    content = safe_pickle.load(path, hint)
    if not isinstance(content, dict):
        raise UserError(f"{path} does not hold a {described.name} batch: {hint}")
    return content


def _field(content: dict, key: bytes, path: str, described: Description):
    if key not in content:
        raise UserError(f"{path} has no '{key.decode()}' entry: it is not a {described.name} "
                        f"file; replace it with the original")
    return content[key]


def _remove_if_exists(path: str) -> None:
    if os.path.exists(path):
        os.remove(path)
