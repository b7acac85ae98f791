"""Where CelebA comes from: the standard aligned distribution in a folder, or a TFDS-prepared `celeb_a`.

`resolve_source(data_dir, source, download)` picks one of:

1. `files`: the files of the CelebA distribution (any path tf.io.gfile reads, so gs:// works):

       data_dir/img_align_celeba/000001.jpg ...       aligned 178x218 JPEGs
       data_dir/list_landmarks_align_celeba.txt       count line, header, `000001.jpg 69 109 106 113 ...`
       data_dir/list_eval_partition.txt               `000001.jpg 0` (0 train, 1 valid -> eval, 2 test)
       data_dir/list_attr_celeba.txt                  optional: count line, 40 names, rows of -1/1

2. `tfds`: `tfds.builder("celeb_a", data_dir=data_dir)` once prepared there (TFDS splits
   train / validation / test -> train / eval / test); with `download=True` TFDS downloads and
   prepares it first where network access allows.

`auto` takes the files when any of them is in data_dir, else a prepared TFDS `celeb_a`.

Problems with a whole file (missing, wrong header, a count line that disagrees with the rows)
stop the run before any example is written; the message names the file and what was expected.
Problems with one image (no landmark row, no partition entry, a malformed row, a missing or
broken file) make that image a reject: counted, listed with its reason, never fatal by itself.

A source plans on the driver (`plan()`: validates, counts, lists the rejects found in the text
files) and then reads one (split, start, stop) range at a time in a Beam worker (`read()`). A
files worker parses the text files itself, once per process, and checks that they are the ones
the driver planned with, so no per-image table has to travel in the pipeline graph.
"""
import dataclasses
import hashlib
import json
import logging
import math
import os
import threading
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from components.celeba_example_gen import face_centering
from trainer_modules import contract
# Local paths go through os and open(), remote ones (gs://, ...) through tf.io.gfile.
from components.files import exists as _exists
from components.files import gfile as _gfile
from components.files import is_remote as _is_remote
from components.files import isdir as _isdir
from components.files import listdir as _listdir
from components.files import read_bytes as _read_bytes
from components.files import size_and_mtime as _size_and_mtime

AUTO_SOURCE = "auto"
FILES_SOURCE = "files"
TFDS_SOURCE = "tfds"
SOURCES = (AUTO_SOURCE, FILES_SOURCE, TFDS_SOURCE)

IMAGES_DIR = "img_align_celeba"
LANDMARKS_FILE = "list_landmarks_align_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
ATTRIBUTES_FILE = "list_attr_celeba.txt"
TEXT_FILES = (LANDMARKS_FILE, PARTITION_FILE, ATTRIBUTES_FILE)
IMAGE_SUFFIX = ".jpg"

SPLITS = (contract.TRAIN_SPLIT, contract.EVAL_SPLIT, contract.TEST_SPLIT)
PARTITION_SPLITS = {"0": contract.TRAIN_SPLIT, "1": contract.EVAL_SPLIT, "2": contract.TEST_SPLIT}
LANDMARK_COLUMNS = tuple(f"{name}_{axis}" for name in contract.CELEBA_LANDMARKS for axis in "xy")
NUM_LANDMARK_VALUES = len(LANDMARK_COLUMNS)
ATTRIBUTE_VALUES = {"-1": 0, "1": 1}

TFDS_NAME = "celeb_a"
TFDS_SPLITS = {contract.TRAIN_SPLIT: "train", contract.EVAL_SPLIT: "validation", contract.TEST_SPLIT: "test"}
TFDS_IMAGE_SHAPE = (face_centering.SOURCE_HEIGHT, face_centering.SOURCE_WIDTH, 3)

