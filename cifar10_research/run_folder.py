"""The files of a run folder, `<model_dir>/<run_name>/`, and how they are written.

Files a reader may be looking at are replaced whole (write, then rename), so
a crash never leaves a half-written one.
"""

import contextlib
import fcntl
import json
import os
import shutil
import sys

import tensorflow as tf

from cifar10_research import metrics
from cifar10_research.errors import UserError, first_line

FLAGFILE = "flags.txt"
HISTORY = "history.json"
ACCURACY_PLOT = "accuracy.png"
LOSS_PLOT = "loss.png"
SAMPLE_PLOT = "sample_prediction.png"
PREDICTIONS_PLOT = "predictions.png"
CONFUSION_PLOT = "confusion_matrix.png"
MODEL = "model.keras"
CLASS_NAMES = "class_names.json"  # The exported model's classes, by label: a list of names.
SAVED_MODEL = "saved_model"
EVAL_RESULTS = "eval.json"
LOCK = ".lock"
RESULTS = "results.json"
CHECKPOINTS = "checkpoints"
TRAIN_LOGS = "train"
VALIDATION_LOGS = "validation"
RAW_VALIDATION_LOGS = "validation_raw"  # Under --ema_decay: the raw weights' validation.
SECONDS = "seconds"
CPU_SECONDS = "cpu_seconds"
# history.json's lists, one value per epoch: each training metric by its name, each
# validation metric as val_<name> (None where a metric was not measured: one added
# to the code since the run began), the epoch's seconds, and the CPU seconds this
# process spent in it (user and system, all its threads: on a shared machine, a
# steadier measure of the work than the wall clock's).
METRIC_KEYS = (*(metric.name for metric in metrics.TRAINING),
               *(f"val_{metric.name}" for metric in metrics.EVALUATION))
HISTORY_KEYS = (*METRIC_KEYS, SECONDS, CPU_SECONDS)
# history.json's "val_data": what val_loss and val_accuracy were measured on.
TEST_SET = "the test set"


def empty_history(val_data: str = TEST_SET) -> dict:
    return {**{key: [] for key in HISTORY_KEYS}, "val_data": val_data}


def prepare(workdir: str) -> None:
    """Makes the run folder if needed and checks that it can be written."""
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, ".write-test")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as error:
        raise UserError(f"cannot write the run folder {workdir} ({error.strerror}): "
                        f"pass a writable --model_dir") from None


@contextlib.contextmanager
def locked(workdir: str):
    """Holds the run folder's lock while the block runs: one process writes a
    run folder at a time; another is refused at once, naming the holder.

    An OS lock (flock) on `<workdir>/.lock`, which the OS releases when the
    process ends however it ends: a killed run never leaves a stale lock.
    """
    with open(os.path.join(workdir, LOCK), "a+") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "unknown"
            raise UserError(f"{workdir} is in use by another process (PID {holder}): wait for "
                            f"it to end, or pick another --run_name") from None
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()}\n")
        file.flush()
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


def holds_a_run(folder: str) -> bool:
    """Whether `folder` holds a run's work: its history or its checkpoints."""
    return os.path.exists(os.path.join(folder, HISTORY)) or os.path.isdir(
        os.path.join(folder, CHECKPOINTS))


def refuse_stale(workdir: str) -> None:
    """Refuses a run folder without checkpoints that holds a finished run's results
    or the history of several epochs: starting again would overwrite them.

    A history of one epoch is a run whose first checkpoint failed (it is
    written after the epoch's history): that run starts again, and says so.
    """
    if os.path.exists(os.path.join(workdir, RESULTS)):
        raise UserError(f"{workdir} holds the results of a finished run but no checkpoint "
                        f"to resume from: choose another --run_name or --model_dir")
    epochs = len(read_history(workdir)[SECONDS]) if os.path.exists(
        os.path.join(workdir, HISTORY)) else 0
    if epochs > 1:
        raise UserError(f"{workdir} holds the history of {epochs} epochs but no checkpoint to "
                        f"resume from: put its checkpoints/ back (ckpt-N.index and .data "
                        f"files), or pick another --run_name")
    if epochs:
        print(f"warning: {workdir} holds the history of 1 epoch but no checkpoint (its first "
              f"one was never written): the run starts again from its first step",
              file=sys.stderr)


def write_whole(path: str, write, partial_suffix: str = ".tmp", folder: bool = False) -> None:
    """`write(partial path)`, then the partial file (or `folder`) renamed to `path`.

    A kill leaves `path` as it was. A failure (a full disk) also removes the
    partial one and ends in one line naming the path and the cause. A folder
    is replaced only by a folder, a file only by a file: a file given the
    path of a folder (`--output=runs/`) is refused, and the folder kept.
    """
    partial = path + partial_suffix
    for existing in (path, partial):
        _refuse_other_kind(existing, folder)
    _remove(partial)  # Debris of a write cut short.
    try:
        write(partial)
    except (OSError, tf.errors.OpError) as error:
        _remove(partial)
        raise UserError(f"could not write {path} ({first_line(error)}): fix the cause (e.g. "
                        f"free disk space) and rerun the same command to finish the "
                        f"run") from None
    _remove(path)
    os.replace(partial, path)


