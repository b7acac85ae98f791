"""A generated CelebA-format folder with faces whose landmarks are known exactly, plus deliberately bad entries.

Tests and the face-centering benchmark both use `write_celeba_fixture`. Each face is drawn with
PIL on a 178x218 canvas: a skin ellipse, two eyes, a nose and two mouth corners in colours of
their own (so a test can find them again in the output pixels), placed at the face_centering
template's proportions with a random scale and translation per image. The landmark file holds
exactly the points the features were drawn at.
"""
import dataclasses
import io
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

from components.celeba_example_gen import face_centering, sources
from trainer_modules import contract

EYE_COLOUR = (20, 40, 230)
NOSE_COLOUR = (30, 170, 40)
MOUTH_CORNER_COLOUR = (230, 30, 30)
MOUTH_COLOUR = (110, 40, 70)
SKIN_COLOUR = (224, 188, 160)

# Feature sizes relative to the face scale (the template's eye distance is 20 output pixels).
EYE_RADIUS = 2.2
NOSE_RADIUS = 1.6
MOUTH_CORNER_RADIUS = 1.6
FACE_HALF_WIDTH = 15.0
FACE_HALF_HEIGHT = 22.0

MIN_SCALE, MAX_SCALE = 1.6, 2.3  # CelebA's mean face is about 1.95 template scales
EDGE_SCALE = 2.0
IDENTITY_FILE = "identity_CelebA.txt"  # part of the distribution; only TFDS's builder reads it

# Deliberately bad entries: name -> (reject reason, split it is listed in).
BAD_ENTRIES = {
    "corrupt": (sources.CORRUPT_IMAGE, contract.TRAIN_SPLIT),  # not a JPEG at all after the first marker
    "truncated": (sources.TRUNCATED_IMAGE, contract.EVAL_SPLIT),  # a valid face JPEG cut in half
    "missing": (sources.MISSING_IMAGE, contract.TEST_SPLIT),  # rows in every text file, no image file
    "no_landmarks": (sources.NO_LANDMARKS, contract.TRAIN_SPLIT),  # image file but no landmark row
    "no_partition": (sources.NO_PARTITION, None),  # image file and landmark row, no partition entry
    "wrong_size": (sources.WRONG_SIZE, contract.TRAIN_SPLIT),  # a 100x120 JPEG
    "unparsable_landmarks": (sources.BAD_LANDMARKS, contract.EVAL_SPLIT),  # a landmark value that is not a number
    "landmarks_outside": (sources.BAD_LANDMARKS, contract.TRAIN_SPLIT),  # a landmark outside the image
}
_PARTITION_CODES = {split: code for code, split in sources.PARTITION_SPLITS.items()}


@dataclasses.dataclass
class CelebAFixture:
    """What was written: which ids must become examples, which must be rejected and why, and the truth."""

    root: str
    splits: Dict[str, Optional[str]]  # every id -> its split (None: no partition entry)
    good: List[str]  # ids that must become examples, in id order
    rejects: Dict[str, str]  # ids that must be rejected -> reason
    landmarks: Dict[str, np.ndarray]  # id -> float64 [10] where the features were drawn (= the landmark row)
    attributes: Dict[str, np.ndarray]  # id -> int64 [40] of 0/1 (the file holds -1/1)
    edge: List[str]  # good ids whose face crop extends past the image border (padded)
    bad_entries: Dict[str, str] = dataclasses.field(default_factory=dict)  # BAD_ENTRIES name -> id

    def image_path(self, image_id: str) -> str:
        return os.path.join(self.root, sources.IMAGES_DIR, image_id)

    def text_path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def example_counts(self) -> Dict[str, int]:
        return {split: sum(self.splits[i] == split for i in self.good) for split in sources.SPLITS}

    def reject_counts(self) -> Dict[str, int]:
        counts = {reason: 0 for reason in sources.REJECT_REASONS}
        for reason in self.rejects.values():
            counts[reason] += 1
        return counts

    @property
    def input_images(self) -> int:
        return len(self.good) + len(self.rejects)


