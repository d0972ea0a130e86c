"""What a run prints: the live progress line of an epoch, the summary line after it,
and the test results; and the clock of the seconds an epoch reports."""

import sys
import time

from cifar10_research import metrics
from cifar10_research.run_folder import CPU_SECONDS, SECONDS


class EpochProgress:
    """Shows step/total, the training metrics, images/s and ETA while an epoch runs.

    On a terminal one line is redrawn in place, at most 10 times a second; in a
    log file (not a terminal) a line is printed every 15 seconds instead. The
    metrics are the epoch's means read at the last log step.
    """

    def __init__(self, epoch: int, epochs: int, total_steps: int, batch_size: int,
                 stream=None, enabled: bool = True):
        self._prefix = f"Epoch {epoch}/{epochs}"
        self._total_steps = total_steps
        self._batch_size = batch_size
        self._stream = stream or sys.stdout
        self._enabled = enabled
        self._interactive = self._stream.isatty()
        self._interval = 0.1 if self._interactive else 15.0
        self._start = time.perf_counter()
        self._last_shown = self._start

    def due(self) -> bool:
        """Whether it is time to `show` the progress again."""
        return self._enabled and time.perf_counter() - self._last_shown >= self._interval

    def show(self, step: int, running: dict) -> None:
        """`running`: the epoch's means at the last log step, {name: mean}."""
        now = time.perf_counter()
        self._last_shown = now
        elapsed = now - self._start
        rate = step * self._batch_size / elapsed if elapsed > 0 else 0.0
        eta = (self._total_steps - step) * elapsed / step if step else 0.0
        results = _fields({metric.name: running.get(metric.name) for metric in metrics.TRAINING})
        line = (f"{self._prefix} {step}/{self._total_steps} - {results} - "
                f"{rate:,.0f} images/s - ETA {eta:.0f}s")
        if self._interactive:
            self._stream.write("\r\033[K" + line)
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def finish(self, means: dict, seconds: float) -> None:
        """Replaces the live line with the epoch's results, {name: mean or None}."""
        if not self._enabled:
            return
        ending = "\r\033[K" if self._interactive else ""
        self._stream.write(f"{ending}{self._prefix} - {_fields(means)} - {seconds:.1f}s\n")
        self._stream.flush()


class EpochClock:
    """An epoch's wall and CPU seconds, counting those before a resume (`carried`:
    the checkpointed `seconds()`)."""

    def __init__(self, carried: dict | None = None):
        carried = carried or {}
        self._wall = time.perf_counter() - carried.get(SECONDS, 0.0)
        self._cpu = time.process_time() - carried.get(CPU_SECONDS, 0.0)

    def seconds(self) -> dict:
        """{"seconds": wall seconds, "cpu_seconds": CPU seconds}, the history's keys."""
        return {SECONDS: time.perf_counter() - self._wall,
                CPU_SECONDS: time.process_time() - self._cpu}


def _fields(means: dict) -> str:
    """`loss 0.1234 - accuracy 0.5678`; `-` for a value not measured."""
    return " - ".join(f"{name} {'-' if value is None else f'{value:.4f}'}"
                      for name, value in means.items())


def print_validation_plan(val_data: str, validation_split: float) -> None:
    """Says what the per-epoch validation is measured on, before the first epoch."""
    if validation_split:
        print(f"Validating after each epoch on {val_data} (--validation_split="
              f"{validation_split}); the test set is evaluated once, after the last epoch.")
    else:
        print("Validating after each epoch on the test set, as the Keras tutorial does "
              "(--validation_split=0); tune on held-out training images with "
              "--validation_split=0.1.")


def print_results(results: dict, workdir: str) -> None:
    """A finished run's validation results, its test results, and its folder."""
    print(f"Validation accuracy: {results['val_accuracy']:.4f} (last epoch; best "
          f"{results['best_val_accuracy']:.4f}, epoch {results['best_epoch']}) on "
          f"{results['val_data']}")
    print_test_results(results)
    print(f"Run folder: {workdir}")


def print_test_results(results: dict) -> None:
    """The test means (`test_<name>` in `results`), accuracy first; says when they
    are of test-time augmentation."""
    others = ", ".join(f"{metric.name} {results[f'test_{metric.name}']:.4f}"
                       for metric in metrics.EVALUATION
                       if metric != metrics.ACCURACY and f"test_{metric.name}" in results)
    views = results.get("tta")
    views = {True: "flip", False: "none"}.get(views, views)  # Older runs: on or off.
    with_tta = f", {views} test-time augmentation" if views not in (None, "none") else ""
    print(f"Test accuracy: {results['test_accuracy']:.4f} ({others}, {results['test_count']} "
          f"images{with_tta})")
