"""Shared fixtures. Every test process sees 2 logical CPU devices, so the same
run can be compared on one device and mirrored over two."""

import contextlib

import pytest

import quiet

quiet.import_tensorflow_quietly()

import distribute  # noqa: E402

from tests import fake_cifar  # noqa: E402

import tensorflow as tf  # noqa: E402

distribute.configure_devices(num_cpu_devices=2, gpus="")


@pytest.fixture
def tiny_data_dir(tmp_path):
    """A data dir holding a tiny dataset: 5 x 24 training and 24 test images."""
    fake_cifar.write_folder(str(tmp_path / "data"))
    return str(tmp_path / "data")


@pytest.fixture
def crash_on_save(monkeypatch):
    """`with crash_on_save(n, error):` makes the n-th checkpoint save raise `error`,
    as a full disk or a crash mid-save would; saves work again after the block."""
    @contextlib.contextmanager
    def crash(call: int, error: Exception):
        real_save = tf.train.CheckpointManager.save
        calls = []

        def save(manager, *args, **kwargs):
            calls.append(1)
            if len(calls) == call:
                raise error
            return real_save(manager, *args, **kwargs)

        monkeypatch.setattr(tf.train.CheckpointManager, "save", save)
        try:
            yield
        finally:
            monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)
    return crash
