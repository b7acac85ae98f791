"""Signature, input and output names of the pushed SavedModels (one source of truth)."""

SERVING_DEFAULT = "serving_default"
RECONSTRUCT = "reconstruct"
ENCODE = "encode"
DECODE = "decode"

# Input names. Encoded-image inputs end in `_bytes` so TF Serving's REST API takes {"b64": ...}.
IMAGE_BYTES_INPUT = "image_bytes"
IMAGES_INPUT = "images"
LATENT_INPUT = "latent"

# Output names.
RECONSTRUCTION_OUTPUT = "reconstruction"
LATENT_OUTPUT = "latent"

# Generative families (vae, gan).
SAMPLE = "sample"        # (num, seed) -> images: `num` draws from the prior with a stateless seed
GENERATE = "generate"    # (latent) -> images: the generator / decoder at given latent points
ELBO = "elbo"            # (images) -> per-example elbo, reconstruction_nll, kl in nats (vae)

NUM_INPUT = "num"        # int32 scalar
SEED_INPUT = "seed"      # int32 scalar

IMAGES_OUTPUT = "images"                        # float32 [N, H, W, C] in [0, 1], whatever the model's range
MU_OUTPUT = "mu"
LOG_VAR_OUTPUT = "log_var"
ELBO_OUTPUT = "elbo"                            # nats per image (higher is better)
RECONSTRUCTION_NLL_OUTPUT = "reconstruction_nll"  # Bernoulli NLL summed over pixels, nats per image
KL_OUTPUT = "kl"                                # KL(q(z|x) || N(0, I)) summed over latent dims, nats per image

# Style family.
STYLIZE = "stylize"              # (images float32 [N, H, W, 3] in [0, 1], any H and W) -> images, same size
STYLIZE_BYTES = "stylize_bytes"  # (image_bytes [N] JPEG/PNG of one size) -> images and png_bytes
PNG_BYTES_OUTPUT = "png_bytes"   # string [N]: the output images PNG-encoded (serving_default of image families)


# ---------------------------------------------------------------------------
# The whole convention as data: what every input and output is, and which signatures each
# family's pushed model serves. Clients (serving/client.py, `genpipe predict`), warmup requests
# (serving/warmup.py) and the serving tests read these instead of spelling the rules again.

import dataclasses as _dataclasses
from typing import Dict as _Dict, FrozenSet as _FrozenSet, Optional as _Optional, Tuple as _Tuple


@_dataclasses.dataclass(frozen=True)
class TensorConvention:
    """dtype name, shape (None: any size; "N": the batch), and value range (None: unbounded)."""

    dtype: str
    shape: _Tuple
    value_range: _Optional[_Tuple[float, float]] = None
    meaning: str = ""


INPUTS: _Dict[str, TensorConvention] = {
    IMAGE_BYTES_INPUT: TensorConvention("string", ("N",), None,
                                        "encoded PNG or JPEG images; {'b64': ...} in TF Serving's REST API"),
    IMAGES_INPUT: TensorConvention("float32", ("N", "H", "W", "C"), (0.0, 1.0), "decoded images"),
    LATENT_INPUT: TensorConvention("float32", ("N", "latent..."), None, "points of the latent space"),
    NUM_INPUT: TensorConvention("int32", (), None, "how many samples to draw"),
    SEED_INPUT: TensorConvention("int32", (), None, "stateless seed: the same seed gives the same samples"),
}

OUTPUTS: _Dict[str, TensorConvention] = {
    IMAGES_OUTPUT: TensorConvention("float32", ("N", "H", "W", "C"), (0.0, 1.0), "images"),
    RECONSTRUCTION_OUTPUT: TensorConvention("float32", ("N", "H", "W", "C"), (0.0, 1.0), "reconstructed images"),
    LATENT_OUTPUT: TensorConvention("float32", ("N", "latent..."), None, "codes"),
    MU_OUTPUT: TensorConvention("float32", ("N", "latent"), None, "posterior means"),
    LOG_VAR_OUTPUT: TensorConvention("float32", ("N", "latent"), None, "posterior log-variances"),
    ELBO_OUTPUT: TensorConvention("float32", ("N",), None, "nats per image, higher is better"),
    RECONSTRUCTION_NLL_OUTPUT: TensorConvention("float32", ("N",), (0.0, float("inf")), "nats per image"),
    KL_OUTPUT: TensorConvention("float32", ("N",), (0.0, float("inf")), "nats per image"),
    PNG_BYTES_OUTPUT: TensorConvention("string", ("N",), None,
                                       "the signature's float images as PNG, 8 bits per channel: "
                                       "uint8 round(x * 255) of the [0, 1] floats"),
}

