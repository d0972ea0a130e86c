"""Resuming, stopping and bad input around checkpoints, in-process."""

import dataclasses
import json
import os
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar10_research import checkpoints, evaluation, loop, resume, run_folder
from cifar10_research.config import COMPUTES, Config
from cifar10_research.errors import UserError
from cifar10_research.learner import Learner
from tests import fake_cifar
from tests.conftest import one_device


@pytest.fixture
def tiny(tmp_path):
    """(config for a 2-epoch tiny run, its run folder)."""
    fake_cifar.write_folder(str(tmp_path / "data"))
    config = Config(epochs=2, batch_size=16, learning_rate=3e-3, data_dir=str(tmp_path / "data"),
                    log_every_n_steps=3, checkpoint_every_n_steps=4, run_name="tiny")
    return config, str(tmp_path / "runs" / "tiny")


def train(config, workdir):
    return loop.train_and_evaluate(config, workdir, strategy=one_device())


def checkpoint_files(workdir):
    return sorted(os.listdir(os.path.join(workdir, run_folder.CHECKPOINTS)))


def test_a_nonfinite_loss_stops_naming_the_step_and_keeps_good_checkpoints(tiny):
    config, workdir = tiny
    with pytest.raises(UserError, match=r"(the training loss became nan at step \d+ \(epoch 1\)"
                                        r"|some weights became NaN or infinite by step \d+): "
                                        r"training stopped and nothing more was saved"):
        train(config.replace(learning_rate=1e38, checkpoint_every_n_steps=1), workdir)
    saved = [name[:-len(".index")] for name in checkpoint_files(workdir)
             if name.endswith(".index")]
    for name in saved:
        weights = checkpoints.model_weights(os.path.join(workdir, run_folder.CHECKPOINTS, name))
        assert len(weights) == 8  # 4 kernels and 4 biases of simple_cnn.
        assert all(np.isfinite(weight).all() for weight in weights), name


def test_the_nonfinite_check_can_be_turned_off(tiny):
    config, workdir = tiny
    results = train(config.replace(learning_rate=1e38, stop_on_nonfinite=False, epochs=1),
                    workdir)
    assert np.isnan(results["history"]["loss"][0])


def test_a_failed_checkpoint_write_keeps_the_previous_one(tiny, crash_on_save, capsys):
    config, workdir = tiny
    full_disk = tf.errors.ResourceExhaustedError(None, None, "No space left on device")
    with crash_on_save(2, full_disk), pytest.raises(
            UserError, match=r"could not write a checkpoint in .* \(No space left on "
                             r"device\): the previous one, .*ckpt-4, is intact"):
        train(config, workdir)
    capsys.readouterr()
    results = train(config, workdir)
    assert "Resuming " in capsys.readouterr().out
    assert len(results["history"]["loss"]) == 2


def test_a_checkpoint_of_another_model_is_refused(tiny):
    config, workdir = tiny
    other = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    os.makedirs(workdir)
    run_folder.write_text(os.path.join(workdir, run_folder.FLAGFILE), config.to_flagfile())
    tf.train.CheckpointManager(tf.train.Checkpoint(model=other),
                               os.path.join(workdir, run_folder.CHECKPOINTS), 1).save()
    with pytest.raises(UserError, match="does not fit this model .*use another --run_name"):
        train(config, workdir)


def test_changed_settings_are_refused_unless_forced(tiny, capsys):
    config, workdir = tiny
    train(config.replace(epochs=1), workdir)
    with pytest.raises(UserError, match=r"was started with other settings: --epochs \(was 1, "
                                        r"now 2\); rerun with its flags"):
        train(config, workdir)
    capsys.readouterr()
    results = train(config.replace(force=True), workdir)
    assert "epoch 2, after step 0 of 7" in capsys.readouterr().out
    assert len(results["history"]["loss"]) == 2


def another_value(config: Config, field: dataclasses.Field):
    """A value of `field` other than `config`'s that Config accepts beside the rest."""
    value = getattr(config, field.name)
    if field.metadata["choices"]:
        candidates = [choice for choice in field.metadata["choices"] if choice != value]
    elif field.type is bool:
        candidates = [not value]
    elif field.type is int:
        candidates = [value + 1, value - 1]
    else:
        candidates = [value * 2, value / 2, 0.1, 0.5, 0.9]
    for candidate in candidates:
        try:
            config.replace(**{field.name: candidate})
        except UserError:
            continue
        if candidate != value:
            return candidate
    raise AssertionError(f"no other valid value of --{field.name} among {candidates}")


