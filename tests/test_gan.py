"""The GAN Trainer module: network shapes, the two-phase train step, export signatures and resume."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from serving import signatures as sig
from trainer_modules import gan, training
from conftest import kill_after_chunks, trainer_fn_args, training_summary


def test_dense_layer_sizes():
    generator, discriminator = gan.build_networks("dense")
    assert [layer.units for layer in generator.layers if hasattr(layer, "units")] == [64, 128, 784]
    assert [layer.units for layer in discriminator.layers if hasattr(layer, "units")] == [128, 64, 1]
    assert [layer.activation.__name__ for layer in generator.layers if hasattr(layer, "units")] == [
        "selu", "selu", "sigmoid"]


def test_dcgan_layer_shapes():
    generator, discriminator = gan.build_networks("dcgan")
    shapes = [tuple(layer.output.shape[1:]) for layer in generator.layers[1:]]
    assert shapes == [(7 * 7 * 128,), (7, 7, 128), (7, 7, 128), (14, 14, 64), (14, 14, 64), (28, 28, 1)]
    convs = [tuple(layer.output.shape[1:]) for layer in discriminator.layers if "conv" in layer.name]
    assert convs == [(14, 14, 64), (7, 7, 128)]
    assert [layer.rate for layer in discriminator.layers if isinstance(layer, keras.layers.Dropout)] == [0.4, 0.4]


def _layers_of(model, kind):
    return [layer for layer in model.layers if type(layer) is kind]


def _next_layer(model, layer):
    """The layer that consumes `layer`'s output (the dcgan64 networks are plain chains)."""
    layers = model.layers
    return layers[layers.index(layer) + 1]


def test_dcgan64_generator_configuration():
    generator, _ = gan.build_networks("dcgan64")
    assert tuple(generator.input.shape[1:]) == (128,)
    assert tuple(generator.layers[1].output.shape[1:]) == (1, 1, 128)  # z as a 1x1x128 map
    convs = _layers_of(generator, keras.layers.Conv2DTranspose)
    assert [c.filters for c in convs] == [512, 256, 128, 64, 3]
    assert [c.kernel_size for c in convs] == [(4, 4)] * 5
    assert [c.strides for c in convs] == [(1, 1)] + [(2, 2)] * 4
    assert [c.padding for c in convs] == ["valid"] + ["same"] * 4
    assert [c.use_bias for c in convs] == [False] * 4 + [True]
    assert [tuple(c.output.shape[1:]) for c in convs] == [
        (4, 4, 512), (8, 8, 256), (16, 16, 128), (32, 32, 64), (64, 64, 3)]
    for conv in convs[:4]:
        norm = _next_layer(generator, conv)
        assert isinstance(norm, keras.layers.BatchNormalization)
        assert isinstance(_next_layer(generator, norm), keras.layers.ReLU)
    output = convs[-1]
    assert output is generator.layers[-1] and output.activation.__name__ == "tanh"
    assert output.dtype_policy.name == "float32"


def test_dcgan64_discriminator_configuration():
    _, discriminator = gan.build_networks("dcgan64")
    convs = _layers_of(discriminator, keras.layers.Conv2D)
    assert [c.filters for c in convs] == [64, 128, 256, 512, 1]
    assert [c.kernel_size for c in convs] == [(4, 4)] * 5
    assert [c.strides for c in convs] == [(2, 2)] * 4 + [(1, 1)]
    assert [c.padding for c in convs] == ["same"] * 4 + ["valid"]
    assert [c.use_bias for c in convs] == [True, False, False, False, True]
    assert [tuple(c.output.shape[1:]) for c in convs] == [
        (32, 32, 64), (16, 16, 128), (8, 8, 256), (4, 4, 512), (1, 1, 1)]
    assert isinstance(_next_layer(discriminator, convs[0]), keras.layers.LeakyReLU)  # no BatchNorm on the input layer
    for conv in convs[1:4]:
        norm = _next_layer(discriminator, conv)
        assert isinstance(norm, keras.layers.BatchNormalization)
        assert isinstance(_next_layer(discriminator, norm), keras.layers.LeakyReLU)
    assert [a.negative_slope for a in _layers_of(discriminator, keras.layers.LeakyReLU)] == [0.2] * 4
    logit = discriminator.layers[-1]
    assert isinstance(logit, keras.layers.Flatten) and tuple(logit.output.shape[1:]) == (1,)
    assert logit.dtype_policy.name == "float32" and convs[-1].dtype_policy.name == "float32"


