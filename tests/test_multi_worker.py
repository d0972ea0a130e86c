"""Multi-worker training with real processes on loopback: the launcher, two
workers agreeing, a worker waiting for its peers, and signals to workers."""

import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from cifar10_research import run_folder, watchdog
from tests import processes
from tests.conftest import ROOT, run_python


@pytest.mark.slow
def test_two_workers_on_loopback_agree_and_only_the_chief_writes(tiny_data_dir, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = run_python(
        "scripts/launch_workers.py", "--num_workers=2", "--", f"--data_dir={tiny_data_dir}",
        "--epochs=1", "--batch_size=16", f"--model_dir={tmp_path / 'runs'}", "--run_name=pair",
        env={"TMPDIR": str(scratch)})
    assert result.returncode == 0, result.stdout + result.stderr
    fingerprints = re.findall(r"^\[worker (\d)\] Weights fingerprint: (\w+)$",
                              result.stdout, re.MULTILINE)
    assert sorted(worker for worker, _ in fingerprints) == ["0", "1"]
    assert fingerprints[0][1] == fingerprints[1][1]
    assert "[worker 0] Test accuracy:" in result.stdout
    assert "(loss" in result.stdout and "24 images)" in result.stdout
    assert "[worker 1] Test accuracy:" not in result.stdout
    assert os.listdir(tmp_path / "runs") == ["pair"]
    assert (tmp_path / "runs" / "pair" / run_folder.MODEL).is_file()
    assert [p for p in os.listdir(scratch) if p.startswith("cifar10-worker-")] == []


@pytest.mark.slow
def test_the_launcher_fails_when_a_worker_fails(tmp_path):
    result = run_python(
        "scripts/launch_workers.py", "--num_workers=2", "--", f"--data_dir={tmp_path}/missing",
        "--epochs=1", f"--model_dir={tmp_path}", "--run_name=broken", "--batch_size=3")
    assert result.returncode == 1
    assert "does not divide over the 2 replicas" in result.stdout
    assert re.fullmatch(r"error: worker \d exited with code 1(; stopped worker \d)?\n",
                        result.stderr)


@pytest.mark.slow
def test_the_launcher_stops_a_healthy_worker_when_another_fails(tiny_data_dir, tmp_path):
    """The chief fails (its run folder is locked by another process); worker 1,
    healthy, would wait for it until its collective op failed."""
    workdir = tmp_path / "locked"
    workdir.mkdir()
    with open(workdir / run_folder.LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = run_python(
            "scripts/launch_workers.py", "--num_workers=2", "--", f"--data_dir={tiny_data_dir}",
            "--epochs=1", f"--model_dir={tmp_path}", "--run_name=locked", "--batch_size=16",
            timeout=120)
    assert result.returncode == 1
    assert "[worker 0] error: " in result.stdout and "is in use by another process" in (
        result.stdout)
    stopped = result.stderr.splitlines()[-1] == ("error: worker 0 exited with code 1; stopped "
                                                 "worker 1")
    # Or worker 1 saw the chief's loss and ended first, in its own one line.
    assert stopped or ("[worker 1] Stopped: worker 0 of the cluster stopped responding"
                       in result.stdout and result.stderr.endswith(
                           "error: worker 0 exited with code 1\n")), result.stdout + result.stderr
    assert not [pid for pid in os.listdir("/proc") if "--run_name=locked" in command_line(pid)]


@pytest.mark.slow
def test_ctrl_c_to_the_launcher_stops_every_worker_after_a_checkpoint(tiny_data_dir,
                                                                      tmp_path):
    launcher = processes.start(
        [sys.executable, os.path.join(ROOT, "scripts", "launch_workers.py"), "--num_workers=2",
         "--", f"--data_dir={tiny_data_dir}", "--epochs=20", "--batch_size=16",
         f"--model_dir={tmp_path}", "--run_name=pair"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})  # This checkout's, as run_python.
    for line in launcher.stdout:
        if line.startswith("[worker 0] Epoch 2/"):
            break
    launcher.send_signal(signal.SIGINT)
    stdout, stderr = launcher.communicate(timeout=120)
    assert launcher.returncode == 130, stdout + stderr
    assert stderr == "Stopped by SIGINT, sent on to every worker (exit codes 130, 130)\n"
    # Who had received it when they voted: one, or both, as it reached both at once.
    stops = re.findall(r"^\[worker (\d)\] (Stopped by SIGINT \(received by (worker 0, worker 1|"
                       r"worker \d)\) after step (\d+); saved .*ckpt-(\d+)\. Rerun every "
                       r"worker's command to resume)$", stdout, re.MULTILINE)
    assert sorted(worker for worker, *_ in stops) == ["0", "1"], stdout
    assert stops[0][1] == stops[1][1] and stops[0][3] == stops[0][4]


def command_line(pid: str) -> str:
    """A process's command line, or "" if `pid` is no process (or has ended)."""
    try:
        with open(f"/proc/{pid}/cmdline", errors="replace") as file:
            return file.read().replace("\0", " ")
    except OSError:
        return ""


def test_the_watchdog_sees_a_signal_held_pending_in_the_worker():
    holder = subprocess.Popen(
        [sys.executable, "-c", "import signal, time\n"
         "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})\n"
         "print('holding', flush=True)\ntime.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "holding\n"
        assert watchdog.pending_stop(holder.pid) is None
        holder.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        assert watchdog.pending_stop(holder.pid) == signal.SIGTERM
    finally:
        holder.kill()
        holder.wait()


def workers_of_a_cluster_of_two(tiny_data_dir, tmp_path, started, *flags):
    """The processes of the workers numbered in `started` of a 2-worker TF_CONFIG
    cluster on loopback, training tiny data; and the cluster's addresses."""
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    return [processes.start(
        [sys.executable, os.path.join(ROOT, "train.py"), "--strategy=multi_worker",
         f"--data_dir={tiny_data_dir}", f"--model_dir={tmp_path}", "--run_name=pair",
         "--batch_size=16", *flags],
        env={**os.environ, "TF_CONFIG": json.dumps({"cluster": {"worker": addresses},
                                                    "task": {"type": "worker", "index": i}})})
        for i in started], addresses


def alone_in_a_cluster_of_two(tiny_data_dir, tmp_path, *flags):
    """Worker 0 of a 2-worker TF_CONFIG whose worker 1 never starts, and worker 1's address."""
    (process,), addresses = workers_of_a_cluster_of_two(tiny_data_dir, tmp_path, [0], *flags)
    return process, addresses[1]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_a_worker_says_whom_it_waits_for_and_gives_up_after_the_timeout(tiny_data_dir,
                                                                        tmp_path):
    process, peer = alone_in_a_cluster_of_two(tiny_data_dir, tmp_path, "--worker_timeout=8")
    _, stderr = process.communicate(timeout=120)
    lines = stderr.splitlines()
    assert f"Waiting 5 s for the workers at {peer} to start" in lines
    assert lines[-1] == (f"error: the workers at {peer} did not start within "
                         f"--worker_timeout=8 s: start every worker of the cluster, or check "
                         f"its addresses")
    assert process.returncode == -signal.SIGKILL


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_ends_a_worker_blocked_waiting_for_its_peers(tiny_data_dir, tmp_path,
                                                                       stop):
    process, peer = alone_in_a_cluster_of_two(tiny_data_dir, tmp_path)
    for line in process.stderr:
        if line.startswith("Waiting"):
            break
    process.send_signal(stop)
    rest = process.communicate(timeout=30)[1].splitlines()
    assert rest == [f"Stopped by {stop.name} while waiting for the other workers: nothing "
                    f"was written; rerun every worker to go on"]
    assert process.returncode == -signal.SIGKILL
    assert not (tmp_path / "pair").exists()


def until_epoch_2(chief):
    for line in chief.stdout:
        if line.startswith("Epoch 2/"):
            return
    raise AssertionError("the chief ended before epoch 2")


@pytest.mark.slow
def test_sigterm_to_one_worker_stops_both_after_one_checkpoint_and_both_resume(tiny_data_dir,
                                                                               tmp_path):
    """A preempted machine's worker gets SIGTERM: every worker stops at the same
    step, after the same checkpoint, in one line each; rerun, they resume."""
    (chief, worker), _ = workers_of_a_cluster_of_two(tiny_data_dir, tmp_path, [0, 1],
                                                     "--epochs=5")
    until_epoch_2(chief)
    worker.send_signal(signal.SIGTERM)
    stderrs = [process.communicate(timeout=120)[1] for process in (chief, worker)]
    assert [chief.returncode, worker.returncode] == [143, 143], stderrs
    lines = [stderr.splitlines() for stderr in stderrs]
    assert lines[0] == lines[1] and len(lines[0]) == 1, lines
    stop = re.fullmatch(r"Stopped by SIGTERM \(received by worker 1\) after step (\d+); saved "
                        r"(.*)/ckpt-(\d+)\. Rerun every worker's command to resume", lines[0][0])
    assert stop and stop[1] == stop[3] and stop[2] == str(tmp_path / "pair" / "checkpoints")
    resumed, _ = workers_of_a_cluster_of_two(tiny_data_dir, tmp_path, [0, 1], "--epochs=5")
    outputs = [process.communicate(timeout=300) for process in resumed]
    assert [process.returncode for process in resumed] == [0, 0], outputs
    assert f"ckpt-{stop[1]}: epoch" in outputs[0][0]
    fingerprints = [re.search(r"Weights fingerprint: (\w+)", out)[1] for out, _ in outputs]
    assert fingerprints[0] == fingerprints[1]


@pytest.mark.slow
def test_a_worker_killed_mid_training_is_named_by_the_other_in_one_line(tiny_data_dir, tmp_path):
    (chief, worker), _ = workers_of_a_cluster_of_two(tiny_data_dir, tmp_path, [0, 1],
                                                     "--epochs=100")
    until_epoch_2(chief)
    worker.kill()
    _, stderr = chief.communicate(timeout=120)
    assert chief.returncode == 138
    assert stderr.splitlines() == [
        "Stopped: worker 1 of the cluster stopped responding (killed, crashed, or its machine "
        "lost); rerun every worker's command to resume from the chief's latest checkpoint"]
    worker.wait()
