"""Style transfer speed: a Gatys optimisation step against one pass of the exported fast network.

- gatys: seconds per step of `trainer_modules.gatys.stylize` (VGG19 forward + backward through the
  image, Adam update, clipping) on a generated 4:3 content image whose long side is each of --sizes,
  the style image square at the same size. The median over steps after the first (the first traces
  the tf.function) is the steady cost.
- fast: the feed-forward network of `trainer_modules.style_transfer` (Johnson et al.) as it is pushed:
  `build_transform_net()` exported with `export_stylizer` to a temporary SavedModel and called through
  its `stylize` signature, or the pushed SavedModel given with --model DIR. Images per second at
  --fast-size (long side) one image per call (the interactive case) and --fast-batch per call.
- ratio: a --reference-steps Gatys run (default 100 steps at the steady step cost) against one image
  of the fast network at the same size. Target: at least 100x.

VGG19 runs with random weights by default: the arithmetic of a step does not depend on the weight
values, so the timing is that of ImageNet weights (pass --vgg-weights PATH to time those anyway).
The fast network is untrained for the same reason unless --model points at a trained one.

The weighted loss terms of the first and the last Gatys step are printed and kept, but they measure
nothing about quality: LOSS_NOTE says why the total rises over these few steps.

    .venv/bin/python benchmarks/style_transfer.py                          # 256 and 512 px, about 2 minutes
    .venv/bin/python benchmarks/style_transfer.py --sizes 256 --gatys-steps 6 --fast-images 5   # quick look
    .venv/bin/python benchmarks/style_transfer.py --model runs/serving/style/1700000000   # a pushed model

Each timing also reports CPU-seconds of this process: when another job shares the two cores the
wall-clock numbers grow and the CPU-second numbers barely move.
"""
import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import train_throughput as tt  # the sibling script (run from benchmarks/): the shared results writer

import numpy as np
import tensorflow as tf

from serving import signatures as sig
from trainer_modules import gatys
from trainer_modules import style_losses

TARGET_RATIO = 100.0

# Why the Gatys losses of this benchmark rise; measured on its images (numbers in benchmarks/README.md).
LOSS_NOTE = (
    "the Gatys losses over these few steps are not expected to fall: Adam's first steps at the course's "
    "learning rate 20 move nearly every pixel by about 20 grey levels however small its gradient, which raises "
    "the total variation (TV) of the smooth generated content image. These steps are timed, not judged "
    "(tests/test_stylize.py checks the loop against the course's update).")
RANDOM_WEIGHTS_LOSS_NOTE = (
    "With random VGG19 weights the style and content terms are below 1e-4 of the total, so the total is the "
    "TV term: it peaks at step 3 (9x its start at 256 px, 20x at 512 px) and falls from there, back below "
    "its start after about 100 steps at 256 px and still 1.4x it after 150 steps at 512 px.")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="Gatys long sides (px)")
    parser.add_argument("--gatys-steps", type=int, default=12, help="timed Gatys steps per size (first excluded)")
    parser.add_argument("--vgg-weights", default=style_losses.VGG_RANDOM,
                        help="VGG19 weights for the Gatys timing (default random: same FLOPs as ImageNet)")
    parser.add_argument("--fast-size", type=int, default=256, help="fast network long side (px)")
    parser.add_argument("--fast-images", type=int, default=40, help="timed fast-network calls (after 3 warm-up)")
    parser.add_argument("--fast-batch", type=int, default=8, help="images per call in the batched measurement")
    parser.add_argument("--model", help="pushed style SavedModel directory with a 'stylize' signature "
                                        "(default: export an untrained style_transfer.build_transform_net())")
    parser.add_argument("--skip-fast", action="store_true", help="time only the Gatys steps")
    parser.add_argument("--reference-steps", type=int, default=100, help="Gatys steps of the reference run")
    parser.add_argument("--output", help="JSON results (default runs/benchmarks/style_transfer-<time>.json)")
    args = parser.parse_args(argv)
    if args.gatys_steps < 2:
        parser.error("--gatys-steps must be >= 2 (the first step only traces)")
    if min(args.sizes + [args.fast_size]) < style_losses.MIN_IMAGE_SIDE * 2:
        parser.error("sizes must be >= 32 (the 4:3 short side must stay >= 16 for VGG19)")
    if args.fast_images < 1 or args.fast_batch < 1 or args.reference_steps < 1:
        parser.error("--fast-images, --fast-batch and --reference-steps must be >= 1")
    return args


