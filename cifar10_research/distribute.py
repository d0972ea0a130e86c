"""tf.distribute strategies, chosen by name, and who writes what under them."""

import contextlib
import os
import subprocess
import sys

import tensorflow as tf

from cifar10_research import cluster, stopping
from cifar10_research.errors import UserError

WATCHDOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "watchdog.py")


def configure_devices(num_cpu_devices: int, gpus: str) -> None:
    """Splits the CPU into logical devices and limits the visible GPUs.

    Must run before TensorFlow initialises its devices (the first op).
    """
    physical_gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        indices = [int(index) for index in gpus.split(",")]
        if not physical_gpus:
            raise UserError(f"--gpus={gpus} names a GPU, but TensorFlow sees none on this "
                            f"machine: leave --gpus out to train on the CPU")
        if max(indices) >= len(physical_gpus):
            raise UserError(f"--gpus={gpus} names a GPU this machine does not have "
                            f"(it has {len(physical_gpus)}): pick indices below "
                            f"{len(physical_gpus)}")
        tf.config.set_visible_devices([physical_gpus[i] for i in indices], "GPU")
    if num_cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * num_cpu_devices)


def make_strategy(name: str, worker_timeout: float = 0,
                  port_base: int = cluster.DEFAULT_PORT_BASE) -> tf.distribute.Strategy:
    """The strategy for --strategy=`name` over the devices left visible.

    multi_worker: over the cluster of TF_CONFIG or of a Slurm step (see
    cluster.resolver), with peers_watched(`worker_timeout`) while TensorFlow
    connects the workers. auto: multi_worker when either names more than one
    task, else mirrored over 2 or more visible GPUs, else one device; it
    prints what it picked and why.
    """
    if name == "auto":
        name = _pick(cluster.multi_task_reason())
    if name == "multi_worker":
        # Before anything lists logical devices: that starts the runtime, and
        # collective ops must be configured before it starts.
        resolver = cluster.resolver(port_base)
        with peers_watched(resolver, worker_timeout):
            return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(
            gpus or [device.name for device in tf.config.list_logical_devices("CPU")])
    return tf.distribute.OneDeviceStrategy(gpus[0] if gpus else "/cpu:0")


def _pick(multi_task_reason: str | None) -> str:
    """--strategy=auto's pick, said in one line."""
    if multi_task_reason:
        name, why = "multi_worker", multi_task_reason
    else:
        gpus = len(tf.config.get_visible_devices("GPU"))
        name = "mirrored" if gpus >= 2 else "one_device"
        why = (f"{gpus} GPU{'s' if gpus != 1 else ''} visible and no TF_CONFIG or Slurm step "
               f"of several tasks")
    print(f"--strategy=auto picked {name}: {why}")
    return name


@contextlib.contextmanager
def peers_watched(resolver: tf.distribute.cluster_resolver.ClusterResolver, worker_timeout: float):
    """Runs watchdog.py beside this worker while TensorFlow connects the
    cluster's workers, a call that blocks until all have started, holding
    Python's interpreter lock: no Python code of this process runs meanwhile.

    The watchdog says which peers are awaited, gives up after `worker_timeout`
    seconds (0: never) and ends this worker on Ctrl-C or SIGTERM, which this
    worker holds pending meanwhile (TensorFlow's set-up installs a SIGTERM
    handler of its own, which would swallow it). On leaving, Python's handlers
    are put back in place of TensorFlow's, and handle any signal that arrived.
    """
    addresses = resolver.cluster_spec().as_dict()
    me = addresses[resolver.task_type][resolver.task_id]
    peers = [address for role in addresses.values() for address in role if address != me]
    # Python's handlers are back before the signals are released.
    with stopping.signals_held(), stopping.handlers_restored():
        watchdog = subprocess.Popen([sys.executable, WATCHDOG, str(os.getpid()),
                                     str(worker_timeout), *peers])
        try:
            yield
        finally:
            watchdog.kill()
            watchdog.wait()


def refuse_misfits(batch_size: int, jit_compile: bool, strategy: tf.distribute.Strategy) -> None:
    """Settings that cannot run on `strategy`'s replicas."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise UserError(f"--batch_size={batch_size} does not divide over the "
                        f"{replicas} replicas: pick a multiple of {replicas}")
    if jit_compile and replicas > 1 and not tf.config.list_logical_devices("GPU"):
        raise UserError("--jit_compile cannot mirror over logical CPU devices (XLA places "
                        "every replica's variables on one CPU): drop one of the two")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run folder: always, but on multi-worker
    only worker 0 (or the task named chief)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return not has_chief and resolver.task_type == "worker" and resolver.task_id == 0


# The --strategy names make_strategy knows.
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
