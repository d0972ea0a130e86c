"""The settings of one training run, as plain values the library takes."""

import dataclasses
import os

DEFAULT_DATA_DIR = os.path.join("~", ".keras", "datasets")

# Settings of one command, not of the run: not written to its flags.txt.
ONE_COMMAND_ONLY = ("force", "mode", "checkpoint")
# Settings that change what a run computes: a resumed run must keep them.
RESUME_SENSITIVE = ("epochs", "batch_size", "learning_rate", "seed", "model", "augment",
                    "lr_schedule", "warmup_epochs", "weight_decay", "label_smoothing",
                    "mixed_precision")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything `trainer.train_and_evaluate` needs to know about a run.

    `flags.py` defines one command-line flag per field, with these defaults,
    so the library never reads global flags and tests build a Config directly.
    """

    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    model: str = "simple_cnn"
    augment: str = "none"
    lr_schedule: str = "constant"
    warmup_epochs: int = 0
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    data_dir: str = DEFAULT_DATA_DIR
    model_dir: str = "runs"
    run_name: str = ""
    log_every_n_steps: int = 100
    strategy: str = "auto"
    num_cpu_devices: int = 1
    gpus: str = ""
    steps_per_loop: int = 1
    histograms: bool = False
    profile_steps: str = ""
    checkpoint_every_n_steps: int = 500
    keep_checkpoints: int = 3
    deterministic: bool = False
    stop_on_nonfinite: bool = True
    force: bool = False
    mode: str = "train"
    checkpoint: str = ""
    mixed_precision: str = "none"
    jit_compile: bool = False

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
        return "".join(f"--{name}={value}\n"
                       for name, value in dataclasses.asdict(self).items()
                       if name not in ONE_COMMAND_ONLY)

    def changes_from(self, flagfile_text: str) -> list[str]:
        """The RESUME_SENSITIVE settings that differ from a saved flagfile's."""
        saved = dict(line[2:].split("=", 1) for line in flagfile_text.splitlines()
                     if line.startswith("--") and "=" in line)
        return [f"--{name} (was {saved.get(name)}, now {getattr(self, name)})"
                for name in RESUME_SENSITIVE if saved.get(name) != str(getattr(self, name))]