def content_and_style(long_side: int):
    """A 4:3 content picture and a square style picture, float [1, H, W, 3] in [0, 255]."""
    rng = np.random.default_rng(long_side)
    short = round(long_side * 3 / 4)
    yy, xx = np.mgrid[0:short, 0:long_side] / long_side
    content = np.stack([yy, xx, 0.5 + 0.5 * np.sin(12 * (xx + yy))], axis=-1) * 255.0
    style = rng.uniform(0, 255, (long_side, long_side, 3))
    return tf.constant(content[None], tf.float32), tf.constant(style[None], tf.float32)


def median_after_first(values):
    return statistics.median(values[1:])


def time_gatys(extractor, long_side: int, steps: int) -> dict:
    content, style = content_and_style(long_side)
    marks = [(time.perf_counter(), time.process_time())]
    result = gatys.stylize(content, style, extractor, steps=steps, max_dim=long_side,
                           callback=lambda info: marks.append((time.perf_counter(), time.process_time())))
    wall = [b[0] - a[0] for a, b in zip(marks, marks[1:])]
    cpu = [b[1] - a[1] for a, b in zip(marks, marks[1:])]
    seconds, cpu_seconds = median_after_first(wall), median_after_first(cpu)
    return {
        "long_side": long_side,
        "image_shape": list(result.image.shape),
        "steps": steps,
        "first_step_seconds": wall[0],
        "seconds_per_step": seconds,
        "cpu_seconds_per_step": cpu_seconds,
        "cores_used": cpu_seconds / seconds,
        "seconds_per_step_all": wall,
        "loss_first": result.losses[0]["total"],
        "loss_last": result.losses[-1]["total"],
        "losses_first": result.losses[0],  # weighted terms of step 1 (the content image itself)
        "losses_last": result.losses[-1],
    }


def describe_losses(losses: dict) -> str:
    return (f"total {losses['total']:.4g} = content {losses['content']:.3g} + style {losses['style']:.3g} "
            f"+ tv {losses['tv']:.4g}")


def load_fast_network(args, workdir: str):
    """(`stylize` concrete function, description): the pushed model, or a freshly exported untrained one."""
    if args.model:
        if not tf.io.gfile.isdir(args.model):
            raise SystemExit(f"--model {args.model} is not a directory (expected a pushed SavedModel)")
        loaded = tf.saved_model.load(args.model)
        source = f"pushed model {args.model}"
    else:
        try:
            from trainer_modules import style_transfer
        except ImportError as error:
            print(f"fast network skipped: trainer_modules.style_transfer cannot be imported ({error}); "
                  f"pass --model DIR (a pushed style SavedModel with a '{sig.STYLIZE}' signature)")
            return None, None, None
        export_dir = os.path.join(workdir, "style_export")
        style_transfer.export_stylizer(style_transfer.build_transform_net(), export_dir)
        loaded = tf.saved_model.load(export_dir)
        source = "untrained style_transfer.build_transform_net() exported with export_stylizer"
    if sig.STYLIZE not in loaded.signatures:
        raise SystemExit(f"{args.model} has no '{sig.STYLIZE}' signature; it has {sorted(loaded.signatures)}")
    return loaded, loaded.signatures[sig.STYLIZE], source


def time_fast(stylize, long_side: int, batch: int, calls: int) -> dict:
    content, _ = content_and_style(long_side)
    images = tf.repeat(content / 255.0, batch, axis=0)
    for _ in range(3):
        output = stylize(**{sig.IMAGES_INPUT: images})[sig.IMAGES_OUTPUT].numpy()
    wall, cpu = [], []
    for _ in range(calls):
        start, start_cpu = time.perf_counter(), time.process_time()
        stylize(**{sig.IMAGES_INPUT: images})[sig.IMAGES_OUTPUT].numpy()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    seconds = statistics.median(wall)
    return {
        "long_side": long_side,
        "batch": batch,
        "input_shape": list(images.shape),
        "output_shape": list(output.shape),
        "calls": calls,
        "seconds_per_call": seconds,
        "seconds_per_image": seconds / batch,
        "images_per_second": batch / seconds,
        "cpu_seconds_per_image": statistics.median(cpu) / batch,
    }


