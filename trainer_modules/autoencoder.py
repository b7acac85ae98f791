"""Autoencoder family: the Trainer module (`run_fn`) for dense, deep, conv and denoising variants.

Networks follow the course: dense 784-32-784, deep 128-64-32-64-128, the conv
autoencoder (Conv 64 + pool, Conv 128 + pool, bottleneck Conv 256, mirrored decoder,
sigmoid) and the denoiser (the same conv network trained on `image_noisy` -> `image`).
The pushed SavedModel takes raw inputs: the Transform graph is inside and noise is never
added at serving time.
"""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from serving import signatures as sig
from serving import warmup
from trainer_modules import contract
from trainer_modules import png_output
from trainer_modules import training

VARIANTS = ("dense", "deep", "conv", "denoising")
VARIANT = "variant"  # custom_config key

IMAGE_SHAPE = contract.MNIST_SHAPE
FLAT = int(np.prod(IMAGE_SHAPE))


# ---------------------------------------------------------------------------
# Networks


def build_dense():
    inputs = keras.Input(IMAGE_SHAPE, name="images")
    latent = keras.layers.Dense(32, activation="relu")(keras.layers.Flatten()(inputs))
    encoder = keras.Model(inputs, latent, name="encoder")
    z = keras.Input((32,), name="latent")
    x = keras.layers.Dense(FLAT, activation="sigmoid", dtype="float32")(z)
    decoder = keras.Model(z, keras.layers.Reshape(IMAGE_SHAPE)(x), name="decoder")
    return encoder, decoder


def build_deep():
    inputs = keras.Input(IMAGE_SHAPE, name="images")
    x = keras.layers.Flatten()(inputs)
    for units in (128, 64):
        x = keras.layers.Dense(units, activation="relu")(x)
    encoder = keras.Model(inputs, keras.layers.Dense(32, activation="relu")(x), name="encoder")
    z = keras.Input((32,), name="latent")
    x = z
    for units in (64, 128):
        x = keras.layers.Dense(units, activation="relu")(x)
    x = keras.layers.Dense(FLAT, activation="sigmoid", dtype="float32")(x)
    decoder = keras.Model(z, keras.layers.Reshape(IMAGE_SHAPE)(x), name="decoder")
    return encoder, decoder


def build_conv():
    inputs = keras.Input(IMAGE_SHAPE, name="images")
    x = keras.layers.Conv2D(64, 3, activation="relu", padding="same")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(128, 3, activation="relu", padding="same")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    latent = keras.layers.Conv2D(256, 3, activation="relu", padding="same", name="bottleneck")(x)
    encoder = keras.Model(inputs, latent, name="encoder")
    z = keras.Input((7, 7, 256), name="latent")
    x = keras.layers.Conv2D(128, 3, activation="relu", padding="same")(z)
    x = keras.layers.UpSampling2D(2)(x)
    x = keras.layers.Conv2D(64, 3, activation="relu", padding="same")(x)
    x = keras.layers.UpSampling2D(2)(x)
    x = keras.layers.Conv2D(1, 3, activation="sigmoid", padding="same", dtype="float32")(x)
    decoder = keras.Model(z, x, name="decoder")
    return encoder, decoder


BUILDERS = {"dense": build_dense, "deep": build_deep, "conv": build_conv, "denoising": build_conv}


def build_autoencoder(variant: str):
    """Returns (autoencoder, encoder, decoder) for a variant of VARIANTS."""
    if variant not in BUILDERS:
        raise ValueError(f"unknown autoencoder variant {variant!r}; expected one of {VARIANTS}")
    encoder, decoder = BUILDERS[variant]()
    inputs = keras.Input(IMAGE_SHAPE, name="images")
    model = keras.Model(inputs, decoder(encoder(inputs)), name=f"{variant}_autoencoder")
    return model, encoder, decoder


def input_key(variant: str) -> str:
    """The transformed feature the network reads: noisy images for the denoiser."""
    return contract.NOISY_IMAGE_KEY if variant == "denoising" else contract.IMAGE_KEY


# ---------------------------------------------------------------------------
# Export


