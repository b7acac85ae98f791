"""`genpipe predict`: ask a model served by TF Serving (gRPC or REST) for images and write them as PNGs.

Which request is sent follows the signature the user names, as the server describes it (model metadata):

- `--num N [--seed S]`: signatures taking the int32 scalars `num` and `seed` (`sample` of the vae and gan,
  and the gan's `serving_default`): N images drawn with seed S (default 0).
- INPUT files, signature with a string input (`serving_default` of the autoencoder, vae and style models,
  `stylize_bytes`): the files' encoded bytes as they are (JPEG/PNG).
- INPUT files, signature with a float `images` input [N, H, W, C] (`stylize`, `reconstruct`, `encode`,
  `elbo`): the files decoded to float [0, 1] with C channels; H and W must match when the signature fixes them.
- `--input-name` picks the input when a signature has several.

Files are sent in batches of --batch-size along the first axis; files of different sizes go in different
requests. Every float output of rank 4 (images in [0, 1]) is written as `<stem>-<output>.png`, other
outputs (latent, mu, elbo...) as `<stem>-<output>.npy`; a sample's stem is `sample-s<seed>-<index>`.
When the signature also returns `png_bytes` (the `serving_default` of every image family, `stylize_bytes`),
the server's PNGs are written as they are, under the name of the float image output they encode
(`<stem>-images.png`, `<stem>-reconstruction.png`), and that float output is not asked for (gRPC sends an
output_filter; over REST the client drops it). Errors are ValueError, FileNotFoundError or serving.client.ServingError,
which `genpipe` prints as `genpipe: error: ...` with exit code 2.
"""
import os
import sys
from collections import OrderedDict

import numpy as np

from serving import client as client_lib
from serving import signatures as sig

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_args(args):
    sampling = args.num is not None or args.seed is not None
    if sampling and args.inputs:
        raise ValueError("give either INPUT files or --num/--seed (a sample request), not both")
    if not sampling and not args.inputs:
        raise ValueError("nothing to predict: give INPUT image files, or --num N [--seed S] for a sample signature")
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


def _describe(args) -> str:
    version = "latest version" if args.version is None else f"version {args.version}"
    return f"model {args.model!r} ({version}) signature {args.signature!r} at {args.server}"


def sample_request(info: client_lib.SignatureInfo, num: int, seed: int) -> dict:
    if not {sig.NUM_INPUT, sig.SEED_INPUT} <= set(info.inputs):
        raise ValueError(f"signature {info.name!r} takes {sorted(info.inputs)}, not {sig.NUM_INPUT} and "
                         f"{sig.SEED_INPUT}: --num/--seed only apply to sample signatures (e.g. {sig.SAMPLE!r})")
    return {sig.NUM_INPUT: np.int32(num), sig.SEED_INPUT: np.int32(seed)}


def choose_input(info: client_lib.SignatureInfo, input_name=None) -> str:
    """The input the image files feed: --input-name, or the signature's only input."""
    if input_name:
        if input_name not in info.inputs:
            raise ValueError(f"--input-name {input_name!r} is not an input of signature {info.name!r}; "
                             f"it takes {sorted(info.inputs)}")
        return input_name
    if {sig.NUM_INPUT, sig.SEED_INPUT} <= set(info.inputs):
        raise ValueError(f"signature {info.name!r} takes {sig.NUM_INPUT} and {sig.SEED_INPUT}, not images: "
                         "pass --num N [--seed S] instead of INPUT files")
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
    if tensor.dtype not in ("float32", "float16", "float64") or (shape is not None and len(shape) != 4):
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
    return tensor.dtype in ("float32", "float16", "float64") and (shape is None or len(shape) == 4)


def png_plan(info: client_lib.SignatureInfo):
    """(output_filter, png_name): what to ask the signature for and the file name its `png_bytes` take.

    With `png_bytes` and one float image output, the PNGs replace that output: the filter names every
    other output, and the PNG files are named after the image output. Otherwise (None, None): all outputs.
    """
    images = [name for name, tensor in info.outputs.items() if _is_image(tensor)]
    if sig.PNG_BYTES_OUTPUT not in info.outputs or len(images) != 1:
        return None, None
    return sorted(name for name in info.outputs if name != images[0]), images[0]


def _shape(shape) -> str:
    return "unknown" if shape is None else "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"


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


def run(args, out=None) -> int:
    """Runs `genpipe predict` with parsed args: one request (or several batches), outputs into --out-dir."""
    out = out or sys.stdout
    _check_args(args)
    client = client_lib.make_client(args.server, rest=args.rest, timeout=args.timeout, retries=args.retries)
    try:
        info = client.signature_info(args.model, args.signature, args.version)
        output_filter, png_name = png_plan(info)
        os.makedirs(args.out_dir, exist_ok=True)
        written = []
        if not args.inputs:
            seed = args.seed or 0
            outputs = client.predict(args.model, args.signature, sample_request(info, args.num or 1, seed),
                                     version=args.version, output_filter=output_filter)
            count = len(next(iter(outputs.values()), []))
            written += write_outputs(outputs, [f"sample-s{seed}-{i:04d}" for i in range(count)], args.out_dir,
                                     png_name)
        else:
            name = choose_input(info, args.input_name)
            used = set()
            for paths, batch in image_batches(args.inputs, name, info.inputs[name]):
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
