"""A folder of images (content images for style transfer): listing, split assignment, parameter checks, fingerprint.

Every file under data_dir (nested folders too; local or any tf.io.gfile path such as gs://)
whose extension is one of IMAGE_EXTENSIONS, in any case, is an input image. Its `image_id` is
its path relative to data_dir with `/` separators. Other files are ignored and counted in a log
line; so are hidden entries (names starting with `.`, e.g. `.DS_Store`, macOS `._photo.jpg`
resource forks, `.ipynb_checkpoints/`), which are never images even when named like one.

Splits (`train`, `eval`): an image goes to eval when `split_point(image_id, seed)`, a number in
[0, 1) from a SHA-256 of the seed and the image id, is below eval_fraction. Its split therefore
depends only on its own path, the seed and eval_fraction: adding or removing other files never
moves it. One exception keeps tiny folders usable: when the hash puts no decodable image in one
split, the decodable image nearest to the boundary (the lowest point of train, or the highest
of eval) moves over, provided the other split keeps one (`balance_splits`). The driver decides
this by decoding images in point order until it finds a good one, usually one image per split.

With max_examples_per_split = N > 0, the first N image ids (sorted) of each hash split are
considered and the rest ignored, before balancing.
"""
import dataclasses
import hashlib
import logging
import os
import posixpath
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from components.celeba_example_gen import sources as celeba_sources
from components.files import gfile as _gfile
from components.files import is_remote as _is_remote
from components.files import isdir as _isdir
from components.files import read_bytes
from components.image_folder_example_gen import square_crop
from trainer_modules import contract

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SPLITS = (contract.TRAIN_SPLIT, contract.EVAL_SPLIT)

# Features written besides contract.IMAGE_KEY and contract.IMAGE_ID_KEY.
SOURCE_HEIGHT_KEY = "source_height"  # int64, the source image's upright height in pixels
SOURCE_WIDTH_KEY = "source_width"  # int64, the source image's upright width in pixels

DEFAULT_IMAGE_SIZE = 256
MIN_IMAGE_SIZE = 8
DEFAULT_EVAL_FRACTION = 0.1
DEFAULT_MAX_REJECT_FRACTION = celeba_sources.DEFAULT_MAX_REJECT_FRACTION

# Reject reasons (the names CelebAExampleGen uses where the meaning is the same), in summary order.
MISSING_IMAGE = celeba_sources.MISSING_IMAGE  # listed when planned, gone when read
UNREADABLE_IMAGE = celeba_sources.UNREADABLE_IMAGE
CORRUPT_IMAGE = square_crop.CORRUPT_IMAGE
TRUNCATED_IMAGE = square_crop.TRUNCATED_IMAGE
TOO_SMALL = square_crop.TOO_SMALL
TOO_LARGE = square_crop.TOO_LARGE
REJECT_REASONS = (MISSING_IMAGE, UNREADABLE_IMAGE, CORRUPT_IMAGE, TRUNCATED_IMAGE, TOO_SMALL, TOO_LARGE)

Reject = celeba_sources.Reject  # one JSON line of rejects.jsonl: image_id, split, reason, detail
Candidate = Tuple[str, str]  # (image_id, split)


class ImageFolderDataError(ValueError):
    """A data_dir that cannot become examples at all; the message names the folder and what was expected."""


# ---------------------------------------------------------------------------------------------
# Parameter checks (cheap; the component calls them when it is built, the executor again).


def check_data_dir(data_dir: str) -> None:
    if not isinstance(data_dir, str) or not data_dir:
        raise ValueError(f"data_dir must name the folder holding the images ({extensions_text()}), got {data_dir!r}")


def check_image_size(image_size: int) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be an int >= {MIN_IMAGE_SIZE}, got {image_size!r}")


def check_eval_fraction(eval_fraction: float) -> None:
    if isinstance(eval_fraction, bool) or not isinstance(eval_fraction, (int, float)) or not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be a number in (0, 1), got {eval_fraction!r}")


def check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")


check_max_examples_per_split = celeba_sources.check_max_examples_per_split
check_max_reject_fraction = celeba_sources.check_max_reject_fraction


def extensions_text() -> str:
    return "/".join(IMAGE_EXTENSIONS) + " in any case"


