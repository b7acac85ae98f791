"""`genpipe predict`: ask a model served by TF Serving (gRPC or REST) for images and write them as PNGs.

Which request is sent follows the signature the user names, as the server describes it (model metadata):

- `--num N [--seed S]`, signature taking the int32 scalars `num` and `seed` (`sample` of the vae and gan,
  and the gan's `serving_default`): the server draws N images with seed S (default 0).
- `--num N [--seed S]`, signature taking float latent points (`generate` of the vae and gan, `decode` of the
  autoencoder and vae): N points drawn here from a standard normal shaped like the input ([N, d], or
  [N, 7, 7, 256] for the conv autoencoder's `decode`) with
  `np.random.Generator(np.random.PCG64(S)).standard_normal((N, *point_shape))` cast to the input's dtype,
  so the same seed gives the same points and images (not the points `sample` draws with the same seed).
- `--latent FILE.npy`, a latent signature: the float points in the file, [N, ...] as the input takes them
  (or one point without the batch axis, as `encode` writes them).
- INPUT files, signature with a string input (`serving_default` of the autoencoder, vae and style models,
  `stylize_bytes`): the files' encoded bytes as they are (JPEG/PNG).
- INPUT files, signature with a float `images` input [N, H, W, C] (`stylize`, `reconstruct`, `encode`,
  `elbo`): the files decoded to float [0, 1] with C channels; H and W must match when the signature fixes them.
- `--input-name` picks the input when a signature has several.

Files and latent points are sent in batches of --batch-size along the first axis (all points are drawn
before the first request, so the batch size does not change them); files of different sizes go in
different requests. Every float output of rank 4 (images in [0, 1]) is written as `<stem>-<output>.png`,
other outputs (latent, mu, elbo...) as `<stem>-<output>.npy`; a sample's stem is `sample-s<seed>-<index>`,
a latent draw's `latent-s<seed>-<index>` and a latent file's `<file stem>-<index>`.
When the signature also returns `png_bytes` (the `serving_default` of every image family, `stylize_bytes`),
the server's PNGs are written as they are, under the name of the float image output they encode
(`<stem>-images.png`, `<stem>-reconstruction.png`), and that float output is not asked for (gRPC sends an
output_filter; over REST the client drops it). Errors are ValueError, FileNotFoundError or serving.client.ServingError,
which `genpipe` prints as `genpipe: error: ...` with exit code 2.
"""
import contextlib
import os
import sys
from collections import OrderedDict

import numpy as np

from components import files
from serving import client as client_lib
from serving import signatures as sig

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FLOAT_DTYPES = ("float16", "float32", "float64")


def _sampling(args) -> bool:
    return args.num is not None or args.seed is not None


def _check_args(args):
    sampling = _sampling(args)
    if args.latent is not None and (sampling or args.inputs):
        raise ValueError("give one of INPUT files, --num/--seed (a draw) or --latent FILE.npy (latent points), "
                         "not several")
    if sampling and args.inputs:
        raise ValueError("give either INPUT files or --num/--seed (a sample request), not both")
    if not sampling and not args.inputs and args.latent is None:
        raise ValueError("nothing to predict: give INPUT image files, --num N [--seed S] for a sample or latent "
                         "signature, or --latent FILE.npy for a latent signature")
    if args.num is not None and args.num < 1:
        raise ValueError(f"--num must be >= 1, got {args.num}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.timeout <= 0:
        raise ValueError(f"--timeout must be > 0 seconds, got {args.timeout}")
    if args.retries < 0:
        raise ValueError(f"--retries must be >= 0, got {args.retries}")
    for path in args.inputs:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"input image {path} does not exist")
    if args.latent is not None and not os.path.isfile(args.latent):
        raise FileNotFoundError(f"latent file {args.latent} does not exist")
    _check_out_dir(args.out_dir)


def _check_out_dir(path: str):
    """--out-dir must be a writable directory, or one that can be made (its nearest existing parent is)."""
    existing = files.nearest_existing(path)
    what = f"--out-dir {path}" if existing == os.path.abspath(path) else f"--out-dir {path} cannot be made: {existing}"
    if not os.path.isdir(existing):
        raise ValueError(f"{what} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{what} is not writable")


def _describe(args) -> str:
    return client_lib.describe_request(args.server, args.model, args.version, args.signature)


def _takes_num_and_seed(info: client_lib.SignatureInfo) -> bool:
    return {sig.NUM_INPUT, sig.SEED_INPUT} <= set(info.inputs)


