"""The research knobs, wired through train_and_evaluate."""

import os

import pytest

from cifar10_research import run_folder
from cifar10_research.config import Config
from cifar10_research.errors import UserError
from cifar10_research.learner import Learner
from tests import events
from tests.conftest import one_device, train_tiny


def train(tmp_path, name="knobs", **options):
    workdir = tmp_path / name
    return train_tiny(workdir, **options), str(workdir)


def test_the_learning_rate_follows_the_schedule_and_is_logged(tmp_path):
    _, workdir = train(tmp_path, lr_schedule="cosine", warmup_epochs=1)
    logged = dict(events.scalars(os.path.join(workdir, run_folder.TRAIN_LOGS))["learning_rate"])
    # 8 steps an epoch: warmup to 3e-3 over steps 0-8, then half a cosine to 0 by step 16.
    assert logged[2] == pytest.approx(3e-3 * 2 / 8)
    assert logged[8] == pytest.approx(3e-3)
    assert logged[12] == pytest.approx(3e-3 * 0.5)
    assert logged[16] == pytest.approx(0.0, abs=1e-9)


def test_augmentation_changes_training_only(tmp_path):
    plain, _ = train(tmp_path, "plain")
    augmented, _ = train(tmp_path, "augmented", augment="flip_crop")
    assert augmented["history"]["loss"] != plain["history"]["loss"]
    assert augmented["test_count"] == plain["test_count"] == 40


def test_label_smoothing_raises_the_training_loss_floor(tmp_path):
    plain, _ = train(tmp_path, "plain", epochs=1)
    smoothed, _ = train(tmp_path, "smoothed", epochs=1, label_smoothing=0.2)
    assert smoothed["history"]["loss"][0] > plain["history"]["loss"][0]


def test_weight_decay_uses_adamw_sparing_biases(tmp_path):
    learner = Learner(one_device(), Config(weight_decay=0.05), steps_per_epoch=8)
    assert type(learner.optimizer).__name__ == "AdamW"
    results, _ = train(tmp_path, weight_decay=0.05)
    assert results["history"]["loss"][1] < results["history"]["loss"][0]


def test_the_wide_model_trains_and_resumes_exactly(tmp_path, crash_on_save):
    options = dict(model="wide_cnn", augment="flip", checkpoint_every_n_steps=3)
    uninterrupted, _ = train(tmp_path, "whole", **options)
    with crash_on_save(3, OSError("simulated crash")), pytest.raises(UserError,
                                                                     match="simulated crash"):
        train(tmp_path, "interrupted", **options)
    resumed, _ = train(tmp_path, "interrupted", **options)
    assert resumed["weights_fingerprint"] == uninterrupted["weights_fingerprint"]
    assert resumed["history"]["val_loss"] == uninterrupted["history"]["val_loss"]


def test_a_fractional_warmup_counts_the_steps_of_its_share_of_an_epoch(tmp_path):
    _, workdir = train(tmp_path, lr_schedule="linear", warmup_epochs=0.5)
    logged = dict(events.scalars(os.path.join(workdir, run_folder.TRAIN_LOGS))["learning_rate"])
    # 8 steps an epoch: up to 3e-3 over 4 steps, then down to 0 at step 16.
    assert logged[2] == pytest.approx(3e-3 * 2 / 4)
    assert logged[4] == pytest.approx(3e-3)
    assert logged[10] == pytest.approx(3e-3 * 6 / 12)
    assert logged[16] == pytest.approx(0.0, abs=1e-9)
