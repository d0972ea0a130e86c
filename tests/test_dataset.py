"""Finding, downloading, verifying and reading CIFAR-10's files."""

import dataclasses
import errno
import os
import pickle
import re
import tempfile

import numpy as np
import pytest

from cifar10_research import dataset
from cifar10_research.errors import UserError
from tests import fake_cifar

# The python version of CIFAR-10 as its home page, https://www.cs.toronto.edu/~kriz/cifar.html,
# links it and gives its MD5.
OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"
TARBALL, FOLDER = dataset.CIFAR10.tarball, dataset.CIFAR10.folder


def cifar10(**changes) -> dataset.Description:
    """CIFAR-10's description, with another URL or MD5."""
    return dataclasses.replace(dataset.CIFAR10, **changes)


def test_reads_the_folder_as_written(tiny_data_dir):
    written = fake_cifar.write_folder(tiny_data_dir, rows_per_file=24)
    cifar = dataset.load(tiny_data_dir)
    assert cifar.class_names == fake_cifar.CLASS_NAMES
    assert cifar.train.images.shape == (120, 32, 32, 3)
    assert cifar.train.images.dtype == np.uint8
    np.testing.assert_array_equal(cifar.train.images[:24], written["data_batch_1"][0])
    np.testing.assert_array_equal(cifar.train.labels[96:], written["data_batch_5"][1])
    np.testing.assert_array_equal(cifar.test.images, written["test_batch"][0])
    np.testing.assert_array_equal(cifar.test.labels, written["test_batch"][1])


def test_unpacks_the_tarball_after_checking_its_md5(tiny_data_dir, tmp_path):
    target = tmp_path / "from_tarball"
    target.mkdir()
    md5 = fake_cifar.write_tarball(tiny_data_dir, str(target / TARBALL))
    cifar = dataset.load(str(target), cifar10(md5=md5))
    assert len(cifar.train) == 120 and len(cifar.test) == 24
    assert (target / FOLDER / "test_batch").is_file()
    assert sorted(os.listdir(target)) == [FOLDER, TARBALL]


def test_refuses_a_tarball_with_the_wrong_md5(tiny_data_dir, tmp_path):
    target = tmp_path / "bad_tarball"
    target.mkdir()
    fake_cifar.write_tarball(tiny_data_dir, str(target / TARBALL))
    with pytest.raises(UserError, match=r"cifar-10-python.tar.gz has MD5 \w+, not the expected 0+"):
        dataset.load(str(target), cifar10(md5="0" * 32))
    assert os.listdir(target) == [TARBALL]


def test_downloads_verifies_and_unpacks(tiny_data_dir, tmp_path, http_server):
    base_url, served = http_server
    md5 = fake_cifar.write_tarball(tiny_data_dir, str(served / "cifar.tar.gz"))
    target = tmp_path / "empty"
    cifar = dataset.load(str(target), cifar10(url=f"{base_url}/cifar.tar.gz", md5=md5))
    assert len(cifar.test) == 24
    # Only the tarball and the folder: no temporary download or extraction left over.
    assert sorted(os.listdir(target)) == [FOLDER, TARBALL]
    with open(served / "cifar.tar.gz", "rb") as sent, open(target / TARBALL, "rb") as got:
        assert got.read() == sent.read()
    assert os.stat(target / TARBALL).st_mode & 0o777 == 0o644  # Shareable.


def test_a_download_with_the_wrong_md5_leaves_no_file(tiny_data_dir, tmp_path, http_server):
    base_url, served = http_server
    fake_cifar.write_tarball(tiny_data_dir, str(served / "cifar.tar.gz"))
    target = tmp_path / "empty"
    with pytest.raises(UserError, match="has MD5"):
        dataset.load(str(target), cifar10(url=f"{base_url}/cifar.tar.gz", md5="0" * 32))
    assert os.listdir(target) == []


def test_a_failed_download_says_where_to_put_the_tarball(tmp_path, http_server):
    base_url, _ = http_server
    target = tmp_path / "empty"
    expected = (f"could not download {base_url}/missing.tar.gz .*put it at "
                f"{target}/{TARBALL}")
    with pytest.raises(UserError, match=expected):
        dataset.load(str(target), cifar10(url=f"{base_url}/missing.tar.gz"))
    assert os.listdir(target) == []


def test_a_tarball_is_checked_against_the_official_md5_by_default(tiny_data_dir, tmp_path):
    target = tmp_path / "fake_tarball"
    target.mkdir()
    fake_cifar.write_tarball(tiny_data_dir, str(target / TARBALL))
    with pytest.raises(UserError, match=f"not the expected {OFFICIAL_MD5}:"):
        dataset.load(str(target))


