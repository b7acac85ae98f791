"""The perceptual-loss library of the style family: known answers, Keras parity, weight loading."""
import re
import socket

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer_modules import style_losses, training

# The course's 2x2x2 example tensor.
EXAMPLE = np.array([[[1, 2], [3, 4]], [[5, 6], [7, 8]]], np.float32)


@pytest.fixture(scope="module")
def vgg():
    """VGG19 with untrained weights, built once: shapes and plumbing do not need ImageNet."""
    return style_losses.load_vgg19(style_losses.VGG_RANDOM)


def _has_network(host="storage.googleapis.com") -> bool:
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def test_extractor_and_losses_under_mixed_bfloat16():
    """Under a mixed policy VGG19 returns bfloat16 features; the Grams and losses are taken in float32."""
    with training.precision_policy("mixed_bfloat16", tf.distribute.get_strategy()):
        extractor = style_losses.StyleContentExtractor(style_losses.load_vgg19(style_losses.VGG_RANDOM))
        images = tf.random.uniform([2, 32, 32, 3], 0, 255, seed=4)
        outputs = extractor(images)
        targets = extractor(tf.random.uniform([1, 32, 32, 3], 0, 255, seed=5))
        total, parts = style_losses.total_loss(outputs, {"content": targets["content"], "style": targets["style"]},
                                               images)
    assert outputs["content"][0].dtype == tf.bfloat16
    assert all(gram.dtype == tf.float32 for gram in outputs["style"])
    assert total.dtype == tf.float32 and np.isfinite(float(total)) and float(parts["content"]) > 0
    assert float(style_losses.content_loss(outputs["content"], outputs["content"])) == 0.0


def test_gram_known_answers():
    # Read with the first axis as channels (the course's einsum('cij,dij->cd')): one image [1, C=2, H=2, W=2],
    # channel 0 is 1,2,3,4 and channel 1 is 5,6,7,8.
    gram = style_losses.gram_matrix(EXAMPLE[None], data_format="channels_first")
    assert gram.shape == (1, 2, 2)
    np.testing.assert_allclose(gram[0] * 4, [[30, 70], [70, 174]])  # before normalising by H*W = 4
    np.testing.assert_allclose(gram[0], [[7.5, 17.5], [17.5, 43.5]])
    # Read channels-last as one image [1, H=2, W=2, C=2]: channel 0 is 1,3,5,7 and channel 1 is 2,4,6,8.
    gram = style_losses.gram_matrix(EXAMPLE[None])
    assert gram.shape == (1, 2, 2)
    np.testing.assert_allclose(gram[0] * 4, [[84, 100], [100, 120]])  # normalised by H*W = 4
    np.testing.assert_allclose(gram[0], [[21, 25], [25, 30]])


def test_gram_channels_first_is_channels_last_transposed():
    features = tf.random.stateless_uniform([2, 3, 5, 4], seed=[5, 6])  # [B, H, W, C]
    np.testing.assert_allclose(
        style_losses.gram_matrix(tf.transpose(features, [0, 3, 1, 2]), data_format=style_losses.CHANNELS_FIRST),
        style_losses.gram_matrix(features, data_format=style_losses.CHANNELS_LAST), rtol=1e-6)


def test_gram_rejects_unknown_layouts():
    with pytest.raises(ValueError, match="data_format must be 'channels_last' or 'channels_first', got 'NCHW'"):
        style_losses.gram_matrix(EXAMPLE[None], data_format="NCHW")
    with pytest.raises(ValueError, match="rank 4 with a batch axis"):
        style_losses.gram_matrix(EXAMPLE)


def test_gram_normalises_by_locations_not_channels():
    features = tf.ones([2, 3, 5, 4])
    np.testing.assert_allclose(style_losses.gram_matrix(features), np.ones([2, 4, 4]))


def test_content_loss_known_answer():
    content = tf.constant([[1.0, 2.0], [3.0, 4.0]])[None, ..., None]  # one image 2x2x1
    target = tf.constant([[2.0, 2.0], [2.0, 2.0]])[None, ..., None]
    assert float(style_losses.content_loss([content], [target])) == pytest.approx(3.0)
    assert float(style_losses.content_loss(content, target)) == pytest.approx(3.0)  # one layer, no list
    # Averaged over content layers, as the style loss is over style layers: layer losses 3 and 3 give 3
    # (a sum would give 6), 3 and 0 give 1.5.
    assert float(style_losses.content_loss([content, content], [target, target])) == pytest.approx(3.0)
    assert float(style_losses.content_loss([content, target], [target, target])) == pytest.approx(1.5)
    np.testing.assert_allclose(style_losses.content_loss_per_image([content, target], [target, target]), [1.5])


