"""The fast style network: Johnson et al.'s architecture, any-size stylization and the exported signatures."""
import numpy as np
import pytest
import tensorflow as tf

from serving import signatures as sig
from trainer_modules import style_losses, style_transfer


@pytest.fixture(scope="module")
def small_net():
    return style_transfer.build_transform_net(residual_blocks=1, base_filters=4)


def test_transform_net_follows_johnson_et_al():
    net = style_transfer.build_transform_net()
    convs = [layer for layer in net.layers if layer.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in convs[:3]] == [32, 64, 128]
    assert [c.kernel_size for c in (convs[0], convs[-1])] == [(9, 9), (9, 9)]
    assert [c.strides for c in convs[1:3]] == [(2, 2), (2, 2)]
    assert sum(layer.name.endswith("_add") for layer in net.layers) == 5  # residual blocks
    norms = [layer for layer in net.layers if layer.__class__.__name__ == "GroupNormalization"]
    assert norms and all(n.groups == n.gamma.shape[0] for n in norms)  # a group per channel: instance norm
    out = net(tf.random.uniform([2, 16, 24, 3], 0, 255))
    assert out.shape == (2, 16, 24, 3)
    assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 255.0


@pytest.mark.parametrize("height, width", [(37, 53), (8, 8), (5, 130)])
def test_any_size_is_kept(small_net, height, width):
    images = tf.random.uniform([1, height, width, 3], 0, 255, seed=1)
    assert style_transfer.stylize_any_size(small_net, images).shape == (1, height, width, 3)


def test_exported_signatures_keep_height_and_width(small_net, tmp_path):
    export_dir = style_transfer.export_stylizer(small_net, str(tmp_path / "model"))
    loaded = tf.saved_model.load(export_dir)
    assert {sig.STYLIZE, sig.STYLIZE_BYTES, sig.SERVING_DEFAULT} <= set(loaded.signatures)

    images = np.random.default_rng(0).uniform(size=(2, 29, 41, 3)).astype(np.float32)
    out = loaded.signatures[sig.STYLIZE](**{sig.IMAGES_INPUT: tf.constant(images)})[sig.IMAGES_OUTPUT]
    assert out.shape == (2, 29, 41, 3) and out.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 1.0
    direct = small_net(tf.pad(tf.constant(images) * 255.0, [[0, 0], [0, 3], [0, 3], [0, 0]], "SYMMETRIC"))
    np.testing.assert_allclose(out.numpy(), direct[:, :29, :41].numpy() / 255.0, atol=1e-5)

    jpeg = tf.io.encode_jpeg(tf.cast(images[0] * 255, tf.uint8)).numpy()
    result = loaded.signatures[sig.SERVING_DEFAULT](**{sig.IMAGE_BYTES_INPUT: tf.constant([jpeg])})
    assert result[sig.IMAGES_OUTPUT].shape == (1, 29, 41, 3)
    png = tf.io.decode_png(result[sig.PNG_BYTES_OUTPUT][0])
    assert png.shape == (29, 41, 3)


def test_training_losses_stylize_at_the_content_images_size(small_net):
    """30x42 images (not multiples of 4): the net alone would return 32x44, whose VGG features broadcast
    silently against the content's; the losses must be those of the padded-and-cropped stylization."""
    extractor = style_losses.StyleContentExtractor(style_losses.load_vgg19(style_losses.VGG_RANDOM))
    style = tf.random.uniform([1, 48, 48, 3], 0, 255, seed=2)
    weights = style_losses.StyleWeights()
    model = style_transfer.StyleTransferModel(small_net, extractor, extractor(style)["style"], weights)
    images = tf.random.uniform([2, 30, 42, 3], seed=3)
    pixels = images * 255.0
    styled = small_net(tf.pad(pixels, [[0, 0], [0, 2], [0, 2], [0, 0]], "SYMMETRIC"))[:, :30, :42]
    expected = style_transfer.perceptual_loss(extractor, styled, pixels, model.style_grams, weights)
    parts = model.losses_of(images)
    for name in ("loss", "content", "style", "tv"):
        np.testing.assert_allclose(parts[name].numpy(), expected[name].numpy(), rtol=1e-5)


def test_style_config_names_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match="custom_config\\['style_image'\\] must name the style image"):
        style_transfer.StyleConfig.from_custom_config({})
    with pytest.raises(ValueError, match="style image .*nowhere.jpg does not exist"):
        style_transfer.StyleConfig.from_custom_config({"style_image": str(tmp_path / "nowhere.jpg")})
