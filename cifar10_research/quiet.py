"""Imports TensorFlow without its start-up banners on stderr.

TensorFlow's C++ side prints oneDNN and CUDA-probe notices while it loads,
before TF_CPP_MIN_LOG_LEVEL is read (tensorflow#100442), so the only way to
hide them is to point file descriptor 2 elsewhere during the import. The
package's `__init__` calls this, so it happens once, before any module of the
package imports TensorFlow. Set TF_CPP_MIN_LOG_LEVEL=0 to see TensorFlow's
C++ log again when debugging.
"""

import contextlib
import os
import sys


@contextlib.contextmanager
def _stderr_discarded():
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow and Keras with stderr silenced, unless asked to log."""
    if os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3") != "3":
        return
    with _stderr_discarded():
        import tensorflow  # noqa: F401
        import keras  # noqa: F401
