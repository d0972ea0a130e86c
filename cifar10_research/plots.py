"""The run's figures, drawn with matplotlib: for PNG files and TensorBoard."""

import io

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from cifar10_research import run_folder

matplotlib.use("Agg")  # Files only: no display needed, on servers too.

WRONG = "tab:red"
RIGHT = "tab:green"
NAMED_CLASSES = 20  # The most classes a confusion matrix names, with a number in each cell.


def curves(history: dict, metric: str):
    """Train vs validation `metric` ("accuracy" or "loss") per epoch; the legend
    says what the validation was measured on (history's "val_data")."""
    epochs = range(1, len(history[metric]) + 1)
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(epochs, _measured(history[metric]), marker="o", label=f"{metric} (training batches)")
    axes.plot(epochs, _measured(history[f"val_{metric}"]), marker="o",
              label=f"val_{metric} ({history['val_data']})")
    axes.set_xlabel("Epoch")
    axes.set_ylabel(metric.capitalize())
    if metric == "accuracy":
        axes.set_ylim(0, 1)
    axes.legend(loc="lower right" if metric == "accuracy" else "upper right")
    axes.grid(alpha=0.3)
    return figure


def compare(histories: dict):
    """Accuracy and loss of several runs, {name: history}, overlaid."""
    figure, (accuracy_axes, loss_axes) = plt.subplots(1, 2, figsize=(11, 4))
    for index, (name, history) in enumerate(histories.items()):
        color = f"C{index % 10}"
        epochs = range(1, len(history["loss"]) + 1)
        for axes, metric in ((accuracy_axes, "accuracy"), (loss_axes, "loss")):
            axes.plot(epochs, _measured(history[metric]), color=color, linestyle="--", alpha=0.7)
            axes.plot(epochs, _measured(history[f"val_{metric}"]), color=color, marker="o",
                      label=name)
    for axes, metric in ((accuracy_axes, "accuracy"), (loss_axes, "loss")):
        axes.set_xlabel("Epoch")
        axes.set_title(f"{metric.capitalize()}: validation (solid), train (dashed)")
        axes.grid(alpha=0.3)
    accuracy_axes.legend(loc="lower right")
    return figure


def mean_curves(curves: dict):
    """Validation accuracy per epoch of several recipes, {name: one list per seed}.

    Each recipe's line is the mean over its seeds; the shading spans the
    lowest to the highest seed, so overlapping bands mean no clear winner.
    """
    figure, axes = plt.subplots(figsize=(6, 4))
    for index, (name, runs) in enumerate(curves.items()):
        runs = np.asarray(runs, dtype=float)
        epochs = np.arange(1, runs.shape[1] + 1)
        color = f"C{index % 10}"
        axes.plot(epochs, runs.mean(axis=0), color=color, marker="o",
                  label=f"{name} ({len(runs)} seeds)")
        axes.fill_between(epochs, runs.min(axis=0), runs.max(axis=0), color=color, alpha=0.2)
    axes.set_xlabel("Epoch")
    axes.set_ylabel("Validation accuracy")
    axes.set_ylim(0, 1)
    axes.set_title("Mean over seeds (shaded: lowest to highest)")
    axes.legend(loc="lower right")
    axes.grid(alpha=0.3)
    return figure


def _measured(values: list) -> np.ndarray:
    """A history's values with NaN, which matplotlib leaves out, where None."""
    return np.array([np.nan if value is None else value for value in values], dtype=float)


def sample_prediction(image, actual: str, predicted: str):
    """One test image titled `Actual: <class> | Predicted: <class>`."""
    figure, axes = plt.subplots(figsize=(3, 3.3))
    axes.imshow(image)
    axes.set_title(f"Actual: {actual} | Predicted: {predicted}")
    axes.axis("off")
    return figure


def prediction_grid(images, actual: list, predicted: list, fontsize: int = 7):
    """Images captioned with their prediction; wrong ones in red, with the truth.

    One mosaic in one axes: drawing 25 subplots costs several times more.
    """
    columns = int(np.ceil(np.sqrt(len(images))))
    rows = int(np.ceil(len(images) / columns))
    height, width = images.shape[1:3]
    cell_height, cell_width = height + 14, width + 4  # Room below each image for its caption.
    mosaic = np.full((rows * cell_height, columns * cell_width, 3), 255, np.uint8)
    figure, axes = plt.subplots(figsize=(1.5 * columns, 1.6 * rows))
    for index, (image, truth, guess) in enumerate(zip(images, actual, predicted)):
        top, left = (index // columns) * cell_height, (index % columns) * cell_width + 2
        mosaic[top:top + height, left:left + width] = image
        wrong = truth != guess
        axes.text(left + width / 2, top + height + 1, f"{guess}\n(true: {truth})" if wrong
                  else guess, ha="center", va="top", fontsize=fontsize,
                  color=WRONG if wrong else RIGHT)
    axes.imshow(mosaic)
    axes.axis("off")
    return figure


def confusion_matrix(matrix: np.ndarray, class_names, compact: bool = False):
    """True (rows) vs predicted (columns) classes: counts, or when `compact` each
    row's percentages in a smaller figure with larger text (a TensorBoard card).

    Up to NAMED_CLASSES classes, each is named and each cell holds its number.
    Beyond, the cells are colour alone, read on the colour bar, and every tenth
    class is marked by its label: CIFAR-100's 10,000 numbers and 100 names
    were a black mass, and took 27 to 36 s to draw.
    """
    shown = 100 * matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1) if compact else matrix
    named = len(class_names) <= NAMED_CLASSES
    figure, axes = plt.subplots(figsize=(4.6, 4.4) if compact else (7, 6))
    image = axes.imshow(shown, cmap="Blues")
    if not (compact and named):
        figure.colorbar(image, ax=axes)
    fontsize = 12 if compact else 7
    if named:
        _number_the_cells(axes, shown, class_names, fontsize)
    else:
        ticks = range(0, len(class_names), 10)
        axes.set_xticks(ticks, ticks, fontsize=fontsize)
        axes.set_yticks(ticks, ticks, fontsize=fontsize)
    label = "" if named else " class"
    axes.set_xlabel(f"Predicted{label}")
    axes.set_ylabel(f"True{label}" + (" (% of the row)" if compact else ""))
    axes.set_title(f"Confusion matrix (accuracy {np.trace(matrix) / matrix.sum():.4f})")
    return figure


def _number_the_cells(axes, shown: np.ndarray, class_names, fontsize: int) -> None:
    """Each class's name on both axes, and each cell's value in it."""
    ticks = range(len(class_names))
    axes.set_xticks(ticks, class_names, rotation=45, ha="right", fontsize=fontsize)
    axes.set_yticks(ticks, class_names, fontsize=fontsize)
    threshold = shown.max() / 2
    for (row, column), value in np.ndenumerate(shown):
        axes.text(column, row, f"{value:.0f}", ha="center", va="center", fontsize=fontsize,
                  color="white" if value > threshold else "black",
                  in_layout=False)  # Inside the axes: tight_layout need not measure it.


def save(figure, path: str) -> None:
    """Writes the PNG whole or not at all (see run_folder.write_whole), then frees
    the figure."""
    run_folder.write_bytes(path, to_png(figure))


def to_png(figure) -> bytes:
    """The figure as PNG bytes (freed afterwards), e.g. for a TensorBoard image."""
    figure.tight_layout()
    # Laid out now: tight_layout leaves a placeholder layout engine, for which
    # savefig draws the whole figure once more (a quarter of its time here).
    figure.set_layout_engine(None)
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=100, format="png")
    plt.close(figure)
    return buffer.getvalue()
