"""tf.distribute strategies, chosen by name, and who writes what under them."""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

import tensorflow as tf

from cifar10_research import cluster, stopping
from cifar10_research.errors import Interrupted, UserError

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


def workers(strategy: tf.distribute.Strategy) -> list[str]:
    """The cluster's tasks in order ("chief 0", "worker 0", ...), or [] when the
    strategy runs in this process alone."""
    resolver = getattr(strategy, "cluster_resolver", None)
    jobs = resolver.cluster_spec().as_dict() if resolver else {}
    return [f"{job} {index}" for job in ("chief", "worker")
            for index in range(len(jobs.get(job, [])))]


class StopVote:
    """Which workers were asked to stop (SIGTERM, Ctrl-C), known to all at once.

    A worker of several cannot stop alone: the others would wait for it in
    their next collective op. So wherever the loop may stop, every worker
    calls the vote, each puts its signal in its own slot, and one all-reduce
    gives every worker all the slots: all stop at the same step, after the
    same checkpoint. Without a cluster, the vote is this process's signal,
    with no communication.
    """

    def __init__(self, strategy: tf.distribute.Strategy):
        self._workers = workers(strategy)
        if self._workers:
            resolver = strategy.cluster_resolver
            slot = tf.one_hot(self._workers.index(f"{resolver.task_type} {resolver.task_id}"),
                              len(self._workers))
            # Each of this worker's replicas adds its share: the sum counts it once.
            share = slot / len(strategy.extended.worker_devices)
            self._all_reduce = tf.function(lambda signum: strategy.reduce(
                tf.distribute.ReduceOp.SUM, strategy.run(lambda: share * signum), axis=None))

    def __call__(self, signum: signal.Signals | None) -> dict[str, signal.Signals]:
        """{task: signal} of the tasks asked to stop; {"": signum} without a cluster."""
        if not self._workers:
            return {"": signum} if signum else {}
        numbers = self._all_reduce(tf.constant(float(signum or 0))).numpy().round()
        return {task: signal.Signals(int(number))
                for task, number in zip(self._workers, numbers) if number}


@contextlib.contextmanager
def own_folder(strategy: tf.distribute.Strategy, workdir: str):
    """The folder this process writes into: the run folder `workdir` on the
    chief; on another worker a temporary folder, removed after the block."""
    if is_chief(strategy):
        yield workdir
        return
    folder = tempfile.mkdtemp(prefix="cifar10-worker-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def peer_loss_reported(strategy: tf.distribute.Strategy):
    """Turns the failed collective op of a worker whose peer ended (killed,
    crashed, or its machine lost) into a stop in one line, with exit code 138,
    which Kubeflow's ExitCode restart policy, like a signal's, takes as worth
    a restart."""
    try:
        yield
    except tf.errors.UnavailableError as error:
        if not workers(strategy):
            raise
        raise _peer_lost(error, strategy) from None


def _peer_lost(error: tf.errors.OpError, strategy: tf.distribute.Strategy) -> Interrupted:
    resolver = strategy.cluster_resolver
    me = (resolver.task_type, str(resolver.task_id))
    lost = sorted({f"{job} {index}" for job, index in
                   re.findall(r"/job:(\w+)/replica:\d+/task:(\d+)", error.message)
                   if (job, index) != me})
    return Interrupted(f"Stopped: {' and '.join(lost) or 'another worker'} of the cluster "
                       f"stopped responding (killed, crashed, or its machine lost); rerun "
                       f"every worker's command to resume from the chief's latest checkpoint",
                       PEER_LOST_EXIT_CODE)


PEER_LOST_EXIT_CODE = 138
# The --strategy names make_strategy knows.
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
