"""RunConfig before anything runs: pipeline names, URI locations, and the checks of input files and blessing
metrics that would otherwise fail only after the data was processed and the model trained."""
import dataclasses
import warnings
import zipfile

import h5py
import numpy as np
import pytest
from PIL import Image

from pipelines import cli
from pipelines import config as config_lib


def _config(*argv):
    return cli.config_from_args(cli.build_parser().parse_args(list(argv)))


def _error(capsys, *argv):
    assert cli.main(list(argv)) == 2
    return capsys.readouterr().err


def _write_style_image(path):
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(path)
    return str(path)


def _write_hdf5(path):
    with h5py.File(path, "w") as f:
        f.create_dataset("weights", data=np.zeros(3))
    return str(path)


@pytest.mark.parametrize("pipeline", sorted(config_lib.VARIANTS))
def test_every_preset_bounds_only_metrics_its_evaluator_computes(pipeline):
    """The presets' thresholds and baseline metric pass the check --threshold is held to, in every variant."""
    for variant in config_lib.VARIANTS[pipeline]:
        preset = config_lib.presets()[pipeline]
        config = dataclasses.replace(
            preset, variant=variant, **config_lib.VARIANT_DEFAULTS.get((pipeline, variant), {}))
        computed = config_lib.evaluated_metrics(config)
        assert set(config.thresholds) <= set(computed), (pipeline, variant)
        assert config.baseline_comparison["metric"] in computed, (pipeline, variant)
        config._check_metrics()


def test_inception_fid_is_a_metric_only_with_inception_weights(tmp_path):
    weights = _write_hdf5(tmp_path / "inception.h5")
    assert "inception_fid" not in config_lib.evaluated_metrics(config_lib.presets()["gan"])
    config = _config("run", "gan", "--inception-weights", weights, "--threshold", "inception_fid<=40")
    assert "inception_fid" in config_lib.evaluated_metrics(config) and config.thresholds["inception_fid"] == {"max": 40}
    # The evaluator also reads weights from a bucket (sample_metrics.inception_fid_status, through tf.io.gfile).
    remote = dataclasses.replace(config, inception_weights="gs://bucket/inception.h5")
    assert "inception_fid" in config_lib.evaluated_metrics(remote)


def test_the_fewest_samples_follow_the_data_copying_test():
    from components.generative_evaluator.sample_metrics import DATA_COPYING_MIN_PER_CELL

    least = config_lib.data_copying_min_samples()
    assert least == DATA_COPYING_MIN_PER_CELL + 1
    assert _config("run", "gan", "--num-samples", str(least)).num_samples == least
    # Without the data-copying threshold any count from 10 runs.
    assert _config("run", "gan", "--num-samples", "10", "--threshold", "data_copying_ct=off").num_samples == 10


def test_inception_weights_are_checked_as_what_they_claim_to_be(tmp_path, capsys):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an HDF5 file")
    err = _error(capsys, "run", "gan", "--inception-weights", str(garbage))
    assert f"--inception-weights {garbage} is not an HDF5 file (InceptionV3 no-top weights)" in err
    wrong_suffix = tmp_path / "inception.bin"
    wrong_suffix.write_bytes(b"")
    err = _error(capsys, "run", "gan", "--inception-weights", str(wrong_suffix))
    assert f"--inception-weights {wrong_suffix} is not named as Keras reads weights" in err
    assert "expected a name ending in .h5, .hdf5, .keras" in err
    not_zip = tmp_path / "inception.keras"
    not_zip.write_bytes(b"PK? no")
    assert f"{not_zip} is not a .keras archive" in _error(capsys, "run", "gan", "--inception-weights", str(not_zip))
    archive = tmp_path / "good.keras"
    with zipfile.ZipFile(archive, "w") as f:
        f.writestr("model.weights.h5", b"")
    assert _config("run", "gan", "--inception-weights", str(archive)).inception_weights == str(archive)
    assert _config("run", "gan", "--inception-weights", _write_hdf5(tmp_path / "good.hdf5")).inception_weights


