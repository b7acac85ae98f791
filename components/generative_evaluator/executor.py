"""GenerativeEvaluator executor: scores the candidate (and the baseline) on the eval split with Beam.

Per-image metrics are computed in a DoFn that loads each SavedModel once per worker,
averaged with a CombineFn, and written as `metrics.json` plus a PNG grid to the
ModelEvaluation artifact; the ModelBlessing carries the `blessed` custom property that
the stock Pusher and the latest-blessed-model resolver read.
"""
import json
import logging
import os
from typing import Any, Dict, List, Optional

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx import types
from tfx.components.evaluator import constants as eval_constants
from tfx.components.evaluator import executor as stock_evaluator
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from components.generative_evaluator import blessing as blessing_lib
from components.generative_evaluator import metrics as metrics_lib
from components.generative_evaluator import sample_metrics
from components.generative_evaluator import sampling
from trainer_modules import style_losses
from serving import signatures as sig
from trainer_modules import contract
from trainer_modules import training

METRICS_FILE = "metrics.json"
GRID_FILE = "reconstructions.png"
SAMPLES_FILE = "samples.png"
INTERPOLATIONS_FILE = "interpolations.png"
SAMPLES_DIR = "samples"
CANDIDATE = "candidate"
BASELINE = "baseline"
FAMILIES = ("autoencoder", "vae", "gan", "style")
UNTRAINED = "untrained"
MAX_EVAL_EXAMPLES_KEY = "max_eval_examples"
CAPPED_EVAL_DIR = "eval_capped"
# Sample-metric settings (exec property `sample_config`) and their defaults.
SAMPLE_DEFAULTS = {
    "num_samples": 2000,       # generated images per model for classifier-FD, score and coverage
    "batch_size": 250,
    "seed": 0,                 # batch i of every model uses seed + i: fixed samples per model
    "value_range": "unit",     # range of the transformed `image` feature: "unit" or "symmetric"
    "num_classes": 10,
    "min_class_fraction": 0.02,
    "min_classes": None,       # default ceil(0.9 * num_classes)
    "score_splits": 10,
    "grid_samples": 32,
    "inception_weights": "",   # InceptionV3 no-top weights file (local or gs://...); Inception FID only when set
    # Attribute classifiers (CelebA): names for the report, and the diversity below which
    # generated faces count as one kind of face (sample_metrics.attribute_agreement).
    "attribute_names": None,
    "min_attribute_diversity": 0.5,
    # The data-copying test (sample_metrics.data_copying): every model's samples against the train split,
    # cut into this many k-means cells, at most one per 50 samples, so a cell expects more than the
    # 20 samples it needs to count.
    "data_copying": True,
    "data_copying_cells": 20,
    # Precision, recall, density and coverage (sample_metrics.fidelity_diversity): k of the k-NN
    # balls, and at most this many real images and samples compared (memory grows as its square).
    "prdc_k": sample_metrics.PRDC_NEAREST_K,
    "prdc_max_points": sample_metrics.PRDC_MAX_POINTS,
}


def _sample_config(text: Optional[str]) -> Dict[str, Any]:
    """SAMPLE_DEFAULTS overridden by the exec property's JSON; a misspelt key is an error, not a default."""
    given = json.loads(text or "{}")
    unknown = sorted(set(given) - set(SAMPLE_DEFAULTS))
    if unknown:
        raise ValueError(f"GenerativeEvaluator: unknown sample_config keys {unknown}; expected some of "
                         f"{sorted(SAMPLE_DEFAULTS)}")
    config = {**SAMPLE_DEFAULTS, **given}
    k, max_points = config["prdc_k"], config["prdc_max_points"]
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"GenerativeEvaluator: sample_config prdc_k must be a positive integer, got {k!r}")
    if not isinstance(max_points, int) or isinstance(max_points, bool) or max_points <= k:
        raise ValueError(f"GenerativeEvaluator: sample_config prdc_max_points must be an integer above prdc_k "
                         f"({k}), got {max_points!r}")
    return config


def serving_model_dir(model: types.Artifact) -> str:
    return path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))


def read_model_rows(path: str) -> Dict[str, Dict[str, Any]]:
    """The {"model": name, "metrics": {...}} JSON lines a scoring pipeline wrote, by model name."""
    rows = {}
    with tf.io.gfile.GFile(path) as f:
        for line in f:
            row = json.loads(line)
            rows[row["model"]] = row["metrics"]
    return rows


def untrained_model_dir(model: types.Artifact) -> str:
    """The generator as it was before training, exported beside the model by the GAN trainer, if any."""
    from trainer_modules import gan

    path = gan.untrained_model_dir(serving_model_dir(model))
    return path if tf.io.gfile.exists(path) else ""


