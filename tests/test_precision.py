"""--mixed_precision and --jit_compile train on the CPU too."""

import numpy as np
import pytest
import tensorflow as tf

import data
from cifar10_research import loop, run_folder
from cifar10_research.config import Config
from cifar10_research.errors import UserError
from cifar10_research.learner import Learner, crossentropy
from tests import events
from tests.conftest import one_device, tiny_cifar, train_tiny, two_replicas


def train(tmp_path, strategy, **options):
    return train_tiny(tmp_path / "run", strategy, log_every_n_steps=100, **options)


@pytest.mark.parametrize("precision, compute_dtype, optimizer", [
    ("float16", "float16", "LossScaleOptimizer"),
    ("bfloat16", "bfloat16", "Adam"),
])
def test_mixed_precision_computes_in_half_and_takes_loss_and_softmax_in_float32(
        precision, compute_dtype, optimizer):
    learner = Learner(one_device(), Config(mixed_precision=precision), steps_per_epoch=8)
    assert learner.model.layers[0].compute_dtype == compute_dtype
    assert learner.model.layers[0].variable_dtype == "float32"
    images = tiny_cifar().test.images[:2]
    logits = learner.model(learner.preprocess(images))
    assert logits.dtype == compute_dtype
    assert crossentropy(tf.one_hot([0, 1], 10), logits).dtype == tf.float32
    assert learner.classifier(images).dtype == tf.float32
    assert type(learner.optimizer).__name__ == optimizer


STRATEGIES = {"one_device": one_device, "mirrored": two_replicas}


@pytest.fixture(scope="module")
def float32_losses(tmp_path_factory):
    """Each strategy's training losses in full precision."""
    return {name: train(tmp_path_factory.mktemp(name), strategy())["history"]["loss"]
            for name, strategy in STRATEGIES.items()}


# Each policy once, each strategy once: float16's loss scaling on 2 replicas.
@pytest.mark.parametrize("precision, strategy", [("float16", "mirrored"),
                                                 ("bfloat16", "one_device")])
def test_mixed_precision_trains_like_full_precision(tmp_path, float32_losses, strategy,
                                                    precision):
    history = train(tmp_path, STRATEGIES[strategy](), mixed_precision=precision)["history"]
    # Measured: within 5% of float32's losses after each epoch (bfloat16 keeps 8 bits).
    np.testing.assert_allclose(history["loss"], float32_losses[strategy], rtol=0.06)


@pytest.mark.parametrize("jit_compile", [True, False])
def test_jit_compile_has_xla_compile_the_training_step(jit_compile):
    learner = Learner(one_device(), Config(jit_compile=jit_compile, batch_size=16), 8)
    batches = learner.distribute_dataset(data.train_dataset(tiny_cifar().train, 16, 0, 0))
    graph = learner.train_steps.get_concrete_function(iter(batches), tf.constant(1)).graph
    must_compile = [function.signature.name for function in graph.as_graph_def().library.function
                    if function.attr["_XlaMustCompile"].b]
    assert len(must_compile) == (1 if jit_compile else 0)


def test_jit_compile_trains_like_the_plain_step(tmp_path):
    compiled = train(tmp_path / "xla", one_device(), jit_compile=True)["history"]
    plain = train(tmp_path / "plain", one_device())["history"]
    np.testing.assert_allclose(compiled["loss"], plain["loss"], rtol=1e-3)
    np.testing.assert_allclose(compiled["val_accuracy"], plain["val_accuracy"], atol=0.05)


def test_jit_compile_over_logical_cpus_is_refused(tmp_path):
    with pytest.raises(UserError, match="--jit_compile cannot mirror over logical CPU devices"):
        train(tmp_path, two_replicas(), jit_compile=True)


def test_skipped_float16_steps_leave_the_schedule_on_the_loops_step(tmp_path):
    """Loss scaling skips the updates whose gradients overflow; the learning rate
    must still be the schedule's value at the loop's step, and end at 0."""
    config = Config(epochs=2, batch_size=16, learning_rate=3e-3, log_every_n_steps=2,
                    lr_schedule="cosine", mixed_precision="float16", run_name="overflow")
    run_folder.prepare(str(tmp_path / "overflow"))
    training = loop.TrainingLoop(config, str(tmp_path / "overflow"), one_device(),
                                 tiny_cifar())
    training.learner.optimizer.dynamic_scale.assign(2.0**24)  # Overflows float16 at first.
    training.run()
    applied = int(training.learner.optimizer.iterations.numpy())
    assert 0 < applied < training.step() == 16
    logged = events.scalars(str(tmp_path / "overflow" / run_folder.TRAIN_LOGS))["learning_rate"]
    assert [step for step, _ in logged] == list(range(2, 17, 2))
    for step, rate in logged:
        assert rate == pytest.approx(float(training.learner.schedule(step)), abs=1e-9), step
    assert logged[-1][1] == pytest.approx(0.0, abs=1e-9)