def sample_request(info: client_lib.SignatureInfo, num: int, seed: int, input_name=None) -> dict:
    """The num/seed request; --input-name, if given, must name one of those two inputs."""
    if not _takes_num_and_seed(info):
        raise ValueError(f"signature {info.name!r} takes {sorted(info.inputs)}, not {sig.NUM_INPUT} and "
                         f"{sig.SEED_INPUT}: --num/--seed only apply to sample signatures (e.g. {sig.SAMPLE!r})")
    if input_name and _named_input(info, input_name) not in (sig.NUM_INPUT, sig.SEED_INPUT):
        raise ValueError(f"--input-name {input_name!r}: --num/--seed feed the inputs {sig.NUM_INPUT} and "
                         f"{sig.SEED_INPUT} of signature {info.name!r}, not {input_name!r}")
    return {sig.NUM_INPUT: np.int32(num), sig.SEED_INPUT: np.int32(seed)}


def _named_input(info: client_lib.SignatureInfo, input_name: str) -> str:
    if input_name not in info.inputs:
        raise ValueError(f"--input-name {input_name!r} is not an input of signature {info.name!r}; "
                         f"it takes {sorted(info.inputs)}")
    return input_name


def latent_input(info: client_lib.SignatureInfo, flag: str, input_name=None) -> str:
    """The input latent points feed: --input-name, the `latent` input, or the signature's only input.

    It must be a float tensor other than images; `flag` (--num/--seed or --latent) names what the user
    gave, for the error when the signature takes something else.
    """
    if input_name:
        name = _named_input(info, input_name)
    elif sig.LATENT_INPUT in info.inputs:
        name = sig.LATENT_INPUT
    elif _takes_num_and_seed(info):
        raise ValueError(f"signature {info.name!r} takes {sig.NUM_INPUT} and {sig.SEED_INPUT}, not latent points: "
                         f"{flag} only applies to latent signatures (e.g. {sig.GENERATE!r}, {sig.DECODE!r}); "
                         "pass --num N [--seed S] alone")
    elif len(info.inputs) != 1:
        raise ValueError(f"signature {info.name!r} takes several inputs {sorted(info.inputs)}: choose the one the "
                         "latent points feed with --input-name")
    else:
        name = next(iter(info.inputs))
    tensor = info.inputs[name]
    if tensor.dtype == "string" or name == sig.IMAGES_INPUT:
        raise ValueError(f"signature {info.name!r} takes images (input {name!r}), not latent points: {flag} only "
                         f"applies to sample and latent signatures (e.g. {sig.SAMPLE!r}, {sig.GENERATE!r}, "
                         f"{sig.DECODE!r}); give INPUT image files instead")
    if tensor.dtype not in FLOAT_DTYPES:
        raise ValueError(f"input {name!r} of signature {info.name!r} is {tensor.dtype}, not float latent points: "
                         f"{flag} cannot feed it")
    return name


def _point_shape(name: str, tensor: client_lib.TensorInfo):
    """The shape of one latent point (the input's shape without the batch axis), or None when unknown."""
    if tensor.shape is None:
        return None
    if len(tensor.shape) < 1:
        raise ValueError(f"input {name!r} is a {tensor.dtype} scalar, not a batch of latent points [N, ...]")
    return tuple(tensor.shape[1:])


def latent_draw(name: str, tensor: client_lib.TensorInfo, num: int, seed: int) -> np.ndarray:
    """`num` points of N(0, I), np.random.Generator(PCG64(seed)).standard_normal((num, *point)) in the input's dtype."""
    point = _point_shape(name, tensor)
    if point is None or any(d is None for d in point):
        raise ValueError(f"input {name!r} has shape {_shape(tensor.shape)}, so the shape of a latent point is not "
                         "known: give the points with --latent FILE.npy")
    if seed < 0:
        raise ValueError(f"--seed must be >= 0 for a latent draw, got {seed}")
    return np.random.Generator(np.random.PCG64(seed)).standard_normal((num, *point)).astype(tensor.dtype)


