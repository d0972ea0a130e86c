"""The run's figures, drawn with matplotlib: for PNG files and TensorBoard."""

import io
import os

import matplotlib

matplotlib.use("Agg")  # Files only: no display needed, on servers too.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

WRONG = "tab:red"
RIGHT = "tab:green"


def curves(history: dict, metric: str):
    """Train vs validation `metric` ("accuracy" or "loss") per epoch."""
    epochs = range(1, len(history[metric]) + 1)
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(epochs, history[metric], marker="o", label=metric)
    axes.plot(epochs, history[f"val_{metric}"], marker="o", label=f"val_{metric}")
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
            axes.plot(epochs, history[metric], color=color, linestyle="--", alpha=0.7)
            axes.plot(epochs, history[f"val_{metric}"], color=color, marker="o",
                      label=name)
    for axes, metric in ((accuracy_axes, "accuracy"), (loss_axes, "loss")):
        axes.set_xlabel("Epoch")
        axes.set_title(f"{metric.capitalize()}: validation (solid), train (dashed)")
        axes.grid(alpha=0.3)
    accuracy_axes.legend(loc="lower right")
    return figure


def sample_prediction(image, actual: str, predicted: str):
    """One test image titled `Actual: <class> | Predicted: <class>`."""
    figure, axes = plt.subplots(figsize=(3, 3.3))
    axes.imshow(image)
    axes.set_title(f"Actual: {actual} | Predicted: {predicted}")
    axes.axis("off")
    return figure


def prediction_grid(images, actual: list, predicted: list):
    """Test images captioned `predicted (true)`; wrong ones in red."""
    columns = int(np.ceil(np.sqrt(len(images))))
    rows = int(np.ceil(len(images) / columns))
    figure, grid = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.8 * rows))
    for axes in grid.flat:
        axes.axis("off")
    for axes, image, truth, guess in zip(grid.flat, images, actual, predicted):
        axes.imshow(image)
        wrong = truth != guess
        axes.set_title(f"{guess}\n(true: {truth})" if wrong else guess, fontsize=8,
                       color=WRONG if wrong else RIGHT)
    return figure


def confusion_matrix(matrix: np.ndarray, class_names):
    """Counts of true (rows) vs predicted (columns) classes."""
    figure, axes = plt.subplots(figsize=(7, 6))
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes)
    ticks = range(len(class_names))
    axes.set_xticks(ticks, class_names, rotation=45, ha="right")
    axes.set_yticks(ticks, class_names)
    axes.set_xlabel("Predicted")
    axes.set_ylabel("True")
    threshold = matrix.max() / 2
    for (row, column), count in np.ndenumerate(matrix):
        axes.text(column, row, f"{count:.0f}", ha="center", va="center", fontsize=7,
                  color="white" if count > threshold else "black")
    axes.set_title(f"Confusion matrix (accuracy {np.trace(matrix) / matrix.sum():.4f})")
    return figure


def save(figure, path: str) -> None:
    """Writes the PNG whole or not at all, then frees the figure."""
    partial = path + ".tmp"
    with open(partial, "wb") as file:
        file.write(to_png(figure))
    os.replace(partial, path)


def to_png(figure) -> bytes:
    """The figure as PNG bytes (freed afterwards), e.g. for a TensorBoard image."""
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=100, format="png")
    plt.close(figure)
    return buffer.getvalue()
