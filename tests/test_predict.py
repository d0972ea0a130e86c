"""scripts/predict.py, run as a subprocess: each run costs seconds of TensorFlow
import, so one run classifies all the images; and the images it refuses to decode,
in-process."""

import json
import struct
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf

import model
from cifar10_research import predictor, run_folder
from cifar10_research.dataset import CLASS_NAMES
from cifar10_research.errors import UserError
from tests.conftest import run_python

# name: (height, width, channels); only big.jpg needs resizing.
IMAGES = {"rgb.png": (32, 32, 3), "big.jpg": (48, 64, 3), "gray.png": (32, 32, 1)}


def run_predict(*args):
    return run_python("scripts/predict.py", *args)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A folder with an untrained classifier, saved both ways as a run saves it,
    and IMAGES; and the classifier's own probabilities for each image. airbench_64:
    predict.py must know the project's own layers (BatchNorm, PatchWhitening)
    to load it."""
    folder = tmp_path_factory.mktemp("predict")
    keras.utils.set_random_seed(0)
    network = model.classifier(model.MODELS["airbench_64"]())
    network.save(str(folder / "model.keras"))
    network.export(str(folder / "saved_model"), verbose=False)
    rng = np.random.default_rng(0)
    expected = {}
    for name, shape in IMAGES.items():
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        encode = tf.io.encode_png if name.endswith(".png") else tf.io.encode_jpeg
        tf.io.write_file(str(folder / name), encode(pixels))
        expected[name] = network(expected_input(folder / name)[None], training=False)[0].numpy()
    return folder, expected


def expected_input(path):
    """The pixels the classifier should get: decoded again, as a JPEG is lossy;
    resized and rounded to whole values when not 32x32."""
    pixels = tf.io.decode_image(tf.io.read_file(str(path)), channels=3, expand_animations=False)
    if pixels.shape[:2] != (32, 32):
        resized = tf.image.resize(pixels, (32, 32), antialias=True)
        pixels = tf.saturate_cast(tf.round(resized), tf.uint8)
    return pixels


def parse(line):
    """`rgb.png: cat 0.8123, dog 0.1011, frog 0.0302` as ("rgb.png", {"cat": 0.8123, ...})."""
    path, classes = line.split(": ")
    pairs = [item.split(" ") for item in classes.split(", ")]
    return path, [(name, float(probability)) for name, probability in pairs]


@pytest.mark.slow
@pytest.mark.parametrize("model_name", ["model.keras", "saved_model"])
def test_predict_prints_the_models_top_3_classes(exported, model_name):
    folder, expected = exported
    paths = [str(folder / name) for name in IMAGES]
    result = run_predict(f"--model={folder / model_name}", *paths)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"note: {folder / 'big.jpg'} is 64x48, resized to 32x32"]
    lines = result.stdout.splitlines()
    assert [parse(line)[0] for line in lines] == paths
    for name, line in zip(IMAGES, lines):
        top = parse(line)[1]
        probabilities = [probability for _, probability in top]
        assert len(top) == 3 and probabilities == sorted(probabilities, reverse=True), line
        for class_name, probability in top:
            assert probability == pytest.approx(
                expected[name][CLASS_NAMES.index(class_name)], abs=1e-4), line
        rest = [p for index, p in enumerate(expected[name])
                if CLASS_NAMES[index] not in dict(top)]
        assert min(probabilities) >= max(rest) - 1e-4, line


@pytest.mark.slow
def test_predict_names_a_missing_image(exported):
    folder, _ = exported
    missing = folder / "missing.png"
    assert error_lines(f"--model={folder / 'model.keras'}", str(folder / "rgb.png"),
                       str(missing)) == [
        f"error: cannot read {missing} (No such file or directory): pass PNG or JPEG files"]


@pytest.mark.slow
def test_predict_names_a_file_that_is_not_an_image(exported):
    folder, _ = exported
    text = folder / "x.png"
    text.write_text("not an image\n")
    assert error_lines(f"--model={folder / 'model.keras'}", str(text)) == [
        f"error: cannot decode {text}: it must be a PNG or JPEG image"]


@pytest.mark.slow
@pytest.mark.parametrize("model_name,reason", [("missing.keras", "No such file or directory"),
                                               ("random.keras", "not a .keras file")])
def test_predict_names_a_model_it_cannot_load(exported, model_name, reason):
    folder, _ = exported
    (folder / "random.keras").write_bytes(np.random.default_rng(1).bytes(1000))
    path = folder / model_name
    assert error_lines(f"--model={path}", str(folder / "rgb.png")) == [
        f"error: cannot load the model {path} ({reason}): pass the model.keras file or the "
        f"saved_model folder of a finished run"]


def error_lines(*args):
    result = run_predict(*args)
    assert result.returncode == 1, result.stdout
    assert result.stdout == ""
    return result.stderr.splitlines()


def claiming(encoded: bytes, width: int, height: int) -> bytes:
    """A small PNG or JPEG whose header claims `width` x `height` pixels, as a
    decompression bomb's does (a 389 KB PNG of 20000x20000 took 11.8 GB to decode)."""
    if encoded.startswith(b"\x89PNG"):  # IHDR: width, height, then 5 bytes, then its CRC.
        header = b"IHDR" + struct.pack(">II", width, height) + encoded[24:29]
        return encoded[:12] + header + struct.pack(">I", zlib.crc32(header)) + encoded[33:]
    frame = encoded.index(b"\xff\xc0") + 5  # Baseline frame: precision, height, width.
    return encoded[:frame] + struct.pack(">HH", height, width) + encoded[frame + 4:]


