"""A run's checkpoints: written safely, restored with a fallback, their index repaired."""

import contextlib
import gc
import glob
import json
import logging
import os
import re
import shutil
import sys

import numpy as np
import tensorflow as tf

from cifar10_research.errors import UserError, first_line


class Checkpoints:
    """A CheckpointManager that reports failures as UserErrors.

    TensorFlow writes a checkpoint's files before it records the checkpoint in
    the `checkpoint` state file, so a save that fails or is killed midway
    leaves the earlier checkpoints usable.
    """

    def __init__(self, objects: dict, restore_dir: str, save_dir: str, keep: int):
        """Saves `objects` ({name: trackable}) into `save_dir` and restores them
        from `restore_dir` (the same but on the non-chief workers of a
        multi-worker run). Each checkpoint also holds a state of the caller's,
        as JSON: what it names is read back by name (`state`), so a name it
        gains or loses never keeps an older checkpoint from restoring."""
        self._objects = objects
        self._restore_dir, self._save_dir = restore_dir, save_dir
        with tf.device("/cpu:0"):
            self._state = tf.Variable("{}", trainable=False)
        self._saver = tf.train.CheckpointManager(
            tf.train.Checkpoint(**objects, **{STATE: self._state}), save_dir, max_to_keep=keep)

    def latest(self) -> str | None:
        return self._saver.latest_checkpoint

    def describe_latest(self) -> str:
        """The latest checkpoint and what its model's weights hold, checked: a
        checkpoint written before a run diverged may already hold huge weights."""
        path = self.latest()
        if path is None:
            return "no checkpoint was written yet"
        weights = model_weights(path)
        if not all(np.isfinite(weight).all() for weight in weights):
            return f"the latest checkpoint, {path}, holds NaN or infinite weights too"
        largest = max(float(np.abs(weight).max()) for weight in weights)
        return (f"the latest checkpoint, {path}, holds finite weights (largest magnitude "
                f"{largest:.3g})")

    def save(self, global_step: int, state: dict) -> str:
        """Writes checkpoint `ckpt-<global_step>` with `state`; a failed write
        leaves no debris."""
        self._state.assign(json.dumps(state))
        try:
            return self._saver.save(checkpoint_number=global_step)
        except (OSError, tf.errors.OpError) as error:
            for partial in glob.glob(os.path.join(self._save_dir, f"ckpt-{global_step}_temp*")):
                shutil.rmtree(partial, ignore_errors=True)
            previous = self.latest()
            kept = (f"the previous one, {previous}, is intact; rerun the same command to "
                    f"resume from it" if previous else
                    "no earlier checkpoint exists; rerun the same command to start again")
            raise UserError(f"could not write a checkpoint in {self._save_dir} "
                            f"({first_line(error)}): {kept}, once the cause is fixed (e.g. "
                            f"disk space freed)") from None

    def restore_latest(self) -> str | None:
        """Restores the newest readable checkpoint; returns its path, or None if none.

        An unreadable checkpoint (truncated, corrupt) is reported and skipped
        for the one before it. One that vanished as it was read (a run training
        beside an evaluation replaced it) is not: the checkpoints are listed
        again and the newest tried. One that reads but does not fit the model stops.
        """
        tried = []
        while paths := [path for path in listed(self._restore_dir) if path not in tried]:
            try:
                self.restore(paths[-1])
                return paths[-1]
            except (tf.errors.OpError, IndexError) as error:  # IndexError: a truncated file.
                tried.append(paths[-1])
                # TensorFlow deletes a checkpoint's .index first: while that is
                # there, the read failed on damage, not on a deletion.
                if tf.io.gfile.exists(paths[-1] + ".index"):
                    print(f"warning: checkpoint {paths[-1]} is unreadable ({first_line(error)}); "
                          f"trying the one before it", file=sys.stderr)
        if tried:
            names = ", ".join(os.path.basename(path) for path in tried)
            raise UserError(f"no checkpoint in {self._restore_dir} can be read ({names}): they "
                            f"are damaged or incomplete; train the run anew under another "
                            f"--run_name (this folder is left as it is)")
        return None

    def restore(self, path: str) -> None:
        """Restores `path`; raises tf.errors.OpError or IndexError where it cannot be read.

        Each restore reads through a Checkpoint of its own, dropped after it
        with TensorFlow's warnings hidden: one that failed midway leaves
        restorations pending on its Checkpoint, which a later restore would run
        (and fail), and warnings for the program's exit.
        """
        with _tensorflow_warnings_hidden():
            failure = self._read(path)
            gc.collect()
        if failure:
            raise failure

    def _read(self, path: str) -> Exception | None:
        """Restores `path`; returns why it failed, without its traceback (which
        holds the failed Checkpoint), or None."""
        checkpoint = tf.train.Checkpoint(**self._objects)
        try:
            # Partial: an evaluation's objects are a part of what a run saves.
            checkpoint.restore(path).assert_existing_objects_matched().expect_partial()
        except (ValueError, AssertionError) as error:
            return UserError(f"checkpoint {path} does not fit this model ({first_line(error)}): "
                             f"it comes from a different model or code; use another "
                             f"--run_name")
        except (tf.errors.OpError, IndexError) as error:
            return error.with_traceback(None)
        return None


