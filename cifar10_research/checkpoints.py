"""A run's checkpoints: written safely, restored with a fallback."""

import sys

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

    def save(self, global_step: int) -> str:
        try:
            return self._saver.save(checkpoint_number=global_step)
        except (OSError, tf.errors.OpError) as error:
            raise UserError(
                f"could not write a checkpoint in {self._save_dir} ({first_line(error)}): "
                f"the previous one, {self.latest()}, is intact; fix the cause (e.g. free "
                f"disk space) and rerun the same command to resume") from None

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
