"""CelebAExampleGen's executor: plans on the driver, face-centres every image with Beam, accounts for every reject.

The Beam graph is `Create(shards) -> Reshuffle -> ParDo(read, face-centre, encode)` with one
tagged output per split and one for rejects (the ParDo lives in `centering_stage`, which
imports no TensorFlow, so worker processes start fast). A shard is a (split, start, stop) range of that
split's candidates; each worker reads its own range (the files source parses the text files
once per worker process), so the work spreads over as many workers as there are shards and
nothing depends on running in one process.

Every input image ends as exactly one example or one reject. Rejects found in the text files
are known before the pipeline runs; rejects found while reading images (missing, corrupt,
truncated, wrong size, bad landmarks) come out of the ParDo. Both go to one `rejects.jsonl`
in the rejects artifact, are counted per reason (Beam counters, and the file itself, which is
the record the artifacts' counts come from), and the run fails when their fraction of the
input exceeds `max_reject_fraction`, after the rejects file is written.
"""
import collections
import json
import logging
import os
from typing import Any, Dict, List, Sequence

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

from components.celeba_example_gen import face_centering, sources
from components.celeba_example_gen.centering_stage import (
    METRICS_NAMESPACE, REJECTS_TAG, CenterFacesInShard, Shard, count_planned_reject, examples_counter,
    padded_counter, rejects_counter,
)

EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY
REJECTS_KEY = "rejects"
DATA_DIR_KEY = "data_dir"
CROP_KEY = "crop"
MAX_EXAMPLES_PER_SPLIT_KEY = "max_examples_per_split"
MAX_REJECT_FRACTION_KEY = "max_reject_fraction"
INPUT_FINGERPRINT_KEY = "input_fingerprint"
SOURCE_KEY = "source"
DOWNLOAD_KEY = "download"

# Custom properties.
EXAMPLE_COUNTS_PROPERTY = "example_counts"  # Examples: JSON {split: examples written}
REJECT_COUNTS_PROPERTY = "reject_counts"  # Examples and rejects: JSON, see reject_summary()
PADDED_COUNTS_PROPERTY = "padded_counts"  # Examples: JSON {split: crops that needed edge padding}
CROP_PROPERTY = "crop"  # Examples: "face" or "center"
SOURCE_PROPERTY = "source"  # Examples: "files" or "tfds"
NUM_REJECTS_PROPERTY = "num_rejects"  # rejects: int
NUM_INPUT_IMAGES_PROPERTY = "num_input_images"  # rejects: int, examples + rejects
REJECT_FRACTION_PROPERTY = "reject_fraction"  # rejects: float
MAX_REJECT_FRACTION_PROPERTY = "max_reject_fraction"  # rejects: float, the limit the run was held to

REJECTS_FILE = "rejects.jsonl"
KEPT_REJECTS_PREFIX = "failed-"  # <rejects uri parent>/failed-<name>/rejects.jsonl survives a failed run
UNASSIGNED_SPLIT = "unassigned"  # reject_counts["by_split"] key for images without a partition entry
IMAGES_PER_SHARD = 250


class TooManyRejectsError(ValueError):
    """More of the input was rejected than max_reject_fraction allows (bad input); the message says where the list is."""


def plan_shards(split: str, num_images: int, images_per_shard: int = IMAGES_PER_SHARD) -> List[Shard]:
    """Contiguous (split, start, stop) ranges covering the split's candidates."""
    return [
        (split, start, min(start + images_per_shard, num_images)) for start in range(0, num_images, images_per_shard)
    ]


def pipeline_counters(result, namespace: str = METRICS_NAMESPACE) -> Dict[str, int]:
    """Counter name -> value from the pipeline's metrics in `namespace`; empty if the runner reports none."""
    totals: Dict[str, int] = collections.Counter()
    query = result.metrics().query(MetricsFilter().with_namespace(namespace))
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] += int(value or 0)
    return dict(totals)


