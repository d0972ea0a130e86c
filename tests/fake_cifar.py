"""Writes tiny CIFAR-10 and CIFAR-100 look-alikes in the official python-version layout.

Each class has its own mean colour, so a model learns them in a few steps.
"""

import dataclasses
import hashlib
import os
import pickle
import tarfile

import numpy as np

from cifar10_research import dataset
from cifar10_research.dataset import CLASS_NAMES
FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
# What write_cifar100_folder writes: CIFAR-100's files, of fewer rows.
CIFAR100 = dataclasses.replace(dataset.CIFAR100, rows={"train": 120, "test": 24})
CIFAR100_NAMES = tuple(f"fine_{label}" for label in range(100))


def images_and_labels(rows: int, seed: int, num_classes: int = 10):
    """(rows, 32, 32, 3) uint8 images whose colour depends on the label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=rows)
    palette = np.random.default_rng(1234).integers(30, 226, size=(num_classes, 3))
    noise = rng.normal(0, 20, size=(rows, 32, 32, 3))
    images = np.clip(palette[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    return images, labels


def batch_dict(images, labels, labels_key: bytes = b"labels") -> dict:
    """A batch as the official pickles hold it: R, G and B planes per row."""
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return {b"batch_label": b"fake batch", labels_key: [int(label) for label in labels],
            b"data": data, b"filenames": [b"fake.png"] * len(images)}


def write_folder(data_dir: str, rows_per_file: int = 24) -> dict:
    """Writes `data_dir/cifar-10-batches-py/`; returns {file name: (images, labels)}."""
    folder = os.path.join(data_dir, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    written = {}
    for seed, name in enumerate(FILES):
        written[name] = images_and_labels(rows_per_file, seed)
        write_pickle(os.path.join(folder, name), batch_dict(*written[name]))
    write_pickle(os.path.join(folder, "batches.meta"), {
        b"label_names": [name.encode() for name in CLASS_NAMES],
        b"num_cases_per_batch": rows_per_file, b"num_vis": 3072})
    return written


def write_cifar100_folder(data_dir: str) -> dict:
    """Writes `data_dir/cifar-100-python/` with the rows of CIFAR100; returns
    {file name: (images, fine labels)}. Its coarse labels differ from the fine ones."""
    folder = os.path.join(data_dir, "cifar-100-python")
    os.makedirs(folder, exist_ok=True)
    written = {}
    for seed, (name, rows) in enumerate(CIFAR100.rows.items()):
        images, labels = written[name] = images_and_labels(rows, seed, num_classes=100)
        write_pickle(os.path.join(folder, name), {
            **batch_dict(images, labels, b"fine_labels"),
            b"coarse_labels": [int(label) // 5 for label in labels]})
    write_pickle(os.path.join(folder, "meta"), {
        b"fine_label_names": [name.encode() for name in CIFAR100_NAMES],
        b"coarse_label_names": [f"coarse_{label}".encode() for label in range(20)]})
    return written


def write_pickle(path: str, content) -> None:
    with open(path, "wb") as file:
        pickle.dump(content, file, protocol=2)


def write_tarball(source_dir: str, tarball: str, folder: str = "cifar-10-batches-py") -> str:
    """Packs `source_dir/<folder>` like the official tarball; returns its MD5."""
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(os.path.join(source_dir, folder), arcname=folder)
    with open(tarball, "rb") as file:
        return hashlib.md5(file.read()).hexdigest()
