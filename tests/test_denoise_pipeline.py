"""End to end: the denoise pipeline under LocalDagRunner on tiny data, checked through ML Metadata."""
import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2

from pipelines import autoencoder_pipeline, cli, config as config_lib, local_runner
from serving import signatures as sig
from test_serving_warmup import check_warmup_file, transformed_eval_images

COMPONENTS = [
    "MnistExampleGen", "StatisticsGen", "SchemaGen", "Transform", "Trainer",
    "latest_blessed_model_resolver", "GenerativeEvaluator", "Pusher",
]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("denoise")
    args = cli.build_parser().parse_args([
        "run", "denoise", "--pipeline-root", str(root / "root"), "--serving-dir", str(root / "serving"),
        "--train-steps", "4", "--batch-size", "16", "--eval-steps", "1", "--checkpoint-every", "2",
        "--max-examples-per-split", "48",
    ])
    config = cli.config_from_args(args)
    # Four training steps cannot meet the production thresholds; bless on the mechanics only.
    config = dataclasses.replace(config, thresholds={"ssim": {"min": -1.0}})
    summary = local_runner.run_pipeline(config, autoencoder_pipeline.create_pipeline)
    return config, summary


def test_every_component_ran_and_the_model_was_blessed_and_pushed(first_run):
    config, summary = first_run
    assert set(summary["components"]) == set(COMPONENTS)
    assert all(state == "COMPLETE" for state in summary["components"].values()), summary["components"]

    store = local_runner.open_store(config)
    executions = local_runner.latest_run_executions(store, config.pipeline_name)
    assert set(executions) == set(COMPONENTS)
    blessing = local_runner.output_artifacts(store, executions["GenerativeEvaluator"].id)["blessing"][0]
    assert blessing.custom_properties["blessed"].int_value == 1
    assert summary["blessed"] is True and summary["pushed"] is True
    assert summary["metrics"]["num_examples"] == 48
    assert os.path.exists(summary["reconstructions_png"])
    # The conv code (7x7x256) of every eval image by label: a scatter plot and a k-NN accuracy; no
    # manifold, since an autoencoder has no prior to decode.
    assert summary["metrics"]["latent_dim"] == 7 * 7 * 256 and summary["metrics"]["latent_points"] == 48
    assert 0.0 <= summary["metrics"]["latent_knn_accuracy"] <= 1.0
    assert os.path.exists(summary["latent_space_png"]) and summary["latent_manifold_png"] is None

    pushed = summary["pushed_model"]
    assert pushed.startswith(os.path.join(config.serving_dir, config.model_name) + os.sep)
    assert os.path.basename(pushed).isdigit()  # <serving_dir>/<model>/<version>/, as TF Serving expects


def test_pushed_savedmodel_signatures(first_run):
    _, summary = first_run
    loaded = tf.saved_model.load(summary["pushed_model"])
    images = np.random.default_rng(3).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    png = tf.stack([tf.io.encode_png(image) for image in images])
    first = loaded.signatures[sig.SERVING_DEFAULT](**{sig.IMAGE_BYTES_INPUT: png})[sig.RECONSTRUCTION_OUTPUT]
    second = loaded.signatures[sig.SERVING_DEFAULT](**{sig.IMAGE_BYTES_INPUT: png})[sig.RECONSTRUCTION_OUTPUT]
    assert first.shape == (3, 28, 28, 1) and first.dtype == tf.float32
    np.testing.assert_array_equal(first.numpy(), second.numpy())

    floats = tf.constant(images.astype(np.float32) / 255.0)
    reconstruction = loaded.signatures[sig.RECONSTRUCT](**{sig.IMAGES_INPUT: floats})[sig.RECONSTRUCTION_OUTPUT]
    assert reconstruction.shape == (3, 28, 28, 1) and reconstruction.dtype == tf.float32
    latent = loaded.signatures[sig.ENCODE](**{sig.IMAGES_INPUT: floats})[sig.LATENT_OUTPUT]
    assert latent.shape == (3, 7, 7, 256) and latent.dtype == tf.float32
    decoded = loaded.signatures[sig.DECODE](**{sig.LATENT_INPUT: latent})[sig.RECONSTRUCTION_OUTPUT]
    assert decoded.shape == (3, 28, 28, 1) and decoded.dtype == tf.float32


