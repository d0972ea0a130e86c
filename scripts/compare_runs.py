"""Overlays the accuracy and loss curves of several runs in one PNG.

    python scripts/compare_runs.py runs/baseline runs/wider --output=comparison.png

Each run is named in the legend by its folder name; validation curves are
solid, training curves dashed.
"""

import os
import sys

from absl import app
from absl import flags

import plots
import run_folder
from errors import UserError

flags.DEFINE_string("output", "comparison.png", "The PNG file to write.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) < 2:
        raise app.UsageError("name at least one run folder")
    try:
        histories = {os.path.basename(os.path.normpath(workdir)): run_folder.read_history(workdir)
                     for workdir in argv[1:]}
        plots.save(plots.compare(histories), FLAGS.output)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except OSError as error:
        print(f"error: cannot write {FLAGS.output} ({error.strerror}): pass a writable "
              f"--output", file=sys.stderr)
        sys.exit(1)
    print(f"Wrote {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
