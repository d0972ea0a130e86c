"""Faults on purpose: full disks, diverged weights, two writers, signals outside training."""

import errno
import os
import sys

import keras
import pytest
import tensorflow as tf

from cifar10_research import dataset, distribute, evaluation, plots, run_folder
from cifar10_research.config import Config
from cifar10_research.errors import UserError
from cifar10_research.learner import Learner
from tests import processes
from tests.conftest import ROOT, train_tiny

NO_SPACE = OSError(errno.ENOSPC, "No space left on device")


def test_a_second_process_on_a_run_folder_is_refused_naming_the_holder(tmp_path):
    workdir = tmp_path / "busy"
    workdir.mkdir()
    with run_folder.locked(str(workdir)):
        with pytest.raises(UserError, match=rf"{workdir} is in use by another process "
                                            rf"\(PID {os.getpid()}\): wait for it to end"):
            train_tiny(workdir)
    assert train_tiny(workdir)["test_count"] == 40  # Released: the run goes on.


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    script = tmp_path / "holder.py"
    script.write_text("import sys, time\nfrom cifar10_research import run_folder\n"
                      "with run_folder.locked(sys.argv[1]):\n"
                      "    print('locked', flush=True)\n    time.sleep(60)\n")
    holder = processes.start([sys.executable, str(script), str(tmp_path)], cwd=ROOT)
    assert holder.stdout.readline() == "locked\n"
    with pytest.raises(UserError, match=f"PID {holder.pid}"):
        with run_folder.locked(str(tmp_path)):
            pass
    holder.kill()
    holder.wait()
    with run_folder.locked(str(tmp_path)):
        pass


def test_weights_that_diverge_under_a_finite_loss_are_never_saved(tmp_path, monkeypatch):
    real_train_steps = Learner.train_steps

    def poisoning(learner, iterator, num_steps):
        real_train_steps(learner, iterator, num_steps)
        if int(learner.step.numpy()) == 3:  # After the loss of step 3 was summed.
            bias = learner.model.layers[0].bias
            bias.assign(tf.fill(bias.shape, float("nan")))

    monkeypatch.setattr(Learner, "train_steps", poisoning)
    with pytest.raises(UserError, match=r"some weights became NaN or infinite by step 3: "
                                        r"training stopped and nothing more was saved; the "
                                        r"latest checkpoint, .*ckpt-2, holds finite weights "
                                        r"\(largest magnitude [\d.e+-]+\)"):
        train_tiny(tmp_path / "diverged", checkpoint_every_n_steps=1)
    checkpoints = tf.train.get_checkpoint_state(str(tmp_path / "diverged" / "checkpoints"))
    assert checkpoints.model_checkpoint_path.endswith("ckpt-2")


def test_a_first_checkpoint_on_a_full_disk_leaves_no_debris_and_the_run_starts_again(
        tmp_path, monkeypatch, capsys):
    workdir = tmp_path / "full"
    real_save = tf.train.CheckpointManager.save

    def full_disk(manager, *args, **kwargs):
        os.makedirs(os.path.join(manager.directory, "ckpt-8_temp"))  # As TensorFlow leaves.
        raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")

    monkeypatch.setattr(tf.train.CheckpointManager, "save", full_disk)
    with pytest.raises(UserError, match=r"could not write a checkpoint in .* \(No space left "
                                        r"on device\): no earlier checkpoint exists; rerun the "
                                        r"same command to start again"):
        train_tiny(workdir, checkpoint_every_n_steps=0)
    assert os.listdir(workdir / "checkpoints") == []
    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)
    capsys.readouterr()
    assert len(train_tiny(workdir, checkpoint_every_n_steps=0)["history"]["loss"]) == 2
    assert capsys.readouterr().err == (
        f"warning: {workdir} holds the history of 1 epoch but no checkpoint (its first one was "
        f"never written): the run starts again from its first step\n")


def test_an_export_on_a_full_disk_leaves_nothing_half_written_and_a_rerun_finishes(
        tmp_path, monkeypatch, capsys):
    workdir = tmp_path / "export"
    real_save = keras.Model.save

    def full_disk(model, path, *args, **kwargs):
        with open(path, "wb") as file:
            file.write(b"PK\x03\x04 cut short")
        raise NO_SPACE

    monkeypatch.setattr(keras.Model, "save", full_disk)
    with pytest.raises(UserError, match=r"could not write .*model.keras \(No space left on "
                                        r"device\): .* rerun the same command to finish"):
        train_tiny(workdir)
    assert not [name for name in os.listdir(workdir) if "model.keras" in name]
    assert run_folder.read_results(str(workdir)) is None
    monkeypatch.setattr(keras.Model, "save", real_save)
    capsys.readouterr()
    results = train_tiny(workdir)
    assert "has finished" not in capsys.readouterr().out
    assert keras.models.load_model(str(workdir / run_folder.MODEL)).count_params() == 167_562
    assert run_folder.read_results(str(workdir))["test_accuracy"] == results["test_accuracy"]