def test_pushed_model_carries_warmup_requests_from_eval_images(first_run):
    """TF Serving replays assets.extra/tf_serving_warmup_requests at load: one request per signature,
    the image ones made of the run's own eval digits (as the Transform wrote them)."""
    config, summary = first_run
    replayed = check_warmup_file(summary["pushed_model"], eval_images=transformed_eval_images(config))
    assert set(replayed) == {sig.SERVING_DEFAULT, sig.RECONSTRUCT, sig.ENCODE, sig.DECODE}
    assert replayed[sig.ENCODE][sig.LATENT_OUTPUT].shape[1:] == (7, 7, 256)


@pytest.fixture(scope="module")
def second_run(first_run):
    """The same run again in the same store: everything up to the Trainer comes from the cache."""
    config, _ = first_run
    return local_runner.run_pipeline(config, autoencoder_pipeline.create_pipeline)


def test_second_run_reuses_cached_components(first_run, second_run):
    summary = second_run
    states = summary["components"]
    for node in ("MnistExampleGen", "StatisticsGen", "SchemaGen", "Transform", "Trainer"):
        assert states[node] == "CACHED", states
    # The evaluator re-runs (its baseline is now this model), but the model is not pushed as a new version.
    first_summary = first_run[1]
    assert summary["pushed"] is True and summary["already_serving"] is True
    assert summary["pushed_model"] == first_summary["pushed_model"]
    assert os.listdir(os.path.dirname(summary["pushed_model"])) == [os.path.basename(first_summary["pushed_model"])]
    assert "(already the newest version: not copied again)" in local_runner.format_summary(summary)


