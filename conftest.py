"""Shared fixtures: tiny generated digits and faces, raw and transformed with the real preprocessing_fn."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

from trainer_modules import contract

NOISE_FACTOR = 0.5
SEED = 7


def make_digit_images(count: int, seed: int = 0) -> np.ndarray:
    """uint8 [count, 28, 28, 1]: bright strokes on black, roughly digit-like and all different."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]
    images = np.zeros((count, 28, 28), np.float32)
    for i in range(count):
        for _ in range(3):
            cy, cx = rng.uniform(8, 20, size=2)
            ry, rx = rng.uniform(3, 8, size=2)
            ring = np.abs(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 - 1.0) < 0.35
            images[i] = np.maximum(images[i], ring * rng.uniform(0.6, 1.0))
    return (images * 255).astype(np.uint8)[..., None]


def make_face_images(count: int, seed: int = 0) -> np.ndarray:
    """uint8 [count, 64, 64, 3]: smooth, all different, face-like RGB images (no CelebA here).

    A colour gradient background, a skin-toned ellipse, two dark eyes and a mouth, each with
    random position, size and colour, so networks and grids see plausible 64x64 RGB statistics.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    images = np.empty((count, 64, 64, 3), np.float32)
    for i in range(count):
        top, bottom = rng.uniform(0.0, 1.0, size=(2, 3))
        image = top + (bottom - top) * yy[..., None]
        cy, cx = rng.uniform(0.42, 0.58, size=2)
        ry, rx = rng.uniform(0.28, 0.36), rng.uniform(0.2, 0.28)
        face = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1.0
        image[face] = rng.uniform([0.55, 0.35, 0.25], [0.95, 0.75, 0.6])
        eye_y, eye_dx = cy - ry * 0.3, rx * 0.4
        for ex in (cx - eye_dx, cx + eye_dx):
            image[((yy - eye_y) ** 2 + (xx - ex) ** 2) < 0.04 ** 2] = 0.1
        mouth = (np.abs(yy - (cy + ry * 0.45)) < 0.02) & (np.abs(xx - cx) < rx * 0.4)
        image[mouth] = rng.uniform([0.4, 0.0, 0.0], [0.8, 0.2, 0.2])
        images[i] = image
    return np.round(np.clip(images, 0.0, 1.0) * 255).astype(np.uint8)


def example_records(images: np.ndarray, **features) -> list:
    """Serialized raw tf.Examples as an ExampleGen writes them: `image` = PNG bytes plus per-example `features`.

    Each keyword is a feature key with one value (or one array) per image; bytes go to a
    bytes_list, floats to a float_list, integers to an int64_list.
    """
    records = []
    for index, image in enumerate(images):
        feature = {contract.IMAGE_KEY: tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[tf.io.encode_png(image).numpy()]))}
        for key, values in features.items():
            value = values[index]
            if isinstance(value, bytes):
                feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
                continue
            value = np.asarray(value).reshape(-1)
            if value.dtype.kind == "f":
                feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=value.tolist()))
            else:
                feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=value.tolist()))
        records.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return records


def serialized_examples(images: np.ndarray, labels) -> list:
    """MNIST-style raw Examples: `image` PNG bytes and an int64 `label`."""
    return example_records(images, **{contract.LABEL_KEY: np.asarray(labels, np.int64)})


def face_examples(images: np.ndarray, attributes: np.ndarray, seed: int = 0) -> list:
    """CelebA-style raw Examples: `image` PNG bytes, 0/1 `attributes` [40], `landmarks` [10] and `image_id`."""
    rng = np.random.default_rng(seed)
    landmarks = rng.uniform(16, 48, size=(len(images), 2 * len(contract.CELEBA_LANDMARKS))).astype(np.float32)
    image_ids = [f"{index + 1:06d}.jpg".encode() for index in range(len(images))]
    return example_records(images, **{contract.ATTRIBUTES_KEY: np.asarray(attributes, np.int64),
                                      contract.LANDMARKS_KEY: landmarks, contract.IMAGE_ID_KEY: image_ids})


def write_split(directory: str, split: str, records: list) -> str:
    split_dir = os.path.join(directory, f"Split-{split}")
    os.makedirs(split_dir, exist_ok=True)
    path = os.path.join(split_dir, "data_tfrecord-00000-of-00001.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for record in records:
            writer.write(record)
    return split_dir


def encode_transformed(instance):
    """A transformed instance (dict of numpy values) -> serialized tf.Example."""
    features = {}
    for key, value in instance.items():
        value = np.asarray(value).reshape(-1)
        if value.dtype.kind == "f":
            features[key] = tf.train.Feature(float_list=tf.train.FloatList(value=value.tolist()))
        else:
            features[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=value.tolist()))
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def transform_examples(root: str, config: dict, raw: dict, feature_spec: dict) -> dict:
    """Runs analyze-and-transform with the project's preprocessing_fn and `config` on raw records.

    `raw` maps split names (train, eval) to serialized raw tf.Examples described by the raw
    `feature_spec`. Returns a dict with `transform_graph` (a TransformGraph dir) and `examples`
    (a dir with Split-train / Split-eval of transformed, gzipped tf.Examples), laid out like
    TFX artifacts, plus `root` and the `raw` records.
    """
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import metadata_io
    from tfx_bsl.public import tfxio

    from trainer_modules import preprocessing

    schema = tft.DatasetMetadata.from_feature_spec(feature_spec).schema

    def preprocessing_fn(inputs):
        return preprocessing.preprocessing_fn(inputs, config)

    coder = tfxio.TFExampleBeamRecord(physical_format="tfrecord", schema=schema, raw_record_column_name=None)
    with tft_beam.Context(temp_dir=os.path.join(root, "tmp")):
        with beam.Pipeline() as pipeline:
            train = pipeline | "Train" >> beam.Create(raw[contract.TRAIN_SPLIT]) | "DecodeTrain" >> coder.BeamSource()
            evals = pipeline | "Eval" >> beam.Create(raw[contract.EVAL_SPLIT]) | "DecodeEval" >> coder.BeamSource()
            tensor_adapter_config = coder.TensorAdapterConfig()
            (train_out, _), transform_fn = (
                (train, tensor_adapter_config) | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn)
            )
            eval_out, _ = ((evals, tensor_adapter_config), transform_fn) | tft_beam.TransformDataset()
            _ = transform_fn | tft_beam.WriteTransformFn(os.path.join(root, "transform_graph"))
            for name, data in ((contract.TRAIN_SPLIT, train_out), (contract.EVAL_SPLIT, eval_out)):
                _ = (
                    data
                    | f"Encode{name}" >> beam.Map(encode_transformed)
                    | f"Write{name}" >> beam.io.WriteToTFRecord(
                        os.path.join(root, "examples", f"Split-{name}", "data_tfrecord"), file_name_suffix=".gz")
                )
    # TFX's Transform also records the raw metadata beside the transform graph.
    metadata_io.write_metadata(tft.DatasetMetadata(schema), os.path.join(root, "transform_graph", "metadata"))
    return {
        "root": root,
        "transform_graph": os.path.join(root, "transform_graph"),
        "examples": os.path.join(root, "examples"),
        "raw": raw,
    }


def transform_digits(root: str, config: dict, count: int = 64, train_count: int = 48) -> dict:
    """transform_examples on `count` generated digits with labels; adds the source `images` and `labels`."""
    images = make_digit_images(count, seed=1)
    labels = np.arange(count) % 10
    raw = {
        contract.TRAIN_SPLIT: serialized_examples(images[:train_count], labels[:train_count]),
        contract.EVAL_SPLIT: serialized_examples(images[train_count:], labels[train_count:]),
    }
    feature_spec = {
        contract.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
        contract.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
    }
    return {**transform_examples(root, config, raw, feature_spec), "images": images, "labels": labels}


def transform_faces(root: str, config: dict, count: int = 64, train_count: int = 48) -> dict:
    """transform_examples on `count` generated 64x64 RGB faces with CelebA-style features.

    The raw spec is what the CelebA ExampleGen writes (image, attributes [40], landmarks [10],
    image_id); adds the source `images` (uint8) and `attributes` (int64 0/1 [count, 40]).
    """
    images = make_face_images(count, seed=2)
    attributes = np.random.default_rng(3).integers(0, 2, size=(count, len(contract.CELEBA_ATTRIBUTES)))
    records = face_examples(images, attributes, seed=4)
    raw = {contract.TRAIN_SPLIT: records[:train_count], contract.EVAL_SPLIT: records[train_count:]}
    feature_spec = {
        contract.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
        contract.ATTRIBUTES_KEY: tf.io.FixedLenFeature([len(contract.CELEBA_ATTRIBUTES)], tf.int64),
        contract.LANDMARKS_KEY: tf.io.FixedLenFeature([2 * len(contract.CELEBA_LANDMARKS)], tf.float32),
        contract.IMAGE_ID_KEY: tf.io.FixedLenFeature([], tf.string),
    }
    return {**transform_examples(root, config, raw, feature_spec), "images": images, "attributes": attributes}


def trainer_fn_args(data: dict, tmp_path, name: str, train_steps: int = 4, **custom_config):
    """TFX FnArgs for a run_fn on transformed test data: batch 8, a checkpoint every 2 steps, 1 eval step."""
    from tfx.components.trainer.fn_args_utils import FnArgs

    from trainer_modules import training

    config = {
        training.BATCH_SIZE: 8,
        training.CHECKPOINT_EVERY: 2,
        training.CHECKPOINT_ROOT: str(tmp_path / "checkpoints"),
        training.SHUFFLE_BUFFER: 64,
        **custom_config,
    }
    return FnArgs(
        train_files=[os.path.join(data["examples"], "Split-train", "*")],
        eval_files=[os.path.join(data["examples"], "Split-eval", "*")],
        transform_output=data["transform_graph"],
        serving_model_dir=str(tmp_path / name / "Format-Serving"),
        model_run_dir=str(tmp_path / name / "run"),
        train_steps=train_steps,
        eval_steps=1,
        custom_config=config,
    )


class TrainerKilled(Exception):
    """What kill_after_first_chunk raises in place of the process dying."""


def kill_after_chunks(run_fn, fn_args, monkeypatch, chunks: int = 1) -> None:
    """Runs run_fn and kills it right after its first `chunks` checkpoint chunks, as a preempted Trainer dies.

    The kill comes from the image-grid callback, which runs after the checkpoint is written; the
    export must not exist then. The test's monkeypatches are undone before returning, so a rerun
    trains normally.
    """
    from trainer_modules import training

    original = training.ImageGridCallback.on_epoch_end

    def crash_after_chunks(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == chunks - 1:
            raise TrainerKilled()

    monkeypatch.setattr(training.ImageGridCallback, "on_epoch_end", crash_after_chunks)
    with pytest.raises(TrainerKilled):
        run_fn(fn_args)
    monkeypatch.undo()
    assert not os.path.exists(os.path.join(fn_args.serving_model_dir, "saved_model.pb"))


def training_summary(fn_args) -> dict:
    """The training_summary.json a run_fn wrote."""
    import json

    with open(os.path.join(fn_args.model_run_dir, "training_summary.json")) as f:
        return json.load(f)


@pytest.fixture(scope="session")
def transformed_data(tmp_path_factory):
    """48 train / 16 eval generated digits in [0, 1] with `image_noisy` (noise_factor 0.5)."""
    from trainer_modules import preprocessing

    root = str(tmp_path_factory.mktemp("transformed"))
    return transform_digits(root, {preprocessing.NOISE_FACTOR: NOISE_FACTOR, preprocessing.SEED: SEED})


@pytest.fixture(scope="session")
def transformed_symmetric(tmp_path_factory):
    """48 train / 16 eval generated digits scaled to [-1, 1] (tanh-output models), no noise."""
    from trainer_modules import preprocessing

    root = str(tmp_path_factory.mktemp("transformed_symmetric"))
    return transform_digits(root, {preprocessing.VALUE_RANGE: "symmetric", preprocessing.SEED: SEED})


@pytest.fixture(scope="session")
def transformed_faces(tmp_path_factory):
    """48 train / 16 eval generated 64x64 RGB faces scaled to [-1, 1], with their 40 attributes (dcgan64)."""
    from trainer_modules import preprocessing

    root = str(tmp_path_factory.mktemp("transformed_faces"))
    return transform_faces(root, {preprocessing.VALUE_RANGE: "symmetric", preprocessing.SEED: SEED,
                                  preprocessing.IMAGE_SHAPE: list(contract.CELEBA_SHAPE)})


def pytest_configure(config):
    """Two logical CPU devices for the whole session, so MirroredStrategy runs its multi-replica path."""
    from trainer_modules import training

    training.split_logical_cpus(2)
