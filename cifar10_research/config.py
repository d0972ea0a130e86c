"""The settings of a run, each declared once: default, help, allowed values, kind.

`Config` is what the library takes; `flags.py` derives one absl flag per field
from its declaration, the run's flags.txt is written from it, and a resume
compares it with the saved one by each field's kind. A Config checks its own
values, so a test or notebook that builds one gets the errors a command line
gets. Allowed names come from the registries themselves (model.MODELS,
data.AUGMENTATIONS, ...): a new entry there is a new allowed value here.
"""

import dataclasses
import math
import os
import re

import data
import model
from cifar10_research import cluster, distribute, optimizers, precision, schedules
from cifar10_research.dataset import DATASETS
from cifar10_research.errors import UserError
from cifar10_research.settings import COMMAND, COMPUTES, Rule, at_least, matches, setting

MAX_CPU_DEVICES = 16  # --num_cpu_devices: the most that trained (see its help).


def _valid_profile_steps(value: str) -> bool:
    match = re.fullmatch(r"(\d+),(\d+)", value)
    return not value or bool(match and 1 <= int(match[1]) <= int(match[2]))


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything `train_and_evaluate` needs to know about a run."""

    epochs: int = setting(10, "Passes over the training set.", COMPUTES, rule=at_least(1))
    batch_size: int = setting(
        64, "Global batch size: the images in one optimizer step, summed over all replicas. "
        "Must divide by the number of replicas.", COMPUTES, rule=at_least(1))
    learning_rate: float = setting(
        1e-3, "The optimizer's (peak) learning rate.", COMPUTES,
        rule=Rule(lambda value: 0 < value < math.inf, "must be > 0 and finite"))
    seed: int = setting(0, "Seeds the weight initialisation and the per-epoch shuffle.",
                        COMPUTES)
    model: str = setting(
        "simple_cnn", "The network, from model.py: simple_cnn is the Keras tutorial's "
        "(167,562 parameters).", COMPUTES, choices=model.MODELS, network=True)
    augment: str = setting(
        "none", "Training-batch augmentation, from data.py: flip (random horizontal flips); "
        "flip_crop (flips and random 32x32 crops after 4-pixel zero padding); "
        "alternating_flip (each image mirrored in every other epoch, a random half of the "
        "images in odd epochs: airbench's); alternating_flip_translate (those, and random "
        "shifts of up to 2 pixels, the image extended by reflection: airbench94's). Never "
        "applied to evaluation.", COMPUTES, choices=data.AUGMENTATIONS)
    mix: str = setting(
        "none", "Training-batch mixing, from data.py, after --augment: each image is mixed "
        "with its partner (the image at the mirrored position of the batch, whose order is "
        "random) in a ratio lam it draws from Beta(--mix_alpha, --mix_alpha): mixup (lam * "
        "image + (1 - lam) * partner); cutmix (the partner's pixels in a box of about 1 - "
        "lam of the image's area). The labels are mixed as the pixels (for cutmix, by the box's "
        "area after clipping to the image); the training loss takes these soft labels, and "
        "the training accuracy counts an image right when its most probable class is its "
        "dominant label. Never applied to evaluation.", COMPUTES, choices=data.MIXES)
    mix_alpha: float = setting(
        data.MIX_ALPHA, "With --mix: alpha of the Beta(alpha, alpha) each image's mixing "
        "ratio is drawn from. 1 draws it uniformly; below 1 most images are mixed little, "
        "above 1 near half and half. timm uses 0.8 for mixup and 1.0 for cutmix.", COMPUTES,
        rule=Rule(lambda value: 0 < value < math.inf, "must be > 0 and finite"))
    lr_schedule: str = setting(
        "constant", "How the learning rate changes over the run, after --warmup_epochs: "
        "constant; cosine (decays to 0); linear (decays to 0; with a warmup, the one-cycle "
        "shape); step (x0.1 at 50% and 75% of the steps); triangular (airbench94's: the "
        "warmup starts at 0.2 of the rate, the decay ends at 0.07 of it; with --warmup_epochs "
        "23% of --epochs, its triangle, the peak within a step of airbench's).",
        COMPUTES, choices=schedules.SCHEDULES)
    warmup_epochs: float = setting(0.0, "Epochs over which the learning rate rises linearly "
                                   "from 0 (triangular: from 0.2 of it), fractions too, e.g. "
                                   "0.5.", COMPUTES, rule=at_least(0))
    optimizer: str = setting(
        "adam", "adam (with --weight_decay above 0, decayed as AdamW); adamw; sgd (with "
        "--momentum and --nesterov).", COMPUTES, choices=optimizers.OPTIMIZERS)
    weight_decay: float = setting(
        0.0, "For adam and adamw, decoupled weight decay (each step w -= learning rate x "
        "weight_decay x w); for sgd, the L2 penalty of the papers (weight_decay / 2 x |w|^2 "
        "added to the loss, through the momentum). Biases and batch-norm scales and offsets "
        "are never decayed.", COMPUTES, rule=at_least(0))
    momentum: float = setting(0.9, "With --optimizer=sgd: its momentum.", COMPUTES,
                              rule=Rule(lambda value: 0 <= value < 1, "must be in [0, 1)"))
    nesterov: bool = setting(False, "With --optimizer=sgd: Nesterov's momentum.", COMPUTES)
    norm_bias_lr_scale: float = setting(
        1.0, "With --optimizer=sgd: batch-norm offsets (beta) learn this many times faster "
        "than the other weights (their gradients are scaled, which under SGD is the same as "
        "their learning rate); airbench94 uses 64.", COMPUTES,
        rule=Rule(lambda value: 0 < value < math.inf, "must be > 0 and finite"))
    whitening_bias_epochs: int = setting(
        0, "With a network that whitens its input (airbench's): train the whitening layer's "
        "bias in the first this many epochs only, then keep it (airbench94: 3; 0: train it "
        "in every epoch).", COMPUTES, rule=at_least(0))
    lookahead_every: int = setting(
        0, "airbench94's Lookahead (0: off): after every this many steps (airbench: 5), "
        "from --lookahead_after_epochs on, slow weights move towards the weights by a share "
        "that shrinks over the run (0.95^k x (step / steps)^3 is kept) and training goes on "
        "from them; at each epoch's end too.", COMPUTES, rule=at_least(0))
    lookahead_after_epochs: int = setting(
        0, "With --lookahead_every: the epochs trained before it begins (airbench94: 3).",
        COMPUTES, rule=at_least(0))
    ema_decay: float = setting(
        0.0, "Keep an exponential moving average of the weights with this decay (e.g. 0.999; "
        "0: off), as TensorFlow's ExponentialMovingAverage does with its step count "
        "(min(decay, (1 + step) / (10 + step))). The averaged weights are the ones evaluated, "
        "exported and used by --mode=eval; the raw ones train. TensorBoard shows the "
        "validation of both.", COMPUTES,
        rule=Rule(lambda value: 0 <= value < 1, "must be in [0, 1)"))
    label_smoothing: float = setting(
        0.0, "Label smoothing of the training loss, in [0, 1).", COMPUTES,
        rule=Rule(lambda value: 0 <= value < 1, "must be in [0, 1)"))
    validation_split: float = setting(
        0.0, "Fraction of each class of the training images held out to validate on after "
        "each epoch (Keras' name); the test set is then evaluated once, after the last "
        "epoch. 0.1 holds out 5,000 images, the usual protocol. 0 (the Keras tutorial's "
        "way) validates on the test set.", COMPUTES,
        rule=Rule(lambda value: 0 <= value < 1, "must be in [0, 1)"))
    tta: str = setting(
        "none", "Test-time augmentation, from data.py: each image evaluated by the weighted "
        "mean of the probabilities predicted for several views of it. flip: it and its mirror "
        "image (evaluation takes twice as long); flip_translate: those (half the weight) and "
        "the flip views of it shifted 1 pixel down-right and up-left (airbench94's 6 views).",
        COMPUTES, choices=data.TEST_VIEWS)
    mixed_precision: str = setting(
        "none", "Compute in float16 (with loss scaling) or bfloat16, keeping float32 weights "
        "and a float32 last layer: for GPUs (and CPUs) with fast half-precision math.",
        COMPUTES, choices=precision.POLICIES, network=True)
    dataset: str = setting(
        "cifar10", "The images and classes, from cifar10_research/dataset.py: cifar10 (10 "
        "classes) or cifar100 (its 100 fine classes). It sets the network's number of outputs.",
        COMPUTES, choices=DATASETS, network=True)
    data_dir: str = setting(
        os.path.join("~", ".keras", "datasets"),
        "Where the dataset lives: its folder (cifar-10-batches-py/, cifar-100-python/) or its "
        "tarball (cifar-10-python.tar.gz, cifar-100-python.tar.gz); downloaded there if "
        "neither is found. The default is Keras' cache, so a Keras user's copy of CIFAR-10 "
        "is reused.")
    model_dir: str = setting(
        "runs", "Root folder of the run folders; point TensorBoard at it to compare runs.")
    run_name: str = setting(
        "", "Name of this run's folder under --model_dir (default: the start time, e.g. "
        "2026-11-27_14-03-59).",
        rule=matches(r"(?!\.+$)[\w.-]{0,200}", "may hold only letters, digits, '_', '-' "
                     "and '.', and not only dots, up to 200 of them"))
    log_every_n_steps: int = setting(
        100, "Write training loss and accuracy to TensorBoard every this many steps.",
        rule=at_least(1))
    strategy: str = setting(
        "auto", "auto: multi_worker when TF_CONFIG or a Slurm step names several tasks, "
        "else mirrored over all visible GPUs when there are 2 or more, else one device (it "
        "says which and why); one_device; mirrored: all visible GPUs (or the logical CPUs of "
        "--num_cpu_devices); multi_worker: MultiWorkerMirroredStrategy over the cluster of "
        "TF_CONFIG, else of the Slurm step this is a task of (srun).",
        choices=distribute.STRATEGIES)
    num_cpu_devices: int = setting(
        1, f"Split the CPU into this many logical devices (1 to {MAX_CPU_DEVICES}), so "
        "mirrored training can be tried without GPUs. Measured on 2 cores: 16 trained 14 "
        "tiny steps in 40 s; 32 made no progress after its first step in 150 s, and 64 hung, "
        "ignoring signals.",
        rule=Rule(lambda value: 1 <= value <= MAX_CPU_DEVICES,
                  f"must be 1 to {MAX_CPU_DEVICES}: TensorFlow's mirrored training over 32 "
                  f"logical CPUs hung when measured"))
    gpus: str = setting("", "Comma-separated indices of the GPUs to use, e.g. 0,2 "
                        "(default: all).",
                        rule=matches(r"(\d+(,\d+)*)?", "must be comma-separated GPU "
                                     "indices, e.g. 0,1"))
    steps_per_loop: int = setting(
        1, "Training steps run inside one tf.function call; more cuts the Python overhead "
        "per step, with the same results.", rule=at_least(1))
    worker_timeout: int = setting(
        0, "With --strategy=multi_worker: end with an error naming them when the other "
        "workers have not all started after this many seconds (0: wait, saying every 5 s "
        "whom for).", rule=at_least(0))
    port_base: int = setting(
        cluster.DEFAULT_PORT_BASE, "Under Slurm with --strategy=multi_worker: the workers "
        "on a node listen on this port and the ones after it, one each.",
        rule=Rule(lambda port: 1 <= port <= 65535, "must be a port number, 1 to 65535"))
    histograms: bool = setting(
        False, "Write weight and gradient histograms to TensorBoard after each epoch.")
    profile_steps: str = setting(
        "", "START,END: profile training steps START to END (counted from 1) into the run's "
        "TensorBoard profile tab, e.g. 50,60.",
        rule=Rule(_valid_profile_steps, "must be START,END with 1 <= START <= END, e.g. "
                  "50,60"))
    checkpoint_every_n_steps: int = setting(
        500, "Save a checkpoint every this many steps, besides each epoch's end (0: only at "
        "epoch ends). Rerunning a stopped run resumes from its latest checkpoint.",
        rule=Rule(lambda value: value >= 0, "must be 0 (epoch ends only) or more"))
    keep_checkpoints: int = setting(3, "How many recent checkpoints to keep.",
                                    rule=at_least(1))
    deterministic: bool = setting(
        False, "Make TensorFlow's ops deterministic, so two runs with the same --seed give "
        "bit-identical weights (slower on GPU).")
    stop_on_nonfinite: bool = setting(
        True, "Stop with an error when the training loss becomes NaN or infinite, keeping "
        "the last good checkpoint.")
    jit_compile: bool = setting(
        False, "Compile the training step with XLA. Measured slower on this project's CPU.")
    force: bool = setting(
        False, "Resume even though flags that change what the run computes differ from "
        "the run's saved flags.txt.", COMMAND)
    mode: str = setting(
        "train", "train: train (or resume) the run; eval: evaluate the run's latest "
        "checkpoint (or --checkpoint) on the test set.", COMMAND, choices=("train", "eval"))
    checkpoint: str = setting(
        "", "With --mode=eval: the checkpoint to evaluate, e.g. "
        "runs/NAME/checkpoints/ckpt-781 (default: the run's latest).", COMMAND)

    def __post_init__(self):
        """Refuses, in one line, the first value its declaration does not allow."""
        problems = self.problems()
        if problems:
            raise UserError(problems[0])

    def problems(self) -> list[str]:
        """The error message of each value its declaration refuses."""
        found = []
        for field in dataclasses.fields(self):
            value, choices, rule = (getattr(self, field.name), field.metadata["choices"],
                                    field.metadata["rule"])
            if choices and value not in choices:
                found.append(f"unknown --{field.name}={value}: use one of {', '.join(choices)}")
            elif rule and not rule.holds(value):
                found.append(rule.message(field.name))
        values = dataclasses.asdict(self)
        return found + [message for _, holds, message in CROSS_CHECKS if not holds(values)]

    def profile_range(self) -> tuple[int, int] | None:
        """--profile_steps=START,END as (START, END), or None when not profiling."""
        if not self.profile_steps:
            return None
        start, end = (int(step) for step in self.profile_steps.split(","))
        return start, end

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)

    def to_flagfile(self) -> str:
        """The settings as lines that `python train.py --flagfile=...` replays.

        Leaves out what concerns one command, not the run: replaying a flagfile
        must not force a resume or evaluate instead of train.
        """
        return "".join(f"--{field.name}={getattr(self, field.name)}\n"
                       for field in dataclasses.fields(self)
                       if field.metadata["kind"] != COMMAND)

    def changes_from(self, saved: dict[str, str], names=None) -> list[str]:
        """The settings that change what is computed (or of `names`) that differ
        from a run's saved flags (read by `saved_flags`), as `--name (was X, now Y)`."""
        names = names or [field.name for field in dataclasses.fields(self)
                          if field.metadata["kind"] == COMPUTES]
        return [f"--{name} (was {saved[name]}, now {getattr(self, name)})"
                for name in names if saved[name] != str(getattr(self, name))]


# Checks of several settings together: (names, holds(values), error message).
CROSS_CHECKS = (
    (("warmup_epochs", "epochs"), lambda values: values["warmup_epochs"] <= values["epochs"],
     "--warmup_epochs cannot exceed --epochs"),
    (("lookahead_every", "lookahead_after_epochs", "epochs"),
     lambda values: not values["lookahead_every"] or values["lookahead_after_epochs"] <
     values["epochs"], "--lookahead_after_epochs must be below --epochs, or Lookahead never "
     "begins"),
    (("norm_bias_lr_scale", "optimizer"),
     lambda values: values["norm_bias_lr_scale"] == 1 or values["optimizer"] == "sgd",
     "--norm_bias_lr_scale needs --optimizer=sgd: Adam's steps do not grow with the gradients"),
    (("mode", "run_name"), lambda values: values["mode"] != "eval" or bool(values["run_name"]),
     "--mode=eval needs --run_name: the run folder to evaluate"),
    (("mode", "checkpoint"),
     lambda values: values["mode"] == "eval" or not values["checkpoint"],
     "--checkpoint is only for --mode=eval"),
)

NETWORK_SETTINGS = tuple(field.name for field in dataclasses.fields(Config)
                         if field.metadata["network"])
