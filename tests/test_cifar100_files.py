"""CIFAR-100's files: found, downloaded, verified, unpacked and read by CIFAR-10's reader."""

import dataclasses
import os
import pickle
import re

import numpy as np
import pytest

from cifar10_research import dataset
from cifar10_research.errors import UserError
from tests import fake_cifar

# The python version of CIFAR-100 as its home page, https://www.cs.toronto.edu/~kriz/cifar.html,
# links it and gives its MD5; torchvision's datasets/cifar.py (CIFAR100.tgz_md5) and Keras'
# datasets/cifar100.py (its origin) agree.
OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
OFFICIAL_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
TARBALL, FOLDER = "cifar-100-python.tar.gz", "cifar-100-python"


def tiny(**changes) -> dataset.Description:
    """The description of fake_cifar's CIFAR-100 files, with another URL or MD5."""
    return dataclasses.replace(fake_cifar.CIFAR100, **changes)


@pytest.fixture
def data_dir(tmp_path):
    fake_cifar.write_cifar100_folder(str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture
def tarball(data_dir, tmp_path):
    """A tiny cifar-100-python.tar.gz and its MD5."""
    path = tmp_path / "tarball" / TARBALL
    path.parent.mkdir()
    return path, fake_cifar.write_tarball(str(data_dir), str(path), FOLDER)


def test_the_registry_names_cifar100_by_its_official_files():
    described = dataset.DATASETS["cifar100"]
    assert (described.url, described.md5, described.tarball, described.folder) == (
        OFFICIAL_URL, OFFICIAL_MD5, TARBALL, FOLDER)
    assert described.num_classes == 100
    assert described.rows == {"train": 50_000, "test": 10_000}


def test_reads_the_fine_labels_and_their_100_names(tmp_path):
    written = fake_cifar.write_cifar100_folder(str(tmp_path))
    cifar = dataset.load(str(tmp_path), fake_cifar.CIFAR100)
    assert cifar.class_names == fake_cifar.CIFAR100_NAMES and len(cifar.class_names) == 100
    for split, name in ((cifar.train, "train"), (cifar.test, "test")):
        images, fine_labels = written[name]
        np.testing.assert_array_equal(split.images, images)
        np.testing.assert_array_equal(split.labels, fine_labels)
        assert split.images.dtype == np.uint8 and split.labels.dtype == np.int32
        assert split.num_classes == 100
    assert cifar.train.labels.max() >= 20  # Above every coarse label: the fine ones were read.


def test_downloads_verifies_and_unpacks(tarball, tmp_path, http_server):
    base_url, served = http_server
    path, md5 = tarball
    os.replace(path, served / TARBALL)
    target = tmp_path / "empty"
    cifar = dataset.load(str(target), tiny(url=f"{base_url}/{TARBALL}", md5=md5))
    assert (len(cifar.train), len(cifar.test)) == (120, 24)
    # Only the tarball and the folder: no .part download or extraction left over.
    assert sorted(os.listdir(target)) == [FOLDER, TARBALL]
    assert (target / TARBALL).read_bytes() == (served / TARBALL).read_bytes()


def test_a_download_of_the_wrong_md5_is_refused_in_one_line(tarball, tmp_path):
    path, _ = tarball
    target = tmp_path / "empty"
    with pytest.raises(UserError) as refused:
        dataset.load(str(target), tiny(url=f"file://{path}", md5="0" * 32))
    assert re.fullmatch(rf"{target}/{re.escape(TARBALL)}\.\w+\.part has MD5 \w{{32}}, not the "
                        rf"expected 0{{32}}: it is incomplete or not CIFAR-100; delete it and "
                        rf"run again to download it", str(refused.value))
    assert os.listdir(target) == []


def test_a_tarball_is_checked_against_the_official_md5_by_default(tarball):
    path, _ = tarball
    with pytest.raises(UserError, match=f"{TARBALL} has MD5 .*, not the expected "
                                        f"{OFFICIAL_MD5}: it is incomplete or not CIFAR-100;"):
        dataset.load(str(path.parent), dataset.CIFAR100)
    assert os.listdir(path.parent) == [TARBALL]


def test_the_download_comes_from_the_official_url_by_default(tmp_path, monkeypatch):
    requested = []

    def offline(url, *args, **kwargs):
        requested.append(url)
        raise OSError("offline")

    monkeypatch.setattr(dataset.urllib.request, "urlopen", offline)
    target = tmp_path / "empty"
    with pytest.raises(UserError, match=f"could not download {re.escape(OFFICIAL_URL)} .*put it "
                                        f"at {target}/{TARBALL}, or pass --data_dir where "
                                        f"CIFAR-100 already is$"):
        dataset.load(str(target), dataset.CIFAR100)
    assert requested == [OFFICIAL_URL]


def test_the_official_row_counts_are_checked(data_dir):
    with pytest.raises(UserError, match=r"train holds uint8 pixels of shape \(120, 3072\), not "
                                        r"uint8 \(50000, 3072\)"):
        dataset.load(str(data_dir), dataset.CIFAR100)


def _rewrite(path, key, value):
    with open(path, "rb") as file:
        content = pickle.load(file, encoding="bytes")
    content[key] = value
    fake_cifar.write_pickle(path, content)


@pytest.mark.parametrize("name, damage, message", [
    ("train", lambda path: _rewrite(path, b"fine_labels", [100] * 120),
     "/train has a label outside 0-99: replace it with the original file"),
    ("test", lambda path: _rewrite(path, b"fine_labels", [-1] * 24),
     "/test has a label outside 0-99"),
    ("test", os.remove, f"/test is missing: re-extract {TARBALL} there, or delete "),
    ("meta", os.remove, f"/meta is missing: re-extract {TARBALL} there"),
    ("train", lambda path: _rewrite(path, b"data", np.zeros((120, 3072), np.int64)),
     r"/train holds int64 pixels of shape \(120, 3072\), not uint8 \(120, 3072\)"),
    ("meta", lambda path: _rewrite(path, b"fine_label_names", [b"a"] * 20),
     "/meta names 20 classes, not 100: it is not CIFAR-100"),
    ("meta", lambda path: fake_cifar.write_pickle(path, {b"label_names": [b"a"] * 10}),
     "/meta has no 'fine_label_names' entry: it is not a CIFAR-100 file"),
])
def test_a_damaged_file_is_named_in_one_line(data_dir, name, damage, message):
    damage(data_dir / FOLDER / name)
    with pytest.raises(UserError, match=message) as refused:
        dataset.load(str(data_dir), fake_cifar.CIFAR100)
    assert str(refused.value).startswith(f"{data_dir / FOLDER / name} ")
    assert "\n" not in str(refused.value)


def test_a_cifar10_batch_is_no_cifar100_file(tmp_path):
    """The labels of CIFAR-10's layout are not CIFAR-100's fine labels."""
    fake_cifar.write_cifar100_folder(str(tmp_path))
    images, labels = fake_cifar.images_and_labels(120, 0, num_classes=100)
    fake_cifar.write_pickle(str(tmp_path / FOLDER / "train"),
                            fake_cifar.batch_dict(images, labels))
    with pytest.raises(UserError, match="train has no 'fine_labels' entry: it is not a "
                                        "CIFAR-100 file; replace it with the original"):
        dataset.load(str(tmp_path), fake_cifar.CIFAR100)