def test_history_lists_both_runs_from_ml_metadata(first_run, second_run, capsys):
    """`genpipe history denoise`: the first run trained and pushed, the second came from the cache and
    kept the same served version; both with the same headline metrics, read back from ML Metadata."""
    config, first_summary = first_run
    capsys.readouterr()
    flags = ["history", "denoise", "--pipeline-root", config.pipeline_root]
    assert cli.main(flags + ["--json"]) == 0
    import json

    records = json.loads(capsys.readouterr().out)
    assert len(records) == 2
    first, cached = records
    version = os.path.basename(first_summary["pushed_model"])
    assert first["components"]["Trainer"] == "COMPLETE" and first["cached"] == 0 and first["failed"] == []
    assert cached["components"]["Trainer"] == "CACHED" and cached["cached"] == 5
    assert first["blessed"] is True and first["pushed_version"] == version and not first["already_serving"]
    assert cached["pushed_version"] == version and cached["already_serving"] is True
    assert first["metrics"]["psnr_gain_db"] == pytest.approx(first_summary["metrics"]["psnr_gain_db"])
    assert cli.main(flags + ["--last", "1"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == f"denoise-mnist-sample: 1 run(s) in {config.metadata_path}"
    assert table[1].split() == ["started", "ran", "cached", "blessed", "pushed", "version", "psnr_gain_db", "psnr_db"]
    assert f"{version} (same)" in table[2] and len(table) == 3
    assert cli.main(flags + ["--last", "0"]) == 2
    assert "--last must be at least 1" in capsys.readouterr().err


def test_unblessed_model_is_not_pushed(first_run, tmp_path):
    config, _ = first_run
    strict = dataclasses.replace(
        config, train_steps=2, thresholds={"psnr_gain_db": {"min": 60.0}},
        serving_dir=str(tmp_path / "serving"),
    )
    summary = local_runner.run_pipeline(strict, autoencoder_pipeline.create_pipeline)
    assert summary["components"]["Trainer"] == "COMPLETE"
    assert summary["blessed"] is False and summary["pushed"] is False
    # The first run's blessed model was resolved from ML Metadata and scored on the same images.
    assert summary["baseline_metrics"]["num_examples"] == summary["metrics"]["num_examples"]
    assert "psnr_gain_db" in summary["not_pushed_reason"]
    assert not os.path.exists(os.path.join(strict.serving_dir, strict.model_name))
    assert "not pushed: not blessed" in local_runner.format_summary(summary)


def test_cli_list_and_bad_flags(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("denoise", "autoencoder", "mnist-sample", "fashion_mnist"):
        assert name in out
    assert cli.main(["run", "autoencoder", "--variant", "wide"]) == 2
    assert "--variant 'wide'" in capsys.readouterr().err
    assert cli.main(["run", "denoise", "--train-steps", "0"]) == 2
    assert "--train-steps must be at least 1" in capsys.readouterr().err
    assert cli.main(["run", "denoise", "--data-dir", "/no/such/folder"]) == 2
    assert "/no/such/folder" in capsys.readouterr().err


def test_cli_runs_a_plain_autoencoder_on_idx_files(tmp_path, capsys):
    """`genpipe run autoencoder --variant dense --dataset fashion_mnist --data-dir DIR` end to end."""
    from test_mnist_example_gen import write_idx_dataset

    data_dir = tmp_path / "fashion"
    write_idx_dataset(str(data_dir), compress=True)
    summary_path = tmp_path / "summary.json"
    code = cli.main([
        "run", "autoencoder", "--variant", "dense", "--dataset", "fashion_mnist", "--data-dir", str(data_dir),
        "--pipeline-root", str(tmp_path / "root"), "--serving-dir", str(tmp_path / "serving"),
        "--train-steps", "2", "--batch-size", "4", "--eval-steps", "1", "--summary", str(summary_path),
    ])
    out = capsys.readouterr().out
    assert code == 0
    assert "[5/8] Transform done" in out and "autoencoder-dense-fashion-mnist summary" in out
    import json

    summary = json.loads(summary_path.read_text())
    assert summary["pipeline"] == "autoencoder-dense-fashion-mnist"
    assert summary["components"]["Trainer"] == "COMPLETE"
    assert summary["metrics"]["num_examples"] == 5
    assert "psnr_gain_db" not in summary["metrics"]  # no noise for plain autoencoders
    assert summary["metrics"]["latent_dim"] == 32  # the dense code
    assert "latent_knn_accuracy" not in summary["metrics"]  # 5 eval images: too few for a 5-NN vote


def test_cli_reports_corrupt_idx_file_by_name(tmp_path, capsys):
    from test_mnist_example_gen import write_idx_dataset

    data_dir = tmp_path / "mnist"
    write_idx_dataset(str(data_dir))
    labels = data_dir / "t10k-labels-idx1-ubyte"
    labels.write_bytes(b"\x00\x00\x08\x03" + labels.read_bytes()[4:])  # wrong magic number
    code = cli.main([
        "run", "autoencoder", "--variant", "dense", "--dataset", "mnist", "--data-dir", str(data_dir),
        "--pipeline-root", str(tmp_path / "root"), "--serving-dir", str(tmp_path / "serving"),
        "--train-steps", "2", "--batch-size", "4", "--summary", str(tmp_path / "summary.json"),
    ])
    captured = capsys.readouterr()
    err, out = captured.err, captured.out
    assert code == 2
    assert "t10k-labels-idx1-ubyte" in err and "2049" in err
    assert not (tmp_path / "serving").exists()
    # The console names the failed component and ends with a summary; the traceback is in the log only.
    assert "[1/8] MnistExampleGen FAILED after" in out and "Traceback" not in out + err
    import json

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["failed_component"] == "MnistExampleGen"
    assert summary["error"].startswith("MnistExampleGen failed: MnistDataError:") and "2049" in summary["error"]
    assert summary["components"]["MnistExampleGen"] == "FAILED" and summary["components"]["Trainer"] == "NOT_RUN"
    assert f"FAILED: {summary['error']}" in out and summary["log"] in err
    log = open(summary["log"]).read()
    assert "Traceback" in log and "MnistDataError" in log
    # The failed ExampleGen published no Examples artifact.
    config = cli.config_from_args(cli.build_parser().parse_args(
        ["run", "autoencoder", "--pipeline-root", str(tmp_path / "root")]))
    examples = local_runner.open_store(config).get_artifacts_by_type("Examples")
    assert [a for a in examples if a.state == metadata_store_pb2.Artifact.LIVE] == []


def test_cli_exits_1_and_summarises_when_a_component_fails_for_another_reason(tmp_path, capsys, monkeypatch):
    """Not bad input but a fault (here the ExampleGen's writer dies): exit status 1, the failed component
    named on the console and in the summary, nothing pushed, the traceback in the run's log."""
    from components.mnist_example_gen import executor as mnist_executor

    def broken(self, input_dict, output_dict, exec_properties):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mnist_executor.Executor, "Do", broken)
    root = tmp_path / "root"
    code = cli.main(["run", "denoise", "--pipeline-root", str(root), "--serving-dir", str(tmp_path / "serving"),
                     "--max-examples-per-split", "8", "--no-cache"])
    captured = capsys.readouterr()
    assert code == 1
    assert "[1/8] MnistExampleGen FAILED after" in captured.out
    assert "MnistExampleGen failed: OSError: [Errno 28] No space left on device" in captured.err
    with open(root / "last_run_summary.json") as f:
        import json

        summary = json.load(f)
    assert summary["failed_component"] == "MnistExampleGen" and summary["pushed"] is False
    assert "not pushed: the run stopped when MnistExampleGen failed" in captured.out
    assert "Traceback" not in captured.out + captured.err and "Traceback" in open(summary["log"]).read()
    assert cli.main(["history", "denoise", "--pipeline-root", str(root)]) == 0
    assert "FAILED at MnistExampleGen" in capsys.readouterr().out


def test_history_table_says_where_a_run_failed_or_stopped():
    from pipelines import history

    config = dataclasses.replace(config_lib.presets()["denoise"], metadata_path="/srv/runs/metadata.sqlite")
    base = dict(ran=0, cached=0, failed=[], unfinished=[], blessed=None, pushed_version=None, already_serving=False,
                metrics={})
    records = [
        {**base, "started": "2026-11-22 03:00:04", "ran": 8, "blessed": True, "pushed_version": "17954",
         "metrics": {"psnr_gain_db": 9.871, "psnr_db": 20.12}},
        {**base, "started": "2026-11-23 03:00:03", "ran": 3, "cached": 5, "blessed": True, "pushed_version": "17954",
         "already_serving": True, "metrics": {"psnr_gain_db": 9.871, "psnr_db": 20.12}},
        {**base, "started": "2026-11-24 03:00:05", "failed": ["MnistExampleGen"]},
        {**base, "started": "2026-11-25 03:00:02", "ran": 4, "unfinished": ["Trainer"]},
    ]
    lines = history.format_history(config, records, history.headline_metrics(config)).splitlines()
    assert lines[0] == "denoise-mnist-sample: 4 run(s) in /srv/runs/metadata.sqlite"
    assert lines[1].split()[-2:] == ["psnr_gain_db", "psnr_db"]
    assert lines[2].split()[-4:] == ["yes", "17954", "9.871", "20.12"]
    assert "17954 (same)" in lines[3]
    assert "FAILED at MnistExampleGen" in lines[4] and "running or killed at Trainer" in lines[5]
