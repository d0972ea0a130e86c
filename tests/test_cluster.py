"""Clusters described by Slurm (and TF_CONFIG): detection, resolution, errors, and
two real workers started with only Slurm's variables."""

import json
import os
import re
import socket
import sys

import pytest
import tensorflow as tf

import flags
from cifar10_research import cluster, run_folder
from cifar10_research.errors import UserError
from tests import processes
from tests.conftest import ROOT

TWO_WORKERS = '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}'


def slurm_step(procid: int, tasks: int = 2, nodelist: str = "localhost",
               tasks_per_node: str = "2") -> dict:
    """The variables srun sets for one task of a step on the nodes of `nodelist`."""
    return {"SLURM_PROCID": str(procid), "SLURM_STEP_NUM_TASKS": str(tasks),
            "SLURM_STEP_NODELIST": nodelist, "SLURM_STEP_TASKS_PER_NODE": tasks_per_node}


@pytest.fixture
def environment(monkeypatch):
    """Sets the given variables, with no TF_CONFIG or Slurm variable besides."""
    for name in list(os.environ):
        if name == "TF_CONFIG" or name.startswith("SLURM_"):
            monkeypatch.delenv(name)

    def set_variables(variables: dict):
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
    return set_variables


@pytest.mark.parametrize("variables, reason", [
    ({}, None),
    (slurm_step(0), "this is one of the 2 tasks of a Slurm step"),
    (slurm_step(0, tasks=1, tasks_per_node="1"), None),
    ({"SLURM_PROCID": "0"}, None),  # Inside an allocation, outside any srun step.
    ({"TF_CONFIG": TWO_WORKERS}, "TF_CONFIG names 2 tasks"),
    ({"TF_CONFIG": TWO_WORKERS.replace('"a:1", ', "").replace('"index": 1', '"index": 0')},
     None),
    ({"TF_CONFIG": TWO_WORKERS, **slurm_step(0, tasks=3, tasks_per_node="3")},
     "TF_CONFIG names 2 tasks"),  # TF_CONFIG, when set, is the cluster.
])
def test_auto_detects_a_cluster_of_several_tasks(environment, variables, reason):
    environment(variables)
    assert cluster.multi_task_reason() == reason


@pytest.fixture
def gpus(monkeypatch):
    """Pretends this machine shows the given GPUs; records what is left visible."""
    shown = {}

    def pretend(names: list):
        monkeypatch.setattr(tf.config, "get_visible_devices", lambda kind: list(names))
        monkeypatch.setattr(tf.config, "set_visible_devices",
                            lambda devices, kind: shown.update({kind: devices}))
        return shown
    return pretend


@pytest.mark.parametrize("procid, node, index", [(0, "node9", 0), (2, "node9", 2),
                                                 (3, "node10", 0)])
def test_a_slurm_step_resolves_to_one_worker_per_task_in_slurms_order(
        environment, gpus, procid, node, index):
    """Slurm numbers tasks node after node in its node list: node9 before node10
    (sorted by name, as TensorFlow's SlurmClusterResolver sorts them, node10 is first)."""
    environment({**slurm_step(procid, tasks=4, nodelist="node[9-10]", tasks_per_node="3,1"),
                 "SLURMD_NODENAME": node, "SLURM_LOCALID": str(index)})
    shown = gpus([])
    resolver = cluster.resolver(port_base=20000)
    assert resolver.cluster_spec().as_dict() == {"worker": [
        "node9:20000", "node9:20001", "node9:20002", "node10:20000"]}
    assert (resolver.task_type, resolver.task_id) == ("worker", procid)
    assert resolver.num_accelerators() == {"GPU": 0} and shown == {"GPU": []}


def test_a_slurm_task_mirrors_over_its_share_of_the_nodes_gpus(environment, gpus):
    environment({**slurm_step(1, tasks=2, nodelist="gpu01", tasks_per_node="2"),
                 "SLURM_LOCALID": "1"})
    shown = gpus(["g0", "g1", "g2", "g3"])
    resolver = cluster.resolver(port_base=20000)
    assert shown == {"GPU": ["g2", "g3"]}
    assert resolver.num_accelerators() == {"GPU": 2}  # The strategy's replicas on this task.


def test_a_slurm_task_keeps_the_gpus_slurm_bound_to_it(environment, gpus):
    environment({**slurm_step(1, tasks=2, nodelist="gpu01", tasks_per_node="2"),
                 "SLURM_LOCALID": "1", "SLURM_GPUS_PER_TASK": "a100:2"})
    shown = gpus(["g6", "g7"])
    assert cluster.resolver(port_base=20000).num_accelerators() == {"GPU": 2}
    assert shown == {"GPU": ["g6", "g7"]}


