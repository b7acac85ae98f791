"""DomainClassifier on generated digits: training and export, the classify signature, reuse and bad input."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx import types
from tfx.components.example_gen import utils as example_gen_utils
from tfx.types import artifact_utils, standard_artifacts

from components.domain_classifier import DomainClassifier, describe, load_classifier, reusable
from components.domain_classifier import executor as executor_lib
from components.domain_classifier import model as model_lib
from conftest import make_digit_images, serialized_examples, write_split
from trainer_modules import contract

TRAIN_COUNT, EVAL_COUNT = 48, 20
PROPERTIES = {"num_classes": 10, "image_shape": "[28, 28, 1]", "train_steps": 6, "batch_size": 16, "seed": 3,
              "dataset": "generated"}
CONFIG = executor_lib.classifier_config(PROPERTIES)
CONFIG_ID = model_lib.config_hash(CONFIG)


def write_examples(directory, train_records, eval_records, fingerprint="fp-1"):
    """A raw Examples artifact (Split-train / Split-eval of gzipped tf.Examples) at directory."""
    write_split(str(directory), contract.TRAIN_SPLIT, train_records)
    write_split(str(directory), contract.EVAL_SPLIT, eval_records)
    examples = standard_artifacts.Examples()
    examples.uri = str(directory)
    examples.split_names = artifact_utils.encode_split_names([contract.TRAIN_SPLIT, contract.EVAL_SPLIT])
    if fingerprint:
        examples.set_string_custom_property(example_gen_utils.FINGERPRINT_PROPERTY_NAME, fingerprint)
    examples.set_string_custom_property(executor_lib.EXAMPLE_COUNTS,
                                        json.dumps({"eval": len(eval_records), "train": len(train_records)}))
    return examples


def labelled_records():
    """Generated digits with labels 0..9 in turn (unrelated to the strokes, so accuracy stays well below 1)."""
    images = make_digit_images(TRAIN_COUNT + EVAL_COUNT, seed=4)
    labels = np.arange(len(images)) % 10
    records = serialized_examples(images, labels)
    return records[:TRAIN_COUNT], records[TRAIN_COUNT:]


def run(examples, output_dir, min_accuracy, previous=None, **overrides):
    model = standard_artifacts.Model()
    model.uri = str(output_dir)
    inputs = {executor_lib.EXAMPLES_KEY: [examples]}
    if previous is not None:
        inputs[executor_lib.PREVIOUS_KEY] = previous
    properties = {**PROPERTIES, executor_lib.MIN_ACCURACY_KEY: min_accuracy, **overrides}
    executor_lib.Executor().Do(inputs, {executor_lib.MODEL_KEY: [model]}, properties)
    return model


def read_metrics(model):
    with open(os.path.join(model.uri, model_lib.METRICS_FILE), "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def raw_examples(tmp_path_factory):
    return write_examples(tmp_path_factory.mktemp("raw") / "examples", *labelled_records())


@pytest.fixture(scope="module")
def trained(raw_examples, tmp_path_factory):
    """A classifier trained for a few steps with min_accuracy 0 (so trustworthy)."""
    model = run(raw_examples, tmp_path_factory.mktemp("trained") / "model", min_accuracy=0.0)
    model.id = 21
    return model


@pytest.fixture
def no_training(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the classifier was trained although a matching one was given")

    monkeypatch.setattr(model_lib, "train", fail)


def test_trains_exports_and_records_properties(trained):
    assert tf.io.gfile.exists(os.path.join(trained.uri, model_lib.SERVING_DIR, "saved_model.pb"))
    metrics = json.loads(read_metrics(trained))
    accuracy = trained.get_float_custom_property(executor_lib.TEST_ACCURACY)
    assert 0.0 <= accuracy <= 1.0 and metrics["test_accuracy"] == pytest.approx(accuracy)
    assert len(metrics["per_class_accuracy"]) == 10 and metrics["eval_class_counts"] == [2] * 10
    assert metrics["train_examples"] == TRAIN_COUNT and metrics["eval_examples"] == EVAL_COUNT
    assert metrics["training_seconds"] > 0 and metrics["trustworthy"] is True
    assert trained.get_float_custom_property(executor_lib.MIN_ACCURACY) == 0.0
    assert trained.get_int_custom_property(executor_lib.TRUSTWORTHY) == 1
    assert trained.get_string_custom_property(executor_lib.DATA_FINGERPRINT) == "fp-1"
    assert trained.get_string_custom_property(executor_lib.CLASSIFIER_CONFIG) == model_lib.config_hash(CONFIG)
    assert trained.get_string_custom_property(executor_lib.DATASET) == "generated"
    assert trained.get_int_custom_property(executor_lib.TRAIN_EXAMPLES) == TRAIN_COUNT
    assert trained.get_int_custom_property(executor_lib.EVAL_EXAMPLES) == EVAL_COUNT
    assert trained.has_custom_property(executor_lib.REUSED_FROM)
    assert trained.get_int_custom_property(executor_lib.REUSED_FROM) == 0
    assert describe(trained) == {
        "test_accuracy": accuracy, "min_accuracy": 0.0, "trustworthy": True, "dataset": "generated",
        "task": model_lib.CLASSES, "reused_from": 0, "reused_from_uri": "", "uri": trained.uri,
    }


def test_classify_signature_shapes_and_probabilities(trained):
    loaded = tf.saved_model.load(os.path.join(trained.uri, model_lib.SERVING_DIR))
    assert list(loaded.signatures) == [model_lib.CLASSIFY]
    signature = loaded.signatures[model_lib.CLASSIFY]
    assert signature.structured_input_signature[1][model_lib.IMAGES_INPUT].shape.as_list() == [None, 28, 28, 1]
    assert {name: spec.dtype for name, spec in signature.structured_outputs.items()} == {
        name: tf.float32 for name in model_lib.OUTPUTS}

    images = make_digit_images(11, seed=9).astype(np.float32) / 255.0
    for source in (trained, trained.uri):
        classifier = load_classifier(source, batch_size=4)  # three batches
        outputs = classifier(images)
        assert outputs["features"].shape == (11, model_lib.FEATURE_DIM)
        assert outputs["probabilities"].shape == outputs["logits"].shape == (11, 10)
        assert all(value.dtype == np.float32 for value in outputs.values())
        np.testing.assert_allclose(outputs["probabilities"].sum(axis=1), 1.0, atol=1e-5)
        assert (outputs["features"] >= 0).all()
    np.testing.assert_allclose(classifier(images[:3])["features"], outputs["features"][:3], atol=1e-5)
    assert classifier(images[:0])["features"].shape == (0, model_lib.FEATURE_DIM)
    with pytest.raises(ValueError, match=r"expects images \[N, 28, 28, 1\]"):
        classifier(images[..., 0])


def test_reuse_copies_the_matching_classifier_without_training(raw_examples, trained, tmp_path, no_training):
    reused = run(raw_examples, tmp_path / "model", min_accuracy=0.0, previous=[trained])
    assert reused.get_int_custom_property(executor_lib.REUSED_FROM) == 21
    assert read_metrics(reused) == read_metrics(trained)
    for key in (executor_lib.TEST_ACCURACY, executor_lib.MIN_ACCURACY):
        assert reused.get_float_custom_property(key) == trained.get_float_custom_property(key)
    for key in (executor_lib.DATA_FINGERPRINT, executor_lib.CLASSIFIER_CONFIG, executor_lib.EXAMPLE_COUNTS):
        assert reused.get_string_custom_property(key) == trained.get_string_custom_property(key)
    for key in (executor_lib.TRUSTWORTHY, executor_lib.TRAIN_EXAMPLES, executor_lib.EVAL_EXAMPLES):
        assert reused.get_int_custom_property(key) == trained.get_int_custom_property(key)
    images = make_digit_images(5, seed=2).astype(np.float32) / 255.0
    expected = load_classifier(trained)(images)["features"]
    np.testing.assert_allclose(load_classifier(reused)(images)["features"], expected)


def test_reuse_dir_keeps_classifiers_for_runs_without_ml_metadata(raw_examples, trained, tmp_path, no_training):
    """Compiled pipelines have no ML Metadata resolver: a classifier kept in reuse_dir stands in for it."""
    shelf = tmp_path / "domain_classifiers"
    first = run(raw_examples, tmp_path / "first", min_accuracy=0.0, previous=[trained], reuse_dir=str(shelf))
    assert first.get_int_custom_property(executor_lib.REUSED_FROM) == 21
    kept = executor_lib.kept_classifier(str(shelf), raw_examples, CONFIG_ID)
    assert kept is not None and kept.startswith(str(shelf / CONFIG_ID))
    with open(os.path.join(kept, executor_lib.KEPT_PROPERTIES_FILE)) as f:
        assert json.load(f)[executor_lib.TEST_ACCURACY] == trained.get_float_custom_property(
            executor_lib.TEST_ACCURACY)

    # A later run with no `previous` (as on Vertex) copies the kept classifier instead of training.
    second = run(raw_examples, tmp_path / "second", min_accuracy=0.0, reuse_dir=str(shelf))
    assert second.get_int_custom_property(executor_lib.REUSED_FROM) == 0
    assert second.get_string_custom_property(executor_lib.REUSED_FROM_URI) == kept
    assert describe(second)[executor_lib.REUSED_FROM_URI] == kept
    assert read_metrics(second) == read_metrics(trained)
    for key in (executor_lib.DATA_FINGERPRINT, executor_lib.CLASSIFIER_CONFIG, executor_lib.EXAMPLE_COUNTS,
                executor_lib.DATASET, executor_lib.TASK):
        assert second.get_string_custom_property(key) == trained.get_string_custom_property(key)
    for key in (executor_lib.TRUSTWORTHY, executor_lib.TRAIN_EXAMPLES, executor_lib.EVAL_EXAMPLES):
        assert second.get_int_custom_property(key) == trained.get_int_custom_property(key)
    images = make_digit_images(5, seed=2).astype(np.float32) / 255.0
    np.testing.assert_allclose(load_classifier(second)(images)["features"],
                               load_classifier(trained)(images)["features"])

    # Other example counts (another max_examples_per_split) or an incomplete copy: not reused.
    fewer = write_examples(tmp_path / "fewer", *[records[:30] for records in labelled_records()])
    assert executor_lib.kept_classifier(str(shelf), fewer, CONFIG_ID) is None
    with pytest.raises(AssertionError, match="was trained"):
        run(fewer, tmp_path / "third", min_accuracy=0.0, reuse_dir=str(shelf))
    os.remove(os.path.join(kept, executor_lib.KEPT_PROPERTIES_FILE))
    assert executor_lib.kept_classifier(str(shelf), raw_examples, CONFIG_ID) is None


def test_trustworthy_follows_min_accuracy(raw_examples, trained, tmp_path, no_training):
    accuracy = trained.get_float_custom_property(executor_lib.TEST_ACCURACY)
    at_threshold = run(raw_examples, tmp_path / "at", min_accuracy=accuracy, previous=[trained])
    assert at_threshold.get_int_custom_property(executor_lib.TRUSTWORTHY) == 1
    above = float(np.nextafter(accuracy, 2.0))
    strict = run(raw_examples, tmp_path / "above", min_accuracy=above, previous=[trained])
    assert strict.get_int_custom_property(executor_lib.TRUSTWORTHY) == 0
    assert describe(strict)["trustworthy"] is False and describe(strict)["min_accuracy"] == above


def test_other_data_retrains_and_can_be_untrustworthy(trained, tmp_path):
    """Another fingerprint is not reused; labels unrelated to the images stay below min_accuracy 1.0."""
    examples = write_examples(tmp_path / "examples", *labelled_records(), fingerprint="fp-2")
    model = run(examples, tmp_path / "model", min_accuracy=1.0, previous=[trained])
    assert model.get_int_custom_property(executor_lib.REUSED_FROM) == 0
    assert model.get_string_custom_property(executor_lib.DATA_FINGERPRINT) == "fp-2"
    assert json.loads(read_metrics(model))["trained_at"]
    assert model.get_float_custom_property(executor_lib.TEST_ACCURACY) < 1.0
    assert model.get_int_custom_property(executor_lib.TRUSTWORTHY) == 0


def _classifier(artifact_id, fingerprint="fp-1", config="cfg", counts='{"eval": 20, "train": 48}'):
    artifact = standard_artifacts.Model()
    artifact.id = artifact_id
    artifact.set_string_custom_property(executor_lib.DATA_FINGERPRINT, fingerprint)
    artifact.set_string_custom_property(executor_lib.CLASSIFIER_CONFIG, config)
    artifact.set_string_custom_property(executor_lib.EXAMPLE_COUNTS, counts)
    return artifact


def test_reusable_needs_same_fingerprint_counts_and_config(raw_examples):
    assert reusable([], raw_examples, "cfg") is None
    assert reusable(None, raw_examples, "cfg") is None
    assert reusable([_classifier(1)], raw_examples, "cfg").id == 1
    assert reusable([_classifier(1), _classifier(4), _classifier(2)], raw_examples, "cfg").id == 4
    assert reusable([_classifier(1, fingerprint="fp-2")], raw_examples, "cfg") is None
    assert reusable([_classifier(1, config="other")], raw_examples, "cfg") is None
    assert reusable([_classifier(1, counts='{"eval": 20, "train": 10}')], raw_examples, "cfg") is None
    unfingerprinted = standard_artifacts.Examples()
    assert reusable([_classifier(1, fingerprint="")], unfingerprinted, "cfg") is None


def test_config_hash_changes_with_the_recipe():
    changed = executor_lib.classifier_config({**PROPERTIES, "train_steps": 7})
    assert model_lib.config_hash(changed) != model_lib.config_hash(CONFIG)
    assert model_lib.config_hash(executor_lib.classifier_config(dict(PROPERTIES))) == model_lib.config_hash(CONFIG)
    assert executor_lib.classifier_config({}) == model_lib.ClassifierConfig()


def test_examples_without_label_are_rejected(tmp_path):
    images = make_digit_images(4, seed=1)
    unlabelled = [
        tf.train.Example(features=tf.train.Features(feature={contract.IMAGE_KEY: tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[tf.io.encode_png(image).numpy()]))})).SerializeToString()
        for image in images
    ]
    examples = write_examples(tmp_path / "examples", unlabelled, unlabelled)
    with pytest.raises(ValueError, match=r"split 'train', file .*Split-train.*record 0: has 0 'label' values; "
                                         r"expected one int64 'label' in \[0, 10\)"):
        run(examples, tmp_path / "model", min_accuracy=0.5)


def test_labels_outside_num_classes_are_rejected(tmp_path):
    images = make_digit_images(6, seed=1)
    examples = write_examples(tmp_path / "examples", serialized_examples(images[:3], [0, 1, 2]),
                              serialized_examples(images[3:], [3, 12, 4]))
    with pytest.raises(ValueError, match=r"split 'eval', file .*Split-eval.*record 1: label 12 is outside \[0, 10\)"):
        run(examples, tmp_path / "model", min_accuracy=0.5)


def test_empty_split_is_rejected(tmp_path):
    images = make_digit_images(3, seed=1)
    examples = write_examples(tmp_path / "examples", serialized_examples(images, [0, 1, 2]), [])
    with pytest.raises(ValueError, match=r"split 'eval' holds no examples .*Split-eval"):
        run(examples, tmp_path / "model", min_accuracy=0.5)


def test_wrong_image_shape_is_rejected(raw_examples, tmp_path):
    with pytest.raises(ValueError, match=r"split 'train', file .*: an 'image' is not a PNG of shape \[32, 32, 1\]"):
        run(raw_examples, tmp_path / "model", min_accuracy=0.5, image_shape="[32, 32, 1]")


def test_component_wires_channels_and_parameters():
    examples = types.Channel(type=standard_artifacts.Examples)
    previous = types.Channel(type=standard_artifacts.Model)
    component = DomainClassifier(examples=examples, previous=previous, min_accuracy=0.97, image_shape=(28, 28, 1),
                                 dataset="mnist")
    assert component.exec_properties["image_shape"] == "[28, 28, 1]"
    assert component.exec_properties["min_accuracy"] == 0.97
    assert component.exec_properties["train_steps"] == model_lib.DEFAULT_TRAIN_STEPS
    assert component.inputs["previous"] is previous
    assert component.outputs["model"].type == standard_artifacts.Model
    assert DomainClassifier(examples=examples, min_accuracy=0.85).inputs.get("previous") is None
    with pytest.raises(ValueError, match="min_accuracy"):
        DomainClassifier(examples=examples, min_accuracy=97)
    with pytest.raises(ValueError, match="image_shape"):
        DomainClassifier(examples=examples, min_accuracy=0.9, image_shape=[28, 28])


# ---------------------------------------------------------------------------
# The "attributes" task (CelebA's 40 face attributes): multi-label, sigmoid outputs


def attribute_records(count, num_attributes, seed, bad_value=None):
    """64x64 RGB PNG examples whose first attribute says whether the image is bright; the rest are random."""
    rng = np.random.default_rng(seed)
    records = []
    for index in range(count):
        bright = index % 2
        image = rng.integers(150 if bright else 0, 256 if bright else 100, (16, 16, 3), dtype=np.uint8)
        image = np.kron(image, np.ones((4, 4, 1), np.uint8))
        attributes = rng.integers(0, 2, num_attributes)
        attributes[0] = bright
        if bad_value is not None and index == 3:
            attributes[1] = bad_value
        feature = {
            contract.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[tf.io.encode_png(image).numpy()])),
            contract.ATTRIBUTES_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=attributes.tolist())),
        }
        records.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return records


ATTRIBUTE_PROPERTIES = {"num_classes": 5, "image_shape": "[64, 64, 3]", "train_steps": 30, "batch_size": 16,
                        "task": model_lib.ATTRIBUTES}


def test_attribute_classifier_learns_multi_label_targets(tmp_path):
    examples = write_examples(tmp_path / "faces", attribute_records(48, 5, seed=1), attribute_records(20, 5, seed=2))
    model = run(examples, tmp_path / "model", min_accuracy=0.0, **ATTRIBUTE_PROPERTIES)
    report = json.loads(read_metrics(model))
    assert report["task"] == model_lib.ATTRIBUTES
    assert len(report["per_class_accuracy"]) == 5 and len(report["attribute_rates"]) == 5
    assert report["per_class_accuracy"][0] == 1.0  # brightness is learnable; the random attributes are not
    assert 0.0 <= report["majority_baseline_accuracy"] <= 1.0
    assert report["test_accuracy"] == pytest.approx(np.mean(report["per_class_accuracy"]))
    assert len(report["eval_positives"]) == 5
    assert describe(model)["task"] == model_lib.ATTRIBUTES

    classifier = load_classifier(model)
    assert classifier.task == model_lib.ATTRIBUTES
    outputs = classifier(np.random.default_rng(0).uniform(size=(3, 64, 64, 3)).astype(np.float32))
    probabilities = outputs[model_lib.PROBABILITIES_OUTPUT]
    assert probabilities.shape == (3, 5) and outputs[model_lib.FEATURES_OUTPUT].shape == (3, model_lib.FEATURE_DIM)
    np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-outputs[model_lib.LOGITS_OUTPUT])), rtol=1e-5)


def test_attribute_values_other_than_0_and_1_are_named(tmp_path):
    examples = write_examples(tmp_path / "faces", attribute_records(8, 5, seed=1, bad_value=-1),
                              attribute_records(4, 5, seed=2))
    with pytest.raises(ValueError, match=r"split 'train', file .*, record 3: 'attributes' holds \[-1\]; "
                                         r"expected 0 or 1"):
        run(examples, tmp_path / "model", min_accuracy=0.0, **ATTRIBUTE_PROPERTIES)


def test_attribute_count_mismatch_is_named(tmp_path):
    examples = write_examples(tmp_path / "faces", attribute_records(8, 4, seed=1), attribute_records(4, 4, seed=2))
    with pytest.raises(ValueError, match=r"record 0: has 4 'attributes' values; expected 5 int64 'attributes'"):
        run(examples, tmp_path / "model", min_accuracy=0.0, **ATTRIBUTE_PROPERTIES)
