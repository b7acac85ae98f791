"""Face centering for CelebA: one aligned 178x218 JPEG and its five landmarks in, one 64x64 PNG out.

Pure numpy/PIL, so the same function runs in a test, in the benchmark and in every Beam worker.

Coordinates are pixel units with (0, 0) the centre of the top-left pixel, as in CelebA's
landmark files (`list_landmarks_align_celeba.txt`) and in the `landmarks` feature we write.

Two crops:

- `face` (default): a square centred on the face and scaled by it, so that the eyes and the
  mouth land on `TEMPLATE` in every output. The crop is centred on the midpoint between the
  eye centre and the mouth centre, and its side is
  `64 * mean(eye_distance / TEMPLATE_EYE_DISTANCE, eye_to_mouth / TEMPLATE_EYE_TO_MOUTH)`,
  so a face with the template's proportions maps onto the template exactly (there is no
  rotation: CelebA's aligned images already have level eyes). Where the square extends past
  the image border the image is padded by edge replication and the crop is reported as padded.
- `center`: the course's plain crop, 128x128 from the centre of the aligned image, for comparison.

Either square is resized to 64x64 with an antialiasing filter (Lanczos) on the fractional box,
then PNG-encoded (lossless: never JPEG, which would shift FID).
"""
import dataclasses
import io
import math
from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from trainer_modules import contract

FACE_CROP = "face"
CENTER_CROP = "center"
CROPS = (FACE_CROP, CENTER_CROP)

# The aligned CelebA image (PIL size order: width, height).
SOURCE_WIDTH = 178
SOURCE_HEIGHT = 218
SOURCE_SIZE = (SOURCE_WIDTH, SOURCE_HEIGHT)
OUTPUT_SIZE = contract.CELEBA_SIZE

# The course's centre crop: 128x128 from the middle of the aligned 178x218 image.
CENTER_CROP_SIDE = 128

# Where the five landmarks land in the 64x64 output, in contract.CELEBA_LANDMARKS order.
# Eye distance and eye-to-mouth distance are both 20 px (CelebA's mean face has 39 and 40.5 px
# in the aligned image, so an average face is cropped with a side of about 127 px, close to the
# course's 128). The midpoint of eye centre and mouth centre is the image centre; nose and mouth
# corners sit where CelebA's mean face has them relative to the eyes.
TEMPLATE = np.array(
    [
        [21.5, 21.5],  # left eye (on the image's left)
        [41.5, 21.5],  # right eye
        [31.5, 33.0],  # nose
        [23.0, 41.5],  # left mouth corner
        [40.0, 41.5],  # right mouth corner
    ],
    dtype=np.float64,
)
LEFT_EYE, RIGHT_EYE, NOSE, LEFT_MOUTH, RIGHT_MOUTH = range(len(contract.CELEBA_LANDMARKS))


def eye_centre(points: np.ndarray) -> np.ndarray:
    return (points[LEFT_EYE] + points[RIGHT_EYE]) / 2.0


def mouth_centre(points: np.ndarray) -> np.ndarray:
    return (points[LEFT_MOUTH] + points[RIGHT_MOUTH]) / 2.0


TEMPLATE_EYE_DISTANCE = float(np.linalg.norm(TEMPLATE[RIGHT_EYE] - TEMPLATE[LEFT_EYE]))
TEMPLATE_EYE_TO_MOUTH = float(np.linalg.norm(mouth_centre(TEMPLATE) - eye_centre(TEMPLATE)))
TEMPLATE_FACE_CENTRE = (eye_centre(TEMPLATE) + mouth_centre(TEMPLATE)) / 2.0

# Plausibility limits for landmarks (checked before any crop is taken).
MIN_FEATURE_DISTANCE = 4.0  # px in the source image; below this the crop would be a few pixels wide

# Lanczos reads 3 source pixels either side per output pixel (scaled by the reduction), so padding
# reaches that far past the box: the filter then sees replicated edges instead of a cut-off image.
_LANCZOS_SUPPORT = 3.0

PNG_COMPRESS_LEVEL = 1  # zlib level 1: the same pixels, 2-3x faster to encode than 6, files about 13% larger

# Reject reasons decided here (the rest are in sources.py).
CORRUPT_IMAGE = "corrupt_image"
TRUNCATED_IMAGE = "truncated_image"
WRONG_SIZE = "wrong_size"
BAD_LANDMARKS = "bad_landmarks"


