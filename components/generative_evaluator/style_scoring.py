"""The GenerativeEvaluator's style family: perceptual losses and speed of a fast style network.

Held-out content images (the transformed eval split, [0, 1]) go through each model's `stylize`
signature. The stylized images are scored with the VGG19 perceptual losses the network was
trained with (trainer_modules.style_transfer.perceptual_loss: content, style, total variation and
their weighted total); the content images themselves, unstylized, give the reference total, so
`loss_improvement` = identity total / stylized total says how much of the style the network
transfers (1: none). Speed: seconds per image of `stylize` at batch 1 (median over the held-out
images, after a warm-up call), against the seconds per step of the Gatys optimisation on the
first held-out image, extrapolated to a `gatys_reference_steps`-step run (the course's 100 by
default); `speedup_vs_gatys` is their ratio.

This runs in the executor's process, not in Beam: a handful of images through VGG19 and a short
Gatys run are one model's work, not data-parallel work.
"""
import time
from typing import Any, Dict, List

import numpy as np
import tensorflow as tf

from serving import signatures as sig
from trainer_modules import contract
from trainer_modules import gatys
from trainer_modules import style_losses
from trainer_modules import style_transfer
from trainer_modules import training

STYLE_DEFAULTS = {
    "style_image": "",           # the style image the network was trained for
    "vgg_weights": "",           # VGG19 no-top weights (a file, "imagenet", or "random" in tests)
    "style_image_size": style_transfer.DEFAULT_STYLE_IMAGE_SIZE,
    "content_weight": None,      # None: style_losses.StyleWeights' defaults (as in training)
    "style_weight": None,
    "tv_weight": None,
    "eval_images": 16,           # held-out content images stylized and scored
    "gatys_steps": 100,          # Gatys steps timed on the first held-out image
    "gatys_reference_steps": 100,  # the Gatys run the speed is compared with
    "timing_repeats": 3,         # stylize calls per image for its median time
}
GRID_FILE = "stylized.png"


def eval_images(pattern: str, feature_spec, count: int) -> np.ndarray:
    """The first `count` transformed eval images, float32 [N, H, W, 3] in [0, 1]."""
    spec = {contract.IMAGE_KEY: feature_spec[contract.IMAGE_KEY]}
    dataset = training.make_dataset(pattern, spec, lambda f: f[contract.IMAGE_KEY], count, shuffle=False,
                                    repeat=False, drop_remainder=False)
    batch = next(iter(dataset), None)
    if batch is None:
        raise ValueError(f"no eval examples found at {pattern}")
    return batch.numpy()


def _stylizer(model_dir: str):
    loaded = tf.saved_model.load(model_dir)
    if sig.STYLIZE not in loaded.signatures:
        raise ValueError(f"model {model_dir} has no {sig.STYLIZE!r} signature (has {sorted(loaded.signatures)})")
    function = loaded.signatures[sig.STYLIZE]
    return loaded, lambda images: function(**{sig.IMAGES_INPUT: tf.constant(images)})[sig.IMAGES_OUTPUT].numpy()


def _losses(extractor, images01: np.ndarray, content01: np.ndarray, grams, weights) -> Dict[str, float]:
    parts = style_transfer.perceptual_loss(extractor, tf.constant(images01 * 255.0, tf.float32),
                                           tf.constant(content01 * 255.0, tf.float32), grams, weights)
    return {"total_loss" if k == "loss" else f"{k}_loss": float(v) for k, v in parts.items()}


def seconds_per_image(stylize, images: np.ndarray, repeats: int) -> float:
    """Median wall seconds of one `stylize` call at batch 1, after a warm-up call."""
    stylize(images[:1])
    times = []
    for image in images:
        for _ in range(repeats):
            start = time.perf_counter()
            stylize(image[None])
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def gatys_seconds_per_step(extractor, content01: np.ndarray, style_image: str, grams_size: int, weights,
                           steps: int) -> Dict[str, float]:
    """Times the Gatys optimisation on one content image: median seconds per step after the first."""
    stamps: List[float] = []
    style = gatys.load_image(style_image, max_dim=grams_size)
    content = tf.constant(content01[None] * 255.0, tf.float32)
    start = time.perf_counter()
    gatys.stylize(content, style, extractor, steps=steps, weights=weights, max_dim=max(content01.shape[:2]),
                  callback=lambda *args, **kwargs: stamps.append(time.perf_counter()))
    total = time.perf_counter() - start
    per_step = np.diff([start, *stamps]) if stamps else np.array([total / steps])
    steady = per_step[1:] if len(per_step) > 1 else per_step
    return {"gatys_seconds_per_step": float(np.median(steady)), "gatys_steps_timed": int(steps),
            "gatys_first_step_seconds": float(per_step[0])}


def score(model_dirs: Dict[str, str], pattern: str, feature_spec, config: Dict[str, Any],
          grid_path: str) -> Dict[str, Any]:
    """{"models": {name: metrics}, "identity": metrics, "grid": path} for the style family."""
    config = {**STYLE_DEFAULTS, **(config or {})}
    style_config = style_transfer.StyleConfig.from_custom_config(
        {k: config[k] for k in ("style_image", "vgg_weights", "style_image_size", "content_weight",
                                "style_weight", "tv_weight")})
    weights = style_config.weights()
    extractor = style_losses.StyleContentExtractor(style_losses.load_vgg19(style_config.vgg_weights))
    grams = style_transfer.style_targets(extractor, style_config.style_image, style_config.style_image_size)
    content = eval_images(pattern, feature_spec, int(config["eval_images"]))

    identity = _losses(extractor, content, content, grams, weights)
    gatys_timing = gatys_seconds_per_step(extractor, content[0], style_config.style_image,
                                          style_config.style_image_size, weights, int(config["gatys_steps"]))
    gatys_reference = gatys_timing["gatys_seconds_per_step"] * int(config["gatys_reference_steps"])

    models: Dict[str, Dict[str, float]] = {}
    grid_rows = [content]
    for name, model_dir in model_dirs.items():
        _, stylize = _stylizer(model_dir)
        styled = stylize(content)
        if styled.shape != content.shape:
            raise ValueError(f"model {model_dir}: `stylize` returned shape {list(styled.shape)} for images "
                             f"{list(content.shape)}; it must keep height and width")
        metrics = _losses(extractor, styled, content, grams, weights)
        per_image = seconds_per_image(stylize, content, int(config["timing_repeats"]))
        metrics.update({
            "loss_improvement": identity["total_loss"] / max(metrics["total_loss"], 1e-12),
            "seconds_per_image": per_image,
            "gatys_seconds_per_image": gatys_reference,
            "speedup_vs_gatys": gatys_reference / max(per_image, 1e-12),
            "num_images": int(len(content)),
            "image_size": int(content.shape[1]),
            **gatys_timing,
        })
        models[name] = metrics
        if not grid_rows[1:]:
            grid_rows.append(styled)
    training.write_png(grid_path, training.image_grid(grid_rows))
    return {"models": models, "identity": identity, "grid": grid_path,
            "gatys_reference_steps": int(config["gatys_reference_steps"]),
            "vgg_weights": style_config.vgg_weights}
