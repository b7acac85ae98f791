"""ImageFolderExampleGen's executor: lists and splits on the driver, crops with Beam, accounts for every reject.

The Beam graph is `Create(shards) -> Reshuffle -> ParDo(read, square-crop, encode)` with one
tagged output per split and one for rejects (the ParDo lives in `stage`, which imports no
TensorFlow). A shard is a tuple of (image_id, split) pairs, IMAGES_PER_SHARD of them, so the
work spreads over as many workers as there are shards on any runner.

Every listed image (of those considered) ends as exactly one example or one reject. Rejects go
to `rejects.jsonl` in the rejects artifact, are counted per reason (Beam counters and the file),
and the run fails when their fraction exceeds max_reject_fraction, after the rejects file is
written and copied where a failed run keeps it. The rejects format, summary, custom properties
and failure are CelebAExampleGen's (imported from its executor), so one run summary reads both.
"""
import json
import logging
import os
from typing import Any, Dict, List

import apache_beam as beam
from tfx import types
from tfx.components.example_gen import write_split
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

# CelebAExampleGen's keys, property names, rejects file and failure; some only re-exported for callers.
from components.celeba_example_gen.executor import (  # pylint: disable=unused-import
    EXAMPLE_COUNTS_PROPERTY, EXAMPLES_KEY, INPUT_FINGERPRINT_KEY, MAX_EXAMPLES_PER_SPLIT_KEY,
    MAX_REJECT_FRACTION_KEY, MAX_REJECT_FRACTION_PROPERTY, NUM_INPUT_IMAGES_PROPERTY, NUM_REJECTS_PROPERTY,
    REJECT_COUNTS_PROPERTY, REJECT_FRACTION_PROPERTY, REJECTS_FILE, REJECTS_KEY, TooManyRejectsError,
    annotate_examples, check_accounting, fail_on_rejects, kept_rejects_path, pipeline_counters, read_rejects, record_rejects,
    reject_summary, remove_contents, write_rejects,
)
from components.image_folder_example_gen import sources
from components.image_folder_example_gen.stage import METRICS_NAMESPACE, REJECTS_TAG, CropImagesInShard, Shard, \
    upscaled_counter

DATA_DIR_KEY = "data_dir"
IMAGE_SIZE_KEY = "image_size"
EVAL_FRACTION_KEY = "eval_fraction"
SEED_KEY = "seed"

# Custom properties besides CelebAExampleGen's (example_counts, reject_counts, num_rejects, ...).
IMAGE_SIZE_PROPERTY = "image_size"  # Examples: int, the side of every output image
UPSCALED_COUNTS_PROPERTY = "upscaled_counts"  # Examples: JSON {split: examples whose source was below image_size}

IMAGES_PER_SHARD = 64


def plan_shards(candidates: List[sources.Candidate], images_per_shard: int = IMAGES_PER_SHARD) -> List[Shard]:
    """Consecutive runs of images_per_shard candidates."""
    return [tuple(candidates[start:start + images_per_shard]) for start in range(0, len(candidates), images_per_shard)]


