"""Real processes killed and resumed end exactly like an uninterrupted run."""

import json
import os
import re
import shlex
import signal
import sys
import time

import pytest

from cifar10_research import run_folder
from tests import events, fake_cifar, processes
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
STEPS_PER_EPOCH = 50  # 5 x 80 training images / batch 8.
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")  # Not "seconds": wall time.


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A dataset big enough to kill a run mid-epoch, and an uninterrupted run on it."""
    root = tmp_path_factory.mktemp("resume")
    fake_cifar.write_folder(str(root / "data"), rows_per_file=80)
    reference = finish(root, "reference", fresh=True)
    return root, reference


def command(name, *extra):
    """A run as a user starts it from `root`, with paths relative to it; its batches
    flipped in alternate epochs, shifted and cut-mixed, so every resume must draw
    them as the run did (the flips from the images' ids and the epoch). It
    keeps a moving average of the weights, which it reports (the fingerprints are of
    it), and Lookahead's slow weights in epoch 2, so the resumes prove both
    checkpointed exactly too."""
    return [sys.executable, os.path.join(ROOT, "train.py"), "--deterministic", "--epochs=2",
            "--batch_size=8", "--data_dir=data", "--model_dir=runs", f"--run_name={name}",
            "--checkpoint_every_n_steps=10", "--log_every_n_steps=20", "--ema_decay=0.99",
            "--augment=alternating_flip_translate", "--mix=cutmix", "--lookahead_every=5",
            "--lookahead_after_epochs=1", *extra]


def finish(root, name, *extra, fresh=False):
    """Runs (or resumes) a run to its end, forked (tests/processes.py) unless
    `fresh`; returns (stdout, fingerprint, history)."""
    result = processes.run(command(name, *extra), cwd=root, timeout=300, fresh=fresh)
    assert result.returncode == 0, result.stderr
    fingerprint = re.search(r"^Weights fingerprint: (\w+)$", result.stdout, re.MULTILINE)[1]
    with open(root / "runs" / name / run_folder.HISTORY) as file:
        history = json.load(file)
    return result.stdout, fingerprint, {key: history[key] for key in METRICS}


def start_and_signal(root, name, checkpoint_step, signals, *extra):
    """Starts a run, and once checkpoint `checkpoint_step` is recorded sends `signals`."""
    process = processes.start(command(name, *extra), cwd=root)
    state = root / "runs" / name / run_folder.CHECKPOINTS / "checkpoint"
    deadline = time.monotonic() + 240
    while not (state.exists() and f"ckpt-{checkpoint_step}\"" in state.read_text()):
        assert process.poll() is None, "the run ended before it could be stopped"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    for signum in signals:
        process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    return process.returncode, stdout, stderr


def resumed_at(stdout):
    match = re.search(r"^Resuming .*ckpt-\d+: epoch (\d+), after step (\d+) of", stdout,
                      re.MULTILINE)
    return int(match[1]), int(match[2])


def test_two_deterministic_runs_are_bit_identical(setup):
    """A fresh interpreter's run (the reference) and a forked one: each its own
    hash seed."""
    root, (_, fingerprint, history) = setup
    _, again_fingerprint, again_history = finish(root, "again")
    assert again_fingerprint == fingerprint
    assert again_history == history
    for logs in (run_folder.TRAIN_LOGS, run_folder.VALIDATION_LOGS):
        first = events.scalars(str(root / "runs" / "reference" / logs))
        second = events.scalars(str(root / "runs" / "again" / logs))
        for tag in ("loss", "accuracy", "epoch_loss", "epoch_accuracy"):
            assert first.get(tag) == second.get(tag), (logs, tag)


def test_killed_mid_epoch_and_resumed_ends_identical(setup):
    root, (_, fingerprint, history) = setup
    code, _, _ = start_and_signal(root, "killed", STEPS_PER_EPOCH + 20, [signal.SIGKILL])
    assert code == -signal.SIGKILL
    stdout, resumed_fingerprint, resumed_history = finish(root, "killed")
    epoch, step = resumed_at(stdout)
    # A kill while a checkpoint is written leaves the one before: still mid-epoch.
    assert epoch == 2 and 10 <= step < STEPS_PER_EPOCH
    assert resumed_fingerprint == fingerprint
    assert resumed_history == history


def test_killed_between_epochs_and_resumed_ends_identical(setup):
    root, (_, fingerprint, history) = setup
    # Checkpoints only at epoch ends: wherever the kill lands in epoch 2, the
    # run resumes from the end of epoch 1.
    code, _, _ = start_and_signal(root, "between", STEPS_PER_EPOCH, [signal.SIGKILL],
                                  "--checkpoint_every_n_steps=0")
    assert code == -signal.SIGKILL
    stdout, resumed_fingerprint, resumed_history = finish(root, "between",
                                                          "--checkpoint_every_n_steps=0")
    assert resumed_at(stdout) == (2, 0)
    assert resumed_fingerprint == fingerprint
    assert resumed_history == history


def test_sigterm_saves_says_how_to_resume_and_resumes_identical(setup):
    root, (_, fingerprint, history) = setup
    code, _, stderr = start_and_signal(root, "terminated", STEPS_PER_EPOCH + 10,
                                       [signal.SIGTERM])
    assert code == 143
    message = re.fullmatch(r"Stopped by SIGTERM after step (\d+); saved (.*ckpt-(\d+))\. "
                           r"Resume with: (.*)\n", stderr)
    assert message and message[1] == message[3]
    resume = shlex.split(message[4])
    assert resume == [sys.executable, os.path.join(ROOT, "train.py"),
                      f"--flagfile={root / 'runs' / 'terminated' / run_folder.FLAGFILE}"]
    elsewhere = root / "elsewhere"  # The run started in `root` with relative paths.
    elsewhere.mkdir()
    result = processes.run(resume, cwd=elsewhere, timeout=300)
    assert result.returncode == 0, result.stderr
    assert resumed_at(result.stdout) == (2, int(message[1]) - STEPS_PER_EPOCH)
    assert f"Weights fingerprint: {fingerprint}" in result.stdout
    with open(root / "runs" / "terminated" / run_folder.HISTORY) as file:
        resumed_history = json.load(file)
    assert {key: resumed_history[key] for key in METRICS} == history


def test_a_second_ctrl_c_exits_at_once(tmp_path):
    """The second Ctrl-C while a stop is pending, as sent one after the other.
    (A real run often stops between two quick Ctrl-Cs, and signals sent
    together may merge into one; that an abrupt exit keeps the last complete
    checkpoint usable is what the SIGKILL tests above prove.)"""
    script = tmp_path / "impatient.py"
    script.write_text(
        "import os, signal, time\n"
        "from cifar10_research import stopping\n"
        "with stopping.deferred():\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    while stopping.requested() is None:\n"
        "        time.sleep(0.01)\n"
        "    print('pending:', stopping.requested().name, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(30)\n"
        "print('not stopped')\n")
    result = processes.run([sys.executable, str(script)], timeout=120,
                           env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 130
    assert result.stdout == "pending: SIGINT\n"
    assert result.stderr == ("\nSecond Ctrl-C: exiting now; the last complete checkpoint is "
                             "kept.\n")
