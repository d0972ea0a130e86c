"""The cluster a multi-worker process is a task of, as described by TF_CONFIG,
resolved by TensorFlow's own cluster resolver; one-line errors where the
description cannot work."""

import json
import os

import tensorflow as tf

from cifar10_research.errors import UserError

TF_CONFIG_EXAMPLE = ('e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}')


def resolver() -> tf.distribute.cluster_resolver.ClusterResolver:
    """This process's cluster, from TF_CONFIG."""
    check_tf_config(os.environ.get("TF_CONFIG"))
    return tf.distribute.cluster_resolver.TFConfigClusterResolver()


def check_tf_config(raw: str | None) -> dict:
    """TF_CONFIG as a dict; fails with one clear line where it cannot describe a cluster."""
    if not raw:
        raise UserError(f"--strategy=multi_worker needs the TF_CONFIG environment "
                        f"variable: set it on every worker, {TF_CONFIG_EXAMPLE}")
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
