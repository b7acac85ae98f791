"""DomainClassifier executor: reuses a matching earlier classifier, or validates the data, trains and exports.

Reuse: an artifact of `previous` whose `data_fingerprint` (and example counts) equal
this Examples' and whose `classifier_config` equals the current code and config hash is
copied into the output URI (TFX keeps outputs at the URI it gave), with `reused_from`
set to its id. Otherwise both splits are scanned (every record needs a PNG `image` of
the configured shape and an int64 `label` in [0, num_classes), or for the "attributes" task
`num_classes` int64 `attributes` that are 0 or 1), the classifier is
trained on `train`, exported, and its accuracy measured on `eval` through the exported
signature.

Reuse without ML Metadata: with `reuse_dir` (a local or gs:// folder) every classifier this
executor trains or reuses is also kept there under `<classifier_config>/<data_fingerprint>-
<hash of example_counts>/`, and a run that finds no match in `previous` copies a matching kept
classifier instead of training. Compiled pipelines (Kubeflow / Vertex, where the ML Metadata
resolver of local runs cannot be compiled) share classifiers across runs this way.
"""
import json
import logging
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from tfx import types
from tfx.components.example_gen import utils as example_gen_utils
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils

from components.domain_classifier import model as model_lib
from components.mnist_example_gen.executor import EXAMPLE_COUNTS_PROPERTY
from trainer_modules import contract
from trainer_modules import preprocessing

# Channels and execution properties.
EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY
PREVIOUS_KEY = "previous"
MODEL_KEY = standard_component_specs.MODEL_KEY
NUM_CLASSES_KEY = "num_classes"
IMAGE_SHAPE_KEY = "image_shape"
TRAIN_STEPS_KEY = "train_steps"
BATCH_SIZE_KEY = "batch_size"
MIN_ACCURACY_KEY = "min_accuracy"
SEED_KEY = "seed"
DATASET_KEY = "dataset"
TASK_KEY = "task"
REUSE_DIR_KEY = "reuse_dir"

# Custom properties of the output Model artifact.
TEST_ACCURACY = "test_accuracy"
MIN_ACCURACY = "min_accuracy"
TRUSTWORTHY = "trustworthy"
DATA_FINGERPRINT = "data_fingerprint"
EXAMPLE_COUNTS = EXAMPLE_COUNTS_PROPERTY  # copied from the Examples: the fingerprint ignores max_examples_per_split
CLASSIFIER_CONFIG = "classifier_config"
DATASET = "dataset"
TRAIN_EXAMPLES = "train_examples"
EVAL_EXAMPLES = "eval_examples"
REUSED_FROM = "reused_from"
REUSED_FROM_URI = "reused_from_uri"  # where a reused classifier was copied from ("" when trained)
TASK = "task"

SCAN_BATCH = 1024
KEPT_PROPERTIES_FILE = "properties.json"  # written last: a kept classifier without it is incomplete
_STRING_PROPERTIES = (DATA_FINGERPRINT, EXAMPLE_COUNTS, CLASSIFIER_CONFIG, DATASET, TASK)
_INT_PROPERTIES = (TRAIN_EXAMPLES, EVAL_EXAMPLES)


def classifier_config(exec_properties: Dict[str, Any]) -> model_lib.ClassifierConfig:
    """The ClassifierConfig of the execution properties, defaults filled in."""

    def value(key, default):
        found = exec_properties.get(key)
        return default if found is None or found == "" else found

    return model_lib.ClassifierConfig(
        num_classes=int(value(NUM_CLASSES_KEY, model_lib.DEFAULT_NUM_CLASSES)),
        image_shape=model_lib.parse_image_shape(value(IMAGE_SHAPE_KEY, list(model_lib.DEFAULT_IMAGE_SHAPE))),
        train_steps=int(value(TRAIN_STEPS_KEY, model_lib.DEFAULT_TRAIN_STEPS)),
        batch_size=int(value(BATCH_SIZE_KEY, model_lib.DEFAULT_BATCH_SIZE)),
        seed=int(value(SEED_KEY, 0)),
        task=str(value(TASK_KEY, model_lib.CLASSES)),
    )


def check_min_accuracy(min_accuracy) -> float:
    if min_accuracy is None or not 0.0 <= float(min_accuracy) <= 1.0:
        raise ValueError(f"{MIN_ACCURACY_KEY} must be a fraction in [0, 1], got {min_accuracy!r}")
    return float(min_accuracy)


# ---------------------------------------------------------------------------
# Reuse


