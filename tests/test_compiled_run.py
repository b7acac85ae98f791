"""The compiled denoise pipeline executes: every task of the PipelineJob JSON through TFX's container entrypoint.

tests/test_compile.py checks the compiled definition statically; here tests/kfp_local_launcher.py
plays the Vertex / KFP launcher and runs each task's container command in this process, with
runtime parameters set the way `genpipe submit --param` sets them, at smoke size.
"""
import dataclasses
import glob
import json
import os

import numpy as np
import tensorflow as tf

import kfp_local_launcher
from pipelines import autoencoder_pipeline, config as config_lib, kubeflow_runner
from trainer_modules import contract, preprocessing

CONTAINER_TASKS = {
    "MnistExampleGen": ["examples"],
    "StatisticsGen": ["statistics"],
    "SchemaGen": ["schema"],
    "Transform": ["transform_graph", "transformed_examples", "updated_analyzer_cache", "pre_transform_schema",
                  "pre_transform_stats", "post_transform_schema", "post_transform_stats",
                  "post_transform_anomalies"],
    "Trainer": ["model", "model_run"],
    "GenerativeEvaluator": ["evaluation", "blessing"],
    "Pusher": ["pushed_model"],
}
TRAIN_STEPS = 3
NOISE_FACTOR = 0.25


def test_compiled_denoise_pipeline_runs_through_the_tfx_container_entrypoint(tmp_path):
    config = config_lib.presets()["denoise"].smoke()
    config = dataclasses.replace(config, pipeline_root=str(tmp_path / "root"),
                                 serving_dir=str(tmp_path / "serving")).resolved_for_kubeflow()
    compiled = kubeflow_runner.compile_pipeline(config, autoencoder_pipeline.create_pipeline, image="genpipe-test:1",
                                                output=str(tmp_path / "denoise.json"))
    # The smoke run checkpoints every 2 steps, so 3 steps would train as 2 chunks of 2 (training.chunk_steps);
    # a checkpoint every 3 steps makes 3 steps exactly 3, and sets a key of the trainer_config JSON parameter.
    values = kubeflow_runner.parameter_values(compiled.job, [
        f"train_steps={TRAIN_STEPS}", f"noise_factor={NOISE_FACTOR}", f"trainer_config.checkpoint_every={TRAIN_STEPS}"])
    defaults = {name: p["default"] for name, p in kubeflow_runner.runtime_parameters(compiled.job).items()}
    kubeflow_runner.check_values(compiled.job, {**defaults, **values})  # as `genpipe submit` checks them

    run = kfp_local_launcher.run_job(compiled.job, str(tmp_path / "root"), values)

    resolvers = [name for name, task in run.tasks.items() if task.kind == "resolver"]
    assert len(resolvers) == 2 and all(not any(run.tasks[name].outputs.values()) for name in resolvers)
    assert "baseline_model" not in run.tasks["GenerativeEvaluator"].executor_input["inputs"]["artifacts"]
    assert {name for name, task in run.tasks.items() if task.kind == "container"} == set(CONTAINER_TASKS)
    for task, keys in CONTAINER_TASKS.items():
        assert set(run.tasks[task].outputs) == set(keys), task
        assert set(run.tasks[task].executor_output["artifacts"]) == set(keys), task
    for task, key in [("MnistExampleGen", "examples"), ("StatisticsGen", "statistics"), ("SchemaGen", "schema"),
                      ("Transform", "transform_graph"), ("Transform", "transformed_examples"), ("Trainer", "model"),
                      ("Trainer", "model_run"), ("GenerativeEvaluator", "evaluation"),
                      ("GenerativeEvaluator", "blessing"), ("Pusher", "pushed_model")]:
        artifact = run.output(task, key)
        assert artifact.uri == f"{run.root}/{task}/{key}"
        assert glob.glob(os.path.join(artifact.uri, "**", "*"), recursive=True), f"{task}.{key} wrote nothing"
    examples = run.output("MnistExampleGen", "examples")
    assert json.loads(examples.metadata["split_names"]) == [contract.TRAIN_SPLIT, contract.EVAL_SPLIT]
    assert json.loads(examples.metadata["example_counts"]) == {"eval": 64, "train": 64}

    # The Trainer got train_args and custom_config as the JSON text of the runtime parameters, and trained 3 steps.
    trainer_input = run.tasks["Trainer"].executor_input["inputs"]["parameterValues"]
    assert json.loads(trainer_input["train_args"]) == {"num_steps": TRAIN_STEPS}
    assert json.loads(trainer_input["custom_config"])["checkpoint_every"] == TRAIN_STEPS
    with open(os.path.join(run.output("Trainer", "model_run").uri, "training_summary.json")) as f:
        summary = json.load(f)
    assert summary["train_steps"] == TRAIN_STEPS and summary["steps_this_run"] == TRAIN_STEPS
    assert summary["resumed_from_epoch"] == 0
    checkpoint = tf.train.latest_checkpoint(_only_folder(os.path.join(run.root, "checkpoints")))
    assert _optimizer_iterations(checkpoint) == TRAIN_STEPS

    # Transform added noise of the overridden noise_factor: image_noisy is exactly what
    # preprocessing.add_noise gives each raw eval image at 0.25 (and not at the preset's 0.5).
    transform_config = json.loads(kfp_local_launcher.exec_properties(run, "Transform")["custom_config"])
    assert transform_config[preprocessing.NOISE_FACTOR] == NOISE_FACTOR
    noisy = _transformed_noisy_images(run)
    raw_images, encoded = _raw_eval_images(run)
    assert len(noisy) == len(raw_images) == 64
    seed = transform_config[preprocessing.SEED]
    for factor, matches in ((NOISE_FACTOR, True), (contract.DEFAULT_NOISE_FACTOR, False)):
        expected = preprocessing.add_noise(raw_images, encoded, factor, seed).numpy()
        actual = np.stack([noisy[_image_key(image)] for image in raw_images.numpy()])
        assert np.allclose(actual, expected, atol=1e-6) == matches, factor

    # The evaluator scored the model, blessed it (smoke thresholds are empty) and the Pusher pushed it.
    evaluation = run.output("GenerativeEvaluator", "evaluation")
    with open(os.path.join(evaluation.uri, "metrics.json")) as f:
        report = json.load(f)
    assert report["blessed"] is True and report["reasons"] == []
    assert report["metrics"]["num_examples"] == 64 and "psnr_gain_db" in report["metrics"]
    assert evaluation.metadata["psnr_db"] == report["metrics"]["psnr_db"]
    blessing = run.output("GenerativeEvaluator", "blessing")
    assert blessing.metadata["blessed"] == 1
    assert os.path.exists(os.path.join(blessing.uri, "BLESSED"))
    # The entrypoint names the blessed model by its artifact name, which the compiled
    # latest-blessed-model resolver of the next run matches (not an id it cannot look up).
    assert blessing.metadata["current_model_id"] == run.output("Trainer", "model").name
    pushed = run.output("Pusher", "pushed_model")
    assert pushed.metadata["pushed"] == 1
    destination = pushed.metadata["pushed_destination"]
    assert os.path.dirname(destination) == os.path.join(str(tmp_path / "serving"), config.model_name)
    assert os.path.basename(destination) == str(int(pushed.metadata["pushed_version"]))
    assert os.path.isfile(os.path.join(destination, "saved_model.pb"))