def face_points(scale: float, centre) -> np.ndarray:
    """The template's five points scaled by `scale` about the face centre, placed at `centre` (float [5, 2])."""
    return np.asarray(centre, np.float64) + (face_centering.TEMPLATE - face_centering.TEMPLATE_FACE_CENTRE) * scale


def _disk(draw: ImageDraw.ImageDraw, point, radius: float, colour) -> None:
    x, y = point
    draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)


def draw_face(points: np.ndarray, scale: float, rng: np.random.Generator, size=face_centering.SOURCE_SIZE,
              noise: float = 0.0) -> Image.Image:
    """A face whose eyes, nose and mouth corners are centred on `points` (float [5, 2], pixel coordinates)."""
    # A desaturated background, so nothing but the drawn features has their saturated colours.
    background = tuple(int(v) for v in rng.integers(40, 200) + rng.integers(-15, 16, 3))
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    centre = (face_centering.eye_centre(points) + face_centering.mouth_centre(points)) / 2.0
    half_w, half_h = FACE_HALF_WIDTH * scale, FACE_HALF_HEIGHT * scale
    draw.ellipse([centre[0] - half_w, centre[1] - half_h - 2 * scale, centre[0] + half_w, centre[1] + half_h],
                 fill=SKIN_COLOUR)
    left_eye, right_eye, nose, left_mouth, right_mouth = points
    draw.line([tuple(left_mouth), tuple(right_mouth)], fill=MOUTH_COLOUR, width=max(1, round(scale)))
    for eye in (left_eye, right_eye):
        _disk(draw, eye, EYE_RADIUS * scale, EYE_COLOUR)
    _disk(draw, nose, NOSE_RADIUS * scale, NOSE_COLOUR)
    for corner in (left_mouth, right_mouth):
        _disk(draw, corner, MOUTH_CORNER_RADIUS * scale, MOUTH_CORNER_COLOUR)
    if noise:
        pixels = np.asarray(image, np.float32) + rng.normal(0.0, noise, (size[1], size[0], 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image


def jpeg_bytes(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def random_face(rng: np.random.Generator, edge: Optional[str] = None) -> Tuple[np.ndarray, float]:
    """Integer landmark points (CelebA stores whole pixels) and the scale, for a face inside the image.

    `edge` = "top_left" or "bottom_right" places the face so that its crop leaves the image.
    """
    width, height = face_centering.SOURCE_SIZE
    if edge:
        scale = EDGE_SCALE
        half = face_centering.OUTPUT_SIZE / 2 * scale
        centre = (half - 12, half + 6) if edge == "top_left" else (width - half + 12, height - half + 8)
    else:
        scale = float(rng.uniform(MIN_SCALE, MAX_SCALE))
        half = face_centering.OUTPUT_SIZE / 2 * scale + 2  # the crop stays inside, whole-pixel rounding included
        centre = (rng.uniform(half, width - half), rng.uniform(half, height - half))
    return np.round(face_points(scale, centre)), scale


def _landmark_row(image_id: str, values) -> str:
    return image_id + "".join(f" {v:>4}" for v in values)


def write_celeba_fixture(
    root: str,
    num_images: int = 40,
    seed: int = 0,
    corrupt: bool = True,
    attributes: bool = True,
    identity: bool = False,
    edge_faces: int = 2,
    noise: float = 4.0,
    jpeg_quality: int = 90,
) -> CelebAFixture:
    """Writes a CelebA-format folder at root (created if needed) and returns what is in it.

    Args:
      root: the data_dir to write: img_align_celeba/, list_landmarks_align_celeba.txt,
        list_eval_partition.txt and (with `attributes`) list_attr_celeba.txt.
      num_images: good faces; every tenth-but-one is `eval`, every tenth `test`, the rest `train`.
      seed: makes the scales, positions, colours and attributes reproducible.
      corrupt: add one entry per BAD_ENTRIES kind after the good ones.
      attributes: write list_attr_celeba.txt (random attributes).
      identity: write identity_CelebA.txt too (TFDS's builder reads it).
      edge_faces: how many good faces (at most 2) sit so close to a corner that their crop is padded.
      noise: standard deviation of pixel noise, so JPEG sizes and decode times resemble photos.
      jpeg_quality: of the written JPEGs.
    """
    rng = np.random.default_rng(seed)
    images_dir = os.path.join(root, sources.IMAGES_DIR)
    os.makedirs(images_dir, exist_ok=True)
    edges = {0: "top_left", 8: "bottom_right"}
    edges = {index: where for index, where in list(edges.items())[:edge_faces] if index < num_images}

    fixture = CelebAFixture(root, {}, [], {}, {}, {}, [])
    files: Dict[str, bytes] = {}
    landmark_rows: Dict[str, str] = {}
    for index in range(num_images):
        image_id = f"{index + 1:06d}.jpg"
        points, scale = random_face(rng, edges.get(index))
        files[image_id] = jpeg_bytes(draw_face(points, scale, rng, noise=noise), jpeg_quality)
        fixture.splits[image_id] = (contract.TEST_SPLIT if index % 10 == 9
                                    else contract.EVAL_SPLIT if index % 10 == 8 else contract.TRAIN_SPLIT)
        fixture.good.append(image_id)
        fixture.landmarks[image_id] = points.reshape(-1)
        landmark_rows[image_id] = _landmark_row(image_id, points.reshape(-1).astype(int))
        if index in edges:
            fixture.edge.append(image_id)

    if corrupt:
        for offset, (name, (reason, split)) in enumerate(BAD_ENTRIES.items()):
            image_id = f"{num_images + offset + 1:06d}.jpg"
            fixture.bad_entries[name] = image_id
            fixture.splits[image_id] = split
            fixture.rejects[image_id] = reason
            points, scale = random_face(rng)
            values = points.reshape(-1).astype(int)
            fixture.landmarks[image_id] = points.reshape(-1)
            face = jpeg_bytes(draw_face(points, scale, rng, noise=noise), jpeg_quality)
            if name == "corrupt":
                files[image_id] = face[:4] + rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()
            elif name == "truncated":
                files[image_id] = face[: len(face) // 2]
            elif name == "wrong_size":
                files[image_id] = jpeg_bytes(Image.new("RGB", (100, 120), SKIN_COLOUR), jpeg_quality)
            elif name != "missing":
                files[image_id] = face
            if name == "unparsable_landmarks":
                landmark_rows[image_id] = _landmark_row(image_id, [values[0], "x", *values[2:]])
            elif name == "landmarks_outside":
                landmark_rows[image_id] = _landmark_row(image_id, [300, *values[1:]])
            elif name != "no_landmarks":
                landmark_rows[image_id] = _landmark_row(image_id, values)

    ids = sorted(fixture.splits)
    for image_id in ids:
        fixture.attributes[image_id] = rng.integers(0, 2, len(contract.CELEBA_ATTRIBUTES))
    for image_id, data in files.items():
        with open(os.path.join(images_dir, image_id), "wb") as f:
            f.write(data)

    rows = [landmark_rows[i] for i in ids if i in landmark_rows]
    _write_lines(fixture.text_path(sources.LANDMARKS_FILE), [str(len(rows)), " ".join(sources.LANDMARK_COLUMNS), *rows])
    _write_lines(fixture.text_path(sources.PARTITION_FILE),
                 [f"{i} {_PARTITION_CODES[fixture.splits[i]]}" for i in ids if fixture.splits[i] is not None])
    if attributes:
        rows = [i + "".join(f" {2 * int(v) - 1:>2}" for v in fixture.attributes[i]) for i in ids]
        _write_lines(fixture.text_path(sources.ATTRIBUTES_FILE),
                     [str(len(rows)), " ".join(contract.CELEBA_ATTRIBUTES), *rows])
    if identity:
        _write_lines(fixture.text_path(IDENTITY_FILE), [f"{i} {1 + n % 7}" for n, i in enumerate(ids)])
    return fixture


def _write_lines(path: str, lines: List[str]) -> None:
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