@pytest.mark.parametrize("variables, port_base, message", [
    (slurm_step(0, tasks=1, tasks_per_node="1"), 8888,
     "--strategy=multi_worker runs in a Slurm step of 1 task: start one task per worker, "
     "srun --ntasks=2 python train.py ... (see scripts/slurm/train.sbatch); or use "
     "--strategy=auto"),
    (slurm_step(0, nodelist="node[1-"), 8888,
     'the Slurm step cannot be resolved into a cluster (Invalid hostlist format "node[1-": '),
    (slurm_step(0, tasks=3), 8888,
     "the Slurm step's 3 tasks do not match its nodes (localhost) and tasks per node (2)"),
    (slurm_step(2), 8888, "SLURM_PROCID=2 is not one of the step's 2 tasks"),
    ({**slurm_step(1, nodelist="n[1-2]", tasks_per_node="1(x2)"), "SLURMD_NODENAME": "n1"},
     8888, "Slurm placed task 1 other than node after node: start the step with srun "
     "--distribution=block"),
    (slurm_step(0), 65535,
     "--port_base=65535 leaves no port for the 2 tasks on a node: pick one up to 65534"),
    ({"SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "two"}, 8888,
     "SLURM_STEP_NUM_TASKS=two is not a number of tasks: run train.py through srun"),
])
def test_a_slurm_step_that_cannot_work_is_named_in_one_line(environment, variables,
                                                            port_base, message):
    environment(variables)
    with pytest.raises(UserError) as refused:
        cluster.resolver(port_base)
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("visible, tasks, index, per_task, own", [
    ([], 2, 1, 0, []),
    (["g0", "g1", "g2", "g3"], 2, 1, 0, ["g2", "g3"]),
    (["g0", "g1", "g2", "g3"], 4, 0, 0, ["g0"]),
    (["g5"], 4, 3, 1, ["g5"]),  # --gpus-per-task=1: Slurm bound each task its own.
    (["g0", "g1", "g2", "g3"], 4, 3, 1, ["g3"]),  # Asked for, but not bound: split.
])
def test_each_slurm_task_uses_only_its_share_of_the_nodes_gpus(visible, tasks, index,
                                                               per_task, own):
    assert cluster.gpus_of_task(visible, tasks, index, per_task) == own


def test_gpus_that_do_not_split_over_the_tasks_are_refused():
    with pytest.raises(UserError, match="the 3 GPUs this task sees do not split evenly over "
                                        "the 2 tasks on its node: ask Slurm for --gpus-per-task"):
        cluster.gpus_of_task(["g0", "g1", "g2"], 2, 0, gpus_per_task=0)


def two_free_ports() -> int:
    """A port P such that P and P + 1 are free on loopback now."""
    while True:
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            if port < 65535:
                with socket.socket() as second:
                    try:
                        second.bind(("127.0.0.1", port + 1))
                        return port
                    except OSError:
                        pass


@pytest.mark.slow
def test_two_slurm_tasks_train_together_with_no_tf_config(tiny_data_dir, tmp_path):
    """With --strategy=multi_worker; --strategy=auto, the sbatch script's, is tested
    in test_sbatch.py."""
    port_base = two_free_ports()
    environment = {name: value for name, value in os.environ.items()
                   if name != "TF_CONFIG" and not name.startswith("SLURM_")}
    tasks = [processes.start(
        [sys.executable, os.path.join(ROOT, "train.py"), "--strategy=multi_worker",
         f"--port_base={port_base}", f"--data_dir={tiny_data_dir}", "--epochs=1",
         "--batch_size=16", f"--model_dir={tmp_path / 'runs'}", "--run_name=slurm"],
        env={**environment, **slurm_step(procid), "TMPDIR": str(tmp_path)}) for procid in (0, 1)]
    outputs = [task.communicate(timeout=300) for task in tasks]
    for task, (stdout, stderr) in zip(tasks, outputs):
        assert task.returncode == 0, stdout + stderr
    assert_trained_together([stdout for stdout, _ in outputs], tmp_path / "runs" / "slurm")
    assert not [name for name in os.listdir(tmp_path) if name.startswith("cifar10-worker-")]


def assert_trained_together(outputs: list[str], workdir) -> None:
    """The two tasks ended with the same weights, and the chief alone wrote `workdir`."""
    fingerprints = [re.search(r"^Weights fingerprint: (\w+)$", output, re.MULTILINE)[1]
                    for output in outputs]
    assert fingerprints[0] == fingerprints[1]
    assert "Test accuracy:" in outputs[0] and "Test accuracy:" not in outputs[1]
    assert os.listdir(workdir.parent) == [workdir.name]
    assert run_folder.read_results(str(workdir))["test_count"] == 24


def test_the_tfjob_manifest_runs_train_py_with_valid_flags_on_its_shared_volume(parse):
    manifest = open(os.path.join(ROOT, "scripts/k8s/tfjob.yaml")).read()
    command = json.loads(re.search(r"^ +command: (\[.*\])$", manifest, re.MULTILINE)[1])
    assert command[:3] == ["python", "train.py", "--strategy=multi_worker"]
    mount = re.search(r"^ +mountPath: (\S+)$", manifest, re.MULTILINE)[1]
    settings = dict(argument[2:].split("=", 1) for argument in command[2:])
    assert settings["model_dir"] == mount and settings["data_dir"].startswith(mount + "/")
    parse(*command[2:])  # Raises on a flag train.py does not know.
    assert flags.to_config().strategy == "multi_worker"
