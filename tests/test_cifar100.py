"""Training on CIFAR-100 (--dataset=cifar100): its 100 classes in the network, the
labels, the figures and the exported model."""

import numpy as np
import pytest

from cifar10_research import plots
from cifar10_research.dataset import CLASS_NAMES
from tests import fake_cifar
from tests.images import png_size


@pytest.mark.parametrize("compact, size", [(False, (700, 600)), (True, (460, 440))])
def test_a_confusion_matrix_of_100_classes_is_colours_marked_every_tenth_class(compact, size):
    counts = np.random.default_rng(0).integers(0, 5, (100, 100)) + 60 * np.eye(100, dtype=int)
    figure = plots.confusion_matrix(counts, fake_cifar.CIFAR100_NAMES, compact)
    axes = figure.axes[0]
    assert len(axes.texts) == 0  # 10,000 numbers were unreadable, and took 27 s or more to draw.
    for labels in (axes.get_xticklabels(), axes.get_yticklabels()):
        assert [label.get_text() for label in labels] == [str(i) for i in range(0, 100, 10)]
    assert len(figure.axes) == 2  # The colour bar, to read the cells by.
    assert png_size(plots.to_png(figure)) == size


def test_a_confusion_matrix_of_10_classes_names_them_and_numbers_each_cell():
    counts = np.random.default_rng(0).integers(0, 5, (10, 10)) + 60 * np.eye(10, dtype=int)
    axes = plots.confusion_matrix(counts, CLASS_NAMES).axes[0]
    assert [label.get_text() for label in axes.get_xticklabels()] == list(CLASS_NAMES)
    assert [text.get_text() for text in axes.texts] == [str(count) for count in counts.flat]