def reject_summary(
    rejects: List[sources.Reject],
    input_images: int,
    reasons: Sequence[str] = sources.REJECT_REASONS,
    splits: Sequence[str] = sources.SPLITS,
) -> Dict[str, Any]:
    """The `reject_counts` JSON: total, input_images, fraction, by_reason (every reason) and by_split."""
    by_reason = {reason: 0 for reason in reasons}
    by_split = {split: 0 for split in (*splits, UNASSIGNED_SPLIT)}
    for reject in rejects:
        by_reason[reject.reason] = by_reason.get(reject.reason, 0) + 1
        by_split[reject.split or UNASSIGNED_SPLIT] += 1
    return {
        "total": len(rejects),
        "input_images": input_images,
        "fraction": len(rejects) / input_images if input_images else 0.0,
        "by_reason": by_reason,
        "by_split": by_split,
    }


def read_rejects(path: str) -> List[sources.Reject]:
    with tf.io.gfile.GFile(path, "r") as f:
        return [sources.Reject.from_json(line) for line in f if line.strip()]


def write_rejects(path: str, rejects: List[sources.Reject]) -> None:
    """Writes the rejects sorted by (split, image_id), one JSON object per line, atomically."""
    tmp_path = path + ".tmp"
    with tf.io.gfile.GFile(tmp_path, "w") as f:  # one write, even if empty: GFile creates the file on write
        f.write("".join(reject.to_json() + "\n" for reject in sorted(rejects, key=sources.Reject.sort_key)))
    tf.io.gfile.rename(tmp_path, path, overwrite=True)


def annotate_examples(examples, fingerprint: str, example_counts: Dict[str, int], summary: Dict[str, Any]) -> None:
    """What every image ExampleGen records on its Examples: formats, span, input fingerprint, counts.

    The stock StatisticsGen/Transform read the formats; caching and the DomainClassifier's reuse
    read the fingerprint and `example_counts`; run summaries read `reject_counts`.
    """
    examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(examples, write_split.to_file_format_str(example_gen_pb2.FORMAT_TFRECORDS_GZIP))
    examples.span = 0
    examples.set_int_custom_property(example_gen_utils.SPAN_PROPERTY_NAME, 0)
    if fingerprint:
        examples.set_string_custom_property(example_gen_utils.FINGERPRINT_PROPERTY_NAME, fingerprint)
    examples.set_string_custom_property(EXAMPLE_COUNTS_PROPERTY, json.dumps(example_counts, sort_keys=True))
    examples.set_string_custom_property(REJECT_COUNTS_PROPERTY, json.dumps(summary, sort_keys=True))


def kept_rejects_path(rejects_uri: str) -> str:
    """Where a failed run's rejects are copied: beside the artifact dir, which TFX removes on failure."""
    parent, name = os.path.split(rejects_uri.rstrip("/"))
    return os.path.join(parent, KEPT_REJECTS_PREFIX + name, REJECTS_FILE)


def remove_contents(uri: str) -> None:
    """Empties an output dir (kept itself: TFX created it), so a failed run leaves no partial artifact."""
    if not tf.io.gfile.isdir(uri):
        return
    for name in tf.io.gfile.listdir(uri):
        path = os.path.join(uri, name.rstrip("/"))
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        else:
            tf.io.gfile.remove(path)


def check_accounting(
    sizes: Dict[str, int],
    planned_rejects: List[sources.Reject],
    rejects: List[sources.Reject],
    counters: Dict[str, int],
) -> Dict[str, int]:
    """Examples per split; checks that every candidate (`sizes`, per split) became exactly one example or reject.

    `planned_rejects` were found before the pipeline ran (and are in `rejects` too); `counters` are
    the pipeline's (`examples_counter(split)`, `rejects_counter(reason)`), empty if the runner
    reports none. The rejects counted per reason must be the rejects listed per reason.
    """
    reported = {name: count for name, count in counters.items() if name.startswith(rejects_counter(""))}
    if reported:
        counted = {name: count for name, count in reported.items() if count}
        listed = dict(collections.Counter(rejects_counter(reject.reason) for reject in rejects))
        if counted != listed:
            raise RuntimeError(f"the rejects counted per reason {counted} are not the rejects listed per reason "
                               f"{listed}")
    pipeline_rejects = collections.Counter(reject.split for reject in rejects)
    pipeline_rejects.subtract(reject.split for reject in planned_rejects)
    derived = {split: sizes[split] - pipeline_rejects[split] for split in sizes}
    if len(rejects) < len(planned_rejects) or any(count < 0 for count in derived.values()):
        raise RuntimeError(f"the rejects file lists fewer rejects than the plan found ({len(planned_rejects)})")
    if not any(examples_counter(split) in counters for split in sizes):
        logging.warning("The runner reported no example counts; using candidates minus rejects: %s", derived)
        return derived
    # A split without shards (or a counter only ever increased by 0) may be missing from the metrics.
    counted = {split: counters.get(examples_counter(split), 0) for split in sizes}
    if counted != derived:
        raise RuntimeError(
            f"examples written {counted} plus rejects do not add up to the planned candidates {sizes}: "
            f"expected {derived}"
        )
    return counted


