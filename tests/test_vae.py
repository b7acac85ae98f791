"""The VAE Trainer module: network shapes, the ELBO terms, training, export signatures and resume."""
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from serving import signatures as sig
from trainer_modules import contract, training, vae
from conftest import kill_after_chunks, trainer_fn_args, training_summary


def test_network_shapes_and_layers():
    model, encoder, decoder = vae.build_vae(latent_dim=3)
    images = np.random.default_rng(0).random((4, 28, 28, 1)).astype("float32")
    mu, log_var = encoder(images)
    assert tuple(mu.shape) == (4, 3) and tuple(log_var.shape) == (4, 3)
    decoded = decoder(mu)
    assert tuple(decoded.shape) == (4, 28, 28, 1)
    assert float(np.min(decoded)) >= 0.0 and float(np.max(decoded)) <= 1.0
    assert tuple(model(images).shape) == (4, 28, 28, 1)
    assert tuple(model.sample(5, 0).shape) == (5, 28, 28, 1)

    def describe(network, kind):
        return [(layer.filters, layer.strides) if hasattr(layer, "filters") else layer.units
                for layer in network.layers if isinstance(layer, kind)]

    assert describe(encoder, keras.layers.Conv2D) == [(32, (2, 2)), (64, (2, 2))]
    assert describe(encoder, keras.layers.Dense) == [20, 3, 3]
    assert describe(model.decoder_logits, keras.layers.Dense) == [7 * 7 * 64]
    assert describe(model.decoder_logits, keras.layers.Conv2DTranspose) == [(64, (2, 2)), (32, (2, 2)), (1, (1, 1))]
    batch_norms = [l for net in (encoder, model.decoder_logits) for l in net.layers
                   if isinstance(l, keras.layers.BatchNormalization)]
    assert len(batch_norms) == 6


def test_invalid_hyperparameters_are_rejected():
    with pytest.raises(ValueError, match="latent_dim"):
        vae.build_vae(latent_dim=0)
    with pytest.raises(ValueError, match="kl_weight"):
        vae.build_vae(kl_weight=-1.0)


def test_kl_of_standard_normal_is_zero():
    kl = vae.kl_divergence(tf.zeros([3, 2]), tf.zeros([3, 2]))
    np.testing.assert_allclose(kl.numpy(), np.zeros(3), atol=1e-7)


def test_kl_matches_closed_form():
    mu = np.array([[1.0, 2.0], [0.0, -0.5]], np.float32)
    var = np.array([[4.0, 1.0], [0.25, 2.0]], np.float32)
    # KL(N(mu, var) || N(0, 1)) = 0.5 * sum(var + mu^2 - 1 - log var)
    expected = [0.5 * ((4 + 1 - 1 - math.log(4)) + (1 + 4 - 1 - 0)),
                0.5 * ((0.25 + 0 - 1 - math.log(0.25)) + (2 + 0.25 - 1 - math.log(2)))]
    kl = vae.kl_divergence(tf.constant(mu), tf.constant(np.log(var)))
    np.testing.assert_allclose(kl.numpy(), expected, rtol=1e-5)


def test_reconstruction_nll_is_bce_summed_over_pixels():
    rng = np.random.default_rng(1)
    images = rng.random((2, 28, 28, 1))
    probabilities = rng.uniform(0.01, 0.99, size=(2, 28, 28, 1))
    expected = -np.sum(images * np.log(probabilities) + (1 - images) * np.log(1 - probabilities), axis=(1, 2, 3))
    logits = np.log(probabilities) - np.log1p(-probabilities)
    nll = vae.bernoulli_nll(tf.constant(images, tf.float32), tf.constant(logits, tf.float32))
    np.testing.assert_allclose(nll.numpy(), expected, rtol=1e-5)

    # Saturated logits stay finite and exact: a confident right pixel costs ~0, a confident wrong one |logit|.
    ones = tf.ones([1, 28, 28, 1])
    np.testing.assert_allclose(vae.bernoulli_nll(ones, 200.0 * ones).numpy(), [0.0], atol=1e-6)
    np.testing.assert_allclose(vae.bernoulli_nll(ones, -200.0 * ones).numpy(), [200.0 * 784], rtol=1e-6)


