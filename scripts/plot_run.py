"""Redraws the accuracy and loss plots of finished runs from their history.json.

    python scripts/plot_run.py runs/2026-11-27_14-03-59 [RUN_DIR ...]
"""

import os

from absl import app

from cifar10_research import command  # The first of the project's imports: see command.py.
from cifar10_research import plots, run_folder


def main(argv):
    if len(argv) < 2:
        raise app.UsageError("name at least one run folder")
    for workdir in argv[1:]:
        history = run_folder.read_history(workdir)
        for metric, name in (("accuracy", run_folder.ACCURACY_PLOT),
                             ("loss", run_folder.LOSS_PLOT)):
            path = os.path.join(workdir, name)
            plots.save(plots.curves(history, metric), path)
            print(f"Wrote {path}")


if __name__ == "__main__":
    command.run(main, stopped="")