def record_rejects(rejects_artifact: types.Artifact, summary: Dict[str, Any], max_fraction: float) -> None:
    """The rejects artifact's custom properties, from a `reject_summary`."""
    rejects_artifact.set_int_custom_property(NUM_REJECTS_PROPERTY, summary["total"])
    rejects_artifact.set_int_custom_property(NUM_INPUT_IMAGES_PROPERTY, summary["input_images"])
    rejects_artifact.set_float_custom_property(REJECT_FRACTION_PROPERTY, summary["fraction"])
    rejects_artifact.set_float_custom_property(MAX_REJECT_FRACTION_PROPERTY, max_fraction)
    rejects_artifact.set_string_custom_property(REJECT_COUNTS_PROPERTY, json.dumps(summary, sort_keys=True))


def fail_on_rejects(
    rejects_artifact: types.Artifact,
    rejects_path: str,
    rejects: List[sources.Reject],
    input_images: int,
    max_fraction: float,
    when: str,
    reasons: Sequence[str] = sources.REJECT_REASONS,
    splits: Sequence[str] = sources.SPLITS,
) -> None:
    """Writes the rejects (artifact dir and a kept copy TFX does not remove) and raises TooManyRejectsError."""
    summary = reject_summary(rejects, input_images, reasons, splits)
    record_rejects(rejects_artifact, summary, max_fraction)
    write_rejects(rejects_path, rejects)
    kept = kept_rejects_path(rejects_artifact.uri)
    tf.io.gfile.makedirs(os.path.dirname(kept))
    tf.io.gfile.copy(rejects_path, kept, overwrite=True)
    counts = ", ".join(f"{reason} {count}" for reason, count in summary["by_reason"].items() if count)
    raise TooManyRejectsError(
        f"rejected {summary['total']} of {input_images} images ({summary['fraction']:.2%}) {when}, more than "
        f"max_reject_fraction {max_fraction:.2%} allows: {counts}. Every reject is listed with its reason in "
        f"{kept} (also {rejects_path}, which the orchestrator removes with the failed run's outputs). Fix the "
        f"input or raise max_reject_fraction."
    )