def test_dcgan64_networks_need_64x64_images():
    with pytest.raises(ValueError, match="'dcgan64' is built for 64x64 images, got image_shape \\(32, 32, 3\\)"):
        gan.build_dcgan64_generator(128, (32, 32, 3))
    with pytest.raises(ValueError, match="'dcgan64' is built for 64x64"):
        gan.build_dcgan64_discriminator((28, 28, 1))


@pytest.mark.parametrize("variant", sorted(gan.VARIANTS))
def test_variant_output_ranges(variant):
    spec = gan.VARIANTS[variant]
    generator, discriminator = gan.build_networks(variant)
    z = np.random.default_rng(0).normal(size=(3, spec.latent_dim)).astype("float32")
    images = generator(z)
    low, high = gan.VALUE_RANGES[spec.value_range]
    assert tuple(images.shape) == (3, *spec.image_shape)
    assert float(np.min(images)) >= low and float(np.max(images)) <= high
    assert tuple(discriminator(images).shape) == (3, 1)
    served = gan.to_unit_range(images, spec.value_range)
    assert float(np.min(served)) >= 0.0 and float(np.max(served)) <= 1.0


def test_unknown_variant_and_bad_options_are_rejected():
    with pytest.raises(ValueError, match="unknown gan variant 'wide'"):
        gan.build_networks("wide")
    with pytest.raises(ValueError, match="label_smoothing"):
        gan.GanConfig.from_custom_config({gan.LABEL_SMOOTHING: 0.5})
    with pytest.raises(ValueError, match="d_steps"):
        gan.GanConfig.from_custom_config({gan.D_STEPS: 0})


def test_config_defaults_and_overrides():
    config = gan.GanConfig.from_custom_config({gan.VARIANT: "dense"})
    assert (config.latent_dim, config.learning_rate, config.d_learning_rate) == (32, 2e-4, 2e-4)
    assert (config.adam_beta_1, config.label_smoothing, config.d_steps) == (0.5, 0.1, 1)
    config = gan.GanConfig.from_custom_config({gan.LATENT_DIM: 16, gan.D_LEARNING_RATE: 1e-4})
    assert (config.variant, config.latent_dim, config.d_learning_rate) == ("dcgan", 16, 1e-4)


def _compiled_gan(variant="dcgan", d_learning_rate=1e-3, g_learning_rate=1e-3, d_steps=1):
    keras.utils.set_random_seed(0)
    generator, discriminator = gan.build_networks(variant)
    model = gan.GAN(generator, discriminator, gan.VARIANTS[variant].latent_dim)
    model.compile(d_optimizer=keras.optimizers.Adam(d_learning_rate),
                  g_optimizer=keras.optimizers.Adam(g_learning_rate), d_steps=d_steps)
    model.build_optimizers()
    return model


def _real_batch(variant="dcgan", size=8):
    images = np.random.default_rng(1).random((size, 28, 28, 1)).astype("float32")
    return tf.constant(images * 2 - 1 if gan.VARIANTS[variant].value_range == "symmetric" else images)


def _values(variables):
    return [v.numpy().copy() for v in variables]


def _changed(before, variables):
    return [not np.array_equal(b, v.numpy()) for b, v in zip(before, variables)]


def test_discriminator_phase_moves_only_discriminator_weights():
    # With the generator's learning rate at 0, anything that moves a generator weight is phase 1's doing.
    model = _compiled_gan(g_learning_rate=0.0, d_steps=3)
    g_before, d_before = _values(model.generator.trainable_variables), _values(model.discriminator.trainable_variables)
    logs = model.train_step(_real_batch())
    assert not any(_changed(g_before, model.generator.trainable_variables))
    assert all(_changed(d_before, model.discriminator.trainable_variables))
    assert int(model.d_optimizer.iterations.numpy()) == 3 and int(model.g_optimizer.iterations.numpy()) == 1
    assert set(logs) == {"d_loss", "g_loss", "d_real_accuracy", "d_fake_accuracy"}
    assert all(np.isfinite(float(v)) for v in logs.values())


