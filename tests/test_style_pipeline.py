"""End to end: `genpipe run style` on a generated folder of content images, few steps, random VGG19.

VGG19's ImageNet weights cannot be downloaded here, so the run passes `--vgg-weights random`
explicitly: the losses are computed but mean nothing, which is why the smoke run has no
thresholds and a run with thresholds is refused its blessing (tested below).
"""
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageDraw

from pipelines import cli, local_runner, style_pipeline
from serving import signatures as sig
from test_serving_warmup import check_warmup_file, transformed_eval_images
from test_style_losses import _has_network


def write_content_folder(root, count=24, seed=0):
    """JPEG and PNG 'photos' of various sizes: coloured shapes on gradients, one corrupt file."""
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    for index in range(count):
        width, height = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        gradient = np.linspace(0, 255, width, dtype=np.float32)[None, :, None] * rng.uniform(0.3, 1, 3)
        image = Image.fromarray(np.broadcast_to(gradient, (height, width, 3)).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            x, y = int(rng.integers(0, width - 10)), int(rng.integers(0, height - 10))
            draw.ellipse([x, y, x + 10, y + 10], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        image.save(os.path.join(root, f"photo_{index:03d}.{'jpg' if index % 2 else 'png'}"))
    with open(os.path.join(root, "broken.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 not really a jpeg")


def write_style_image(path):
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, ::8] = (250, 200, 30)
    stripes[::8, :] = (30, 60, 220)
    Image.fromarray(stripes).save(path)
    return path


def _config(root, *flags):
    args = cli.build_parser().parse_args([
        "run", "style", "--style-image", str(root / "starry.png"), "--data-dir", str(root / "content"),
        "--vgg-weights", "random", "--pipeline-root", str(root / "style"), "--serving-dir", str(root / "serving"),
        "--metadata", str(root / "metadata.sqlite"), "--max-reject-fraction", "0.2", *flags,
    ])
    return cli.config_from_args(args).smoke()


@pytest.fixture(scope="module")
def style_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("style")
    write_content_folder(str(root / "content"))
    write_style_image(str(root / "starry.png"))
    config = _config(root)
    return {"root": root, "config": config, "summary": local_runner.run_pipeline(config, style_pipeline.create_pipeline)}


def test_style_pipeline_trains_scores_and_pushes(style_run):
    config, summary = style_run["config"], style_run["summary"]
    assert config.pipeline_name == f"style-starry-{cli.config_lib.style_image_digest(config.style_image)}"
    assert all(state == "COMPLETE" for state in summary["components"].values()), summary["components"]
    assert summary["blessed"] is True and summary["pushed"] is True, summary["blessing_reasons"]
    metrics = summary["metrics"]
    for name in ("total_loss", "content_loss", "style_loss", "tv_loss", "loss_improvement", "seconds_per_image",
                 "gatys_seconds_per_step", "speedup_vs_gatys"):
        assert np.isfinite(metrics[name]) and metrics[name] >= 0, (name, metrics[name])
    assert metrics["image_size"] == config.image_size
    assert os.path.exists(summary["stylized_png"])
    assert summary["rejects"]["total"] == 1

    loaded = tf.saved_model.load(summary["pushed_model"])
    image = np.random.default_rng(1).uniform(size=(1, 45, 70, 3)).astype(np.float32)
    out = loaded.signatures[sig.STYLIZE](**{sig.IMAGES_INPUT: tf.constant(image)})[sig.IMAGES_OUTPUT]
    assert out.shape == (1, 45, 70, 3)


def test_pushed_stylizer_carries_warmup_requests_from_eval_images(style_run):
    """TF Serving replays assets.extra/tf_serving_warmup_requests at load: `stylize`, `stylize_bytes`
    and `serving_default`, their images the run's own eval content images (as the Transform wrote them)."""
    summary = style_run["summary"]
    replayed = check_warmup_file(summary["pushed_model"], eval_images=transformed_eval_images(style_run["config"]))
    assert set(replayed) == {sig.STYLIZE, sig.STYLIZE_BYTES, sig.SERVING_DEFAULT}
    size = style_run["config"].image_size
    for signature, outputs in replayed.items():
        assert outputs[sig.IMAGES_OUTPUT].shape[1:] == (size, size, 3), signature


def test_thresholds_with_random_vgg_weights_are_not_blessed(style_run):
    root = style_run["root"]
    config = _config(root)
    config.thresholds = {"loss_improvement": {"min": 0.0}}
    config.baseline_comparison = {"metric": "total_loss", "relative_tolerance": 0.1}  # the preset's rule
    summary = local_runner.run_pipeline(config, style_pipeline.create_pipeline)
    assert summary["blessed"] is False and summary["pushed"] is False
    assert any("VGG19 has random weights" in reason for reason in summary["blessing_reasons"])


def test_style_flags_are_checked_before_anything_runs(tmp_path, capsys):
    assert cli.main(["run", "style", "--data-dir", str(tmp_path)]) == 2
    assert "the style pipeline needs --style-image FILE" in capsys.readouterr().err
    style = write_style_image(str(tmp_path / "s.png"))
    assert cli.main(["run", "style", "--data-dir", str(tmp_path), "--style-image", style,
                     "--vgg-weights", str(tmp_path / "missing.h5")]) == 2
    assert "--vgg-weights" in capsys.readouterr().err


@pytest.mark.skipif(
    os.path.exists(os.path.expanduser("~/.keras/models/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"))
    or _has_network(), reason="the ImageNet VGG19 weights are cached or can be downloaded")
def test_a_run_on_imagenet_weights_it_cannot_get_stops_before_anything_runs(tmp_path, capsys):
    write_content_folder(str(tmp_path / "content"), count=2)
    write_style_image(str(tmp_path / "starry.png"))
    assert cli.main(["run", "style", "--style-image", str(tmp_path / "starry.png"), "--data-dir",
                     str(tmp_path / "content"), "--pipeline-root", str(tmp_path / "style")]) == 2
    err = capsys.readouterr().err
    assert "cannot get the ImageNet VGG19 weights" in err and "--vgg-weights PATH" in err
    assert not (tmp_path / "style").exists()
