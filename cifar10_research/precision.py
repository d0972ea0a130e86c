"""Mixed precision by --mixed_precision name: the Keras dtype policy layers are built with."""

import contextlib

import keras

# float16 also needs loss scaling (learner.py); bfloat16 has float32's range.
POLICIES = {"none": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


@contextlib.contextmanager
def dtype_policy(name: str):
    """Keras' global dtype policy for --mixed_precision=`name` while layers are
    built: they keep it, and the global policy is restored afterwards."""
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(POLICIES[name])
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