def test_generator_phase_moves_only_generator_weights():
    model = _compiled_gan(d_learning_rate=0.0)
    g_before, d_before = _values(model.generator.trainable_variables), _values(model.discriminator.trainable_variables)
    model.train_step(_real_batch())
    assert all(_changed(g_before, model.generator.trainable_variables))
    assert not any(_changed(d_before, model.discriminator.trainable_variables))
    # Each optimizer holds state for its own network only.
    assert len(model.g_optimizer.variables) == 2 + 2 * len(model.generator.trainable_variables)
    assert len(model.d_optimizer.variables) == 2 + 2 * len(model.discriminator.trainable_variables)


def test_noise_differs_per_step_and_phase():
    model = _compiled_gan()
    z = [model._latent(4, step, stream).numpy() for step, stream in ((0, 0), (0, 1), (1, 0), (0, 0))]
    assert not np.allclose(z[0], z[1]) and not np.allclose(z[0], z[2])
    np.testing.assert_array_equal(z[0], z[3])


def test_mixed_float16_wraps_both_optimizers_in_loss_scaling():
    with training.precision_policy("mixed_float16", tf.distribute.get_strategy()):
        model = _compiled_gan("dense")
        assert isinstance(model.d_optimizer, keras.optimizers.LossScaleOptimizer)
        assert isinstance(model.g_optimizer, keras.optimizers.LossScaleOptimizer)
        logs = model.train_step(_real_batch("dense"))
        assert model.generator.layers[1].compute_dtype == "float16"
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert keras.mixed_precision.global_policy().name == "float32"


def _fn_args(data, tmp_path, name, train_steps=4, **config):
    return trainer_fn_args(data, tmp_path, name, train_steps, **{gan.VARIANT: "dcgan", **config})


_summary = training_summary


def _sample(loaded, num, seed):
    return loaded.signatures[sig.SAMPLE](**{sig.NUM_INPUT: tf.constant(num), sig.SEED_INPUT: tf.constant(seed)})[
        sig.IMAGES_OUTPUT].numpy()


def test_run_fn_trains_dcgan_and_exports_signatures(transformed_symmetric, tmp_path):
    fn_args = _fn_args(transformed_symmetric, tmp_path, "export")
    gan.run_fn(fn_args)

    summary = _summary(fn_args)
    assert summary["train_steps"] == 4 and summary["resumed_from_epoch"] == 0 and summary["steps_this_run"] == 4
    assert set(summary["final"]) >= {"d_loss", "g_loss", "d_real_accuracy", "d_fake_accuracy", "val_d_loss"}
    assert all(np.isfinite(v) for v in summary["final"].values())
    assert tf.io.gfile.glob(os.path.join(fn_args.model_run_dir, "images", "*tfevents*"))
    assert tf.io.gfile.glob(os.path.join(fn_args.model_run_dir, "train", "*tfevents*"))
    # The collapse monitor measured after each 2-step chunk; its numbers are in the history too.
    monitor = summary["collapse_monitor"]
    assert [check["step"] for check in monitor["checks"]] == [2, 4] and summary["stopped_at_step"] is None
    assert {"collapse_diversity", "collapse_duplicates"} <= set(summary["final"])
    assert all(0.0 <= check["duplicate_fraction"] <= 1.0 and check["sample_diversity"] >= 0.0
               for check in monitor["checks"])
    grid = tf.io.decode_png(tf.io.read_file(os.path.join(fn_args.model_run_dir, "samples.png")))
    assert tuple(grid.shape) == (gan.GRID_ROWS * 30, gan.GRID_COLUMNS * 30, 1)

    loaded = tf.saved_model.load(fn_args.serving_model_dir)
    assert set(loaded.signatures) == {sig.SERVING_DEFAULT, sig.SAMPLE, sig.GENERATE}
    images = _sample(loaded, 5, 3)
    assert images.shape == (5, 28, 28, 1) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    np.testing.assert_array_equal(images, _sample(loaded, 5, 3))
    assert not np.allclose(images, _sample(loaded, 5, 4))
    default = loaded.signatures[sig.SERVING_DEFAULT](**{sig.NUM_INPUT: tf.constant(5), sig.SEED_INPUT: tf.constant(3)})
    np.testing.assert_array_equal(default[sig.IMAGES_OUTPUT].numpy(), images)

    # generate at sample's latent points gives sample's images.
    generated = loaded.signatures[sig.GENERATE](**{sig.LATENT_INPUT: gan.latent_grid(32, 3, 5)})[sig.IMAGES_OUTPUT]
    np.testing.assert_allclose(generated.numpy(), images, atol=1e-6)

    # The untrained baseline: the seed's initial weights, not the trained ones.
    untrained_dir = gan.untrained_model_dir(fn_args.serving_model_dir)
    assert untrained_dir == str(tmp_path / "export" / "Untrained-Format-Serving")
    untrained = tf.saved_model.load(untrained_dir)
    assert set(untrained.signatures) == {sig.SERVING_DEFAULT, sig.SAMPLE, sig.GENERATE}
    before = _sample(untrained, 5, 3)
    assert before.shape == (5, 28, 28, 1) and before.min() >= 0.0 and before.max() <= 1.0
    assert np.abs(before - images).max() > 1e-3
    keras.utils.set_random_seed(0)
    fresh, _ = gan.build_networks("dcgan")
    expected = gan.to_unit_range(fresh(gan.latent_grid(32, 3, 5), training=False), "symmetric")
    np.testing.assert_allclose(before, expected.numpy(), atol=1e-6)


