"""The Transform preprocessing_fn: decode, scale, shape and seeded per-example noise."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from conftest import NOISE_FACTOR, make_digit_images
from trainer_modules import contract, preprocessing


def _raw(images, labels=None):
    inputs = {contract.IMAGE_KEY: tf.stack([tf.io.encode_png(image) for image in images])}
    if labels is not None:
        inputs[contract.LABEL_KEY] = tf.constant(labels, tf.int64)
    return inputs


def test_analyze_and_transform_output_schema_and_values(transformed_data):
    output = tft.TFTransformOutput(transformed_data["transform_graph"])
    spec = output.transformed_feature_spec()
    assert spec[contract.IMAGE_KEY] == tf.io.FixedLenFeature([28, 28, 1], tf.float32)
    assert spec[contract.NOISY_IMAGE_KEY] == tf.io.FixedLenFeature([28, 28, 1], tf.float32)
    assert spec[contract.LABEL_KEY] == tf.io.FixedLenFeature([], tf.int64)

    files = tf.io.gfile.glob(f"{transformed_data['examples']}/Split-eval/*")
    records = list(tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator())
    parsed = tf.io.parse_example(records, spec)
    assert len(records) == 16
    expected = transformed_data["images"][48:].astype(np.float32) / 255.0
    got = parsed[contract.IMAGE_KEY].numpy()
    # Beam may reorder examples: match each transformed image to its source by content.
    for image in got:
        assert np.min(np.abs(expected - image).reshape(16, -1).max(axis=1)) < 1e-6
    noisy = parsed[contract.NOISY_IMAGE_KEY].numpy()
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0
    assert not np.allclose(noisy, got)


def test_scaling_shape_and_label_passthrough():
    images = make_digit_images(4, seed=3)
    out = preprocessing.preprocessing_fn(_raw(images, [1, 2, 3, 4]), {})
    np.testing.assert_allclose(out[contract.IMAGE_KEY].numpy(), images / 255.0, atol=1e-7)
    assert out[contract.IMAGE_KEY].shape == (4, 28, 28, 1)
    assert contract.NOISY_IMAGE_KEY not in out  # no noise unless asked for
    np.testing.assert_array_equal(out[contract.LABEL_KEY].numpy(), [1, 2, 3, 4])

    symmetric = preprocessing.preprocessing_fn(_raw(images), {preprocessing.VALUE_RANGE: "symmetric"})
    np.testing.assert_allclose(symmetric[contract.IMAGE_KEY].numpy(), images / 127.5 - 1.0, atol=1e-6)


def test_noise_is_seeded_per_example_and_clipped():
    images = make_digit_images(6, seed=4)
    config = {preprocessing.NOISE_FACTOR: NOISE_FACTOR, preprocessing.SEED: 11}
    first = preprocessing.preprocessing_fn(_raw(images), config)[contract.NOISY_IMAGE_KEY].numpy()
    # Same example in another batch, another position: same noise.
    shuffled = preprocessing.preprocessing_fn(_raw(images[::-1]), config)[contract.NOISY_IMAGE_KEY].numpy()
    np.testing.assert_array_equal(first, shuffled[::-1])
    other_seed = preprocessing.preprocessing_fn(
        _raw(images), {**config, preprocessing.SEED: 12})[contract.NOISY_IMAGE_KEY].numpy()
    assert not np.array_equal(first, other_seed)
    assert first.min() >= 0.0 and first.max() <= 1.0

    # Before clipping the noise is N(0, noise_factor^2): check on pixels far from both bounds.
    noise = preprocessing.example_noise(_raw(images)[contract.IMAGE_KEY], (28, 28, 1), 11).numpy()
    assert abs(noise.mean()) < 0.05 and abs(noise.std() - 1.0) < 0.05
    clean = images / 255.0
    np.testing.assert_allclose(first, np.clip(clean + NOISE_FACTOR * noise, 0, 1), atol=1e-6)


@pytest.mark.parametrize("config, message", [
    ({preprocessing.VALUE_RANGE: "bytes"}, "must be 'unit' or 'symmetric'"),
    ({preprocessing.NOISE_FACTOR: -0.1}, "must be >= 0"),
])
def test_bad_config_is_rejected(config, message):
    with pytest.raises(ValueError, match=message):
        preprocessing.preprocessing_fn(_raw(make_digit_images(1)), config)


def test_wrong_image_size_fails_with_shape_error():
    wrong = np.zeros((1, 32, 32, 1), np.uint8)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
        preprocessing.preprocessing_fn(_raw(wrong), {})
