"""`genpipe stylize`: one content image redrawn in the style of another, outside any pipeline.

Two methods: `gatys` optimises the pixels against VGG19 losses (slow, any style, needs VGG19
weights), `hub` runs Magenta's arbitrary-stylization module from TF Hub (one forward pass, needs
the module). The command reads and writes local files only; errors come back as ValueError or
FileNotFoundError so `genpipe` reports them as `genpipe: error: ...` with exit code 2.
"""
import os
import sys
import time

from components import files

METHODS = ("gatys", "hub")
GATYS_ONLY = ("steps", "learning_rate", "content_weight", "style_weight", "tv_weight", "vgg_weights",
              "frames_dir", "frame_every", "log_every")
HUB_ONLY = ("hub_handle",)
DEFAULT_VGG_WEIGHTS = "imagenet"
DEFAULT_FRAMES = 10  # with --frames-dir and no --frame-every: about this many frames


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_writable(flag: str, path: str, directory: bool) -> None:
    """Fails before VGG19 loads when `path` cannot be written later: a file where a folder must go (or the
    reverse), a missing folder that cannot be created, or no write permission."""
    target = os.path.abspath(path)
    wanted = "a directory" if directory else "a .png file path"
    if os.path.isdir(target) and not directory:
        raise ValueError(f"{flag} {path} is a directory; expected {wanted}")
    if os.path.exists(target) and not os.path.isdir(target) and directory:
        raise ValueError(f"{flag} {path} is a file; expected {wanted}")
    existing = files.nearest_existing(target if directory else os.path.dirname(target))
    if not os.path.isdir(existing):
        raise ValueError(f"{flag} {path} cannot be created: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path} cannot be written: no write permission in {existing}")
    if not directory and os.path.exists(target) and not os.access(target, os.W_OK):
        raise ValueError(f"{flag} {path} cannot be written: the existing file is read-only")


def _save(path: str, image) -> str:
    """gatys.save_image, with a failure (the folder changed during the run) reported as ValueError naming path."""
    import tensorflow as tf

    from trainer_modules import gatys

    try:
        return gatys.save_image(path, image)
    except (OSError, tf.errors.OpError) as error:
        message = error.message if isinstance(error, tf.errors.OpError) else str(error)
        raise ValueError(f"cannot write the stylized image to --out {path}: {message}") from error


