"""GenerativeEvaluator's sample metrics on two stand-in generators with known behaviour.

The generators are real SavedModels with the `sample(num, seed)` signature every generative
family exports: a *replay generator* that draws eval images at random (a perfect generator
of the eval distribution) and a *collapsed generator* that always returns the same image
(the extreme of mode collapse), and a *copier* that draws the training images themselves (a
generator that memorised its data). The domain classifier is the real DomainClassifier,
trained for a few steps on the raw test data.
"""
import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils, standard_artifacts

from components.domain_classifier import executor as classifier_executor
from components.generative_evaluator import executor as executor_lib
from conftest import write_split
from serving import signatures as sig
from trainer_modules import contract


class _ImageBankGenerator(tf.Module):
    """sample(num, seed) -> images drawn with a stateless RNG from a fixed bank of images in [0, 1]."""

    def __init__(self, bank: np.ndarray):
        super().__init__()
        self.bank = tf.constant(bank, tf.float32)

        @tf.function(input_signature=[tf.TensorSpec([], tf.int32, name=sig.NUM_INPUT),
                                      tf.TensorSpec([], tf.int32, name=sig.SEED_INPUT)])
        def sample(num, seed):
            index = tf.random.stateless_uniform([num], seed=tf.stack([seed, 0]), maxval=tf.shape(self.bank)[0],
                                                dtype=tf.int32)
            return {sig.IMAGES_OUTPUT: tf.gather(self.bank, index)}

        self.sample = sample


def _save_generator(bank, path, model_id):
    module = _ImageBankGenerator(bank)
    tf.saved_model.save(module, os.path.join(path, "Format-Serving"), signatures={sig.SAMPLE: module.sample})
    model = standard_artifacts.Model()
    model.uri = str(path)
    model.id = model_id
    return model


