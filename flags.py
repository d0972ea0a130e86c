"""Every command-line flag, with its help text and validator, in one place.

The defaults come from `config.Config`; `to_config()` turns the parsed flags
into a Config, so nothing below the entry point reads global flags.
"""

import dataclasses
import datetime
import re

from absl import flags

import data
import model
import schedules
from config import Config

FLAGS = flags.FLAGS
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
_DEFAULTS = Config()

flags.DEFINE_integer("epochs", _DEFAULTS.epochs, "Passes over the training set.")
flags.DEFINE_integer(
    "batch_size", _DEFAULTS.batch_size,
    "Global batch size: the images in one optimizer step, summed over all "
    "replicas. Must divide by the number of replicas.")
flags.DEFINE_float("learning_rate", _DEFAULTS.learning_rate, "Adam's learning rate.")
flags.DEFINE_integer(
    "seed", _DEFAULTS.seed,
    "Seeds the weight initialisation and the per-epoch shuffle.")
flags.DEFINE_enum(
    "model", _DEFAULTS.model, tuple(model.MODELS),
    "The network: simple_cnn is the Keras tutorial's (167,562 parameters); wide_cnn "
    "adds batch normalisation, dropout and width (357,482).")
flags.DEFINE_enum(
    "augment", _DEFAULTS.augment, data.AUGMENTATIONS,
    "Training-batch augmentation: none; flip (random horizontal flips); flip_crop "
    "(flips and random 32x32 crops after 4-pixel padding). Never applied to evaluation.")
flags.DEFINE_enum(
    "lr_schedule", _DEFAULTS.lr_schedule, schedules.SCHEDULES,
    "How the learning rate changes over the run: constant; cosine (decays to 0); "
    "step (x0.1 at 50% and 75% of the steps). Each after --warmup_epochs.")
flags.DEFINE_integer(
    "warmup_epochs", _DEFAULTS.warmup_epochs,
    "Epochs over which the learning rate rises linearly from 0.")
flags.DEFINE_float(
    "weight_decay", _DEFAULTS.weight_decay,
    "Decoupled weight decay; above 0 the optimizer is AdamW (biases and batch-norm "
    "scales are not decayed).")
flags.DEFINE_float(
    "label_smoothing", _DEFAULTS.label_smoothing,
    "Label smoothing of the training loss, in [0, 1).")
flags.DEFINE_string(
    "data_dir", _DEFAULTS.data_dir,
    "Where CIFAR-10 lives: the folder cifar-10-batches-py/ or the tarball "
    "cifar-10-python.tar.gz; downloaded there if neither is found. The default "
    "is Keras' cache, so a Keras user's copy is reused.")
flags.DEFINE_string(
    "model_dir", _DEFAULTS.model_dir,
    "Root folder of the run folders; point TensorBoard at it to compare runs.")
flags.DEFINE_string(
    "run_name", _DEFAULTS.run_name,
    "Name of this run's folder under --model_dir (default: the start time, "
    "e.g. 2026-11-27_14-03-59).")
flags.DEFINE_integer(
    "log_every_n_steps", _DEFAULTS.log_every_n_steps,
    "Write training loss and accuracy to TensorBoard every this many steps.")
flags.DEFINE_enum(
    "strategy", _DEFAULTS.strategy, STRATEGIES,
    "auto: mirrored over all visible GPUs when there are 2 or more, else one "
    "device; one_device; mirrored: all visible GPUs (or the logical CPUs of "
    "--num_cpu_devices); multi_worker: MultiWorkerMirroredStrategy set up "
    "from the TF_CONFIG environment variable.")
flags.DEFINE_integer(
    "num_cpu_devices", _DEFAULTS.num_cpu_devices,
    "Split the CPU into this many logical devices, so mirrored training can "
    "be tried without GPUs.")
flags.DEFINE_string(
    "gpus", _DEFAULTS.gpus,
    "Comma-separated indices of the GPUs to use, e.g. 0,2 (default: all).")
flags.DEFINE_integer(
    "steps_per_loop", _DEFAULTS.steps_per_loop,
    "Training steps run inside one tf.function call; more cuts the Python "
    "overhead per step, with the same results.")
flags.DEFINE_bool(
    "histograms", _DEFAULTS.histograms,
    "Write weight and gradient histograms to TensorBoard after each epoch.")
flags.DEFINE_string(
    "profile_steps", _DEFAULTS.profile_steps,
    "START,END: profile training steps START to END (counted from 1) into the "
    "run's TensorBoard profile tab, e.g. 50,60.")
