"""Stopping a run that diverged, before its NaN or infinite state is saved."""

import numpy as np

from cifar10_research import metrics
from cifar10_research.checkpoints import Checkpoints
from cifar10_research.errors import UserError
from cifar10_research.learner import Learner


def refuse_nonfinite_loss(sums: metrics.Sums, learner: Learner, epoch: int,
                          checkpoints: Checkpoints) -> None:
    """Stops where the epoch's training loss so far (in `sums`) is NaN or infinite."""
    loss_sum = sums.get(metrics.LOSS.name, 0.0)
    if not np.isfinite(loss_sum):
        step = int(learner.first_nonfinite_step.numpy())
        _refuse(f"the training loss became {loss_sum} at step {step} (epoch {epoch})",
                checkpoints)


def refuse_nonfinite_weights(learner: Learner, step: int, checkpoints: Checkpoints) -> None:
    """A loss can stay finite while weights that no longer matter diverge: checked
    before any checkpoint or export."""
    if not learner.weights_are_finite():
        _refuse(f"some weights became NaN or infinite by step {step}", checkpoints)


def _refuse(what: str, checkpoints: Checkpoints) -> None:
    raise UserError(
        f"{what}: training stopped and nothing more was saved; "
        f"{checkpoints.describe_latest()}; start a new --run_name with a lower "
        f"--learning_rate, or pass --nostop_on_nonfinite to carry on")
