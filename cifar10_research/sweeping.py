"""Recipes run over seeds, one normal run folder each, and compared: the library
side of scripts/sweep.py.

A recipe is a flagfile (named by its file name, e.g. `tutorial`) or "NAME:
FLAGS" inline. A run is `python train.py <recipe flags> <shared flags>
--seed=S --run_name=<recipe>-seed<S> --model_dir=<root>`; a run whose
history.json already holds all its epochs is reused, so rerunning a sweep
resumes it. The results table ranks recipes by validation accuracy and
reports test accuracy beside it; a second table compares each recipe with the
first given (the baseline), run by run with the same seed (see paired.py).
"""

import os
import re
import shlex
import statistics
import subprocess
import sys

from cifar10_research import paired, plots, run_folder, stopping
from cifar10_research.config import Config
from cifar10_research.errors import Interrupted, UserError

TRAIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "train.py")
RESULTS = "results.md"
CURVES = "curves.png"


def refuse_repeated_seeds(seeds: list[int]) -> None:
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise UserError(f"--seeds names {', '.join(map(str, repeated))} more than once: a run "
                        f"counted twice would shrink the std; give each seed once")


def parse_recipes(texts: list[str]) -> dict:
    """{NAME: [FLAG, ...]} from recipe files and "NAME: FLAGS" texts, in the order given."""
    recipes = {}
    for text in texts:
        name, recipe_flags = read_recipe_file(text) if text.endswith(".flags") else (
            _parse_inline_recipe(text))
        if name in recipes:
            raise UserError(f"two recipes are named {name}: give each its own name")
        recipes[name] = recipe_flags
    return recipes


def read_recipe_file(path: str) -> tuple[str, list[str]]:
    """(file name without .flags, its flag lines) of a flagfile like recipes/tutorial.flags."""
    try:
        with open(path) as file:
            lines = [line.strip() for line in file]
    except OSError as error:
        raise UserError(f"cannot read the recipe {path} ({error.strerror}): pass a flagfile "
                        f"such as recipes/tutorial.flags, or \"NAME: FLAGS\"") from None
    name = os.path.basename(path)[:-len(".flags")]
    return name, [line for line in lines if line and not line.startswith("#")]


def _parse_inline_recipe(text: str) -> tuple[str, list[str]]:
    name, colon, rest = text.partition(":")
    name = name.strip()
    if not colon or not re.fullmatch(r"[\w.-]+", name):
        raise UserError(f'--recipe="{text}" is not "NAME: FLAGS" with a NAME of letters, '
                        f'digits, "_", "-" and ".", e.g. "tutorial: --epochs=10", nor a '
                        f'recipes/*.flags file')
    return name, shlex.split(rest)


def run_name(recipe: str, seed: int) -> str:
    return f"{recipe}-seed{seed}"


def run_command(recipe_flags: list[str], seed: int, name: str, root: str,
                extra: list[str]) -> list[str]:
    """The train.py command line of recipe `name`'s run with `seed`."""
    return [sys.executable, TRAIN, *recipe_flags, *extra, f"--seed={seed}",
            f"--run_name={run_name(name, seed)}", f"--model_dir={root}"]


def expected_epochs(command: list[str]) -> int:
    """The epochs `command` asks for: its last --epochs=N, else train.py's default."""
    epochs = [int(match[1]) for arg in command if (match := re.fullmatch(r"--epochs=(\d+)", arg))]
    return epochs[-1] if epochs else Config().epochs


def is_finished(workdir: str, epochs: int) -> bool:
    """Whether the run trained all its epochs and wrote its final results."""
    if run_folder.read_results(workdir) is None:
        return False
    return len(run_folder.read_history(workdir)["val_accuracy"]) == epochs


def run(command: list[str], workdir: str) -> None:
    """Runs `command`, unless `workdir` holds a run that finished all its epochs."""
    if is_finished(workdir, expected_epochs(command)):
        print(f"Reusing the finished run {workdir}", flush=True)
        return
    print(f"Running {shlex.join(command)}", flush=True)
    with stopping.deferred():
        # Its own session: a Ctrl-C reaches it through this process only, once.
        process = subprocess.Popen(command, start_new_session=True)
        with stopping.forwarded_to([process]):
            code = process.wait()
        if signum := stopping.requested():
            raise Interrupted(f"Stopped by {signum.name} during the run {workdir}: rerun the "
                              f"sweep to go on (it reuses finished runs and resumes this one)",
                              stopping.EXIT_CODES[signum])
    if code:
        raise UserError(f"the run {workdir} failed with exit code {code} (its output is "
                        f"above): fix the cause and rerun the sweep, which reuses finished runs")