# Reject reasons, in the order a run summary lists them.
MISSING_IMAGE = "missing_image"
UNREADABLE_IMAGE = "unreadable_image"
CORRUPT_IMAGE = face_centering.CORRUPT_IMAGE
TRUNCATED_IMAGE = face_centering.TRUNCATED_IMAGE
WRONG_SIZE = face_centering.WRONG_SIZE
NO_LANDMARKS = "no_landmarks"
BAD_LANDMARKS = face_centering.BAD_LANDMARKS
NO_PARTITION = "no_partition"
BAD_PARTITION = "bad_partition"
NO_ATTRIBUTES = "no_attributes"
BAD_ATTRIBUTES = "bad_attributes"
DUPLICATE_ROW = "duplicate_row"
REJECT_REASONS = (
    MISSING_IMAGE, UNREADABLE_IMAGE, CORRUPT_IMAGE, TRUNCATED_IMAGE, WRONG_SIZE, NO_LANDMARKS, BAD_LANDMARKS,
    NO_PARTITION, BAD_PARTITION, NO_ATTRIBUTES, BAD_ATTRIBUTES, DUPLICATE_ROW,
)

DEFAULT_MAX_REJECT_FRACTION = 0.05


class CelebADataError(ValueError):
    """Input that cannot become CelebA examples at all; the message names the file and what was expected."""




# ---------------------------------------------------------------------------------------------
# Parameter checks (cheap; the component calls them when it is built).


