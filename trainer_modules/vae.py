"""VAE family: the Trainer module (`run_fn`) for the course's convolutional VAE.

Network (as in the course): encoder Conv 32 s2 + BN, Conv 64 s2 + BN, Dense 20 + BN and
two heads, mu and log-variance, of `latent_dim` units (2 by default); a sampling layer
z = mu + exp(0.5 * log_var) * eps; the mirrored decoder Dense 7*7*64 + BN, ConvT 64 s2 + BN,
ConvT 32 s2 + BN, ConvT 1 with a sigmoid, giving 28x28x1 images in [0, 1]. It reads the
transformed `image` in [0, 1] (Transform's value_range "unit").

Loss, in nats per example. The course averaged the KL over the batch *and* the latent
dimensions and used a mean-reduced binary cross-entropy, which weighs the two terms
arbitrarily and is not a bound on anything. Here both terms are per-example sums, so
`loss` is the negative ELBO:

- `reconstruction_nll`: Bernoulli negative log-likelihood summed over the 784 pixels.
  It is computed from the decoder's logits (the pre-sigmoid output of the last ConvT)
  as softplus(l) - x * l, which is exact and finite for every logit; nothing is
  clipped. Images for serving and grids are sigmoid(logits).
- `kl`: KL(q(z|x) || N(0, I)) = -0.5 * sum(1 + log_var - mu^2 - exp(log_var)) over
  the latent dimensions.
- `loss`: reconstruction_nll + kl_weight * kl (kl_weight 1.0 by default); the optimiser
  minimises its mean over the batch.
- `elbo`: -(reconstruction_nll + kl), higher is better; with kl_weight != 1 it is
  still the true ELBO, not the negated training loss.

All four are logged per example (Mean over examples), for training, for the `val_*`
curves and in training_summary.json. The eps of a training step is drawn from a
stateless RNG keyed by (seed, optimizer step, replica), so a resumed run draws exactly
what an uninterrupted one would; evaluation and the exported `elbo` signature use one
fixed eps (a deterministic single-sample estimate).

The pushed SavedModel takes raw inputs (`serving_default`: PNG bytes through the
Transform graph) and never samples at serving except in `sample(num, seed)`:
reconstructions decode mu.
"""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from serving import signatures as sig
from serving import warmup
from trainer_modules import collapse
from trainer_modules import contract
from trainer_modules import png_output
from trainer_modules import training

# custom_config keys of this family.
LATENT_DIM = "latent_dim"
KL_WEIGHT = "kl_weight"

DEFAULT_LATENT_DIM = 2
DEFAULT_KL_WEIGHT = 1.0

IMAGE_SHAPE = contract.MNIST_SHAPE
# Stateless RNG seeds (int [2]) of the draws that must repeat exactly.
EVAL_EPS_SEED = (20240611, 1)  # the fixed eps of evaluation and the `elbo` signature
_SAMPLE_STREAM = 2  # sample(num, seed) draws z with the seed [seed, _SAMPLE_STREAM]


# ---------------------------------------------------------------------------
# Networks