def _only_folder(path: str) -> str:
    (folder,) = glob.glob(os.path.join(path, "*"))
    return folder


def _optimizer_iterations(checkpoint: str) -> int:
    """The optimizer's step counter saved in a training checkpoint."""
    reader = tf.train.load_checkpoint(checkpoint)
    (name,) = [n for n in reader.get_variable_to_shape_map() if n.startswith("optimizer/") and "iteration" in n]
    return int(reader.get_tensor(name))


def _image_key(image: np.ndarray) -> bytes:
    return np.round(np.asarray(image) * 255.0).astype(np.uint8).tobytes()


def _records(folder: str):
    files = sorted(glob.glob(os.path.join(folder, "*")))
    assert files, f"no TFRecords in {folder}"
    return tf.data.TFRecordDataset(files, compression_type="GZIP")


def _raw_eval_images(run):
    """The ExampleGen's eval images: float [N, 28, 28, 1] in [0, 1] and their PNG bytes."""
    folder = os.path.join(run.output("MnistExampleGen", "examples").uri, f"Split-{contract.EVAL_SPLIT}")
    spec = {contract.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}
    encoded = tf.stack([tf.io.parse_single_example(record, spec)[contract.IMAGE_KEY]
                        for record in _records(folder)])
    return preprocessing.decode_images(encoded), encoded


def _transformed_noisy_images(run) -> dict:
    """The transformed eval split's image_noisy, keyed by its clean image."""
    import tensorflow_transform as tft

    spec = tft.TFTransformOutput(run.output("Transform", "transform_graph").uri).transformed_feature_spec()
    spec = {key: spec[key] for key in (contract.IMAGE_KEY, contract.NOISY_IMAGE_KEY)}
    folder = os.path.join(run.output("Transform", "transformed_examples").uri, f"Split-{contract.EVAL_SPLIT}")
    noisy = {}
    for record in _records(folder):
        features = tf.io.parse_single_example(record, spec)
        noisy[_image_key(features[contract.IMAGE_KEY].numpy())] = features[contract.NOISY_IMAGE_KEY].numpy()
    return noisy
