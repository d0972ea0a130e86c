"""Training speed of a network with Keras' BatchNormalization, with BatchNorm,
and without batch norm, for scripts/benchmark.py --batch_norm.

Each variant is the same network, trained by the same compiled step (Adam on
the float32 crossentropy of its logits) on the same batches. Rounds alternate
the variants, so that the machine's changing speed hits all alike, and each
round is timed twice: by the wall clock, and by the process's CPU time (user
plus system, all its threads), which other processes on the machine disturb
less. Only ratios within one run compare.
"""

import os
import statistics

import keras
import tensorflow as tf

import data
import model
from cifar10_research import benchmarking
from cifar10_research.batch_norm import BatchNorm
from cifar10_research.dataset import IMAGE_SHAPE, Split
from cifar10_research.learner import crossentropy, repeat

# The batch-norm layer of each variant, by the name the results give it.
VARIANTS = {"keras": keras.layers.BatchNormalization, "fused": BatchNorm, "none": None}
RATIOS = {"fused_vs_keras": ("fused", "keras"), "fused_vs_none": ("fused", "none")}
WARMUP_STEPS = 5
NORMS = (BatchNorm, keras.layers.BatchNormalization)
SETTINGS = ("momentum", "epsilon", "center", "scale")  # What each variant keeps of the original.


def with_batch_norm(name: str, layer) -> keras.Model:
    """model.MODELS[name] with a new `layer` wherever it has batch norm, with
    the same momentum, epsilon, centring and scaling (an identity if `layer` is
    None); a network without any (the tutorial's, say) first gets one after
    each convolution."""
    network = model.MODELS[name]()
    if not any(isinstance(original, NORMS) for original in network.layers):
        network = _normalised_after_convolutions(network)

    def replaced(original):
        if isinstance(original, NORMS):
            if layer is None:
                return keras.layers.Identity()
            config = original.get_config()
            return layer(**{setting: config[setting] for setting in SETTINGS})
        return type(original).from_config(original.get_config())
    return keras.models.clone_model(network, clone_function=replaced)


def _normalised_after_convolutions(network: keras.Sequential) -> keras.Sequential:
    layers = []
    for original in network.layers:
        layers.append(original)
        if isinstance(original, keras.layers.Conv2D):
            layers.append(BatchNorm())
    return keras.Sequential([keras.Input(IMAGE_SHAPE), *layers])


class TimedTraining:
    """One variant's network, optimizer and compiled steps, on `split` repeated."""

    def __init__(self, network: keras.Model, split: Split, batch_size: int):
        self.network = network
        self.preprocess = data.preprocessing()
        self.optimizer = keras.optimizers.Adam(1e-3)
        self.optimizer.build(network.trainable_variables)
        self.batch_size = batch_size
        self.iterator = iter(data.train_dataset(split, batch_size, seed=0, epoch=1).repeat())
        self._train(self.iterator, tf.constant(WARMUP_STEPS))  # Traces the step.

    @tf.function(autograph=False)
    def _train(self, iterator, num_steps: tf.Tensor) -> None:
        def step():
            images, labels = next(iterator)
            with tf.GradientTape() as tape:
                logits = self.network(self.preprocess(images), training=True)
                loss = tf.reduce_mean(crossentropy(labels, logits))
            variables = self.network.trainable_variables
            self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        repeat(num_steps, step)

    def images_per_second(self, steps: int) -> tuple[float, float]:
        """(by wall time, by CPU time) of `steps` training steps."""
        return benchmarking.rates(steps * self.batch_size,
                                  lambda: self._train(self.iterator, tf.constant(steps)))


def measure(data_dir: str, network: str, rounds: int, steps: int, batch_size: int) -> dict:
    """The figures of `rounds` alternating rounds of `steps` steps of each
    variant of `network`, as one dict."""
    load_before = os.getloadavg()[0]
    cifar = benchmarking.load(data_dir)
    rows = min(len(cifar.train), (steps + WARMUP_STEPS) * batch_size)
    split = Split(cifar.train.images[:rows], cifar.train.labels[:rows])
    keras.utils.set_random_seed(0)
    trainings = {name: TimedTraining(with_batch_norm(network, layer), split, batch_size)
                 for name, layer in VARIANTS.items()}
    wall, cpu = {name: [] for name in VARIANTS}, {name: [] for name in VARIANTS}
    names = list(VARIANTS)
    for index in range(rounds):
        for name in names[index % len(names):] + names[:index % len(names)]:  # Each first in turn.
            by_wall, by_cpu = trainings[name].images_per_second(steps)
            wall[name].append(by_wall)
            cpu[name].append(by_cpu)
    ratios = {ratio: {clock: [ours / theirs for ours, theirs in zip(rates[a], rates[b])]
                      for clock, rates in (("wall", wall), ("cpu", cpu))}
              for ratio, (a, b) in RATIOS.items()}
    return {
        "data": data_dir or "random images", "model": network, "batch_size": batch_size,
        "steps_per_round": steps, "wall_images_per_s": wall, "cpu_images_per_s": cpu,
        "ratios": ratios,
        "median_ratios": {ratio: {clock: statistics.median(values)
                                  for clock, values in clocks.items()}
                          for ratio, clocks in ratios.items()},
        "load_average_before": load_before, "load_average_after": os.getloadavg()[0],
    }
