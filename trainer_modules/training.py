"""Training plumbing shared by every model family.

Strategy from the hardware, global batch scaled by replicas, tf.data input from the
transformed examples, mixed precision, checkpoints that let a killed Trainer resume,
and TensorBoard image grids. Family modules (autoencoder.py, ...) only define networks
and signatures.
"""
import contextlib
import itertools
import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from typing import Callable, Dict, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

# custom_config keys shared by all families.
STRATEGY = "strategy"  # "auto" (default), "tpu", "mirrored", "one_device", "default"
MIXED_PRECISION = "mixed_precision"  # "", "auto", "mixed_float16" or "mixed_bfloat16"
CHECKPOINT_ROOT = "checkpoint_root"
CHECKPOINT_EVERY = "checkpoint_every"
LEARNING_RATE = "learning_rate"
BATCH_SIZE = "batch_size"  # per replica
SEED = "seed"
JIT_COMPILE = "jit_compile"
STEPS_PER_EXECUTION = "steps_per_execution"
SHUFFLE_BUFFER = "shuffle_buffer"
CODE_FINGERPRINT = "code_fingerprint"


@dataclasses.dataclass
class TrainingConfig:
    """Hyperparameters common to all families, read from the Trainer's custom_config."""

    batch_size: int = 128
    learning_rate: float = 1e-3
    seed: int = 0
    strategy: str = "auto"
    mixed_precision: str = ""
    checkpoint_root: str = ""
    checkpoint_every: int = 100
    jit_compile: object = "auto"
    # Steps per call into the compiled train function. 10 spreads fit's per-step work (callback
    # hooks, the Python call) over ten steps: benchmarks/README.md measured the dense GAN at 0.88x
    # of a GradientTape loop with 1 and 1.14x with 10, the VAE 0.97x and 1.00x.
    steps_per_execution: int = 10
    shuffle_buffer: int = 10_000

    @classmethod
    def from_custom_config(cls, custom_config: Optional[dict]) -> "TrainingConfig":
        config = dict(custom_config or {})
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in config.items() if k in known}
        result = cls(**values)
        if result.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {result.batch_size}")
        if result.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {result.checkpoint_every}")
        if result.steps_per_execution < 1:
            raise ValueError(f"steps_per_execution must be >= 1, got {result.steps_per_execution}")
        return result

    def step_plan(self, train_steps: int, strategy: Optional[tf.distribute.Strategy] = None):
        """(epochs, steps_per_epoch, steps_per_execution) for compile() and fit(); see chunk_steps.

        Under a MirroredStrategy over several devices the steps run one per execution: Keras 3's
        multi-step train function fails there with "You must feed a value for placeholder tensor"
        (keras-team/keras#19246, still open; reproduced here with TF 2.16 on two logical CPUs).
        """
        per_execution = self.steps_per_execution
        if (strategy is not None and strategy.num_replicas_in_sync > 1
                and not isinstance(strategy, tf.distribute.TPUStrategy) and per_execution > 1):
            logging.info("steps_per_execution %d -> 1 under %s with %d replicas (keras-team/keras#19246)",
                         per_execution, type(strategy).__name__, strategy.num_replicas_in_sync)
            per_execution = 1
        return chunk_steps(train_steps, self.checkpoint_every, per_execution)

    def execution_steps(self, train_steps: int, strategy: Optional[tf.distribute.Strategy] = None) -> int:
        """steps_per_execution for compile(), fitted to the checkpoint chunks."""
        return self.step_plan(train_steps, strategy)[2]

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------
# Hardware: strategy and precision


def choose_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """TPUStrategy when a TPU is found, MirroredStrategy over several GPUs, else one device.

    `name` forces a choice: "mirrored" over all GPUs (or all logical CPUs when there is
    no GPU, which is how the multi-device path is tested on a CPU machine).
    """
    if name in ("auto", "tpu"):
        tpu = _find_tpu()
        if tpu is not None:
            tf.config.experimental_connect_to_cluster(tpu)
            tf.tpu.experimental.initialize_tpu_system(tpu)
            return tf.distribute.TPUStrategy(tpu)
        if name == "tpu":
            raise RuntimeError("strategy 'tpu' was asked for but no TPU was found")
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return _mirrored_strategy(devices)
    if name == "auto" and len(gpus) > 1:
        return _mirrored_strategy()
    if name in ("auto", "one_device") and len(gpus) == 1:
        return tf.distribute.OneDeviceStrategy(gpus[0].name)
    if name in ("auto", "default", "one_device"):
        return tf.distribute.get_strategy()
    raise ValueError(f"unknown strategy {name!r}; expected auto, tpu, mirrored, one_device or default")


