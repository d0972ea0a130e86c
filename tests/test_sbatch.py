"""scripts/slurm/train.sbatch as Slurm runs it: the commands it runs, with stand-ins
for srun and python3 that record them, and one run trained by two real tasks."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.test_cluster import assert_trained_together, slurm_step, two_free_ports

SCRIPT = os.path.join(ROOT, "scripts/slurm/train.sbatch")
PORT_BASE = "--port_base=13872"  # 10000 + 16 * (4242 % 1000), job 4242's.


def stand_in(folder, name: str) -> str:
    """An executable `folder/name` that records the arguments of each call in
    `folder/name.calls`; returns its path."""
    path = folder / name
    path.write_text(f'#!/bin/bash\nprintf "%s\\0" "$#" "$@" >> "{path}.calls"\n')
    path.chmod(0o755)
    return str(path)


def calls(program: str) -> list[list[str]]:
    """The arguments of each call `stand_in` recorded, [] when never called."""
    if not os.path.exists(program + ".calls"):
        return []
    recorded, found = open(program + ".calls").read().split("\0")[:-1], []
    while recorded:  # Each call: its number of arguments, then the arguments.
        count, recorded = int(recorded[0]), recorded[1:]
        found, recorded = found + [recorded[:count]], recorded[count:]
    return found


@pytest.fixture
def job(tmp_path):
    """Runs the script as Slurm runs job 4242 submitted from the repository, with
    stand-ins for srun and python3 (and python, which it must not run) first on the
    PATH: job(*arguments, **variables) returns the finished bash process."""
    stand_ins = tmp_path / "bin"
    stand_ins.mkdir()
    for name in ("srun", "python3", "python"):
        stand_in(stand_ins, name)
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("PYTHON", "DATA_DIR", "MODEL_DIR", "RUN_NAME", "PORT_BASE")
                   and not name.startswith("SLURM_")}

    def run(*arguments, **variables):
        return subprocess.run(
            ["bash", SCRIPT, *arguments], capture_output=True, text=True, timeout=60,
            env={**environment, "PATH": f"{stand_ins}:{os.environ['PATH']}",
                 "SLURM_JOB_ID": "4242", "SLURM_SUBMIT_DIR": ROOT, **variables})
    run.srun, run.python3 = str(stand_ins / "srun"), str(stand_ins / "python3")
    return run


def srun_command(python: str, data_dir: str, model_dir: str, run_name: str) -> list[str]:
    """srun's arguments in job 4242: its options, then train.py's command line."""
    return ["--label", "--kill-on-bad-exit=1", "--cpus-per-task=1", python, "train.py",
            "--strategy=auto", PORT_BASE, f"--data_dir={data_dir}",
            f"--model_dir={model_dir}", f"--run_name={run_name}"]


@pytest.mark.parametrize("form", ["--name=value", "--name value"])
def test_the_folders_and_run_name_given_after_the_script_are_used_once(job, tmp_path, form):
    data_dir, model_dir = str(tmp_path / "my data"), str(tmp_path / "my runs")
    given = {"data_dir": data_dir, "model_dir": model_dir, "run_name": "slurm-4100"}
    arguments = [part for name, value in given.items()
                 for part in ([f"--{name}={value}"] if form == "--name=value"
                              else [f"--{name}", value])]
    result = job("--epochs=2", *arguments, "--batch_size=8")
    assert result.returncode == 0, result.stderr
    assert [call[2:] for call in calls(job.python3)] == [["python3", data_dir, "cifar10"]]
    assert calls(job.srun) == [srun_command("python3", data_dir, model_dir, "slurm-4100")
                               + ["--epochs=2", "--batch_size=8"]]


@pytest.mark.parametrize("variables, folders", [
    ({}, (f"{ROOT}/data", f"{ROOT}/runs", "slurm-4242")),
    ({"DATA_DIR": "/d", "MODEL_DIR": "/m", "RUN_NAME": "r"}, ("/d", "/m", "r")),
])
def test_the_folders_and_run_name_default_to_the_variables_or_the_submit_folder(
        job, variables, folders):
    result = job("--epochs=2", **variables)
    assert result.returncode == 0, result.stderr
    assert [call[2:] for call in calls(job.python3)] == [["python3", folders[0], "cifar10"]]
    assert calls(job.srun) == [srun_command("python3", *folders) + ["--epochs=2"]]


@pytest.mark.parametrize("given", [["--dataset=cifar100"], ["--dataset", "cifar100"]])
def test_the_data_step_reads_the_dataset_train_py_is_given(job, given):
    result = job("--epochs=2", *given)
    assert result.returncode == 0, result.stderr
    assert [call[2:] for call in calls(job.python3)] == [["python3", f"{ROOT}/data", "cifar100"]]
    assert calls(job.srun) == [srun_command("python3", f"{ROOT}/data", f"{ROOT}/runs",
                                            "slurm-4242") + ["--epochs=2", "--dataset=cifar100"]]


def test_python_is_python3_or_the_one_named_by_the_python_variable(job, tmp_path):
    python = stand_in(tmp_path, "venv-python")
    result = job("--epochs=2", PYTHON=python)
    assert result.returncode == 0, result.stderr
    assert calls(job.python3) == [] and len(calls(python)) == 1
    (srun,) = calls(job.srun)
    assert srun[srun.index("train.py") - 1] == python


def test_a_folder_flag_without_its_value_is_refused_in_one_line(job):
    result = job("--epochs=2", "--data_dir")
    assert (result.returncode, result.stderr) == (1, "error: --data_dir needs a value\n")
    assert calls(job.python3) == calls(job.srun) == []


def test_a_python_without_the_projects_packages_is_named_in_one_line(job, tmp_path):
    bare = tmp_path / "bare-python"  # No site-packages, no current folder on its path.
    bare.write_text(f'#!/bin/bash\nexec "{sys.executable}" -I -S "$@"\n')
    bare.chmod(0o755)
    result = job("--epochs=2", PYTHON=str(bare))
    assert result.returncode == 1 and calls(job.srun) == []
    assert result.stderr.startswith(f"error: {bare} cannot import the project (No module named ")
    assert result.stderr.endswith(": activate its environment before sbatch, or set PYTHON "
                                  "to a python that has it\n")
    assert result.stderr.count("\n") == 1


@pytest.mark.slow
def test_the_data_step_reads_the_data_dir_and_dataset_given_and_fails_in_one_line(
        job, tmp_path):
    not_a_folder = tmp_path / "cifar.zip"
    not_a_folder.write_text("")
    result = job(f"--data_dir={not_a_folder}", "--dataset=cifar100", PYTHON=sys.executable)
    assert (result.returncode, result.stderr) == (1, (
        f"error: --data_dir={not_a_folder} is a file, not a folder: pass the folder that "
        f"holds cifar-100-python/ or cifar-100-python.tar.gz\n"))
    assert calls(job.srun) == []


def test_the_sbatch_defaults_ask_for_no_gpu():
    """So that the script runs as it is on a CPU-only node; the README says how
    to ask for GPUs on sbatch's command line."""
    options = [line.split()[1] for line in open(SCRIPT) if line.startswith("#SBATCH")]
    assert not [option for option in options if "gpu" in option or "gres" in option]
    assert {"--nodes=1", "--ntasks-per-node=2"} <= set(options)


