"""Reading the PNG figures a run draws: their size, pixels and colours."""

import struct

import matplotlib.colors
import numpy as np
import tensorflow as tf


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header; fails on anything but a PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def pixels(png: bytes) -> np.ndarray:
    """A PNG's (height, width, RGB) pixels."""
    return tf.io.decode_png(png, channels=3).numpy()


def pixels_of_colour(image: np.ndarray, colour: str) -> int:
    """How many pixels are (within antialiasing) of a matplotlib colour."""
    rgb = np.array(matplotlib.colors.to_rgb(colour)) * 255
    return int((np.abs(image - rgb).max(axis=-1) < 30).sum())