class ImageRejected(ValueError):
    """One image cannot become an example: `reason` is a reject reason, `detail` says what was found."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class CenteredFace:
    """One output image: PNG bytes, the five landmarks in output pixels, and whether padding was needed."""

    png: bytes
    landmarks: np.ndarray  # float32 [10]: x, y per landmark in contract.CELEBA_LANDMARKS order
    padded: bool


def check_crop(crop: str) -> None:
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r}; known crops: {', '.join(CROPS)}")


def check_landmarks(values: Sequence[float], width: int = SOURCE_WIDTH, height: int = SOURCE_HEIGHT) -> np.ndarray:
    """The landmarks as float64 [5, 2] if they describe a plausible upright face in the image.

    Raises ImageRejected(BAD_LANDMARKS) for a wrong count, non-finite values, points outside the
    image, a left eye not left of the right eye, a mouth not below the eyes, or features closer
    than MIN_FEATURE_DISTANCE (the crop would collapse).
    """
    points = np.asarray(values, dtype=np.float64)
    expected = 2 * len(contract.CELEBA_LANDMARKS)
    if points.size != expected:
        raise ImageRejected(BAD_LANDMARKS, f"expected {expected} values, got {points.size}")
    points = points.reshape(len(contract.CELEBA_LANDMARKS), 2)
    if not np.all(np.isfinite(points)):
        raise ImageRejected(BAD_LANDMARKS, f"non-finite values {points.reshape(-1).tolist()}")
    outside = [
        f"{name} ({x:g}, {y:g})"
        for name, (x, y) in zip(contract.CELEBA_LANDMARKS, points)
        if not (0 <= x <= width - 1 and 0 <= y <= height - 1)
    ]
    if outside:
        raise ImageRejected(BAD_LANDMARKS, f"outside the {width}x{height} image: {', '.join(outside)}")
    eye_distance = points[RIGHT_EYE, 0] - points[LEFT_EYE, 0]
    if eye_distance < MIN_FEATURE_DISTANCE:
        raise ImageRejected(
            BAD_LANDMARKS,
            f"right eye x {points[RIGHT_EYE, 0]:g} is not at least {MIN_FEATURE_DISTANCE:g} px right of "
            f"left eye x {points[LEFT_EYE, 0]:g}",
        )
    eye_to_mouth = mouth_centre(points)[1] - eye_centre(points)[1]
    if eye_to_mouth < MIN_FEATURE_DISTANCE:
        raise ImageRejected(
            BAD_LANDMARKS,
            f"mouth centre y {mouth_centre(points)[1]:g} is not at least {MIN_FEATURE_DISTANCE:g} px below "
            f"eye centre y {eye_centre(points)[1]:g}",
        )
    return points


Box = Tuple[float, float, float, float]  # left, top, right, bottom in PIL's continuous coordinates


def face_box(points: np.ndarray) -> Box:
    """The square that maps the face's eye and mouth centres onto the template's.

    PIL's box uses continuous coordinates (pixel i spans [i, i + 1)), so a landmark at pixel
    index p sits at p + 0.5; the box is placed so that the face centre lands on
    TEMPLATE_FACE_CENTRE in the output.
    """
    eyes, mouth = eye_centre(points), mouth_centre(points)
    eye_distance = float(np.linalg.norm(points[RIGHT_EYE] - points[LEFT_EYE]))
    eye_to_mouth = float(np.linalg.norm(mouth - eyes))
    scale = (eye_distance / TEMPLATE_EYE_DISTANCE + eye_to_mouth / TEMPLATE_EYE_TO_MOUTH) / 2.0
    side = OUTPUT_SIZE * scale
    centre = (eyes + mouth) / 2.0
    left, top = centre + 0.5 - (TEMPLATE_FACE_CENTRE + 0.5) * scale
    return float(left), float(top), float(left + side), float(top + side)


def center_box(width: int = SOURCE_WIDTH, height: int = SOURCE_HEIGHT) -> Box:
    """The course's crop: CENTER_CROP_SIDE square from the middle of the image."""
    left = (width - CENTER_CROP_SIDE) / 2.0
    top = (height - CENTER_CROP_SIDE) / 2.0
    return left, top, left + CENTER_CROP_SIDE, top + CENTER_CROP_SIDE


def crop_box(crop: str, points: np.ndarray) -> Box:
    check_crop(crop)
    return face_box(points) if crop == FACE_CROP else center_box()


def map_points(points: np.ndarray, box: Box, size: int = OUTPUT_SIZE) -> np.ndarray:
    """Source pixel coordinates -> output pixel coordinates for a box resized to size x size."""
    left, top, right, _ = box
    scale = size / (right - left)
    return (points + 0.5 - np.array([left, top])) * scale - 0.5