def main(argv=None):
    args = parse_args(argv)
    load_before = os.getloadavg()
    print(f"style-transfer benchmark: Gatys at {args.sizes} px ({args.gatys_steps} steps each, VGG19 "
          f"{args.vgg_weights}), fast network at {args.fast_size} px; {os.cpu_count()} CPUs, "
          f"loadavg {load_before[0]:.2f}", flush=True)
    extractor = style_losses.StyleContentExtractor(style_losses.load_vgg19(args.vgg_weights))
    gatys_results = {}
    for size in args.sizes:
        result = time_gatys(extractor, size, args.gatys_steps)
        gatys_results[str(size)] = result
        print(f"  gatys {result['image_shape'][1]}x{result['image_shape'][2]}: {result['seconds_per_step']:.3f} s/step "
              f"({result['cpu_seconds_per_step']:.3f} CPU-s, {result['cores_used']:.2f} cores; first step "
              f"{result['first_step_seconds']:.2f} s)", flush=True)
        print(f"    weighted losses, step 1: {describe_losses(result['losses_first'])}; step {result['steps']}: "
              f"{describe_losses(result['losses_last'])}", flush=True)
    loss_note = LOSS_NOTE + (" " + RANDOM_WEIGHTS_LOSS_NOTE if args.vgg_weights == style_losses.VGG_RANDOM else "")
    print(f"  note: {loss_note}", flush=True)

    fast, comparison, source = {}, None, None
    if not args.skip_fast:
        workdir = tempfile.mkdtemp(prefix="style-bench-")
        try:
            loaded, stylize, source = load_fast_network(args, workdir)
            if stylize is not None:
                fast["single"] = time_fast(stylize, args.fast_size, 1, args.fast_images)
                fast["batched"] = time_fast(stylize, args.fast_size, args.fast_batch,
                                            max(1, args.fast_images // args.fast_batch))
                for name, result in fast.items():
                    print(f"  fast ({name}, batch {result['batch']}) {result['input_shape'][1]}x"
                          f"{result['input_shape'][2]}: {result['images_per_second']:.1f} images/s "
                          f"({result['seconds_per_image'] * 1000:.1f} ms, "
                          f"{result['cpu_seconds_per_image'] * 1000:.1f} CPU-ms per image)", flush=True)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if fast:
            reference = gatys_results.get(str(args.fast_size))
            if reference is None:
                reference = time_gatys(extractor, args.fast_size, args.gatys_steps)
                gatys_results[str(args.fast_size)] = reference
            gatys_run = args.reference_steps * reference["seconds_per_step"]
            gatys_run_cpu = args.reference_steps * reference["cpu_seconds_per_step"]
            single = fast["single"]
            comparison = {
                "reference_steps": args.reference_steps,
                "gatys_run_seconds": gatys_run,
                "fast_seconds_per_image": single["seconds_per_image"],
                "ratio": gatys_run / single["seconds_per_image"],
                "ratio_cpu_seconds": gatys_run_cpu / single["cpu_seconds_per_image"],
                "ratio_batched": gatys_run / fast["batched"]["seconds_per_image"],
                "target_ratio": TARGET_RATIO,
            }
            comparison["meets_target"] = comparison["ratio"] >= TARGET_RATIO
            print(f"  a {args.reference_steps}-step Gatys run at {args.fast_size} px: {gatys_run:.1f} s; fast network "
                  f"{single['seconds_per_image'] * 1000:.1f} ms per image: {comparison['ratio']:.0f}x "
                  f"({comparison['ratio_cpu_seconds']:.0f}x per CPU-second, {comparison['ratio_batched']:.0f}x "
                  f"batched; target {TARGET_RATIO:.0f}x: {'met' if comparison['meets_target'] else 'NOT met'})",
                  flush=True)

    load_after = os.getloadavg()
    results = {
        "benchmark": "style_transfer",
        "settings": vars(args),
        "environment": {"python": platform.python_version(), "tensorflow": tf.__version__,
                        "cpu_count": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": load_after},
        "gatys": gatys_results,
        "gatys_loss_note": loss_note,
        "fast_network": {"source": source, **fast} if fast else None,
        "comparison": comparison,
    }
    tt.write_results(results, "style_transfer", args.output)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