def test_stop_on_collapse_stops_training_at_the_alarm_and_still_exports(transformed_symmetric, tmp_path):
    """A diversity floor no generator can meet makes every check fail: with patience 2 the alarm goes
    off at the second chunk, training stops there, and the generator is exported for the evaluator."""
    from trainer_modules import collapse

    fn_args = _fn_args(transformed_symmetric, tmp_path, "stop", train_steps=8, **{
        collapse.MIN_DIVERSITY: 1.0, collapse.WARMUP_FRACTION: 0.0, collapse.STOP_ON_COLLAPSE: True})
    fn_args.custom_config[collapse.MIN_DIVERSITY] = 1.0  # diversity 1.0 = as varied as the real images
    gan.run_fn(fn_args)
    summary = _summary(fn_args)
    monitor = summary["collapse_monitor"]
    assert monitor["alarm"]["step"] == 4 and "mode-collapse alarm at step 4" in monitor["alarm"]["message"]
    assert monitor["stopped_early"] is True and summary["stopped_at_step"] == 4 and summary["steps_this_run"] == 4
    assert [check["failing"] for check in monitor["checks"]] == [True, True]
    assert tf.io.gfile.exists(os.path.join(fn_args.serving_model_dir, "saved_model.pb"))


def test_value_range_mismatch_is_named(transformed_data, tmp_path):
    fn_args = _fn_args(transformed_data, tmp_path, "mismatch")  # dcgan on [0, 1] images
    with pytest.raises(ValueError, match="value_range 'symmetric'"):
        gan.run_fn(fn_args)


def test_killed_trainer_resumes_from_checkpoint(transformed_data, tmp_path, monkeypatch):
    dense = {gan.VARIANT: "dense"}
    fn_args = _fn_args(transformed_data, tmp_path, "first", train_steps=6, **dense)
    kill_after_chunks(gan.run_fn, fn_args, monkeypatch)
    first_untrained = tf.saved_model.load(gan.untrained_model_dir(fn_args.serving_model_dir))

    # A new execution writes to a new artifact directory but finds the checkpoint by its run key.
    rerun = _fn_args(transformed_data, tmp_path, "second", train_steps=6, **dense)
    gan.run_fn(rerun)
    summary = _summary(rerun)
    assert summary["resumed_from_epoch"] == 1 and summary["steps_this_run"] == 4
    # The collapse monitor's checks came back with the checkpoint: the report covers the whole run.
    assert [check["step"] for check in summary["collapse_monitor"]["checks"]] == [2, 4, 6]
    assert os.path.exists(os.path.join(rerun.serving_model_dir, "saved_model.pb"))
    # Its untrained export is still the initial generator, not the restored one.
    second_untrained = tf.saved_model.load(gan.untrained_model_dir(rerun.serving_model_dir))
    np.testing.assert_array_equal(_sample(first_untrained, 4, 1), _sample(second_untrained, 4, 1))
    trained = tf.saved_model.load(rerun.serving_model_dir)
    assert np.abs(_sample(trained, 4, 1) - _sample(second_untrained, 4, 1)).max() > 1e-4


def test_mirrored_strategies_in_one_process_keep_their_collectives_apart():
    # Two plain MirroredStrategy instances reuse collective keys: the second all_reduce of another shape fails.
    for size in (3, 5):
        strategy = training.choose_strategy("mirrored")
        all_reduce = tf.function(lambda: tf.distribute.get_replica_context().all_reduce("sum", tf.ones([size])))
        results = strategy.experimental_local_results(strategy.run(all_reduce))
        np.testing.assert_array_equal(results[0].numpy(), np.full([size], 2.0))


