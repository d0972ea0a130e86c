"""A run's checkpoints: written safely, restored with a fallback."""

import glob
import os
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

    def __init__(self, checkpoint: tf.train.Checkpoint, restore_dir: str, save_dir: str,
                 keep: int):
        """Restores from `restore_dir` and saves into `save_dir` (the same but on
        the non-chief workers of a multi-worker run)."""
        self._checkpoint = checkpoint
        self._save_dir = save_dir
        self._saver = tf.train.CheckpointManager(checkpoint, save_dir, max_to_keep=keep)
        self._restorer = self._saver if restore_dir == save_dir else (
            tf.train.CheckpointManager(checkpoint, restore_dir, max_to_keep=keep))

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

    def save(self, global_step: int) -> str:
        """Writes checkpoint `ckpt-<global_step>`; a failed write leaves no debris."""
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
        for the one before it. One that reads but does not fit the model stops.
        """
        for path in reversed(self._restorer.checkpoints):
            try:
                self.restore(path)
                return path
            except (tf.errors.OpError, IndexError) as error:  # IndexError: a truncated file.
                print(f"warning: checkpoint {path} is unreadable ({first_line(error)}); "
                      f"trying the one before it", file=sys.stderr)
        if self._restorer.checkpoints:
            raise UserError(f"no checkpoint in {self._restorer.directory} can be read: "
                            f"delete the folder to start the run again")
        return None

    def restore(self, path: str) -> None:
        """Restores `path`; raises tf.errors.OpError or IndexError where it cannot be read."""
        try:
            self._checkpoint.restore(path).assert_existing_objects_matched()
        except (ValueError, AssertionError) as error:
            raise UserError(f"checkpoint {path} does not fit this model ({first_line(error)}): "
                            f"it comes from a different model or code; use another "
                            f"--run_name") from None


def model_weights(path: str) -> list:
    """The model's weights saved in checkpoint `path`, as numpy arrays.

    A checkpoint names a variable by the first path to it in the object graph:
    the trainable weights sit under the optimizer, which tracks them, and the
    others (batch-norm statistics, dropout seeds) under the model.
    """
    reader = tf.train.load_checkpoint(path)
    return [reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith(("model/", "optimizer/_trainable_variables/"))]
