"""The one helper that says when periodic work is due."""

from cifar10_research.periodic import NEVER, At, Every


def test_every_n_is_due_at_multiples_and_counts_the_steps_to_the_next():
    every = Every(3)
    assert [step for step in range(10) if every.due(step)] == [0, 3, 6, 9]
    assert [every.steps_to_next(step) for step in (0, 1, 2, 3, 4)] == [3, 2, 1, 3, 2]


def test_every_zero_is_never_due():
    assert not any(Every(0).due(step) for step in range(10))
    assert Every(0).steps_to_next(5) == NEVER


def test_at_is_due_at_its_steps_only():
    at = At(7, 3)
    assert [step for step in range(10) if at.due(step)] == [3, 7]
    assert [at.steps_to_next(step) for step in (0, 3, 5, 7)] == [3, 4, 2, NEVER]
    assert At().steps_to_next(0) == NEVER and not At().due(0)