@pytest.fixture(scope="module")
def setup(transformed_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("sample_metrics")
    raw = standard_artifacts.Examples()
    raw.uri = str(root / "raw")
    for split in (contract.TRAIN_SPLIT, contract.EVAL_SPLIT):
        write_split(raw.uri, split, transformed_data["raw"][split])
    raw.split_names = artifact_utils.encode_split_names([contract.TRAIN_SPLIT, contract.EVAL_SPLIT])
    classifier = standard_artifacts.Model()
    classifier.uri = str(root / "classifier")
    classifier_executor.Executor().Do(
        {classifier_executor.EXAMPLES_KEY: [raw]}, {classifier_executor.MODEL_KEY: [classifier]},
        {"train_steps": 20, "batch_size": 16, "seed": 0, classifier_executor.MIN_ACCURACY_KEY: 0.0},
    )
    eval_images = transformed_data["images"][48:].astype(np.float32) / 255.0
    return {
        "classifier": classifier,
        "replay": _save_generator(eval_images, root / "replay", 31),
        "collapsed": _save_generator(eval_images[:1], root / "collapsed", 32),
        "copier": _save_generator(transformed_data["images"][:48].astype(np.float32) / 255.0, root / "copier", 33),
    }


def _evaluate(transformed_data, setup, model, tmp_path, thresholds, **sample_config):
    examples = standard_artifacts.Examples()
    examples.uri = transformed_data["examples"]
    examples.split_names = artifact_utils.encode_split_names([contract.TRAIN_SPLIT, contract.EVAL_SPLIT])
    graph = standard_artifacts.TransformGraph()
    graph.uri = transformed_data["transform_graph"]
    evaluation = standard_artifacts.ModelEvaluation()
    evaluation.uri = str(tmp_path / "evaluation")
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    context = base_beam_executor.BaseBeamExecutor.Context(tmp_dir=str(tmp_path / "tmp"), unique_id="1")
    executor_lib.Executor(context).Do(
        {"examples": [examples], "transform_graph": [graph], "model": [model], "classifier": [setup["classifier"]]},
        {"evaluation": [evaluation], "blessing": [blessing]},
        {"family": "gan", "variant": "stand-in", "blessing_config": json.dumps({"thresholds": thresholds}),
         "sample_config": json.dumps({"num_samples": 120, "batch_size": 50, "seed": 5, **sample_config})},
    )
    with open(os.path.join(evaluation.uri, executor_lib.METRICS_FILE)) as f:
        return json.load(f), blessing


def test_collapsed_generator_is_flagged_and_not_blessed(transformed_data, setup, tmp_path):
    report, blessing = _evaluate(transformed_data, setup, setup["collapsed"], tmp_path,
                                 {"classes_covered": {"min": 2}})
    metrics = report["metrics"]
    assert metrics["num_generated"] == 120 and metrics["num_real"] == 16
    assert metrics["classes_covered"] == 1 and metrics["max_class_fraction"] == 1.0
    assert metrics["kl_to_uniform"] == pytest.approx(math.log(10))
    assert metrics["collapsed"] is True
    assert metrics["classifier_score"] == pytest.approx(1.0, abs=1e-6)  # every sample gets the same prediction
    assert blessing.get_int_custom_property("blessed") == 0
    assert any("classes_covered" in reason for reason in report["reasons"])
    assert report["inception_fid"].startswith("Inception FID skipped")
    assert os.path.exists(report["samples_grid"])
    assert "classifier_fd_untrained" not in metrics  # no untrained generator was exported beside it


def test_replaying_the_eval_images_is_closer_than_collapse(transformed_data, setup, tmp_path):
    replay, replay_blessing = _evaluate(transformed_data, setup, setup["replay"], tmp_path / "replay", {})
    collapsed, _ = _evaluate(transformed_data, setup, setup["collapsed"], tmp_path / "collapsed", {})
    assert replay["metrics"]["classifier_fd"] < collapsed["metrics"]["classifier_fd"]
    assert replay["metrics"]["classes_covered"] >= collapsed["metrics"]["classes_covered"]
    # The classifier's view of the real eval images is reported beside the samples' as a reference.
    assert replay["real_images"]["num_images"] == 16
    assert replay_blessing.get_int_custom_property("blessed") == 1
    # Precision, recall, density and coverage keep fidelity and diversity apart: the collapsed
    # generator's one image is a real one (faithful), but it covers almost none of the others.
    r, c = replay["metrics"], collapsed["metrics"]
    assert r["prdc_num_real"] == c["prdc_num_real"] == 16 and r["prdc_num_generated"] == 120
    assert r["sample_precision"] == 1.0 and r["sample_coverage"] >= 15 / 16
    # (The replay's recall is lower than its coverage: 120 draws of 16 images repeat each one about
    # 7 times, and a sample whose k = 5 nearest samples are its own copies has a ball of radius 0.)
    assert r["sample_recall"] > c["sample_recall"]
    assert c["sample_precision"] == 1.0
    assert c["sample_coverage"] <= 6 / 16 and c["sample_recall"] == 0.0
    assert c["sample_density"] > r["sample_density"]
    # The reference: half the eval images scored against the other half.
    assert replay["real_images"]["prdc_num_real"] == replay["real_images"]["prdc_num_generated"] == 8
    assert 0.0 <= replay["real_images"]["sample_coverage"] <= 1.0


def test_a_coverage_threshold_withholds_the_blessing_and_bad_sample_config_is_named(transformed_data, setup, tmp_path):
    report, blessing = _evaluate(transformed_data, setup, setup["collapsed"], tmp_path / "gated",
                                 {"sample_coverage": {"min": 0.5}})
    assert blessing.get_int_custom_property("blessed") == 0
    assert any(reason.startswith("sample_coverage = ") for reason in report["reasons"])
    with pytest.raises(ValueError, match=r"unknown sample_config keys \['num_sampels'\]"):
        _evaluate(transformed_data, setup, setup["collapsed"], tmp_path / "typo", {}, num_sampels=10)
    with pytest.raises(ValueError, match="prdc_max_points must be an integer above prdc_k"):
        _evaluate(transformed_data, setup, setup["collapsed"], tmp_path / "small", {}, prdc_k=5, prdc_max_points=5)


def test_the_same_model_and_seed_give_the_same_metrics(transformed_data, setup, tmp_path):
    first, _ = _evaluate(transformed_data, setup, setup["replay"], tmp_path / "first", {})
    second, _ = _evaluate(transformed_data, setup, setup["replay"], tmp_path / "second", {})
    for name in ("classifier_fd", "classifier_score", "class_histogram"):
        assert first["metrics"][name] == pytest.approx(second["metrics"][name], rel=1e-9)


def test_a_generator_that_replays_its_training_images_fails_the_data_copying_test(transformed_data, setup, tmp_path):
    """Samples that are training images sit at distance 0 from the train split, nearer than any
    held-out eval image: C_T far below 0. Replayed eval images are new to the train split, as far
    from it as the held-out images themselves: C_T near 0."""
    copier, _ = _evaluate(transformed_data, setup, setup["copier"], tmp_path / "copier", {})
    replay, _ = _evaluate(transformed_data, setup, setup["replay"], tmp_path / "replay", {})
    assert copier["metrics"]["near_train_fraction"] == 1.0
    assert copier["metrics"]["train_distance_ratio"] == pytest.approx(0.0, abs=1e-3)
    assert copier["metrics"]["data_copying_ct"] < -3
    assert abs(replay["metrics"]["data_copying_ct"]) < 2
    assert replay["real_images"]["train_distance_median"] > 0
    # A threshold on the z-score keeps the copier from being blessed.
    gated, blessing = _evaluate(transformed_data, setup, setup["copier"], tmp_path / "gated",
                                {"data_copying_ct": {"min": -3.0}})
    assert blessing.get_int_custom_property("blessed") == 0
    assert any("data_copying_ct" in reason for reason in gated["reasons"])
    off, _ = _evaluate(transformed_data, setup, setup["copier"], tmp_path / "off", {}, data_copying=False)
    assert "data_copying_ct" not in off["metrics"] and "train_distance_median" not in off["real_images"]
