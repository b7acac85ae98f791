"""GenerativeEvaluator executor: scores the candidate (and the baseline) on the eval split with Beam.

Per-image metrics are computed in a DoFn that loads each SavedModel once per worker,
averaged with a CombineFn, and written as `metrics.json` plus a PNG grid to the
ModelEvaluation artifact; the ModelBlessing carries the `blessed` custom property that
the stock Pusher and the latest-blessed-model resolver read.
"""
import json
import logging
import os
from typing import Any, Dict, List

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx import types
from tfx.components.evaluator import constants as eval_constants
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from components.generative_evaluator import blessing as blessing_lib
from components.generative_evaluator import metrics as metrics_lib
from serving import signatures as sig
from trainer_modules import contract
from trainer_modules import training

METRICS_FILE = "metrics.json"
GRID_FILE = "reconstructions.png"
CANDIDATE = "candidate"
BASELINE = "baseline"
FAMILIES = ("autoencoder",)


def serving_model_dir(model: types.Artifact) -> str:
    return path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))


def eval_files(examples: types.Artifact) -> str:
    split_uri = artifact_utils.get_split_uri([examples], contract.EVAL_SPLIT)
    return os.path.join(split_uri, "*")


class _MeanOfDicts(beam.CombineFn):
    """Mean of every key over per-batch dicts of (sums, count)."""

    def create_accumulator(self):
        return {}, 0

    def add_input(self, accumulator, element):
        sums, count = accumulator
        batch_sums, batch_count = element
        merged = dict(sums)
        for key, value in batch_sums.items():
            merged[key] = merged.get(key, 0.0) + value
        return merged, count + batch_count

    def merge_accumulators(self, accumulators):
        result = self.create_accumulator()
        for acc in accumulators:
            result = self.add_input(result, acc)
        return result

    def extract_output(self, accumulator):
        sums, count = accumulator
        return {"num_examples": count, **{k: v / count for k, v in sums.items()}} if count else {"num_examples": 0}


class _ScoreReconstructions(beam.DoFn):
    """Batches of transformed examples -> (model name, (metric sums, count)) for each model."""

    def __init__(self, model_dirs: Dict[str, str], feature_spec, input_key: str):
        self._model_dirs = model_dirs
        self._feature_spec = feature_spec
        self._input_key = input_key
        self._reconstruct = {}

    def setup(self):
        for name, path in self._model_dirs.items():
            loaded = tf.saved_model.load(path)
            if sig.RECONSTRUCT not in loaded.signatures:
                raise ValueError(
                    f"model {path} has no {sig.RECONSTRUCT!r} signature (has {sorted(loaded.signatures)})"
                )
            self._reconstruct[name] = loaded.signatures[sig.RECONSTRUCT]

    def process(self, records: List[bytes]):
        features = tf.io.parse_example(tf.constant(records), self._feature_spec)
        clean = features[contract.IMAGE_KEY].numpy()
        inputs = features[self._input_key].numpy()
        noisy = inputs if self._input_key == contract.NOISY_IMAGE_KEY else None
        for name, reconstruct in self._reconstruct.items():
            reconstruction = reconstruct(**{sig.IMAGES_INPUT: tf.constant(inputs)})[sig.RECONSTRUCTION_OUTPUT].numpy()
            per_image = metrics_lib.reconstruction_metrics(clean, reconstruction, noisy)
            yield name, ({k: float(np.sum(v)) for k, v in per_image.items()}, len(records))


