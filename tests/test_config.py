"""Config checks its own values as the command line does, and knows what a resume must keep."""

import pytest

from cifar10_research.config import Config
from cifar10_research.errors import UserError
from cifar10_research.saved_flags import parse_saved_flags


@pytest.mark.parametrize("setting, value, message", [
    ("model", "vgg16", "unknown --model=vgg16: use one of simple_cnn, wide_cnn, fast_cnn, "
     "resnet20, resnet32, resnet44, resnet56, resnet110, airbench, airbench_128, airbench_64"),
    ("augment", "rotate", "unknown --augment=rotate: use one of none, flip, flip_crop, "
     "alternating_flip, alternating_flip_translate"),
    ("tta", "True", "unknown --tta=True: use one of none, flip, flip_translate"),
    ("mix", "blend", "unknown --mix=blend: use one of none, mixup, cutmix"),
    ("mix_alpha", 0.0, "--mix_alpha must be > 0 and finite"),
    ("mix_alpha", float("inf"), "--mix_alpha must be > 0 and finite"),
    ("lr_schedule", "exp", "unknown --lr_schedule=exp: use one of constant, cosine, linear, "
                           "step, triangular"),
    ("strategy", "tpu", "unknown --strategy=tpu: use one of auto, one_device, mirrored, "
                        "multi_worker"),
    ("mixed_precision", "int8", "unknown --mixed_precision=int8: use one of none, float16, "
                                "bfloat16"),
    ("epochs", 0, "--epochs must be at least 1"),
    ("label_smoothing", 1.0, r"--label_smoothing must be in \[0, 1\)"),
    ("profile_steps", "9,3",
     "--profile_steps must be START,END with 1 <= START <= END, e.g. 50,60"),
    ("warmup_epochs", 11, "--warmup_epochs cannot exceed --epochs"),
    ("mode", "eval", "--mode=eval needs --run_name: the run folder to evaluate"),
    ("num_cpu_devices", 17, "--num_cpu_devices must be 1 to 16: TensorFlow's mirrored "
                            "training over 32 logical CPUs hung when measured"),
    ("num_cpu_devices", 0, "--num_cpu_devices must be 1 to 16: TensorFlow's mirrored "
                           "training over 32 logical CPUs hung when measured"),
])
def test_a_value_its_declaration_refuses_is_one_user_error(setting, value, message):
    with pytest.raises(UserError, match=f"^{message}$"):
        Config(**{setting: value})


def test_a_lookahead_that_would_never_begin_is_refused():
    with pytest.raises(UserError, match="^--lookahead_after_epochs must be below --epochs"):
        Config(epochs=3, lookahead_every=5, lookahead_after_epochs=3)
    Config(epochs=3, lookahead_after_epochs=3)  # Lookahead off: nothing to refuse.


def test_sixteen_cpu_devices_are_allowed():
    assert Config(num_cpu_devices=16).num_cpu_devices == 16


def test_the_flagfile_leaves_out_settings_of_one_command():
    text = Config(force=True, mode="eval", run_name="x",
                  checkpoint="runs/x/checkpoints/ckpt-7").to_flagfile()
    names = {line.split("=")[0] for line in text.splitlines()}
    assert not names & {"--force", "--mode", "--checkpoint"}
    assert "--epochs" in names and "--model" in names and "--data_dir" in names


def test_only_settings_that_change_what_is_computed_count_as_changes():
    saved = parse_saved_flags(Config(epochs=2, model="wide_cnn", data_dir="/a",
                                     log_every_n_steps=5).to_flagfile(), "flags.txt")
    now = Config(epochs=3, model="wide_cnn", data_dir="/b", log_every_n_steps=7)
    assert now.changes_from(saved) == ["--epochs (was 2, now 3)"]
    assert now.changes_from(saved, ["model", "data_dir"]) == ["--data_dir (was /a, now /b)"]


@pytest.mark.parametrize("old, now", [("True", "flip"), ("False", "none")])
def test_a_run_saved_when_tta_was_on_or_off_resumes_with_its_views(old, now):
    saved = parse_saved_flags(f"--tta={old}\n", "flags.txt")
    assert saved["tta"] == now
    assert Config(tta=now).changes_from(saved) == []
