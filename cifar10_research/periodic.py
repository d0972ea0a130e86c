"""When periodic work is due, by the run's one global step counter.

One helper serves logging, checkpoints and the profiler alike (big_vision's
`itstime`): the loop asks each whether it is `due` after a step, and runs no
more steps in one call than `steps_to_next` allows, so no due step is skipped.
"""

from cifar10_research.errors import UserError

NEVER = 2**62  # Steps to the next time of work that never comes.


class Every:
    """Due at every multiple of `n` steps; never when `n` is 0."""

    def __init__(self, n: int):
        self.n = n

    def due(self, step: int) -> bool:
        return self.n > 0 and step % self.n == 0

    def steps_to_next(self, step: int) -> int:
        """Steps from `step` to the next due step after it."""
        return self.n - step % self.n if self.n else NEVER


class At:
    """Due at the given steps only."""

    def __init__(self, *steps: int):
        self.steps = sorted(steps)

    def due(self, step: int) -> bool:
        return step in self.steps

    def steps_to_next(self, step: int) -> int:
        return next((due - step for due in self.steps if due > step), NEVER)


def profile_window(steps: tuple[int, int] | None, last_step: int) -> tuple[At, At]:
    """(start, stop): to profile steps START to END (`steps`, counted from 1), start
    after step START-1 and stop after step END; never, for None."""
    if steps is None:
        return At(), At()
    first, last = steps
    if last > last_step:
        raise UserError(f"--profile_steps={first},{last} ends after the run's last step, "
                        f"{last_step}: pick steps up to it")
    return At(first - 1), At(last)