def load_latent(path: str, name: str, tensor: client_lib.TensorInfo) -> np.ndarray:
    """The float points [N, ...] of a .npy file for the input; one point without the batch axis is a batch of 1."""
    point = _point_shape(name, tensor)
    wanted = f"float points {_shape(tensor.shape)}"
    if point is not None:
        wanted += f" (or one point {_shape(point, batch=False)})"
    try:
        value = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(f"latent file {path} is not a readable .npy array ({error}); input {name!r} takes "
                         f"{wanted}") from None
    if not isinstance(value, np.ndarray):  # a .npz archive
        value.close()
        raise ValueError(f"latent file {path} is a .npz archive, not one .npy array; input {name!r} takes {wanted}")
    found = f"{value.dtype} {list(value.shape)}"
    if value.dtype.kind != "f":
        raise ValueError(f"latent file {path} holds {found}, but input {name!r} takes {wanted}")
    if point is not None and value.ndim == len(point) and _fits(value.shape, point):
        value = value[np.newaxis]
    elif value.ndim == 0 or (point is not None and (value.ndim != len(point) + 1 or not _fits(value.shape[1:], point))):
        raise ValueError(f"latent file {path} holds {found}, but input {name!r} takes {wanted}")
    if value.shape[0] == 0:
        raise ValueError(f"latent file {path} holds {found}: no latent points")
    return value.astype(tensor.dtype)


def _fits(shape, wanted) -> bool:
    return all(want is None or want == got for want, got in zip(wanted, shape))


def latent_request(args, info: client_lib.SignatureInfo):
    """(input name, points [N, ...], stems) of a latent request: drawn with --num/--seed, or read from --latent."""
    if args.latent is not None:
        name = latent_input(info, "--latent", args.input_name)
        points = load_latent(args.latent, name, info.inputs[name])
        stem = os.path.splitext(os.path.basename(args.latent))[0]
    else:
        name = latent_input(info, "--num/--seed", args.input_name)
        seed = args.seed or 0
        points = latent_draw(name, info.inputs[name], args.num or 1, seed)
        stem = f"latent-s{seed}"
    return name, points, [f"{stem}-{i:04d}" for i in range(len(points))]


def choose_input(info: client_lib.SignatureInfo, input_name=None) -> str:
    """The input the image files feed: --input-name, or the signature's only input."""
    if input_name:
        return _named_input(info, input_name)
    if _takes_num_and_seed(info):
        raise ValueError(f"signature {info.name!r} takes {sig.NUM_INPUT} and {sig.SEED_INPUT}, not images: "
                         "pass --num N [--seed S] instead of INPUT files")
    if sig.LATENT_INPUT in info.inputs:
        raise ValueError(f"signature {info.name!r} takes latent points (input {sig.LATENT_INPUT!r}), not images: "
                         "pass --num N [--seed S] to draw them or --latent FILE.npy instead of INPUT files")
    if len(info.inputs) != 1:
        raise ValueError(f"signature {info.name!r} takes several inputs {sorted(info.inputs)}: choose the one the "
                         "image files feed with --input-name")
    return next(iter(info.inputs))


def image_batches(paths, name: str, tensor: client_lib.TensorInfo):
    """(paths, array) per group of same-sized images, in input order: bytes for string inputs, floats otherwise."""
    if tensor.dtype == "string":
        groups = OrderedDict()
        for path, data in zip(paths, client_lib.image_file_bytes(paths)):
            size = client_lib.decode_image_bytes(data, 0, path).shape[:2]
            groups.setdefault(size, []).append((path, data))
        for members in groups.values():
            array = np.empty(len(members), dtype=object)
            array[:] = [data for _, data in members]
            yield [path for path, _ in members], array
        return
    shape = tensor.shape
    if not _is_image(tensor):
        raise ValueError(f"input {name!r} is {tensor.dtype} of shape {_shape(shape)}, not images [N, H, W, C] "
                         "or encoded image bytes: image files cannot feed it")
    channels = shape[3] if shape is not None and shape[3] is not None else 3
    groups = OrderedDict()
    for path in paths:
        with open(path, "rb") as f:
            image = client_lib.decode_image_bytes(f.read(), channels, path)
        if shape is not None and any(want is not None and want != got for want, got in zip(shape[1:3], image.shape)):
            raise ValueError(f"{path} is {image.shape[0]}x{image.shape[1]} but input {name!r} takes "
                             f"{shape[1]}x{shape[2]} images (resize it first)")
        groups.setdefault(image.shape, []).append((path, image))
    for members in groups.values():
        yield [path for path, _ in members], np.stack([image for _, image in members]).astype(tensor.dtype)


def _is_image(tensor: client_lib.TensorInfo) -> bool:
    shape = tensor.shape
    return tensor.dtype in FLOAT_DTYPES and (shape is None or len(shape) == 4)


def png_plan(info: client_lib.SignatureInfo):
    """(output_filter, png_name): what to ask the signature for and the file name its `png_bytes` take.

    With `png_bytes` and one float image output, the PNGs replace that output: the filter names every
    other output, and the PNG files are named after the image output. Otherwise (None, None): all outputs.
    """
    images = [name for name, tensor in info.outputs.items() if _is_image(tensor)]
    if sig.PNG_BYTES_OUTPUT not in info.outputs or len(images) != 1:
        return None, None
    return sorted(name for name in info.outputs if name != images[0]), images[0]


