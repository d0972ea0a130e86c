"""What a run leaves besides checkpoints: the trained model and its figures.

Each epoch adds its prediction grid and confusion matrix (and histograms) to
TensorBoard; after the last one the model is saved for Keras and TF Serving
and the run's figures are drawn into the run folder.
"""

import os

from cifar10_research import plots, run_folder
from cifar10_research.dataset import Cifar10
from cifar10_research.learner import Learner
from cifar10_research.summaries import Summaries

GRID_IMAGES = 25  # The first test images, shown with their predictions each epoch.


def write_epoch_figures(learner: Learner, cifar: Cifar10, summaries: Summaries, epoch: int,
                        histograms: bool) -> None:
    """The epoch's prediction grid, confusion matrix and (optionally) histograms."""
    summaries.images(epoch, plots.to_png(prediction_grid(learner, cifar)),
                     plots.to_png(plots.confusion_matrix(learner.confusion.result(),
                                                         cifar.class_names)))
    if histograms:
        summaries.histograms(epoch, learner.model.trainable_variables,
                             learner.gradients(cifar.train))


def save_model_and_figures(learner: Learner, cifar: Cifar10, history: dict,
                           folder: str) -> None:
    """The trained model as .keras and SavedModel, and the run's figures, in `folder`.

    The confusion matrix is the one of the latest evaluation.
    """
    learner.model.save(os.path.join(folder, run_folder.MODEL))
    learner.model.export(os.path.join(folder, run_folder.SAVED_MODEL), verbose=False)
    names = cifar.class_names
    sample_prediction = learner.predict_classes(cifar.test.images[:1])[0]
    figures = {
        run_folder.ACCURACY_PLOT: plots.curves(history, "accuracy"),
        run_folder.LOSS_PLOT: plots.curves(history, "loss"),
        run_folder.CONFUSION_PLOT: plots.confusion_matrix(learner.confusion.result(), names),
        run_folder.PREDICTIONS_PLOT: prediction_grid(learner, cifar),
        run_folder.SAMPLE_PLOT: plots.sample_prediction(
            cifar.test.images[0], names[cifar.test.labels[0]], names[sample_prediction]),
    }
    for name, figure in figures.items():
        plots.save(figure, os.path.join(folder, name))


def prediction_grid(learner: Learner, cifar: Cifar10):
    images = cifar.test.images[:GRID_IMAGES]
    predicted = learner.predict_classes(images)
    names = cifar.class_names
    return plots.prediction_grid(images, [names[i] for i in cifar.test.labels[:GRID_IMAGES]],
                                 [names[i] for i in predicted])
