"""Gatys et al. neural style transfer: optimise the pixels of one image against VGG19 losses.

The image being optimised starts as the content image and moves, step by step, towards the
style image's Gram matrices while its content features stay close to the content image's (the
terms and weights of `style_losses`). There is no network to train, so every new image pays the
whole optimisation; `hub_stylize` and the feed-forward network of `style_transfer` are the fast
alternatives. Image I/O lives here too because every style method reads and writes images the same
way: float32 [1, H, W, 3] RGB in [0, 255], long side capped.
"""
import dataclasses
import os
import time
from typing import Callable, Dict, List, NamedTuple, Optional

import keras
import numpy as np
import tensorflow as tf

from components.image_folder_example_gen import square_crop
from trainer_modules import style_losses
from trainer_modules import training

PIXEL_MAX = 255.0
DEFAULT_MAX_DIM = 512  # long side, as in the course and the TF tutorial
# The course's optimiser: Adam on [0, 255] pixels, the rate halved every 100 steps.
DEFAULT_LEARNING_RATE = 20.0
DEFAULT_DECAY_STEPS = 100
DEFAULT_DECAY_RATE = 0.5
DEFAULT_STEPS = 1000  # the course: 10 epochs x 100 steps


# ---------------------------------------------------------------------------
# Images


def cap_long_side(image: tf.Tensor, max_dim: Optional[int]) -> tf.Tensor:
    """Resizes [1, H, W, 3] so its long side is at most max_dim, keeping the aspect ratio.

    Only shrinks: an image already small enough is returned as it is (enlarging adds no detail
    and makes every step slower). Antialiased, so a large photo does not alias when shrunk.
    """
    if max_dim is None:
        return image
    if max_dim < style_losses.MIN_IMAGE_SIDE:
        raise ValueError(f"max_dim must be >= {style_losses.MIN_IMAGE_SIDE} (VGG19 pools the image 4 times "
                         f"before block 5), got {max_dim}")
    height, width = int(image.shape[1]), int(image.shape[2])
    long_side = max(height, width)
    if long_side <= max_dim:
        return image
    scale = max_dim / long_side
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    resized = tf.image.resize(image, size, method="bilinear", antialias=True)
    return tf.clip_by_value(resized, 0.0, PIXEL_MAX)


def load_image(path: str, max_dim: Optional[int] = DEFAULT_MAX_DIM) -> tf.Tensor:
    """A JPEG, PNG, GIF or BMP file -> float32 [1, H, W, 3] RGB in [0, 255], long side <= max_dim.

    Grey and RGBA images become RGB (style images come in every format), and a photo stored rotated
    is turned upright by its EXIF orientation, as the image-folder ExampleGen does.
    """
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"image {path} does not exist")
    if tf.io.gfile.isdir(path):
        raise ValueError(f"image {path} is a directory; expected a JPEG or PNG file")
    try:
        data = tf.io.read_file(path)
        image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        raise ValueError(f"cannot decode image {path}: expected a JPEG, PNG, GIF or BMP file "
                         f"({error.message.strip()})") from None
    orientation = square_crop.exif_orientation(data.numpy())
    if orientation not in (None, 1):
        image = tf.constant(square_crop.turn_upright(image.numpy(), orientation))
    return cap_long_side(tf.cast(image, tf.float32)[tf.newaxis], max_dim)


def to_uint8(image) -> np.ndarray:
    """[1, H, W, 3] or [H, W, 3] floats in [0, 255] -> uint8 [H, W, 3], rounded and clipped."""
    array = np.asarray(image, np.float32)
    if array.ndim == 4:
        if array.shape[0] != 1:
            raise ValueError(f"expected one image [1, H, W, 3], got a batch of shape {array.shape}")
        array = array[0]
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {array.shape}")
    return np.clip(np.round(array), 0, 255).astype(np.uint8)


def save_image(path: str, image) -> str:
    """Writes an image in [0, 255] ([1, H, W, 3] or [H, W, 3]) as PNG (lossless); returns the path."""
    if "://" not in path:
        path = os.path.abspath(path)
    return training.write_png(path, to_uint8(image))


# ---------------------------------------------------------------------------
# Optimisation