class Executor(base_beam_executor.BaseBeamExecutor):
    """Writes face-centred 64x64 PNG tf.Examples to `train`, `eval` and `test`, and every reject with its reason."""

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        data_dir = exec_properties.get(DATA_DIR_KEY) or ""
        crop = exec_properties.get(CROP_KEY) or face_centering.FACE_CROP
        max_examples = int(exec_properties.get(MAX_EXAMPLES_PER_SPLIT_KEY) or 0)
        max_fraction = exec_properties.get(MAX_REJECT_FRACTION_KEY)
        max_fraction = sources.DEFAULT_MAX_REJECT_FRACTION if max_fraction is None else float(max_fraction)
        source_name = exec_properties.get(SOURCE_KEY) or sources.AUTO_SOURCE
        face_centering.check_crop(crop)
        sources.check_max_examples_per_split(max_examples)
        sources.check_max_reject_fraction(max_fraction)

        examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        rejects_artifact = artifact_utils.get_single_instance(output_dict[REJECTS_KEY])
        rejects_path = os.path.join(rejects_artifact.uri, REJECTS_FILE)

        source = sources.resolve_source(data_dir, source_name, bool(exec_properties.get(DOWNLOAD_KEY)))
        plan = source.plan(max_examples)
        logging.info(
            "Reading %s: %s candidates per split, %d rejects found in the text files, %d files missing",
            source, plan.sizes, len(plan.rejects), len(plan.expected_missing),
        )
        known = plan.rejects + plan.expected_missing
        if plan.input_images and len(known) / plan.input_images > max_fraction:
            # Fails before reading any image: the text files and the folder listing alone reject too much.
            fail_on_rejects(rejects_artifact, rejects_path, known, plan.input_images, max_fraction,
                            when="before reading any image (from the text files and the image folder listing)")

        examples.split_names = artifact_utils.encode_split_names(list(sources.SPLITS))
        try:
            counters = self.write_splits(source, plan, crop, max_examples, examples, rejects_path)
            rejects = read_rejects(rejects_path)
            write_rejects(rejects_path, rejects)
            example_counts = check_accounting(plan.sizes, plan.rejects, rejects, counters)
        except Exception:
            remove_contents(examples.uri)
            remove_contents(rejects_artifact.uri)
            raise
        summary = reject_summary(rejects, plan.input_images)
        record_rejects(rejects_artifact, summary, max_fraction)
        if summary["fraction"] > max_fraction:
            remove_contents(examples.uri)
            fail_on_rejects(rejects_artifact, rejects_path, rejects, plan.input_images, max_fraction,
                            when="after reading every image")

        padded = {split: counters.get(padded_counter(split), 0) for split in sources.SPLITS}
        for split, count in example_counts.items():
            logging.info("Wrote %d %s examples (%d padded crops) to %s", count, split, padded[split],
                         artifact_utils.get_split_uri([examples], split))
        logging.info("Rejected %d of %d images (%s); listed in %s", summary["total"], plan.input_images,
                     {reason: n for reason, n in summary["by_reason"].items() if n}, rejects_path)

        # The pipeline passes the fingerprint it computed when it was built; a compiled pipeline (whose
        # data_dir is a runtime parameter) cannot, so it is taken here, from the files just read.
        fingerprint = (exec_properties.get(INPUT_FINGERPRINT_KEY)
                       or sources.input_fingerprint(data_dir, source_name, crop))
        annotate_examples(examples, fingerprint, example_counts, summary)
        examples.set_string_custom_property(PADDED_COUNTS_PROPERTY, json.dumps(padded, sort_keys=True))
        examples.set_string_custom_property(CROP_PROPERTY, crop)
        examples.set_string_custom_property(SOURCE_PROPERTY, source.kind)

    def write_splits(
        self,
        source: sources.CelebASource,
        plan: sources.Plan,
        crop: str,
        max_examples: int,
        examples: types.Artifact,
        rejects_path: str,
    ) -> Dict[str, int]:
        """Runs the Beam pipeline; returns its counters (empty if the runner reports none)."""
        shards = [
            shard for split in sources.SPLITS for shard in plan_shards(split, plan.sizes[split], IMAGES_PER_SHARD)
        ]
        with self._make_beam_pipeline() as pipeline:
            outputs = (
                pipeline
                | "PlanShards" >> beam.Create(shards)
                | "SpreadShards" >> beam.Reshuffle()
                | "CenterFaces" >> beam.ParDo(CenterFacesInShard(source, crop, max_examples)).with_outputs(
                    REJECTS_TAG, *sources.SPLITS
                )
            )
            for split in sources.SPLITS:
                prefix = os.path.join(
                    artifact_utils.get_split_uri([examples], split), write_split.DEFAULT_TF_RECORD_FILE_NAME
                )
                _ = outputs[split] | f"Write[{split}]" >> beam.io.WriteToTFRecord(prefix, file_name_suffix=".gz")
            planned = (
                pipeline
                | "PlannedRejects" >> beam.Create([reject.to_json() for reject in plan.rejects])
                | "CountPlannedRejects" >> beam.Map(count_planned_reject)
            )
            _ = (
                (outputs[REJECTS_TAG], planned)
                | "AllRejects" >> beam.Flatten()
                | "WriteRejects" >> beam.io.WriteToText(rejects_path, shard_name_template="", num_shards=1)
            )
        return pipeline_counters(pipeline.result)
