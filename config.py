"""The settings of one training run, as plain values the library takes."""

import dataclasses
import os

DEFAULT_DATA_DIR = os.path.join("~", ".keras", "datasets")


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

    def profile_range(self) -> tuple[int, int] | None:
        """--profile_steps=START,END as (START, END), or None when not profiling."""
        if not self.profile_steps:
            return None
        start, end = (int(step) for step in self.profile_steps.split(","))
        return start, end

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)

    def to_flagfile(self) -> str:
        """The settings as lines that `python train.py --flagfile=...` replays."""
        return "".join(f"--{name}={value}\n"
                       for name, value in dataclasses.asdict(self).items())