_COLLECTIVE_KEY_BASES = itertools.count(1)


def _mirrored_strategy(devices=None) -> tf.distribute.MirroredStrategy:
    """A MirroredStrategy with collective keys of its own.

    Every MirroredStrategy numbers its collective groups and instances from the same start, so a
    second one in a process (a second Trainer under LocalDagRunner, a test session) runs into the
    first's collectives: "Shape mismatch in the collective instance 100" (tensorflow/tensorflow#62790).
    TensorFlow's own tests separate strategies the same way, through `_collective_key_base`.
    """
    previous = getattr(tf.distribute.MirroredStrategy, "_collective_key_base", None)
    if previous is None:
        return tf.distribute.MirroredStrategy(devices)
    tf.distribute.MirroredStrategy._collective_key_base = 100_000 * next(_COLLECTIVE_KEY_BASES)
    try:
        return tf.distribute.MirroredStrategy(devices)
    finally:
        tf.distribute.MirroredStrategy._collective_key_base = previous


def _find_tpu():
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        if not resolver.master():
            return None
        return resolver
    except (ValueError, KeyError, RuntimeError, tf.errors.NotFoundError):
        return None


def split_logical_cpus(count: int) -> None:
    """Expose `count` logical CPU devices (must run before TensorFlow initialises devices)."""
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as error:  # devices already initialised
        if len(tf.config.list_logical_devices("CPU")) < count:
            raise RuntimeError(f"cannot split the CPU into {count} logical devices: {error}") from error


@contextlib.contextmanager
def precision_policy(policy: str, strategy: tf.distribute.Strategy):
    """Applies a mixed-precision policy while models are built and trained, then restores the old one.

    "auto" picks bfloat16 on TPU and float16 on GPU (Keras wraps the optimizer in a
    LossScaleOptimizer for float16); "" means float32.
    """
    if policy == "auto":
        if isinstance(strategy, tf.distribute.TPUStrategy):
            policy = "mixed_bfloat16"
        elif tf.config.list_logical_devices("GPU"):
            policy = "mixed_float16"
        else:
            policy = "float32"
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy or "float32")
    try:
        yield keras.mixed_precision.global_policy().name
    finally:
        keras.mixed_precision.set_global_policy(previous)


# ---------------------------------------------------------------------------
# Input


def tfrecord_files(uri_or_pattern) -> List[str]:
    """Expand the Trainer's file patterns (a list or a single pattern) into files."""
    patterns = [uri_or_pattern] if isinstance(uri_or_pattern, str) else list(uri_or_pattern)
    files = sorted(f for p in patterns for f in tf.io.gfile.glob(p if "*" in p else os.path.join(p, "*")))
    if not files:
        raise FileNotFoundError(f"no TFRecord files match {patterns}")
    return files


