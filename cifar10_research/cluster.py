"""The cluster a multi-worker process is a task of, as TF_CONFIG or a Slurm
step describes it, resolved by TensorFlow's own cluster resolvers; one-line
errors where the description cannot work."""

import json
import os

import tensorflow as tf

from cifar10_research.errors import UserError

TF_CONFIG_EXAMPLE = ('e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}')
SLURM_EXAMPLE = "srun --ntasks=2 python train.py ... (see scripts/slurm/train.sbatch)"
HIGHEST_PORT = 65535


def multi_task_reason() -> str | None:
    """Why this process is one task of several (TF_CONFIG, else a Slurm step), or None."""
    if os.environ.get("TF_CONFIG"):
        tasks = sum(len(role) for role in check_tf_config(os.environ["TF_CONFIG"])["cluster"]
                    .values())
        return f"TF_CONFIG names {tasks} tasks" if tasks > 1 else None
    tasks = _slurm_step_tasks()
    return f"this is one of the {tasks} tasks of a Slurm step" if tasks > 1 else None


def resolver(port_base: int) -> tf.distribute.cluster_resolver.ClusterResolver:
    """This process's cluster: from TF_CONFIG when set, else from the Slurm step
    it is a task of, whose workers listen on ports from `port_base` up on each node.

    A Slurm task also keeps only its own GPUs visible (see `gpus_of_task`).
    """
    if os.environ.get("TF_CONFIG"):
        check_tf_config(os.environ["TF_CONFIG"])
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if "SLURM_PROCID" not in os.environ:
        raise UserError(f"--strategy=multi_worker needs a cluster: set the TF_CONFIG "
                        f"environment variable on every worker, {TF_CONFIG_EXAMPLE}; or start "
                        f"one Slurm task per worker, {SLURM_EXAMPLE}")
    slurm = _slurm_resolver(port_base)
    own = gpus_of_task(tf.config.get_visible_devices("GPU"), *_place_on_node(slurm, port_base),
                       bound_by_slurm="SLURM_GPUS_PER_TASK" in os.environ)
    tf.config.set_visible_devices(own, "GPU")
    return slurm


def _slurm_step_tasks() -> int:
    """The tasks of the Slurm step this process runs in (0 outside Slurm)."""
    raw = os.environ.get("SLURM_STEP_NUM_TASKS", "1" if "SLURM_PROCID" in os.environ else "0")
    if not raw.isdigit():
        raise UserError(f"SLURM_STEP_NUM_TASKS={raw} is not a number of tasks: run "
                        f"train.py through srun, which sets it")
    return int(raw)


def _slurm_resolver(port_base: int) -> tf.distribute.cluster_resolver.SlurmClusterResolver:
    tasks = _slurm_step_tasks()
    if tasks < 2:
        raise UserError(f"--strategy=multi_worker runs in a Slurm step of {tasks} task: "
                        f"start one task per worker, {SLURM_EXAMPLE}; or use "
                        f"--strategy=auto")
    try:
        # The GPU counts only satisfy the resolver's checks: GPUs are assigned
        # by gpus_of_task, not by the resolver (which would ask nvidia-smi).
        slurm = tf.distribute.cluster_resolver.SlurmClusterResolver(
            port_base=port_base, gpus_per_node=tasks, gpus_per_task=1, auto_set_gpu=False)
        addresses = slurm.cluster_spec().as_dict()["worker"]
    except (RuntimeError, ValueError) as error:
        raise UserError(f"the Slurm step cannot be resolved into a cluster ({error}): "
                        f"run train.py through srun, which sets SLURM_STEP_NODELIST and "
                        f"SLURM_STEP_TASKS_PER_NODE") from None
    highest = max(int(address.rsplit(":", 1)[1]) for address in addresses)
    if highest > HIGHEST_PORT:
        most = highest - port_base + 1
        raise UserError(f"--port_base={port_base} leaves no port for the {most} tasks on a "
                        f"node: pick one up to {HIGHEST_PORT + 1 - most}")
    return slurm


def _place_on_node(slurm, port_base: int) -> tuple[int, int]:
    """(tasks on this task's node, this task's index among them), from the
    addresses the resolver gave: host:port_base+index."""
    addresses = slurm.cluster_spec().as_dict()[slurm.task_type]
    host, port = addresses[slurm.task_id].rsplit(":", 1)
    on_node = [address for address in addresses if address.rsplit(":", 1)[0] == host]
    return len(on_node), int(port) - port_base


def gpus_of_task(visible: list, tasks_on_node: int, index_on_node: int,
                 bound_by_slurm: bool) -> list:
    """The GPUs of `visible` that a Slurm task uses: all when Slurm bound
    GPUs to tasks (--gpus-per-task), else its even share of the node's."""
    if bound_by_slurm or not visible:
        return visible
    if len(visible) % tasks_on_node:
        raise UserError(f"the {len(visible)} GPUs this task sees do not split evenly over the "
                        f"{tasks_on_node} tasks on its node: ask Slurm for --gpus-per-task, "
                        f"or for a multiple of {tasks_on_node} GPUs per node")
    share = len(visible) // tasks_on_node
    return visible[index_on_node * share:(index_on_node + 1) * share]


def check_tf_config(raw: str) -> dict:
    """TF_CONFIG as a dict; fails with one clear line where it cannot describe a cluster."""
    try:
        tf_config = json.loads(raw)
        workers = tf_config["cluster"]["worker"]
        task_type, index = tf_config["task"]["type"], tf_config["task"]["index"]
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"TF_CONFIG is malformed ({type(error).__name__}: {error}): "
                        f"it must be JSON like {TF_CONFIG_EXAMPLE}") from None
    if not (isinstance(workers, list) and workers and all(isinstance(w, str) for w in workers)):
        raise UserError(f"TF_CONFIG's cluster.worker must be a list of host:port "
                        f"strings, {TF_CONFIG_EXAMPLE}")
    if task_type not in tf_config["cluster"] or not isinstance(index, int) or not (
            0 <= index < len(tf_config["cluster"][task_type])):
        raise UserError(f"TF_CONFIG's task {tf_config['task']} is not in its cluster: "
                        f"set task.type to a cluster role and task.index to this "
                        f"machine's position in its list")
    return tf_config