def check_source(source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; known sources: {', '.join(SOURCES)}")


def check_max_examples_per_split(value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"max_examples_per_split must be an int >= 0 (0 keeps all), got {value!r}")


def check_max_reject_fraction(value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"max_reject_fraction must be a number in [0, 1], got {value!r}")


def check_data_dir(data_dir: str) -> None:
    if not isinstance(data_dir, str) or not data_dir:
        raise ValueError(f"data_dir must name the folder holding CelebA, got {data_dir!r}. {layout_help('DATA_DIR')}")


def layout_help(data_dir: str) -> str:
    """Where to put the files: the layout of the CelebA distribution and the TFDS alternative."""
    return (
        f"Put the aligned CelebA distribution in {data_dir} as\n"
        f"  {data_dir}/{IMAGES_DIR}/000001.jpg ... 202599.jpg  (aligned 178x218 JPEGs, from img_align_celeba.zip)\n"
        f"  {data_dir}/{LANDMARKS_FILE}\n"
        f"  {data_dir}/{PARTITION_FILE}\n"
        f"  {data_dir}/{ATTRIBUTES_FILE}  (the 40 attributes: optional for the ExampleGen, needed by the faces pipeline's evaluator)\n"
        f"or a TFDS-prepared {TFDS_NAME!r} under {data_dir}/{TFDS_NAME}/ "
        f"(tfds.builder({TFDS_NAME!r}, data_dir={data_dir!r}).download_and_prepare() where network access "
        f"allows; `genpipe run faces --tfds-download` or CelebAExampleGen(download=True) do that in the run)."
    )


# ---------------------------------------------------------------------------------------------
# Records that travel through the pipeline.


@dataclasses.dataclass(frozen=True)
class Reject:
    """One input image that did not become an example, and why."""

    image_id: str
    split: Optional[str]  # None when the image has no (valid) partition entry
    reason: str
    detail: str

    def to_json(self) -> str:
        return json.dumps(
            {"image_id": self.image_id, "split": self.split, "reason": self.reason, "detail": self.detail},
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, line: str) -> "Reject":
        record = json.loads(line)
        return cls(record["image_id"], record["split"], record["reason"], record["detail"])

    def sort_key(self):
        return (self.split or "", self.image_id, self.reason)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One image with every row it needs, ready to be decoded and face-centred."""

    image_id: str
    split: str
    landmarks: np.ndarray  # float64 [10] in LANDMARK_COLUMNS order, source pixels
    attributes: Optional[np.ndarray]  # int8 [40] of 0/1 in contract.CELEBA_ATTRIBUTES order, or None


Item = Union[Reject, Tuple[Candidate, bytes]]


@dataclasses.dataclass
class Plan:
    """What a run will do, known before any image is read."""

    sizes: Dict[str, int]  # candidates per split: each becomes an example or a reject in the pipeline
    rejects: List[Reject]  # found in the text files or the folder listing
    expected_missing: List[Reject]  # candidates whose file is not in the folder listing (rejected again as read)
    input_images: int  # every image id considered: candidates plus `rejects`


# ---------------------------------------------------------------------------------------------
# The text files.


@dataclasses.dataclass
class Table:
    """One parsed text file: good rows by image id, and the rows that make their image a reject."""

    path: str
    bad_row_reason: str  # the reject reason of a malformed row in this file
    rows: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    bad: Dict[str, Tuple[str, str]] = dataclasses.field(default_factory=dict)  # image id -> (reason, detail)

    def ids(self) -> set:
        return set(self.rows) | set(self.bad)


def _read_text(path: str) -> str:
    try:
        data = _read_bytes(path)
    except Exception as error:  # OSError, tf.errors.OpError
        raise CelebADataError(f"{path}: cannot be read ({error})") from error
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CelebADataError(f"{path}: not a text file (byte {error.start} is not UTF-8)") from error


def _numbered_lines(text: str) -> Iterator[Tuple[int, List[str]]]:
    """(1-based line number, whitespace-split tokens) of every non-blank line."""
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if tokens:
            yield number, tokens


def _counted_rows(path: str, text: str, what: str) -> Tuple[List[str], List[Tuple[int, List[str]]]]:
    """A CelebA list file with a count line and a header: returns (header tokens, data rows).

    Raises if line 1 is not a count, there is no header, or the count disagrees with the rows
    (a truncated or hand-edited file; fix the count if rows were removed on purpose).
    """
    lines = list(_numbered_lines(text))
    if not lines:
        raise CelebADataError(f"{path}: empty; expected a count line, the {what} header and one row per image")
    (first_number, first), rows = lines[0], lines[2:]
    if first_number != 1 or len(first) != 1 or not first[0].isdigit():
        raise CelebADataError(
            f"{path}: line 1: expected the number of rows, found {' '.join(first)!r}"
        )
    if len(lines) < 2:
        raise CelebADataError(f"{path}: line 2: expected the {what} header, found the end of the file")
    count = int(first[0])
    if count != len(rows):
        raise CelebADataError(
            f"{path}: line 1 says {count} rows but the file has {len(rows)} (truncated? if rows were removed "
            f"on purpose, update the count)"
        )
    return lines[1][1], rows


def _valid_image_id(image_id: str) -> Optional[str]:
    """None if the id is a plain file name, else what is wrong with it."""
    if "/" in image_id or "\\" in image_id or image_id in (".", ".."):
        return f"{image_id!r} is not a plain file name"
    return None


def _add_row(table: Table, lines: Dict[str, int], number: int, image_id: str, parse) -> None:
    """Adds one row to the table: parse() returns its values or raises ValueError saying what is wrong.

    A malformed row or an id named twice makes that image a reject (never the whole run).
    """
    if image_id in lines:
        first = lines[image_id]
        table.rows.pop(image_id, None)
        table.bad[image_id] = (DUPLICATE_ROW, f"{table.path}: lines {first} and {number} both name {image_id}")
        return
    lines[image_id] = number
    invalid = _valid_image_id(image_id)
    if invalid:
        table.bad[image_id] = (table.bad_row_reason, f"{table.path}: line {number}: {invalid}")
        return
    try:
        table.rows[image_id] = parse()
    except ValueError as error:
        table.bad[image_id] = (table.bad_row_reason, f"{table.path}: line {number}: {error}")


def describe_header_difference(found: Sequence[str], expected: Sequence[str]) -> str:
    """What differs between a header and the expected names: missing, unexpected, or order."""
    found, expected = list(found), list(expected)
    missing = [name for name in expected if name not in found]
    unexpected = [name for name in found if name not in expected]
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing)}")
    if unexpected:
        parts.append(f"unexpected {', '.join(unexpected)}")
    duplicated = sorted({name for name in found if found.count(name) > 1})
    if duplicated:
        parts.append(f"repeated {', '.join(duplicated)}")
    if not parts:
        column = next(i for i, (a, b) in enumerate(zip(found, expected)) if a != b)
        parts.append(
            f"same names in another order: column {column + 1} is {found[column]}, expected {expected[column]}"
        )
    return f"found {len(found)} names, expected {len(expected)}: " + "; ".join(parts)


def _parse_landmark_values(values: List[str]) -> np.ndarray:
    if len(values) != NUM_LANDMARK_VALUES:
        raise ValueError(f"expected {NUM_LANDMARK_VALUES} landmark values, found {len(values)}")
    try:
        points = [float(value) for value in values]
    except ValueError:
        raise ValueError(f"landmark values must be numbers, found {' '.join(values)!r}") from None
    if not all(map(math.isfinite, points)):
        raise ValueError(f"landmark values must be finite, found {' '.join(values)!r}")
    return np.array(points, dtype=np.float64)


def parse_landmarks(path: str, text: str) -> Table:
    header, rows = _counted_rows(path, text, "landmark")
    if tuple(header) != LANDMARK_COLUMNS:
        raise CelebADataError(
            f"{path}: line 2: expected the landmark header {' '.join(LANDMARK_COLUMNS)!r}, found {' '.join(header)!r}"
        )
    table, lines = Table(path, BAD_LANDMARKS), {}
    for number, (image_id, *values) in rows:
        _add_row(table, lines, number, image_id, lambda values=values: _parse_landmark_values(values))
    return table


def _parse_partition_value(values: List[str]) -> str:
    if len(values) != 1 or values[0] not in PARTITION_SPLITS:
        raise ValueError(f"expected one partition value 0, 1 or 2, found {' '.join(values)!r}")
    return PARTITION_SPLITS[values[0]]


def parse_partition(path: str, text: str) -> Table:
    """`list_eval_partition.txt` has no count line and no header: `000001.jpg 0` per line."""
    table, lines = Table(path, BAD_PARTITION), {}
    for number, (image_id, *values) in _numbered_lines(text):
        _add_row(table, lines, number, image_id, lambda values=values: _parse_partition_value(values))
    return table


def _parse_attribute_values(values: List[str]) -> np.ndarray:
    if len(values) != len(contract.CELEBA_ATTRIBUTES):
        raise ValueError(f"expected {len(contract.CELEBA_ATTRIBUTES)} attribute values, found {len(values)}")
    try:
        return np.array([ATTRIBUTE_VALUES[value] for value in values], dtype=np.int8)
    except KeyError as error:
        raise ValueError(f"attribute values must be -1 or 1, found {error.args[0]!r}") from None


def parse_attributes(path: str, text: str) -> Table:
    header, rows = _counted_rows(path, text, "attribute")
    if tuple(header) != contract.CELEBA_ATTRIBUTES:
        raise CelebADataError(
            f"{path}: line 2: the attribute header does not match the {len(contract.CELEBA_ATTRIBUTES)} CelebA "
            f"attributes (contract.CELEBA_ATTRIBUTES): {describe_header_difference(header, contract.CELEBA_ATTRIBUTES)}"
        )
    table, lines = Table(path, BAD_ATTRIBUTES), {}
    for number, (image_id, *values) in rows:
        _add_row(table, lines, number, image_id, lambda values=values: _parse_attribute_values(values))
    return table


@dataclasses.dataclass
class Tables:
    landmarks: Table
    partition: Table
    attributes: Optional[Table]


@dataclasses.dataclass
class SplitCandidates:
    """One split's candidates in id order, stored as arrays so a worker holds CelebA in a few MB."""

    ids: List[str]
    landmarks: np.ndarray  # float64 [n, 10]
    attributes: Optional[np.ndarray]  # int8 [n, 40]

    def __len__(self):
        return len(self.ids)

    def candidate(self, split: str, index: int) -> Candidate:
        attributes = None if self.attributes is None else self.attributes[index]
        return Candidate(self.ids[index], split, self.landmarks[index], attributes)


def plan_candidates(tables: Tables, max_examples_per_split: int = 0) -> Tuple[Dict[str, SplitCandidates], List[Reject]]:
    """Joins the text files: each split's candidates (id order) and the rejects the rows alone decide.

    With max_examples_per_split = N > 0 only the first N ids of each split (partition-file ids in
    order) are considered; ids without a valid partition entry are always considered (rejects).
    Deterministic, so every worker computes the same lists as the driver.
    """
    by_split = {split: [] for split in SPLITS}
    for image_id, split in tables.partition.rows.items():
        by_split[split].append(image_id)
    considered = []
    for split in SPLITS:
        ids = sorted(by_split[split])
        considered.extend(ids[:max_examples_per_split] if max_examples_per_split else ids)
    others = tables.landmarks.ids() | tables.partition.ids()
    if tables.attributes is not None:
        others |= tables.attributes.ids()
    considered.extend(sorted(others - set(tables.partition.rows)))

    candidates = {split: [] for split in SPLITS}
    rejects = []
    for image_id in considered:
        split = tables.partition.rows.get(image_id)
        problem = _row_problem(tables, image_id, split)
        if problem:
            rejects.append(Reject(image_id, split, *problem))
        else:
            candidates[split].append(image_id)
    return {split: _split_candidates(tables, ids) for split, ids in candidates.items()}, rejects


def _row_problem(tables: Tables, image_id: str, split: Optional[str]) -> Optional[Tuple[str, str]]:
    """(reason, detail) if the rows make this image a reject, else None; the first problem wins."""
    if image_id in tables.partition.bad:
        return tables.partition.bad[image_id]
    if split is None:
        return NO_PARTITION, f"no row in {tables.partition.path}"
    if image_id in tables.landmarks.bad:
        return tables.landmarks.bad[image_id]
    if image_id not in tables.landmarks.rows:
        return NO_LANDMARKS, f"no row in {tables.landmarks.path}"
    if tables.attributes is not None:
        if image_id in tables.attributes.bad:
            return tables.attributes.bad[image_id]
        if image_id not in tables.attributes.rows:
            return NO_ATTRIBUTES, f"no row in {tables.attributes.path}"
    return None


def _split_candidates(tables: Tables, ids: List[str]) -> SplitCandidates:
    landmarks = np.array([tables.landmarks.rows[i] for i in ids], dtype=np.float64).reshape(
        len(ids), NUM_LANDMARK_VALUES)
    attributes = None
    if tables.attributes is not None:
        attributes = np.array([tables.attributes.rows[i] for i in ids], dtype=np.int8).reshape(
            len(ids), len(contract.CELEBA_ATTRIBUTES))
    return SplitCandidates(ids, landmarks, attributes)


# ---------------------------------------------------------------------------------------------
# Sources.


class CelebASource:
    """One way of reading CelebA: plan on the driver, then read ranges of a split in workers."""

    kind: str
    has_attributes: bool

    def plan(self, max_examples_per_split: int = 0) -> Plan:
        raise NotImplementedError

    def read(self, split: str, start: int, stop: int, max_examples_per_split: int = 0) -> Iterator[Item]:
        """Yields one item per candidate start..stop-1 of the split: (Candidate, image bytes) or a Reject."""
        raise NotImplementedError

    def location(self, candidate: Candidate) -> str:
        """Where the candidate's image is, for reject details."""
        raise NotImplementedError


_WORKER_CACHE: Dict[tuple, Dict[str, SplitCandidates]] = {}
_WORKER_CACHE_LOCK = threading.Lock()


class FilesSource(CelebASource):
    """The CelebA distribution's files in data_dir (local or any tf.io.gfile filesystem)."""

    kind = FILES_SOURCE

    def __init__(self, data_dir: str, has_attributes: bool, text_fingerprint: str = ""):
        self.data_dir = data_dir
        self.has_attributes = has_attributes
        self.text_fingerprint = text_fingerprint  # set by plan(); workers check their files against it

    def __str__(self):
        return f"CelebA files in {self.data_dir}"

    @classmethod
    def open(cls, data_dir: str) -> "FilesSource":
        """Checks the layout (not the contents); raises naming what is missing and where it goes."""
        if not _isdir(data_dir):
            raise CelebADataError(f"data_dir {data_dir} does not exist or is not a folder. {layout_help(data_dir)}")
        missing = []
        if not _isdir(os.path.join(data_dir, IMAGES_DIR)):
            missing.append(os.path.join(data_dir, IMAGES_DIR) + "/ (the folder of aligned JPEGs)")
        for name in (LANDMARKS_FILE, PARTITION_FILE):
            if not _exists(os.path.join(data_dir, name)):
                missing.append(os.path.join(data_dir, name))
        if missing:
            raise CelebADataError(
                f"CelebA in {data_dir} is incomplete: missing {', '.join(missing)}. {layout_help(data_dir)}"
            )
        return cls(data_dir, has_attributes=_exists(os.path.join(data_dir, ATTRIBUTES_FILE)))

    def path(self, name: str) -> str:
        return os.path.join(self.data_dir, name)

    def image_path(self, image_id: str) -> str:
        return os.path.join(self.data_dir, IMAGES_DIR, image_id)

    def text_paths(self) -> List[str]:
        names = TEXT_FILES if self.has_attributes else (LANDMARKS_FILE, PARTITION_FILE)
        return [self.path(name) for name in names]

    def current_text_fingerprint(self) -> str:
        return _stat_digest(self.text_paths())

    def load_tables(self) -> Tables:
        landmarks = parse_landmarks(self.path(LANDMARKS_FILE), _read_text(self.path(LANDMARKS_FILE)))
        partition = parse_partition(self.path(PARTITION_FILE), _read_text(self.path(PARTITION_FILE)))
        attributes = None
        if self.has_attributes:
            attributes = parse_attributes(self.path(ATTRIBUTES_FILE), _read_text(self.path(ATTRIBUTES_FILE)))
        return Tables(landmarks, partition, attributes)

    def list_images(self) -> List[str]:
        """The .jpg names in the image folder (other files are not CelebA images and are ignored, with a warning)."""
        folder = self.path(IMAGES_DIR)
        names = _listdir(folder)
        images = [name for name in names if name.endswith(IMAGE_SUFFIX)]
        others = sorted(set(names) - set(images))
        if others:
            logging.warning("Ignoring %d non-%s entries in %s: %s", len(others), IMAGE_SUFFIX, folder, others[:5])
        return images

    def plan(self, max_examples_per_split: int = 0) -> Plan:
        self.text_fingerprint = self.current_text_fingerprint()
        tables = self.load_tables()
        candidates, rejects = plan_candidates(tables, max_examples_per_split)
        listed = set(self.list_images())
        known = tables.landmarks.ids() | tables.partition.ids()
        if tables.attributes is not None:
            known |= tables.attributes.ids()
        for image_id in sorted(listed - known):
            detail = f"in {self.path(IMAGES_DIR)}/ but in none of the text files"
            rejects.append(Reject(image_id, None, NO_PARTITION, detail))
        expected_missing = [
            self.missing_reject(split, image_id)
            for split, split_candidates in candidates.items()
            for image_id in split_candidates.ids
            if image_id not in listed
        ]
        sizes = {split: len(split_candidates) for split, split_candidates in candidates.items()}
        with _WORKER_CACHE_LOCK:
            _WORKER_CACHE.clear()
            _WORKER_CACHE[self._cache_key(max_examples_per_split)] = candidates
        return Plan(sizes, rejects, expected_missing, sum(sizes.values()) + len(rejects))

    def missing_reject(self, split: str, image_id: str) -> Reject:
        return Reject(image_id, split, MISSING_IMAGE, f"{self.image_path(image_id)} does not exist")

    def _cache_key(self, max_examples_per_split: int) -> tuple:
        return (self.data_dir, self.has_attributes, self.text_fingerprint, max_examples_per_split)

    def _candidates(self, max_examples_per_split: int) -> Dict[str, SplitCandidates]:
        """This process's copy of the plan's candidates, parsed once per process and checked against the plan."""
        key = self._cache_key(max_examples_per_split)
        with _WORKER_CACHE_LOCK:
            if key not in _WORKER_CACHE:
                current = self.current_text_fingerprint()
                if self.text_fingerprint and current != self.text_fingerprint:
                    raise CelebADataError(
                        f"the text files {', '.join(self.text_paths())} changed after the run was planned; rerun"
                    )
                _WORKER_CACHE.clear()
                _WORKER_CACHE[key] = plan_candidates(self.load_tables(), max_examples_per_split)[0]
            return _WORKER_CACHE[key]

    def location(self, candidate: Candidate) -> str:
        return self.image_path(candidate.image_id)

    def read_image(self, image_id: str) -> bytes:
        """The file's bytes; FileNotFoundError if it does not exist."""
        return _read_bytes(self.image_path(image_id))

    def read(self, split: str, start: int, stop: int, max_examples_per_split: int = 0) -> Iterator[Item]:
        split_candidates = self._candidates(max_examples_per_split)[split]
        for index in range(start, min(stop, len(split_candidates))):
            candidate = split_candidates.candidate(split, index)
            try:
                encoded = self.read_image(candidate.image_id)
            except FileNotFoundError:
                yield self.missing_reject(split, candidate.image_id)
                continue
            except Exception as error:  # permissions, I/O errors, remote filesystem errors
                yield Reject(candidate.image_id, split, UNREADABLE_IMAGE,
                             f"{self.image_path(candidate.image_id)}: cannot be read ({error})")
                continue
            yield candidate, encoded


class TfdsSource(CelebASource):
    """A TFDS `celeb_a` prepared in data_dir; downloaded and prepared first only when download=True."""

    kind = TFDS_SOURCE
    has_attributes = True

    def __init__(self, data_dir: str, download: bool = False):
        self.data_dir = data_dir
        self.download = download

    def __str__(self):
        return f"TFDS {TFDS_NAME} in {self.data_dir}"

    def builder(self):
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

        return tfds.builder(TFDS_NAME, data_dir=self.data_dir)

    def folder(self) -> str:
        return os.path.join(self.data_dir, TFDS_NAME)

    def has_folder(self) -> bool:
        """Cheap pre-check without importing TFDS."""
        return _isdir(self.folder())

    def is_prepared(self) -> bool:
        return self.has_folder() and self.builder().is_prepared()

    def prepared_files(self) -> List[str]:
        gfile = _gfile()
        if not gfile.isdir(self.folder()):
            return []
        return sorted(os.path.join(root, name) for root, _, names in gfile.walk(self.folder()) for name in names)

    def plan(self, max_examples_per_split: int = 0) -> Plan:
        builder = self.builder()
        if not builder.is_prepared():
            if not self.download:
                raise CelebADataError(
                    f"TFDS {TFDS_NAME} is not prepared in {self.data_dir}. {layout_help(self.data_dir)}"
                )
            logging.info("Downloading and preparing TFDS %s in %s", TFDS_NAME, self.data_dir)
            builder.download_and_prepare()
        features = builder.info.features
        where = builder.data_dir
        shape = tuple(features["image"].shape)
        if shape != TFDS_IMAGE_SHAPE:
            raise CelebADataError(f"{where}: TFDS {TFDS_NAME} images are {shape}, expected {TFDS_IMAGE_SHAPE}")
        for name, expected in (("landmarks", LANDMARK_COLUMNS), ("attributes", contract.CELEBA_ATTRIBUTES)):
            found = list(features[name].keys())
            if set(found) != set(expected):
                raise CelebADataError(
                    f"{where}: TFDS {TFDS_NAME} feature {name!r} does not match: "
                    f"{describe_header_difference(found, expected)}"
                )
        sizes = {}
        for split, tfds_split in TFDS_SPLITS.items():
            if tfds_split not in builder.info.splits:
                raise CelebADataError(f"{where}: TFDS {TFDS_NAME} has no {tfds_split!r} split")
            size = builder.info.splits[tfds_split].num_examples
            sizes[split] = min(size, max_examples_per_split) if max_examples_per_split else size
        return Plan(sizes, [], [], sum(sizes.values()))

    def location(self, candidate: Candidate) -> str:
        return f"TFDS {TFDS_NAME} in {self.data_dir}, {TFDS_SPLITS[candidate.split]} example {candidate.image_id}"

    def read(self, split: str, start: int, stop: int, max_examples_per_split: int = 0) -> Iterator[Item]:
        """The range's examples with their JPEG bytes undecoded (decoded once, by face centering)."""
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

        dataset = self.builder().as_dataset(
            split=f"{TFDS_SPLITS[split]}[{start}:{stop}]",
            shuffle_files=False,
            decoders={"image": tfds.decode.SkipDecoding()},
            read_config=tfds.ReadConfig(add_tfds_id=True),
        )
        for example in tfds.as_numpy(dataset):
            landmarks = np.array([example["landmarks"][name] for name in LANDMARK_COLUMNS], dtype=np.float64)
            attributes = np.array(
                [bool(example["attributes"][name]) for name in contract.CELEBA_ATTRIBUTES], dtype=np.int8
            )
            image_id = example["tfds_id"].decode()
            yield Candidate(image_id, split, landmarks, attributes), example["image"]


def _has_any_celeba_file(data_dir: str) -> bool:
    return _isdir(os.path.join(data_dir, IMAGES_DIR)) or any(
        _exists(os.path.join(data_dir, name)) for name in TEXT_FILES
    )


def resolve_source(data_dir: str, source: str = AUTO_SOURCE, download: bool = False) -> CelebASource:
    """The source to read (see the module docstring); raises CelebADataError saying where to put the files."""
    check_source(source)
    check_data_dir(data_dir)
    if source == FILES_SOURCE:
        return FilesSource.open(data_dir)
    tfds_source = TfdsSource(data_dir, download)
    if source == TFDS_SOURCE:
        if download or tfds_source.is_prepared():
            return tfds_source
        raise CelebADataError(f"TFDS {TFDS_NAME} is not prepared in {data_dir}. {layout_help(data_dir)}")
    if _isdir(data_dir) and _has_any_celeba_file(data_dir):
        return FilesSource.open(data_dir)
    if download or tfds_source.is_prepared():
        return tfds_source
    where = f"data_dir {data_dir} does not exist" if not _isdir(data_dir) else f"nothing found in {data_dir}"
    raise CelebADataError(
        f"no CelebA input: {where}: none of {IMAGES_DIR}/, {', '.join(TEXT_FILES)}, and no prepared TFDS "
        f"{TFDS_NAME}. {layout_help(data_dir)}"
    )


def check_input(data_dir: str, source: str = AUTO_SOURCE, download: bool = False) -> str:
    """Fails early, before a pipeline is built, if data_dir holds no usable CelebA; returns what was found."""
    return str(resolve_source(data_dir, source, download))


def _stat_digest(paths: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        if _exists(path):
            size, mtime = _size_and_mtime(path)
            digest.update(f"{path}\t{size}\t{mtime}\n".encode())
        else:
            digest.update(f"{path}\tmissing\n".encode())
    return digest.hexdigest()


def input_fingerprint(data_dir: str, source: str = AUTO_SOURCE, crop: str = face_centering.FACE_CROP) -> str:
    """A digest of the input and the crop, cheap enough to compute whenever a pipeline is built.

    The key of the cached ExampleGen and of the domain classifier's data. CelebA files: names,
    sizes and mtimes of the text files and of every image in a local image folder (a stat of
    202,599 local files takes about a second); a remote image folder contributes its listing
    only (a stat per image would cost minutes there). TFDS: names, sizes and mtimes of the
    prepared files. Never raises for missing input: the executor reports that with the full
    explanation.
    """
    check_source(source)
    face_centering.check_crop(crop)
    digest = hashlib.sha256(f"{source}\n{data_dir}\n{crop}\n".encode())
    exists = bool(data_dir) and _isdir(data_dir)
    use_files = source == FILES_SOURCE or (source == AUTO_SOURCE and exists and _has_any_celeba_file(data_dir))
    if use_files:
        digest.update(_stat_digest([os.path.join(data_dir, name) for name in TEXT_FILES]).encode())
        folder = os.path.join(data_dir, IMAGES_DIR)
        if exists and _isdir(folder):
            for name in sorted(_listdir(folder)):
                line = name
                if not _is_remote(folder):
                    try:
                        line += "\t%d\t%d" % _size_and_mtime(os.path.join(folder, name))
                    except OSError:  # a dangling symlink: the executor rejects it as missing
                        line += "\tmissing"
                digest.update(f"{line}\n".encode())
    elif exists:
        digest.update(_stat_digest(TfdsSource(data_dir).prepared_files()).encode())
    return digest.hexdigest()