def test_a_resume_is_refused_for_each_setting_that_changes_what_is_computed(tiny):
    config, workdir = tiny
    started = config.replace(epochs=1, optimizer="sgd")  # Where every setting may change.
    train(started, workdir)
    computing = [field for field in dataclasses.fields(Config)
                 if field.metadata["kind"] == COMPUTES]
    assert {"epochs", "batch_size", "learning_rate", "seed", "model"} <= {
        field.name for field in computing}
    for field in computing:
        saved = getattr(started, field.name)
        changed = started.replace(**{field.name: another_value(started, field)})
        with pytest.raises(UserError) as refused:
            resume.refuse_changed_settings(changed, workdir)
        assert f"--{field.name} (was {saved}, now {getattr(changed, field.name)})" in str(
            refused.value), field.name


def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous(tiny, capsys):
    config, workdir = tiny
    first = train(config, workdir)
    data_file = os.path.join(workdir, run_folder.CHECKPOINTS, "ckpt-14.data-00000-of-00001")
    with open(data_file, "r+b") as file:
        file.truncate(100)
    capsys.readouterr()
    again = train(config, workdir)
    captured = capsys.readouterr()
    assert "warning: checkpoint" in captured.err and "ckpt-14 is unreadable" in captured.err
    assert "Resuming" in captured.out and "ckpt-12: epoch 2, after step 5 of 7" in captured.out
    assert len(again["history"]["loss"]) == 2
    np.testing.assert_allclose(again["history"]["val_loss"], first["history"]["val_loss"],
                               rtol=1e-5)


def test_eval_mode_evaluates_the_latest_or_a_chosen_checkpoint(tiny, capsys):
    config, workdir = tiny
    config = config.replace(keep_checkpoints=10)
    finished = train(config, workdir)
    latest = evaluation.evaluate_checkpoint(config.replace(mode="eval"), workdir,
                                            strategy=one_device())
    assert latest["test_accuracy"] == finished["test_accuracy"]
    assert latest["checkpoint"].endswith("ckpt-14")
    with open(os.path.join(workdir, run_folder.EVAL_RESULTS)) as file:
        assert json.load(file) == latest
    chosen = os.path.join(workdir, run_folder.CHECKPOINTS, "ckpt-7")
    earlier = evaluation.evaluate_checkpoint(config.replace(mode="eval", checkpoint=chosen),
                                             workdir, strategy=one_device())
    assert earlier["test_accuracy"] == finished["history"]["val_accuracy"][0]
    with pytest.raises(UserError, match="cannot read checkpoint .*ckpt-99"):
        evaluation.evaluate_checkpoint(
            config.replace(mode="eval", checkpoint=chosen[:-1] + "99"), workdir,
            strategy=one_device())


def test_a_finished_run_missing_its_model_gets_it_back(tiny):
    config, workdir = tiny
    train(config, workdir)
    model_path = os.path.join(workdir, run_folder.MODEL)
    trained = keras.models.load_model(model_path).get_weights()
    os.remove(model_path)
    train(config, workdir)
    for restored, original in zip(keras.models.load_model(model_path).get_weights(), trained,
                                  strict=True):
        np.testing.assert_array_equal(restored, original)


def test_resuming_without_the_history_says_how_to_go_on(tiny):
    config, workdir = tiny
    train(config.replace(epochs=1), workdir)
    os.remove(os.path.join(workdir, run_folder.HISTORY))
    with pytest.raises(UserError) as refused:
        train(config.replace(force=True), workdir)  # Forced to its 2 epochs.
    assert str(refused.value) == (
        f"cannot read {workdir}/history.json (No such file or directory): its 1 epochs' "
        f"history is needed to resume: put the file back, or start the run anew under "
        f"another --run_name")
    assert checkpoint_files(workdir)[-1].startswith("ckpt-")


def test_a_profile_ending_on_an_epoch_boundary(tiny):
    config, workdir = tiny
    results = train(config.replace(profile_steps="3,7"), workdir)  # 7 steps an epoch.
    assert len(results["history"]["loss"]) == 2
    profiles = [name for _, _, names in os.walk(workdir) for name in names
                if name.endswith(".xplane.pb")]
    assert len(profiles) == 1


def test_a_new_batch_size_is_refused_in_the_middle_of_an_epoch_even_forced(tiny,
                                                                           crash_on_save):
    config, workdir = tiny
    with crash_on_save(2, OSError("simulated crash")), pytest.raises(UserError,
                                                                     match="simulated crash"):
        train(config, workdir)  # Leaves ckpt-4: step 4 of epoch 1.
    events_before = event_files(workdir)
    with pytest.raises(UserError, match="ckpt-4 stopped in the middle of an epoch"):
        train(config.replace(batch_size=8, force=True), workdir)
    assert event_files(workdir) == events_before  # A refused start writes nothing.


