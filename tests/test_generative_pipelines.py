"""End to end: the vae and gan pipelines under LocalDagRunner on tiny data, sharing one metadata store.

The two pipelines share an ML Metadata store, as every local pipeline under runs/ does, so
the second one finds the dataset's domain classifier there and reuses it instead of training.
"""
import dataclasses
import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from pipelines import cli, gan_pipeline, local_runner, vae_pipeline
from serving import signatures as sig

GENERATIVE_COMPONENTS = [
    "MnistExampleGen", "StatisticsGen", "SchemaGen", "Transform", "Trainer",
    "domain_classifier_resolver", "DomainClassifier", "latest_blessed_model_resolver",
    "GenerativeEvaluator", "Pusher",
]
SAMPLE_METRICS = ("classifier_fd", "classifier_score", "classes_covered", "kl_to_uniform", "max_class_fraction",
                  "data_copying_ct", "near_train_fraction", "sample_precision", "sample_recall", "sample_density",
                  "sample_coverage")


def _smoke(pipeline, root, *flags):
    args = cli.build_parser().parse_args([
        "run", pipeline, "--pipeline-root", str(root / pipeline), "--serving-dir", str(root / "serving"),
        "--metadata", str(root / "metadata.sqlite"), *flags,
    ])
    return cli.config_from_args(args).smoke()