def data_fingerprint(examples: types.Artifact) -> str:
    return examples.get_string_custom_property(example_gen_utils.FINGERPRINT_PROPERTY_NAME)


def reusable(
    previous_artifacts: Sequence[types.Artifact], examples_artifact: types.Artifact, classifier_config: str
) -> Optional[types.Artifact]:
    """The newest earlier classifier trained on the same data with the same code and config, or None.

    Same data: equal non-empty `input_fingerprint` and equal `example_counts` (empty on both
    sides counts as equal). Same code and config: equal `classifier_config` hash.
    """
    fingerprint = data_fingerprint(examples_artifact)
    if not fingerprint:
        return None
    counts = examples_artifact.get_string_custom_property(EXAMPLE_COUNTS_PROPERTY)
    matches = [
        artifact for artifact in previous_artifacts or []
        if artifact.get_string_custom_property(DATA_FINGERPRINT) == fingerprint
        and artifact.get_string_custom_property(EXAMPLE_COUNTS) == counts
        and artifact.get_string_custom_property(CLASSIFIER_CONFIG) == classifier_config
    ]
    return max(matches, key=lambda artifact: artifact.id) if matches else None


def describe(model_artifact: types.Artifact) -> Dict[str, Any]:
    """What the GenerativeEvaluator reports beside classifier metrics: how far to trust them."""
    return {
        TEST_ACCURACY: model_artifact.get_float_custom_property(TEST_ACCURACY),
        MIN_ACCURACY: model_artifact.get_float_custom_property(MIN_ACCURACY),
        TRUSTWORTHY: bool(model_artifact.get_int_custom_property(TRUSTWORTHY)),
        DATASET: model_artifact.get_string_custom_property(DATASET),
        TASK: model_artifact.get_string_custom_property(TASK) or model_lib.CLASSES,
        REUSED_FROM: model_artifact.get_int_custom_property(REUSED_FROM),
        REUSED_FROM_URI: model_artifact.get_string_custom_property(REUSED_FROM_URI),
        "uri": model_artifact.uri,
    }


# ---------------------------------------------------------------------------
# Data checks


def split_files(examples: types.Artifact, split: str) -> List[str]:
    """The split's record files; raises naming the split and folder when there are none."""
    names = artifact_utils.decode_split_names(examples.split_names) if examples.split_names else []
    if split not in names:
        raise ValueError(
            f"Examples at {examples.uri} have no {split!r} split (splits: {names}); "
            f"the domain classifier needs labelled {contract.TRAIN_SPLIT!r} and {contract.EVAL_SPLIT!r} splits"
        )
    split_uri = artifact_utils.get_split_uri([examples], split)
    files = sorted(tf.io.gfile.glob(os.path.join(split_uri, "*")))
    if not files:
        raise ValueError(f"split {split!r} at {split_uri} is empty: expected gzipped TFRecord files of tf.Examples")
    return files