def test_sampling_is_keyed_by_seed():
    sampling = vae.Sampling()
    mu, log_var = tf.fill([4, 2], 3.0), tf.zeros([4, 2])
    seed = tf.constant([1, 2], tf.int64)
    np.testing.assert_array_equal(sampling(mu, log_var, seed).numpy(), sampling(mu, log_var, seed).numpy())
    assert not np.array_equal(sampling(mu, log_var, seed).numpy(), sampling(mu, log_var, seed + 1).numpy())
    np.testing.assert_allclose(sampling(mu, tf.fill([4, 2], -60.0), seed).numpy(), mu.numpy(), atol=1e-6)


def _fn_args(data, tmp_path, name, train_steps=4, **config):
    return trainer_fn_args(data, tmp_path, name, train_steps, **{**config})


_summary = training_summary


def _first_eval_batch(data, fn_args):
    spec = {contract.IMAGE_KEY: tf.io.FixedLenFeature(list(contract.MNIST_SHAPE), tf.float32)}
    dataset = training.make_dataset(fn_args.eval_files, spec, lambda f: f[contract.IMAGE_KEY], 8,
                                    shuffle=False, repeat=False)
    return next(iter(dataset))


def _assert_images(images, count):
    assert images.shape == (count, 28, 28, 1) and images.dtype == tf.float32
    assert float(tf.reduce_min(images)) >= 0.0 and float(tf.reduce_max(images)) <= 1.0


def test_run_fn_exports_all_signatures(transformed_data, tmp_path):
    fn_args = _fn_args(transformed_data, tmp_path, "export", **{vae.KL_WEIGHT: 0.5, vae.LATENT_DIM: 3})
    vae.run_fn(fn_args)

    summary = _summary(fn_args)
    assert summary["train_steps"] == 4 and summary["optimizer_steps"] == 4 and summary["resumed_from_epoch"] == 0
    assert summary["latent_dim"] == 3 and summary["kl_weight"] == 0.5
    final = summary["final_eval"]
    assert final["elbo"] == pytest.approx(-(final["reconstruction_nll"] + final["kl"]), rel=1e-5)
    assert final["loss"] == pytest.approx(final["reconstruction_nll"] + 0.5 * final["kl"], rel=1e-5)
    assert {"val_elbo", "val_reconstruction_nll", "val_kl", "elbo"} <= set(summary["final"])
    assert tf.io.gfile.glob(os.path.join(fn_args.model_run_dir, "images", "*tfevents*"))
    assert tf.io.gfile.glob(os.path.join(fn_args.model_run_dir, "train", "*tfevents*"))
    # The posterior-collapse monitor checked after each 2-step chunk, on the eval KL and the active units.
    checks = summary["collapse_monitor"]["checks"]
    assert summary["collapse_monitor"]["kind"] == "posterior-collapse" and [c["step"] for c in checks] == [2, 4]
    assert all(0 <= c["active_units"] <= 3 and c["kl"] >= 0 for c in checks)
    assert "collapse_active_units" in summary["final"]

    loaded = tf.saved_model.load(fn_args.serving_model_dir)
    signatures = loaded.signatures
    assert set(signatures) == {sig.SERVING_DEFAULT, sig.RECONSTRUCT, sig.ENCODE, sig.DECODE,
                               sig.GENERATE, sig.SAMPLE, sig.ELBO}

    raw_images = transformed_data["images"][48:50]
    png = tf.stack([tf.io.encode_png(image) for image in raw_images])
    served = signatures[sig.SERVING_DEFAULT](**{sig.IMAGE_BYTES_INPUT: png})[sig.RECONSTRUCTION_OUTPUT]
    _assert_images(served, 2)
    again = signatures[sig.SERVING_DEFAULT](**{sig.IMAGE_BYTES_INPUT: png})[sig.RECONSTRUCTION_OUTPUT]
    np.testing.assert_array_equal(served.numpy(), again.numpy())

    floats = tf.constant(raw_images.astype("float32") / 255.0)
    direct = signatures[sig.RECONSTRUCT](**{sig.IMAGES_INPUT: floats})[sig.RECONSTRUCTION_OUTPUT]
    np.testing.assert_allclose(served.numpy(), direct.numpy(), atol=1e-6)

    codes = signatures[sig.ENCODE](**{sig.IMAGES_INPUT: floats})
    assert codes[sig.MU_OUTPUT].shape == (2, 3) and codes[sig.LOG_VAR_OUTPUT].shape == (2, 3)
    assert codes[sig.MU_OUTPUT].dtype == tf.float32 and codes[sig.LOG_VAR_OUTPUT].dtype == tf.float32
    decoded = signatures[sig.DECODE](**{sig.LATENT_INPUT: codes[sig.MU_OUTPUT]})[sig.RECONSTRUCTION_OUTPUT]
    np.testing.assert_allclose(decoded.numpy(), direct.numpy(), atol=1e-6)  # reconstruct decodes mu
    generated = signatures[sig.GENERATE](**{sig.LATENT_INPUT: codes[sig.MU_OUTPUT]})[sig.IMAGES_OUTPUT]
    np.testing.assert_array_equal(generated.numpy(), decoded.numpy())

    def sample(num, seed):
        return signatures[sig.SAMPLE](**{sig.NUM_INPUT: tf.constant(num), sig.SEED_INPUT: tf.constant(seed)})[
            sig.IMAGES_OUTPUT]

    first = sample(6, 11)
    _assert_images(first, 6)
    np.testing.assert_array_equal(first.numpy(), sample(6, 11).numpy())
    assert not np.allclose(first.numpy(), sample(6, 12).numpy())

    batch = _first_eval_batch(transformed_data, fn_args)
    terms = signatures[sig.ELBO](**{sig.IMAGES_INPUT: batch})
    repeat = signatures[sig.ELBO](**{sig.IMAGES_INPUT: batch})
    for name in (sig.ELBO_OUTPUT, sig.RECONSTRUCTION_NLL_OUTPUT, sig.KL_OUTPUT):
        assert terms[name].shape == (8,) and terms[name].dtype == tf.float32
        np.testing.assert_array_equal(terms[name].numpy(), repeat[name].numpy())
    np.testing.assert_allclose(
        terms[sig.ELBO_OUTPUT].numpy(),
        -(terms[sig.RECONSTRUCTION_NLL_OUTPUT].numpy() + terms[sig.KL_OUTPUT].numpy()), rtol=1e-6)
    assert np.all(terms[sig.KL_OUTPUT].numpy() >= 0) and np.all(terms[sig.RECONSTRUCTION_NLL_OUTPUT].numpy() > 0)
    # The served ELBO is the one training reported on the same eval batch (same fixed eps).
    assert float(np.mean(terms[sig.ELBO_OUTPUT])) == pytest.approx(final["elbo"], rel=1e-4)