def _classifier(config):
    store = local_runner.open_store(config)
    executions = local_runner.latest_run_executions(store, config.pipeline_name)
    return local_runner.output_artifacts(store, executions["DomainClassifier"].id)["model"][0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("generative")
    vae_config = _smoke("vae", root)
    vae_summary = local_runner.run_pipeline(vae_config, vae_pipeline.create_pipeline)
    gan_config = _smoke("gan", root, "--variant", "dcgan", "--stop-on-collapse")
    gan_out = io.StringIO()
    gan_summary = local_runner.run_pipeline(gan_config, gan_pipeline.create_pipeline, out=gan_out)
    return {"root": root, "vae": (vae_config, vae_summary), "gan": (gan_config, gan_summary),
            "gan_console": gan_out.getvalue()}


@pytest.mark.parametrize("family", ["vae", "gan"])
def test_every_component_ran_blessed_and_pushed(runs, family):
    config, summary = runs[family]
    assert set(summary["components"]) == set(GENERATIVE_COMPONENTS)
    assert all(state == "COMPLETE" for state in summary["components"].values()), summary["components"]
    assert summary["blessed"] is True and summary["pushed"] is True, summary["blessing_reasons"]
    metrics = summary["metrics"]
    for name in SAMPLE_METRICS:
        assert np.isfinite(metrics[name]), (name, metrics[name])
    assert metrics["num_generated"] == config.num_samples
    assert len(metrics["class_histogram"]) == 10 and abs(sum(metrics["class_histogram"]) - 1) < 1e-6
    assert 0 <= metrics["classifier_test_accuracy"] <= 1
    assert os.path.exists(summary["samples_png"])
    # 8 walks of 10 latent points between fixed endpoints, decoded by the model's `generate`.
    assert tf.io.decode_png(tf.io.read_file(summary["interpolations_png"])).shape == (8 * 30, 10 * 30, 1)
    with open(os.path.join(os.path.dirname(summary["samples_png"]), "metrics.json")) as f:
        report = json.load(f)
    assert report["inception_fid"].startswith("Inception FID skipped")
    assert report["real_images"]["num_images"] == metrics["num_real"] > 0
    # Precision, recall and coverage are shares; every eval image (and every sample) entered them.
    assert all(0.0 <= metrics[name] <= 1.0 for name in ("sample_precision", "sample_recall", "sample_coverage"))
    assert metrics["prdc_num_real"] == metrics["num_real"] and metrics["prdc_num_generated"] == config.num_samples
    assert "reference for the sample_ metrics, eval images half against half" in local_runner.format_summary(summary)


def test_vae_reports_elbo_in_nats_and_serves_its_signatures(runs):
    _, summary = runs["vae"]
    metrics = summary["metrics"]
    assert metrics["elbo"] == pytest.approx(-(metrics["reconstruction_nll"] + metrics["kl"]), rel=1e-4)
    assert metrics["reconstruction_nll"] > 0 and metrics["kl"] >= 0
    assert os.path.exists(summary["reconstructions_png"])
    # The latent space of the eval split: every eval image encoded, a labelled scatter plot and the
    # decoded 15x15 manifold over the 2-D latent plane.
    assert metrics["latent_dim"] == 2 and 0 <= metrics["active_units"] <= 2
    assert metrics["latent_points"] == metrics["num_examples"]
    assert 0.0 <= metrics["latent_knn_accuracy"] <= 1.0
    assert tf.io.decode_png(tf.io.read_file(summary["latent_space_png"])).shape[2] in (3, 4)
    assert tf.io.decode_png(tf.io.read_file(summary["latent_manifold_png"])).shape == (450, 450, 1)
    loaded = tf.saved_model.load(summary["pushed_model"])
    assert {sig.ENCODE, sig.DECODE, sig.SAMPLE, sig.RECONSTRUCT, sig.ELBO} <= set(loaded.signatures)
    sample = loaded.signatures[sig.SAMPLE]
    first = sample(**{sig.NUM_INPUT: tf.constant(5), sig.SEED_INPUT: tf.constant(3)})[sig.IMAGES_OUTPUT]
    again = sample(**{sig.NUM_INPUT: tf.constant(5), sig.SEED_INPUT: tf.constant(3)})[sig.IMAGES_OUTPUT]
    assert first.shape == (5, 28, 28, 1) and first.dtype == tf.float32
    np.testing.assert_array_equal(first.numpy(), again.numpy())


def test_gan_compares_with_its_untrained_generator_and_samples_reproducibly(runs):
    _, summary = runs["gan"]
    metrics = summary["metrics"]
    assert metrics["classifier_fd_untrained"] > 0
    assert metrics["classifier_fd_improvement"] == pytest.approx(
        metrics["classifier_fd_untrained"] / metrics["classifier_fd"], rel=1e-6)
    loaded = tf.saved_model.load(summary["pushed_model"])
    sample = loaded.signatures[sig.SAMPLE]
    images = sample(**{sig.NUM_INPUT: tf.constant(4), sig.SEED_INPUT: tf.constant(11)})[sig.IMAGES_OUTPUT].numpy()
    again = sample(**{sig.NUM_INPUT: tf.constant(4), sig.SEED_INPUT: tf.constant(11)})[sig.IMAGES_OUTPUT].numpy()
    assert images.shape == (4, 28, 28, 1) and 0.0 <= images.min() and images.max() <= 1.0
    np.testing.assert_array_equal(images, again)


def test_the_collapse_alarms_of_barely_trained_models_reach_the_console_and_the_summary(runs):
    """Four steps leave the generator drawing near-constant images: the Trainer's collapse monitor
    raises its alarm at the last chunk, shown as it happens and in the summary. Training had no
    steps left to stop (--stop-on-collapse), and the alarm alone does not block the push."""
    config, summary = runs["gan"]
    assert config.model_options["stop_on_collapse"] is True
    assert summary["training_alarm"].startswith("mode-collapse alarm at step 4 (2 checks in a row): sample diversity")
    assert summary["stopped_at_step"] is None and summary["pushed"] is True
    assert "[8/10] Trainer: mode-collapse alarm at step 4" in runs["gan_console"]
    assert f"  Trainer {summary['training_alarm']}" in local_runner.format_summary(summary)
    # Four steps leave the VAE's encoder where it started, mapping every image to about the same mean:
    # its Trainer raises the posterior-collapse alarm in the same way.
    assert runs["vae"][1]["training_alarm"].startswith("posterior-collapse alarm at step 4 (2 checks in a row)")


def test_domain_classifier_is_trained_once_per_dataset_through_ml_metadata(runs):
    vae_classifier = _classifier(runs["vae"][0])
    gan_classifier = _classifier(runs["gan"][0])
    assert vae_classifier.custom_properties["reused_from"].int_value == 0
    assert gan_classifier.custom_properties["reused_from"].int_value == vae_classifier.id
    for name in ("test_accuracy", "data_fingerprint"):
        assert gan_classifier.custom_properties[name] == vae_classifier.custom_properties[name]


def test_failing_thresholds_and_an_untrustworthy_classifier_block_the_push(runs, tmp_path):
    config, _ = runs["gan"]
    strict = dataclasses.replace(
        config, train_steps=2, thresholds={"classes_covered": {"min": 11}},
        classifier_min_accuracy=0.999, serving_dir=str(tmp_path / "serving"),
    )
    summary = local_runner.run_pipeline(strict, gan_pipeline.create_pipeline)
    assert summary["components"]["Trainer"] == "COMPLETE"
    assert summary["blessed"] is False and summary["pushed"] is False
    reasons = " ".join(summary["blessing_reasons"])
    assert "classes_covered" in reasons and "not trustworthy" in reasons
    assert not os.path.exists(os.path.join(strict.serving_dir, strict.model_name))


def test_cli_knows_the_generative_pipelines_and_rejects_misplaced_flags(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "vae" in out and "gan" in out and "dcgan" in out
    assert cli.main(["run", "vae", "--label-smoothing", "0.1"]) == 2
    assert "--label-smoothing applies to gan" in capsys.readouterr().err
    assert cli.main(["run", "gan", "--variant", "conv"]) == 2
    assert "not a variant of gan" in capsys.readouterr().err
    assert cli.main(["run", "gan", "--d-steps", "0"]) == 2
    assert "--d-steps must be a whole number >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("pipeline, flags, classes", [
    ("gan", [], 9), ("gan", ["--min-classes", "7"], 7), ("gan", ["--variant", "dense"], 8),
    ("gan", ["--variant", "dense", "--min-classes", "10"], 10), ("vae", [], 9), ("vae", ["--min-classes", "6"], 6),
])
def test_the_collapse_flag_and_the_coverage_threshold_are_one_setting(pipeline, flags, classes, tmp_path):
    """A generator the evaluator flags as collapsed is never blessed, and one it does not flag never
    fails the coverage threshold: --min-classes sets both (gan --variant dense defaults to 8)."""
    args = cli.build_parser().parse_args(["run", pipeline, "--pipeline-root", str(tmp_path), *flags])
    config = cli.config_from_args(args)
    assert config.thresholds["classes_covered"] == {"min": classes}
    from pipelines import common

    min_classes = common.sample_config(config, "unit")["min_classes"]
    assert (min_classes or 9) == classes
    if "classes_covered" in config.quality_targets:
        assert config.quality_targets["classes_covered"] == classes
    assert config.smoke().with_collapse_gates().thresholds == {}  # smoke configs gain no gate