# ---------------------------------------------------------------------------------------------
# Files: local paths through os and open(), remote ones (gs://, ...) through tf.io.gfile, so a
# worker reading a local folder never imports TensorFlow.


def image_path(data_dir: str, image_id: str) -> str:
    if _is_remote(data_dir):
        return posixpath.join(data_dir, image_id)
    return os.path.join(data_dir, *image_id.split("/"))


def _walk(data_dir: str) -> Iterable[Tuple[str, List[str], List[str]]]:
    """(folder relative to data_dir, '' at the top; subfolder names, pruned in place; file names)."""
    if _is_remote(data_dir):
        top = data_dir.rstrip("/")
        for folder, subfolders, names in _gfile().walk(top):
            relative = folder.rstrip("/")[len(top):].strip("/")
            subfolders[:] = [name.rstrip("/") for name in subfolders]
            yield relative, subfolders, names
        return
    seen = set()  # real paths of visited folders: symlinked folders are followed, loops are not
    for folder, subfolders, names in os.walk(data_dir, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        relative = os.path.relpath(folder, data_dir)
        yield ("" if relative == "." else relative.replace(os.sep, "/")), subfolders, names


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


@dataclasses.dataclass
class Listing:
    images: List[str]  # image ids, sorted
    ignored: List[str]  # relative paths of files that are not images, sorted
    hidden: List[str]  # relative paths of hidden files and folders (not descended into), sorted


def list_images(data_dir: str) -> Listing:
    """Every image under data_dir; ImageFolderDataError if data_dir is not a folder."""
    check_data_dir(data_dir)
    if not _isdir(data_dir):
        raise ImageFolderDataError(
            f"data_dir {data_dir} does not exist or is not a folder; expected a folder of images "
            f"({extensions_text()}, nested folders allowed)"
        )
    images, ignored, hidden = [], [], []
    for folder, subfolders, names in _walk(data_dir):
        prefix = folder + "/" if folder else ""
        hidden.extend(prefix + name + "/" for name in subfolders if name.startswith("."))
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in names:
            if name.startswith("."):
                hidden.append(prefix + name)
            elif is_image_name(name):
                images.append(prefix + name)
            else:
                ignored.append(prefix + name)
    return Listing(sorted(images), sorted(ignored), sorted(hidden))


def no_images_error(data_dir: str, listing: Listing) -> ImageFolderDataError:
    found = []
    if listing.ignored:
        found.append(f"{len(listing.ignored)} other files (e.g. {', '.join(listing.ignored[:3])})")
    if listing.hidden:
        found.append(f"{len(listing.hidden)} hidden entries")
    return ImageFolderDataError(
        f"no images in {data_dir}: expected files named *{', *'.join(IMAGE_EXTENSIONS)} (extension in any case) "
        f"anywhere under it, found {' and '.join(found) if found else 'nothing'}"
    )


# ---------------------------------------------------------------------------------------------
# Splits.


def split_point(image_id: str, seed: int = 0) -> float:
    """A number in [0, 1) that depends only on the seed and the image id."""
    digest = hashlib.sha256(f"{seed}\n{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def hash_split(image_id: str, eval_fraction: float, seed: int = 0) -> str:
    return contract.EVAL_SPLIT if split_point(image_id, seed) < eval_fraction else contract.TRAIN_SPLIT


def balance_splits(
    splits: Dict[str, str], seed: int, is_good: Callable[[str], bool]
) -> Dict[str, str]:
    """The moves {image_id: new split} that give each split a good image when there are two good images.

    `splits` maps image id -> hash split. Searches each split in point order (eval from the
    lowest point, train from the highest: the images least likely to move) for a good image;
    if one split has none, its nearest good neighbour across the boundary moves over when the
    other split still keeps a good image. At most one move.
    """
    by_point = sorted(splits, key=lambda image_id: (split_point(image_id, seed), image_id))
    train = [image_id for image_id in by_point if splits[image_id] == contract.TRAIN_SPLIT]
    evals = [image_id for image_id in by_point if splits[image_id] == contract.EVAL_SPLIT]

    def first_good(image_ids: Iterable[str]) -> Optional[str]:
        return next((image_id for image_id in image_ids if is_good(image_id)), None)

    eval_keeper = first_good(evals)
    train_keeper = first_good(reversed(train))
    if eval_keeper is None and train_keeper is not None:
        nearest = first_good(train)  # the lowest good point in train
        if nearest != train_keeper:
            return {nearest: contract.EVAL_SPLIT}
    if train_keeper is None and eval_keeper is not None:
        nearest = first_good(reversed(evals))  # the highest good point in eval
        if nearest != eval_keeper:
            return {nearest: contract.TRAIN_SPLIT}
    return {}


def decodes(data_dir: str, image_size: int) -> Callable[[str], bool]:
    """is_good(image_id) for balance_splits: whether the image becomes an example (memoized)."""
    known: Dict[str, bool] = {}

    def is_good(image_id: str) -> bool:
        if image_id not in known:
            try:
                square_crop.square_crop(read_bytes(image_path(data_dir, image_id)), image_size)
                known[image_id] = True
            except Exception:  # a reject: the pipeline finds and reports it again
                known[image_id] = False
        return known[image_id]

    return is_good


@dataclasses.dataclass
class Plan:
    """What a run will do, known before the pipeline reads any image."""

    candidates: List[Candidate]  # (image_id, split) in image id order: each becomes an example or a reject
    moved: Dict[str, str]  # image_id -> split for images balance_splits moved off their hash split
    listing: Listing

    @property
    def sizes(self) -> Dict[str, int]:
        sizes = {split: 0 for split in SPLITS}
        for _, split in self.candidates:
            sizes[split] += 1
        return sizes

    @property
    def input_images(self) -> int:
        return len(self.candidates)


def plan(
    data_dir: str,
    image_size: int = DEFAULT_IMAGE_SIZE,
    eval_fraction: float = DEFAULT_EVAL_FRACTION,
    seed: int = 0,
    max_examples_per_split: int = 0,
    is_good: Optional[Callable[[str], bool]] = None,
) -> Plan:
    """Lists data_dir and assigns every considered image its split; ImageFolderDataError if there are none."""
    listing = list_images(data_dir)
    if listing.ignored or listing.hidden:
        logging.info(
            "Ignoring %d files under %s that are not %s images (e.g. %s) and %d hidden entries (e.g. %s)",
            len(listing.ignored), data_dir, "/".join(IMAGE_EXTENSIONS), listing.ignored[:3],
            len(listing.hidden), listing.hidden[:3],
        )
    if not listing.images:
        raise no_images_error(data_dir, listing)
    splits = {image_id: hash_split(image_id, eval_fraction, seed) for image_id in listing.images}
    if max_examples_per_split:
        kept = set()
        for split in SPLITS:
            kept.update(sorted(i for i in splits if splits[i] == split)[:max_examples_per_split])
        splits = {image_id: split for image_id, split in splits.items() if image_id in kept}
    moved = balance_splits(splits, seed, is_good or decodes(data_dir, image_size))
    splits.update(moved)
    return Plan(sorted(splits.items()), moved, listing)


def check_input(data_dir: str) -> str:
    """Fails early, before a pipeline is built, if data_dir holds no images; returns what was found."""
    listing = list_images(data_dir)
    if not listing.images:
        raise no_images_error(data_dir, listing)
    return f"{len(listing.images)} images in {data_dir}"


def input_fingerprint(data_dir: str) -> str:
    """A digest of the input images, cheap enough to compute whenever a pipeline is built (for TFX caching).

    Image ids plus, for a local folder, sizes and mtimes (a stat per image would cost minutes on a
    remote filesystem, so remote folders contribute names only). Files that are not images do not
    count. Never raises for missing input: the executor reports that with the full explanation.
    """
    digest = hashlib.sha256(f"image_folder\n{data_dir}\n{','.join(IMAGE_EXTENSIONS)}\n".encode())
    try:
        images = list_images(data_dir).images
    except (ValueError, OSError):
        return digest.hexdigest()
    for image_id in images:
        line = image_id
        if not _is_remote(data_dir):
            try:
                stat = os.stat(image_path(data_dir, image_id))
                line += f"\t{stat.st_size}\t{stat.st_mtime_ns}"
            except OSError:  # a dangling symlink: the executor rejects it as missing
                line += "\tmissing"
        digest.update(f"{line}\n".encode())
    return digest.hexdigest()


def describe_moves(moved: Dict[str, str], seed: int) -> Sequence[str]:
    return [f"{image_id} -> {split} (point {split_point(image_id, seed):.4f})" for image_id, split in moved.items()]
