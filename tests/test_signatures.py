"""serving.signatures: TensorSpecs built from the convention table, and the shared in-graph PNG encoder.

Whether every family's exported SignatureDefs follow the table is checked in tests/test_serving_families.py
(test_exported_signatures_follow_the_convention_table).
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from serving import client as client_lib
from serving import signatures as sig
from trainer_modules import png_output

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_clients_import_the_conventions_without_tensorflow():
    """`genpipe predict` and the clients read serving.signatures; importing them must not load TensorFlow."""
    code = ("import sys; import serving.signatures, serving.client, pipelines.predict; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": REPO})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("name, dims, shape, dtype", [
    (sig.IMAGE_BYTES_INPUT, {}, [None], tf.string),
    (sig.IMAGES_INPUT, {"image_shape": (28, 28, 1)}, [None, 28, 28, 1], tf.float32),
    (sig.IMAGES_INPUT, {"image_shape": (None, None, 3)}, [None, None, None, 3], tf.float32),
    (sig.LATENT_INPUT, {"latent_dim": 2}, [None, 2], tf.float32),
    (sig.LATENT_INPUT, {"latent_shape": (7, 7, 256)}, [None, 7, 7, 256], tf.float32),
    (sig.LATENT_INPUT, {"latent_shape": tf.TensorShape([7, 7, 256])}, [None, 7, 7, 256], tf.float32),
    (sig.NUM_INPUT, {}, [], tf.int32),
    (sig.SEED_INPUT, {"image_shape": (28, 28, 1)}, [], tf.int32),  # dims a tensor does not use are ignored
])
def test_input_spec_follows_the_table(name, dims, shape, dtype):
    spec = sig.input_spec(name, **dims)
    assert spec == tf.TensorSpec(shape, dtype, name=name)
    assert spec.dtype.name == sig.INPUTS[name].dtype


def test_concrete_shape_of_outputs():
    assert sig.concrete_shape(sig.OUTPUTS[sig.MU_OUTPUT], latent_dim=3) == (None, 3)
    assert sig.concrete_shape(sig.OUTPUTS[sig.LATENT_OUTPUT], latent_shape=(7, 7, 256)) == (None, 7, 7, 256)
    assert sig.concrete_shape(sig.OUTPUTS[sig.PNG_BYTES_OUTPUT]) == (None,)
    assert sig.concrete_shape(sig.OUTPUTS[sig.IMAGES_OUTPUT], image_shape=(64, 64, 3)) == (None, 64, 64, 3)


def test_input_spec_names_what_is_missing_or_wrong():
    with pytest.raises(ValueError, match=r"needs image_shape="):
        sig.input_spec(sig.IMAGES_INPUT)
    with pytest.raises(ValueError, match=r"needs latent_shape="):
        sig.input_spec(sig.LATENT_INPUT)
    with pytest.raises(ValueError, match=r"needs latent_dim="):
        sig.concrete_shape(sig.OUTPUTS[sig.MU_OUTPUT])
    with pytest.raises(ValueError, match=r"image_shape must be \(H, W, C\)"):
        sig.input_spec(sig.IMAGES_INPUT, image_shape=(28, 28))
    with pytest.raises(ValueError, match="disagree"):
        sig.input_spec(sig.LATENT_INPUT, latent_dim=2, latent_shape=(3,))
    with pytest.raises(ValueError, match=r"'pixels' is not an input of serving.signatures.INPUTS"):
        sig.input_spec("pixels")
    with pytest.raises(TypeError):
        sig.input_spec(sig.IMAGES_INPUT, image_size=(28, 28, 1))


def test_every_png_output_is_listed_with_its_float_images():
    """Where a signature returns png_bytes it also returns the float images the PNGs encode."""
    images = {name for name, spec in sig.OUTPUTS.items() if spec.dtype == "float32" and len(spec.shape) == 4}
    for family, signatures in sig.FAMILY_SIGNATURES.items():
        for name, (_, outputs) in signatures.items():
            if sig.PNG_BYTES_OUTPUT in outputs:
                assert len(outputs & images) == 1, (family, name)
    for family in ("autoencoder", "vae", "gan", "style"):  # every image family's serving_default
        assert sig.PNG_BYTES_OUTPUT in sig.FAMILY_SIGNATURES[family][sig.SERVING_DEFAULT][1], family


def test_encode_png_rounds_like_the_client():
    """The exported png_bytes hold the pixels serving.client.encode_png makes of the float output."""
    rng = np.random.default_rng(0)
    images = rng.uniform(-0.1, 1.1, size=(3, 5, 7, 3)).astype(np.float32)
    images[0, 0, :4, 0] = [0.5 / 255, 1.5 / 255, 254.5 / 255, 1.0]  # halves round to even in both
    pngs = png_output.encode_png(tf.constant(images)).numpy()
    assert pngs.shape == (3,)
    for png, image in zip(pngs, images):
        decoded = tf.io.decode_png(png).numpy()
        assert decoded.dtype == np.uint8 and decoded.shape == (5, 7, 3)
        np.testing.assert_array_equal(decoded, np.round(np.clip(image, 0, 1) * 255).astype(np.uint8))
        np.testing.assert_array_equal(decoded, tf.io.decode_png(client_lib.encode_png(image)).numpy())
    gray = png_output.encode_png(tf.zeros([2, 4, 4, 1], tf.float16)).numpy()
    assert tf.io.decode_png(gray[0]).shape == (4, 4, 1)
    assert png_output.encode_png(tf.zeros([0, 4, 4, 1])).shape == (0,)
