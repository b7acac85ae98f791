"""One image file of any size and mode in, one image_size x image_size RGB PNG out (or a reject with its reason).

Pure PIL/numpy, so the same function runs in the driver, in a test and in every Beam worker.

The square is the centre of the image with the short side's length, resized to image_size with
Lanczos on the fractional box: the same pixels as "resize the short side to image_size with an
antialiasing filter, then centre-crop", in one resampling. Before that the image is turned
upright by its EXIF orientation (phone photos), grey and palette images become RGB, and
transparent pixels are composited onto white (dropping alpha would turn them into whatever
colour the file stores under them, often black). 16-bit greyscale keeps its top 8 bits' worth of
range (scaled, not clipped). A large JPEG is decoded at a reduced DCT scale that still leaves at
least two source pixels per output pixel, so a 12 MP photo costs a fraction of a full decode and
the Lanczos reduction still antialiases.

Images whose short side is below `min_source_side(image_size)` (a quarter of image_size) are
rejected as too small rather than blown up; smaller-than-image_size images above that limit are
upscaled and reported as such.
"""
import dataclasses
import io
import math
from typing import Optional

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from components.celeba_example_gen.face_centering import (
    CORRUPT_IMAGE, TRUNCATED_IMAGE, ImageRejected, encode_png,
)

TOO_SMALL = "too_small"
TOO_LARGE = "too_large"  # over PIL's decompression-bomb limit (Image.MAX_IMAGE_PIXELS * 2, about 179 MP)

MIN_SIDE_FRACTION = 0.25  # reject sources whose short side is below image_size * this
DRAFT_OVERSAMPLING = 2  # a drafted JPEG keeps at least this many source pixels per output pixel
BACKGROUND = (255, 255, 255)  # what transparent pixels are composited onto
EXIF_ORIENTATION = 0x0112
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_WIDE_GREY_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")


@dataclasses.dataclass(frozen=True)
class SquareImage:
    """One output image: PNG bytes and the source's upright size (before any JPEG draft reduction)."""

    png: bytes
    source_height: int
    source_width: int
    upscaled: bool  # the source's short side was below image_size


def min_source_side(image_size: int) -> int:
    return math.ceil(image_size * MIN_SIDE_FRACTION)


def _open(encoded: bytes) -> Image.Image:
    if not encoded:
        raise ImageRejected(CORRUPT_IMAGE, "empty file")
    try:
        return Image.open(io.BytesIO(encoded))
    except Image.DecompressionBombError as error:
        raise ImageRejected(TOO_LARGE, str(error)) from error
    except UnidentifiedImageError as error:  # its message names the BytesIO object: no detail to keep
        raise ImageRejected(CORRUPT_IMAGE, "not a decodable image (no known image format)") from error
    except Exception as error:  # PIL raises UnidentifiedImageError, SyntaxError, struct.error, ...
        raise ImageRejected(CORRUPT_IMAGE, f"not a decodable image ({error})") from error


def _draft(image: Image.Image, image_size: int) -> None:
    """Lets libjpeg decode at 1/2, 1/4 or 1/8 scale while the short side stays >= 2 * image_size."""
    if image.format != "JPEG":
        return
    width, height = image.size
    keep = DRAFT_OVERSAMPLING * image_size / min(width, height)
    if keep < 0.5:  # PIL only reduces by whole powers of two, so below 1/2 nothing changes
        image.draft("RGB", (math.ceil(width * keep), math.ceil(height * keep)))


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB with transparency composited onto BACKGROUND; 16/32-bit greyscale scaled to 8 bits."""
    if image.mode in _WIDE_GREY_MODES:
        wide = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8), "L")
    has_alpha = image.mode in _ALPHA_MODES or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def exif_orientation(encoded: bytes) -> Optional[int]:
    """The EXIF orientation of an encoded image (1-8); None without one or when PIL cannot read the header."""
    try:
        with Image.open(io.BytesIO(encoded)) as image:
            return image.getexif().get(EXIF_ORIENTATION)
    except Exception:  # PIL raises UnidentifiedImageError, SyntaxError, struct.error, ... on what it cannot read
        return None


def turn_upright(pixels: np.ndarray, orientation: Optional[int]) -> np.ndarray:
    """uint8 [H, W, C] decoded as stored (by any decoder) -> upright, as square_crop turns its images
    (ImageOps.exif_transpose); unchanged for orientation None or 1."""
    if orientation in (None, 1):
        return pixels
    image = Image.fromarray(pixels)
    image.getexif()[EXIF_ORIENTATION] = orientation
    return np.asarray(ImageOps.exif_transpose(image))


def square_crop(encoded: bytes, image_size: int) -> SquareImage:
    """An encoded image -> its centre square, image_size x image_size, as an RGB PNG.

    Raises ImageRejected: corrupt_image (not decodable, unknown format, broken data),
    truncated_image (the data stops early), too_small, too_large.
    """
    image = _open(encoded)
    stored_width, stored_height = image.size
    if min(stored_width, stored_height) < min_source_side(image_size):
        raise ImageRejected(
            TOO_SMALL,
            f"{stored_width}x{stored_height} (width x height): the short side is below "
            f"{min_source_side(image_size)} px ({MIN_SIDE_FRACTION:g} of image_size {image_size})",
        )
    _draft(image, image_size)
    try:
        image.load()
    except Exception as error:  # OSError for truncated or broken data, also SyntaxError / ValueError
        reason = TRUNCATED_IMAGE if "truncated" in str(error).lower() else CORRUPT_IMAGE
        raise ImageRejected(reason, f"cannot decode ({error})") from error
    try:
        orientation = image.getexif().get(EXIF_ORIENTATION)
        image = ImageOps.exif_transpose(image)
        image = to_rgb(image)
    except Exception as error:  # a broken EXIF block or an exotic mode PIL cannot convert
        raise ImageRejected(CORRUPT_IMAGE, f"cannot convert {image.mode} to upright RGB ({error})") from error
    if orientation in _TRANSPOSED_ORIENTATIONS:
        stored_width, stored_height = stored_height, stored_width
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) / 2.0, (height - side) / 2.0
    square = image.resize((image_size, image_size), resample=Image.LANCZOS, box=(left, top, left + side, top + side))
    return SquareImage(
        png=encode_png(square),
        source_height=stored_height,
        source_width=stored_width,
        upscaled=min(stored_width, stored_height) < image_size,
    )