def test_a_data_dir_that_is_a_file_is_named(tmp_path):
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(UserError, match=r"--data_dir=.*notes.txt is a file, not a folder: pass "
                                        r"the folder that holds cifar-10-batches-py/"):
        dataset.load(str(tmp_path / "notes.txt"))


def test_a_checkpoint_file_instead_of_its_prefix_is_named(tmp_path):
    checkpoint = str(tmp_path / "run" / "checkpoints" / "ckpt-30")
    for name in (checkpoint + ".index", checkpoint + ".data-00000-of-00001"):
        with pytest.raises(UserError, match=rf"names one of a checkpoint's files: pass the "
                                            rf"checkpoint itself, {checkpoint}$"):
            evaluation.evaluate_checkpoint(Config(mode="eval", run_name="run", checkpoint=name),
                                           str(tmp_path / "run"))


def test_a_gpu_on_a_machine_without_any_is_named(monkeypatch):
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    with pytest.raises(UserError, match=r"--gpus=7 names a GPU, but TensorFlow sees none on this "
                                        r"machine: leave --gpus out"):
        distribute.configure_devices(num_cpu_devices=2, gpus="7")


def test_a_gpu_index_past_the_machines_gpus_is_named(monkeypatch):
    two_gpus = [tf.config.PhysicalDevice(f"/physical_device:GPU:{i}", "GPU") for i in (0, 1)]
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: two_gpus if kind == "GPU" else [])
    with pytest.raises(UserError) as refused:
        distribute.configure_devices(num_cpu_devices=1, gpus="0,2")
    assert str(refused.value) == ("--gpus=0,2 names a GPU this machine does not have (it has "
                                  "2): pick indices below 2")


def test_a_profile_past_the_last_step_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"--profile_steps=10,99 ends after the run's last step, "
                                        r"16: pick steps up to it"):
        train_tiny(tmp_path / "profiled", profile_steps="10,99")


def test_a_run_name_too_long_for_a_file_name_is_named():
    with pytest.raises(UserError, match="--run_name may hold only .* up to 200 of them"):
        Config(run_name="x" * 300)


def test_a_history_write_on_a_full_disk_is_one_line_and_the_rerun_completes(tmp_path,
                                                                            monkeypatch):
    workdir = tmp_path / "history"

    def full_disk(path, *args, **kwargs):
        if "history.json" in str(path):
            raise NO_SPACE
        return open(path, *args, **kwargs)

    monkeypatch.setattr(run_folder, "open", full_disk, raising=False)
    with pytest.raises(UserError, match=r"could not write .*history.json \(No space left on "
                                        r"device\): .* rerun the same command to finish"):
        train_tiny(workdir)
    assert not [name for name in os.listdir(workdir) if name.startswith("history.json")]
    monkeypatch.undo()
    assert len(train_tiny(workdir)["history"]["loss"]) == 2


@pytest.mark.parametrize("write", [
    lambda path: run_folder.write_text(path, "text"),
    lambda path: plots.save(plots.curves(run_folder.empty_history(), "loss"), path),
])
def test_a_file_is_never_written_over_a_folder(tmp_path, write):
    for folder in (tmp_path / "runs", tmp_path / "figure.png.tmp"):  # The path or its partial.
        (folder / "run").mkdir(parents=True)
        (folder / "run" / "history.json").write_text("{}")
    for path in (tmp_path / "runs", tmp_path / "figure.png"):
        with pytest.raises(UserError) as refused:
            write(str(path))
        folder = path if path.is_dir() else tmp_path / "figure.png.tmp"
        assert str(refused.value) == (f"{folder} is a folder, not a file: it is left as it "
                                      f"is; write elsewhere, e.g. to a file inside it")
        assert (folder / "run" / "history.json").read_text() == "{}"


def test_a_folder_is_never_written_over_a_file(tmp_path):
    (tmp_path / "saved_model").write_text("notes")
    with pytest.raises(UserError, match=r"saved_model is a file, not a folder: it is left as "
                                        r"it is; move it away"):
        run_folder.write_whole(str(tmp_path / "saved_model"), os.makedirs, folder=True)
    assert (tmp_path / "saved_model").read_text() == "notes"