class Executor(base_beam_executor.BaseBeamExecutor):
    """Computes metrics, writes the evaluation artifact and the blessing."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        family = exec_properties["family"]
        if family not in FAMILIES:
            raise ValueError(f"GenerativeEvaluator: unknown family {family!r}; expected one of {FAMILIES}")
        variant = exec_properties.get("variant") or ""
        config = json.loads(exec_properties.get("blessing_config") or "{}")
        grid_examples = int(exec_properties.get("grid_examples") or 10)

        examples = artifact_utils.get_single_instance(input_dict["examples"])
        transform_graph = artifact_utils.get_single_instance(input_dict["transform_graph"])
        model = artifact_utils.get_single_instance(input_dict["model"])
        baselines = input_dict.get("baseline_model") or []
        baseline = baselines[0] if baselines else None
        evaluation = artifact_utils.get_single_instance(output_dict["evaluation"])
        blessing = artifact_utils.get_single_instance(output_dict["blessing"])

        feature_spec = tft.TFTransformOutput(transform_graph.uri).transformed_feature_spec()
        input_key = contract.NOISY_IMAGE_KEY if variant == "denoising" else contract.IMAGE_KEY
        missing = {contract.IMAGE_KEY, input_key} - set(feature_spec)
        if missing:
            raise ValueError(f"transformed examples at {examples.uri} lack features {sorted(missing)}")
        feature_spec = {k: feature_spec[k] for k in {contract.IMAGE_KEY, input_key}}

        model_dirs = {CANDIDATE: serving_model_dir(model)}
        if baseline is not None and baseline.id != model.id:
            model_dirs[BASELINE] = serving_model_dir(baseline)
        pattern = eval_files(examples)
        scores = self._score(pattern, model_dirs, feature_spec, input_key)

        candidate_metrics = scores[CANDIDATE]
        baseline_metrics = scores.get(BASELINE)
        blessed, reasons = blessing_lib.decide(
            candidate_metrics, config.get("thresholds"), baseline_metrics, config.get("baseline")
        )
        grid_path = os.path.join(evaluation.uri, GRID_FILE)
        self._write_grid(pattern, model_dirs[CANDIDATE], feature_spec, input_key, grid_examples, grid_path)

        report = {
            "family": family,
            "variant": variant,
            "metrics": candidate_metrics,
            "baseline_metrics": baseline_metrics,
            "baseline_model": baseline.uri if baseline is not None and BASELINE in model_dirs else None,
            "blessed": blessed,
            "reasons": reasons,
            "blessing_config": config,
            "grid": grid_path,
            "psnr_cap_db": metrics_lib.PSNR_CAP_DB,
        }
        io_utils.write_string_file(os.path.join(evaluation.uri, METRICS_FILE), json.dumps(report, indent=2))
        for key in ("psnr_db", "ssim", "mse", "psnr_gain_db"):
            if key in candidate_metrics:
                evaluation.set_float_custom_property(key, candidate_metrics[key])
        self._write_blessing(blessing, blessed, reasons, model, baseline)
        logging.info("GenerativeEvaluator: blessed=%s metrics=%s reasons=%s", blessed, candidate_metrics, reasons)

    def _score(self, pattern, model_dirs, feature_spec, input_key) -> Dict[str, Dict[str, float]]:
        tmp_dir = os.path.join(self._get_tmp_dir(), "scores")
        with self._make_beam_pipeline() as pipeline:
            _ = (
                pipeline
                | "ReadEvalExamples" >> beam.io.ReadFromTFRecord(pattern, coder=beam.coders.BytesCoder())
                | "Batch" >> beam.BatchElements(min_batch_size=64, max_batch_size=256)
                | "Score" >> beam.ParDo(_ScoreReconstructions(model_dirs, feature_spec, input_key))
                | "Mean" >> beam.CombinePerKey(_MeanOfDicts())
                | "ToJson" >> beam.MapTuple(lambda name, values: json.dumps({"model": name, "metrics": values}))
                | "Write" >> beam.io.WriteToText(os.path.join(tmp_dir, "scores"), shard_name_template="")
            )
        scores = {}
        with tf.io.gfile.GFile(os.path.join(tmp_dir, "scores")) as f:
            for line in f:
                row = json.loads(line)
                scores[row["model"]] = row["metrics"]
        if not scores.get(CANDIDATE, {}).get("num_examples"):
            raise ValueError(f"no eval examples found at {pattern}")
        return scores

    @staticmethod
    def _write_grid(pattern, model_dir, feature_spec, input_key, count, path):
        """Originals / noisy inputs (denoising) / reconstructions of the first eval examples."""
        batch = next(iter(training.make_dataset(
            pattern, feature_spec, lambda f: f, count, shuffle=False, repeat=False, drop_remainder=False)))
        reconstruct = tf.saved_model.load(model_dir).signatures[sig.RECONSTRUCT]
        inputs = batch[input_key]
        rows = [batch[contract.IMAGE_KEY].numpy()]
        if input_key != contract.IMAGE_KEY:
            rows.append(inputs.numpy())
        rows.append(reconstruct(**{sig.IMAGES_INPUT: inputs})[sig.RECONSTRUCTION_OUTPUT].numpy())
        training.write_png(path, training.image_grid(rows))

    @staticmethod
    def _write_blessing(blessing, blessed, reasons, model, baseline):
        name = eval_constants.BLESSED_FILE_NAME if blessed else eval_constants.NOT_BLESSED_FILE_NAME
        io_utils.write_string_file(os.path.join(blessing.uri, name), "\n".join(reasons))
        blessing.set_int_custom_property(
            eval_constants.ARTIFACT_PROPERTY_BLESSED_KEY,
            eval_constants.BLESSED_VALUE if blessed else eval_constants.NOT_BLESSED_VALUE,
        )
        blessing.set_string_custom_property(eval_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY, model.uri)
        blessing.set_int_custom_property(eval_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id)
        blessing.set_string_custom_property(
            eval_constants.ARTIFACT_PROPERTY_BLESSING_MESSAGE_KEY, "; ".join(reasons) or "all checks passed"
        )
        if baseline is not None:
            blessing.set_string_custom_property(eval_constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY, baseline.uri)
            blessing.set_int_custom_property(eval_constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY, baseline.id)
