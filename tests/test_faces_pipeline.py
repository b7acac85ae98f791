"""End to end: `genpipe run faces` on a generated CelebA-format folder under LocalDagRunner, few steps.

The fixture holds good faces and one bad entry of every kind (corrupt, truncated, missing, no
landmarks, ...): the run must reject those with their reasons, train the 64x64 DCGAN, judge it
with the attribute classifier and push a model whose `sample` signature draws 64x64x3 faces.
"""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from components.celeba_example_gen import fixture as celeba_fixture
from pipelines import cli, gan_pipeline, local_runner
from serving import signatures as sig
from test_serving_warmup import check_warmup_file
from trainer_modules import contract

FACES_COMPONENTS = [
    "CelebAExampleGen", "StatisticsGen", "SchemaGen", "Transform", "Trainer",
    "domain_classifier_resolver", "DomainClassifier", "latest_blessed_model_resolver",
    "GenerativeEvaluator", "Pusher",
]


def _faces_config(root, data_dir, *flags):
    args = cli.build_parser().parse_args([
        "run", "faces", "--data-dir", str(data_dir), "--pipeline-root", str(root / "faces"),
        "--serving-dir", str(root / "serving"), "--metadata", str(root / "metadata.sqlite"),
        "--max-reject-fraction", "0.25", *flags,
    ])
    return cli.config_from_args(args).smoke()


@pytest.fixture(scope="module")
def faces_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("faces")
    written = celeba_fixture.write_celeba_fixture(str(root / "celeba"), num_images=40, seed=5)
    config = _faces_config(root, root / "celeba")
    summary = local_runner.run_pipeline(config, gan_pipeline.create_pipeline)
    return {"config": config, "summary": summary, "fixture": written}


def test_faces_pipeline_runs_every_component_and_pushes(faces_run):
    config, summary = faces_run["config"], faces_run["summary"]
    assert config.variant == "dcgan64" and config.dataset == "celeba"
    assert set(summary["components"]) == set(FACES_COMPONENTS)
    assert all(state == "COMPLETE" for state in summary["components"].values()), summary["components"]
    assert summary["blessed"] is True and summary["pushed"] is True, summary["blessing_reasons"]

    loaded = tf.saved_model.load(summary["pushed_model"])
    sample = loaded.signatures[sig.SAMPLE]
    images = sample(**{sig.NUM_INPUT: tf.constant(6), sig.SEED_INPUT: tf.constant(2)})[sig.IMAGES_OUTPUT]
    again = sample(**{sig.NUM_INPUT: tf.constant(6), sig.SEED_INPUT: tf.constant(2)})[sig.IMAGES_OUTPUT]
    assert images.shape == (6, *contract.CELEBA_SHAPE) and images.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1.0
    np.testing.assert_array_equal(images.numpy(), again.numpy())


def test_pushed_face_generator_carries_warmup_requests(faces_run):
    """TF Serving replays assets.extra/tf_serving_warmup_requests at load: `sample`, `serving_default`
    and `generate` (128-d latent points), each answered with 64x64x3 faces."""
    replayed = check_warmup_file(faces_run["summary"]["pushed_model"])
    assert set(replayed) == {sig.SERVING_DEFAULT, sig.SAMPLE, sig.GENERATE}
    for signature, outputs in replayed.items():
        assert outputs[sig.IMAGES_OUTPUT].shape[1:] == contract.CELEBA_SHAPE, signature


def test_faces_are_judged_by_the_attribute_classifier(faces_run):
    summary = faces_run["summary"]
    metrics = summary["metrics"]
    for name in ("classifier_fd", "attribute_rate_gap", "attribute_diversity", "classifier_fd_improvement"):
        assert np.isfinite(metrics[name]), (name, metrics[name])
    assert set(metrics["attribute_rates"]) == set(contract.CELEBA_ATTRIBUTES)
    assert "classes_covered" not in metrics  # no digit classes for faces
    with open(os.path.join(os.path.dirname(summary["samples_png"]), "metrics.json")) as f:
        report = json.load(f)
    assert report["classifier"]["task"] == "attributes"
    assert set(report["real_images"]["attribute_rates"]) == set(contract.CELEBA_ATTRIBUTES)
    assert os.path.exists(summary["samples_png"])


def test_rejects_are_counted_listed_and_summarised(faces_run):
    summary, written = faces_run["summary"], faces_run["fixture"]
    rejects = summary["rejects"]
    assert rejects["total"] == len(written.rejects)
    assert rejects["input_images"] == len(written.rejects) + len(written.good)
    with open(rejects["list"]) as f:
        listed = {row["image_id"]: row["reason"] for row in map(json.loads, f)}
    assert listed == written.rejects
    text = local_runner.format_summary(summary)
    assert f"rejected source images: {len(written.rejects)} of {rejects['input_images']}" in text


def test_faces_flags_are_checked_before_anything_runs(tmp_path, capsys):
    assert cli.main(["run", "faces", "--dataset", "mnist", "--data-dir", str(tmp_path)]) == 2
    assert "face generator (dcgan64) trains on celeba" in capsys.readouterr().err
    assert cli.main(["run", "gan", "--dataset", "celeba", "--data-dir", str(tmp_path)]) == 2
    assert "does not fit gan --variant dcgan" in capsys.readouterr().err
    assert cli.main(["run", "faces"]) == 2
    assert "the faces pipeline needs --data-dir DIR: a folder with img_align_celeba/*.jpg" in capsys.readouterr().err
    assert cli.main(["run", "faces", "--data-dir", str(tmp_path), "--max-reject-fraction", "2"]) == 2
    assert "--max-reject-fraction must be in [0, 1], got 2.0" in capsys.readouterr().err
    # The ExampleGen takes CelebA without its attributes file, but the evaluator's classifier learns
    # those attributes: the run stops before any component, naming the file.
    celeba_fixture.write_celeba_fixture(str(tmp_path / "no-attributes"), num_images=2, attributes=False)
    assert cli.main(["run", "faces", "--data-dir", str(tmp_path / "no-attributes"),
                     "--pipeline-root", str(tmp_path / "root")]) == 2
    err = capsys.readouterr().err
    assert f"the faces pipeline needs {tmp_path / 'no-attributes' / 'list_attr_celeba.txt'}" in err
    assert not (tmp_path / "root").exists()
    assert cli.main(["run", "faces", "--data-dir", str(tmp_path / "empty"), "--pipeline-root", str(tmp_path / "root")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main(["run", "faces", "--data-dir", str(tmp_path / "empty"), "--pipeline-root", str(tmp_path / "root")]) == 2
    assert "no CelebA input: nothing found in" in capsys.readouterr().err
