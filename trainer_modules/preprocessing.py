"""tf.Transform preprocessing for image datasets (the Transform component's `preprocessing_fn`).

Decodes the PNG `image`, scales it to [0, 1] (or [-1, 1] for tanh-output models) as
float32 of `image_shape` ([28, 28, 1] for the MNIST family by default, contract.CELEBA_SHAPE
[64, 64, 3] for faces) and, for denoising, adds `image_noisy`: Gaussian noise of
`noise_factor` from a stateless RNG keyed by the pipeline seed and the example's own
bytes, clipped to [0, 1]. The same example always gets the same noise, so a rerun sees
the same noisy eval set; at serving time only `image` is used, so noise never reaches a
served request.

`label` (MNIST) and CelebA's `attributes` (int64 [40], 0/1) pass through as dense int64,
so a domain classifier or an evaluator can read them from the transformed examples.
"""
import tensorflow as tf

from trainer_modules import contract

# custom_config keys understood by preprocessing_fn.
NOISE_FACTOR = "noise_factor"
SEED = "seed"
VALUE_RANGE = "value_range"  # "unit" -> [0, 1], "symmetric" -> [-1, 1]
IMAGE_SHAPE = "image_shape"  # (height, width, channels) of the PNGs; default contract.MNIST_SHAPE

NUM_ATTRIBUTES = len(contract.CELEBA_ATTRIBUTES)


def image_shape_of(config) -> tuple:
    """custom_config[IMAGE_SHAPE] as a (height, width, channels) tuple of ints, checked.

    Pipelines pass it through JSON, so a list [64, 64, 3] is as good as a tuple.
    """
    value = (config or {}).get(IMAGE_SHAPE, contract.MNIST_SHAPE)
    try:
        shape = tuple(int(v) for v in value)
        whole = all(int(v) == v for v in value)
    except (TypeError, ValueError):
        shape, whole = (), False
    if not whole or len(shape) != 3 or min(shape[:2]) < 1 or shape[2] not in (1, 3, 4):
        raise ValueError(f"custom_config[{IMAGE_SHAPE!r}] must be (height, width, channels) with positive "
                         f"whole sizes and 1, 3 or 4 channels, e.g. {contract.CELEBA_SHAPE}; got {value!r}")
    return shape


def decode_images(encoded: tf.Tensor, shape=contract.MNIST_SHAPE) -> tf.Tensor:
    """PNG bytes [N] -> float32 [N, H, W, C] in [0, 1]."""
    height, width, channels = shape

    def _decode(png):
        image = tf.io.decode_png(png, channels=channels)
        checked = tf.debugging.assert_equal(
            tf.shape(image)[:2], tf.constant([height, width]),
            message=f"a PNG `{contract.IMAGE_KEY}` is not {height}x{width} (custom_config[{IMAGE_SHAPE!r}] "
                    f"is {tuple(shape)}); shape (height, width) of the decoded image:")
        with tf.control_dependencies([checked]):
            return tf.ensure_shape(image, shape)

    images = tf.map_fn(_decode, encoded, fn_output_signature=tf.TensorSpec(shape, tf.uint8))
    return tf.cast(images, tf.float32) / 255.0


def example_noise(encoded: tf.Tensor, shape, seed: int) -> tf.Tensor:
    """Standard normal noise per example, keyed by (seed, hash of the example's bytes)."""
    keys = tf.strings.to_hash_bucket_fast(encoded, 2**62)
    seeds = tf.stack([tf.fill(tf.shape(keys), tf.constant(seed, tf.int64)), keys], axis=1)
    return tf.map_fn(
        lambda s: tf.random.stateless_normal(shape, seed=s),
        seeds,
        fn_output_signature=tf.TensorSpec(shape, tf.float32),
    )


def add_noise(images: tf.Tensor, encoded: tf.Tensor, noise_factor: float, seed: int) -> tf.Tensor:
    """The DESIGN.md noise: images + noise_factor * N(0, 1), clipped to [0, 1]."""
    noise = example_noise(encoded, images.shape[1:], seed)
    return tf.clip_by_value(images + noise_factor * noise, 0.0, 1.0)


def _dense(feature: tf.Tensor, default) -> tf.Tensor:
    if isinstance(feature, tf.SparseTensor):
        feature = tf.sparse.to_dense(feature, default_value=default)
    return tf.reshape(feature, [-1])


def dense_attributes(feature) -> tf.Tensor:
    """CelebA attributes -> int64 [N, 40] of 0/1, failing on a record with another count or value.

    SchemaGen with infer_feature_shape gives a dense [N, 40]; without it the feature arrives as
    a SparseTensor, densified here with -1 so a short record fails the 0/1 check below.
    """
    if isinstance(feature, tf.SparseTensor):
        feature = tf.sparse.to_dense(feature, default_value=-1)
    if feature.shape.rank != 2 or feature.shape[1] not in (None, NUM_ATTRIBUTES):
        raise ValueError(f"feature {contract.ATTRIBUTES_KEY!r} must be int64 [{NUM_ATTRIBUTES}] per example "
                         f"(contract.CELEBA_ATTRIBUTES), got a batch of shape {feature.shape}")
    feature = tf.cast(feature, tf.int64)
    checks = [
        tf.debugging.Assert(  # an empty sparse batch densifies to [0, 0]
            (tf.shape(feature)[0] == 0) | (tf.shape(feature)[1] == NUM_ATTRIBUTES),
            [f"every example needs {NUM_ATTRIBUTES} values of feature {contract.ATTRIBUTES_KEY}; "
             "the longest record has",
             tf.shape(feature)[1]]),
        tf.debugging.assert_equal(
            tf.reduce_all((feature == 0) | (feature == 1)), True,
            message=f"{contract.ATTRIBUTES_KEY!r} must be 0/1 (the ExampleGen maps CelebA's -1/1 to 0/1; "
                    "-1 here is also a record with fewer values)"),
    ]
    with tf.control_dependencies(checks):
        return tf.reshape(tf.identity(feature), [-1, NUM_ATTRIBUTES])


def preprocessing_fn(inputs, custom_config=None):
    """tf.Transform entry point: raw tf.Example features -> model-ready features."""
    config = custom_config or {}
    noise_factor = float(config.get(NOISE_FACTOR, 0.0))
    seed = int(config.get(SEED, 0))
    value_range = config.get(VALUE_RANGE, "unit")
    if value_range not in ("unit", "symmetric"):
        raise ValueError(f"custom_config[{VALUE_RANGE!r}] must be 'unit' or 'symmetric', got {value_range!r}")
    if noise_factor < 0:
        raise ValueError(f"custom_config[{NOISE_FACTOR!r}] must be >= 0, got {noise_factor}")

    shape = image_shape_of(config)

    encoded = _dense(inputs[contract.IMAGE_KEY], b"")
    images = decode_images(encoded, shape)
    outputs = {}
    if noise_factor > 0:
        outputs[contract.NOISY_IMAGE_KEY] = add_noise(images, encoded, noise_factor, seed)
    if value_range == "symmetric":
        images = images * 2.0 - 1.0
    outputs[contract.IMAGE_KEY] = images
    if contract.LABEL_KEY in inputs:
        outputs[contract.LABEL_KEY] = _dense(inputs[contract.LABEL_KEY], -1)
    if contract.ATTRIBUTES_KEY in inputs:
        outputs[contract.ATTRIBUTES_KEY] = dense_attributes(inputs[contract.ATTRIBUTES_KEY])
    return outputs
