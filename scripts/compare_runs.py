"""Overlays the accuracy and loss curves of several runs in one PNG.

    python scripts/compare_runs.py runs/baseline runs/wider --output=comparison.png

Each run is named in the legend by its folder name; validation curves are
solid, training curves dashed.
"""

import os

from absl import app
from absl import flags

from cifar10_research import command  # The first of the project's imports: see command.py.
from cifar10_research import plots, run_folder
from cifar10_research.errors import UserError

flags.DEFINE_string("output", "comparison.png", "The PNG file to write.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) < 2:
        raise app.UsageError("name at least one run folder")
    if os.path.isdir(FLAGS.output):
        raise UserError(f"--output={FLAGS.output} is a folder: pass the PNG file to write, "
                        f"e.g. {os.path.join(FLAGS.output, 'comparison.png')}")
    histories = {os.path.basename(os.path.normpath(workdir)): run_folder.read_history(workdir)
                 for workdir in argv[1:]}
    try:
        plots.save(plots.compare(histories), FLAGS.output)
    except OSError as error:
        raise UserError(f"cannot write {FLAGS.output} ({error.strerror}): pass a "
                        f"writable --output") from None
    print(f"Wrote {FLAGS.output}")


if __name__ == "__main__":
    command.run(main, stopped="")