def _check_args(args):
    """Flags that do not belong to the chosen method are errors, not silently ignored."""
    if args.method not in METHODS:
        raise ValueError(f"--method must be one of {METHODS}, got {args.method!r}")
    other = HUB_ONLY if args.method == "gatys" else GATYS_ONLY
    given = [_flag(name) for name in other if getattr(args, name, None) is not None]
    if given:
        raise ValueError(f"{', '.join(given)} cannot be used with --method {args.method}")
    if not args.out.lower().endswith(".png"):
        raise ValueError(f"--out {args.out} must end in .png (the result is written losslessly as PNG)")
    _check_writable("--out", args.out, directory=False)
    for name in ("content", "style"):
        path = getattr(args, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--{name} image {path} does not exist")
    if args.max_dim is not None and args.max_dim < 16:
        raise ValueError(f"--max-dim must be >= 16 (VGG19 and the hub module pool the image), got {args.max_dim}")
    if args.method == "gatys":
        for name in ("steps", "frame_every", "log_every"):
            value = getattr(args, name)
            if value is not None and value < 1:
                raise ValueError(f"{_flag(name)} must be >= 1, got {value}")
        if args.learning_rate is not None and args.learning_rate <= 0:
            raise ValueError(f"--learning-rate must be > 0, got {args.learning_rate}")
        for name in ("content_weight", "style_weight", "tv_weight"):
            value = getattr(args, name)
            if value is not None and value < 0:
                raise ValueError(f"{_flag(name)} must be >= 0, got {value}")
        if args.frame_every is not None and args.frames_dir is None:
            raise ValueError("--frame-every needs --frames-dir DIR (where the frames go)")
        if args.frames_dir is not None:
            _check_writable("--frames-dir", args.frames_dir, directory=True)


def _format_losses(losses: dict) -> str:
    return "  ".join(f"{name} {losses[name]:.4g}" for name in ("total", "content", "style", "tv"))


def run_gatys(args, out, err) -> str:
    from trainer_modules import gatys
    from trainer_modules import style_losses

    steps = args.steps or gatys.DEFAULT_STEPS
    log_every = args.log_every or max(1, steps // 20)
    frame_every = args.frame_every or max(1, steps // DEFAULT_FRAMES)
    weights_choice = DEFAULT_VGG_WEIGHTS if args.vgg_weights is None else args.vgg_weights
    defaults = style_losses.StyleWeights()
    weights = style_losses.StyleWeights(
        content_weight=defaults.content_weight if args.content_weight is None else args.content_weight,
        style_weight=defaults.style_weight if args.style_weight is None else args.style_weight,
        tv_weight=defaults.tv_weight if args.tv_weight is None else args.tv_weight,
    )
    content = gatys.load_image(args.content, args.max_dim)
    style = gatys.load_image(args.style, args.max_dim)
    if weights_choice == style_losses.VGG_RANDOM:
        print("genpipe: WARNING: --vgg-weights random builds VGG19 with UNTRAINED weights: the output is NOT a "
              "stylization (for tests and timing only)", file=err)
    print(f"loading VGG19 weights: {weights_choice}", file=out)
    extractor = style_losses.StyleContentExtractor(style_losses.load_vgg19(weights_choice))
    if args.frames_dir:
        os.makedirs(args.frames_dir, exist_ok=True)
        gatys.save_image(os.path.join(args.frames_dir, "frame-00000.png"), content)
    height, width = int(content.shape[1]), int(content.shape[2])
    print(f"gatys: {height}x{width} content, {steps} steps, weights content {weights.content_weight:g} "
          f"style {weights.style_weight:g} tv {weights.tv_weight:g}", file=out)

    def progress(info):
        if info.step == 1 or info.step % log_every == 0 or info.step == info.steps:
            print(f"  step {info.step:>{len(str(info.steps))}}/{info.steps}  {_format_losses(info.losses)}  "
                  f"{info.seconds:.2f} s/step", file=out, flush=True)
        if args.frames_dir and (info.step % frame_every == 0 or info.step == info.steps):
            gatys.save_image(os.path.join(args.frames_dir, f"frame-{info.step:05d}.png"), info.image)

    result = gatys.stylize(
        content, style, extractor, steps=steps, weights=weights,
        learning_rate=args.learning_rate or gatys.DEFAULT_LEARNING_RATE, max_dim=args.max_dim, callback=progress)
    path = _save(args.out, result.image)
    steady = result.seconds[1:] or result.seconds
    print(f"  {sum(result.seconds):.1f} s in all, {sorted(steady)[len(steady) // 2]:.2f} s/step after the first",
          file=out)
    if args.frames_dir:
        print(f"frames: {os.path.abspath(args.frames_dir)}", file=out)
    return path


def run_hub(args, out) -> str:
    from trainer_modules import gatys
    from trainer_modules import hub_stylize

    handle = args.hub_handle or hub_stylize.DEFAULT_HUB_HANDLE
    content = gatys.load_image(args.content, args.max_dim) / 255.0
    style = gatys.load_image(args.style, None) / 255.0
    print(f"loading TF Hub module: {handle}", file=out)
    module = hub_stylize.load_hub_module(handle)
    start = time.perf_counter()
    stylized = hub_stylize.stylize_hub(module, content, style)
    print(f"hub: {int(content.shape[1])}x{int(content.shape[2])} content in {time.perf_counter() - start:.2f} s",
          file=out)
    return _save(args.out, stylized * 255.0)


def run(args, out=None, err=None) -> int:
    """Runs `genpipe stylize` with parsed args; writes the PNG and prints where."""
    out = out or sys.stdout
    err = err or sys.stderr
    _check_args(args)
    path = run_gatys(args, out, err) if args.method == "gatys" else run_hub(args, out)
    print(f"stylized image: {path}", file=out)
    return 0
