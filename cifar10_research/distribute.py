"""tf.distribute strategies, chosen by name, and who writes what under them."""

import json
import os
import signal
import subprocess
import sys

import tensorflow as tf

from cifar10_research.errors import UserError


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


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy for --strategy=`name` over the devices left visible."""
    return STRATEGIES[name]()


def _logical_devices(kind: str) -> list[str]:
    return [device.name for device in tf.config.list_logical_devices(kind)]


def _one_device() -> tf.distribute.Strategy:
    return tf.distribute.OneDeviceStrategy((_logical_devices("GPU") or _logical_devices("CPU"))[0])


def _mirrored() -> tf.distribute.Strategy:
    return tf.distribute.MirroredStrategy(_logical_devices("GPU") or _logical_devices("CPU"))


def _auto() -> tf.distribute.Strategy:
    """Mirrored over all visible GPUs when there are 2 or more, else one device."""
    return _mirrored() if len(_logical_devices("GPU")) >= 2 else _one_device()


def _multi_worker() -> tf.distribute.Strategy:
    # Before anything lists logical devices: that starts the runtime, and
    # collective ops must be configured before it starts.
    _check_tf_config(os.environ.get("TF_CONFIG"))
    return tf.distribute.MultiWorkerMirroredStrategy()


def _check_tf_config(raw: str | None) -> dict:
    """TF_CONFIG as a dict; fails with one clear line where it cannot describe a cluster."""
    example = ('e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}')
    if not raw:
        raise UserError(f"--strategy=multi_worker needs the TF_CONFIG environment "
                        f"variable: set it on every worker, {example}")
    try:
        tf_config = json.loads(raw)
        workers = tf_config["cluster"]["worker"]
        task_type, index = tf_config["task"]["type"], tf_config["task"]["index"]
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"TF_CONFIG is malformed ({type(error).__name__}: {error}): "
                        f"it must be JSON like {example}") from None
    if not (isinstance(workers, list) and workers and all(isinstance(w, str) for w in workers)):
        raise UserError(f"TF_CONFIG's cluster.worker must be a list of host:port "
                        f"strings, {example}")
    if task_type not in tf_config["cluster"] or not isinstance(index, int) or not (
            0 <= index < len(tf_config["cluster"][task_type])):
        raise UserError(f"TF_CONFIG's task {tf_config['task']} is not in its cluster: "
                        f"set task.type to a cluster role and task.index to this "
                        f"machine's position in its list")
    return tf_config


def refuse_misfits(batch_size: int, jit_compile: bool, strategy: tf.distribute.Strategy) -> None:
    """Settings that cannot run on `strategy`'s replicas."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise UserError(f"--batch_size={batch_size} does not divide over the "
                        f"{replicas} replicas: pick a multiple of {replicas}")
    if jit_compile and replicas > 1 and not tf.config.list_logical_devices("GPU"):
        raise UserError("--jit_compile cannot mirror over logical CPU devices (XLA places "
                        "every replica's variables on one CPU): drop one of the two")


def watch_peers(worker_timeout: int) -> None:
    """Starts watchdog.py beside this worker of the TF_CONFIG cluster: it says
    which peers are awaited, gives up after `worker_timeout` seconds (0: never)
    and ends the worker on Ctrl-C even while TensorFlow blocks. (SIGTERM does
    not reach it there: TensorFlow's set-up installs a SIGTERM handler of its own.)

    Python's own handlers are made no-ops, so that the watchdog alone reports
    a signal.
    """
    config = _check_tf_config(os.environ.get("TF_CONFIG"))
    me = config["cluster"][config["task"]["type"]][config["task"]["index"]]
    peers = [address for addresses in config["cluster"].values()
             for address in addresses if address != me]
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)
    signal.set_wakeup_fd(write_end)
    watchdog = os.path.join(os.path.dirname(os.path.abspath(__file__)), "watchdog.py")
    subprocess.Popen([sys.executable, watchdog, str(os.getpid()), str(read_end),
                      str(worker_timeout), *peers], pass_fds=[read_end])
    os.close(read_end)


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


# The strategies by --strategy name.
STRATEGIES = {"auto": _auto, "one_device": _one_device, "mirrored": _mirrored,
              "multi_worker": _multi_worker}
