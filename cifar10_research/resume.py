"""Whether a run folder may be resumed with a command's settings, decided before any restore.

A checkpoint holds weights and where training stands; the run's flags.txt
holds the settings that made them. Comparing the two first turns a resume
with other settings into an error that names the settings, instead of a
failure inside the restore.
"""

import os
import shlex
import sys

from cifar10_research import checkpoints, run_folder
from cifar10_research.config import NETWORK_SETTINGS, Config
from cifar10_research.errors import Interrupted, UserError
from cifar10_research.saved_flags import parse_saved_flags
from cifar10_research.stopping import EXIT_CODES


def command(workdir: str) -> str:
    """The command that resumes the run in `workdir`, verbatim from any folder."""
    train_py = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "train.py")
    flagfile = os.path.abspath(os.path.join(workdir, run_folder.FLAGFILE))
    return shlex.join([sys.executable, train_py, f"--flagfile={flagfile}"])


def stopped(stops: dict, step: int, checkpoint: str, workdir: str) -> Interrupted:
    """The stop of a run after `step`, saved in `checkpoint`, on a signal to one
    worker or more ({task: signal}; {"": signal} on one machine): one line
    saying how to resume, and the signal's exit code."""
    signum = next(iter(stops.values()))
    saved = os.path.join(checkpoint_dir(workdir), os.path.basename(checkpoint))
    received, resume_by = ("", f"Resume with: {command(workdir)}") if "" in stops else (
        f" (received by {', '.join(stops)})", "Rerun every worker's command to resume")
    return Interrupted(f"Stopped by {signum.name}{received} after step {step}; saved {saved}. "
                       f"{resume_by}", EXIT_CODES[signum])


def has_checkpoint(workdir: str) -> bool:
    return bool(checkpoints.listed(checkpoint_dir(workdir)))


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(workdir, run_folder.CHECKPOINTS)


def saved_settings(workdir: str) -> dict[str, str]:
    """The run's settings, from its flags.txt (see saved_flags.parse_saved_flags)."""
    path = os.path.join(workdir, run_folder.FLAGFILE)
    return parse_saved_flags(run_folder.read_text(path), path)


def refuse_other_network(config: Config, workdir: str) -> None:
    """Refuses settings under which the run's checkpoints cannot be read."""
    changed = config.changes_from(saved_settings(workdir), NETWORK_SETTINGS)
    if changed:
        raise UserError(f"{workdir} holds checkpoints of another network: {', '.join(changed)}; "
                        f"leave these flags out to use the run's own, or pick another "
                        f"--run_name")


def refuse_changed_settings(config: Config, workdir: str) -> None:
    """Refuses to resume a run with settings that change what it computes, unless --force."""
    if not has_checkpoint(workdir):
        return
    refuse_other_network(config, workdir)
    changed = config.changes_from(saved_settings(workdir))
    if changed and not config.force:
        flagfile = os.path.join(workdir, run_folder.FLAGFILE)
        raise UserError(f"{workdir} was started with other settings: {', '.join(changed)}; "
                        f"rerun with its flags (--flagfile={flagfile}), another --run_name, "
                        f"or --force")


def step_in_batches_of(config: Config, workdir: str, checkpoint: str, step: int,
                       train_images: int) -> int:
    """The restored global `step`, counted in batches of this command's --batch_size.

    A forced resume may change --batch_size at the end of an epoch: the epochs
    done stay done. In the middle of an epoch the position is a count of old
    batches, which no count of new ones matches.
    """
    saved_batch_size = int(saved_settings(workdir)["batch_size"])
    if saved_batch_size == config.batch_size:
        return step
    epochs_done, steps_done = divmod(step, train_images // saved_batch_size)
    if steps_done:
        raise UserError(f"{checkpoint} stopped in the middle of an epoch, counted in batches "
                        f"of the old --batch_size: resume with it, or from an epoch-end "
                        f"checkpoint")
    return epochs_done * (train_images // config.batch_size)


def resumed_step(config: Config, workdir: str, checkpoint: str, step: int,
                 train_images: int) -> int:
    """The restored global `step` in batches of this command's --batch_size (see
    step_in_batches_of), refused past the command's last step: weights that
    trained more epochs than asked would be tested as the run's result."""
    resumed = step_in_batches_of(config, workdir, checkpoint, step, train_images)
    steps_per_epoch = train_images // config.batch_size
    if resumed > config.epochs * steps_per_epoch:
        epochs_done, steps_done = divmod(resumed, steps_per_epoch)
        position = (f"epoch {epochs_done + 1}, after step {steps_done} of {steps_per_epoch}"
                    if steps_done else f"the end of epoch {epochs_done}")
        kept = ", ".join(os.path.basename(path)
                         for path in checkpoints.listed(checkpoint_dir(workdir)))
        raise UserError(f"{workdir} has trained past --epochs={config.epochs}, to {position} "
                        f"({checkpoint}): evaluate a checkpoint it kept ({kept}) with "
                        f"--mode=eval --checkpoint={checkpoint_dir(workdir)}/ckpt-N, or train "
                        f"--epochs={config.epochs} under another --run_name")
    return resumed
