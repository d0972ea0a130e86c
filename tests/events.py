"""Reads TensorBoard event files back, as TensorBoard itself does."""

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.util import tensor_util
from tensorflow.tsl.profiler.protobuf import xplane_pb2


def _accumulator(event_dir: str) -> event_accumulator.EventAccumulator:
    accumulator = event_accumulator.EventAccumulator(
        event_dir, size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    return accumulator


def read(event_dir: str) -> dict:
    """{tag: (plugin name, [(step, numpy value), ...])} of one TensorBoard run."""
    accumulator = _accumulator(event_dir)
    found = {}
    for tag in accumulator.Tags()["tensors"]:
        plugin = accumulator.SummaryMetadata(tag).plugin_data.plugin_name
        values = [(event.step, tensor_util.make_ndarray(event.tensor_proto))
                  for event in accumulator.Tensors(tag)]
        found[tag] = (plugin, values)
    return found


def scalars(event_dir: str) -> dict:
    """{tag: [(step, float), ...]} of the scalar summaries of one TensorBoard run."""
    return {tag: [(step, float(value)) for step, value in values]
            for tag, (plugin, values) in read(event_dir).items() if plugin == "scalars"}


def descriptions(event_dir: str) -> dict:
    """{tag: description} of one TensorBoard run's summaries."""
    accumulator = _accumulator(event_dir)
    return {tag: accumulator.SummaryMetadata(tag).summary_description
            for tag in accumulator.Tags()["tensors"]}


def hparams_experiment(event_dir: str):
    """The experiment a run declares for the HParams tab: (hparam names in order,
    [(metric group, metric tag), ...] in order)."""
    content = _accumulator(event_dir).SummaryMetadata(
        hparams_metadata.EXPERIMENT_TAG).plugin_data.content
    experiment = hparams_metadata.parse_experiment_plugin_data(content)
    return ([info.name for info in experiment.hparam_infos],
            [(info.name.group, info.name.tag) for info in experiment.metric_infos])


def hparams_values(event_dir: str) -> dict:
    """{name: value} of the hyperparameters a run records for the HParams tab
    (numbers come back as floats)."""
    content = _accumulator(event_dir).SummaryMetadata(
        hparams_metadata.SESSION_START_INFO_TAG).plugin_data.content
    info = hparams_metadata.parse_session_start_info_plugin_data(content)
    return {name: getattr(value, value.WhichOneof("kind"))
            for name, value in info.hparams.items()}


# What profiled_calls keeps of a profile's host events: the training function's calls
# and the summaries written.
PROFILED_CALLS = {"train_steps": "train_steps", "EagerLocalExecute: WriteSummary": "WriteSummary"}


def profiled_calls(xplane_file: str) -> list[str]:
    """The calls of the training function ("train_steps") and the summary writes
    ("WriteSummary") a profile (`*.xplane.pb`) recorded, in time order."""
    space = xplane_pb2.XSpace()
    with open(xplane_file, "rb") as file:
        space.ParseFromString(file.read())
    found = []
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if name in PROFILED_CALLS:
                    found.append((line.timestamp_ns * 1000 + event.offset_ps, PROFILED_CALLS[name]))
    return [name for _, name in sorted(found)]