def _refuse_other_kind(path: str, folder: bool) -> None:
    if os.path.isdir(path) and not folder:
        raise UserError(f"{path} is a folder, not a file: it is left as it is; write "
                        f"elsewhere, e.g. to a file inside it")
    if os.path.lexists(path) and not os.path.isdir(path) and folder:
        raise UserError(f"{path} is a file, not a folder: it is left as it is; move it away "
                        f"and rerun the same command")


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def write_bytes(path: str, content: bytes) -> None:
    def write(partial):
        with open(partial, "wb") as file:
            file.write(content)
    write_whole(path, write)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str, content: dict | list) -> None:
    write_text(path, json.dumps(content, indent=2) + "\n")


def write_history(workdir: str, history: dict) -> None:
    write_json(os.path.join(workdir, HISTORY), history)


def read_text(path: str) -> str:
    try:
        with open(path) as file:
            return file.read()
    except OSError as error:
        raise UserError(f"cannot read {path} ({error.strerror}): the run folder is "
                        f"incomplete; choose another --run_name") from None


def read_history(workdir: str, epochs: int | None = None) -> dict:
    """The run's history, cut to its first `epochs` epochs when given.

    A run that resumes from a checkpoint older than its history (it crashed
    between writing the two) redoes the epochs after the checkpoint. A metric
    the history lacks (added to the code since) reads as None in every epoch.
    """
    path = os.path.join(workdir, HISTORY)
    if epochs == 0 and not os.path.exists(path):
        return empty_history()
    try:
        with open(path) as file:
            history = json.load(file)
    except OSError as error:
        advice = ("pass the folder of a run that finished at least one epoch" if epochs is None
                  else f"its {epochs} epochs' history is needed to resume: put the file back, "
                  f"or start the run anew under another --run_name")
        raise UserError(f"cannot read {path} ({error.strerror}): {advice}") from None
    except ValueError:
        raise UserError(f"{path} is not valid JSON: it was edited or damaged") from None
    if problem := _history_problem(history):
        raise UserError(f"{path} {problem}: it was edited or damaged")
    if epochs is not None and len(history[SECONDS]) < epochs:
        raise UserError(f"{path} holds fewer epochs than the checkpoint ({epochs}): it "
                        f"was edited or damaged; choose another --run_name")
    measured = len(history[SECONDS])
    return {**{key: history.get(key, [None] * measured)[:epochs] for key in HISTORY_KEYS},
            "val_data": history.get("val_data", TEST_SET)}  # Older runs validated on it.


def best_epoch(history: dict) -> tuple[int, float]:
    """(epoch, validation accuracy) of the epoch of best validation accuracy."""
    accuracies = [-1.0 if value is None else value
                  for value in history[f"val_{metrics.ACCURACY.name}"]]
    best = max(accuracies)
    return accuracies.index(best) + 1, best


def _history_problem(history) -> str | None:
    """What shows that train.py did not write `history` as it is, or None."""
    kinds = {int: "a number", float: "a number", type(None): "null", list: "a list", str: "a text"}
    if not isinstance(history, dict):
        return f"holds {kinds.get(type(history), 'a value')}, not a history written by train.py"
    if SECONDS not in history:
        return f"lacks {SECONDS}"
    present = [SECONDS, *(key for key in HISTORY_KEYS if key in history and key != SECONDS)]
    if bad := [key for key in present if not _numbers(history[key])]:
        return f'holds an entry "{bad[0]}" that is not a list of numbers'
    if len({len(history[key]) for key in present}) > 1:
        return "holds lists of different lengths (" + ", ".join(
            f"{key} {len(history[key])}" for key in present
            if key == SECONDS or len(history[key]) != len(history[SECONDS])) + ")"
    if not isinstance(history.get("val_data", TEST_SET), str):
        return 'holds an entry "val_data" that is not a text'
    return None


def _numbers(values) -> bool:
    """A list of numbers, or None where not measured."""
    return isinstance(values, list) and all(
        value is None or isinstance(value, (int, float)) and not isinstance(value, bool)
        for value in values)


# What a finished run leaves besides results.json, which is written after them.
ARTIFACTS = (MODEL, os.path.join(SAVED_MODEL, "saved_model.pb"), ACCURACY_PLOT, LOSS_PLOT,
             CONFUSION_PLOT, PREDICTIONS_PLOT, SAMPLE_PLOT)


def read_results(workdir: str) -> dict | None:
    """The final results of a finished run, or None where the run has not
    finished: results.json or one of the ARTIFACTS is missing or unreadable."""
    if not all(os.path.exists(os.path.join(workdir, name)) for name in ARTIFACTS):
        return None
    try:
        with open(os.path.join(workdir, RESULTS)) as file:
            return json.load(file)
    except (OSError, ValueError):
        return None