def scan_split(split: str, files: Sequence[str], config: model_lib.ClassifierConfig) -> Tuple[np.ndarray, int]:
    """Checks every record of a split; returns (examples per class or positives per attribute, examples).

    Each record needs one `image` (PNG of config.image_shape) and either one int64 `label` in
    [0, num_classes) or, for the "attributes" task, num_classes int64 `attributes` of 0 or 1;
    the first bad record is named by file and index.
    """
    attributes = config.task == model_lib.ATTRIBUTES
    target_key = contract.ATTRIBUTES_KEY if attributes else contract.LABEL_KEY
    per_record = config.num_classes if attributes else 1
    counts = np.zeros(config.num_classes, np.int64)
    spec = {
        contract.IMAGE_KEY: tf.io.VarLenFeature(tf.string),
        target_key: tf.io.VarLenFeature(tf.int64),
    }
    if attributes:
        expected_target = f"{config.num_classes} int64 {target_key!r} values of 0 or 1"
    else:
        expected_target = f"one int64 {target_key!r} in [0, {config.num_classes})"
    examples = 0
    for path in files:
        offset = 0
        try:
            for batch in model_lib.records([path]).batch(SCAN_BATCH):
                where = f"split {split!r}, file {path}, records {offset}..{offset + len(batch) - 1}"
                try:
                    parsed = tf.io.parse_example(batch, spec)
                except tf.errors.InvalidArgumentError as error:
                    raise ValueError(f"{where}: not tf.Examples with a PNG {contract.IMAGE_KEY!r} and "
                                     f"{expected_target} ({error.message})") from error
                for key, wanted in ((contract.IMAGE_KEY, 1), (target_key, per_record)):
                    values_per_record = np.bincount(parsed[key].indices[:, 0].numpy(), minlength=len(batch))
                    bad = np.flatnonzero(values_per_record != wanted)
                    if bad.size:
                        what = expected_target if key == target_key else f"one PNG {key!r}"
                        raise ValueError(f"split {split!r}, file {path}, record {offset + int(bad[0])}: has "
                                         f"{int(values_per_record[bad[0]])} {key!r} values; expected {what}")
                targets = tf.sparse.to_dense(parsed[target_key]).numpy()
                if attributes:
                    bad_rows = np.flatnonzero(((targets != 0) & (targets != 1)).any(axis=1))
                    if bad_rows.size:
                        row = targets[bad_rows[0]]
                        raise ValueError(f"split {split!r}, file {path}, record {offset + int(bad_rows[0])}: "
                                         f"{target_key!r} holds {sorted(set(row.tolist()) - {0, 1})}; "
                                         f"expected 0 or 1 (CelebA's -1 is written as 0)")
                    counts += targets.sum(axis=0)
                else:
                    labels = targets[:, 0]
                    bad = np.flatnonzero((labels < 0) | (labels >= config.num_classes))
                    if bad.size:
                        raise ValueError(f"split {split!r}, file {path}, record {offset + int(bad[0])}: label "
                                         f"{int(labels[bad[0]])} is outside [0, {config.num_classes}) "
                                         f"(num_classes={config.num_classes})")
                    counts += np.bincount(labels, minlength=config.num_classes)
                try:
                    preprocessing.decode_images(
                        tf.sparse.to_dense(parsed[contract.IMAGE_KEY])[:, 0], config.image_shape)
                except tf.errors.InvalidArgumentError as error:
                    raise ValueError(f"{where}: an {contract.IMAGE_KEY!r} is not a PNG of shape "
                                     f"{list(config.image_shape)} ({error.message})") from error
                offset += len(batch)
                examples += len(batch)
        except (tf.errors.DataLossError, tf.errors.OutOfRangeError) as error:
            raise ValueError(f"split {split!r}, file {path}: cannot be read as gzipped TFRecords after "
                             f"{offset} records ({error.message})") from error
    if not examples:
        raise ValueError(f"split {split!r} holds no examples (files: {', '.join(files)}); "
                         f"expected tf.Examples with a PNG {contract.IMAGE_KEY!r} and {expected_target}")
    return counts, examples


def evaluate(classifier: model_lib.Classifier, files: Sequence[str], config: model_lib.ClassifierConfig
             ) -> Dict[str, Any]:
    """Accuracy over the files' examples through the exported signature.

    Classes: overall and per-class accuracy. Attributes: the mean over attributes of the
    per-attribute accuracy (probability >= 0.5 counts as present), each attribute's accuracy,
    and the mean accuracy of always answering an attribute's majority value on these examples,
    which a useful attribute classifier has to beat (CelebA's is about 0.80).
    """
    num_classes = config.num_classes
    correct = np.zeros(num_classes, np.int64)
    total = np.zeros(num_classes, np.int64)
    positives = np.zeros(num_classes, np.int64)
    for images, targets in model_lib.eval_dataset(files, config):
        probabilities = classifier(images.numpy())[model_lib.PROBABILITIES_OUTPUT]
        targets = targets.numpy()
        if config.task == model_lib.ATTRIBUTES:
            correct += ((probabilities >= 0.5) == (targets == 1)).sum(axis=0)
            total += len(targets)
            positives += targets.sum(axis=0)
        else:
            predicted = np.argmax(probabilities, axis=-1)
            total += np.bincount(targets, minlength=num_classes)
            correct += np.bincount(targets[predicted == targets], minlength=num_classes)
    if config.task == model_lib.ATTRIBUTES:
        per_attribute = correct / np.maximum(total, 1)
        rates = positives / np.maximum(total, 1)
        return {
            "accuracy": float(per_attribute.mean()),
            "per_class_accuracy": [float(a) for a in per_attribute],
            "majority_baseline_accuracy": float(np.maximum(rates, 1 - rates).mean()),
            "attribute_rates": [float(r) for r in rates],
        }
    return {
        "accuracy": float(correct.sum() / total.sum()),
        "per_class_accuracy": [float(c / t) if t else None for c, t in zip(correct, total)],
    }


# ---------------------------------------------------------------------------
# The executor