def build_encoder(latent_dim: int = DEFAULT_LATENT_DIM) -> keras.Model:
    """images [N, 28, 28, 1] -> (mu, log_var), each [N, latent_dim] float32."""
    inputs = keras.Input(IMAGE_SHAPE, name="images")
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(20, activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    mu = keras.layers.Dense(latent_dim, name="mu", dtype="float32")(x)
    log_var = keras.layers.Dense(latent_dim, name="log_var", dtype="float32")(x)
    return keras.Model(inputs, [mu, log_var], name="encoder")


def build_decoder_logits(latent_dim: int = DEFAULT_LATENT_DIM) -> keras.Model:
    """latent [N, latent_dim] -> Bernoulli logits [N, 28, 28, 1] float32 (the course decoder before its sigmoid)."""
    z = keras.Input((latent_dim,), name="latent")
    x = keras.layers.Dense(7 * 7 * 64, activation="relu")(z)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Reshape((7, 7, 64))(x)
    x = keras.layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    logits = keras.layers.Conv2DTranspose(1, 3, strides=1, padding="same", name="logits", dtype="float32")(x)
    return keras.Model(z, logits, name="decoder_logits")


class Sampling(keras.layers.Layer):
    """z = mu + exp(0.5 * log_var) * eps, eps ~ N(0, I) from a stateless RNG keyed by `seed` (int [2])."""

    def __init__(self, **kwargs):
        super().__init__(dtype="float32", **kwargs)

    def call(self, mu, log_var, seed):
        eps = tf.random.stateless_normal(tf.shape(mu), seed=seed, dtype=mu.dtype)
        return mu + tf.exp(0.5 * log_var) * eps


def bernoulli_nll(images, logits):
    """Per-example reconstruction NLL in nats: binary cross-entropy summed over pixels, from logits."""
    images = tf.cast(images, tf.float32)
    logits = tf.cast(logits, tf.float32)
    per_pixel = tf.nn.sigmoid_cross_entropy_with_logits(labels=images, logits=logits)
    return tf.reduce_sum(tf.reshape(per_pixel, [tf.shape(per_pixel)[0], -1]), axis=1)


def kl_divergence(mu, log_var):
    """Per-example KL(N(mu, exp(log_var)) || N(0, I)) in nats, summed over latent dimensions."""
    mu = tf.cast(mu, tf.float32)
    log_var = tf.cast(log_var, tf.float32)
    return -0.5 * tf.reduce_sum(1.0 + log_var - tf.square(mu) - tf.exp(log_var), axis=1)


class VAE(keras.Model):
    """Encoder, sampling and decoder with the per-example negative-ELBO training step.

    Calling the model reconstructs deterministically: sigmoid(decoder(mu)).
    """

    def __init__(self, encoder, decoder_logits, kl_weight=DEFAULT_KL_WEIGHT, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder_logits = decoder_logits
        self.sampling = Sampling(name="sampling")
        self.kl_weight = float(kl_weight)
        self.seed = int(seed)
        self.latent_dim = int(encoder.output[0].shape[-1])
        # Two running means are enough: loss and elbo are linear in them (same counts), so they are
        # derived, not tracked; each tracked mean costs variable updates every step.
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_nll")
        self.kl_tracker = keras.metrics.Mean(name="kl")

    def build(self, input_shape=None):
        """Nothing to create: the encoder and decoder are functional models, built when constructed."""

    @property
    def metrics(self):
        return [self.reconstruction_tracker, self.kl_tracker]

    def call(self, images, training=False):
        mu, _ = self.encoder(images, training=training)
        return self.decode(mu, training=training)

    def encode(self, images, training=False):
        return self.encoder(images, training=training)

    def decode(self, latent, training=False):
        return tf.sigmoid(tf.cast(self.decoder_logits(latent, training=training), tf.float32))

    def sample(self, num, seed):
        """`num` images decoded from z ~ N(0, I) drawn with the stateless seed [seed, stream]."""
        seed = tf.stack([tf.cast(seed, tf.int64), tf.constant(_SAMPLE_STREAM, tf.int64)])
        z = tf.random.stateless_normal(tf.stack([num, self.latent_dim]), seed=seed)
        return self.decode(z)

    def elbo_terms(self, images, seed, training=False):
        """(reconstruction_nll, kl) per example in nats, a single-sample estimate with eps keyed by `seed`."""
        mu, log_var = self.encoder(images, training=training)
        z = self.sampling(mu, log_var, seed)
        logits = self.decoder_logits(z, training=training)
        return bernoulli_nll(images, logits), kl_divergence(mu, log_var)

    def _training_seed(self):
        """(optimizer step, seed and replica): fresh eps each step and replica, identical after a resume."""
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        step = tf.cast(self.optimizer.iterations, tf.int64)
        return tf.stack([step, tf.constant(self.seed, tf.int64) * 1024 + tf.cast(replica, tf.int64)])

    def _update_metrics(self, reconstruction_nll, kl):
        """Running means since the last reset: loss (the optimised objective), elbo, reconstruction_nll, kl."""
        self.reconstruction_tracker.update_state(reconstruction_nll)
        self.kl_tracker.update_state(kl)
        reconstruction, kl_mean = self.reconstruction_tracker.result(), self.kl_tracker.result()
        return {
            "loss": reconstruction + self.kl_weight * kl_mean,
            "elbo": -(reconstruction + kl_mean),
            "reconstruction_nll": reconstruction,
            "kl": kl_mean,
        }

    def train_step(self, data):
        images, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            reconstruction_nll, kl = self.elbo_terms(images, self._training_seed(), training=True)
            loss = tf.reduce_mean(reconstruction_nll + self.kl_weight * kl)
            # Gradients are summed over replicas: each contributes its share of the global mean.
            scaled = self.optimizer.scale_loss(loss / replicas)
        gradients = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
        return self._update_metrics(reconstruction_nll, kl)

    def test_step(self, data):
        images, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        reconstruction_nll, kl = self.elbo_terms(images, tf.constant(EVAL_EPS_SEED, tf.int64))
        return self._update_metrics(reconstruction_nll, kl)


def build_vae(latent_dim: int = DEFAULT_LATENT_DIM, kl_weight: float = DEFAULT_KL_WEIGHT, seed: int = 0):
    """Returns (vae, encoder, decoder); `decoder` maps latent points to images in [0, 1]."""
    if latent_dim < 1:
        raise ValueError(f"custom_config[{LATENT_DIM!r}] must be >= 1, got {latent_dim}")
    if kl_weight < 0:
        raise ValueError(f"custom_config[{KL_WEIGHT!r}] must be >= 0, got {kl_weight}")
    encoder = build_encoder(latent_dim)
    decoder_logits = build_decoder_logits(latent_dim)
    z = keras.Input((latent_dim,), name="latent")
    images = keras.layers.Activation("sigmoid", dtype="float32", name="images")(decoder_logits(z))
    decoder = keras.Model(z, images, name="decoder")
    vae = VAE(encoder, decoder_logits, kl_weight=kl_weight, seed=seed, name="vae")
    vae.build((None, *IMAGE_SHAPE))
    return vae, encoder, decoder


# ---------------------------------------------------------------------------
# Export


class VAEExport(tf.Module):
    """The pushed SavedModel: raw inputs in; reconstructions (`serving_default` also as PNG bytes), codes,
    samples and ELBO terms out."""

    def __init__(self, vae, tft_layer, raw_image_shape=()):
        super().__init__()
        self.vae = vae
        self.tft_layer = tft_layer
        images_spec = sig.input_spec(sig.IMAGES_INPUT, image_shape=IMAGE_SHAPE)
        latent_spec = sig.input_spec(sig.LATENT_INPUT, latent_dim=vae.latent_dim)

        @tf.function(input_signature=[sig.input_spec(sig.IMAGE_BYTES_INPUT)])
        def serving_default(image_bytes):
            raw = tf.reshape(image_bytes, [-1, *raw_image_shape])
            transformed = self.tft_layer({contract.IMAGE_KEY: raw})
            reconstruction = self.vae(transformed[contract.IMAGE_KEY], training=False)
            return {sig.RECONSTRUCTION_OUTPUT: reconstruction,
                    sig.PNG_BYTES_OUTPUT: png_output.encode_png(reconstruction)}

        @tf.function(input_signature=[images_spec])
        def reconstruct(images):
            return {sig.RECONSTRUCTION_OUTPUT: self.vae(images, training=False)}

        @tf.function(input_signature=[images_spec])
        def encode(images):
            mu, log_var = self.vae.encode(images)
            return {sig.MU_OUTPUT: tf.cast(mu, tf.float32), sig.LOG_VAR_OUTPUT: tf.cast(log_var, tf.float32)}

        @tf.function(input_signature=[latent_spec])
        def decode(latent):
            return {sig.RECONSTRUCTION_OUTPUT: self.vae.decode(latent)}

        @tf.function(input_signature=[latent_spec])
        def generate(latent):
            return {sig.IMAGES_OUTPUT: self.vae.decode(latent)}

        @tf.function(input_signature=[sig.input_spec(sig.NUM_INPUT), sig.input_spec(sig.SEED_INPUT)])
        def sample(num, seed):
            return {sig.IMAGES_OUTPUT: self.vae.sample(num, seed)}

        @tf.function(input_signature=[images_spec])
        def elbo(images):
            # One fixed eps [N, latent_dim]: the same batch always gets the same values (an example's
            # eps depends on its row, not its pixels).
            reconstruction_nll, kl = self.vae.elbo_terms(images, tf.constant(EVAL_EPS_SEED, tf.int64))
            return {
                sig.ELBO_OUTPUT: -(reconstruction_nll + kl),
                sig.RECONSTRUCTION_NLL_OUTPUT: reconstruction_nll,
                sig.KL_OUTPUT: kl,
            }

        self.serving_default = serving_default
        self.reconstruct = reconstruct
        self.encode = encode
        self.decode = decode
        self.generate = generate
        self.sample = sample
        self.elbo = elbo

    def signatures(self):
        return {
            sig.SERVING_DEFAULT: self.serving_default,
            sig.RECONSTRUCT: self.reconstruct,
            sig.ENCODE: self.encode,
            sig.DECODE: self.decode,
            sig.GENERATE: self.generate,
            sig.SAMPLE: self.sample,
            sig.ELBO: self.elbo,
        }


def export_vae(vae, tf_transform_output, export_dir: str) -> str:
    raw_spec = tf_transform_output.raw_feature_spec()[contract.IMAGE_KEY]
    module = VAEExport(vae, tf_transform_output.transform_features_layer(), list(raw_spec.shape))
    tf.saved_model.save(module, export_dir, signatures=module.signatures())
    return export_dir


# ---------------------------------------------------------------------------
# Trainer entry point


def run_fn(fn_args):
    """TFX Trainer entry point (GenericExecutor)."""
    custom_config = dict(fn_args.custom_config or {})
    latent_dim = int(custom_config.get(LATENT_DIM, DEFAULT_LATENT_DIM))
    kl_weight = float(custom_config.get(KL_WEIGHT, DEFAULT_KL_WEIGHT))
    collapse_config = collapse.CollapseConfig.from_custom_config(custom_config)
    config = training.TrainingConfig.from_custom_config(custom_config)
    keras.utils.set_random_seed(config.seed)
    strategy = training.choose_strategy(config.strategy)
    with training.precision_policy(config.mixed_precision, strategy) as policy:
        _train_and_export(fn_args, latent_dim, kl_weight, collapse_config, config, strategy, policy)


def _check_unit_range(images, where):
    low, high = float(np.min(images)), float(np.max(images))
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"{where}: transformed {contract.IMAGE_KEY!r} spans [{low:.3g}, {high:.3g}]; the VAE's Bernoulli "
            "likelihood needs images in [0, 1] (Transform value_range 'unit')"
        )


def _train_and_export(fn_args, latent_dim, kl_weight, collapse_config, config, strategy, policy):
    replicas = strategy.num_replicas_in_sync
    global_batch = config.batch_size * replicas

    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    spec = {contract.IMAGE_KEY: tf_transform_output.transformed_feature_spec()[contract.IMAGE_KEY]}

    def to_inputs(features):
        return features[contract.IMAGE_KEY]

    train_ds = training.make_dataset(
        fn_args.train_files, spec, to_inputs, global_batch, seed=config.seed, shuffle_buffer=config.shuffle_buffer
    )
    eval_ds = training.make_dataset(fn_args.eval_files, spec, to_inputs, global_batch, shuffle=False)
    # The first eval images, read once: 8 for the range check, grids and warmup; all for the collapse monitor.
    eval_head = next(iter(training.make_dataset(
        fn_args.eval_files, spec, to_inputs, collapse_config.num_samples, shuffle=False, repeat=False,
        drop_remainder=False)))
    preview = eval_head[:8]
    _check_unit_range(preview.numpy(), f"eval examples {fn_args.eval_files}")

    def preview_rows():
        samples = vae.sample(len(preview), config.seed)  # the same prior draws every chunk
        return [preview.numpy(), vae(preview, training=False).numpy(), samples.numpy()]

    with strategy.scope():
        vae, _, _ = build_vae(latent_dim, kl_weight, seed=config.seed)
        vae.compile(
            optimizer=keras.optimizers.Adam(config.learning_rate),
            jit_compile=config.jit_compile,
            steps_per_execution=config.execution_steps(fn_args.train_steps, strategy),
        )
        optimizer = vae.optimizer  # a LossScaleOptimizer under mixed_float16
        optimizer.build(vae.trainable_variables)

    monitor = collapse.PosteriorCollapseMonitor(
        lambda: vae.encode(eval_head, training=False)[0].numpy(), collapse_config)

    eval_steps = fn_args.eval_steps or 1
    fit = training.fit_resumable(
        vae, fn_args, config, train_ds, eval_ds, global_batch,
        run_key_parts=("vae", latent_dim, kl_weight, replicas, *training.collapse_key_parts(collapse_config)),
        trackables={"model": vae, "optimizer": optimizer},
        callbacks=[training.ImageGridCallback(fn_args.model_run_dir, preview_rows,
                                              name="inputs_reconstructions_samples")],
        logging_callbacks=[monitor],
    )
    final_eval = vae.evaluate(eval_ds.take(max(1, int(eval_steps))), verbose=0, return_dict=True)

    export_vae(vae, tf_transform_output, fn_args.serving_model_dir)
    warmup.add_warmup(fn_args.serving_model_dir, preview.numpy())  # TF Serving replays these at load
    training.write_training_summary(fn_args.model_run_dir, {
        "family": "vae",
        "latent_dim": latent_dim,
        "kl_weight": kl_weight,
        "strategy": type(strategy).__name__,
        "replicas": replicas,
        "precision": policy,
        "optimizer_steps": int(optimizer.iterations.numpy()),
        **fit.summary(),
        # Nats per image on the first eval_steps eval batches (single-sample, fixed eps).
        "final_eval": {k: float(final_eval[k]) for k in ("elbo", "reconstruction_nll", "kl", "loss")},
        "collapse_monitor": monitor.summary(),
    })
