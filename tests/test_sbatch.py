"""scripts/slurm/train.sbatch as Slurm runs it: the commands it runs, with stand-ins
for srun and python3 that record them, and one run trained by two real tasks."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.test_cluster import assert_trained_together, slurm_step, two_free_ports

SCRIPT = os.path.join(ROOT, "scripts/slurm/train.sbatch")


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
    here, with the variables of a 2-task step on one node."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    variables = " ".join(f"{name}={value}" for name, value in slurm_step("$i").items())
    (fake_bin / "srun").write_text(
        f'#!/bin/bash\nwhile [[ "$1" == --* ]]; do echo "$1" >> "{tmp_path}/srun.options"; '
        f'shift; done\nfor i in 0 1; do env {variables} "$@" > "{tmp_path}/task$i.out" '
        f'2>&1 & done\nwait -n && wait -n\n')
    (fake_bin / "srun").chmod(0o755)
    environment = {name: value for name, value in os.environ.items()
                   if name != "TF_CONFIG" and not name.startswith("SLURM_")}
    result = subprocess.run(
        ["bash", SCRIPT, "--epochs=1", "--batch_size=16"],
        env={**environment, "PATH": f"{fake_bin}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242",
             "SLURM_SUBMIT_DIR": ROOT, "PYTHON": sys.executable, "DATA_DIR": tiny_data_dir,
             "MODEL_DIR": str(tmp_path / "runs"), "PORT_BASE": str(two_free_ports()),
             "TMPDIR": str(tmp_path)},
        capture_output=True, text=True, timeout=300)
    outputs = [(tmp_path / f"task{i}.out").read_text() for i in (0, 1)]
    assert result.returncode == 0, result.stderr + "".join(outputs)
    assert_trained_together(outputs, tmp_path / "runs" / "slurm-4242")
    assert (tmp_path / "srun.options").read_text().splitlines() == [
        "--kill-on-bad-exit=1", "--cpus-per-task=1"]
    assert [output.splitlines()[0] for output in outputs] == [
        "--strategy=auto picked multi_worker: this is one of the 2 tasks of a Slurm step"] * 2
