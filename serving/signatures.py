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