def make_dataset(
    file_pattern,
    feature_spec: Dict[str, tf.io.FixedLenFeature],
    to_inputs: Callable[[Dict[str, tf.Tensor]], object],
    batch_size: int,
    shuffle: bool = True,
    repeat: bool = True,
    seed: int = 0,
    shuffle_buffer: int = 10_000,
    drop_remainder: bool = True,
) -> tf.data.Dataset:
    """Stream transformed examples from gzipped TFRecords, parsed a batch at a time."""
    files = tfrecord_files(file_pattern)
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed)
    dataset = dataset.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
        cycle_length=min(4, len(files)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=not shuffle,
    )
    # Decompressed records are small; caching them saves the gzip work on every epoch.
    dataset = dataset.cache()
    if repeat:
        dataset = dataset.repeat()
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(
        lambda records: to_inputs(tf.io.parse_example(records, feature_spec)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------------------
# Checkpoints that survive a killed Trainer


def run_key(*parts) -> str:
    """A short digest of what defines a training run (inputs, hyperparameters)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def collapse_key_parts(collapse_config) -> tuple:
    """Run-key parts of the collapse settings (collapse.CollapseConfig).

    With stop_on_collapse they decide where training ends, so a run stopped by its alarm is not
    resumed (and kept stopped) by a run without the flag, which trains from the start instead, nor
    the reverse. Without it the monitor only reports and adds nothing, so those keys are unchanged.
    """
    return (collapse_config.as_dict(),) if collapse_config.stop_on_collapse else ()


class CallbackState(tf.train.experimental.PythonState):
    """A callback's Python state inside the training checkpoint, so a resumed run carries it on.

    The callback gives `get_state()` (a JSON-serialisable dict) and `set_state(dict)`; the collapse
    monitors keep their checks, the run's best values and the alarm this way, so a Trainer killed
    and resumed judges and reports the whole run, not only the part after the restart.
    """

    def __init__(self, callback):
        self.callback = callback

    def serialize(self) -> str:
        return json.dumps(self.callback.get_state())

    def deserialize(self, string_value) -> None:
        if isinstance(string_value, bytes):
            string_value = string_value.decode("utf-8")
        self.callback.set_state(json.loads(string_value))


class ResumableTraining:
    """Model, optimizer(s) and epoch counter in a tf.train.Checkpoint under a stable directory.

    The directory is keyed by the run's inputs and hyperparameters, so a Trainer that was
    killed and is launched again on the same inputs continues from its last completed
    chunk of steps, optimizer state included; a run with different inputs starts fresh.
    """

    def __init__(self, directory: str, max_to_keep: int = 2, **trackables):
        self.directory = directory
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="completed_epochs")
        self.checkpoint = tf.train.Checkpoint(completed_epochs=self.epoch, **trackables)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=max_to_keep)

    def restore(self) -> int:
        """Restore the latest checkpoint if any; returns the number of completed epochs."""
        latest = self.manager.latest_checkpoint
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            logging.info("Resuming from %s after %d completed epochs", latest, int(self.epoch.numpy()))
        return int(self.epoch.numpy())

    def callback(self) -> keras.callbacks.Callback:
        owner = self

        class _Save(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                owner.epoch.assign(epoch + 1)
                owner.manager.save(checkpoint_number=epoch + 1)

        return _Save()


def chunk_steps(train_steps: int, checkpoint_every: int, steps_per_execution: int = 1):
    """Split train_steps into equal epochs of about checkpoint_every steps.

    Returns (epochs, steps_per_epoch, execution_steps). epochs * steps_per_epoch >= train_steps,
    and steps_per_epoch is a multiple of execution_steps, the steps per call into the train
    function that compile() gets: Keras runs whole executions, so an epoch that is not a multiple
    would run past its end. execution_steps is at most steps_per_execution and at least half of it
    (or the whole epoch when that is shorter), chosen to add the fewest steps: 100-step chunks run
    10 x 10, 95-step chunks 19 x 5, 97-step chunks 14 x 7 (one step more).
    """
    if train_steps < 1:
        raise ValueError(f"train_steps must be >= 1, got {train_steps}")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    if steps_per_execution < 1:
        raise ValueError(f"steps_per_execution must be >= 1, got {steps_per_execution}")
    epochs = math.ceil(train_steps / checkpoint_every)
    per_epoch = math.ceil(train_steps / epochs)
    largest = min(steps_per_execution, per_epoch)

    def padded(steps):
        return math.ceil(per_epoch / steps) * steps

    execution = min(range(math.ceil(largest / 2), largest + 1), key=lambda d: (padded(d) - per_epoch, -d))
    return epochs, padded(execution), execution


class ThroughputCallback(keras.callbacks.Callback):
    """Training examples per second, per epoch, from the first to the last batch of the epoch.

    Timing starts after the epoch's first batch, so compilation and input warm-up are left out.
    """

    def __init__(self, global_batch_size: int):
        super().__init__()
        self.global_batch_size = global_batch_size
        self.per_epoch: List[float] = []
        self._start = None
        self._first_batch = self._last_batch = 0

    def on_train_batch_end(self, batch, logs=None):
        # With steps_per_execution > 1 Keras calls this once per execution; `batch` is the step index.
        if self._start is None:
            self._start, self._first_batch = time.perf_counter(), batch
        self._last_batch = batch

    def on_epoch_end(self, epoch, logs=None):
        steps = self._last_batch - self._first_batch
        if self._start is not None and steps > 0:
            self.per_epoch.append(steps * self.global_batch_size / (time.perf_counter() - self._start))
        self._start = None

    @property
    def steady_examples_per_second(self) -> Optional[float]:
        """Median over epochs, leaving out the first epoch when there are several."""
        values = self.per_epoch[1:] or self.per_epoch
        return float(np.median(values)) if values else None


class EvaluateEachChunk(keras.callbacks.Callback):
    """Validation after each checkpoint chunk (epoch) as a separate `evaluate` on a finite slice.

    Used instead of `fit(validation_data=...)`: measured in benchmarks/train_throughput.py, Keras's
    in-fit validation on an endless eval dataset costs 6-19% of training throughput here, a separate
    evaluate of the same steps 0-2%. Every chunk sees the same first `steps` eval batches, so the
    val_* curves compare like with like. Put it before TensorBoard so the val_* logs get written.
    """

    def __init__(self, data: tf.data.Dataset, steps: int):
        super().__init__()
        self.data, self.steps = data, max(1, int(steps))

    def on_epoch_end(self, epoch, logs=None):
        results = self.model.evaluate(self.data.take(self.steps), verbose=0, return_dict=True)
        if logs is not None:
            logs.update({f"val_{name}": float(value) for name, value in results.items()})


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """TensorBoard scalars per epoch, without the per-batch summary calls.

    Keras 3.15's TensorBoard.on_train_batch_end calls summary.scalar for every log value after
    every batch even with update_freq="epoch": nothing is written (no writer is active) but the
    eager ops cost 0.2-0.4 ms per step, 9% of a dense-GAN step (benchmarks/generative_steps.py,
    --project-patch tensorboard-epoch-only). The train graph is still written after the first batch.
    """

    def __init__(self, log_dir: str):
        super().__init__(log_dir=log_dir, update_freq="epoch")

    def on_train_batch_end(self, batch, logs=None):
        if self._should_write_train_graph:
            self._write_keras_model_train_graph()
            self._should_write_train_graph = False


@dataclasses.dataclass
class FitResult:
    """What fit_resumable did: its Keras history and the numbers every training summary reports."""

    history: object
    initial_epoch: int
    epochs: int
    steps_per_epoch: int
    seconds: float
    global_batch: int
    steady_examples_per_second: Optional[float]

    def summary(self) -> dict:
        # Epochs this fit ran: fewer than planned when a callback stopped it (stop_on_collapse).
        epochs_run = len(self.history.epoch) if hasattr(self.history, "epoch") else self.epochs - self.initial_epoch
        steps_run = epochs_run * self.steps_per_epoch
        history = getattr(self.history, "history", None) or {}
        return {
            "global_batch_size": self.global_batch,
            "train_steps": self.epochs * self.steps_per_epoch,
            "resumed_from_epoch": self.initial_epoch,
            "steps_this_run": steps_run,
            "stopped_at_step": (self.initial_epoch + epochs_run) * self.steps_per_epoch
            if self.initial_epoch + epochs_run < self.epochs else None,
            "seconds_per_step": self.seconds / steps_run if steps_run else None,
            "examples_per_second": steps_run * self.global_batch / self.seconds if steps_run else None,
            "steady_examples_per_second": self.steady_examples_per_second,
            "final": {k: float(v[-1]) for k, v in history.items()},
        }


def fit_resumable(model, fn_args, config: TrainingConfig, train_ds, eval_ds, global_batch: int,
                  run_key_parts: Sequence, trackables: Dict[str, object], callbacks: Sequence = (),
                  logging_callbacks: Sequence = ()) -> FitResult:
    """model.fit in checkpointed chunks, resuming a killed run with the same key, with the shared callbacks.

    fn_args.train_steps are split into epochs of at most config.checkpoint_every steps; after
    each, the `trackables` (model, optimizers) and the epoch are checkpointed under a directory
    keyed by the training files, `run_key_parts`, the steps and the code fingerprint. Every
    chunk also validates on fn_args.eval_steps eval batches and writes TensorBoard scalars;
    `callbacks` (image grids) run after those; `logging_callbacks` run before TensorBoard, so what
    they add to the epoch logs (the collapse monitor's measurements) is written and kept in the history.
    A logging callback with `get_state`/`set_state` is checkpointed with the model (CallbackState),
    after its check of the chunk; when the restored state says it stopped the run
    (`stopped_early`), the resumed run trains no further.
    """
    epochs, steps_per_epoch, per_execution = config.step_plan(fn_args.train_steps, model.distribute_strategy)
    if model.steps_per_execution != per_execution:
        raise ValueError(f"the model was compiled with steps_per_execution={model.steps_per_execution}; "
                         f"compile with config.execution_steps(train_steps, strategy) = {per_execution} so "
                         f"every {steps_per_epoch}-step chunk is whole executions")
    code = (fn_args.custom_config or {}).get(CODE_FINGERPRINT, "")
    checkpoint_dir = os.path.join(
        config.checkpoint_root or os.path.join(fn_args.model_run_dir, "checkpoints"),
        run_key(fn_args.train_files, *run_key_parts, config.as_dict(), fn_args.train_steps, code),
    )
    states = {f"callback_state_{i}": CallbackState(callback)
              for i, callback in enumerate(logging_callbacks) if hasattr(callback, "get_state")}
    resumable = ResumableTraining(checkpoint_dir, **trackables, **states)
    initial_epoch = resumable.restore()
    throughput = ThroughputCallback(global_batch)
    all_callbacks = [
        throughput,
        EvaluateEachChunk(eval_ds, fn_args.eval_steps or 1),
        *logging_callbacks,
        resumable.callback(),  # after the logging callbacks, so it saves their state of this chunk
        EpochTensorBoard(fn_args.model_run_dir),
        *callbacks,
    ]
    started = time.time()
    stopped = [callback for callback in logging_callbacks if getattr(callback, "stopped_early", False)]
    if stopped and initial_epoch < epochs:
        logging.warning("The run being resumed was stopped after %d of %d chunks by %s; it trains no further.",
                        initial_epoch, epochs, type(stopped[0]).__name__)
        history = keras.callbacks.History()
        history.epoch, history.history = [], {}
    else:
        history = model.fit(
            train_ds,
            epochs=epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_epoch,
            callbacks=all_callbacks,
            shuffle=False,  # the input pipeline shuffles
            verbose=2,
        )
    return FitResult(history, initial_epoch, epochs, steps_per_epoch, time.time() - started, global_batch,
                     throughput.steady_examples_per_second)


def write_training_summary(model_run_dir: str, summary: dict) -> str:
    """model_run_dir/training_summary.json, also logged."""
    path = os.path.join(model_run_dir, "training_summary.json")
    tf.io.gfile.makedirs(model_run_dir)
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(summary, f, indent=2)
    logging.info("Training summary: %s", summary)
    return path


# ---------------------------------------------------------------------------
# Images: grids for TensorBoard and evaluation reports


def image_grid(rows: Sequence[np.ndarray], value_range=(0.0, 1.0)) -> np.ndarray:
    """Stack rows of images [N, H, W, C] into one uint8 grid [rows*H, N*W, C] with 1px gaps."""
    low, high = value_range
    prepared = []
    for row in rows:
        row = np.asarray(row, dtype=np.float32)
        row = np.clip((row - low) / (high - low), 0.0, 1.0)
        row = np.pad(row, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=1.0)
        prepared.append(np.concatenate(list(row), axis=1))
    grid = np.concatenate(prepared, axis=0)
    return np.round(grid * 255.0).astype(np.uint8)


def grid_rows(images: np.ndarray, per_row: int) -> List[np.ndarray]:
    """Images [N, ...] in rows of `per_row` for image_grid; an incomplete last row is left out
    unless it is the only one."""
    return [images[i:i + per_row] for i in range(0, len(images) - per_row + 1, per_row)] or [images]


def write_png(path: str, grid: np.ndarray) -> str:
    tf.io.gfile.makedirs(os.path.dirname(path))
    tf.io.write_file(path, tf.io.encode_png(grid))
    return path


class ImageGridCallback(keras.callbacks.Callback):
    """Writes a TensorBoard image grid of fixed inputs and the model's outputs every epoch."""

    def __init__(self, log_dir: str, rows_fn: Callable[[], Sequence[np.ndarray]], name="samples", value_range=(0.0, 1.0)):
        super().__init__()
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "images"))
        self.rows_fn = rows_fn
        self.name = name
        self.value_range = value_range

    def on_epoch_end(self, epoch, logs=None):
        grid = image_grid(self.rows_fn(), self.value_range)
        with self.writer.as_default():
            tf.summary.image(self.name, grid[None], step=epoch + 1)
        self.writer.flush()