flags.DEFINE_integer(
    "checkpoint_every_n_steps", _DEFAULTS.checkpoint_every_n_steps,
    "Save a checkpoint every this many steps, besides each epoch's end (0: only "
    "at epoch ends). Rerunning a stopped run resumes from its latest checkpoint.")
flags.DEFINE_integer(
    "keep_checkpoints", _DEFAULTS.keep_checkpoints, "How many recent checkpoints to keep.")
flags.DEFINE_bool(
    "deterministic", _DEFAULTS.deterministic,
    "Make TensorFlow's ops deterministic, so two runs with the same --seed give "
    "bit-identical weights (slower on GPU).")
flags.DEFINE_bool(
    "stop_on_nonfinite", _DEFAULTS.stop_on_nonfinite,
    "Stop with an error when the training loss becomes NaN or infinite, keeping "
    "the last good checkpoint.")
flags.DEFINE_bool(
    "force", _DEFAULTS.force,
    "Resume even though flags that change the model or schedule differ from the "
    "run's saved flags.txt.")
flags.DEFINE_enum(
    "mode", _DEFAULTS.mode, ("train", "eval"),
    "train: train (or resume) the run; eval: evaluate the run's latest "
    "checkpoint (or --checkpoint) on the test set.")
flags.DEFINE_string(
    "checkpoint", _DEFAULTS.checkpoint,
    "With --mode=eval: the checkpoint to evaluate, e.g. runs/NAME/checkpoints/ckpt-781 "
    "(default: the run's latest).")
flags.DEFINE_enum(
    "mixed_precision", _DEFAULTS.mixed_precision, ("none", "float16", "bfloat16"),
    "Compute in float16 (with loss scaling) or bfloat16, keeping float32 weights "
    "and a float32 last layer: for GPUs (and CPUs) with fast half-precision math.")
flags.DEFINE_bool(
    "jit_compile", _DEFAULTS.jit_compile,
    "Compile the training step with XLA. Measured slower on this project's CPU.")

_AT_LEAST_ONE = ("epochs", "batch_size", "log_every_n_steps", "num_cpu_devices",
                 "steps_per_loop", "keep_checkpoints")
for _name in _AT_LEAST_ONE:
    flags.register_validator(
        _name, lambda value: value >= 1, message=f"--{_name} must be at least 1")
flags.register_validator(
    "checkpoint_every_n_steps", lambda value: value >= 0,
    message="--checkpoint_every_n_steps must be 0 (epoch ends only) or more")
flags.register_validator(
    "warmup_epochs", lambda value: value >= 0, message="--warmup_epochs must be 0 or more")
flags.register_validator(
    "weight_decay", lambda value: value >= 0, message="--weight_decay must be 0 or more")
flags.register_validator(
    "label_smoothing", lambda value: 0 <= value < 1,
    message="--label_smoothing must be in [0, 1)")
flags.register_multi_flags_validator(
    ["warmup_epochs", "epochs"], lambda values: values["warmup_epochs"] <= values["epochs"],
    message="--warmup_epochs cannot exceed --epochs")
flags.register_validator(
    "learning_rate", lambda value: value > 0, message="--learning_rate must be > 0")
flags.register_validator(
    "run_name", lambda value: re.fullmatch(r"(?!\.+$)[\w.-]*", value) is not None,
    message="--run_name may hold only letters, digits, '_', '-' and '.', and not only dots")
flags.register_validator(
    "gpus", lambda value: re.fullmatch(r"(\d+(,\d+)*)?", value) is not None,
    message="--gpus must be comma-separated GPU indices, e.g. 0,1")


def _valid_profile_steps(value: str) -> bool:
    match = re.fullmatch(r"(\d+),(\d+)", value)
    return not value or bool(match and 1 <= int(match[1]) <= int(match[2]))


flags.register_validator(
    "profile_steps", _valid_profile_steps,
    message="--profile_steps must be START,END with 1 <= START <= END, e.g. 50,60")


@flags.multi_flags_validator(
    ["mode", "run_name"],
    message="--mode=eval needs --run_name: the run folder to evaluate")
def _eval_names_a_run(values) -> bool:
    return values["mode"] != "eval" or bool(values["run_name"])


@flags.multi_flags_validator(
    ["mode", "checkpoint"], message="--checkpoint is only for --mode=eval")
def _checkpoint_only_for_eval(values) -> bool:
    return values["mode"] == "eval" or not values["checkpoint"]


def to_config(flag_values=FLAGS) -> Config:
    """The parsed flags as a Config, with a timestamp for an empty run name."""
    values = {field.name: flag_values[field.name].value
              for field in dataclasses.fields(Config)}
    if not values["run_name"]:
        values["run_name"] = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    return Config(**values)
