"""Writes tiny CIFAR-10 look-alikes in the official python-version layout.

Each class has its own mean colour, so a model learns them in a few steps.
"""

import hashlib
import os
import pickle
import tarfile

import numpy as np

from cifar10_research.dataset import CLASS_NAMES
FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def images_and_labels(rows: int, seed: int):
    """(rows, 32, 32, 3) uint8 images whose colour depends on the label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=rows)
    palette = np.random.default_rng(1234).integers(30, 226, size=(10, 3))
    noise = rng.normal(0, 20, size=(rows, 32, 32, 3))
    images = np.clip(palette[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    return images, labels


def batch_dict(images, labels) -> dict:
    """A batch as the official pickles hold it: R, G and B planes per row."""
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return {b"batch_label": b"fake batch", b"labels": [int(label) for label in labels],
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


def write_pickle(path: str, content) -> None:
    with open(path, "wb") as file:
        pickle.dump(content, file, protocol=2)


def write_tarball(source_dir: str, tarball: str) -> str:
    """Packs `source_dir/cifar-10-batches-py` like the official tarball; returns its MD5."""
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(os.path.join(source_dir, "cifar-10-batches-py"), arcname="cifar-10-batches-py")
    with open(tarball, "rb") as file:
        return hashlib.md5(file.read()).hexdigest()