def test_another_models_weights_as_inception_weights_stop_the_run_before_anything_runs(tmp_path, capsys):
    """An HDF5 file of other weights passes the file checks; loading it into InceptionV3 before the run names it,
    without Keras's per-layer warnings and list of unloaded objects (it would otherwise fail after training)."""
    import keras

    other = str(tmp_path / "dense.weights.h5")
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save_weights(other)
    root = tmp_path / "root"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        err = _error(capsys, "run", "gan", "--inception-weights", other, "--pipeline-root", str(root),
                     "--metadata", str(tmp_path / "metadata.sqlite"))
    assert f"Inception weights {other}: cannot be loaded as the weights of keras.applications.InceptionV3" in err
    assert "List of objects that could not be loaded" not in err and len(err) < 1500
    assert not [w for w in caught if "Skipping" in str(w.message)]
    assert not root.exists() and not (tmp_path / "metadata.sqlite").exists()


def test_style_image_and_vgg_weights_are_opened_before_anything_runs(tmp_path, capsys):
    content = tmp_path / "content"
    content.mkdir()
    style = _write_style_image(tmp_path / "starry.png")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    err = _error(capsys, "run", "style", "--data-dir", str(content), "--style-image", str(broken))
    assert f"--style-image {broken} is not a decodable image" in err and "expected a JPEG or PNG file" in err
    tiff = tmp_path / "style.tiff"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tiff)
    assert f"--style-image {tiff} is a TIFF image; the Trainer reads JPEG, PNG, GIF, BMP" in _error(
        capsys, "run", "style", "--data-dir", str(content), "--style-image", str(tiff))
    vgg = tmp_path / "vgg19.h5"
    vgg.write_bytes(b"<html>a login page saved as weights</html>")
    err = _error(capsys, "run", "style", "--data-dir", str(content), "--style-image", style, "--vgg-weights", str(vgg))
    assert f"--vgg-weights {vgg} is not an HDF5 file (VGG19 no-top weights" in err
    config = _config("run", "style", "--data-dir", str(content), "--style-image", style,
                     "--vgg-weights", _write_hdf5(tmp_path / "vgg19_notop.h5"))
    assert config.vgg_weights == str(tmp_path / "vgg19_notop.h5")


def test_style_pipelines_are_named_by_the_style_image_and_its_location(tmp_path, monkeypatch):
    """/a/starry.jpg and /b/Starry.PNG train two models: their pipelines, roots and served models differ."""
    content = tmp_path / "content"
    content.mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _write_style_image(tmp_path / "a" / "starry.png")
    second = _write_style_image(tmp_path / "b" / "Starry.PNG")
    configs = [_config("run", "style", "--data-dir", str(content), "--style-image", style, "--vgg-weights", "random")
               for style in (first, second)]
    names = [config.pipeline_name for config in configs]
    digest = config_lib.style_image_digest(first)
    assert names[0] == f"style-starry-{digest}" and len(digest) == 6
    assert names[0] != names[1] and names[1].startswith("style-starry-")
    assert configs[0].pipeline_root != configs[1].pipeline_root and configs[0].model_name != configs[1].model_name
    # The same file named relatively gives the same pipeline: the digest is of the absolute path.
    monkeypatch.chdir(tmp_path)
    assert config_lib.style_image_digest("a/starry.png") == config_lib.style_image_digest(first)
    # Compiling reads no file: a URI is named the same way.
    uri = "gs://bucket/styles/starry.jpg"
    compiled = _config("compile", "style", "--style-image", uri, "--image", "img", "--pipeline-root", "gs://b/root",
                       "--output", "x.json")
    assert compiled.pipeline_name == f"style-starry-{config_lib.style_image_digest(uri)}" != names[0]


def test_compiling_style_needs_its_style_image(capsys):
    err = _error(capsys, "compile", "style", "--image", "img", "--pipeline-root", "gs://b/root", "--output", "x.json")
    assert "genpipe compile style needs --style-image URI" in err