class Executor(base_executor.BaseExecutor):
    """Trains (or reuses) the domain classifier and records how far it can be trusted."""

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        config = classifier_config(exec_properties)
        min_accuracy = check_min_accuracy(exec_properties.get(MIN_ACCURACY_KEY))
        dataset = exec_properties.get(DATASET_KEY) or ""
        examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        output = artifact_utils.get_single_instance(output_dict[MODEL_KEY])
        config_id = model_lib.config_hash(config)

        reuse_dir = exec_properties.get(REUSE_DIR_KEY) or ""
        match = reusable(input_dict.get(PREVIOUS_KEY) or [], examples, config_id)
        kept = kept_classifier(reuse_dir, examples, config_id)
        if match is not None and self._reuse(match.uri, _artifact_properties(match), match.id, output,
                                             min_accuracy, dataset):
            pass
        elif kept is None or not self._reuse(kept, _read_properties(kept), 0, output, min_accuracy, dataset):
            if not data_fingerprint(examples):
                logging.info("DomainClassifier: Examples at %s carry no %s; training without reuse",
                             examples.uri, example_gen_utils.FINGERPRINT_PROPERTY_NAME)
            self._train(examples, output, config, config_id, min_accuracy, dataset)
        if reuse_dir and data_fingerprint(examples):
            keep_classifier(output, kept_path(reuse_dir, examples, config_id))  # once per data and config

    @staticmethod
    def _reuse(source_uri: str, properties: Dict[str, Any], source_id: int, output: types.Artifact,
               min_accuracy: float, dataset: str) -> bool:
        """Copies a matching earlier classifier (an artifact, or one kept in reuse_dir) into the output.

        False, and a warning, when its files are gone.
        """
        source = os.path.join(source_uri, model_lib.SERVING_DIR)
        metrics = os.path.join(source_uri, model_lib.METRICS_FILE)
        if not (tf.io.gfile.exists(os.path.join(source, "saved_model.pb")) and tf.io.gfile.exists(metrics)):
            logging.warning("DomainClassifier: the classifier at %s matches but its files are missing; training",
                            source_uri)
            return False
        io_utils.copy_dir(source, os.path.join(output.uri, model_lib.SERVING_DIR))
        io_utils.copy_file(metrics, os.path.join(output.uri, model_lib.METRICS_FILE), overwrite=True)
        for key in _STRING_PROPERTIES:
            output.set_string_custom_property(key, properties.get(key) or "")
        output.set_string_custom_property(DATASET, dataset or properties.get(DATASET) or "")
        output.set_string_custom_property(TASK, properties.get(TASK) or model_lib.CLASSES)
        for key in _INT_PROPERTIES:
            output.set_int_custom_property(key, int(properties.get(key) or 0))
        _record_judgement(output, float(properties[TEST_ACCURACY]), min_accuracy)
        output.set_int_custom_property(REUSED_FROM, source_id)
        output.set_string_custom_property(REUSED_FROM_URI, source_uri)
        logging.info("DomainClassifier: reused the classifier at %s (test accuracy %.4f, same data and config)",
                     source_uri, float(properties[TEST_ACCURACY]))
        return True

    @staticmethod
    def _train(examples, output, config, config_id, min_accuracy, dataset) -> None:
        files = {split: split_files(examples, split) for split in (contract.TRAIN_SPLIT, contract.EVAL_SPLIT)}
        scanned = {split: scan_split(split, paths, config) for split, paths in files.items()}
        counts = {split: value[0] for split, value in scanned.items()}
        train_examples, eval_examples = (scanned[split][1] for split in (contract.TRAIN_SPLIT, contract.EVAL_SPLIT))
        logging.info("DomainClassifier: training %s (%s) on %d examples for %d steps of %d",
                     config_id, config.task, train_examples, config.train_steps, config.batch_size)
        start = time.perf_counter()
        extractor = model_lib.train(files[contract.TRAIN_SPLIT], config)
        training_seconds = time.perf_counter() - start
        export_dir = model_lib.export(extractor, config.image_shape, os.path.join(output.uri, model_lib.SERVING_DIR),
                                      config.task)
        results = evaluate(model_lib.load_classifier(export_dir), files[contract.EVAL_SPLIT], config)

        accuracy = results["accuracy"]
        count_name = "positives" if config.task == model_lib.ATTRIBUTES else "class_counts"
        report = {
            "task": config.task,
            "test_accuracy": accuracy,
            **{k: v for k, v in results.items() if k != "accuracy"},
            "min_accuracy": min_accuracy,
            "trustworthy": accuracy >= min_accuracy,
            "train_examples": train_examples,
            "eval_examples": eval_examples,
            f"train_{count_name}": counts[contract.TRAIN_SPLIT].tolist(),
            f"eval_{count_name}": counts[contract.EVAL_SPLIT].tolist(),
            "training_seconds": round(training_seconds, 3),
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "dataset": dataset,
            "data_fingerprint": data_fingerprint(examples),
            "classifier_config": config_id,
            "config": config.as_dict(),
        }
        io_utils.write_string_file(os.path.join(output.uri, model_lib.METRICS_FILE), json.dumps(report, indent=2))

        output.set_string_custom_property(DATA_FINGERPRINT, data_fingerprint(examples))
        output.set_string_custom_property(
            EXAMPLE_COUNTS, examples.get_string_custom_property(EXAMPLE_COUNTS_PROPERTY))
        output.set_string_custom_property(CLASSIFIER_CONFIG, config_id)
        output.set_string_custom_property(DATASET, dataset)
        output.set_string_custom_property(TASK, config.task)
        output.set_int_custom_property(TRAIN_EXAMPLES, train_examples)
        output.set_int_custom_property(EVAL_EXAMPLES, eval_examples)
        output.set_int_custom_property(REUSED_FROM, 0)
        output.set_string_custom_property(REUSED_FROM_URI, "")
        _record_judgement(output, accuracy, min_accuracy)
        log = logging.info if accuracy >= min_accuracy else logging.warning
        log("DomainClassifier: test accuracy %.4f on %d eval examples (min %.4f: %s) after %.1f s of training",
            accuracy, eval_examples, min_accuracy, "trustworthy" if accuracy >= min_accuracy else "NOT trustworthy",
            training_seconds)