def decode(encoded: bytes, draft_box: Optional[Box] = None) -> Tuple[Image.Image, float]:
    """The RGB image and the factor its size was reduced by on decode (1 unless JPEG draft applied).

    Checks the size from the header before decoding the pixels, so a wrong-size file (or a
    decompression bomb) is never decoded. With `draft_box`, a JPEG is decoded at the smallest
    DCT scale that still leaves at least 2 source pixels per output pixel over that box, so
    the Lanczos reduction that follows still antialiases (see `draft_reduction`).
    """
    if not encoded:
        raise ImageRejected(CORRUPT_IMAGE, "empty file")
    try:
        image = Image.open(io.BytesIO(encoded))
    except Exception as error:  # PIL raises UnidentifiedImageError, SyntaxError, struct.error, ...
        raise ImageRejected(CORRUPT_IMAGE, f"not a decodable image ({error})") from error
    if image.size != SOURCE_SIZE:
        raise ImageRejected(
            WRONG_SIZE, f"expected {SOURCE_WIDTH}x{SOURCE_HEIGHT} (width x height), got {image.size[0]}x{image.size[1]}"
        )
    reduction = 1.0
    if draft_box is not None and image.format == "JPEG":
        factor = draft_reduction(draft_box)
        if factor > 1:
            drafted = image.draft("RGB", (SOURCE_WIDTH // factor, SOURCE_HEIGHT // factor))
            if drafted is not None:  # (mode, (0, 0, width / scale, height / scale)); sizes round up
                reduction = SOURCE_WIDTH / drafted[1][2]
    try:
        image.load()
    except Exception as error:  # OSError for truncated or broken data, also SyntaxError / ValueError
        reason = TRUNCATED_IMAGE if "truncated" in str(error).lower() else CORRUPT_IMAGE
        raise ImageRejected(reason, f"cannot decode ({error})") from error
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image, reduction


def draft_reduction(box: Box, size: int = OUTPUT_SIZE) -> int:
    """The JPEG DCT scale (1, 2, 4 or 8) to decode at for this box: the largest leaving 2 source px per output px."""
    side = box[2] - box[0]
    factor = 1
    while factor < 8 and side / (2 * factor) >= 2 * size:
        factor *= 2
    return factor


def pad_to_cover(image: Image.Image, box: Box, size: int = OUTPUT_SIZE) -> Tuple[Image.Image, Box, bool]:
    """If the box (plus the filter's reach) leaves the image, edge-pad the image and shift the box.

    Returns (image, box in the returned image's coordinates, whether the box itself left the image).
    """
    left, top, right, bottom = box
    width, height = image.size
    padded = left < 0 or top < 0 or right > width or bottom > height
    if not padded:
        return image, box, False
    reach = math.ceil(_LANCZOS_SUPPORT * max(1.0, (right - left) / size)) + 1
    pad_left = max(0, math.ceil(-left) + reach)
    pad_top = max(0, math.ceil(-top) + reach)
    pad_right = max(0, math.ceil(right - width) + reach)
    pad_bottom = max(0, math.ceil(bottom - height) + reach)
    pixels = np.pad(np.asarray(image), ((pad_top, pad_bottom), (pad_left, pad_right), (0, 0)), mode="edge")
    shifted = (left + pad_left, top + pad_top, right + pad_left, bottom + pad_top)
    return Image.fromarray(pixels), shifted, True


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def center_face(
    encoded: bytes, landmarks: Sequence[float], crop: str = FACE_CROP, draft: bool = False
) -> CenteredFace:
    """One aligned CelebA JPEG and its ten landmark values -> a 64x64 PNG with the landmarks mapped into it.

    Raises ImageRejected for bad landmarks, undecodable, truncated or wrong-size images.
    `draft` lets libjpeg decode large crops at a reduced DCT scale (see `decode`).
    """
    points = check_landmarks(landmarks)
    box = crop_box(crop, points)
    image, reduction = decode(encoded, box if draft else None)
    scaled = tuple(value / reduction for value in box) if reduction != 1 else box
    image, scaled, padded = pad_to_cover(image, scaled)
    resized = image.resize((OUTPUT_SIZE, OUTPUT_SIZE), resample=Image.LANCZOS, box=scaled)
    return CenteredFace(
        png=encode_png(resized),
        landmarks=map_points(points, box).astype(np.float32).reshape(-1),
        padded=padded,
    )
