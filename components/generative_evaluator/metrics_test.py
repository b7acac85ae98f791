"""Metrics and the blessing rule, with answers known in advance."""
import numpy as np
import pytest

from components.generative_evaluator import blessing, metrics


def _images(seed=0, n=4):
    return np.random.default_rng(seed).random((n, 28, 28, 1)).astype(np.float32)


def test_psnr_of_identical_images_is_capped():
    images = _images()
    np.testing.assert_array_equal(metrics.psnr(images, images), metrics.PSNR_CAP_DB)


def test_ssim_of_identical_images_is_one():
    images = _images()
    np.testing.assert_allclose(metrics.ssim(images, images), 1.0, atol=1e-6)


def test_known_mse_and_psnr():
    clean = np.zeros((1, 28, 28, 1), np.float32)
    shifted = clean + 0.1
    np.testing.assert_allclose(metrics.mse(clean, shifted), 0.01, rtol=1e-6)
    np.testing.assert_allclose(metrics.psnr(clean, shifted), 20.0, rtol=1e-6)


def test_bce_matches_closed_form():
    target = np.full((1, 2, 2, 1), 1.0)
    prediction = np.full((1, 2, 2, 1), 0.5)
    np.testing.assert_allclose(metrics.bce(target, prediction), np.log(2.0), rtol=1e-6)


def test_mean_filter_of_constant_image_is_unchanged():
    constant = np.full((2, 28, 28, 1), 0.3, np.float32)
    np.testing.assert_allclose(metrics.mean_filter(constant), constant, atol=1e-6)


def test_denoising_metrics_report_gain_over_noisy_input():
    clean = _images(1)
    noisy = np.clip(clean + np.random.default_rng(2).normal(0, 0.5, clean.shape), 0, 1)
    per_image = metrics.reconstruction_metrics(clean, clean * 0.98, noisy)
    assert np.all(per_image["psnr_gain_db"] > 20)
    np.testing.assert_allclose(per_image["psnr_gain_db"], per_image["psnr_db"] - per_image["noisy_psnr_db"])


def test_thresholds_and_baseline_regression():
    candidate = {"psnr_db": 20.0, "ssim": 0.8}
    assert blessing.decide(candidate, {"psnr_db": {"min": 18}}, None, None) == (True, [])
    blessed, reasons = blessing.decide(candidate, {"ssim": {"min": 0.9}}, None, None)
    assert not blessed and "ssim = 0.8 is below the minimum 0.9" in reasons[0]
    comparison = {"metric": "psnr_db", "tolerance": 0.5}
    assert blessing.decide(candidate, {}, {"psnr_db": 20.4}, comparison)[0]
    blessed, reasons = blessing.decide(candidate, {}, {"psnr_db": 21.0}, comparison)
    assert not blessed and "worse than the latest blessed model" in reasons[0]
    assert not blessing.decide({"mse": 0.2}, {}, {"mse": 0.1}, {"metric": "mse", "tolerance": 0.05})[0]


def test_missing_metric_and_bad_threshold_keys():
    assert not blessing.decide({}, {"psnr_gain_db": {"min": 1}}, None, None)[0]
    with pytest.raises(ValueError, match="unknown keys"):
        blessing.check_thresholds({"mse": 1.0}, {"mse": {"below": 2}})
