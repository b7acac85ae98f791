"""Face-centering throughput of CelebAExampleGen: aligned 178x218 JPEG in, 64x64 PNG tf.Example out, per core.

Runs on a generated CelebA folder (`components.celeba_example_gen.fixture`: drawn faces with
pixel noise, so JPEG sizes are close to CelebA's ~7 KB) and measures:

(a) function: `face_centering.center_face` in this process on JPEG bytes held in memory, plus
    the cost of each stage (decode, crop and resize, PNG encode, tf.Example) and a what-if that
    would decode every ~128 px crop at JPEG draft scale 1/2 (speed and PSNR against full decode).
(b) beam: the real executor (`Executor().Do` with the DirectRunner in `multi_processing` mode)
    at each worker count, twice: on a small prefix (max_examples_per_split) and on the whole
    folder. The difference of the two runs is the steady rate, without the fixed start-up
    (worker processes importing TensorFlow and TFX, pipeline construction), reported apart.
(c) planning: parsing full-size CelebA text files (202,599 rows, generated), as the driver and
    every files-source worker do once.

From these it prints images/s per core against the 300 images/s target, the scaling from 1 to
2 workers, and what the full CelebA (202,599 images) would take. Nothing here asserts a time.

    .venv/bin/python benchmarks/face_centering.py                                  # 20,000 images, 1 and 2 workers
    .venv/bin/python benchmarks/face_centering.py --images 2000 --small 300 --rounds 1   # quick look
    .venv/bin/python benchmarks/face_centering.py --data-dir /tmp/celeba-bench     # keep the generated folder

A default run takes about 5 minutes on 2 cores, one of them generating the 20,000 faces (150 MB;
kept and reused with --data-dir).

Each timing also reports CPU seconds (this process, and the Beam worker processes), so a run on
a machine shared with other jobs still shows the per-CPU-second rate.
"""
import argparse
import io
import json
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import train_throughput as tt  # the sibling script (run from benchmarks/): the shared results writer

import numpy as np
from PIL import Image
from tfx.dsl.components.base import base_beam_executor
from tfx.types import standard_artifacts

from components.celeba_example_gen import centering_stage
from components.celeba_example_gen import executor as executor_lib
from components.celeba_example_gen import face_centering, sources
from components.celeba_example_gen import fixture as fixture_lib
from components.celeba_example_gen.component import ExampleRejects
from trainer_modules import contract