STATE = "loop_state"  # The checkpointed JSON's name in the checkpoint.


def state(path: str) -> dict:
    """The state saved with checkpoint `path`, {} if none. A checkpoint written
    before the state was JSON held the epoch's training sums as a [2, 3] array
    (now and at the last log step: loss sum, hits, images) and its seconds."""
    reader = tf.train.load_checkpoint(path)
    if reader.has_tensor(f"{STATE}/.ATTRIBUTES/VARIABLE_VALUE"):
        return json.loads(reader.get_tensor(f"{STATE}/.ATTRIBUTES/VARIABLE_VALUE"))
    if not reader.has_tensor("epoch_sums/.ATTRIBUTES/VARIABLE_VALUE"):
        return {}
    now, logged = reader.get_tensor("epoch_sums/.ATTRIBUTES/VARIABLE_VALUE").tolist()
    return {"sums": dict(zip(("loss", "accuracy", "count"), now)),
            "logged": dict(zip(("loss", "accuracy", "count"), logged)),
            "seconds": float(reader.get_tensor("epoch_seconds/.ATTRIBUTES/VARIABLE_VALUE"))}


def listed(directory: str) -> list[str]:
    """The checkpoints in `directory`, oldest first: as its index (the file
    `checkpoint`) names them or, where that is missing or unreadable, as found."""
    with _tensorflow_warnings_hidden():  # Two lines for an unreadable index.
        state = tf.train.get_checkpoint_state(directory)
    return list(state.all_model_checkpoint_paths) if state else on_disk(directory)


def on_disk(directory: str) -> list[str]:
    """The complete checkpoints in `directory` (those with an index file), oldest first."""
    names = os.listdir(directory) if os.path.isdir(directory) else []
    steps = sorted(int(match[1]) for name in names
                   if (match := re.fullmatch(r"ckpt-(\d+)\.index", name)))
    return [os.path.join(directory, f"ckpt-{step}") for step in steps]


def repair_checkpoint_folder(directory: str) -> None:
    """Readies the checkpoint folder of a run about to train (under its lock):
    removes what saves cut short left (`ckpt-N_temp*`) and rebuilds a missing
    or unreadable index from the checkpoints there, saying so in one line."""
    for partial in glob.glob(os.path.join(directory, "ckpt-*_temp*")):
        if os.path.isdir(partial):
            shutil.rmtree(partial)
        else:
            os.remove(partial)
    with _tensorflow_warnings_hidden():
        state = tf.train.get_checkpoint_state(directory)
    found = on_disk(directory)
    if state or not found:
        return
    with _tensorflow_warnings_hidden():  # A deprecation: the index is the manager's job.
        tf.compat.v1.train.update_checkpoint_state(
            directory, os.path.basename(found[-1]), [os.path.basename(path) for path in found])
    print(f"warning: {os.path.join(directory, 'checkpoint')}, the index of the checkpoints, "
          f"was missing or unreadable: rebuilt it from the {len(found)} checkpoints there, "
          f"the latest {found[-1]}", file=sys.stderr)


@contextlib.contextmanager
def _tensorflow_warnings_hidden():
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def model_weights(path: str) -> list:
    """The model's weights saved in checkpoint `path`, as numpy arrays.

    A checkpoint names a variable by the first path to it in the object graph:
    the trainable weights sit under the optimizer, which tracks them, and the
    others (batch-norm statistics, dropout seeds) under the model.
    """
    reader = tf.train.load_checkpoint(path)
    return [reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith(("model/", "optimizer/_trainable_variables/"))]
