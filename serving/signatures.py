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
PNG_BYTES_OUTPUT = "png_bytes"   # string [N]: the output images PNG-encoded


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
    PNG_BYTES_OUTPUT: TensorConvention("string", ("N",), None, "the output images as PNG"),
}

# Family -> signature -> (input names, output names).
_AUTOENCODER = {
    SERVING_DEFAULT: (frozenset({IMAGE_BYTES_INPUT}), frozenset({RECONSTRUCTION_OUTPUT})),
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
    "gan": {**_SAMPLING, SERVING_DEFAULT: _SAMPLING[SAMPLE]},
    "style": {
        STYLIZE: (frozenset({IMAGES_INPUT}), frozenset({IMAGES_OUTPUT})),
        STYLIZE_BYTES: (frozenset({IMAGE_BYTES_INPUT}), frozenset({IMAGES_OUTPUT, PNG_BYTES_OUTPUT})),
        SERVING_DEFAULT: (frozenset({IMAGE_BYTES_INPUT}), frozenset({IMAGES_OUTPUT, PNG_BYTES_OUTPUT})),
    },
}