def test_values_outside_unit_range_are_rejected():
    with pytest.raises(ValueError, match=r"eval examples .*needs images in \[0, 1\]"):
        vae._check_unit_range(np.array([-1.0, 0.5]), "eval examples ['x']")


def test_killed_trainer_resumes_from_checkpoint(transformed_data, tmp_path, monkeypatch):
    fn_args = _fn_args(transformed_data, tmp_path, "first", train_steps=6)
    kill_after_chunks(vae.run_fn, fn_args, monkeypatch, chunks=2)

    rerun = _fn_args(transformed_data, tmp_path, "second", train_steps=6)
    vae.run_fn(rerun)
    summary = _summary(rerun)
    assert summary["resumed_from_epoch"] == 2
    assert summary["steps_this_run"] == 2
    assert summary["optimizer_steps"] == 6  # optimizer state came back with the weights
    assert os.path.exists(os.path.join(rerun.serving_model_dir, "saved_model.pb"))


def test_stop_on_collapse_stops_at_the_posterior_collapse_alarm(transformed_data, tmp_path):
    """A KL floor no VAE reaches in a few steps makes every check fail: the alarm goes off at the
    second chunk (patience 2), training stops there and the model is still exported."""
    from trainer_modules import collapse

    fn_args = _fn_args(transformed_data, tmp_path, "stop", train_steps=8, **{
        collapse.MIN_KL: 1e9, collapse.WARMUP_FRACTION: 0.0, collapse.STOP_ON_COLLAPSE: True})
    vae.run_fn(fn_args)
    summary = _summary(fn_args)
    alarm = summary["collapse_monitor"]["alarm"]
    assert alarm["step"] == 4 and alarm["message"].startswith("posterior-collapse alarm at step 4 (2 checks in a row)")
    assert "nats per image is below 1e+09" in alarm["message"]
    assert summary["stopped_at_step"] == 4 and summary["optimizer_steps"] == 4
    assert os.path.exists(os.path.join(fn_args.serving_model_dir, "saved_model.pb"))


