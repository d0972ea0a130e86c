"""Classifies PNG or JPEG images with a trained model: its top 3 classes.

    python scripts/predict.py --model=runs/baseline/model.keras cat.png dog.jpg

--model is a `model.keras` file or a SavedModel folder written by Keras'
`model.export()`. Prints one line per image to stdout, such as

    cat.png: cat 0.8123, dog 0.1011, frog 0.0302

Images that are not 32x32 are resized, with a note on stderr. The classes are
named by the class_names.json that the model's run wrote beside it (CIFAR-10's
where there is none).
"""

from absl import app
from absl import flags
import numpy as np

from cifar10_research import command  # The first of the project's imports: see command.py.
from cifar10_research import predictor

flags.DEFINE_string("model", None, "The model.keras file or exported SavedModel folder.")
flags.mark_flag_as_required("model")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) < 2:
        raise app.UsageError("name at least one image")
    predict = predictor.load_model(FLAGS.model)
    images = np.stack([predictor.read_image(path) for path in argv[1:]])
    predicted = predict(images)
    names = predictor.class_names(FLAGS.model, predicted.shape[-1])
    for path, probabilities in zip(argv[1:], predicted):
        print(f"{path}: {predictor.top_classes(probabilities, names)}")


if __name__ == "__main__":
    command.run(main, stopped=": nothing was written")
