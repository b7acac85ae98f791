"""MnistExampleGen's executor: validates the source, then writes PNG tf.Examples per split with Beam.

The Beam graph per split is `Create(shards) -> Reshuffle -> ParDo(read shard, encode PNG)
-> WriteToTFRecord`: each shard is a (split, start, stop) range that one worker reads on
its own (seeking into the IDX file, slicing the TFDS split), so the work spreads over
as many workers as there are shards.
"""
import json
import logging
import os
from typing import Any, Dict, Iterator, List, Tuple

import apache_beam as beam
import tensorflow as tf
from apache_beam.metrics.metric import MetricsFilter
from tfx import types
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen import write_split
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs

from components.mnist_example_gen import sources
from trainer_modules import contract

EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY
DATASET_KEY = "dataset"
DATA_DIR_KEY = "data_dir"
MAX_EXAMPLES_PER_SPLIT_KEY = "max_examples_per_split"
INPUT_FINGERPRINT_KEY = "input_fingerprint"

EXAMPLE_COUNTS_PROPERTY = "example_counts"
METRICS_NAMESPACE = "MnistExampleGen"
EXAMPLES_PER_SHARD = 5000

Shard = Tuple[str, int, int]


def counter_name(split: str) -> str:
    return f"num_examples_{split}"


def plan_shards(split: str, num_examples: int, examples_per_shard: int = EXAMPLES_PER_SHARD) -> List[Shard]:
    """Contiguous (split, start, stop) ranges covering the first num_examples of the split."""
    return [
        (split, start, min(start + examples_per_shard, num_examples))
        for start in range(0, num_examples, examples_per_shard)
    ]


def to_tf_example(image, label: int) -> bytes:
    """A serialized tf.Example: `image` as lossless PNG bytes, `label` as int64."""
    png = tf.io.encode_png(image[:, :, None]).numpy()
    feature = {
        contract.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
        contract.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


class ShardToExamples(beam.DoFn):
    """Reads one shard of a source and emits its serialized tf.Examples."""

    def __init__(self, source: sources.DigitSource):
        self._source = source

    def process(self, shard: Shard) -> Iterator[bytes]:
        split, start, stop = shard
        counter = beam.metrics.Metrics.counter(METRICS_NAMESPACE, counter_name(split))
        emitted = 0
        for image, label in self._source.read(split, start, stop):
            yield to_tf_example(image, label)
            emitted += 1
        counter.inc(emitted)
        if emitted != stop - start:
            raise sources.MnistDataError(
                f"{self._source}: split {split} examples {start}..{stop - 1}: read {emitted} of {stop - start}"
            )


def _counted_examples(result, splits) -> Dict[str, int]:
    """Examples per split from the pipeline's metrics; empty if the runner reports none."""
    counts = {}
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    for split in splits:
        values = [
            counter.committed if counter.committed is not None else counter.attempted
            for counter in query["counters"]
            if counter.key.metric.name == counter_name(split)
        ]
        if values:
            counts[split] = int(sum(values))
    return counts


class Executor(base_beam_executor.BaseBeamExecutor):
    """Writes `train` and `eval` splits of PNG tf.Examples from an MNIST-family source."""

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        dataset = exec_properties.get(DATASET_KEY) or sources.DEFAULT_DATASET
        data_dir = exec_properties.get(DATA_DIR_KEY) or ""
        max_examples = int(exec_properties.get(MAX_EXAMPLES_PER_SPLIT_KEY) or 0)
        if max_examples < 0:
            raise ValueError(f"{MAX_EXAMPLES_PER_SPLIT_KEY} must be >= 0, got {max_examples}")

        source = sources.resolve_source(dataset, data_dir)
        sizes = source.split_sizes()
        if max_examples:
            sizes = {split: min(size, max_examples) for split, size in sizes.items()}
        logging.info("Reading %s: %s", source, sizes)

        examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        examples.split_names = artifact_utils.encode_split_names(list(sizes))
        counts = self.write_splits(source, sizes, examples)
        for split, count in counts.items():
            split_uri = artifact_utils.get_split_uri([examples], split)
            logging.info("Wrote %d %s examples to %s", count, split, split_uri)

        examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
        file_format = write_split.to_file_format_str(example_gen_pb2.FORMAT_TFRECORDS_GZIP)
        examples_utils.set_file_format(examples, file_format)
        examples.span = 0
        examples.set_int_custom_property(example_gen_utils.SPAN_PROPERTY_NAME, 0)
        # Compiled pipelines cannot fingerprint their data when built (data_dir is a runtime parameter).
        fingerprint = exec_properties.get(INPUT_FINGERPRINT_KEY) or sources.input_fingerprint(dataset, data_dir)
        if fingerprint:
            examples.set_string_custom_property(example_gen_utils.FINGERPRINT_PROPERTY_NAME, fingerprint)
        examples.set_string_custom_property(EXAMPLE_COUNTS_PROPERTY, json.dumps(counts, sort_keys=True))

    def write_splits(
        self, source: sources.DigitSource, sizes: Dict[str, int], examples: types.Artifact
    ) -> Dict[str, int]:
        """Runs the Beam pipeline; returns the examples written per split."""
        with self._make_beam_pipeline() as pipeline:
            for split, size in sizes.items():
                split_prefix = os.path.join(
                    artifact_utils.get_split_uri([examples], split), write_split.DEFAULT_TF_RECORD_FILE_NAME
                )
                _ = (
                    pipeline
                    | f"PlanShards[{split}]" >> beam.Create(plan_shards(split, size, EXAMPLES_PER_SHARD))
                    | f"SpreadShards[{split}]" >> beam.Reshuffle()
                    | f"ToTFExample[{split}]" >> beam.ParDo(ShardToExamples(source))
                    | f"Write[{split}]" >> beam.io.WriteToTFRecord(split_prefix, file_name_suffix=".gz")
                )
        counts = _counted_examples(pipeline.result, sizes)
        if set(counts) != set(sizes):
            logging.warning("The runner reported no example counts; using the planned sizes %s", sizes)
            return dict(sizes)
        if counts != sizes:
            raise RuntimeError(f"wrote {counts} examples per split, expected {sizes}")
        return counts