def split_files(examples: types.Artifact, split: str) -> str:
    return os.path.join(artifact_utils.get_split_uri([examples], split), "*")


def eval_files(examples: types.Artifact) -> str:
    return split_files(examples, contract.EVAL_SPLIT)


def check_max_eval_examples(value: int) -> None:
    if value < 0:
        raise ValueError(f"{MAX_EVAL_EXAMPLES_KEY} must be >= 0 (0 reads every eval example), got {value}")


def capped_eval_files(examples: types.Artifact, max_examples: int, tmp_dir: str) -> str:
    """The eval split's file pattern; with max_examples > 0, that of a copy of its first max_examples
    records (files in sorted order), so every metric and grid sees the same capped set."""
    pattern = eval_files(examples)
    if not max_examples:
        return pattern
    folder = os.path.join(tmp_dir, CAPPED_EVAL_DIR)
    tf.io.gfile.makedirs(folder)
    records = tf.data.TFRecordDataset(training.tfrecord_files(pattern), compression_type="GZIP").take(max_examples)
    with tf.io.TFRecordWriter(os.path.join(folder, "eval.gz"), options="GZIP") as writer:
        for record in records:
            writer.write(record.numpy())
    return os.path.join(folder, "*")


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
        self._elbo = {}

    def setup(self):
        for name, path in self._model_dirs.items():
            loaded = tf.saved_model.load(path)
            if sig.RECONSTRUCT not in loaded.signatures:
                raise ValueError(
                    f"model {path} has no {sig.RECONSTRUCT!r} signature (has {sorted(loaded.signatures)})"
                )
            self._reconstruct[name] = loaded.signatures[sig.RECONSTRUCT]
            if sig.ELBO in loaded.signatures:
                self._elbo[name] = loaded.signatures[sig.ELBO]

    def process(self, records: List[bytes]):
        features = tf.io.parse_example(tf.constant(records), self._feature_spec)
        clean = features[contract.IMAGE_KEY].numpy()
        inputs = features[self._input_key].numpy()
        noisy = inputs if self._input_key == contract.NOISY_IMAGE_KEY else None
        for name, reconstruct in self._reconstruct.items():
            reconstruction = reconstruct(**{sig.IMAGES_INPUT: tf.constant(inputs)})[sig.RECONSTRUCTION_OUTPUT].numpy()
            per_image = metrics_lib.reconstruction_metrics(clean, reconstruction, noisy)
            if name in self._elbo:
                terms = self._elbo[name](**{sig.IMAGES_INPUT: tf.constant(clean)})
                for key in (sig.ELBO_OUTPUT, sig.RECONSTRUCTION_NLL_OUTPUT, sig.KL_OUTPUT):
                    per_image[key] = terms[key].numpy()
            yield name, ({k: float(np.sum(v)) for k, v in per_image.items()}, len(records))


