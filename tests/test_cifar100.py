"""Training on CIFAR-100 (--dataset=cifar100): its 100 classes in the network, the
labels, the figures and the exported model."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import model
from cifar10_research import dataset, evaluation, loop, plots, predictor, run_folder
from cifar10_research.config import Config
from cifar10_research.dataset import CLASS_NAMES
from cifar10_research.errors import UserError
from cifar10_research.saved_flags import parse_saved_flags
from tests import fake_cifar
from tests.conftest import one_device, run_python, tiny_cifar
from tests.images import png_size

HUNDRED = Config(dataset="cifar100", epochs=2, batch_size=16, learning_rate=3e-3,
                 log_every_n_steps=2, run_name="hundred")


@pytest.fixture(scope="module")
def cifar100_run(tmp_path_factory):
    """A 2-epoch run of HUNDRED on fake_cifar's CIFAR-100 files, read from its
    --data_dir as --dataset=cifar100 names them; (config, run folder, results)."""
    root = tmp_path_factory.mktemp("cifar100")
    fake_cifar.write_cifar100_folder(str(root / "data"))
    config = HUNDRED.replace(data_dir=str(root / "data"))
    with pytest.MonkeyPatch.context() as patch:  # CIFAR-100 of fewer rows.
        patch.setitem(dataset.DATASETS, "cifar100", fake_cifar.CIFAR100)
        results = loop.train_and_evaluate(config, str(root / "hundred"), strategy=one_device())
    return config, root / "hundred", results


def test_a_cifar100_run_trains_tests_and_exports_a_network_of_100_outputs(cifar100_run):
    config, workdir, results = cifar100_run
    assert "--dataset=cifar100\n" in (workdir / run_folder.FLAGFILE).read_text()
    classifier = keras.models.load_model(workdir / run_folder.MODEL)
    assert classifier.output_shape == (None, 100)
    test = dataset.load(config.data_dir, fake_cifar.CIFAR100).test
    probabilities = classifier(test.images, training=False).numpy()
    assert probabilities.shape == (24, 100)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert np.mean(probabilities.argmax(axis=1) == test.labels) == pytest.approx(
        results["test_accuracy"])
    assert results["test_count"] == 24
    assert results["test_accuracy"] <= results["test_top5_accuracy"] <= 1
    assert run_folder.read_results(str(workdir)) is not None  # Every figure and export.
    for name in run_folder.ARTIFACTS:
        assert os.path.getsize(workdir / name) > 0, name
    assert len(results["history"]["val_top5_accuracy"]) == 2


def test_a_cifar100_run_resumes_only_on_cifar100_even_with_force(cifar100_run):
    config, workdir, _ = cifar100_run
    for force in (False, True):
        with pytest.raises(UserError, match=r"holds checkpoints of another network: --dataset "
                                            r"\(was cifar100, now cifar10\)"):
            loop.train_and_evaluate(config.replace(dataset="cifar10", epochs=3, force=force),
                                    str(workdir), strategy=one_device(), cifar=tiny_cifar())


def test_the_run_names_its_classes_beside_its_exported_model(cifar100_run):
    config, workdir, _ = cifar100_run
    names = json.loads((workdir / run_folder.CLASS_NAMES).read_text())
    assert names == list(fake_cifar.CIFAR100_NAMES)
    images = dataset.load(config.data_dir, fake_cifar.CIFAR100).test.images[:2]
    for exported in (run_folder.MODEL, run_folder.SAVED_MODEL):
        path = str(workdir / exported)
        probabilities = predictor.load_model(path)(images)
        assert predictor.class_names(path, probabilities.shape[-1]) == tuple(names)


@pytest.mark.slow
def test_predict_py_prints_the_runs_class_names(cifar100_run, tmp_path):
    config, workdir, _ = cifar100_run
    image = dataset.load(config.data_dir, fake_cifar.CIFAR100).test.images[0]
    tf.io.write_file(str(tmp_path / "image.png"), tf.io.encode_png(image))
    result = run_python("scripts/predict.py", f"--model={workdir / run_folder.MODEL}",
                        str(tmp_path / "image.png"))
    assert result.returncode == 0, result.stderr
    expected = keras.models.load_model(workdir / run_folder.MODEL)(image[None])[0].numpy()
    path, classes = result.stdout.splitlines()[0].split(": ")
    top = {fake_cifar.CIFAR100_NAMES.index(name): float(probability)
           for name, probability in (item.split(" ") for item in classes.split(", "))}
    assert path == str(tmp_path / "image.png") and len(top) == 3
    for label, probability in top.items():
        assert probability == pytest.approx(expected[label], abs=1e-4)
    assert min(top.values()) >= np.delete(expected, list(top)).max() - 1e-4


def test_mode_eval_evaluates_a_cifar100_run_on_cifar100(cifar100_run, monkeypatch):
    config, workdir, results = cifar100_run
    monkeypatch.setitem(dataset.DATASETS, "cifar100", fake_cifar.CIFAR100)
    evaluated = evaluation.evaluate_checkpoint(config.replace(mode="eval"), str(workdir),
                                               strategy=one_device())
    assert evaluated["test_count"] == 24
    assert evaluated["test_top5_accuracy"] == pytest.approx(results["test_top5_accuracy"])


def test_every_network_has_one_output_per_class():
    """(The default 10: tests/test_model.py, test_outputs_a_logit_per_class...)"""
    for name, build in model.MODELS.items():
        assert build(100).output_shape == (None, 100), name


def test_a_run_whose_flags_predate_the_dataset_setting_is_a_cifar10_run():
    lines = Config(epochs=3).to_flagfile().splitlines(keepends=True)
    older = "".join(line for line in lines if not line.startswith("--dataset="))
    assert len(older) < len("".join(lines))
    assert parse_saved_flags(older, "flags.txt")["dataset"] == "cifar10"


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