def test_the_download_comes_from_the_official_url_by_default(tmp_path, monkeypatch):
    requested = []

    def offline(url, *args, **kwargs):
        requested.append(url)
        raise OSError("offline")

    monkeypatch.setattr(dataset.urllib.request, "urlopen", offline)
    target = tmp_path / "empty"
    with pytest.raises(UserError, match=f"could not download {re.escape(OFFICIAL_URL)} "):
        dataset.load(str(target))
    assert requested == [OFFICIAL_URL]
    assert os.listdir(target) == []


def test_downloads_from_a_file_url(tiny_data_dir, tmp_path):
    md5 = fake_cifar.write_tarball(tiny_data_dir, str(tmp_path / "copy.tar.gz"))
    url = f"file://{tmp_path}/copy.tar.gz"
    cifar = dataset.load(str(tmp_path / "empty"), cifar10(url=url, md5=md5))
    assert len(cifar.train) == 120


def _folder(data_dir):
    return os.path.join(data_dir, FOLDER)


def _truncate(path):
    with open(path, "r+b") as file:
        file.truncate(os.path.getsize(path) // 2)


def _garble(path):
    with open(path, "wb") as file:
        file.write(b"this is not a pickle" * 10)


def _rewrite_batch(path, key, value):
    with open(path, "rb") as file:
        batch = pickle.load(file, encoding="bytes")
    batch[key] = value
    fake_cifar.write_pickle(path, batch)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("damage, message", [
    (os.remove, "data_batch_3 is missing: re-extract"),
    (_truncate, "data_batch_3 is truncated or corrupt"),
    (_garble, "data_batch_3 is truncated or corrupt"),
    (lambda path: _rewrite_batch(path, b"data", np.zeros((24, 3000), np.uint8)),
     r"data_batch_3 holds uint8 pixels of shape \(24, 3000\), not uint8 \(24, 3072\)"),
    (lambda path: _rewrite_batch(path, b"data", np.zeros((24, 3072), np.float32)),
     r"data_batch_3 holds float32 pixels"),
    (lambda path: _rewrite_batch(path, b"labels", [0] * 23),
     r"data_batch_3 holds labels of shape \(23,\), not \(24,\)"),
    (lambda path: _rewrite_batch(path, b"labels", [10] * 24),
     "data_batch_3 has a label outside 0-9"),
    (lambda path: _rewrite_batch(path, b"labels", _Exploit()),
     "data_batch_3 is truncated or corrupt .*unexpected object posix.system"),
])
def test_a_damaged_batch_file_gives_one_clear_error(tiny_data_dir, damage, message):
    damage(os.path.join(_folder(tiny_data_dir), "data_batch_3"))
    with pytest.raises(UserError, match=message) as raised:
        dataset.load(tiny_data_dir)
    assert "\n" not in str(raised.value)


def test_a_meta_file_with_other_classes_is_refused(tiny_data_dir):
    fake_cifar.write_pickle(os.path.join(_folder(tiny_data_dir), "batches.meta"),
                            {b"label_names": [b"a", b"b"], b"num_cases_per_batch": 24})
    with pytest.raises(UserError, match="batches.meta names 2 classes, not 10"):
        dataset.load(tiny_data_dir)


@pytest.fixture
def read_only(monkeypatch):
    """Makes every new file or folder fail as in a read-only --data_dir (as root,
    as the tests may run, a chmod would not stop the writes)."""
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    for module, name in ((os, "makedirs"), (tempfile, "mkstemp"), (tempfile, "mkdtemp")):
        monkeypatch.setattr(module, name, refuse)


@pytest.mark.parametrize("needs", ["downloaded", "unpacked"])
def test_a_read_only_data_dir_that_needs_writing_is_one_line(tiny_data_dir, tmp_path, needs,
                                                             request):
    target = tmp_path / "read_only"
    target.mkdir()
    md5 = fake_cifar.write_tarball(tiny_data_dir, str(target / TARBALL))
    if needs == "downloaded":
        os.remove(target / TARBALL)
    request.getfixturevalue("read_only")
    with pytest.raises(UserError) as refused:
        dataset.load(str(target), cifar10(url="http://127.0.0.1:9/unused", md5=md5))
    assert str(refused.value) == (
        f"cannot write into --data_dir={target} (Permission denied), where CIFAR-10 must be "
        f"{needs}: pass a writable --data_dir, or one that holds cifar-10-batches-py/")
