"""Reads TensorBoard event files back, as TensorBoard itself does."""

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util


def read(event_dir: str) -> dict:
    """{tag: (plugin name, [(step, numpy value), ...])} of one TensorBoard run."""
    accumulator = event_accumulator.EventAccumulator(
        event_dir, size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
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
