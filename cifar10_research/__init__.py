"""The machinery of the CIFAR-10 research codebase: settings, training loop, files.

What a researcher changes most lives beside this package: the networks in
`model.py`, the input pipelines and augmentations in `data.py`. Importing the
package imports TensorFlow without its start-up banners (see `quiet.py`), so
an entry point that imports this package before TensorFlow prints only its own
output.
"""

from cifar10_research import quiet, stopping

with stopping.held_while_importing():
    quiet.import_tensorflow_quietly()
