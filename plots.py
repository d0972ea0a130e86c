"""The run's figures, drawn with matplotlib into PNG files."""

import os

import matplotlib

matplotlib.use("Agg")  # Files only: no display needed, on servers too.
import matplotlib.pyplot as plt  # noqa: E402


def plot_accuracy(history: dict, path: str) -> None:
    """Train vs validation accuracy per epoch, as in the Keras tutorial."""
    epochs = range(1, len(history["accuracy"]) + 1)
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(epochs, history["accuracy"], marker="o", label="accuracy")
    axes.plot(epochs, history["val_accuracy"], marker="o", label="val_accuracy")
    axes.set_xlabel("Epoch")
    axes.set_ylabel("Accuracy")
    axes.set_ylim(0, 1)
    axes.legend(loc="lower right")
    axes.grid(alpha=0.3)
    _save(figure, path)


def plot_sample_prediction(image, actual: str, predicted: str, path: str) -> None:
    """One test image titled `Actual: <class> | Predicted: <class>`."""
    figure, axes = plt.subplots(figsize=(3, 3.3))
    axes.imshow(image)
    axes.set_title(f"Actual: {actual} | Predicted: {predicted}")
    axes.axis("off")
    _save(figure, path)


def _save(figure, path: str) -> None:
    """Writes the PNG whole or not at all, then frees the figure."""
    figure.tight_layout()
    partial = path + ".tmp"
    figure.savefig(partial, dpi=100, format="png")
    plt.close(figure)
    os.replace(partial, path)