def event_files(workdir):
    return sorted(os.path.join(folder, name) for folder, _, names in os.walk(workdir)
                  for name in names if "tfevents" in name)


def test_a_run_resumed_mid_epoch_counts_the_whole_epochs_seconds(tiny, crash_on_save,
                                                                 monkeypatch):
    """Wall and CPU seconds: each slow step spins the CPU for 0.75 s."""
    config, workdir = tiny
    real_train_steps = Learner.train_steps

    def slow(learner, iterator, num_steps):
        started = time.process_time()
        while time.process_time() - started < 0.75:
            pass
        real_train_steps(learner, iterator, num_steps)

    monkeypatch.setattr(Learner, "train_steps", slow)
    with crash_on_save(2, OSError("simulated crash")), pytest.raises(UserError):
        train(config, workdir)  # Leaves ckpt-4 after 4 slow steps of epoch 1.
    before_the_crash = checkpoints.state(
        os.path.join(workdir, run_folder.CHECKPOINTS, "ckpt-4"))
    assert before_the_crash["seconds"] >= 3.0 and before_the_crash["cpu_seconds"] >= 3.0
    monkeypatch.setattr(Learner, "train_steps", real_train_steps)
    results = train(config, workdir)  # The rest of epoch 1 takes well under 3 s.
    for clock in ("seconds", "cpu_seconds"):
        assert results["history"][clock][0] >= before_the_crash[clock], clock


def test_resuming_with_another_model_names_it_before_any_restore(tiny):
    config, workdir = tiny
    train(config.replace(epochs=1), workdir)
    for forced in (False, True):
        with pytest.raises(UserError, match=r"holds checkpoints of another network: --model "
                                            r"\(was simple_cnn, now wide_cnn\)"):
            train(config.replace(model="wide_cnn", force=forced), workdir)


def test_eval_mode_refuses_another_network_by_name(tiny):
    config, workdir = tiny
    train(config.replace(epochs=1, model="wide_cnn"), workdir)
    with pytest.raises(UserError, match=r"--model \(was wide_cnn, now simple_cnn\); leave these "
                                        r"flags out to use the run's own"):
        evaluation.evaluate_checkpoint(config.replace(mode="eval"), workdir,
                                       strategy=one_device())


def test_a_forced_new_batch_size_at_an_epoch_end_keeps_the_epochs_done(tiny, capsys):
    config, workdir = tiny
    train(config.replace(epochs=1), workdir)  # 7 steps of 16 images.
    capsys.readouterr()
    results = train(config.replace(batch_size=8, force=True), workdir)
    assert "ckpt-7: epoch 2, after step 0 of 15" in capsys.readouterr().out
    assert len(results["history"]["loss"]) == 2
    checkpoints = os.path.join(workdir, run_folder.CHECKPOINTS)
    assert tf.train.latest_checkpoint(checkpoints).endswith("ckpt-30")  # 2 epochs of 15.


def test_a_forced_new_batch_size_counts_the_epochs_of_the_held_out_split(tiny, capsys):
    config, workdir = tiny
    config = config.replace(validation_split=0.25)  # 89 of the 120 images to train on.
    train(config.replace(epochs=1), workdir)  # 5 steps of 16 images.
    capsys.readouterr()
    results = train(config.replace(batch_size=8, force=True), workdir)
    assert "ckpt-5: epoch 2, after step 0 of 11" in capsys.readouterr().out
    assert len(results["history"]["loss"]) == 2


def test_a_forced_resume_to_fewer_epochs_than_trained_is_refused(tiny, crash_on_save):
    config, workdir = tiny
    with crash_on_save(5, OSError("simulated crash")), pytest.raises(UserError):
        train(config, workdir)  # Saves at steps 4, 7 (epoch 1's end), 8, 12; fails at 14.
    flags_before = open(os.path.join(workdir, run_folder.FLAGFILE)).read()
    with pytest.raises(UserError) as refused:
        train(config.replace(epochs=1, force=True), workdir)
    folder = os.path.join(workdir, run_folder.CHECKPOINTS)
    assert str(refused.value) == (
        f"{workdir} has trained past --epochs=1, to epoch 2, after step 5 of 7 "
        f"({folder}/ckpt-12): evaluate a checkpoint it kept (ckpt-7, ckpt-8, ckpt-12) with "
        f"--mode=eval --checkpoint={folder}/ckpt-N, or train --epochs=1 under another --run_name")
    assert open(os.path.join(workdir, run_folder.FLAGFILE)).read() == flags_before
    assert run_folder.read_results(workdir) is None