def _shape(shape, batch: bool = True) -> str:
    """[N, 28, 28, 1]: N for the batch axis (the first, unless batch=False), ? for another unknown size."""
    if shape is None:
        return "unknown"
    sizes = [("N" if index == 0 and batch else "?") if d is None else str(d) for index, d in enumerate(shape)]
    return "[" + ", ".join(sizes) + "]"


def _unique_stem(stem: str, used: set) -> str:
    candidate, index = stem, 1
    while candidate in used:
        index += 1
        candidate = f"{stem}-{index}"
    used.add(candidate)
    return candidate


def write_outputs(outputs: dict, stems, out_dir: str, png_name=None) -> list:
    """Writes output item i of every output under stems[i]; returns the paths written.

    `png_name`: the file name of the `png_bytes` output (`<stem>-<png_name>.png`), default its own.
    """
    written = []
    for output, value in outputs.items():
        name = png_name if output == sig.PNG_BYTES_OUTPUT and png_name else output
        value = np.asarray(value)
        if value.ndim == 0 or value.shape[0] != len(stems):
            path = os.path.join(out_dir, f"{name}.npy")
            np.save(path, value)
            written.append(path)
            continue
        for stem, item in zip(stems, value):
            if value.dtype == object or value.dtype.kind == "S":
                data = bytes(item)
                path = os.path.join(out_dir, f"{stem}-{name}" + (".png" if data.startswith(PNG_MAGIC) else ".bin"))
                with open(path, "wb") as f:
                    f.write(data)
            elif value.dtype.kind == "f" and value.ndim == 4 and value.shape[-1] in (1, 3, 4):
                path = os.path.join(out_dir, f"{stem}-{name}.png")
                with open(path, "wb") as f:
                    f.write(client_lib.encode_png(item))
            else:
                path = os.path.join(out_dir, f"{stem}-{name}.npy")
                np.save(path, item)
            written.append(path)
    return written


@contextlib.contextmanager
def _naming_the_signature(args):
    """Local errors about the request name the model, version and signature, as the server's do."""
    try:
        yield
    except ValueError as error:
        raise ValueError(f"{_describe(args)}: {error}") from None


def run(args, out=None) -> int:
    """Runs `genpipe predict` with parsed args: one request (or several batches), outputs into --out-dir."""
    out = out or sys.stdout
    _check_args(args)
    client = client_lib.make_client(args.server, rest=args.rest, timeout=args.timeout, retries=args.retries)
    try:
        info = client.signature_info(args.model, args.signature, args.version)
        output_filter, png_name = png_plan(info)
        latent = args.latent is not None or (_sampling(args) and not _takes_num_and_seed(info))
        with _naming_the_signature(args):  # every request is checked before --out-dir is made
            if latent:
                name, points, stems = latent_request(args, info)
            elif args.inputs:
                name = choose_input(info, args.input_name)
                batches = list(image_batches(args.inputs, name, info.inputs[name]))
            else:
                seed = args.seed or 0
                request = sample_request(info, args.num or 1, seed, args.input_name)
        os.makedirs(args.out_dir, exist_ok=True)
        written = []
        if latent:
            outputs = client.predict_batched(args.model, args.signature, {name: points}, batch_size=args.batch_size,
                                             version=args.version, output_filter=output_filter)
            written += write_outputs(outputs, stems, args.out_dir, png_name)
        elif not args.inputs:
            outputs = client.predict(args.model, args.signature, request, version=args.version,
                                     output_filter=output_filter)
            count = len(next(iter(outputs.values()), []))
            written += write_outputs(outputs, [f"sample-s{seed}-{i:04d}" for i in range(count)], args.out_dir,
                                     png_name)
        else:
            used = set()
            for paths, batch in batches:
                outputs = client.predict_batched(args.model, args.signature, {name: batch},
                                                 batch_size=args.batch_size, version=args.version,
                                                 output_filter=output_filter)
                stems = [_unique_stem(os.path.splitext(os.path.basename(p))[0], used) for p in paths]
                written += write_outputs(outputs, stems, args.out_dir, png_name)
    finally:
        client.close()
    for path in written:
        print(f"  {path}", file=out)
    print(f"wrote {len(written)} files to {os.path.abspath(args.out_dir)} from {_describe(args)}", file=out)
    return 0
