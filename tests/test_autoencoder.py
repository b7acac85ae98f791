"""The autoencoder Trainer module: network shapes, training, export signatures and resume."""
import os

import numpy as np
import pytest
import tensorflow as tf

from serving import signatures as sig
from trainer_modules import autoencoder, training
from conftest import kill_after_chunks, trainer_fn_args, training_summary


@pytest.mark.parametrize(
    "variant, latent_shape",
    [("dense", (32,)), ("deep", (32,)), ("conv", (7, 7, 256)), ("denoising", (7, 7, 256))],
)
def test_variant_shapes(variant, latent_shape):
    model, encoder, decoder = autoencoder.build_autoencoder(variant)
    images = np.random.default_rng(0).random((3, 28, 28, 1)).astype("float32")
    assert tuple(encoder(images).shape) == (3, *latent_shape)
    output = model(images)
    assert tuple(output.shape) == (3, 28, 28, 1)
    assert float(np.min(output)) >= 0.0 and float(np.max(output)) <= 1.0


def test_unknown_variant_is_rejected():
    with pytest.raises(ValueError, match="unknown autoencoder variant 'wide'"):
        autoencoder.build_autoencoder("wide")


def test_deep_layer_sizes():
    _, encoder, decoder = autoencoder.build_autoencoder("deep")
    units = [layer.units for layer in encoder.layers + decoder.layers if hasattr(layer, "units")]
    assert units == [128, 64, 32, 64, 128, 784]


def _fn_args(data, tmp_path, name, train_steps=4, **config):
    return trainer_fn_args(data, tmp_path, name, train_steps, **{autoencoder.VARIANT: "denoising", **config})


_summary = training_summary


def test_run_fn_exports_signatures_with_transform_inside(transformed_data, tmp_path):
    fn_args = _fn_args(transformed_data, tmp_path, "export")
    autoencoder.run_fn(fn_args)

    summary = _summary(fn_args)
    assert summary["train_steps"] == 4 and summary["resumed_from_epoch"] == 0
    assert tf.io.gfile.glob(os.path.join(fn_args.model_run_dir, "images", "*tfevents*"))
    assert tf.io.gfile.glob(os.path.join(fn_args.model_run_dir, "train", "*tfevents*"))

    loaded = tf.saved_model.load(fn_args.serving_model_dir)
    assert set(loaded.signatures) == {sig.SERVING_DEFAULT, sig.RECONSTRUCT, sig.ENCODE, sig.DECODE}
    raw_image = transformed_data["images"][48:50]
    png = tf.stack([tf.io.encode_png(image) for image in raw_image])

    served = loaded.signatures[sig.SERVING_DEFAULT](**{sig.IMAGE_BYTES_INPUT: png})[sig.RECONSTRUCTION_OUTPUT]
    assert served.shape == (2, 28, 28, 1) and served.dtype == tf.float32
    again = loaded.signatures[sig.SERVING_DEFAULT](**{sig.IMAGE_BYTES_INPUT: png})[sig.RECONSTRUCTION_OUTPUT]
    np.testing.assert_array_equal(served.numpy(), again.numpy())

    # No noise at serving: bytes in equals the clean float image in.
    floats = tf.constant(raw_image.astype("float32") / 255.0)
    direct = loaded.signatures[sig.RECONSTRUCT](**{sig.IMAGES_INPUT: floats})[sig.RECONSTRUCTION_OUTPUT]
    np.testing.assert_allclose(served.numpy(), direct.numpy(), atol=1e-6)

    latent = loaded.signatures[sig.ENCODE](**{sig.IMAGES_INPUT: floats})[sig.LATENT_OUTPUT]
    assert latent.shape == (2, 7, 7, 256)
    decoded = loaded.signatures[sig.DECODE](**{sig.LATENT_INPUT: latent})[sig.RECONSTRUCTION_OUTPUT]
    np.testing.assert_allclose(decoded.numpy(), direct.numpy(), atol=1e-5)


def test_killed_trainer_resumes_from_checkpoint(transformed_data, tmp_path, monkeypatch):
    fn_args = _fn_args(transformed_data, tmp_path, "first", train_steps=6, **{autoencoder.VARIANT: "dense"})
    kill_after_chunks(autoencoder.run_fn, fn_args, monkeypatch)

    rerun = _fn_args(transformed_data, tmp_path, "second", train_steps=6, **{autoencoder.VARIANT: "dense"})
    autoencoder.run_fn(rerun)
    summary = _summary(rerun)
    assert summary["resumed_from_epoch"] == 1
    assert summary["steps_this_run"] == 4
    assert os.path.exists(os.path.join(rerun.serving_model_dir, "saved_model.pb"))


def test_mirrored_strategy_on_two_logical_cpus(transformed_data, tmp_path):
    strategy = training.choose_strategy("mirrored")
    if strategy.num_replicas_in_sync < 2:
        pytest.fail("the session fixture should have split the CPU into two logical devices")
    fn_args = _fn_args(transformed_data, tmp_path, "mirrored", train_steps=2,
                       **{autoencoder.VARIANT: "dense", training.STRATEGY: "mirrored"})
    autoencoder.run_fn(fn_args)
    summary = _summary(fn_args)
    assert summary["strategy"] == "MirroredStrategy"
    assert summary["replicas"] == 2 and summary["global_batch_size"] == 16


def test_mixed_precision_trains_and_exports_float32(transformed_data, tmp_path):
    import keras

    fn_args = _fn_args(transformed_data, tmp_path, "bf16", train_steps=2,
                       **{autoencoder.VARIANT: "dense", training.MIXED_PRECISION: "mixed_bfloat16"})
    autoencoder.run_fn(fn_args)
    assert _summary(fn_args)["precision"] == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after training
    loaded = tf.saved_model.load(fn_args.serving_model_dir)
    out = loaded.signatures[sig.RECONSTRUCT](**{sig.IMAGES_INPUT: tf.zeros([2, 28, 28, 1])})
    assert out[sig.RECONSTRUCTION_OUTPUT].dtype == tf.float32