class AutoencoderExport(tf.Module):
    """The pushed SavedModel: raw inputs in, reconstructions out (`serving_default` also as PNG bytes)."""

    def __init__(self, model, encoder, decoder, tft_layer, raw_image_shape=()):
        super().__init__()
        self.model = model
        self.encoder = encoder
        self.decoder = decoder
        self.tft_layer = tft_layer
        images_spec = sig.input_spec(sig.IMAGES_INPUT, image_shape=IMAGE_SHAPE)
        latent_spec = sig.input_spec(sig.LATENT_INPUT, latent_shape=encoder.output.shape[1:])

        @tf.function(input_signature=[sig.input_spec(sig.IMAGE_BYTES_INPUT)])
        def serving_default(image_bytes):
            raw = tf.reshape(image_bytes, [-1, *raw_image_shape])
            transformed = self.tft_layer({contract.IMAGE_KEY: raw})
            reconstruction = self._reconstruct(transformed[contract.IMAGE_KEY])
            return {sig.RECONSTRUCTION_OUTPUT: reconstruction,
                    sig.PNG_BYTES_OUTPUT: png_output.encode_png(reconstruction)}

        @tf.function(input_signature=[images_spec])
        def reconstruct(images):
            return {sig.RECONSTRUCTION_OUTPUT: self._reconstruct(images)}

        @tf.function(input_signature=[images_spec])
        def encode(images):
            return {sig.LATENT_OUTPUT: tf.cast(self.encoder(images, training=False), tf.float32)}

        @tf.function(input_signature=[latent_spec])
        def decode(latent):
            return {sig.RECONSTRUCTION_OUTPUT: tf.cast(self.decoder(latent, training=False), tf.float32)}

        self.serving_default = serving_default
        self.reconstruct = reconstruct
        self.encode = encode
        self.decode = decode

    def _reconstruct(self, images):
        return tf.cast(self.model(images, training=False), tf.float32)

    def signatures(self):
        return {
            sig.SERVING_DEFAULT: self.serving_default,
            sig.RECONSTRUCT: self.reconstruct,
            sig.ENCODE: self.encode,
            sig.DECODE: self.decode,
        }


def export_autoencoder(model, encoder, decoder, tf_transform_output, export_dir: str) -> str:
    raw_spec = tf_transform_output.raw_feature_spec()[contract.IMAGE_KEY]
    module = AutoencoderExport(
        model, encoder, decoder, tf_transform_output.transform_features_layer(), list(raw_spec.shape)
    )
    tf.saved_model.save(module, export_dir, signatures=module.signatures())
    return export_dir


# ---------------------------------------------------------------------------
# Trainer entry point


def image_feature_spec(tf_transform_output, keys):
    spec = tf_transform_output.transformed_feature_spec()
    return {k: spec[k] for k in keys if k in spec}


def run_fn(fn_args):
    """TFX Trainer entry point (GenericExecutor)."""
    custom_config = dict(fn_args.custom_config or {})
    variant = custom_config.get(VARIANT, "conv")
    if variant not in VARIANTS:
        raise ValueError(f"custom_config[{VARIANT!r}]={variant!r}; expected one of {VARIANTS}")
    config = training.TrainingConfig.from_custom_config(custom_config)
    keras.utils.set_random_seed(config.seed)
    strategy = training.choose_strategy(config.strategy)
    with training.precision_policy(config.mixed_precision, strategy) as policy:
        _train_and_export(fn_args, variant, config, strategy, policy)


def _train_and_export(fn_args, variant, config, strategy, policy):
    replicas = strategy.num_replicas_in_sync
    global_batch = config.batch_size * replicas

    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    x_key = input_key(variant)
    keys = sorted({x_key, contract.IMAGE_KEY})
    spec = image_feature_spec(tf_transform_output, keys)
    if x_key not in spec:
        raise ValueError(f"transformed examples have no {x_key!r}; the denoising variant needs noise_factor > 0")

    def to_inputs(features):
        return features[x_key], features[contract.IMAGE_KEY]

    train_ds = training.make_dataset(
        fn_args.train_files, spec, to_inputs, global_batch, seed=config.seed, shuffle_buffer=config.shuffle_buffer
    )
    eval_ds = training.make_dataset(fn_args.eval_files, spec, to_inputs, global_batch, shuffle=False)
    preview_x, preview_y = next(iter(training.make_dataset(
        fn_args.eval_files, spec, to_inputs, 8, shuffle=False, repeat=False, drop_remainder=False)))

    def preview_rows():
        rows = [preview_y.numpy(), model(preview_x, training=False).numpy()]
        if x_key != contract.IMAGE_KEY:
            rows.insert(1, preview_x.numpy())
        return rows

    with strategy.scope():
        model, encoder, decoder = build_autoencoder(variant)
        model.compile(
            optimizer=keras.optimizers.Adam(config.learning_rate),
            loss=keras.losses.BinaryCrossentropy(),
            metrics=[keras.metrics.MeanSquaredError(name="mse")],
            jit_compile=config.jit_compile,
            steps_per_execution=config.execution_steps(fn_args.train_steps, strategy),
        )
        optimizer = model.optimizer  # a LossScaleOptimizer under mixed_float16
        optimizer.build(model.trainable_variables)

    fit = training.fit_resumable(
        model, fn_args, config, train_ds, eval_ds, global_batch,
        run_key_parts=(variant, replicas),
        trackables={"model": model, "optimizer": optimizer},
        callbacks=[training.ImageGridCallback(fn_args.model_run_dir, preview_rows, name="inputs_and_reconstructions")],
    )
    export_autoencoder(model, encoder, decoder, tf_transform_output, fn_args.serving_model_dir)
    warmup.add_warmup(fn_args.serving_model_dir, preview_y.numpy())  # TF Serving replays these at load
    training.write_training_summary(fn_args.model_run_dir, {
        "variant": variant,
        "strategy": type(strategy).__name__,
        "replicas": replicas,
        "precision": policy,
        **fit.summary(),
    })
