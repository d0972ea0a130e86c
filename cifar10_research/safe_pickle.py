"""Reads a pickle that may rebuild only numpy arrays, so that loading it runs no code.

A pickle names the functions that rebuild its objects, and loading it calls
them: any function, from a file of anywhere. The datasets' pickles hold
dicts, lists, numbers, bytes and numpy arrays, which need only numpy's.
"""

import codecs
import os
import pickle

import numpy as np

from cifar10_research.errors import UserError


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays but refuses every other global.

    `_codecs.encode` is how Python 3 writes bytes into a protocol-2 pickle.
    """

    # numpy.core.multiarray._reconstruct, wherever this numpy version keeps it.
    _reconstruct = np.zeros(0).__reduce__()[0]
    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"): _reconstruct,
                ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
                ("numpy", "ndarray"): np.ndarray,
                ("numpy", "dtype"): np.dtype,
                ("_codecs", "encode"): codecs.encode}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return self._ALLOWED[(module, name)]


def load(path: str, hint: str):
    """The pickle at `path`, its strings as bytes. A missing, truncated or corrupt
    one, or one that names any other function, is a UserError naming the file and
    ending with `hint`, what to do."""
    if not os.path.isfile(path):
        raise UserError(f"{path} is missing: {hint}")
    try:
        with open(path, "rb") as file:
            return _NumpyOnlyUnpickler(file, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as error:
        raise UserError(f"{path} is truncated or corrupt ({error}): {hint}") from None
