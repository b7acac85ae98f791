"""The Transform preprocessing_fn: decode, scale, shape, seeded per-example noise and CelebA attributes."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from conftest import NOISE_FACTOR, make_digit_images, make_face_images
from trainer_modules import contract, preprocessing


FACES = {preprocessing.IMAGE_SHAPE: contract.CELEBA_SHAPE, preprocessing.VALUE_RANGE: "symmetric"}


def _raw(images, labels=None, attributes=None):
    inputs = {contract.IMAGE_KEY: tf.stack([tf.io.encode_png(image) for image in images])}
    if labels is not None:
        inputs[contract.LABEL_KEY] = tf.constant(labels, tf.int64)
    if attributes is not None:
        inputs[contract.ATTRIBUTES_KEY] = attributes if isinstance(attributes, tf.SparseTensor) else tf.constant(
            attributes, tf.int64)
    return inputs


def _attributes(count, seed=0):
    return np.random.default_rng(seed).integers(0, 2, size=(count, preprocessing.NUM_ATTRIBUTES))


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


def test_analyze_and_transform_faces_with_attributes(transformed_faces):
    output = tft.TFTransformOutput(transformed_faces["transform_graph"])
    spec = output.transformed_feature_spec()
    assert spec == {
        contract.IMAGE_KEY: tf.io.FixedLenFeature([64, 64, 3], tf.float32),
        contract.ATTRIBUTES_KEY: tf.io.FixedLenFeature([40], tf.int64),
    }  # landmarks and image_id stay behind; no label, no noise

    files = tf.io.gfile.glob(f"{transformed_faces['examples']}/Split-eval/*")
    records = list(tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator())
    parsed = tf.io.parse_example(records, spec)
    assert len(records) == 16
    expected = transformed_faces["images"][48:].astype(np.float32) / 127.5 - 1.0
    expected_attributes = transformed_faces["attributes"][48:]
    got = parsed[contract.IMAGE_KEY].numpy()
    assert got.min() >= -1.0 and got.max() <= 1.0 and got.min() < -0.5 and got.max() > 0.5
    # Beam may reorder examples: match each transformed face to its source by content, then its attributes.
    for image, attributes in zip(got, parsed[contract.ATTRIBUTES_KEY].numpy()):
        distance = np.abs(expected - image).reshape(16, -1).max(axis=1)
        assert distance.min() < 1e-6
        np.testing.assert_array_equal(attributes, expected_attributes[distance.argmin()])


def test_faces_scaling_shape_and_attribute_passthrough():
    images, attributes = make_face_images(3, seed=5), _attributes(3)
    out = preprocessing.preprocessing_fn(_raw(images, attributes=attributes), FACES)
    assert out[contract.IMAGE_KEY].shape == (3, 64, 64, 3)
    np.testing.assert_allclose(out[contract.IMAGE_KEY].numpy(), images / 127.5 - 1.0, atol=1e-6)
    assert out[contract.ATTRIBUTES_KEY].dtype == tf.int64
    np.testing.assert_array_equal(out[contract.ATTRIBUTES_KEY].numpy(), attributes)
    assert contract.LABEL_KEY not in out

    # JSON-borne config: a list is as good as a tuple; "unit" keeps [0, 1].
    unit = preprocessing.preprocessing_fn(_raw(images), {preprocessing.IMAGE_SHAPE: [64, 64, 3]})
    np.testing.assert_allclose(unit[contract.IMAGE_KEY].numpy(), images / 255.0, atol=1e-7)
    assert contract.ATTRIBUTES_KEY not in unit


def test_sparse_attributes_are_densified_and_checked():
    images, attributes = make_face_images(2, seed=6), _attributes(2, seed=1)
    # A VarLen feature (SchemaGen without shape inference) arrives sparse, with every value present.
    indices = [[row, column] for row in range(2) for column in range(40)]
    varlen = tf.SparseTensor(indices, attributes.reshape(-1), [2, 40])
    out = preprocessing.preprocessing_fn(_raw(images, attributes=varlen), FACES)
    assert tuple(out[contract.ATTRIBUTES_KEY].shape) == (2, 40)
    np.testing.assert_array_equal(out[contract.ATTRIBUTES_KEY].numpy(), attributes)

    # A record with 39 values: its missing value densifies to -1 and fails the 0/1 check.
    short = tf.SparseTensor(indices[:-1], attributes.reshape(-1)[:-1], [2, 40])
    with pytest.raises(tf.errors.InvalidArgumentError, match="must be 0/1"):
        preprocessing.preprocessing_fn(_raw(images, attributes=short), FACES)


def test_attributes_must_be_40_zero_one_values():
    images = make_face_images(2, seed=7)
    with pytest.raises(tf.errors.InvalidArgumentError, match="must be 0/1"):
        preprocessing.preprocessing_fn(_raw(images, attributes=_attributes(2) * 2 - 1), FACES)  # CelebA's -1/1
    with pytest.raises(ValueError, match=r"'attributes' must be int64 \[40\]"):
        preprocessing.preprocessing_fn(_raw(images, attributes=np.zeros((2, 39), np.int64)), FACES)
    # Inside the Transform graph a VarLen batch's width is only known at run time.
    traced = tf.function(preprocessing.dense_attributes,
                         input_signature=[tf.SparseTensorSpec([None, None], tf.int64)])
    long = tf.SparseTensor([[0, 40]], tf.constant([1], tf.int64), [2, 41])
    with pytest.raises(tf.errors.InvalidArgumentError, match="needs 40 values of feature attributes; .*has.*41"):
        traced(long)
    assert tuple(traced(tf.SparseTensor(tf.zeros([0, 2], tf.int64), tf.zeros([0], tf.int64), [0, 0])).shape) == (0, 40)


def test_image_shape_must_match_the_pngs():
    with pytest.raises(tf.errors.InvalidArgumentError, match="is not 28x28"):
        preprocessing.preprocessing_fn(_raw(make_face_images(1)), {})  # faces without image_shape
    with pytest.raises(tf.errors.InvalidArgumentError, match="is not 64x64"):
        preprocessing.preprocessing_fn(_raw(make_digit_images(1)), FACES)


@pytest.mark.parametrize("config, message", [
    ({preprocessing.VALUE_RANGE: "bytes"}, "must be 'unit' or 'symmetric'"),
    ({preprocessing.NOISE_FACTOR: -0.1}, "must be >= 0"),
    ({preprocessing.IMAGE_SHAPE: (64, 64)}, "must be \\(height, width, channels\\)"),
    ({preprocessing.IMAGE_SHAPE: (64, 64, 2)}, "1, 3 or 4 channels"),
    ({preprocessing.IMAGE_SHAPE: (64.5, 64, 3)}, "positive whole sizes"),
    ({preprocessing.IMAGE_SHAPE: "64x64x3"}, "got '64x64x3'"),
])
def test_bad_config_is_rejected(config, message):
    with pytest.raises(ValueError, match=message):
        preprocessing.preprocessing_fn(_raw(make_digit_images(1)), config)


def test_wrong_image_size_fails_with_shape_error():
    wrong = np.zeros((1, 32, 32, 1), np.uint8)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
        preprocessing.preprocessing_fn(_raw(wrong), {})