def test_a_run_stopped_by_its_alarm_stays_stopped_when_resumed(transformed_data, tmp_path, monkeypatch):
    """The monitor's state is in the checkpoint: killed right after the alarm stopped it (before the
    export), the Trainer resumes knowing the alarm and trains no further; a fresh monitor would
    start counting again and train on to step 8."""
    from trainer_modules import collapse

    settings = {collapse.MIN_KL: 1e9, collapse.WARMUP_FRACTION: 0.0, collapse.STOP_ON_COLLAPSE: True}
    kill_after_chunks(vae.run_fn, _fn_args(transformed_data, tmp_path, "first", train_steps=8, **settings),
                      monkeypatch, chunks=2)
    rerun = _fn_args(transformed_data, tmp_path, "second", train_steps=8, **settings)
    vae.run_fn(rerun)
    summary = _summary(rerun)
    monitor = summary["collapse_monitor"]
    assert summary["resumed_from_epoch"] == 2 and summary["steps_this_run"] == 0
    assert summary["stopped_at_step"] == 4 and summary["optimizer_steps"] == 4
    assert monitor["stopped_early"] is True and monitor["alarm"]["step"] == 4
    assert [check["step"] for check in monitor["checks"]] == [2, 4]
    assert os.path.exists(os.path.join(rerun.serving_model_dir, "saved_model.pb"))


def test_a_run_stopped_by_its_alarm_trains_on_when_rerun_without_stop_on_collapse(transformed_data, tmp_path):
    """stop_on_collapse is part of the checkpoint key: the rerun without it does not resume the stopped
    checkpoint (which would train no further) but trains all its steps; an identical rerun stays stopped."""
    from trainer_modules import collapse

    settings = {collapse.MIN_KL: 1e9, collapse.WARMUP_FRACTION: 0.0}
    vae.run_fn(_fn_args(transformed_data, tmp_path, "stopped", train_steps=8,
                        **settings, **{collapse.STOP_ON_COLLAPSE: True}))
    assert _summary(_fn_args(transformed_data, tmp_path, "stopped"))["stopped_at_step"] == 4
    same = _fn_args(transformed_data, tmp_path, "same", train_steps=8, **settings, **{collapse.STOP_ON_COLLAPSE: True})
    vae.run_fn(same)
    assert _summary(same)["resumed_from_epoch"] == 2 and _summary(same)["steps_this_run"] == 0
    rerun = _fn_args(transformed_data, tmp_path, "rerun", train_steps=8, **settings)
    vae.run_fn(rerun)
    summary = _summary(rerun)
    assert summary["steps_this_run"] == 8 and summary["stopped_at_step"] is None and summary["optimizer_steps"] == 8
    assert summary["collapse_monitor"]["stopped_early"] is False
    assert summary["collapse_monitor"]["alarm"]["step"] == 4  # still reported


def test_mirrored_strategy_with_mixed_precision(transformed_data, tmp_path):
    strategy = training.choose_strategy("mirrored")
    if strategy.num_replicas_in_sync < 2:
        pytest.fail("the session fixture should have split the CPU into two logical devices")
    fn_args = _fn_args(transformed_data, tmp_path, "mirrored", train_steps=2,
                       **{training.STRATEGY: "mirrored", training.MIXED_PRECISION: "mixed_bfloat16"})
    vae.run_fn(fn_args)
    summary = _summary(fn_args)
    assert summary["strategy"] == "MirroredStrategy" and summary["precision"] == "mixed_bfloat16"
    assert summary["replicas"] == 2 and summary["global_batch_size"] == 16
    assert np.isfinite(summary["final_eval"]["elbo"])
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after training

    loaded = tf.saved_model.load(fn_args.serving_model_dir)
    images = loaded.signatures[sig.SAMPLE](**{sig.NUM_INPUT: tf.constant(3), sig.SEED_INPUT: tf.constant(0)})
    _assert_images(images[sig.IMAGES_OUTPUT], 3)
    terms = loaded.signatures[sig.ELBO](**{sig.IMAGES_INPUT: images[sig.IMAGES_OUTPUT]})
    assert terms[sig.ELBO_OUTPUT].dtype == tf.float32 and np.all(np.isfinite(terms[sig.ELBO_OUTPUT]))
