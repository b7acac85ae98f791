"""GenerativeEvaluator executor on a tiny trained denoiser and the transformed test data."""
import json
import os

import pytest
import tensorflow as tf
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils, standard_artifacts
from tfx.components.trainer.fn_args_utils import FnArgs

from components.generative_evaluator import executor as executor_lib
from trainer_modules import autoencoder, training


@pytest.fixture(scope="module")
def denoiser(transformed_data, tmp_path_factory):
    """A Model artifact holding a denoiser trained for 4 steps."""
    root = tmp_path_factory.mktemp("denoiser")
    model = standard_artifacts.Model()
    model.uri = str(root / "model")
    autoencoder.run_fn(FnArgs(
        train_files=[os.path.join(transformed_data["examples"], "Split-train", "*")],
        eval_files=[os.path.join(transformed_data["examples"], "Split-eval", "*")],
        transform_output=transformed_data["transform_graph"],
        serving_model_dir=os.path.join(model.uri, "Format-Serving"),
        model_run_dir=str(root / "run"),
        train_steps=4,
        eval_steps=1,
        custom_config={autoencoder.VARIANT: "denoising", training.BATCH_SIZE: 8, training.SHUFFLE_BUFFER: 64},
    ))
    model.id = 11
    return model


def _run(transformed_data, model, tmp_path, config, baseline=None, **properties):
    examples = standard_artifacts.Examples()
    examples.uri = transformed_data["examples"]
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    graph = standard_artifacts.TransformGraph()
    graph.uri = transformed_data["transform_graph"]
    evaluation = standard_artifacts.ModelEvaluation()
    evaluation.uri = str(tmp_path / "evaluation")
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    inputs = {"examples": [examples], "transform_graph": [graph], "model": [model]}
    if baseline is not None:
        inputs["baseline_model"] = [baseline]
    context = base_beam_executor.BaseBeamExecutor.Context(tmp_dir=str(tmp_path / "tmp"), unique_id="1")
    executor_lib.Executor(context).Do(
        inputs,
        {"evaluation": [evaluation], "blessing": [blessing]},
        {"family": "autoencoder", "variant": "denoising", "blessing_config": json.dumps(config), "grid_examples": 6,
         **properties},
    )
    with open(os.path.join(evaluation.uri, executor_lib.METRICS_FILE)) as f:
        return json.load(f), blessing, evaluation


def test_metrics_grid_and_blessing(transformed_data, denoiser, tmp_path):
    report, blessing, evaluation = _run(transformed_data, denoiser, tmp_path, {"thresholds": {"ssim": {"min": -1.0}}})
    metrics = report["metrics"]
    assert metrics["num_examples"] == 16
    for key in ("mse", "bce", "psnr_db", "ssim", "noisy_psnr_db", "psnr_gain_db", "mean_filter_psnr_db"):
        assert key in metrics
    assert abs(metrics["psnr_gain_db"] - (metrics["psnr_db"] - metrics["noisy_psnr_db"])) < 1e-6
    assert report["blessed"] is True and blessing.get_int_custom_property("blessed") == 1
    assert blessing.get_int_custom_property("current_model_id") == 11
    assert os.path.exists(os.path.join(blessing.uri, "BLESSED"))
    grid = tf.io.decode_png(tf.io.read_file(report["grid"])).numpy()
    assert grid.shape == (3 * 30, 6 * 30, 1)  # originals / noisy / reconstructions of 6 examples


def test_unmet_threshold_is_not_blessed(transformed_data, denoiser, tmp_path):
    report, blessing, _ = _run(transformed_data, denoiser, tmp_path, {"thresholds": {"psnr_gain_db": {"min": 60.0}}})
    assert report["blessed"] is False
    assert "psnr_gain_db" in report["reasons"][0]
    assert blessing.get_int_custom_property("blessed") == 0
    assert os.path.exists(os.path.join(blessing.uri, "NOT_BLESSED"))


def test_baseline_is_evaluated_on_the_same_images(transformed_data, denoiser, tmp_path):
    baseline = standard_artifacts.Model()
    baseline.uri = denoiser.uri
    baseline.id = 5
    config = {"baseline": {"metric": "psnr_db", "tolerance": 0.0}}
    report, blessing, _ = _run(transformed_data, denoiser, tmp_path, config, baseline=baseline)
    assert report["baseline_metrics"]["psnr_db"] == pytest.approx(report["metrics"]["psnr_db"], abs=1e-9)
    assert report["blessed"] is True
    assert blessing.get_int_custom_property("baseline_model_id") == 5


def test_max_eval_examples_caps_the_eval_examples_read(transformed_data, denoiser, tmp_path):
    report, _, _ = _run(transformed_data, denoiser, tmp_path, {}, max_eval_examples=5)
    assert report["metrics"]["num_examples"] == 5
    assert report["max_eval_examples"] == 5
    assert report["metrics"]["latent_points"] == 5
    with pytest.raises(ValueError, match="max_eval_examples must be >= 0.*-1"):
        _run(transformed_data, denoiser, tmp_path / "negative", {}, max_eval_examples=-1)