def test_the_sbatch_script_is_valid_bash():
    result = subprocess.run(["bash", "-n", SCRIPT], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_the_sbatch_script_trains_one_run_over_its_tasks(tiny_data_dir, tmp_path):
    """The script as Slurm runs it, with an `srun` that starts its 2 tasks
    here, with the variables of a 2-task step on one node (the command lines
    it is given are checked above)."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    variables = " ".join(f"{name}={value}" for name, value in slurm_step("$i").items())
    (fake_bin / "srun").write_text(
        f'#!/bin/bash\nwhile [[ "$1" == --* ]]; do shift; done\n'
        f'for i in 0 1; do env {variables} "$@" > "{tmp_path}/task$i.out" 2>&1 & done\n'
        f'wait -n && wait -n\n')
    (fake_bin / "srun").chmod(0o755)
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("TF_CONFIG", "DATA_DIR", "MODEL_DIR", "RUN_NAME")
                   and not name.startswith("SLURM_")}
    result = subprocess.run(
        ["bash", SCRIPT, "--epochs=1", f"--data_dir={tiny_data_dir}", "--model_dir",
         str(tmp_path / "runs"), "--batch_size=16"],
        env={**environment, "PATH": f"{fake_bin}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242",
             "SLURM_SUBMIT_DIR": ROOT, "PYTHON": sys.executable,
             "PORT_BASE": str(two_free_ports()), "TMPDIR": str(tmp_path)},
        capture_output=True, text=True, timeout=300)
    outputs = [(tmp_path / f"task{i}.out").read_text() for i in (0, 1)]
    assert result.returncode == 0, result.stderr + "".join(outputs)
    assert_trained_together(outputs, tmp_path / "runs" / "slurm-4242")
    assert [output.splitlines()[0] for output in outputs] == [
        "--strategy=auto picked multi_worker: this is one of the 2 tasks of a Slurm step"] * 2
