"""The cluster a multi-worker process is a task of, as TF_CONFIG or a Slurm
step describes it, resolved by TensorFlow's own cluster resolvers; one-line
errors where the description cannot work."""

import json
import os

import tensorflow as tf
from tensorflow.python.distribute.cluster_resolver import slurm_cluster_resolver as slurm_resolver

from cifar10_research.errors import UserError

TF_CONFIG_EXAMPLE = ('e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}')
SLURM_EXAMPLE = "srun --ntasks=2 python train.py ... (see scripts/slurm/train.sbatch)"
HIGHEST_PORT = 65535
DEFAULT_PORT_BASE = 8888  # As TensorFlow's SlurmClusterResolver's.


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
    it is a task of (see `slurm_cluster`).

    A Slurm task also keeps only its own GPUs visible (see `gpus_of_task`), and
    the strategy mirrors over those.
    """
    if os.environ.get("TF_CONFIG"):
        check_tf_config(os.environ["TF_CONFIG"])
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if "SLURM_PROCID" not in os.environ:
        raise UserError(f"--strategy=multi_worker needs a cluster: set the TF_CONFIG "
                        f"environment variable on every worker, {TF_CONFIG_EXAMPLE}; or start "
                        f"one Slurm task per worker, {SLURM_EXAMPLE}")
    addresses, rank, tasks_on_node, index_on_node = slurm_cluster(port_base)
    own = gpus_of_task(tf.config.get_visible_devices("GPU"), tasks_on_node, index_on_node,
                       _gpus_per_task_by_slurm())
    tf.config.set_visible_devices(own, "GPU")
    return tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec({"worker": addresses}), task_type="worker", task_id=rank,
        num_accelerators={"GPU": len(own)}, rpc_layer="grpc")


def _slurm_step_tasks() -> int:
    """The tasks of the Slurm step this process runs in (0 outside Slurm)."""
    raw = os.environ.get("SLURM_STEP_NUM_TASKS", "1" if "SLURM_PROCID" in os.environ else "0")
    if not raw.isdigit():
        raise UserError(f"SLURM_STEP_NUM_TASKS={raw} is not a number of tasks: run "
                        f"train.py through srun, which sets it")
    return int(raw)


def slurm_cluster(port_base: int) -> tuple[list[str], int, int, int]:
    """(the workers' addresses, this task's rank, the tasks on its node, its index
    among them) of the Slurm step: one worker per task, at node:port_base+index.

    Parsed by TensorFlow's own Slurm helpers, but laid out here in Slurm's
    order: TensorFlow's SlurmClusterResolver sorts the nodes by name, which on
    node9 and node10 gives task 0 node10's address. Tasks are numbered node
    after node (srun's default block distribution); a task that finds itself
    elsewhere (--distribution=cyclic) is refused rather than miswired.
    """
    tasks = _slurm_step_tasks()
    if tasks < 2:
        raise UserError(f"--strategy=multi_worker runs in a Slurm step of {tasks} task: "
                        f"start one task per worker, {SLURM_EXAMPLE}; or use "
                        f"--strategy=auto")
    try:
        nodes = slurm_resolver.expand_hostlist(os.environ["SLURM_STEP_NODELIST"])
        per_node = slurm_resolver.expand_tasks_per_node(os.environ["SLURM_STEP_TASKS_PER_NODE"])
    except (KeyError, ValueError) as error:
        raise UserError(f"the Slurm step cannot be resolved into a cluster ({error}): run "
                        f"train.py through srun, which sets SLURM_STEP_NODELIST and "
                        f"SLURM_STEP_TASKS_PER_NODE") from None
    if len(nodes) != len(per_node) or sum(per_node) != tasks:
        raise UserError(f"the Slurm step's {tasks} tasks do not match its nodes "
                        f"({os.environ['SLURM_STEP_NODELIST']}) and tasks per node "
                        f"({os.environ['SLURM_STEP_TASKS_PER_NODE']}): run train.py through "
                        f"srun, which sets them")
    if port_base + max(per_node) - 1 > HIGHEST_PORT:
        raise UserError(f"--port_base={port_base} leaves no port for the {max(per_node)} tasks "
                        f"on a node: pick one up to {HIGHEST_PORT + 1 - max(per_node)}")
    places = [(node, count, index) for node, count in zip(nodes, per_node)
              for index in range(count)]
    rank = os.environ["SLURM_PROCID"]
    if not (rank.isdigit() and int(rank) < tasks):
        raise UserError(f"SLURM_PROCID={rank} is not one of the step's {tasks} tasks: run "
                        f"train.py through srun, which sets it")
    rank = int(rank)
    node, count, index = places[rank]
    if (os.environ.get("SLURMD_NODENAME", node), os.environ.get("SLURM_LOCALID", str(index))) != (
            node, str(index)):
        raise UserError(f"Slurm placed task {rank} other than node after node: start the "
                        f"step with srun --distribution=block")
    return [f"{node}:{port_base + index}" for node, _, index in places], rank, count, index


def _gpus_per_task_by_slurm() -> int:
    """--gpus-per-task of the Slurm job ("2" or "a100:2"), 0 when not given."""
    count = os.environ.get("SLURM_GPUS_PER_TASK", "").rsplit(":", 1)[-1]
    return int(count) if count.isdigit() else 0


def gpus_of_task(visible: list, tasks_on_node: int, index_on_node: int,
                 gpus_per_task: int) -> list:
    """The GPUs of `visible` that a Slurm task uses: all when Slurm already bound
    `gpus_per_task` (--gpus-per-task) to it, else its even share of the node's."""
    if not visible or len(visible) <= gpus_per_task:
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
