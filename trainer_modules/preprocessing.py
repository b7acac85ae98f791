"""tf.Transform preprocessing for MNIST-family images (the Transform component's `preprocessing_fn`).

Decodes the PNG `image`, scales it to [0, 1] (or [-1, 1] for tanh-output models) as
float32 [28, 28, 1] and, for denoising, adds `image_noisy`: Gaussian noise of
`noise_factor` from a stateless RNG keyed by the pipeline seed and the example's own
bytes, clipped to [0, 1]. The same example always gets the same noise, so a rerun sees
the same noisy eval set; at serving time only `image` is used, so noise never reaches a
served request.
"""
import tensorflow as tf

from trainer_modules import contract

# custom_config keys understood by preprocessing_fn.
NOISE_FACTOR = "noise_factor"
SEED = "seed"
VALUE_RANGE = "value_range"  # "unit" -> [0, 1], "symmetric" -> [-1, 1]


def decode_images(encoded: tf.Tensor, shape=contract.MNIST_SHAPE) -> tf.Tensor:
    """PNG bytes [N] -> float32 [N, H, W, C] in [0, 1]."""
    height, width, channels = shape

    def _decode(png):
        image = tf.io.decode_png(png, channels=channels)
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

    encoded = _dense(inputs[contract.IMAGE_KEY], b"")
    images = decode_images(encoded)
    outputs = {}
    if noise_factor > 0:
        outputs[contract.NOISY_IMAGE_KEY] = add_noise(images, encoded, noise_factor, seed)
    if value_range == "symmetric":
        images = images * 2.0 - 1.0
    outputs[contract.IMAGE_KEY] = images
    if contract.LABEL_KEY in inputs:
        outputs[contract.LABEL_KEY] = _dense(inputs[contract.LABEL_KEY], -1)
    return outputs