# Family -> signature -> (input names, output names). The `serving_default` of every image-producing
# family also returns `png_bytes`; the other signatures return float tensors only.
_AUTOENCODER = {
    SERVING_DEFAULT: (frozenset({IMAGE_BYTES_INPUT}), frozenset({RECONSTRUCTION_OUTPUT, PNG_BYTES_OUTPUT})),
    RECONSTRUCT: (frozenset({IMAGES_INPUT}), frozenset({RECONSTRUCTION_OUTPUT})),
    ENCODE: (frozenset({IMAGES_INPUT}), frozenset({LATENT_OUTPUT})),
    DECODE: (frozenset({LATENT_INPUT}), frozenset({RECONSTRUCTION_OUTPUT})),
}
_SAMPLING = {
    SAMPLE: (frozenset({NUM_INPUT, SEED_INPUT}), frozenset({IMAGES_OUTPUT})),
    GENERATE: (frozenset({LATENT_INPUT}), frozenset({IMAGES_OUTPUT})),
}
FAMILY_SIGNATURES: _Dict[str, _Dict[str, _Tuple[_FrozenSet[str], _FrozenSet[str]]]] = {
    "autoencoder": _AUTOENCODER,
    "vae": {**_AUTOENCODER, **_SAMPLING,
            ENCODE: (frozenset({IMAGES_INPUT}), frozenset({MU_OUTPUT, LOG_VAR_OUTPUT})),
            ELBO: (frozenset({IMAGES_INPUT}), frozenset({ELBO_OUTPUT, RECONSTRUCTION_NLL_OUTPUT, KL_OUTPUT}))},
    "gan": {**_SAMPLING, SERVING_DEFAULT: (frozenset({NUM_INPUT, SEED_INPUT}),
                                           frozenset({IMAGES_OUTPUT, PNG_BYTES_OUTPUT}))},
    "style": {
        STYLIZE: (frozenset({IMAGES_INPUT}), frozenset({IMAGES_OUTPUT})),
        STYLIZE_BYTES: (frozenset({IMAGE_BYTES_INPUT}), frozenset({IMAGES_OUTPUT, PNG_BYTES_OUTPUT})),
        SERVING_DEFAULT: (frozenset({IMAGE_BYTES_INPUT}), frozenset({IMAGES_OUTPUT, PNG_BYTES_OUTPUT})),
    },
}


# ---------------------------------------------------------------------------
# Shapes and TensorSpecs from the table. The symbols of a convention's shape: "N" is the batch
# (any size); "H", "W", "C" come from `image_shape`; "latent" from `latent_dim`; "latent..." (a code of
# any rank) from `latent_shape`, or (latent_dim,). A None inside image_shape or latent_shape means any size.


def concrete_shape(convention: TensorConvention, *, image_shape=None, latent_shape=None, latent_dim=None
                   ) -> _Tuple:
    """The convention's shape with its symbols filled in, e.g. ("N", "H", "W", "C") -> (None, 28, 28, 1)."""
    if latent_dim is not None:
        if latent_shape is not None and tuple(latent_shape) != (latent_dim,):
            raise ValueError(f"latent_dim={latent_dim} and latent_shape={tuple(latent_shape)} disagree; give one")
        latent_shape = (latent_dim,)
    given = {"image_shape": image_shape, "latent_shape": latent_shape}
    needs = {"H": "image_shape", "W": "image_shape", "C": "image_shape", "latent": "latent_shape",
             "latent...": "latent_shape"}
    shape = []
    for symbol in convention.shape:
        if symbol == "N":
            shape.append(None)
        elif isinstance(symbol, int) or symbol is None:
            shape.append(symbol)
        elif symbol not in needs:
            raise ValueError(f"unknown dimension {symbol!r} in the shape {convention.shape} of a convention")
        elif given[needs[symbol]] is None:
            keyword = "latent_dim" if symbol == "latent" else needs[symbol]
            raise ValueError(f"a tensor of shape {list(convention.shape)} ({convention.meaning}) needs {keyword}=")
        elif symbol in ("H", "W", "C"):
            dims = tuple(image_shape)
            if len(dims) != 3:
                raise ValueError(f"image_shape must be (H, W, C), got {dims}")
            shape.append(_dim(dims["HWC".index(symbol)]))
        elif symbol == "latent":
            if len(latent_shape) != 1:
                raise ValueError(f"a tensor of shape {list(convention.shape)} takes a flat latent, got latent_shape="
                                 f"{tuple(latent_shape)}")
            shape.append(_dim(latent_shape[0]))
        else:
            shape.extend(_dim(d) for d in latent_shape)
    return tuple(shape)


def _dim(value):
    return None if value is None else int(value)


def input_spec(name: str, *, image_shape=None, latent_shape=None, latent_dim=None):
    """The tf.TensorSpec of the input `name` of INPUTS, for a signature's `input_signature`.

    dtype from the table, the spec's name is the input name, and the shape is the table's with its
    symbols filled (see concrete_shape):

        input_spec(IMAGE_BYTES_INPUT)                        # string [None]
        input_spec(IMAGES_INPUT, image_shape=(28, 28, 1))    # float32 [None, 28, 28, 1]
        input_spec(IMAGES_INPUT, image_shape=(None, None, 3))  # any height and width (style)
        input_spec(LATENT_INPUT, latent_dim=2)               # float32 [None, 2]
        input_spec(LATENT_INPUT, latent_shape=(7, 7, 256))   # float32 [None, 7, 7, 256]

    TensorFlow is imported here, not at module level: clients import this module without it.
    """
    import tensorflow as tf

    if name not in INPUTS:
        raise ValueError(f"{name!r} is not an input of serving.signatures.INPUTS; known: {sorted(INPUTS)}")
    convention = INPUTS[name]
    shape = concrete_shape(convention, image_shape=image_shape, latent_shape=latent_shape, latent_dim=latent_dim)
    return tf.TensorSpec(shape, tf.dtypes.as_dtype(convention.dtype), name=name)
