"""--validation_split: tune on held-out training images, touch the test set once."""

import numpy as np
import pytest

import data
from cifar10_research import dataset, run_folder
from cifar10_research.errors import UserError
from cifar10_research.learner import Learner
from tests.conftest import tiny_cifar, train_tiny


def numbered_cifar() -> dataset.Cifar:
    """tiny_cifar(200, 40) with each training image's index written into its
    first pixel (red: index // 256, green: index % 256), to tell images apart."""
    cifar = tiny_cifar(200, 40)
    cifar.train.images[:, 0, 0, 0] = np.arange(200) // 256
    cifar.train.images[:, 0, 0, 1] = np.arange(200) % 256
    return cifar


def image_numbers(images) -> list[int]:
    """The indices written into a batch of images by numbered_cifar."""
    pixels = np.asarray(images)[:, 0, 0, :2].astype(int)
    return list(pixels[:, 0] * 256 + pixels[:, 1])


@pytest.fixture
def spied(monkeypatch):
    """Records every training image fed to a run and every split it evaluates."""
    seen = {"trained": [], "evaluated": []}
    real_train_dataset, real_evaluate = data.train_dataset, Learner.evaluate

    def train_dataset(split, *args, **kwargs):
        batches = real_train_dataset(split, *args, **kwargs)
        for images, _ in batches:  # A dataset can be iterated again: this is a copy.
            seen["trained"] += image_numbers(images)
        return batches

    def evaluate(learner, split):
        seen["evaluated"].append(split)
        return real_evaluate(learner, split)

    monkeypatch.setattr(data, "train_dataset", train_dataset)
    monkeypatch.setattr(Learner, "evaluate", evaluate)
    return seen


def test_the_held_out_images_are_class_balanced_and_the_same_for_every_run():
    cifar = tiny_cifar(1000, 40)
    train, validation = cifar.held_out(0.1)
    assert len(train) + len(validation) == 1000
    for label in range(10):
        in_class = int((cifar.train.labels == label).sum())
        assert int((validation.labels == label).sum()) == round(0.1 * in_class)
    train_rows = {image.tobytes() for image in train.images}
    assert not train_rows & {image.tobytes() for image in validation.images}
    np.testing.assert_array_equal(tiny_cifar(1000, 40).held_out(0.1)[1].images,
                                  validation.images)
    assert cifar.held_out(0) == (cifar.train, cifar.test)


def test_a_fraction_that_holds_out_nothing_is_refused():
    with pytest.raises(UserError, match=r"--validation_split=0.001 holds out none of the 40 "
                                        r"training images: pick a larger fraction, or 0"):
        tiny_cifar(40, 10).held_out(0.001)


def test_held_out_images_are_never_trained_on_and_the_test_set_is_evaluated_once(
        tmp_path, spied):
    cifar = numbered_cifar()
    results = train_tiny(tmp_path / "held", cifar=cifar, validation_split=0.1)
    _, validation = cifar.held_out(0.1)
    held = set(image_numbers(validation.images))
    assert len(held) == len(validation) == 21  # 10% of each class, rounded.
    # 179 images to train on: 11 batches of 16 an epoch, 2 epochs.
    assert len(spied["trained"]) == 2 * 11 * 16
    assert not held & set(spied["trained"])
    evaluated = [len(split) for split in spied["evaluated"]]
    assert evaluated == [21, 21, 40]  # Validation after each epoch, then the test set once.
    assert spied["evaluated"][-1] is cifar.test
    assert results["test_count"] == 40 and results["val_data"] == "21 held-out training images"
    assert results["val_accuracy"] == results["history"]["val_accuracy"][-1]


def test_the_split_is_the_same_across_seeds_and_after_a_resume(tmp_path, spied,
                                                               crash_on_save):
    cifar = numbered_cifar()
    train_tiny(tmp_path / "seed0", cifar=cifar, validation_split=0.1, seed=0)
    train_tiny(tmp_path / "seed1", cifar=cifar, validation_split=0.1, seed=1)
    with crash_on_save(2, OSError("simulated crash")), pytest.raises(UserError):
        train_tiny(tmp_path / "resumed", cifar=cifar, validation_split=0.1,
                   checkpoint_every_n_steps=5)
    train_tiny(tmp_path / "resumed", cifar=cifar, validation_split=0.1,
               checkpoint_every_n_steps=5)
    validations = {tuple(image_numbers(split.images.astype(np.float32) / 255))
                   for split in spied["evaluated"] if split is not cifar.test}
    assert len(validations) == 1
    with pytest.raises(UserError, match=r"--validation_split \(was 0.1, now 0.2\)"):
        train_tiny(tmp_path / "resumed", cifar=cifar, validation_split=0.2, epochs=3)


def test_without_a_split_every_output_says_it_validates_on_the_test_set(tmp_path, capsys):
    results = train_tiny(tmp_path / "tutorial")
    lines = capsys.readouterr().out.splitlines()
    assert "Validating after each epoch on the test set, as the Keras tutorial does" in (
        "\n".join(lines))
    assert lines[-4].startswith("Validation accuracy: ") and lines[-4].endswith(
        "on the test set")
    assert lines[-3].startswith("Test accuracy: ")
    history = run_folder.read_history(str(tmp_path / "tutorial"))
    assert history["val_data"] == results["val_data"] == "the test set"
    saved = run_folder.read_results(str(tmp_path / "tutorial"))
    assert saved["test_accuracy"] == results["test_accuracy"]
    assert saved["test_count"] == 40