def _record_judgement(output: types.Artifact, accuracy: float, min_accuracy: float) -> None:
    output.set_float_custom_property(TEST_ACCURACY, accuracy)
    output.set_float_custom_property(MIN_ACCURACY, min_accuracy)
    output.set_int_custom_property(TRUSTWORTHY, int(accuracy >= min_accuracy))


# ---------------------------------------------------------------------------
# Classifiers kept in reuse_dir


def _artifact_properties(artifact: types.Artifact) -> Dict[str, Any]:
    properties: Dict[str, Any] = {key: artifact.get_string_custom_property(key) for key in _STRING_PROPERTIES}
    properties.update({key: artifact.get_int_custom_property(key) for key in _INT_PROPERTIES})
    properties[TEST_ACCURACY] = artifact.get_float_custom_property(TEST_ACCURACY)
    return properties


def kept_path(reuse_dir: str, examples: types.Artifact, config_id: str) -> str:
    """`<reuse_dir>/<classifier_config>/<data_fingerprint>-<example counts hash>`."""
    import hashlib

    counts = examples.get_string_custom_property(EXAMPLE_COUNTS_PROPERTY) or ""
    return os.path.join(reuse_dir, config_id,
                        f"{data_fingerprint(examples)[:32]}-{hashlib.sha256(counts.encode()).hexdigest()[:12]}")


def _read_properties(path: str) -> Dict[str, Any]:
    with tf.io.gfile.GFile(os.path.join(path, KEPT_PROPERTIES_FILE)) as f:
        return json.load(f)


def kept_classifier(reuse_dir: str, examples: types.Artifact, config_id: str) -> Optional[str]:
    """The folder of a complete kept classifier for this data and config, or None."""
    if not reuse_dir or not data_fingerprint(examples):
        return None
    path = kept_path(reuse_dir, examples, config_id)
    if not tf.io.gfile.exists(os.path.join(path, KEPT_PROPERTIES_FILE)):
        return None
    properties = _read_properties(path)
    same = (properties.get(DATA_FINGERPRINT) == data_fingerprint(examples)
            and properties.get(EXAMPLE_COUNTS) == examples.get_string_custom_property(EXAMPLE_COUNTS_PROPERTY)
            and properties.get(CLASSIFIER_CONFIG) == config_id)
    return path if same else None


def keep_classifier(output: types.Artifact, path: str) -> None:
    """Copies the output classifier to `path` (once: a complete copy is never rewritten)."""
    if tf.io.gfile.exists(os.path.join(path, KEPT_PROPERTIES_FILE)):
        return
    io_utils.copy_dir(os.path.join(output.uri, model_lib.SERVING_DIR), os.path.join(path, model_lib.SERVING_DIR))
    io_utils.copy_file(os.path.join(output.uri, model_lib.METRICS_FILE), os.path.join(path, model_lib.METRICS_FILE),
                       overwrite=True)
    io_utils.write_string_file(os.path.join(path, KEPT_PROPERTIES_FILE),
                               json.dumps(_artifact_properties(output), indent=2, sort_keys=True))
    logging.info("DomainClassifier: kept the classifier in %s for later runs", path)