def test_batches_average_per_image_losses():
    content = tf.constant([[1.0, 2.0], [3.0, 4.0]])[None, ..., None]
    target = tf.constant([[2.0, 2.0], [2.0, 2.0]])[None, ..., None]
    batch = tf.concat([content, target], axis=0)  # losses 3 and 0
    np.testing.assert_allclose(style_losses.content_loss_per_image(batch, target), [3.0, 0.0])
    assert float(style_losses.content_loss(batch, tf.concat([target, target], 0))) == pytest.approx(1.5)

    grams = tf.constant([[[1.0, 2.0], [2.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    target_grams = tf.zeros([1, 2, 2])  # the style image's Grams broadcast over the batch
    np.testing.assert_allclose(style_losses.style_loss_per_image(grams, target_grams), [2.5, 0.0])
    assert float(style_losses.style_loss(grams, target_grams)) == pytest.approx(1.25)
    # Averaged over style layers.
    assert float(style_losses.style_loss([grams, grams * 0], [target_grams] * 2)) == pytest.approx(0.625)


def test_mismatched_layers_are_an_error():
    with pytest.raises(ValueError, match="2 feature tensors against 1 targets"):
        style_losses.style_loss([tf.zeros([1, 2, 2])] * 2, [tf.zeros([1, 2, 2])])


def test_total_variation_is_tf_image_total_variation():
    images = tf.random.stateless_uniform([3, 9, 7, 3], seed=[1, 2], maxval=255.0)
    np.testing.assert_allclose(style_losses.total_variation_loss_per_image(images),
                               tf.image.total_variation(images))
    assert float(style_losses.total_variation_loss(images)) == pytest.approx(
        float(tf.reduce_mean(tf.image.total_variation(images))), rel=1e-6)
    assert float(style_losses.total_variation_loss(images[:1])) == pytest.approx(
        float(tf.image.total_variation(images[0])), rel=1e-6)


def test_vgg_preprocess_matches_keras():
    images = np.random.default_rng(0).uniform(0, 255, (2, 5, 6, 3)).astype(np.float32)
    expected = keras.applications.vgg19.preprocess_input(images.copy())
    np.testing.assert_allclose(style_losses.vgg_preprocess(images), expected, atol=1e-4)


def test_extractor_layers_and_shapes(vgg):
    extractor = style_losses.StyleContentExtractor(vgg)
    outputs = extractor(tf.fill([2, 32, 48, 3], 128.0))
    assert [tuple(c.shape) for c in outputs["content"]] == [(2, 2, 3, 512)]  # block5: 1/16 of the input
    assert [tuple(g.shape) for g in outputs["style"]] == [(2, 64, 64), (2, 128, 128), (2, 256, 256),
                                                          (2, 512, 512), (2, 512, 512)]
    assert not vgg.trainable and not extractor.model.trainable_weights


def test_extractor_names_unknown_layers(vgg):
    with pytest.raises(ValueError, match=r"\['block9_conv1'\] are not in vgg19"):
        style_losses.StyleContentExtractor(vgg, style_layers=("block9_conv1",))


def test_total_loss_weights_and_parts(vgg):
    extractor = style_losses.StyleContentExtractor(vgg)
    content = tf.random.stateless_uniform([1, 32, 32, 3], seed=[0, 1], maxval=255.0)
    style = tf.random.stateless_uniform([1, 32, 32, 3], seed=[0, 2], maxval=255.0)
    targets = {"content": extractor(content)["content"], "style": extractor(style)["style"]}
    weights = style_losses.StyleWeights(content_weight=2.0, style_weight=3.0, tv_weight=0.5)
    outputs = extractor(style)
    total, parts = style_losses.total_loss(outputs, targets, style, weights)
    assert float(parts["style"]) == pytest.approx(0.0, abs=1e-6)  # the style image matches its own Grams
    assert float(parts["content"]) == pytest.approx(
        2.0 * float(style_losses.content_loss(outputs["content"], targets["content"])), rel=1e-6)
    assert float(parts["tv"]) == pytest.approx(0.5 * float(tf.image.total_variation(style[0])), rel=1e-6)
    assert float(total) == pytest.approx(sum(float(v) for v in parts.values()), rel=1e-6)


def test_default_weights_are_the_course_values():
    assert style_losses.StyleWeights() == style_losses.StyleWeights(
        content_weight=1e-2, style_weight=2e-2, tv_weight=2.0)


@pytest.mark.parametrize("weights", ["", None])
def test_weights_must_be_chosen(weights):
    with pytest.raises(ValueError, match="VGG19 weights not given: pass 'imagenet'.*'random'"):
        style_losses.load_vgg19(weights)


def test_missing_weights_file_is_named(tmp_path):
    missing = str(tmp_path / "vgg19_notop.h5")
    with pytest.raises(FileNotFoundError, match=re.escape(f"VGG19 weights file {missing} does not exist")):
        style_losses.load_vgg19(missing)


def test_wrong_weights_file_is_named(tmp_path):
    wrong = tmp_path / "not_vgg.h5"
    wrong.write_bytes(b"not an hdf5 file")
    with pytest.raises(style_losses.VGGWeightsError, match=re.escape(f"cannot load VGG19 weights from {wrong}")):
        style_losses.load_vgg19(str(wrong))


def test_local_legacy_h5_weights_load(vgg, tmp_path):
    # The ImageNet file is a Keras 2 (legacy) .h5 weights file; write one in that format and load it.
    h5py = pytest.importorskip("h5py")
    legacy = pytest.importorskip("keras.src.legacy.saving.legacy_h5_format")
    path = tmp_path / style_losses.IMAGENET_NOTOP_FILE
    with h5py.File(path, "w") as f:
        legacy.save_weights_to_hdf5_group(f, vgg)
    loaded = style_losses.load_vgg19(str(path))
    assert not loaded.trainable
    for name in ("block1_conv1", "block5_conv4"):
        for ours, theirs in zip(loaded.get_layer(name).get_weights(), vgg.get_layer(name).get_weights()):
            np.testing.assert_array_equal(ours, theirs)


@pytest.mark.skipif(_has_network(), reason="storage.googleapis.com resolves: Keras would download 80 MB")
def test_imagenet_without_network_says_what_to_pass():
    with pytest.raises(style_losses.VGGWeightsError) as error:
        style_losses.load_vgg19("imagenet")
    message = str(error.value)
    assert "--vgg-weights PATH" in message
    assert style_losses.IMAGENET_NOTOP_FILE in message
