"""Gatys optimisation, the TF Hub path and `genpipe stylize` on tiny generated images."""
import os
import re
import socket

import keras
import numpy as np
import pytest
import tensorflow as tf

from pipelines import cli
from trainer_modules import gatys, hub_stylize, style_losses


def make_picture(height: int, width: int, seed: int) -> np.ndarray:
    """uint8 [H, W, 3]: a colour gradient with a few discs and stripes (edges and texture for VGG)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    top, bottom = rng.uniform(0, 1, (2, 3))
    image = top + (bottom - top) * yy[..., None]
    for _ in range(3):
        cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.25)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 1, 3)
    stripes = (np.sin(xx * rng.uniform(20, 40)) > 0.5)[..., None]
    image = np.where(stripes, image * 0.6, image)
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def write_picture(path, height, width, seed, fmt="png") -> str:
    picture = make_picture(height, width, seed)
    data = tf.io.encode_png(picture) if fmt == "png" else tf.io.encode_jpeg(picture, quality=95)
    tf.io.write_file(str(path), data)
    return str(path)


@pytest.fixture(scope="module")
def extractor():
    """Untrained VGG19, built once for the module: the optimisation mechanics do not need ImageNet."""
    return style_losses.StyleContentExtractor(style_losses.load_vgg19(style_losses.VGG_RANDOM))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    return {
        "content": write_picture(root / "content.png", 48, 64, seed=1),
        "style": write_picture(root / "style.jpg", 40, 40, seed=2, fmt="jpeg"),
        "root": root,
    }


class TinyStylizer(tf.Module):
    """Same call signature as the magenta module: (content [1,H,W,3], style [1,256,256,3]) in [0, 1] -> [stylized].

    The output is the content tinted halfway towards the style's mean colour: a known answer.
    """

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32),
                                  tf.TensorSpec([1, 256, 256, 3], tf.float32)])
    def __call__(self, content, style):
        mean = tf.reduce_mean(style, axis=[1, 2], keepdims=True)
        return [0.5 * content + 0.5 * mean]


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("hub") / "tiny_stylizer")
    tf.saved_model.save(TinyStylizer(), path)
    return path


def _has_network(host) -> bool:
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------
# Image I/O


def test_load_image_reads_png_and_jpeg_in_0_255(images):
    content = gatys.load_image(images["content"], max_dim=None)
    assert content.shape == (1, 48, 64, 3) and content.dtype == tf.float32
    np.testing.assert_array_equal(content[0].numpy(), make_picture(48, 64, seed=1))
    style = gatys.load_image(images["style"], max_dim=None)
    assert style.shape == (1, 40, 40, 3)
    assert 0.0 <= float(tf.reduce_min(style)) and float(tf.reduce_max(style)) <= 255.0


def test_load_image_caps_the_long_side_keeping_aspect(images):
    capped = gatys.load_image(images["content"], max_dim=32)
    assert capped.shape == (1, 24, 32, 3)
    assert gatys.load_image(images["content"], max_dim=512).shape == (1, 48, 64, 3)  # never enlarged


def test_save_image_round_trips(images, tmp_path):
    content = gatys.load_image(images["content"], max_dim=None)
    path = gatys.save_image(str(tmp_path / "sub" / "copy.png"), content)
    np.testing.assert_array_equal(gatys.load_image(path, None).numpy(), content.numpy())


def test_load_image_turns_a_rotated_phone_photo_upright(tmp_path):
    """EXIF orientation 6: the camera stored the picture on its side; viewers turn it 90 degrees clockwise."""
    from PIL import Image

    upright = make_picture(48, 32, seed=5)  # portrait: 48 high, 32 wide
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # 32 high, 48 wide, as the sensor wrote it
    exif = Image.Exif()
    exif[0x0112] = 6
    path = str(tmp_path / "portrait.jpg")
    Image.fromarray(stored).save(path, "JPEG", quality=95, exif=exif.tobytes())
    plain = str(tmp_path / "plain.jpg")
    Image.fromarray(stored).save(plain, "JPEG", quality=95)

    image = gatys.load_image(path, max_dim=None)
    assert image.shape == (1, 48, 32, 3)
    as_stored = gatys.load_image(plain, max_dim=None)
    assert as_stored.shape == (1, 32, 48, 3)  # no EXIF: as stored
    turned = np.rot90(as_stored[0].numpy(), k=-1)  # the same JPEG pixels, turned clockwise
    np.testing.assert_array_equal(image[0].numpy(), turned)
    assert np.abs(image[0].numpy() - upright).mean() < 8.0  # JPEG's loss only: the picture's own orientation
    assert gatys.load_image(path, max_dim=24).shape == (1, 24, 16, 3)  # capped after turning


def test_image_errors_name_the_file(tmp_path):
    missing = str(tmp_path / "missing.jpg")
    with pytest.raises(FileNotFoundError, match=re.escape(f"image {missing} does not exist")):
        gatys.load_image(missing)
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not an image")
    with pytest.raises(ValueError, match=re.escape(f"cannot decode image {garbage}: expected a JPEG, PNG")):
        gatys.load_image(str(garbage))


# ---------------------------------------------------------------------------
# Gatys


def test_gatys_steps_lower_the_loss_and_keep_pixels_valid(extractor, images):
    content = gatys.load_image(images["content"], max_dim=None)
    style = gatys.load_image(images["style"], max_dim=None)
    seen = []
    result = gatys.stylize(content, style, extractor, steps=5, max_dim=32,
                           callback=lambda info: seen.append((info.step, info.steps, info.image.shape)))
    assert result.image.shape == (1, 24, 32, 3)  # content 48x64 capped at a long side of 32
    assert seen == [(step, 5, (1, 24, 32, 3)) for step in range(1, 6)]
    assert len(result.losses) == len(result.seconds) == 5
    assert result.losses[0]["content"] == 0.0  # the image starts as the content image
    assert result.losses[-1]["total"] < result.losses[0]["total"]
    assert result.losses[-1]["style"] < result.losses[0]["style"]
    for losses in result.losses:
        assert losses["total"] == pytest.approx(losses["content"] + losses["style"] + losses["tv"], rel=1e-5)
    assert 0.0 <= float(tf.reduce_min(result.image)) and float(tf.reduce_max(result.image)) <= 255.0
    assert not np.array_equal(result.image.numpy(), gatys.cap_long_side(content, 32).numpy())


def test_gatys_steps_are_the_course_update(extractor):
    """stylize's loop against the course's lab written out: same losses per step, same image after them.

    The course: VGG inputs from keras.applications.vgg19.preprocess_input, Grams by einsum over the
    locations, style = mean squared Gram difference x style_weight / NUM_STYLE_LAYERS, content = 0.5 x
    sum of squares x content_weight / NUM_CONTENT_LAYERS, + var_weight x tf.image.total_variation;
    Adam(ExponentialDecay(20, decay_steps, decay_rate)) on the pixels, then clip to [0, 255]. A short
    decay (2 steps) makes the decayed rate count within three steps.
    """
    content = tf.constant(make_picture(24, 32, seed=1)[None], tf.float32)
    style = tf.constant(make_picture(32, 32, seed=2)[None], tf.float32)
    result = gatys.stylize(content, style, extractor, steps=3, decay_steps=2, decay_rate=0.5, max_dim=None)

    n_style = len(style_losses.STYLE_LAYERS)
    n_content = len(style_losses.CONTENT_LAYERS)
    style_weight, content_weight, var_weight = 2e-2, 1e-2, 2.0  # the course's regularised run

    def gram(tensor):
        return tf.linalg.einsum("bijc,bijd->bcd", tensor, tensor) / tf.cast(
            tf.shape(tensor)[1] * tf.shape(tensor)[2], tf.float32)

    def features(image):  # the extractor's VGG model outputs the style layers, then the content layers
        outputs = extractor.model(keras.applications.vgg19.preprocess_input(image))
        return [gram(out) for out in outputs[:n_style]], outputs[n_style:]

    style_targets, content_targets = features(style)[0], features(content)[1]
    image = tf.Variable(content)
    adam = keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(
        initial_learning_rate=20.0, decay_steps=2, decay_rate=0.5))

    # A tf.function as stylize's step is: run eagerly, float rounding flips the sign of some near-zero
    # gradients, and Adam moves such a pixel by about the learning rate either way (measured: 2% of the
    # pixels differ after three steps eagerly). Even in a graph, oneDNN's multi-threaded reductions do
    # not sum in a fixed order, so a rare pixel still flips: the totals (about 1e5) then differ by up
    # to 3e-4 relative (measured: 2 runs in 5 above 1e-5), while a wrong weight or layer would move
    # them by far more.
    @tf.function
    def course_step():
        with tf.GradientTape() as tape:
            style_outputs, content_outputs = features(image)
            loss = (tf.add_n([tf.reduce_mean(tf.square(o - t)) for o, t in zip(style_outputs, style_targets)])
                    * style_weight / n_style
                    + tf.add_n([0.5 * tf.reduce_sum(tf.square(o - t)) for o, t in zip(content_outputs, content_targets)])
                    * content_weight / n_content
                    + var_weight * tf.image.total_variation(image)[0])
        adam.apply_gradients([(tape.gradient(loss, image), image)])
        image.assign(tf.clip_by_value(image, 0.0, 255.0))
        return loss

    course_totals = [float(course_step()) for _ in range(3)]
    np.testing.assert_allclose([losses["total"] for losses in result.losses], course_totals, rtol=2e-3)
    differ = np.abs(result.image.numpy() - image.numpy()) > 1e-3
    assert differ.mean() < 0.01, f"{differ.mean():.2%} of the pixels differ from the course's update"


def test_gatys_clips_pixels_even_with_a_huge_step(extractor):
    content = tf.fill([1, 32, 32, 3], 250.0)
    style = tf.random.stateless_uniform([1, 32, 32, 3], seed=[3, 4], maxval=255.0)
    result = gatys.stylize(content, style, extractor, steps=2, learning_rate=1e4)
    assert float(tf.reduce_min(result.image)) >= 0.0 and float(tf.reduce_max(result.image)) <= 255.0
    # Adam's first steps move every pixel with a gradient by about the learning rate, far past the
    # range in one direction or the other (which one depends on the random VGG weights): clipped back.
    at_bounds = tf.reduce_mean(tf.cast((result.image == 0.0) | (result.image == 255.0), tf.float32))
    assert float(at_bounds) > 0.5


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps must be >= 1, got 0"),
    ({"max_dim": 8}, "max_dim must be >= 16"),
])
def test_gatys_rejects_bad_settings(extractor, kwargs, message):
    image = tf.fill([1, 32, 32, 3], 100.0)
    with pytest.raises(ValueError, match=message):
        gatys.stylize(image, image, extractor, **{"steps": 1, **kwargs})


def test_gatys_rejects_images_out_of_range(extractor):
    with pytest.raises(ValueError, match=r"content image must hold pixels in \[0, 255\]"):
        gatys.stylize(tf.fill([1, 32, 32, 3], 300.0), tf.fill([1, 32, 32, 3], 1.0), extractor, steps=1)
    with pytest.raises(ValueError, match="style image is 8x32; VGG19 needs both sides >= 16"):
        gatys.stylize(tf.fill([1, 32, 32, 3], 1.0), tf.fill([1, 8, 32, 3], 1.0), extractor, steps=1)


# ---------------------------------------------------------------------------
# TF Hub


def test_hub_load_reads_the_local_savedmodel(hub_dir):
    hub = hub_stylize.import_tensorflow_hub()
    module = hub.load(hub_dir)
    content = tf.fill([1, 4, 6, 3], 0.2)
    style = tf.fill([1, 256, 256, 3], 0.6)
    np.testing.assert_allclose(module(content, style)[0], np.full([1, 4, 6, 3], 0.4), atol=1e-4)


def test_stylize_hub_resizes_style_and_returns_unit_images(hub_dir, images):
    module = hub_stylize.load_hub_module(hub_dir)
    content = gatys.load_image(images["content"], None) / 255.0
    style = tf.concat([tf.fill([1, 40, 20, 3], 0.0), tf.fill([1, 40, 20, 3], 1.0)], axis=2)  # mean 0.5, not 256
    stylized = hub_stylize.stylize_hub(module, content, style)
    assert stylized.shape == (1, 48, 64, 3)
    np.testing.assert_allclose(stylized, 0.5 * content + 0.25, atol=2e-3)


def test_stylize_hub_rejects_0_255_images(hub_dir):
    module = hub_stylize.load_hub_module(hub_dir)
    with pytest.raises(ValueError, match=r"content image must hold pixels in \[0, 1\]"):
        hub_stylize.stylize_hub(module, tf.fill([1, 8, 8, 3], 200.0), tf.fill([1, 8, 8, 3], 0.5))


def test_hub_errors(tmp_path):
    missing = str(tmp_path / "no_module")
    with pytest.raises(FileNotFoundError, match=re.escape(f"TF Hub module directory {missing} does not exist")):
        hub_stylize.load_hub_module(missing)
    empty = tmp_path / "empty_module"
    empty.mkdir()
    with pytest.raises(hub_stylize.HubModuleError, match=re.escape(f"cannot load TF Hub module from {empty}")):
        hub_stylize.load_hub_module(str(empty))


@pytest.mark.skipif(_has_network("tfhub.dev"), reason="tfhub.dev resolves: this would download the module")
def test_hub_default_handle_without_network_says_what_to_pass():
    with pytest.raises(hub_stylize.HubModuleError, match="this environment has none.*--hub-handle DIR"):
        hub_stylize.load_hub_module(hub_stylize.DEFAULT_HUB_HANDLE)


# ---------------------------------------------------------------------------
# genpipe stylize


def test_cli_gatys_writes_png_and_frames(images, tmp_path, capsys):
    out = tmp_path / "result" / "styled.png"
    frames = tmp_path / "frames"
    code = cli.main(["stylize", "--content", images["content"], "--style", images["style"], "--out", str(out),
                     "--method", "gatys", "--steps", "4", "--max-dim", "32", "--vgg-weights", "random",
                     "--frames-dir", str(frames), "--frame-every", "2", "--tv-weight", "1", "--style-weight", "0.1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "WARNING: --vgg-weights random" in captured.err
    assert f"stylized image: {out}" in captured.out
    assert re.search(r"step 4/4  total \S+  content \S+  style \S+  tv \S+  \d+\.\d+ s/step", captured.out)
    assert "weights content 0.01 style 0.1 tv 1" in captured.out
    assert gatys.load_image(str(out), None).shape == (1, 24, 32, 3)
    assert sorted(os.listdir(frames)) == ["frame-00000.png", "frame-00002.png", "frame-00004.png"]


def test_cli_hub_with_local_module(images, hub_dir, tmp_path, capsys):
    out = tmp_path / "hub.png"
    code = cli.main(["stylize", "--content", images["content"], "--style", images["style"], "--out", str(out),
                     "--method", "hub", "--hub-handle", hub_dir])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"stylized image: {out}" in captured.out
    assert gatys.load_image(str(out), None).shape == (1, 48, 64, 3)


@pytest.mark.parametrize("extra, message", [
    (["--steps", "0"], "--steps must be >= 1, got 0"),
    (["--vgg-weights", "MISSING"], "VGG19 weights file MISSING does not exist"),
    (["--vgg-weights", ""], "VGG19 weights not given"),
    (["--method", "hub", "--steps", "3"], "--steps cannot be used with --method hub"),
    (["--hub-handle", "x"], "--hub-handle cannot be used with --method gatys"),
    (["--frame-every", "2"], "--frame-every needs --frames-dir"),
    (["--method", "hub", "--hub-handle", "MISSING"], "TF Hub module directory MISSING does not exist"),
])
def test_cli_bad_input_is_exit_2(images, tmp_path, capsys, extra, message):
    code = cli.main(["stylize", "--content", images["content"], "--style", images["style"],
                     "--out", str(tmp_path / "x.png"), *extra])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("genpipe: error: ") and message in err, err
    assert not (tmp_path / "x.png").exists()


def test_cli_unwritable_out_and_frames_dir_are_exit_2_before_vgg_loads(images, tmp_path, capsys, monkeypatch):
    from trainer_modules import style_losses as losses

    def no_vgg(weights):
        raise AssertionError("VGG19 must not load when the outputs cannot be written")

    monkeypatch.setattr(losses, "load_vgg19", no_vgg)
    folder = tmp_path / "x.png"
    folder.mkdir()
    a_file = tmp_path / "file"
    a_file.write_text("not a folder")
    cases = [
        (["--out", str(folder)], f"--out {folder} is a directory; expected a .png file path"),
        (["--out", str(a_file / "sub" / "x.png")],
         f"--out {a_file / 'sub' / 'x.png'} cannot be created: {a_file} is a file, not a directory"),
        (["--out", str(tmp_path / "y.png"), "--frames-dir", str(a_file)],
         f"--frames-dir {a_file} is a file; expected a directory"),
    ]
    for extra, message in cases:
        code = cli.main(["stylize", "--content", images["content"], "--style", images["style"],
                         "--vgg-weights", "random", *extra])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("genpipe: error: ") and message in err, err
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # root ignores permission bits: pretend
    code = cli.main(["stylize", "--content", images["content"], "--style", images["style"],
                     "--vgg-weights", "random", "--out", str(tmp_path / "new" / "y.png")])
    err = capsys.readouterr().err
    assert code == 2 and f"--out {tmp_path / 'new' / 'y.png'} cannot be written: no write permission in {tmp_path}" \
        in err, err


def test_cli_a_failing_final_write_names_the_out_path(images, hub_dir, tmp_path, capsys, monkeypatch):
    def refuse(path, contents):
        raise tf.errors.PermissionDeniedError(None, None, f"{path}; Permission denied")

    monkeypatch.setattr(tf.io, "write_file", refuse)
    out = tmp_path / "hub.png"
    code = cli.main(["stylize", "--content", images["content"], "--style", images["style"], "--out", str(out),
                     "--method", "hub", "--hub-handle", hub_dir])
    err = capsys.readouterr().err
    assert code == 2 and f"genpipe: error: cannot write the stylized image to --out {out}: " in err, err
    assert "Permission denied" in err


def test_cli_missing_and_undecodable_images_are_exit_2(images, tmp_path, capsys):
    missing = str(tmp_path / "nope.jpg")
    assert cli.main(["stylize", "--content", missing, "--style", images["style"], "--out", str(tmp_path / "a.png"),
                     "--vgg-weights", "random"]) == 2
    assert f"genpipe: error: --content image {missing} does not exist" in capsys.readouterr().err
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8 not really a jpeg")
    assert cli.main(["stylize", "--content", images["content"], "--style", str(garbage),
                     "--out", str(tmp_path / "b.png"), "--vgg-weights", "random"]) == 2
    assert f"genpipe: error: cannot decode image {garbage}" in capsys.readouterr().err


@pytest.mark.skipif(_has_network("storage.googleapis.com"),
                    reason="storage.googleapis.com resolves: Keras would download the 80 MB ImageNet weights")
def test_cli_default_weights_without_network_is_a_clear_error(images, tmp_path, capsys):
    code = cli.main(["stylize", "--content", images["content"], "--style", images["style"],
                     "--out", str(tmp_path / "x.png"), "--steps", "1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "genpipe: error: cannot get the ImageNet VGG19 weights" in err
    assert "--vgg-weights PATH" in err and style_losses.IMAGENET_NOTOP_FILE in err