@dataclasses.dataclass
class StepInfo:
    """What a progress callback sees after each step.

    `losses` are those of the image the step started from (the ones its gradient came from);
    `image` is the tf.Variable after the step's update and clipping (read it, do not keep it).
    `seconds` is the step's wall time; the first step includes tracing the tf.function.
    """

    step: int  # 1-based
    steps: int
    losses: Dict[str, float]  # total, content, style, tv (weighted)
    seconds: float
    image: tf.Variable


class GatysResult(NamedTuple):
    image: tf.Tensor  # float32 [1, H, W, 3] in [0, 255]
    losses: List[Dict[str, float]]  # one dict per step, as in StepInfo.losses
    seconds: List[float]  # wall time per step


def _as_image(image, name: str) -> tf.Tensor:
    image = tf.convert_to_tensor(image, tf.float32)
    if image.shape.rank != 4 or image.shape[0] != 1 or image.shape[-1] != 3:
        raise ValueError(f"{name} image must be float [1, H, W, 3] RGB in [0, 255], got shape {image.shape}")
    low, high = float(tf.reduce_min(image)), float(tf.reduce_max(image))
    if low < 0.0 or high > PIXEL_MAX:
        raise ValueError(f"{name} image must hold pixels in [0, 255], got [{low:g}, {high:g}]")
    return image


def _check_side(image: tf.Tensor, name: str):
    height, width = int(image.shape[1]), int(image.shape[2])
    if min(height, width) < style_losses.MIN_IMAGE_SIDE:
        raise ValueError(f"{name} image is {height}x{width}; VGG19 needs both sides >= "
                         f"{style_losses.MIN_IMAGE_SIDE} px")


def stylize(content, style, extractor: style_losses.StyleContentExtractor, steps: int = DEFAULT_STEPS,
            weights: style_losses.StyleWeights = style_losses.StyleWeights(),
            learning_rate: float = DEFAULT_LEARNING_RATE, decay_steps: int = DEFAULT_DECAY_STEPS,
            decay_rate: float = DEFAULT_DECAY_RATE, max_dim: Optional[int] = DEFAULT_MAX_DIM,
            callback: Optional[Callable[[StepInfo], None]] = None) -> GatysResult:
    """The content image redrawn in the style of the style image by `steps` Adam steps on its pixels.

    content, style: float [1, H, W, 3] RGB in [0, 255]; both are shrunk to a long side of at most
    max_dim. The output has the (capped) content image's size. The learning rate follows
    ExponentialDecay(learning_rate, decay_steps, decay_rate) -- large steps first, fine ones at the
    end -- and the pixels are clipped to [0, 255] after every step, so the result is always an image.

    The total loss need not fall from the first step: Adam's first steps move nearly every pixel by
    about the learning rate (20 grey levels by default) however small its gradient, which raises the
    total variation of a smooth content image; it comes down once Adam's averaged gradients shrink
    the steps (benchmarks/README.md, `style_transfer.py`, has measurements).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if learning_rate <= 0 or decay_steps < 1 or not 0 < decay_rate <= 1:
        raise ValueError(f"need learning_rate > 0, decay_steps >= 1 and 0 < decay_rate <= 1, got "
                         f"{learning_rate}, {decay_steps}, {decay_rate}")
    content = cap_long_side(_as_image(content, "content"), max_dim)
    style = cap_long_side(_as_image(style, "style"), max_dim)
    _check_side(content, "content")
    _check_side(style, "style")

    targets = {"content": extractor(content)["content"], "style": extractor(style)["style"]}
    image = tf.Variable(content, name="stylized_image")
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(
        initial_learning_rate=learning_rate, decay_steps=decay_steps, decay_rate=decay_rate))

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            total, parts = style_losses.total_loss(extractor(image), targets, image, weights)
        optimizer.apply_gradients([(tape.gradient(total, image), image)])
        image.assign(tf.clip_by_value(image, 0.0, PIXEL_MAX))
        return {"total": total, **parts}

    losses, seconds = [], []
    for step in range(1, steps + 1):
        start = time.perf_counter()
        values = {name: float(value) for name, value in train_step().items()}
        elapsed = time.perf_counter() - start
        losses.append(values)
        seconds.append(elapsed)
        if callback is not None:
            callback(StepInfo(step=step, steps=steps, losses=values, seconds=elapsed, image=image))
    return GatysResult(tf.convert_to_tensor(image), losses, seconds)
