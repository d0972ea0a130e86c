"""A trained model as a classifier of image files, for scripts/predict.py.

Reads PNG or JPEG files as the training pipeline scales images, and loads a
run's `model.keras` or its exported `saved_model/`, and the names of its
classes beside them.
"""

import json
import os
import struct
import sys
import zipfile

import keras
import numpy as np
import tensorflow as tf

from cifar10_research import batch_norm, whitening  # noqa: F401 (register layers model.keras names)
from cifar10_research import run_folder
from cifar10_research.dataset import CLASS_NAMES, IMAGE_SHAPE
from cifar10_research.errors import UserError, first_line

TOP = 3
# The largest image decoded: measured, it added 0.45 GB to the script's 0.67 GB peak (a
# 20000x20000 PNG of 1 MB took 11.8 GB).
MAX_SIDE = 4096
MAX_PIXELS = MAX_SIDE * MAX_SIDE
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8"


def read_image(path: str) -> np.ndarray:
    """The image as uint8 RGB pixels of IMAGE_SHAPE, as CIFAR-10 stores its own.

    Grayscale becomes RGB and alpha is dropped; other sizes are resized with
    a note on stderr.
    """
    try:
        with open(path, "rb") as file:
            content = file.read()
    except OSError as error:
        raise UserError(f"cannot read {path} ({error.strerror}): pass PNG or JPEG "
                        f"files") from None
    width, height = image_size(content, path)
    if width * height > MAX_PIXELS:
        raise UserError(f"{path} is {width}x{height} pixels, more than the {MAX_SIDE}x{MAX_SIDE} "
                        f"({MAX_PIXELS:,} pixels) this script decodes: shrink it first")
    try:
        pixels = tf.io.decode_image(content, channels=3, expand_animations=False)
    except tf.errors.InvalidArgumentError:
        raise _not_an_image(path) from None
    height, width = IMAGE_SHAPE[:2]
    if pixels.shape[:2] != (height, width):
        print(f"note: {path} is {pixels.shape[1]}x{pixels.shape[0]}, resized to "
              f"{width}x{height}", file=sys.stderr)
        resized = tf.image.resize(pixels, (height, width), antialias=True)
        pixels = tf.saturate_cast(tf.round(resized), tf.uint8)
    return pixels.numpy()


def image_size(content: bytes, path: str) -> tuple[int, int]:
    """(width, height) of a PNG or JPEG, from its header: before any pixel is
    decoded, as a small file may decode to gigabytes."""
    if content.startswith(PNG_SIGNATURE) and content[12:16] == b"IHDR" and len(content) >= 24:
        return struct.unpack(">II", content[16:24])
    if content.startswith(JPEG_SIGNATURE):
        try:
            height, width = tf.io.extract_jpeg_shape(content).numpy()[:2]
        except tf.errors.InvalidArgumentError:
            raise _not_an_image(path) from None
        return int(width), int(height)
    raise _not_an_image(path)


def _not_an_image(path: str) -> UserError:
    return UserError(f"cannot decode {path}: it must be a PNG or JPEG image")


def load_model(path: str):
    """A function from a batch of uint8 images to a batch of class probabilities:
    a run's classifier, which preprocesses the images itself.

    Loading a file that is not a model fails with whichever exception its
    parser meets first (ValueError, OSError, KeyError, ...), so any failure
    becomes a UserError naming the file.
    """
    if not os.path.exists(path):
        raise _cannot_load(path, "No such file or directory")
    if os.path.isdir(path):
        return _load_saved_model(path)
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as error:
        reason = first_line(error) if zipfile.is_zipfile(path) else "not a .keras file"
        raise _cannot_load(path, reason) from None
    return lambda images: keras.ops.convert_to_numpy(model(images, training=False))


def _load_saved_model(path: str):
    """Keras' `model.export()` writes a SavedModel whose `serve` maps images to outputs."""
    if not any(os.path.exists(os.path.join(path, name))
               for name in ("saved_model.pb", "saved_model.pbtxt")):
        raise _cannot_load(path, "a folder without saved_model.pb")
    try:
        saved = tf.saved_model.load(path)
    except Exception as error:
        raise _cannot_load(path, first_line(error)) from None
    if not hasattr(saved, "serve"):
        raise _cannot_load(path, "no serve function: export it with Keras' model.export()")
    return lambda images: saved.serve(tf.constant(images)).numpy()


def _cannot_load(path: str, reason: str) -> UserError:
    return UserError(f"cannot load the model {path} ({reason}): pass the model.keras file or "
                     f"the saved_model folder of a finished run")


def class_names(model_path: str, count: int) -> tuple:
    """The names of the `count` classes of the model at `model_path`, by label:
    the class_names.json its run wrote beside model.keras and saved_model/, or,
    where there is none (a run of an earlier version, a model saved by hand),
    CIFAR-10's."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), run_folder.CLASS_NAMES)
    advice = f"put the {run_folder.CLASS_NAMES} of the model's run beside it"
    if not os.path.exists(path):
        if count != len(CLASS_NAMES):
            raise UserError(f"{model_path} gives {count} classes, not CIFAR-10's 10, and no "
                            f"{run_folder.CLASS_NAMES} beside it names them: {advice}")
        return CLASS_NAMES
    try:
        with open(path) as file:
            names = json.load(file)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path} ({first_line(error)}): {advice}") from None
    if not (isinstance(names, list) and len(names) == count
            and all(isinstance(name, str) for name in names)):
        raise UserError(f"{path} does not name the {count} classes of {model_path}: {advice}")
    return tuple(names)


def top_classes(probabilities: np.ndarray, names: tuple) -> str:
    """`cat 0.8123, dog 0.1011, frog 0.0302`: the TOP most likely classes."""
    best = np.argsort(-probabilities, kind="stable")[:TOP]
    return ", ".join(f"{names[index]} {probabilities[index]:.4f}" for index in best)