class Executor(base_beam_executor.BaseBeamExecutor):
    """Writes image_size x image_size RGB PNG tf.Examples to `train` and `eval`, and every reject with its reason."""

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        data_dir = exec_properties.get(DATA_DIR_KEY) or ""
        image_size = _get(exec_properties, IMAGE_SIZE_KEY, sources.DEFAULT_IMAGE_SIZE, int)
        eval_fraction = _get(exec_properties, EVAL_FRACTION_KEY, sources.DEFAULT_EVAL_FRACTION, float)
        max_examples = _get(exec_properties, MAX_EXAMPLES_PER_SPLIT_KEY, 0, int)
        max_fraction = _get(exec_properties, MAX_REJECT_FRACTION_KEY, sources.DEFAULT_MAX_REJECT_FRACTION, float)
        seed = _get(exec_properties, SEED_KEY, 0, int)
        sources.check_data_dir(data_dir)
        sources.check_image_size(image_size)
        sources.check_eval_fraction(eval_fraction)
        sources.check_max_examples_per_split(max_examples)
        sources.check_max_reject_fraction(max_fraction)

        examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        rejects_artifact = artifact_utils.get_single_instance(output_dict[REJECTS_KEY])
        rejects_path = os.path.join(rejects_artifact.uri, REJECTS_FILE)

        plan = sources.plan(data_dir, image_size, eval_fraction, seed, max_examples)
        logging.info("Reading %d images under %s: %s per split (eval_fraction %g, seed %d)",
                     plan.input_images, data_dir, plan.sizes, eval_fraction, seed)
        if plan.moved:
            logging.info("No decodable image hashed into one split; moved %s",
                         ", ".join(sources.describe_moves(plan.moved, seed)))

        examples.split_names = artifact_utils.encode_split_names(list(sources.SPLITS))
        try:
            counters = self.write_splits(data_dir, image_size, plan, examples, rejects_path)
            rejects = read_rejects(rejects_path)
            write_rejects(rejects_path, rejects)
            example_counts = check_accounting(plan.sizes, [], rejects, counters)
        except Exception:
            remove_contents(examples.uri)
            remove_contents(rejects_artifact.uri)
            raise
        summary = reject_summary(rejects, plan.input_images, sources.REJECT_REASONS, sources.SPLITS)
        record_rejects(rejects_artifact, summary, max_fraction)
        if summary["fraction"] > max_fraction:
            remove_contents(examples.uri)
            fail_on_rejects(rejects_artifact, rejects_path, rejects, plan.input_images, max_fraction,
                            "after reading every image", sources.REJECT_REASONS, sources.SPLITS)

        upscaled = {split: counters.get(upscaled_counter(split), 0) for split in sources.SPLITS}
        for split, count in example_counts.items():
            logging.info("Wrote %d %s examples (%d upscaled) to %s", count, split, upscaled[split],
                         artifact_utils.get_split_uri([examples], split))
        logging.info("Rejected %d of %d images (%s); listed in %s", summary["total"], plan.input_images,
                     {reason: n for reason, n in summary["by_reason"].items() if n}, rejects_path)

        # Compiled pipelines cannot fingerprint their data when built (data_dir is a runtime parameter).
        fingerprint = exec_properties.get(INPUT_FINGERPRINT_KEY) or sources.input_fingerprint(data_dir)
        annotate_examples(examples, fingerprint, example_counts, summary)
        examples.set_string_custom_property(UPSCALED_COUNTS_PROPERTY, json.dumps(upscaled, sort_keys=True))
        examples.set_int_custom_property(IMAGE_SIZE_PROPERTY, image_size)

    def write_splits(
        self, data_dir: str, image_size: int, plan: sources.Plan, examples: types.Artifact, rejects_path: str
    ) -> Dict[str, int]:
        """Runs the Beam pipeline; returns its counters (empty if the runner reports none)."""
        with self._make_beam_pipeline() as pipeline:
            outputs = (
                pipeline
                | "PlanShards" >> beam.Create(plan_shards(plan.candidates, IMAGES_PER_SHARD))
                | "SpreadShards" >> beam.Reshuffle()
                | "CropImages" >> beam.ParDo(CropImagesInShard(data_dir, image_size)).with_outputs(
                    REJECTS_TAG, *sources.SPLITS
                )
            )
            for split in sources.SPLITS:
                prefix = os.path.join(
                    artifact_utils.get_split_uri([examples], split), write_split.DEFAULT_TF_RECORD_FILE_NAME
                )
                _ = outputs[split] | f"Write[{split}]" >> beam.io.WriteToTFRecord(prefix, file_name_suffix=".gz")
            _ = outputs[REJECTS_TAG] | "WriteRejects" >> beam.io.WriteToText(
                rejects_path, shard_name_template="", num_shards=1
            )
        return pipeline_counters(pipeline.result, METRICS_NAMESPACE)


def _get(exec_properties: Dict[str, Any], key: str, default, kind):
    value = exec_properties.get(key)
    return default if value is None else kind(value)
