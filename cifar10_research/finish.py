"""What a run leaves besides checkpoints: the trained model and its figures.

Each epoch adds the prediction grid and confusion matrix of its validation
images (and histograms) to TensorBoard; after the last one the model is saved
for Keras and TF Serving and the run's figures, on the test set, are drawn
into the run folder.
"""

import os

from cifar10_research import metrics, plots, run_folder, stopping
from cifar10_research.dataset import Split
from cifar10_research.learner import Learner
from cifar10_research.summaries import Summaries

GRID_IMAGES = 25  # The first test images, shown with their predictions in predictions.png.
CARD_GRID_IMAGES = 9  # Fewer in TensorBoard, whose cards show an image about 350 pixels wide.


def write_epoch_figures(learner: Learner, validation: Split, train: Split, names: tuple,
                        summaries: Summaries, epoch: int, histograms: bool) -> None:
    """The epoch's prediction grid and confusion matrix of the `validation` images
    (just evaluated), and optionally histograms."""
    grid = prediction_grid(learner, validation, names, CARD_GRID_IMAGES, fontsize=11)
    summaries.images(epoch, plots.to_png(grid), plots.to_png(plots.confusion_matrix(
        learner.confusion.result(), names, compact=True)))
    if histograms:
        summaries.histograms(epoch, learner.model.trainable_variables, learner.gradients(train))


def save_model_and_figures(learner: Learner, test: Split, names: tuple, history: dict,
                           folder: str) -> None:
    """The trained classifier (uint8 pixels in, probabilities out: see
    model.classifier) as .keras and SavedModel, the class `names` of its
    outputs, and the run's figures, in `folder`.

    The confusion matrix is that of the latest evaluation: the test set's. Each
    is written whole under a partial name, then renamed into place; a signal
    stops the run between two of them.
    """
    # First, so that no exported model lacks them.
    run_folder.write_json(os.path.join(folder, run_folder.CLASS_NAMES), list(names))
    run_folder.write_whole(os.path.join(folder, run_folder.MODEL), learner.classifier.save,
                           ".partial.keras")  # Keras saves only to names ending in .keras.
    stopping.check()
    run_folder.write_whole(os.path.join(folder, run_folder.SAVED_MODEL),
                           lambda path: learner.classifier.export(path, verbose=False),
                           folder=True)
    sample_prediction = learner.predict_classes(test.images[:1])[0]
    figures = {
        run_folder.ACCURACY_PLOT: plots.curves(history, metrics.ACCURACY.name),
        run_folder.LOSS_PLOT: plots.curves(history, metrics.LOSS.name),
        run_folder.CONFUSION_PLOT: plots.confusion_matrix(learner.confusion.result(), names),
        run_folder.PREDICTIONS_PLOT: prediction_grid(learner, test, names, GRID_IMAGES),
        run_folder.SAMPLE_PLOT: plots.sample_prediction(
            test.images[0], names[test.labels[0]], names[sample_prediction]),
    }
    for name, figure in figures.items():
        stopping.check()
        plots.save(figure, os.path.join(folder, name))


def prediction_grid(learner: Learner, split: Split, names: tuple, count: int,
                    fontsize: int = 7):
    """The first `count` images of `split`, captioned with their predicted class."""
    images = split.images[:count]
    predicted = learner.predict_classes(images)
    return plots.prediction_grid(images, [names[i] for i in split.labels[:count]],
                                 [names[i] for i in predicted], fontsize)


def results(test: metrics.Sums, history: dict, tta: str, fingerprint: str) -> dict:
    """What results.json holds: the test means (`test_<name>`), the last epoch's
    validation means (`val_<name>`), the best epoch's validation accuracy."""
    best_epoch, best_accuracy = run_folder.best_epoch(history)
    return {**{f"test_{name}": mean for name, mean in test.means().items()},
            "test_count": int(test[metrics.COUNT]), "tta": tta, "val_data": history["val_data"],
            **{key: history[key][-1] for key in run_folder.METRIC_KEYS if key.startswith("val_")},
            "best_val_accuracy": best_accuracy, "best_epoch": best_epoch,
            "weights_fingerprint": fingerprint}
