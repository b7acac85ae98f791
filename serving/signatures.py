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