@pytest.mark.parametrize("name, encode", [("bomb.png", tf.io.encode_png),
                                          ("bomb.jpg", tf.io.encode_jpeg)])
def test_an_image_of_too_many_pixels_is_refused_before_decoding(tmp_path, monkeypatch, name,
                                                                encode):
    path = tmp_path / name
    path.write_bytes(claiming(encode(np.zeros((8, 8, 3), np.uint8)).numpy(), 20000, 20000))
    monkeypatch.setattr(tf.io, "decode_image", lambda *args, **kwargs: pytest.fail("decoded"))
    with pytest.raises(UserError) as refused:
        predictor.read_image(str(path))
    assert str(refused.value) == (
        f"{path} is 20000x20000 pixels, more than the 4096x4096 (16,777,216 pixels) this "
        f"script decodes: shrink it first")


def test_an_image_at_the_pixel_limit_is_read(tmp_path):
    path = tmp_path / "large.png"
    path.write_bytes(tf.io.encode_png(np.zeros((4096, 4096, 3), np.uint8)).numpy())
    assert predictor.read_image(str(path)).shape == (32, 32, 3)


def test_a_model_without_class_names_beside_it_has_cifar10s(tmp_path):
    assert predictor.class_names(str(tmp_path / "model.keras"), 10) == CLASS_NAMES


@pytest.mark.parametrize("written, problem", [
    (None, "gives 100 classes, not CIFAR-10's 10, and no class_names.json beside it names them"),
    (json.dumps(list(CLASS_NAMES)), "class_names.json does not name the 100 classes of "),
    (json.dumps({"0": "apple"}), "class_names.json does not name the 100 classes of "),
    ('["apple", ', "cannot read .*class_names.json \\(Expecting value"),
])
def test_class_names_that_do_not_fit_the_model_are_refused_in_one_line(tmp_path, written,
                                                                       problem):
    if written is not None:
        (tmp_path / run_folder.CLASS_NAMES).write_text(written)
    with pytest.raises(UserError, match=problem) as refused:
        predictor.class_names(str(tmp_path / "saved_model"), 100)
    assert str(refused.value).endswith(
        ": put the class_names.json of the model's run beside it")