class Executor(stock_evaluator.Executor):
    """Computes metrics, writes the evaluation artifact and the blessing.

    A subclass of the stock Evaluator's executor (whose `Do` it replaces) for one reason: on
    Kubeflow / Vertex, TFX's container entrypoint rewrites the blessing's current/baseline model
    ids into artifact names only for Evaluator executors (kubeflow_v2_run_executor ->
    refactor_model_blessing), and the compiled latest-blessed-model resolver matches on those
    names. Without it the baseline of a compiled pipeline would never be found.
    """

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        family = exec_properties["family"]
        if family not in FAMILIES:
            raise ValueError(f"GenerativeEvaluator: unknown family {family!r}; expected one of {FAMILIES}")
        variant = exec_properties.get("variant") or ""
        config = json.loads(exec_properties.get("blessing_config") or "{}")
        sample_config = _sample_config(exec_properties.get("sample_config"))
        grid_examples = int(exec_properties.get("grid_examples") or 10)
        max_eval_examples = int(exec_properties.get(MAX_EVAL_EXAMPLES_KEY) or 0)
        check_max_eval_examples(max_eval_examples)

        examples = artifact_utils.get_single_instance(input_dict["examples"])
        transform_graph = artifact_utils.get_single_instance(input_dict["transform_graph"])
        model = artifact_utils.get_single_instance(input_dict["model"])
        baselines = input_dict.get("baseline_model") or []
        baseline = baselines[0] if baselines else None
        classifiers = input_dict.get("classifier") or []
        evaluation = artifact_utils.get_single_instance(output_dict["evaluation"])
        blessing = artifact_utils.get_single_instance(output_dict["blessing"])

        full_spec = tft.TFTransformOutput(transform_graph.uri).transformed_feature_spec()
        input_key = contract.NOISY_IMAGE_KEY if variant == "denoising" else contract.IMAGE_KEY
        missing = {contract.IMAGE_KEY, input_key} - set(full_spec)
        if missing:
            raise ValueError(f"transformed examples at {examples.uri} lack features {sorted(missing)}")
        feature_spec = {k: full_spec[k] for k in {contract.IMAGE_KEY, input_key}}

        model_dirs = {CANDIDATE: serving_model_dir(model)}
        if baseline is not None and baseline.id != model.id:
            model_dirs[BASELINE] = serving_model_dir(baseline)
        pattern = capped_eval_files(examples, max_eval_examples, self._get_tmp_dir())
        report = {"family": family, "variant": variant, MAX_EVAL_EXAMPLES_KEY: max_eval_examples}
        scores: Dict[str, Dict[str, Any]] = {name: {} for name in model_dirs}
        if family in ("autoencoder", "vae"):
            for name, values in self._score(pattern, model_dirs, feature_spec, input_key).items():
                scores[name].update(values)
            grid_path = os.path.join(evaluation.uri, GRID_FILE)
            self._write_grid(pattern, model_dirs[CANDIDATE], feature_spec, input_key, grid_examples, grid_path)
            report["grid"] = grid_path
        if family in ("autoencoder", "vae"):
            from components.generative_evaluator import latent_space

            latent_spec = {k: full_spec[k] for k in (contract.IMAGE_KEY, contract.LABEL_KEY) if k in full_spec}
            latent = latent_space.evaluate(model_dirs, CANDIDATE, pattern, latent_spec, evaluation.uri,
                                           manifold=family == "vae")
            for name, values in latent["models"].items():
                scores[name].update(values)
            report.update({"latent_space": latent["latent_space"], "latent_manifold": latent["latent_manifold"]})
        reasons: List[str] = []
        if family == "style":
            from components.generative_evaluator import style_scoring

            style_config = json.loads(exec_properties.get("style_config") or "{}")
            style_report = style_scoring.score(model_dirs, pattern, feature_spec, style_config,
                                               os.path.join(evaluation.uri, style_scoring.GRID_FILE))
            for name in model_dirs:
                scores[name].update(style_report["models"][name])
            report.update({"grid": style_report["grid"], "identity": style_report["identity"],
                           "gatys_reference_steps": style_report["gatys_reference_steps"],
                           "vgg_weights": style_report["vgg_weights"]})
            if style_report["vgg_weights"] == style_losses.VGG_RANDOM and config.get("thresholds"):
                reasons.append("VGG19 has random weights (--vgg-weights random): its perceptual losses mean "
                               "nothing, so the thresholds cannot be judged")
        if family in ("vae", "gan"):
            if not classifiers:
                raise ValueError(f"GenerativeEvaluator: family {family!r} needs a `classifier` input "
                                 "(the DomainClassifier's model) for its sample metrics")
            sample_report = self._sample_metrics(
                examples, pattern, {contract.IMAGE_KEY: feature_spec[contract.IMAGE_KEY]}, model, model_dirs,
                classifiers[0], sample_config, evaluation.uri)
            for name in model_dirs:
                scores[name].update(sample_report["models"].get(name, {}))
            report.update({k: v for k, v in sample_report.items() if k != "models"})
            report.setdefault("grid", sample_report["samples_grid"])
            classifier_info = sample_report["classifier"]
            if config.get("require_trustworthy_classifier", True) and not classifier_info["trustworthy"]:
                reasons.append(
                    f"domain classifier test accuracy {classifier_info['test_accuracy']:.4f} is below "
                    f"{classifier_info['min_accuracy']} for this dataset: its distances are not trustworthy"
                )
        candidate_metrics = scores[CANDIDATE]
        baseline_metrics = scores.get(BASELINE)
        blessed, decision_reasons = blessing_lib.decide(
            candidate_metrics, config.get("thresholds"), baseline_metrics, config.get("baseline")
        )
        reasons += decision_reasons
        blessed = not reasons

        report.update({
            "metrics": candidate_metrics,
            "baseline_metrics": baseline_metrics,
            "baseline_model": baseline.uri if baseline is not None and BASELINE in model_dirs else None,
            "blessed": blessed,
            "reasons": reasons,
            "blessing_config": config,
            "psnr_cap_db": metrics_lib.PSNR_CAP_DB,
        })
        io_utils.write_string_file(os.path.join(evaluation.uri, METRICS_FILE), json.dumps(report, indent=2))
        for key, value in candidate_metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                evaluation.set_float_custom_property(key, float(value))
        self._write_blessing(blessing, blessed, reasons, model, baseline)
        logging.info("GenerativeEvaluator: blessed=%s metrics=%s reasons=%s", blessed, candidate_metrics, reasons)

    def _sample_metrics(self, examples, pattern, feature_spec, model, model_dirs, classifier, sample_config, out_dir):
        """Classifier-FD, classifier score and mode coverage of every model's samples (and the untrained one)."""
        from components.domain_classifier import describe

        classifier_info = describe(classifier)
        dirs = dict(model_dirs)
        untrained_dir = untrained_model_dir(model)
        if untrained_dir:
            dirs[UNTRAINED] = untrained_dir
        inception_weights = sample_config.get("inception_weights") or ""
        inception_available, inception_reason = sample_metrics.inception_fid_status(inception_weights)
        tmp_dir = os.path.join(self._get_tmp_dir(), "samples")
        with self._make_beam_pipeline() as pipeline:
            _ = (
                pipeline
                | "SampleStatistics" >> sampling.SampleStatistics(
                    pattern, feature_spec, sample_config["value_range"], dirs, classifier.uri,
                    num_samples=int(sample_config["num_samples"]), batch_size=int(sample_config["batch_size"]),
                    seed=int(sample_config["seed"]), num_classes=int(sample_config["num_classes"]),
                    min_fraction=float(sample_config["min_class_fraction"]),
                    min_classes=sample_config["min_classes"], score_splits=int(sample_config["score_splits"]),
                    inception_weights=inception_weights if inception_available else "",
                    task=classifier_info["task"], attribute_names=sample_config["attribute_names"],
                    min_attribute_diversity=float(sample_config["min_attribute_diversity"]),
                    train_pattern=split_files(examples, contract.TRAIN_SPLIT) if sample_config["data_copying"] else "",
                    data_copying_cells=min(int(sample_config["data_copying_cells"]),
                                           max(1, int(sample_config["num_samples"]) // 50)),
                    prdc_k=int(sample_config["prdc_k"]), prdc_max_points=int(sample_config["prdc_max_points"]))
                | "Write" >> beam.io.WriteToText(os.path.join(tmp_dir, "rows"), shard_name_template="")
            )
        rows = read_model_rows(os.path.join(tmp_dir, "rows"))
        if sampling.REAL not in rows:
            raise ValueError(f"no eval examples found at {pattern}")
        models = {name: rows[name] for name in model_dirs}
        candidate = models[CANDIDATE]
        candidate["classifier_test_accuracy"] = classifier_info["test_accuracy"]
        candidate["classifier_trustworthy"] = 1.0 if classifier_info["trustworthy"] else 0.0
        if UNTRAINED in rows:
            untrained_fd = rows[UNTRAINED]["classifier_fd"]
            candidate["classifier_fd_untrained"] = untrained_fd
            candidate["classifier_fd_improvement"] = untrained_fd / max(candidate["classifier_fd"], 1e-12)
        grid_path = os.path.join(out_dir, SAMPLES_FILE)
        signatures = tf.saved_model.load(model_dirs[CANDIDATE]).signatures  # loaded once for both grids
        self._write_sample_grid(signatures, int(sample_config["grid_samples"]), int(sample_config["seed"]), grid_path)
        interpolations = self._write_interpolations(signatures, int(sample_config["seed"]),
                                                    os.path.join(out_dir, INTERPOLATIONS_FILE))
        return {
            "interpolations": interpolations,
            "models": models,
            "real_images": rows[sampling.REAL],
            "untrained_generator": rows.get(UNTRAINED),
            "classifier": classifier_info,
            "samples_grid": grid_path,
            "sample_config": sample_config,
            "inception_fid": inception_reason if not inception_available else "computed",
        }

    @staticmethod
    def _write_sample_grid(signatures, count, seed, path):
        """Samples of the model from a fixed seed, 8 per row: the same model always gives the same grid."""
        sample = signatures[sig.SAMPLE]
        images = sample(**{sig.NUM_INPUT: tf.constant(count, tf.int32),
                           sig.SEED_INPUT: tf.constant(seed, tf.int32)})[sig.IMAGES_OUTPUT].numpy()
        training.write_png(path, training.image_grid(training.grid_rows(images, 8)))

    @staticmethod
    def _write_interpolations(signatures, seed, path, rows: int = 8, steps: int = 10):
        """Walks through the latent space (the DCGAN paper's check): each row decodes `steps` points on
        the great circle between two fixed latent points. Smooth rows show a generator that learned a
        continuous space; jumps between unrelated images hint at memorised training images. Only for
        models with a `generate` signature; returns the path or None."""
        if sig.GENERATE not in signatures:
            return None
        generate = signatures[sig.GENERATE]
        latent_dim = int(generate.structured_input_signature[1][sig.LATENT_INPUT].shape[-1])
        latents = sampling.interpolation_latents(latent_dim, seed, rows, steps)
        images = generate(**{sig.LATENT_INPUT: tf.constant(latents)})[sig.IMAGES_OUTPUT].numpy()
        return training.write_png(path, training.image_grid(training.grid_rows(images, steps)))

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
        scores = read_model_rows(os.path.join(tmp_dir, "scores"))
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