def read_runs(root: str, recipes: dict, seeds: list[int]) -> dict:
    """{recipe: {seed: (history, results) of its run}}, recipes in the order given."""
    runs = {}
    for name in recipes:
        runs[name] = {}
        for seed in seeds:
            workdir = os.path.join(root, run_name(name, seed))
            results = run_folder.read_results(workdir)
            if results is None:
                raise UserError(f"{workdir} has no {run_folder.RESULTS}: it has not finished; "
                                f"rerun the sweep to finish it")
            runs[name][seed] = run_folder.read_history(workdir), results
    return runs


def _mean_and_std(values: list[float]) -> str:
    spread = f"{statistics.stdev(values):.4f}" if len(values) > 1 else "n/a"
    return f"{statistics.mean(values):.4f} ± {spread}"


def results_table(recipes: dict, runs: dict) -> str:
    """One Markdown row per recipe, ranked by mean validation accuracy."""
    lines = ["| rank | recipe | flags | seeds | validated on | validation accuracy (mean ± std) "
             "| test accuracy (mean ± std) | seconds per run |",
             "|---|---|---|---|---|---|---|---|"]
    for rank, (name, by_seed) in enumerate(_ranked(runs), 1):
        seed_runs = list(by_seed.values())
        validation = [results["val_accuracy"] for _, results in seed_runs]
        test = [results["test_accuracy"] for _, results in seed_runs]
        seconds = statistics.mean(sum(history["seconds"]) for history, _ in seed_runs)
        recipe_flags = f"`{shlex.join(recipes[name])}`" if recipes[name] else "(defaults)"
        lines.append(f"| {rank} | {name} | {recipe_flags} | {len(seed_runs)} | "
                     f"{seed_runs[0][1]['val_data']} | {_mean_and_std(validation)} | "
                     f"{_mean_and_std(test)} | {seconds:.0f} |")
    return "\n".join(lines) + "\n"


def _ranked(runs: dict) -> list:
    """runs' items by mean validation accuracy, best first."""
    return sorted(runs.items(), key=lambda item: -statistics.mean(
        results["val_accuracy"] for _, results in item[1].values()))


def comparison(runs: dict) -> str:
    """A paragraph and a Markdown table: each recipe's accuracy minus the first recipe's
    (the baseline), paired by seed, with its 95% interval and what it says; ranked rows."""
    baseline = next(iter(runs))
    lines = [f"Against the baseline, {baseline} (the first recipe given): each recipe's "
             f"accuracy minus the baseline's, taken seed by seed (a seed fixes the order of "
             f"the images and, for the same network, the initial weights); their mean ± the "
             f"half-width of its 95% confidence interval (Student's t, n - 1 degrees of "
             f"freedom for n seeds), then the interval. It takes the seeds as independent "
             f"pairs and their differences as normal; an interval that holds 0 is not "
             f"distinguishable from the baseline.", "",
             "| rank | recipe | validation accuracy minus the baseline's | on validation "
             "| test accuracy minus the baseline's | on test |", "|---|---|---|---|---|---|"]
    for rank, (name, by_seed) in enumerate(_ranked(runs), 1):
        cells = ["—", "the baseline"] * 2 if name == baseline else [
            cell for key in ("val_accuracy", "test_accuracy")
            for cell in _compared(runs[baseline], by_seed, key)]
        lines.append(f"| {rank} | {name} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def _compared(baseline: dict, candidate: dict, key: str) -> list[str]:
    """[the difference of `key` with its interval, what it says]."""
    found = paired.difference({seed: results[key] for seed, (_, results) in baseline.items()},
                              {seed: results[key] for seed, (_, results) in candidate.items()})
    if found.half_width is None:
        return [f"{found.mean:+.4f} ± n/a", paired.verdict(found)]
    low, high = found.mean - found.half_width, found.mean + found.half_width
    return [f"{found.mean:+.4f} ± {found.half_width:.4f} [{low:+.4f}, {high:+.4f}]",
            paired.verdict(found)]


def write_results(root: str, recipes: dict, runs: dict, extra: list[str]) -> None:
    """results.md (the tables, with the flags every run got) and curves.png in `root`."""
    note = f"\nEvery run also got `{shlex.join(extra)}`.\n" if extra else ""
    footnote = ("\nRanked by validation accuracy (the last epoch's); test accuracy is "
                "reported beside it and chose nothing. A recipe validated on the test set "
                "(--validation_split=0) measures the same images twice. std: sample standard "
                "deviation over the seeds; seconds: the sum of a run's epoch times "
                "(history.json), mean over the seeds.\n")
    run_folder.write_text(os.path.join(root, RESULTS),
                          results_table(recipes, runs) + note + footnote + "\n"
                          + comparison(runs))
    curves = {name: [history["val_accuracy"] for history, _ in by_seed.values()]
              for name, by_seed in runs.items()}
    plots.save(plots.mean_curves(curves), os.path.join(root, CURVES))
