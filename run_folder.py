"""The files of a run folder, `<model_dir>/<run_name>/`, and how they are written.

Files a reader may be looking at are replaced whole (write, then rename), so
a crash never leaves a half-written one.
"""

import json
import os

from errors import UserError

FLAGFILE = "flags.txt"
HISTORY = "history.json"
ACCURACY_PLOT = "accuracy.png"
LOSS_PLOT = "loss.png"
SAMPLE_PLOT = "sample_prediction.png"
PREDICTIONS_PLOT = "predictions.png"
CONFUSION_PLOT = "confusion_matrix.png"
MODEL = "model.keras"
CHECKPOINTS = "checkpoints"
TRAIN_LOGS = "train"
VALIDATION_LOGS = "validation"
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "seconds")


def create(workdir: str) -> None:
    """Makes a new, writable run folder, refusing to overwrite an earlier run."""
    if os.path.exists(os.path.join(workdir, HISTORY)) or os.path.exists(
            os.path.join(workdir, CHECKPOINTS)):
        raise UserError(f"{workdir} already holds a run: choose another --run_name "
                        f"or --model_dir")
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, ".write-test")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as error:
        raise UserError(f"cannot write the run folder {workdir} ({error.strerror}): "
                        f"pass a writable --model_dir") from None


def write_text(path: str, text: str) -> None:
    partial = path + ".tmp"
    with open(partial, "w") as file:
        file.write(text)
    os.replace(partial, path)


def write_history(workdir: str, history: dict) -> None:
    write_text(os.path.join(workdir, HISTORY), json.dumps(history, indent=2) + "\n")


def read_history(workdir: str) -> dict:
    path = os.path.join(workdir, HISTORY)
    try:
        with open(path) as file:
            history = json.load(file)
    except OSError as error:
        raise UserError(f"cannot read {path} ({error.strerror}): pass the folder of "
                        f"a run that finished at least one epoch") from None
    except ValueError:
        raise UserError(f"{path} is not valid JSON: it was edited or damaged") from None
    missing = [key for key in HISTORY_KEYS if key not in history]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}: it is not a history "
                        f"written by train.py")
    return history
