"""Shared fixtures. Every test process sees 2 logical CPU devices, so the same
run can be compared on one device and mirrored over two."""

import pytest

import quiet

quiet.import_tensorflow_quietly()

import distribute  # noqa: E402

from tests import fake_cifar  # noqa: E402

distribute.configure_devices(num_cpu_devices=2, gpus="")


@pytest.fixture
def tiny_data_dir(tmp_path):
    """A data dir holding a tiny dataset: 5 x 24 training and 24 test images."""
    fake_cifar.write_folder(str(tmp_path / "data"))
    return str(tmp_path / "data")
