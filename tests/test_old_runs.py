"""Run folders written by earlier versions of this code resume under this one.

tests/fixtures/old-format/ was written by the code of commit 8988976, before
metrics were checkpointed and logged by name: --model=fast_cnn, 2 epochs of
fake_cifar.write_folder's data in batches of 16 (7 steps an epoch),
--checkpoint_every_n_steps=3 --keep_checkpoints=1 --log_every_n_steps=2, stopped
by a crash after step 10. Its one checkpoint, ckpt-9, is 2 steps into epoch 2
and holds that epoch's training sums in the layout of the time (a [2, 3]
array); its history.json holds epoch 1, without the metrics added since.
"""

import json
import os
import shutil

import numpy as np
import pytest

from cifar10_research import checkpoints, loop, run_folder
from cifar10_research.config import Config
from cifar10_research.saved_flags import parse_flagfile
from tests import fake_cifar
from tests.conftest import ROOT, one_device

FIXTURE = os.path.join(ROOT, "tests", "fixtures", "old-format")


def test_a_run_stopped_mid_epoch_by_the_old_code_resumes_and_finishes(tmp_path, capsys):
    workdir = tmp_path / "runs" / "old-format"
    shutil.copytree(FIXTURE, workdir)
    fake_cifar.write_folder(str(tmp_path / "data"))
    with open(workdir / run_folder.FLAGFILE) as file:
        saved = parse_flagfile(file.read())
    config = Config(epochs=2, batch_size=16, learning_rate=3e-3, model="fast_cnn",
                    log_every_n_steps=2, checkpoint_every_n_steps=3, keep_checkpoints=1,
                    data_dir=str(tmp_path / "data"), model_dir=str(tmp_path / "runs"),
                    run_name="old-format")
    assert {name: saved[name] for name in ("epochs", "batch_size", "model", "learning_rate")} == {
        name: str(getattr(config, name)) for name in ("epochs", "batch_size", "model",
                                                      "learning_rate")}
    results = loop.train_and_evaluate(config, str(workdir), strategy=one_device())
    assert "ckpt-9: epoch 2, after step 2 of 7" in capsys.readouterr().out
    history = results["history"]
    with open(os.path.join(FIXTURE, run_folder.HISTORY)) as file:
        old = json.load(file)
    for key in old.keys() - {"val_data"}:  # Epoch 1 kept as the old code wrote it.
        assert history[key][:1] == old[key], key
    assert history["val_top5_accuracy"][0] is None  # Measured since.
    for key in run_folder.HISTORY_KEYS:
        assert len(history[key]) == 2, key
        assert history[key][1] is not None and np.isfinite(history[key][1]), key
    # The whole epoch 2, 7 x 16 images: its first 2 steps' sums came from the checkpoint.
    assert history["accuracy"][1] * 112 == pytest.approx(round(history["accuracy"][1] * 112))
    assert results["test_count"] == 24
    assert run_folder.read_results(str(workdir)) == {
        key: value for key, value in results.items() if key != "history"}


def test_the_old_checkpoints_epoch_sums_are_read_by_name():
    state = checkpoints.state(os.path.join(FIXTURE, run_folder.CHECKPOINTS, "ckpt-9"))
    assert state["sums"] == {"loss": pytest.approx(50.00431633), "accuracy": 13, "count": 32}
    assert state["logged"] == {"loss": pytest.approx(27.28127861), "accuracy": 5, "count": 16}
    assert state["seconds"] > 0
