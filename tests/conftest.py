"""Shared fixtures and helpers. Every test process sees 2 logical CPU devices, so
the same run can be compared on one device and mirrored over two.

Tests that start real processes (train.py, scripts, workers, TensorBoard) are
marked `slow`; `pytest -m "not slow"` leaves them out for a quick loop.
"""

# First, so that TensorFlow loads without its banners (cifar10_research/quiet.py),
# which each pytest-xdist worker would otherwise print into the test output.
import cifar10_research  # noqa: F401  # isort: skip
import contextlib
import functools
import http.server
import os
import sys
import threading

import numpy as np
import pytest
import tensorflow as tf

import flags
from cifar10_research import dataset, distribute, loop
from cifar10_research.config import Config
from tests import fake_cifar, processes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

distribute.configure_devices(num_cpu_devices=2, gpus="")


def one_device() -> tf.distribute.Strategy:
    return tf.distribute.OneDeviceStrategy("/cpu:0")


def two_replicas() -> tf.distribute.Strategy:
    """A new 2-replica strategy with collective keys of its own, as TensorFlow's
    own tests make them: each MirroredStrategy otherwise starts from the same
    keys, and an all-reduce whose shape differs from one run earlier under the
    same keys fails ("Shape mismatch in the collective instance 100"). A
    training process makes one strategy; a test session makes many."""
    tf.distribute.MirroredStrategy._collective_key_base += 1000
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def tiny_split(rows: int, seed: int = 0) -> dataset.Split:
    images, labels = fake_cifar.images_and_labels(rows, seed)
    return dataset.Split(images, labels.astype(np.int32))


def tiny_cifar(train_rows: int = 128, test_rows: int = 40) -> dataset.Cifar:
    """An in-memory dataset whose classes a model learns in a few steps."""
    return dataset.Cifar(tiny_split(train_rows, 1), tiny_split(test_rows, 2), dataset.CLASS_NAMES)


def train_tiny(workdir, strategy=None, cifar=None, **settings) -> dict:
    """Trains 2 epochs of batch 16 on `cifar` (default: tiny_cifar()), as changed by
    `settings`, into `workdir`; returns train_and_evaluate's results."""
    config = Config(epochs=2, batch_size=16, learning_rate=3e-3, log_every_n_steps=2,
                    run_name=os.path.basename(str(workdir))).replace(**settings)
    return loop.train_and_evaluate(config, str(workdir), strategy=strategy or one_device(),
                                   cifar=cifar or tiny_cifar())


def run_python(script: str, *args, timeout: int = 300, env: dict | None = None,
               fresh: bool = False):
    """Runs `python <script> <args>` from the repository root, with `env` added to
    the environment; returns the finished process. It is forked with TensorFlow
    imported (tests/processes.py) unless `fresh`: a new interpreter."""
    return processes.run([sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": ROOT, **(env or {})},
                         timeout=timeout, fresh=fresh)


@pytest.fixture
def parse():
    """Parses a command line into the global flags, and unparses them after."""
    yield lambda *args: flags.FLAGS(["train.py", *args])
    flags.FLAGS.unparse_flags()


@pytest.fixture
def tiny_data_dir(tmp_path):
    """A data dir holding a tiny dataset: 5 x 24 training and 24 test images."""
    fake_cifar.write_folder(str(tmp_path / "data"))
    return str(tmp_path / "data")


@pytest.fixture
def http_server(tmp_path):
    """Serves tmp_path/served over HTTP on loopback; yields (the base URL,
    the served folder)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served
    server.shutdown()
    server.server_close()


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


# The runs of run_root, for the TensorBoard and figure tests, as a researcher compares
# them: "watched", validated on the test set, with histograms and a profile; "held", of
# another seed, validated on a quarter of the training images held out.
WATCHED = Config(epochs=2, batch_size=16, learning_rate=3e-3, log_every_n_steps=3,
                 run_name="watched", histograms=True, profile_steps="2,4")
HELD = WATCHED.replace(run_name="held", seed=1, validation_split=0.25, histograms=False,
                       profile_steps="")


@pytest.fixture(scope="session")
def run_root(tmp_path_factory):
    """A root holding the 2-epoch runs WATCHED and HELD; returns (root, WATCHED's results)."""
    root = tmp_path_factory.mktemp("tensorboard")
    fake_cifar.write_folder(str(root / "data"))
    results = [loop.train_and_evaluate(config.replace(data_dir=str(root / "data")),
                                       str(root / "runs" / config.run_name),
                                       strategy=one_device())
               for config in (WATCHED, HELD)]
    return root / "runs", results[0]