CELEBA_IMAGES = 202_599
TARGET_PER_CORE = 300.0  # images/s per core: all of CelebA in under 6 minutes on 2 cores
MIN_STEADY_WINDOW = 10.0  # seconds between the small and the large run below which start-up noise dominates


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20000,
                        help="generated faces in the folder (the large run); fewer and the workers' start-up "
                             "swamps the steady rate at 2 workers")
    parser.add_argument("--small", type=int, default=1200, help="about this many images in the small run")
    parser.add_argument("--function-images", type=int, default=1000, help="images for the in-process timings")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="DirectRunner worker counts")
    parser.add_argument("--rounds", type=int, default=2, help="repeats of every timing; medians are reported")
    parser.add_argument("--crop", choices=face_centering.CROPS, default=face_centering.FACE_CROP)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="keep the generated folder here and reuse it")
    parser.add_argument("--output", default=None,
                        help="JSON results (default runs/benchmarks/face_centering-<time>.json)")
    args = parser.parse_args(argv)
    if not 0 < args.small <= 3 * (args.images // 10):
        parser.error("need 0 < --small <= 3 * (--images // 10): the small run takes --small / 3 from each split, "
                     "and eval and test hold a tenth of the folder each")
    return args


def cpu_seconds():
    """(this process, waited-for child processes) CPU seconds so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def prepare_folder(args):
    """The generated CelebA folder (reused from --data-dir when it matches), and whether to delete it after."""
    root = args.data_dir or tempfile.mkdtemp(prefix="celeba-bench-")
    marker = os.path.join(root, "benchmark_fixture.json")
    settings = {"images": args.images, "seed": args.seed}
    if os.path.exists(marker):
        with open(marker) as f:
            if json.load(f) == settings:
                print(f"reusing the generated folder {root}")
                return root, args.data_dir is None
        shutil.rmtree(root)
    start = time.perf_counter()
    fixture_lib.write_celeba_fixture(root, num_images=args.images, seed=args.seed, corrupt=False)
    with open(marker, "w") as f:
        json.dump(settings, f)
    print(f"generated {args.images} faces in {root} in {time.perf_counter() - start:.1f}s")
    return root, args.data_dir is None


def load_inputs(root, count):
    """(JPEG bytes, landmark values) of the first `count` candidates, in memory."""
    source = sources.FilesSource.open(root)
    tables = source.load_tables()
    ids = sorted(tables.landmarks.rows)[:count]
    return [(source.read_image(i), tables.landmarks.rows[i]) for i in ids]


def timed(function, items, rounds):
    """Median over rounds of (wall seconds, CPU seconds) for function(*item) over all items."""
    walls, cpus = [], []
    for _ in range(rounds):
        cpu, wall = time.process_time(), time.perf_counter()
        for item in items:
            function(*item)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def psnr(a: bytes, b: bytes) -> float:
    x = np.asarray(Image.open(io.BytesIO(a)), np.float64)
    y = np.asarray(Image.open(io.BytesIO(b)), np.float64)
    mse = np.mean((x - y) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def pad_and_resize(image, box):
    image, box, _ = face_centering.pad_to_cover(image, box)
    return image.resize((face_centering.OUTPUT_SIZE,) * 2, resample=Image.LANCZOS, box=box)


def measure_function(inputs, crop, rounds):
    """(a): the per-image function, its stages, and the draft what-if."""
    count = len(inputs)
    results = {"images": count, "mean_jpeg_bytes": float(np.mean([len(data) for data, _ in inputs]))}
    for name, kwargs in (("center_face", {"crop": crop}), ("center_face_center_crop", {"crop": "center"})):
        wall, cpu = timed(lambda data, values: face_centering.center_face(data, values, **kwargs), inputs, rounds)
        results[name] = {"images_per_second": count / wall, "images_per_cpu_second": count / cpu}

    # Stages, each on its own, with what the previous stage produced.
    points = [face_centering.check_landmarks(values) for _, values in inputs]
    boxes = [face_centering.crop_box(crop, p) for p in points]
    decoded = [face_centering.decode(data)[0] for data, _ in inputs]
    padded = [face_centering.pad_to_cover(image, box) for image, box in zip(decoded, boxes)]
    resized = [image.resize((64, 64), resample=Image.LANCZOS, box=box) for image, box, _ in padded]
    faces = [face_centering.center_face(data, values, crop) for data, values in inputs]
    candidates = [sources.Candidate("000001.jpg", "train", values, np.zeros(40, np.int8)) for _, values in inputs]
    stages = {
        "decode": (lambda data, _: face_centering.decode(data), inputs),
        "pad_and_resize": (pad_and_resize, list(zip(decoded, boxes))),
        "png_encode": (lambda image: face_centering.encode_png(image), [(image,) for image in resized]),
        "tf_example": (centering_stage.to_tf_example, list(zip(faces, candidates))),
    }
    results["stage_ms"] = {name: 1e3 * timed(fn, items, rounds)[1] / count for name, (fn, items) in stages.items()}
    results["padded_fraction"] = sum(flag for _, _, flag in padded) / count

    # What-if: draft-decode at 1/2 whenever the crop keeps >= 1 source px per output px (the real rule asks 2).
    qualifying = sum(face_centering.draft_reduction(box) > 1 for box in boxes)
    original = face_centering.draft_reduction
    face_centering.draft_reduction = lambda box, size=64: 2 if box[2] - box[0] >= 2 * size * 0.95 else 1
    try:
        wall, cpu = timed(
            lambda data, values: face_centering.center_face(data, values, crop, draft=True), inputs, rounds)
        drafted = [face_centering.center_face(data, values, crop, draft=True) for data, values in inputs]
        forced = sum(face_centering.draft_reduction(box) > 1 for box in boxes)
    finally:
        face_centering.draft_reduction = original
    quality = [psnr(full.png, draft.png) for full, draft in zip(faces, drafted)]
    finite = [q for q in quality if np.isfinite(q)]
    results["draft"] = {
        "qualifying_under_the_rule": qualifying / count,
        "what_if_half_scale_from_122px": {
            "applied_fraction": forced / count,
            "images_per_second": count / wall,
            "images_per_cpu_second": count / cpu,
            "psnr_vs_full_decode_db_median": statistics.median(finite) if finite else float("inf"),
            "psnr_vs_full_decode_db_min": min(finite) if finite else float("inf"),
        },
    }
    return results


def run_executor(root, workers, max_examples, output_root):
    """One Executor.Do with the DirectRunner in multi_processing mode; returns wall, CPU and images done."""
    examples = standard_artifacts.Examples()
    examples.uri = os.path.join(output_root, "examples")
    rejects = ExampleRejects()
    rejects.uri = os.path.join(output_root, "rejects")
    for uri in (examples.uri, rejects.uri):
        shutil.rmtree(uri, ignore_errors=True)
        os.makedirs(uri)
    beam_args = [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
    executor = executor_lib.Executor(base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=beam_args))
    (own_cpu, child_cpu), wall = cpu_seconds(), time.perf_counter()
    executor.Do({}, {executor_lib.EXAMPLES_KEY: [examples], executor_lib.REJECTS_KEY: [rejects]},
                {executor_lib.DATA_DIR_KEY: root, executor_lib.MAX_EXAMPLES_PER_SPLIT_KEY: max_examples})
    wall = time.perf_counter() - wall
    own_after, child_after = cpu_seconds()
    images = sum(json.loads(examples.get_string_custom_property(executor_lib.EXAMPLE_COUNTS_PROPERTY)).values())
    rejected = rejects.get_int_custom_property(executor_lib.NUM_REJECTS_PROPERTY)
    if rejected:
        raise RuntimeError(f"the generated folder should have no rejects, got {rejected}")
    return {"images": images, "wall_seconds": wall, "cpu_seconds_driver": own_after - own_cpu,
            "cpu_seconds_workers": child_after - child_cpu, "loadavg_1min": os.getloadavg()[0]}


def small_run_cap(args):
    """max_examples_per_split for the small run: about --small images over the three splits."""
    return max(1, args.small // len(sources.SPLITS))


def measure_beam(root, args, output_root):
    """(b): per worker count, a small and a large run; steady rate from their difference."""
    results = {}
    cap = small_run_cap(args)
    for workers in args.workers:
        runs = {"small": [], "large": []}
        for _ in range(args.rounds):
            for size, max_examples in (("small", cap), ("large", 0)):
                run = run_executor(root, workers, max_examples, output_root)
                runs[size].append(run)
                print(f"  beam {workers} worker(s) {size:5s}: {run['images']:5d} images in {run['wall_seconds']:6.1f}s "
                      f"wall, CPU {run['cpu_seconds_workers']:6.1f}s workers + {run['cpu_seconds_driver']:5.1f}s "
                      f"driver, loadavg {run['loadavg_1min']:.2f}", flush=True)
        small = {key: statistics.median(r[key] for r in runs["small"]) for key in runs["small"][0]}
        large = {key: statistics.median(r[key] for r in runs["large"]) for key in runs["large"][0]}
        extra = large["images"] - small["images"]
        steady_wall = large["wall_seconds"] - small["wall_seconds"]
        steady_cpu = large["cpu_seconds_workers"] - small["cpu_seconds_workers"]
        steady = extra / steady_wall if steady_wall > 0 else float("nan")
        startup = small["wall_seconds"] - small["images"] / steady if steady > 0 else float("nan")
        results[workers] = {
            "runs": runs,
            "steady_window_seconds": steady_wall,
            "end_to_end_images_per_second": large["images"] / large["wall_seconds"],
            "steady_images_per_second": steady,
            "steady_images_per_second_per_core": steady / min(workers, os.cpu_count() or workers),
            "steady_images_per_worker_cpu_second": extra / steady_cpu if steady_cpu > 0 else float("nan"),
            "startup_seconds": startup,
        }
    return results


def measure_planning(root):
    """(c): parse 202,599-row text files in CelebA's format (generated from the folder's rows, repeated)."""
    full = tempfile.mkdtemp(prefix="celeba-plan-")
    try:
        os.makedirs(os.path.join(full, sources.IMAGES_DIR))
        with open(os.path.join(root, sources.LANDMARKS_FILE)) as f:
            landmark_rows = [line.split()[1:] for line in f.read().splitlines()[2:]]
        ids = [f"{i + 1:06d}.jpg" for i in range(CELEBA_IMAGES)]
        rng = np.random.default_rng(0)
        lines = [f"{image_id} " + " ".join(landmark_rows[i % len(landmark_rows)]) for i, image_id in enumerate(ids)]
        with open(os.path.join(full, sources.LANDMARKS_FILE), "w") as f:
            f.write("\n".join([str(CELEBA_IMAGES), " ".join(sources.LANDMARK_COLUMNS), *lines]) + "\n")
        codes = np.where(np.arange(CELEBA_IMAGES) < 162_770, 0, np.where(np.arange(CELEBA_IMAGES) < 182_637, 1, 2))
        with open(os.path.join(full, sources.PARTITION_FILE), "w") as f:
            f.write("".join(f"{image_id} {code}\n" for image_id, code in zip(ids, codes)))
        signs = rng.choice(["-1", " 1"], size=(CELEBA_IMAGES, 40))
        with open(os.path.join(full, sources.ATTRIBUTES_FILE), "w") as f:
            f.write(f"{CELEBA_IMAGES}\n{' '.join(contract.CELEBA_ATTRIBUTES)}\n")
            f.write("".join(f"{image_id} {' '.join(row)}\n" for image_id, row in zip(ids, signs)))
        source = sources.FilesSource.open(full)
        cpu, wall = time.process_time(), time.perf_counter()
        candidates, rejects = sources.plan_candidates(source.load_tables())
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        total = sum(len(c) for c in candidates.values())
        if total != CELEBA_IMAGES or rejects:
            raise RuntimeError(f"planning the generated text files found {total} candidates and {len(rejects)} rejects")
        return {"rows": CELEBA_IMAGES, "wall_seconds": wall, "cpu_seconds": cpu,
                "split_sizes": {split: len(c) for split, c in candidates.items()}}
    finally:
        shutil.rmtree(full, ignore_errors=True)


def main(argv=None):
    args = parse_args(argv)
    load_before = os.getloadavg()
    print(f"face-centering benchmark: crop {args.crop}, {args.images} images, workers {args.workers}, "
          f"{args.rounds} round(s), {os.cpu_count()} CPUs, loadavg {load_before[0]:.2f}", flush=True)
    root, remove_root = prepare_folder(args)
    output_root = tempfile.mkdtemp(prefix="celeba-bench-out-")
    try:
        inputs = load_inputs(root, min(args.function_images, args.images))
        function = measure_function(inputs, args.crop, args.rounds)
        print(f"(a) function: {function['center_face']['images_per_second']:.0f} images/s "
              f"({function['center_face']['images_per_cpu_second']:.0f} per CPU-second) on "
              f"{function['images']} images, mean JPEG {function['mean_jpeg_bytes'] / 1024:.1f} KiB", flush=True)
        beam = measure_beam(root, args, output_root)
        planning = measure_planning(root)
    finally:
        shutil.rmtree(output_root, ignore_errors=True)
        if remove_root:
            shutil.rmtree(root, ignore_errors=True)
    load_after = os.getloadavg()

    most = max(beam)
    # Planning runs twice on the way: on the driver before the pipeline, then in every worker (in parallel).
    full_seconds = (2 * planning["wall_seconds"] + beam[most]["startup_seconds"]
                    + CELEBA_IMAGES / beam[most]["steady_images_per_second"])
    per_core = {workers: result["steady_images_per_second_per_core"] for workers, result in beam.items()}
    scaling = (beam[max(beam)]["steady_images_per_second"] / beam[min(beam)]["steady_images_per_second"]
               if len(beam) > 1 else None)
    results = {
        "benchmark": "face_centering",
        "settings": vars(args),
        "environment": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                        "loadavg_before": load_before, "loadavg_after": load_after},
        "function": function,
        "beam": {str(workers): result for workers, result in beam.items()},
        "planning_full_celeba": planning,
        "summary": {
            "target_images_per_second_per_core": TARGET_PER_CORE,
            "function_images_per_second": function["center_face"]["images_per_second"],
            "beam_steady_images_per_second_per_core": {str(w): v for w, v in per_core.items()},
            "scaling": scaling,
            "beam_steady_images_per_worker_cpu_second": {
                str(w): r["steady_images_per_worker_cpu_second"] for w, r in beam.items()},
            "target_met": all(v >= TARGET_PER_CORE for v in per_core.values()),
            "full_celeba_seconds_estimate": full_seconds,
            "full_celeba_workers": most,
        },
    }

    print()
    print(f"(a) function      : {function['center_face']['images_per_second']:6.0f} images/s in one process "
          f"({function['center_face']['images_per_cpu_second']:.0f} per CPU-second); center crop "
          f"{function['center_face_center_crop']['images_per_second']:.0f}/s")
    print("    stages (CPU ms): " + ", ".join(f"{k} {v:.3f}" for k, v in function["stage_ms"].items()))
    what_if = function["draft"]["what_if_half_scale_from_122px"]
    print(f"    JPEG draft     : the rule (>= 2 source px per output px) applies to "
          f"{function['draft']['qualifying_under_the_rule']:.0%} of these crops; decoding the "
          f"{what_if['applied_fraction']:.0%} that allow 1/2 scale at 1 px per output px gives "
          f"{what_if['images_per_second']:.0f} images/s, PSNR vs full decode median "
          f"{what_if['psnr_vs_full_decode_db_median']:.1f} dB, min {what_if['psnr_vs_full_decode_db_min']:.1f} dB")
    for workers, result in beam.items():
        print(f"(b) beam {workers} worker(s): steady {result['steady_images_per_second']:6.0f} images/s = "
              f"{result['steady_images_per_second_per_core']:.0f} per core "
              f"({result['steady_images_per_worker_cpu_second']:.0f} per worker CPU-second); end to end "
              f"{result['end_to_end_images_per_second']:.0f}/s; start-up {result['startup_seconds']:.1f}s")
    if scaling is not None:
        print(f"    scaling {min(beam)} -> {max(beam)} workers: {scaling:.2f}x "
              f"(linear would be {max(beam) / min(beam):.2f}x)")
    short = [workers for workers, result in beam.items() if result["steady_window_seconds"] < MIN_STEADY_WINDOW]
    if short:
        print(f"    the steady window at {short} worker(s) is under {MIN_STEADY_WINDOW:.0f}s, too short to trust "
              f"rates and scaling against start-up noise: use more --images")
    print(f"(c) planning      : {planning['rows']} rows of text parsed and joined in {planning['wall_seconds']:.1f}s "
          f"(on the driver, then once per worker process)")
    met = "met" if results["summary"]["target_met"] else "NOT met"
    print(f"target {TARGET_PER_CORE:.0f} images/s per core (steady, wall clock): {met}; full CelebA ({CELEBA_IMAGES} "
          f"images) with {most} worker(s): about {full_seconds / 60:.1f} min (planning twice, start-up, steady rate)")
    print(f"loadavg {load_before[0]:.2f} before, {load_after[0]:.2f} after, on {os.cpu_count()} CPUs"
          + (" (the machine was busy before the run: read the per-CPU-second rates)" if load_before[0] > 0.5 else ""))
    tt.write_results(results, "face_centering", args.output)
    return results


if __name__ == "__main__":
    main()
