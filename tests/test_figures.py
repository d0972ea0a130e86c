"""The figures a run draws and scripts/compare_runs.py, read back from the PNGs."""

import json

import pytest

from cifar10_research import plots, run_folder
from tests.conftest import run_python
from tests.images import pixels, pixels_of_colour, png_size


FIGURE_SIZES = {run_folder.ACCURACY_PLOT: (600, 400), run_folder.LOSS_PLOT: (600, 400),
                run_folder.CONFUSION_PLOT: (700, 600),
                run_folder.PREDICTIONS_PLOT: (750, 800),  # 5 x 5 cells for 24 test images.
                run_folder.SAMPLE_PLOT: (300, 330)}


def test_the_run_folder_figures_have_their_size_and_are_drawn(run_root):
    runs, results = run_root
    drawn = {name: (runs / "watched" / name).read_bytes() for name in FIGURE_SIZES}
    for name, png in drawn.items():
        assert png_size(png) == FIGURE_SIZES[name], name
        assert pixels(png).std() > 10, name  # Not blank.
    for name in (run_folder.ACCURACY_PLOT, run_folder.LOSS_PLOT):
        for line in ("C0", "C1"):  # The training and the validation curve.
            assert pixels_of_colour(pixels(drawn[name]), line) > 100, (name, line)
    # The grid shows every test image: some predicted right (green), some wrong (red).
    assert 0 < results["test_accuracy"] < 1
    grid = pixels(drawn[run_folder.PREDICTIONS_PLOT])
    assert pixels_of_colour(grid, plots.RIGHT) > 10 and pixels_of_colour(grid, plots.WRONG) > 10


@pytest.mark.slow
def test_compare_runs_overlays_several_runs(run_root, tmp_path):
    runs, results = run_root
    other = tmp_path / "other"
    other.mkdir()
    history = {key: [value * 0.9 for value in results["history"][key]]
               for key in run_folder.HISTORY_KEYS}
    (other / run_folder.HISTORY).write_text(json.dumps(history))
    output = tmp_path / "comparison.png"
    result = run_python("scripts/compare_runs.py", str(runs / "watched"), str(other),
                        f"--output={output}")
    assert result.returncode == 0, result.stderr
    width, height = png_size(output.read_bytes())
    assert width > height >= 300