def test_threshold_flags_set_change_and_drop_blessing_bounds(tmp_path, capsys):
    def thresholds(*flags):
        args = cli.build_parser().parse_args(["run", "gan", "--pipeline-root", str(tmp_path), *flags])
        return cli.config_from_args(args).thresholds

    preset = thresholds()
    assert preset["sample_coverage"] == {"min": 0.2} and preset["data_copying_ct"] == {"min": -3.0}
    changed = thresholds("--threshold", "sample_coverage>=0.35", "--threshold", "classifier_fd <= 120",
                         "--threshold", "data_copying_ct=off")
    assert changed["sample_coverage"] == {"min": 0.35} and changed["classifier_fd"] == {"max": 120.0}
    assert "data_copying_ct" not in changed and changed["classes_covered"] == preset["classes_covered"]
    for spec, message in [
        ("sample_coverag>=0.3", "unknown metric 'sample_coverag'"),
        ("classifier_fd>=50", "classifier_fd is better lower, so this bound would refuse the better models; "
                              "did you mean classifier_fd<=50?"),
        ("sample_coverage>=most", "'most' is not a number"),
        ("sample_coverage=0.3", "only METRIC=off drops a bound"),
        ("sample_coverage", "expected METRIC>=VALUE, METRIC<=VALUE or METRIC=off"),
        ("classes_covered>=5", "classes_covered is set with --min-classes"),
    ]:
        assert cli.main(["run", "gan", "--pipeline-root", str(tmp_path), "--threshold", spec]) == 2
        assert message in capsys.readouterr().err, spec


def test_the_attribute_diversity_flag_sets_the_faces_threshold(tmp_path):
    args = cli.build_parser().parse_args([
        "run", "faces", "--data-dir", str(tmp_path), "--min-attribute-diversity", "0.3"])
    config = cli.config_from_args(args)
    assert config.thresholds["attribute_diversity"] == {"min": 0.3}
    assert config.quality_targets["attribute_diversity"] == 0.3
