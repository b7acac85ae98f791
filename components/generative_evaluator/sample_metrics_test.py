"""Sample-quality metrics, with answers known in advance."""
import logging
import math
import os
import re

import numpy as np
import pytest

from components.generative_evaluator import metrics, sample_metrics

DIM = 6


def _diagonal_gaussians():
    mu1, mu2 = np.zeros(DIM), np.linspace(-1.0, 1.0, DIM)
    var1, var2 = np.linspace(0.5, 2.0, DIM), np.linspace(2.0, 0.3, DIM)
    return mu1, var1, mu2, var2


def _diagonal_closed_form(mu1, var1, mu2, var2):
    return np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)


def _random_covariance(rng, dim=DIM):
    factor = rng.normal(size=(dim, dim))
    return factor @ factor.T / dim + 0.1 * np.eye(dim)


def test_frechet_distance_of_a_set_with_itself_is_zero():
    features = np.random.default_rng(0).normal(size=(2000, DIM)) @ _random_covariance(np.random.default_rng(1))
    distance = sample_metrics.frechet_distance_from_features(features, features)
    assert 0.0 <= distance <= 1e-6 * np.trace(np.cov(features, rowvar=False))


def test_frechet_distance_of_known_gaussians():
    mu1, var1, mu2, var2 = _diagonal_gaussians()
    expected = _diagonal_closed_form(mu1, var1, mu2, var2)
    assert sample_metrics.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-9)
    # The same Gaussians in a rotated basis: covariances are no longer diagonal but still commute.
    rotation, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(DIM, DIM)))
    rotated = sample_metrics.frechet_distance(
        rotation @ mu1, rotation @ np.diag(var1) @ rotation.T, rotation @ mu2, rotation @ np.diag(var2) @ rotation.T
    )
    assert rotated == pytest.approx(expected, rel=1e-9)
    assert sample_metrics.frechet_distance([1.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(4.0 + 1.0)


def test_frechet_distance_of_gaussian_samples_matches_the_true_parameters():
    rng = np.random.default_rng(3)
    count = 20_000
    mu1, var1, mu2, var2 = _diagonal_gaussians()
    first = rng.normal(mu1, np.sqrt(var1), size=(count, DIM))
    second = rng.normal(mu2, np.sqrt(var2), size=(count, DIM))
    expected = _diagonal_closed_form(mu1, var1, mu2, var2)  # 4.51; sampling spread ~0.03
    assert sample_metrics.frechet_distance_from_features(first, second) == pytest.approx(expected, rel=0.04)

    # Full, non-commuting covariances: the estimate from samples approaches the distance of the parameters.
    sigma1, sigma2 = _random_covariance(rng), _random_covariance(rng)
    first = rng.multivariate_normal(mu1, sigma1, size=count)
    second = rng.multivariate_normal(mu2, sigma2, size=count)
    expected = sample_metrics.frechet_distance(mu1, sigma1, mu2, sigma2)
    assert sample_metrics.frechet_distance_from_features(first, second) == pytest.approx(expected, rel=0.05)


def test_frechet_distance_with_singular_covariances_stays_finite():
    features = np.random.default_rng(4).normal(size=(5, 8))  # 5 samples in 8 dimensions: rank 4
    assert sample_metrics.frechet_distance_from_features(features, features) == pytest.approx(0.0, abs=1e-4)
    assert sample_metrics.frechet_distance_from_features(features, features + 1.0) == pytest.approx(8.0, rel=1e-4)


def test_streaming_moments_equal_whole_set_moments_after_batches_and_merge():
    features = np.random.default_rng(5).normal(loc=1e4, scale=3.0, size=(1001, DIM))  # large offset: no cancellation
    first, second = sample_metrics.FeatureMoments(), sample_metrics.FeatureMoments()
    for batch in np.array_split(features[:600], 7):
        first.add(batch)
    second.add(features[600:601]).add(np.zeros((0, DIM))).add(features[601:])
    merged = sample_metrics.FeatureMoments().merge(first).merge(sample_metrics.FeatureMoments()).merge(second)
    assert merged.count == len(features)
    np.testing.assert_allclose(merged.mean, np.mean(features, axis=0), rtol=1e-12)
    np.testing.assert_allclose(merged.covariance, np.cov(features, rowvar=False), rtol=1e-9)
    np.testing.assert_allclose(first.covariance, np.cov(features[:600], rowvar=False), rtol=1e-9)


def test_moments_reject_bad_input():
    with pytest.raises(ValueError, match="count=1"):
        _ = sample_metrics.FeatureMoments().add(np.ones((1, DIM))).covariance
    with pytest.raises(ValueError, match=r"\[num_samples, num_features\].*shape \(6,\)"):
        sample_metrics.FeatureMoments().add(np.ones(DIM))
    with pytest.raises(ValueError, match="size 3 with size 6"):
        sample_metrics.FeatureMoments().add(np.ones((2, DIM))).add(np.ones((2, 3)))
    with pytest.raises(ValueError, match="count=1"):
        sample_metrics.frechet_distance_from_features(np.ones((1, DIM)), np.ones((5, DIM)))
    with pytest.raises(ValueError, match="6 and 4 features"):
        sample_metrics.frechet_distance_from_features(np.ones((5, DIM)), np.ones((5, 4)))
    with pytest.raises(ValueError, match=r"sigma2 must be a \[2, 2\] covariance.*\(3, 3\)"):
        sample_metrics.frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(3))
    with pytest.raises(ValueError, match="imaginary component"):
        sample_metrics.frechet_distance(np.zeros(2), -np.eye(2), np.zeros(2), np.eye(2))


def test_single_class_samples_are_collapsed():
    coverage = sample_metrics.mode_coverage(np.full(200, 3), num_classes=10)
    assert coverage["classes_covered"] == 1
    assert coverage["kl_to_uniform"] == pytest.approx(math.log(10))
    assert coverage["max_class_fraction"] == 1.0
    assert coverage["collapsed"]
    assert coverage["class_counts"][3] == 200 and sum(coverage["class_counts"]) == 200


def test_uniform_samples_cover_every_class():
    labels = np.arange(1000) % 10
    for predictions in (labels, np.eye(10)[labels]):  # labels or one-hot probabilities
        coverage = sample_metrics.mode_coverage(predictions, num_classes=10)
        assert coverage["classes_covered"] == 10
        assert coverage["kl_to_uniform"] == pytest.approx(0.0, abs=1e-12)
        assert coverage["class_histogram"] == pytest.approx([0.1] * 10)
        assert not coverage["collapsed"]


def test_collapse_threshold_is_nine_of_ten_by_default_and_configurable():
    nine_classes = np.arange(900) % 9
    assert sample_metrics.mode_coverage(nine_classes, 10)["min_classes"] == 9
    assert not sample_metrics.mode_coverage(nine_classes, 10)["collapsed"]
    assert sample_metrics.mode_coverage(np.arange(800) % 8, 10)["collapsed"]
    assert sample_metrics.mode_coverage(nine_classes, 10, min_classes=10)["collapsed"]
    # A class with 1% of the samples is present but not covered at the default 2%.
    rare = np.concatenate([np.arange(990) % 9, np.full(10, 9)])
    assert sample_metrics.mode_coverage(rare, 10)["classes_covered"] == 9
    assert sample_metrics.mode_coverage(rare, 10, min_fraction=0.01)["classes_covered"] == 10


def test_mode_coverage_rejects_bad_input():
    with pytest.raises(ValueError, match=r"span \[0, 10\]; expected \[0, 9\]"):
        sample_metrics.mode_coverage(np.arange(11), num_classes=10)
    with pytest.raises(ValueError, match="3 classes; expected num_classes=10"):
        sample_metrics.mode_coverage(np.full((4, 3), 1 / 3), num_classes=10)
    with pytest.raises(ValueError, match="at least 1 sample"):
        sample_metrics.mode_coverage(np.zeros(0, np.int64), num_classes=10)


def test_classifier_score_known_answers():
    classes = 10
    confident_and_spread = np.tile(np.eye(classes), (20, 1))
    assert sample_metrics.classifier_score(confident_and_spread) == pytest.approx((classes, 0.0))
    assert sample_metrics.classifier_score(confident_and_spread, splits=4) == pytest.approx((classes, 0.0))
    logits = np.random.default_rng(6).normal(size=classes)
    identical = np.tile(np.exp(logits) / np.exp(logits).sum(), (50, 1))
    assert sample_metrics.classifier_score(identical) == pytest.approx((1.0, 0.0))


def test_classifier_score_rejects_bad_input():
    with pytest.raises(ValueError, match="row 1 sums to 2"):
        sample_metrics.classifier_score(np.array([[1.0, 0.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="negative entries"):
        sample_metrics.classifier_score(np.array([[2.0, -1.0]]))
    with pytest.raises(ValueError, match=r"splits must be an integer in \[1, 2\].*got 3"):
        sample_metrics.classifier_score(np.eye(2), splits=3)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        sample_metrics.classifier_score(np.full(4, 0.25))


def test_sample_quality_reports_flat_named_metrics():
    rng = np.random.default_rng(7)
    real = rng.normal(size=(500, 16))
    labels = np.arange(500) % 10
    report = sample_metrics.sample_quality(real, real, np.eye(10)[labels], num_classes=10)
    assert set(report) == {
        "classifier_fd", "classifier_score", "classifier_score_std", "classes_covered", "kl_to_uniform",
        "max_class_fraction", "num_generated", "num_real", "class_histogram",
    }
    assert report["classifier_fd"] == pytest.approx(0.0, abs=1e-6)
    assert report["classifier_score"] == pytest.approx(10.0)
    assert report["classes_covered"] == 10 and report["num_generated"] == report["num_real"] == 500
    assert not any("fid" in name for name in report)
    with pytest.raises(ValueError, match="has 499 rows but generated_features has 500"):
        sample_metrics.sample_quality(real, real, np.eye(10)[labels[:499]], num_classes=10)


def test_directions_cover_the_comparable_metrics_and_merge_into_higher_is_better():
    assert set(sample_metrics.SAMPLE_METRIC_DIRECTIONS.values()) == {"higher", "lower"}
    assert sample_metrics.SAMPLE_METRIC_DIRECTIONS["classifier_fd"] == "lower"
    assert sample_metrics.SAMPLE_HIGHER_IS_BETTER["classifier_score"] is True
    assert not set(sample_metrics.SAMPLE_HIGHER_IS_BETTER) & set(metrics.HIGHER_IS_BETTER)


def test_inception_fid_status_names_the_missing_weights(tmp_path, caplog):
    assert sample_metrics.inception_fid_status("") == (
        False, "Inception FID skipped: no Inception weights path configured"
    )
    missing = str(tmp_path / "inception_v3_notop.h5")
    available, reason = sample_metrics.inception_fid_status(missing)
    assert not available and reason == f"Inception FID skipped: no local weights at {missing}"
    wrong_kind = tmp_path / "weights.txt"
    wrong_kind.write_text("not weights")
    assert "is not a Keras weights file" in sample_metrics.inception_fid_status(str(wrong_kind))[1]
    with caplog.at_level(logging.WARNING):
        assert sample_metrics.inception_fid_extractor(missing) is None
    assert f"no local weights at {missing}" in caplog.text
    remote_missing = "ram://inception_status/inception_v3_notop.h5"  # TF's in-memory filesystem: a remote path
    assert sample_metrics.inception_fid_status(remote_missing) == (
        False, f"Inception FID skipped: no weights file at {remote_missing}")


def test_inception_inputs_tile_resize_and_scale():
    gray = np.random.default_rng(8).random((2, 28, 28, 1)).astype(np.float32)
    inputs = sample_metrics.inception_inputs(gray)
    assert inputs.shape == (2, 299, 299, 3)
    assert inputs.min() >= -1.0 - 1e-6 and inputs.max() <= 1.0 + 1e-6
    np.testing.assert_allclose(inputs, sample_metrics.inception_inputs(np.repeat(gray, 3, axis=-1)))
    np.testing.assert_allclose(sample_metrics.inception_inputs(np.full((1, 8, 8, 3), 0.5)), 0.0, atol=1e-6)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]; got values in \[-1"):
        sample_metrics.inception_inputs(gray * 2.0 - 1.0)
    with pytest.raises(ValueError, match=r"\[N, H, W, 1 or 3\]; got shape \(28, 28\)"):
        sample_metrics.inception_inputs(gray[0, ..., 0])


def test_inception_extractor_with_random_local_weights(tmp_path):
    """Builds InceptionV3 twice on CPU (~5-10 s): random weights saved to a local file, then loaded by path."""
    import keras

    weights = str(tmp_path / "inception_random.weights.h5")
    network = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(299, 299, 3), pooling="avg")
    network.save_weights(weights)
    assert sample_metrics.inception_fid_status(weights)[0]
    extract = sample_metrics.inception_fid_extractor(weights)
    images = np.random.default_rng(9).random((2, 28, 28, 1))
    features = extract(images)
    assert features.shape == (2, sample_metrics.INCEPTION_FEATURE_DIM) and features.dtype == np.float64
    assert np.all(np.isfinite(features))

    # A remote file (gs://... in production; here TF's in-memory filesystem) is copied locally, then loaded.
    import tensorflow as tf

    remote = "ram://inception_weights/inception_random.weights.h5"
    tf.io.gfile.makedirs(os.path.dirname(remote))
    tf.io.gfile.copy(weights, remote, overwrite=True)
    assert sample_metrics.inception_fid_status(remote) == (True, f"Inception FID uses the weights at {remote}")
    np.testing.assert_allclose(sample_metrics.inception_fid_extractor(remote)(images), features, rtol=1e-5)


def test_inception_weights_that_do_not_load_are_named(tmp_path):
    """A corrupt file and another model's weights: Keras's own errors do not say which file they read."""
    import keras

    garbage = tmp_path / "inception_v3_notop.h5"
    garbage.write_bytes(b"not an HDF5 file")
    other = str(tmp_path / "dense.weights.h5")
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    dense.save_weights(other)
    for path in (str(garbage), other):
        with pytest.raises(ValueError, match=f"Inception weights {re.escape(path)}: cannot be loaded as the weights "
                                             r"of keras.applications.InceptionV3\(include_top=False"):
            sample_metrics.inception_fid_extractor(path)


# ---------------------------------------------------------------------------
# Attribute agreement (face generators judged by a multi-label attribute classifier)


def _attribute_probabilities(rates, count, seed):
    """Probabilities whose thresholded rates are exactly `rates` (count must make rates * count whole)."""
    rng = np.random.default_rng(seed)
    columns = []
    for rate in rates:
        present = np.zeros(count, bool)
        present[: int(round(rate * count))] = True
        rng.shuffle(present)
        columns.append(np.where(present, rng.uniform(0.6, 1.0, count), rng.uniform(0.0, 0.4, count)))
    return np.stack(columns, axis=1)


def test_attribute_agreement_of_a_set_with_itself():
    real = _attribute_probabilities([0.5, 0.2, 0.9], 100, seed=0)
    result = sample_metrics.attribute_agreement(real, real, names=["Smiling", "Bald", "Young"])
    assert result["attribute_rate_gap"] == 0.0
    assert result["attribute_diversity"] == pytest.approx(1.0)
    assert not result["collapsed"]
    assert result["attribute_rates"] == {"Smiling": 0.5, "Bald": 0.2, "Young": 0.9}


def test_attribute_gaps_have_known_values():
    real = _attribute_probabilities([0.5, 0.2, 0.9], 100, seed=0)
    generated = _attribute_probabilities([0.7, 0.2, 0.6], 100, seed=1)
    result = sample_metrics.attribute_agreement(real, generated, names=["Smiling", "Bald", "Young"])
    assert result["attribute_rate_gap"] == pytest.approx((0.2 + 0.0 + 0.3) / 3)
    assert result["attribute_max_gap"] == pytest.approx(0.3)
    assert result["attribute_max_gap_name"] == "Young"
    expected = (0.7 * 0.3 + 0.2 * 0.8 + 0.6 * 0.4) / (0.5 * 0.5 + 0.2 * 0.8 + 0.9 * 0.1)
    assert result["attribute_diversity"] == pytest.approx(expected)


def test_one_kind_of_face_is_flagged_as_collapsed():
    real = _attribute_probabilities([0.5, 0.2, 0.9, 0.4], 100, seed=0)
    one_face = np.tile([[0.9, 0.1, 0.95, 0.2]], (100, 1))  # every sample: the same attributes
    result = sample_metrics.attribute_agreement(real, one_face)
    assert result["attribute_diversity"] == 0.0
    assert result["collapsed"]
    assert result["attribute_max_gap_name"] == "attribute_0"


def test_attribute_agreement_rejects_bad_input():
    real = _attribute_probabilities([0.5, 0.5], 10, seed=0)
    with pytest.raises(ValueError, match="real images have 2 attributes, generated 3"):
        sample_metrics.attribute_agreement(real, np.full((10, 3), 0.5))
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\] \(sigmoid outputs\)"):
        sample_metrics.attribute_agreement(real, real * 4 - 2)
    with pytest.raises(ValueError, match="1 attribute names for 2 attributes"):
        sample_metrics.attribute_agreement(real, real, names=["Smiling"])


def test_precision_recall_density_coverage_of_a_worked_1d_example():
    """Real 0, 1, 2, 3 with k = 1: every real ball has radius 1. Sample 0.5 sits in the balls of 0
    and 1, samples 10 and 11 in none: precision 1/3, density (2 + 0 + 0) / 3. Real 0 and 1 have a
    sample within their radius, 2 and 3 do not: coverage 1/2. Sample 0.5's own ball reaches its
    nearest sample, 10, so it holds every real image: recall 1."""
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    generated = np.array([[0.5], [10.0], [11.0]])
    assert sample_metrics.fidelity_diversity(real, generated, nearest_k=1) == pytest.approx({
        "sample_precision": 1 / 3, "sample_recall": 1.0, "sample_density": 2 / 3, "sample_coverage": 0.5})


def test_samples_of_the_real_distribution_score_near_one_and_a_collapsed_set_loses_coverage():
    rng = np.random.default_rng(0)
    real, same = rng.standard_normal((800, 8)), rng.standard_normal((800, 8))
    matched = sample_metrics.fidelity_diversity(real, same)
    assert matched["sample_precision"] > 0.85 and matched["sample_recall"] > 0.85
    assert matched["sample_density"] == pytest.approx(1.0, abs=0.15)
    assert matched["sample_coverage"] == pytest.approx(1 - 2 ** -5, abs=0.03)  # Naeem et al.'s expectation
    # Every sample a small jitter of one real image: faithful, but no diversity.
    collapsed = sample_metrics.fidelity_diversity(real, real[:1] + 0.01 * rng.standard_normal((800, 8)))
    assert collapsed["sample_precision"] > 0.95
    assert collapsed["sample_recall"] < 0.02 and collapsed["sample_coverage"] < 0.02
    assert collapsed["sample_density"] > 1.5  # all crowded into one real image's neighbourhood
    # Samples off the real manifold: none is faithful, none covers a real image.
    away = sample_metrics.fidelity_diversity(real, same + 20.0)
    assert away == {"sample_precision": 0.0, "sample_recall": 0.0, "sample_density": 0.0, "sample_coverage": 0.0}


def test_fidelity_diversity_rejects_too_few_points_and_mismatched_features():
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="at least 7 real and generated images; got 6 and 40"):
        sample_metrics.fidelity_diversity(rng.standard_normal((6, 3)), rng.standard_normal((40, 3)))
    with pytest.raises(ValueError, match="3 dimensions, generated ones 4"):
        sample_metrics.fidelity_diversity(rng.standard_normal((40, 3)), rng.standard_normal((40, 4)))
    with pytest.raises(ValueError, match="nearest_k must be a positive integer"):
        sample_metrics.fidelity_diversity(rng.standard_normal((40, 3)), rng.standard_normal((40, 3)), nearest_k=0)


def test_canonical_subset_picks_the_same_rows_whatever_their_order():
    rows = np.random.default_rng(2).standard_normal((300, 4))
    shuffled = rows[np.random.default_rng(3).permutation(300)]
    first, second = sample_metrics.canonical_subset(rows, 100), sample_metrics.canonical_subset(shuffled, 100)
    assert first.shape == (100, 4)
    np.testing.assert_array_equal(first, second)
    assert {tuple(row) for row in first} <= {tuple(row) for row in rows}
    np.testing.assert_array_equal(np.sort(sample_metrics.canonical_subset(rows, 1000), axis=0), np.sort(rows, axis=0))
    with pytest.raises(ValueError, match="max_points must be at least 1"):
        sample_metrics.canonical_subset(rows, 0)


def test_training_cells_give_each_vector_its_cell_and_the_distance_within_it():
    # Two far-apart groups of training vectors: two cells, one per group.
    train = np.array([[0.0, 0.0], [0.0, 1.0], [100.0, 0.0], [100.0, 3.0]])
    cells = sample_metrics.TrainingCells(train, num_cells=2)
    assigned, distances = cells.assign([[0.0, 4.0], [100.0, 3.0], [96.0, 0.0]])
    assert assigned[1] == assigned[2] != assigned[0]
    np.testing.assert_allclose(distances, [3.0, 0.0, 4.0])
    # The batches' order does not change the cells.
    again = sample_metrics.TrainingCells(train[::-1], num_cells=2).assign([[0.0, 4.0], [100.0, 3.0]])[0]
    np.testing.assert_array_equal(again, assigned[:2])
    # More cells than distinct vectors: as many cells as there are.
    assert sample_metrics.TrainingCells(np.ones((5, 2)), num_cells=20).num_cells == 1
    with pytest.raises(ValueError, match="query features must be a"):
        cells.assign([1.0, 2.0])


def test_mann_whitney_z_with_ties_known_answers():
    # Two copies (distance 0) against held-out images at 1, 2, 3: U = 0 pairs where a sample is
    # farther; m n / 2 = 3; variance m n / 12 ((m + n + 1) - sum(t^3 - t) / ((m + n)(m + n - 1)))
    # = 6 / 12 (6 - 6 / 20) = 2.85, so z = -3 / sqrt(2.85).
    assert sample_metrics.mann_whitney_z([0.0, 0.0], [1.0, 2.0, 3.0]) == pytest.approx(-3 / math.sqrt(2.85))
    from scipy import stats

    generated, heldout = np.array([0.5, 2.0, 2.0, 4.0]), np.array([1.0, 2.0, 3.0])
    u = stats.mannwhitneyu(generated, heldout).statistic
    variance = 4 * 3 / 12 * (8 - (27 - 3) / (7 * 6))  # 2.0 is tied three times
    assert sample_metrics.mann_whitney_z(generated, heldout) == pytest.approx((u - 6) / math.sqrt(variance))
    assert sample_metrics.mann_whitney_z(heldout, heldout) == 0.0


def test_c_t_is_the_held_out_weighted_mean_of_the_cells_z():
    rng = np.random.default_rng(0)
    # Cell 0 holds 300 held-out images, cell 1 holds 100; the samples copy in cell 0 only.
    held = {0: rng.gamma(4.0, size=300), 1: rng.gamma(4.0, size=100)}
    gen = {0: rng.gamma(4.0, size=50) * 0.2, 1: rng.gamma(4.0, size=60), 2: rng.gamma(4.0, size=5)}
    result = sample_metrics.data_copying(
        np.concatenate(list(gen.values())), np.repeat([0, 1, 2], [50, 60, 5]),
        np.concatenate(list(held.values())), np.repeat([0, 1], [300, 100]))
    expected = (0.75 * sample_metrics.mann_whitney_z(gen[0], held[0])
                + 0.25 * sample_metrics.mann_whitney_z(gen[1], held[1]))
    assert result["data_copying_ct"] == pytest.approx(expected)
    assert result["data_copying_cells"] == 2 and result["data_copying_cells_total"] == 3  # cell 2: no held-out
    # A cell with no more than 20 samples does not enter C_T (the paper's tau = 20 / m).
    few = sample_metrics.data_copying(gen[0][:20], np.zeros(20), held[0], np.zeros(300))
    assert few["data_copying_ct"] is None and few["data_copying_cells"] == 0
    assert few["near_train_fraction"] > 0.5


def test_samples_as_far_from_training_as_held_out_images_are_not_copies():
    rng = np.random.default_rng(0)
    heldout, held_cells = rng.gamma(4.0, size=1000), rng.integers(0, 5, size=1000)
    cells = rng.integers(0, 5, size=2000)

    def test(scale):
        return sample_metrics.data_copying(rng.gamma(4.0, size=2000) * scale, cells, heldout, held_cells)

    assert sample_metrics.data_copying(heldout, held_cells, heldout, held_cells)["data_copying_ct"] == 0.0
    fresh = test(1.0)
    assert abs(fresh["data_copying_ct"]) < 3 and fresh["near_train_fraction"] == pytest.approx(0.05, abs=0.02)
    copies = test(0.5)  # twice as close to the training images as new images are
    assert copies["data_copying_ct"] < -5 and copies["near_train_fraction"] > 0.2
    underfit = test(2.0)
    assert underfit["data_copying_ct"] > 5 and underfit["train_distance_ratio"] > 1.5
    with pytest.raises(ValueError, match="needs generated and held-out distances, got 0 and 1000"):
        sample_metrics.data_copying([], [], heldout, held_cells)
    with pytest.raises(ValueError, match="4 cells for 2000 samples"):
        sample_metrics.data_copying(rng.gamma(4.0, size=2000), [0, 1, 2, 3], heldout, held_cells)


def test_slerp_walks_the_great_circle_between_the_endpoints():
    from components.generative_evaluator import sampling

    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    walk = sampling.slerp(a * 2, b * 2, np.linspace(0, 1, 5))
    np.testing.assert_allclose(walk[0], a * 2, atol=1e-12)
    np.testing.assert_allclose(walk[-1], b * 2, atol=1e-12)
    np.testing.assert_allclose(walk[2], np.array([1.0, 1.0, 0.0]) * 2 / math.sqrt(2))  # the midpoint of the arc
    np.testing.assert_allclose(np.linalg.norm(walk, axis=1), 2.0)  # never inside the sphere, unlike the line
    # Parallel endpoints have no unique circle: the straight line.
    np.testing.assert_allclose(sampling.slerp(a, 3 * a, [0.5]), [2 * a])
    latents = sampling.interpolation_latents(16, seed=3, rows=4, steps=6)
    assert latents.shape == (24, 16) and latents.dtype == np.float32
    np.testing.assert_array_equal(latents, sampling.interpolation_latents(16, seed=3, rows=4, steps=6))