def test_mirrored_strategy_on_two_logical_cpus(transformed_symmetric, tmp_path):
    strategy = training.choose_strategy("mirrored")
    if strategy.num_replicas_in_sync < 2:
        pytest.fail("the session fixture should have split the CPU into two logical devices")
    fn_args = _fn_args(transformed_symmetric, tmp_path, "mirrored", train_steps=2,
                       **{training.STRATEGY: "mirrored", gan.LATENT_DIM: 16, gan.D_STEPS: 2})
    gan.run_fn(fn_args)
    summary = _summary(fn_args)
    assert summary["strategy"] == "MirroredStrategy"
    assert summary["replicas"] == 2 and summary["global_batch_size"] == 16
    assert all(np.isfinite(v) for v in summary["final"].values())
    loaded = tf.saved_model.load(fn_args.serving_model_dir)
    generated = loaded.signatures[sig.GENERATE](**{sig.LATENT_INPUT: tf.zeros([2, 16])})[sig.IMAGES_OUTPUT]
    assert generated.shape == (2, 28, 28, 1)


def test_dcgan64_on_digits_names_the_transform_image_shape(transformed_symmetric, tmp_path):
    fn_args = _fn_args(transformed_symmetric, tmp_path, "faces_on_digits", **{gan.VARIANT: "dcgan64"})
    with pytest.raises(ValueError, match=r"needs 'image' of shape \(64, 64, 3\).*\(28, 28, 1\).*'image_shape'"):
        gan.run_fn(fn_args)


def test_dcgan64_trains_mirrored_in_mixed_bfloat16_and_exports_float32(transformed_faces, tmp_path):
    # Two logical CPUs under MirroredStrategy, bfloat16 compute (the TPU policy), batch 8 per replica.
    fn_args = _fn_args(transformed_faces, tmp_path, "faces", train_steps=2, **{
        gan.VARIANT: "dcgan64", training.STRATEGY: "mirrored", training.MIXED_PRECISION: "mixed_bfloat16"})
    gan.run_fn(fn_args)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after run_fn

    summary = _summary(fn_args)
    assert (summary["strategy"], summary["replicas"], summary["global_batch_size"]) == ("MirroredStrategy", 2, 16)
    assert summary["precision"] == "mixed_bfloat16" and summary["train_steps"] == 2
    assert summary["gan"]["latent_dim"] == 128
    assert all(np.isfinite(v) for v in summary["final"].values())
    assert tf.io.gfile.glob(os.path.join(fn_args.model_run_dir, "images", "*tfevents*"))
    grid = tf.io.decode_png(tf.io.read_file(os.path.join(fn_args.model_run_dir, "samples.png")))
    assert tuple(grid.shape) == (gan.GRID_ROWS * 66, gan.GRID_COLUMNS * 66, 3)  # an RGB grid

    loaded = tf.saved_model.load(fn_args.serving_model_dir)
    assert set(loaded.signatures) == {sig.SERVING_DEFAULT, sig.SAMPLE, sig.GENERATE}
    for name in (sig.SAMPLE, sig.GENERATE):
        assert loaded.signatures[name].structured_outputs[sig.IMAGES_OUTPUT].dtype == tf.float32
    reader = tf.train.load_checkpoint(os.path.join(fn_args.serving_model_dir, "variables", "variables"))
    dtypes = {d for name, d in reader.get_variable_to_dtype_map().items() if name.endswith("VARIABLE_VALUE")}
    assert dtypes == {tf.float32}  # mixed precision keeps float32 weights; only the compute was bfloat16
    images = _sample(loaded, 3, 5)
    assert images.shape == (3, 64, 64, 3) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    np.testing.assert_array_equal(images, _sample(loaded, 3, 5))
    assert not np.allclose(images, _sample(loaded, 3, 6))
    generated = loaded.signatures[sig.GENERATE](**{sig.LATENT_INPUT: gan.latent_grid(128, 5, 3)})[sig.IMAGES_OUTPUT]
    np.testing.assert_allclose(generated.numpy(), images, atol=1e-6)

    untrained = tf.saved_model.load(gan.untrained_model_dir(fn_args.serving_model_dir))
    before = _sample(untrained, 3, 5)
    assert before.shape == (3, 64, 64, 3) and before.min() >= 0.0 and before.max() <= 1.0
    assert np.abs(before - images).max() > 1e-3