def test_a_center_crop_faces_run_is_its_own_pipeline_and_model(tmp_path):
    """A comparison run on the course's centre crop is never judged against, nor replaces, the face-crop model."""
    from components.celeba_example_gen.fixture import write_celeba_fixture

    write_celeba_fixture(str(tmp_path / "celeba"), num_images=2)
    face = _config("run", "faces", "--data-dir", str(tmp_path / "celeba"))
    center = _config("run", "faces", "--data-dir", str(tmp_path / "celeba"), "--crop", "center")
    assert face.pipeline_name == "faces-dcgan64-celeba"
    assert center.pipeline_name == "faces-dcgan64-celeba-center" and center.model_name == "faces_dcgan64_celeba_center"
    assert center.pipeline_root != face.pipeline_root


def test_tfds_download_may_name_a_data_dir_that_does_not_exist_yet(tmp_path, capsys):
    target = tmp_path / "tfds"
    assert "is not a directory" in _error(capsys, "run", "faces", "--data-dir", str(target))
    config = _config("run", "faces", "--data-dir", str(target), "--tfds-download")
    assert config.data_dir == str(target) and not target.exists()


def test_uri_locations_stay_uris_and_the_metadata_store_stays_local(tmp_path, monkeypatch):
    """`genpipe run faces --data-dir gs://...` on Dataflow: URIs are not made into paths under the working
    directory, and the SQLite store, which cannot live on gs://, stays runs/metadata.sqlite."""
    monkeypatch.chdir(tmp_path)
    config = _config("run", "gan", "--dataset", "mnist", "--data-dir", "gs://bucket/mnist",
                     "--pipeline-root", "gs://bucket/root", "--serving-dir", "gs://bucket/serving",
                     "--inception-weights", "gs://bucket/inception.h5", "--beam-arg=--runner=DataflowRunner")
    assert (config.data_dir, config.pipeline_root, config.serving_dir, config.inception_weights) == (
        "gs://bucket/mnist", "gs://bucket/root", "gs://bucket/serving", "gs://bucket/inception.h5")
    assert config.metadata_path == str(tmp_path / "runs" / "metadata.sqlite")
    style = _config("run", "style", "--data-dir", "gs://bucket/content", "--style-image", "gs://bucket/starry.jpg",
                    "--vgg-weights", "gs://bucket/vgg19.h5")
    assert (style.data_dir, style.style_image, style.vgg_weights) == (
        "gs://bucket/content", "gs://bucket/starry.jpg", "gs://bucket/vgg19.h5")
    local = _config("run", "gan", "--pipeline-root", "root")
    assert local.metadata_path == str(tmp_path / "root" / "metadata.sqlite")


def test_vertex_training_flags_still_work_with_vertex_training_and_compile():
    from tfx import v1 as tfx

    from pipelines import common

    region = tfx.extensions.google_cloud_ai_platform.VERTEX_REGION_KEY
    config = _config("run", "gan", "--vertex-training", "--project", "p", "--image", "img", "--pipeline-root",
                     "gs://b/root")
    assert common.vertex_training_config(config)[region] == config_lib.DEFAULT_GCP_REGION
    regional = _config("run", "gan", "--vertex-training", "--project", "p", "--region", "europe-west4", "--image", "i",
                       "--pipeline-root", "gs://b/root")
    assert common.vertex_training_config(regional)[region] == "europe-west4"
    compiled = _config("compile", "gan", "--image", "img", "--pipeline-root", "gs://b/root", "--output", "x.json")
    assert compiled.image == "img"


def test_the_processes_a_run_starts_inherit_the_cli_warning_filters(monkeypatch, capsys):
    """Beam's multi-processing workers import the Google Cloud clients too; their Python 3.11 notices stay off the
    console as they do in the CLI's own process, and filters the user set are kept."""
    import os
    import subprocess
    import sys

    monkeypatch.setenv("PYTHONWARNINGS", "ignore::DeprecationWarning")
    assert cli.main(["list"]) == 0
    capsys.readouterr()
    entries = os.environ["PYTHONWARNINGS"].split(",")
    assert entries[0] == "ignore::DeprecationWarning"
    assert "ignore:You are using a Python version:FutureWarning" in entries
    assert cli.main(["list"]) == 0 and os.environ["PYTHONWARNINGS"].split(",") == entries  # not added twice
    capsys.readouterr()
    child = subprocess.run([sys.executable, "-c", "import google.api_core, google.cloud.bigquery"],
                           capture_output=True, text=True, check=True)
    assert "FutureWarning" not in child.stderr, child.stderr
