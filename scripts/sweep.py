"""Trains recipes over several seeds, one normal run folder each, and compares them.

    python scripts/sweep.py --seeds=0,1,2 --model_dir=sweeps \\
        --recipe=recipes/tutorial.flags --recipe=recipes/improved.flags \\
        --recipe="wider: --model=wide_cnn --epochs=5" \\
        -- --data_dir=../shared/cifar10

A recipe is a flagfile (named by its file name, e.g. `tutorial`) or
"NAME: FLAGS" inline.

Runs, one after another, `python train.py <recipe flags> <flags after --> --seed=S
--run_name=<recipe>-seed<S> --model_dir=<model_dir>`; later flags win, so the flags
after `--` (given to every run) override a recipe's. Write flags as --name=value.
A run whose history.json already holds all its epochs is reused, so rerunning the
same command resumes a sweep. Then writes <model_dir>/results.md, a table of each
recipe's validation and test accuracy (mean ± sample std over the seeds), ranked by
validation accuracy, then (printed too) each recipe against the first given, the
baseline: the difference of its accuracies, paired by seed, with a 95% confidence
interval and whether it is better, worse or not distinguishable; and
<model_dir>/curves.png, each recipe's mean validation accuracy per epoch. Tune with
--validation_split=0.1 after `--`, so that the ranking never looks at the test set.
"""

import os
import re

from absl import flags

from cifar10_research import command  # The first of the project's imports: see command.py.
from cifar10_research.sweeping import (CURVES, RESULTS, comparison, parse_recipes,
                                       read_runs, refuse_repeated_seeds, run, run_command,
                                       run_name, write_results)

flags.DEFINE_list("seeds", ["0", "1", "2"], "Comma-separated seeds to run each recipe with.")
flags.DEFINE_string("model_dir", "sweeps", "Root folder of the runs and the results.")
flags.DEFINE_multi_string(
    "recipe", None, 'A recipe: a flagfile such as recipes/tutorial.flags, or "NAME: '
    'TRAIN.PY FLAGS", e.g. "quick: --epochs=2"; repeat the flag for each recipe.')
flags.mark_flag_as_required("recipe")
flags.register_validator(
    "seeds", lambda seeds: bool(seeds) and all(re.fullmatch(r"\d+", s) for s in seeds),
    message="--seeds must be comma-separated whole numbers, e.g. 0,1,2")
FLAGS = flags.FLAGS


def main(argv):
    extra = argv[1:]
    root = FLAGS.model_dir
    seeds = [int(seed) for seed in FLAGS.seeds]
    refuse_repeated_seeds(seeds)
    recipes = parse_recipes(FLAGS.recipe)
    for name, recipe_flags in recipes.items():
        for seed in seeds:
            run(run_command(recipe_flags, seed, name, root, extra),
                os.path.join(root, run_name(name, seed)))
    runs = read_runs(root, recipes, seeds)
    write_results(root, recipes, runs, extra)
    print(comparison(runs))
    print(f"Wrote {os.path.join(root, RESULTS)} and {os.path.join(root, CURVES)}")


if __name__ == "__main__":
    command.run(main, stopped="")
