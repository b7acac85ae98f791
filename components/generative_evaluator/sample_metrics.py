"""Sample-quality metrics of the GenerativeEvaluator: Fréchet distance, classifier score, mode coverage,
attribute agreement (faces), precision, recall, density and coverage, and the data-copying test.

The distance and the score are computed on the features and probabilities of the domain
classifier trained on the labelled data, so they are reported as `classifier_fd` and
`classifier_score`, never as FID or Inception score. Inception FID is computed only where
InceptionV3 weights exist as a file (local, or gs://... through tf.io.gfile); weights are never
downloaded.

Everything here is numpy in float64; Keras is imported only to build the Inception extractor.
"""
import contextlib
import io
import logging
import os
import tempfile
import warnings
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import scipy.linalg
import scipy.stats

from components import files

# Direction of each comparable sample metric, for thresholds and baseline comparison.
SAMPLE_METRIC_DIRECTIONS = {
    "classifier_fd": "lower",
    "classifier_score": "higher",
    "classes_covered": "higher",
    "kl_to_uniform": "lower",
    "max_class_fraction": "lower",
    "inception_fid": "lower",
    "attribute_rate_gap": "lower",
    "attribute_diversity": "higher",
    "data_copying_ct": "higher",
    "near_train_fraction": "lower",
    # Density is left out: above 1 it means samples crowd the dense regions, not better samples.
    "sample_precision": "higher",
    "sample_recall": "higher",
    "sample_coverage": "higher",
}
# The same in the form of metrics.HIGHER_IS_BETTER, ready to merge into it.
SAMPLE_HIGHER_IS_BETTER = {name: direction == "higher" for name, direction in SAMPLE_METRIC_DIRECTIONS.items()}

INCEPTION_FEATURE_DIM = 2048
INCEPTION_IMAGE_SIZE = 299
INCEPTION_WEIGHT_SUFFIXES = (".h5", ".hdf5", ".keras")

_SQRTM_EPS = 1e-6
_SQRTM_MAX_RELATIVE_RESIDUAL = 1e-3
_MAX_IMAGINARY = 1e-3
_PROBABILITY_SUM_TOLERANCE = 1e-3
# The data-copying test (data_copying): cells of the training set, the generated samples a cell needs
# to count (the paper's tau = 20 / m), and "near" a training image = closer than 95% of held-out images.
DATA_COPYING_CELLS = 20
DATA_COPYING_MIN_PER_CELL = 20
NEAR_TRAIN_QUANTILE = 0.05
# Precision, recall, density and coverage (fidelity_diversity): k of the k-NN balls (Naeem et al.
# recommend 5), and the most images compared per side (the pairwise distances grow as N^2).
PRDC_NEAREST_K = 5
PRDC_MAX_POINTS = 5000
PRDC_METRICS = ("precision", "recall", "density", "coverage")


def _features_2d(features, name: str) -> np.ndarray:
    array = np.asarray(features, np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a [num_samples, num_features] array; got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


class FeatureMoments:
    """Streaming, mergeable mean and covariance of feature vectors (a Beam CombineFn accumulator).

    Holds the count, the mean and the sum of outer products of deviations from the mean in
    float64; batches and partial results combine with the pairwise update of Chan et al., which
    gives np.mean / np.cov of the whole set without the cancellation of raw second moments.
    """

    def __init__(self, num_features: Optional[int] = None):
        self.num_features = num_features
        self._count = 0
        self._mean = None
        self._centered_outer = None  # sum over samples of (x - mean)(x - mean)^T

    def add(self, batch) -> "FeatureMoments":
        """Adds a [n, num_features] batch; returns self."""
        batch = _features_2d(batch, "feature batch")
        if len(batch) == 0:
            return self
        batch_moments = FeatureMoments(batch.shape[1])
        batch_moments._count = len(batch)
        batch_moments._mean = batch.mean(axis=0)
        centered = batch - batch_moments._mean
        batch_moments._centered_outer = centered.T @ centered
        return self.merge(batch_moments)

    def merge(self, other: "FeatureMoments") -> "FeatureMoments":
        """Folds another accumulator into this one; returns self."""
        if other._count == 0:
            return self
        if self.num_features is not None and other.num_features != self.num_features:
            raise ValueError(f"cannot combine features of size {other.num_features} with size {self.num_features}")
        if self._count == 0:
            self.num_features = other.num_features
            self._count = other._count
            self._mean = other._mean.copy()
            self._centered_outer = other._centered_outer.copy()
            return self
        total = self._count + other._count
        delta = other._mean - self._mean
        self._centered_outer = (
            self._centered_outer + other._centered_outer + np.outer(delta, delta) * (self._count * other._count / total)
        )
        self._mean = self._mean + delta * (other._count / total)
        self._count = total
        return self

    @property
    def count(self) -> int:
        return self._count

    @property
    def mean(self) -> np.ndarray:
        if self._count == 0:
            raise ValueError("the mean of features needs at least 1 sample; got 0")
        return self._mean.copy()

    @property
    def covariance(self) -> np.ndarray:
        """Unbiased (N - 1) covariance, as np.cov(features, rowvar=False)."""
        if self._count < 2:
            raise ValueError(f"a feature covariance needs at least 2 samples; got count={self._count}")
        return self._centered_outer / (self._count - 1)


def _matrix_sqrt(matrix: np.ndarray) -> Tuple[np.ndarray, bool]:
    """(sqrtm(matrix), ok): ok is False when the result is non-finite or does not square back."""
    root, _ = scipy.linalg.sqrtm(matrix, disp=False)  # disp=False: no print on failure, NaNs instead
    if not np.all(np.isfinite(root)):
        return root, False
    residual = np.linalg.norm(root @ root - matrix) / max(np.linalg.norm(matrix), np.finfo(np.float64).tiny)
    return root, residual <= _SQRTM_MAX_RELATIVE_RESIDUAL


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = _SQRTM_EPS) -> float:
    """Fréchet distance of two Gaussians: ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)).

    When S1 S2 is singular (its square root fails or does not square back), eps * I is added
    to both covariances. Imaginary parts of the root from rounding are dropped; a diagonal
    imaginary part above 1e-3 raises ValueError.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(f"means must be vectors of the same length; got mu1 {mu1.shape} and mu2 {mu2.shape}")
    dim = mu1.shape[0]
    for name, sigma in (("sigma1", sigma1), ("sigma2", sigma2)):
        if sigma.shape != (dim, dim):
            raise ValueError(f"{name} must be a [{dim}, {dim}] covariance to match the means; got {sigma.shape}")
        if not np.all(np.isfinite(sigma)):
            raise ValueError(f"{name} contains NaN or infinite values")

    covmean, ok = _matrix_sqrt(sigma1 @ sigma2)
    if not ok:
        logging.warning("Fréchet distance: S1 S2 is singular; adding %g * I to both covariances", eps)
        offset = np.eye(dim) * eps
        covmean, _ = _matrix_sqrt((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        largest = np.max(np.abs(np.diagonal(covmean).imag))
        if largest > _MAX_IMAGINARY:
            raise ValueError(f"Fréchet distance: sqrt(S1 S2) has an imaginary component of {largest:.3g}")
        covmean = covmean.real

    diff = mu1 - mu2
    distance = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)
    return float(max(distance, 0.0))  # the true distance is >= 0; rounding can leave a tiny negative


def frechet_distance_from_moments(a: FeatureMoments, b: FeatureMoments, eps: float = _SQRTM_EPS) -> float:
    """Fréchet distance between the Gaussians fitted to two streamed feature sets."""
    return frechet_distance(a.mean, a.covariance, b.mean, b.covariance, eps=eps)


def frechet_distance_from_features(a, b, eps: float = _SQRTM_EPS) -> float:
    """Fréchet distance between Gaussians fitted to two [N, D] feature arrays."""
    a, b = _features_2d(a, "first feature set"), _features_2d(b, "second feature set")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets differ in size: {a.shape[1]} and {b.shape[1]} features")
    return frechet_distance_from_moments(FeatureMoments().add(a), FeatureMoments().add(b), eps=eps)


def _probabilities(probabilities, name: str = "probabilities") -> np.ndarray:
    p = _features_2d(probabilities, name)
    if p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty [num_samples, num_classes] array; got shape {p.shape}")
    if np.any(p < 0):
        raise ValueError(f"{name} has negative entries (min {p.min():.3g}); expected softmax outputs, not logits")
    sums = p.sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1.0)))
    if abs(sums[worst] - 1.0) > _PROBABILITY_SUM_TOLERANCE:
        raise ValueError(f"{name} row {worst} sums to {sums[worst]:.6g}; each row must sum to 1")
    return p


def classifier_score(probabilities, splits: int = 1) -> Tuple[float, float]:
    """(mean, std) over splits of exp(E_x KL(p(y|x) || p(y))) on the domain classifier's probabilities.

    Ranges from 1 (every sample gets the same prediction) to K (confident predictions spread
    evenly over K classes). Uses 0 * log 0 = 0.
    """
    p = _probabilities(probabilities)
    count = len(p)
    if not isinstance(splits, (int, np.integer)) or not 1 <= splits <= count:
        raise ValueError(f"splits must be an integer in [1, {count}] (the number of samples); got {splits!r}")
    scores = []
    for i in range(splits):
        part = p[i * count // splits : (i + 1) * count // splits]
        marginal = part.mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(part > 0, part * (np.log(part) - np.log(marginal)), 0.0)
        scores.append(np.exp(np.mean(terms.sum(axis=1))))
    return float(np.mean(scores)), float(np.std(scores))


def default_min_classes(num_classes: int) -> int:
    """ceil(0.9 * num_classes): 9 of 10 classes must be covered for samples not to count as collapsed."""
    return (9 * num_classes + 9) // 10


def _predicted_labels(predictions, num_classes: int) -> np.ndarray:
    array = np.asarray(predictions)
    if array.ndim == 2:
        if array.shape[1] != num_classes:
            raise ValueError(f"probabilities have {array.shape[1]} classes; expected num_classes={num_classes}")
        return np.argmax(_probabilities(array), axis=1)
    if array.ndim != 1:
        raise ValueError(f"predictions must be labels [N] or probabilities [N, K]; got shape {array.shape}")
    if array.size and not np.all(np.equal(np.mod(array, 1), 0)):
        raise ValueError("predicted labels must be whole numbers")
    labels = array.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"predicted labels span [{labels.min()}, {labels.max()}]; expected [0, {num_classes - 1}]")
    return labels


def mode_coverage(predictions, num_classes: int, min_fraction: float = 0.02, min_classes: Optional[int] = None) -> dict:
    """Class histogram of generated samples and whether it shows mode collapse.

    `predictions` are predicted labels [N] or classifier probabilities [N, K] (argmax taken).
    A class is covered when it holds >= min_fraction of the samples; the samples count as
    collapsed when fewer than `min_classes` (default ceil(0.9 * num_classes)) are covered.
    `kl_to_uniform` is KL(histogram || uniform) in nats: 0 for a uniform histogram, log K for one class.
    """
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}")
    if not 0.0 <= min_fraction <= 1.0:
        raise ValueError(f"min_fraction must be in [0, 1]; got {min_fraction}")
    min_classes = default_min_classes(num_classes) if min_classes is None else int(min_classes)
    labels = _predicted_labels(predictions, num_classes)
    if labels.size == 0:
        raise ValueError("mode coverage needs at least 1 sample; got 0")
    counts = np.bincount(labels, minlength=num_classes)
    fractions = counts / labels.size
    nonzero = fractions[fractions > 0]
    classes_covered = int(np.sum(fractions >= min_fraction))
    return {
        "class_counts": [int(c) for c in counts],
        "class_histogram": [float(f) for f in fractions],
        "classes_covered": classes_covered,
        "kl_to_uniform": float(max(np.sum(nonzero * np.log(nonzero * num_classes)), 0.0)),
        "max_class_fraction": float(fractions.max()),
        "min_classes": min_classes,
        "collapsed": classes_covered < min_classes,
        "num_samples": int(labels.size),
    }


def sample_quality(
    real_features,
    generated_features,
    generated_probabilities,
    num_classes: int,
    splits: int = 1,
    min_fraction: float = 0.02,
    min_classes: Optional[int] = None,
) -> Dict[str, object]:
    """Flat sample metrics of a generator, from the domain classifier's features and probabilities.

    Keys: classifier_fd, classifier_score, classifier_score_std, classes_covered, kl_to_uniform,
    max_class_fraction, num_generated, num_real (numbers) and class_histogram (list).
    """
    real = _features_2d(real_features, "real_features")
    generated = _features_2d(generated_features, "generated_features")
    probabilities = _probabilities(generated_probabilities, "generated_probabilities")
    if len(probabilities) != len(generated):
        raise ValueError(
            f"generated_probabilities has {len(probabilities)} rows but generated_features has {len(generated)}"
        )
    score, score_std = classifier_score(probabilities, splits=splits)
    coverage = mode_coverage(probabilities, num_classes, min_fraction=min_fraction, min_classes=min_classes)
    return {
        "classifier_fd": frechet_distance_from_features(real, generated),
        "classifier_score": score,
        "classifier_score_std": score_std,
        "classes_covered": coverage["classes_covered"],
        "kl_to_uniform": coverage["kl_to_uniform"],
        "max_class_fraction": coverage["max_class_fraction"],
        "num_generated": len(generated),
        "num_real": len(real),
        "class_histogram": coverage["class_histogram"],
    }


def _attribute_probabilities(probabilities, name: str) -> np.ndarray:
    p = _features_2d(probabilities, name)
    if p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty [num_images, num_attributes] array; got shape {p.shape}")
    if np.any(p < 0) or np.any(p > 1):
        raise ValueError(f"{name} must be per-attribute probabilities in [0, 1] (sigmoid outputs); "
                         f"got values in [{p.min():.3g}, {p.max():.3g}]")
    return p


def attribute_agreement(real_probabilities, generated_probabilities, names=None, min_diversity: float = 0.5,
                        threshold: float = 0.5) -> Dict[str, object]:
    """How the attributes of generated faces compare with real ones, by the same attribute classifier.

    An attribute counts as present where its probability is >= threshold. Rates are the
    fractions of images with each attribute, read by the same classifier on both sides so its
    biases cancel. `attribute_rate_gap` is the mean |generated rate - real rate| (0: same rates;
    a generator that draws only smiling young women shows large gaps on Smiling, Male, Young).
    `attribute_diversity` is sum over attributes of r(1 - r) for the generated rates divided by
    the same for the real ones: 1 when generated faces vary in their attributes as much as real
    faces, 0 when every generated face has the same attributes (one kind of face), which is
    flagged as `collapsed` below `min_diversity`.
    """
    real = _attribute_probabilities(real_probabilities, "real attribute probabilities")
    generated = _attribute_probabilities(generated_probabilities, "generated attribute probabilities")
    if real.shape[1] != generated.shape[1]:
        raise ValueError(f"real images have {real.shape[1]} attributes, generated {generated.shape[1]}")
    count = real.shape[1]
    names = list(names) if names is not None else [f"attribute_{i}" for i in range(count)]
    if len(names) != count:
        raise ValueError(f"{len(names)} attribute names for {count} attributes")
    real_rates = (real >= threshold).mean(axis=0)
    generated_rates = (generated >= threshold).mean(axis=0)
    gaps = np.abs(generated_rates - real_rates)
    real_variation = float(np.sum(real_rates * (1 - real_rates)))
    generated_variation = float(np.sum(generated_rates * (1 - generated_rates)))
    if real_variation > 0:
        diversity = generated_variation / real_variation
    else:  # real faces all alike to the classifier: nothing to compare against
        diversity = 1.0 if generated_variation == 0 else float("inf")
    worst = int(np.argmax(gaps))
    return {
        "attribute_rate_gap": float(gaps.mean()),
        "attribute_max_gap": float(gaps[worst]),
        "attribute_max_gap_name": names[worst],
        "attribute_diversity": float(diversity),
        "collapsed": bool(diversity < min_diversity),
        "attribute_rates": {name: float(rate) for name, rate in zip(names, generated_rates)},
        "real_attribute_rates": {name: float(rate) for name, rate in zip(names, real_rates)},
    }


# ---------------------------------------------------------------------------
# Fidelity and diversity on k-nearest-neighbour manifolds


def sorted_rows(features, name: str) -> np.ndarray:
    """The rows of a [N, D] array in lexicographic order: a fixed order, whatever order the batches came in."""
    features = _features_2d(features, name)
    return features[np.lexsort(features.T[::-1])] if len(features) else features


def canonical_subset(features, max_points: int, seed: int = 0) -> np.ndarray:
    """At most `max_points` rows of `features`: the same rows whatever order they arrived in.

    Beam hands the evaluator its batches in no fixed order; the rows are sorted first, and a
    seeded choice is taken only when there are more than `max_points`.
    """
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    ordered = sorted_rows(features, "features")
    if len(ordered) <= max_points:
        return ordered
    chosen = np.sort(np.random.default_rng(seed).choice(len(ordered), max_points, replace=False))
    return ordered[chosen]


def prdc_min_points(nearest_k: int) -> int:
    """The fewest images a side for k-NN balls: each point's k-th neighbour among the others, and one more."""
    return int(nearest_k) + 2


def fidelity_diversity(real_features, generated_features, nearest_k: int = PRDC_NEAREST_K) -> Dict[str, float]:
    """Precision, recall, density and coverage of generated samples against real images.

    FD folds two failures into one number: samples unlike any real image (fidelity) and real
    images no sample resembles (diversity). These four, computed by the paper authors' `prdc`
    package on the domain classifier's features, keep them apart. Every real image gets a ball
    reaching its k-th nearest real neighbour (every sample one reaching its k-th nearest sample):

    - `sample_precision` (Kynkäänniemi et al. 2019): the share of samples inside some real ball;
    - `sample_recall`: the share of real images inside some sample's ball;
    - `sample_density` (Naeem et al. 2020): how many real balls a sample sits in, over k, averaged;
      about 1 when samples are spread like real images, below for off-manifold samples, above
      for samples crowding the dense regions;
    - `sample_coverage` (Naeem et al. 2020): the share of real images whose ball holds a sample.
      It falls when the generator drops modes, even modes within a class: the collapse that a
      class histogram cannot see.

    A generator that draws the data distribution scores near 1 on all four (coverage about
    1 - 2^-k with as many samples as real images); a collapsed one keeps its precision and loses
    recall and coverage. The values depend on k and on the set sizes: compare runs with the same ones.
    """
    import prdc

    real = _features_2d(real_features, "real features")
    generated = _features_2d(generated_features, "generated features")
    if real.shape[1] != generated.shape[1]:
        raise ValueError(f"real features have {real.shape[1]} dimensions, generated ones {generated.shape[1]}")
    if not isinstance(nearest_k, (int, np.integer)) or nearest_k < 1:
        raise ValueError(f"nearest_k must be a positive integer, got {nearest_k!r}")
    if min(len(real), len(generated)) < prdc_min_points(nearest_k):
        raise ValueError(f"precision, recall, density and coverage with k = {nearest_k} need at least "
                         f"{prdc_min_points(nearest_k)} real and generated images; got {len(real)} and {len(generated)}")
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes
        values = prdc.compute_prdc(real, generated, int(nearest_k))
    return {f"sample_{name}": float(values[name]) for name in PRDC_METRICS}


def inception_fid_status(weights_path: Optional[str]) -> Tuple[bool, str]:
    """(available, reason): whether Inception FID can run from InceptionV3 no-top weights, a local
    file or one on any tf.io.gfile filesystem (gs://...)."""
    if not weights_path:
        return False, "Inception FID skipped: no Inception weights path configured"
    if not files.isfile(weights_path):
        where = "weights file" if files.is_remote(weights_path) else "local weights"
        return False, f"Inception FID skipped: no {where} at {weights_path}"
    if not str(weights_path).endswith(INCEPTION_WEIGHT_SUFFIXES):
        return False, (
            f"Inception FID skipped: {weights_path} is not a Keras weights file "
            f"(expected one of {', '.join(INCEPTION_WEIGHT_SUFFIXES)})"
        )
    return True, f"Inception FID uses the weights at {weights_path}"


def _checked_images(images) -> np.ndarray:
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be [N, H, W, 1 or 3]; got shape {images.shape}")
    if images.size and (images.min() < -1e-3 or images.max() > 1 + 1e-3):
        raise ValueError(
            f"images must be in [0, 1]; got values in [{images.min():.3g}, {images.max():.3g}] "
            "(map tanh outputs with (x + 1) / 2 first)"
        )
    return images


def inception_inputs(images) -> np.ndarray:
    """Images [N, H, W, 1 or 3] in [0, 1] -> InceptionV3 inputs [N, 299, 299, 3] in [-1, 1].

    Grayscale is tiled to 3 channels, the size is changed bilinearly, and values are scaled
    as keras.applications.inception_v3.preprocess_input scales [0, 255] pixels.
    """
    import keras  # Keras 3; imported here so the numpy metrics need no TensorFlow

    images = _checked_images(images)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    resized = keras.ops.image.resize(images, (INCEPTION_IMAGE_SIZE, INCEPTION_IMAGE_SIZE), interpolation="bilinear")
    return keras.ops.convert_to_numpy(keras.applications.inception_v3.preprocess_input(resized * 255.0))


def load_inception(weights_path: str):
    """keras.applications.InceptionV3(include_top=False, pooling="avg") with the weights at `weights_path`
    (local, or remote through tf.io.gfile: Keras reads local files only, so it is copied first).

    Raises ValueError naming the file when it holds no such weights (another model's, or not a weights file).
    """
    import keras

    with tempfile.TemporaryDirectory() as local_dir:
        local_path = weights_path
        if files.is_remote(weights_path):
            local_path = os.path.join(local_dir, os.path.basename(weights_path))
            files.gfile().copy(weights_path, local_path)
        try:
            with warnings.catch_warnings():
                # Keras warns once per layer it cannot match (about 150 lines) before it raises.
                warnings.simplefilter("ignore", UserWarning)
                return keras.applications.InceptionV3(
                    include_top=False,
                    weights=local_path,
                    input_shape=(INCEPTION_IMAGE_SIZE, INCEPTION_IMAGE_SIZE, 3),
                    pooling="avg",
                )
        except (OSError, ValueError) as error:
            # Keras appends every object it could not load (188 for another model's weights).
            cause = str(error).split("List of objects that could not be loaded")[0].strip()
            cause = cause if len(cause) <= 400 else cause[:400] + " ..."
            raise ValueError(
                f"Inception weights {weights_path}: cannot be loaded as the weights of keras.applications."
                f"InceptionV3(include_top=False, pooling='avg') saved by Keras ({cause})"
            ) from error


def inception_fid_extractor(
    weights_path: Optional[str], batch_size: int = 32
) -> Optional[Callable[[np.ndarray], np.ndarray]]:
    """A function images [N, H, W, 1 or 3] in [0, 1] -> [N, 2048] InceptionV3 pool features, or None.

    None (with the reason logged; see inception_fid_status) when no weights file exists. Images
    are prepared by inception_inputs. Weights load from `weights_path` only, never "imagenet"; a
    remote file is copied to a local temporary one first (Keras reads local files only).
    Raises ValueError naming the file when it holds no InceptionV3 no-top weights.
    """
    available, reason = inception_fid_status(weights_path)
    if not available:
        logging.warning(reason)
        return None
    import keras

    model = load_inception(weights_path)

    def extract(images) -> np.ndarray:
        images = _checked_images(images)
        features = [
            keras.ops.convert_to_numpy(model(inception_inputs(images[start : start + batch_size]), training=False))
            for start in range(0, len(images), batch_size)
        ]
        if not features:
            return np.zeros((0, INCEPTION_FEATURE_DIM), np.float64)
        return np.concatenate(features, axis=0).astype(np.float64)

    return extract


# ---------------------------------------------------------------------------
# Data copying: does the generator reproduce its training images?


class TrainingCells:
    """The training images' features cut into cells (k-means), each with a nearest-neighbour index.

    `assign(features)` gives every vector its cell and its distance to the nearest training vector
    of that cell: the partition and the distances of the data-copying test. The k-means fit is
    seeded and sees the training vectors in a fixed (sorted) order, so every worker and every run
    builds the same cells from the same data.
    """

    def __init__(self, train_features, num_cells: int = DATA_COPYING_CELLS, seed: int = 0):
        from sklearn.cluster import KMeans
        from sklearn.neighbors import NearestNeighbors

        train = sorted_rows(train_features, "training features")
        if not len(train):
            raise ValueError("the data-copying test needs at least one training image")
        self.num_cells = max(1, min(int(num_cells), len(np.unique(train, axis=0))))
        self._kmeans = KMeans(n_clusters=self.num_cells, n_init=1, random_state=seed).fit(train)
        cells = self._kmeans.labels_
        self.train_counts = np.bincount(cells, minlength=self.num_cells)
        self._indexes = {cell: NearestNeighbors(n_neighbors=1).fit(train[cells == cell])
                         for cell in range(self.num_cells) if self.train_counts[cell]}

    def assign(self, features) -> Tuple[np.ndarray, np.ndarray]:
        """(cells [N] int, distances [N]): each vector's cell and distance to that cell's nearest training vector."""
        features = _features_2d(features, "query features")
        cells = self._kmeans.predict(features).astype(np.int64)
        distances = np.zeros(len(features))
        for cell in np.unique(cells):
            chosen = cells == cell
            distances[chosen] = self._indexes[int(cell)].kneighbors(features[chosen])[0][:, 0]
        return cells, distances


def mann_whitney_z(generated, heldout) -> float:
    """The Mann-Whitney U of `generated` against `heldout` as a z-score, with the tie correction.

    U counts the pairs where the generated value is the larger (ties count 1/2): negative z means
    the generated values are smaller than the held-out ones.
    """
    generated = np.asarray(generated, np.float64).reshape(-1)
    heldout = np.asarray(heldout, np.float64).reshape(-1)
    m, n = len(generated), len(heldout)
    if not m or not n:
        raise ValueError(f"a Mann-Whitney test needs values on both sides, got {m} and {n}")
    combined = np.concatenate([generated, heldout])
    u = scipy.stats.rankdata(combined)[:m].sum() - m * (m + 1) / 2.0
    total = m + n
    _, ties = np.unique(combined, return_counts=True)
    tie_term = float((ties.astype(np.float64) ** 3 - ties).sum()) / (total * (total - 1)) if total > 1 else 0.0
    variance = m * n / 12.0 * ((total + 1) - tie_term)
    return float((u - m * n / 2.0) / np.sqrt(variance)) if variance > 0 else 0.0


def data_copying(generated_distances, generated_cells, heldout_distances, heldout_cells,
                 min_generated_per_cell: int = DATA_COPYING_MIN_PER_CELL,
                 near_quantile: float = NEAR_TRAIN_QUANTILE) -> dict:
    """The data-copying test C_T of Meehan, Chaudhuri & Dasgupta (AISTATS 2020).

    Inputs are, for generated samples and for held-out real images (the eval split, which training
    never saw), their cell of the training set's partition and their distance to the nearest
    training image of that cell (TrainingCells). A generator that draws new images of the data
    distribution lands as far from its training images as held-out images do; one that copies them
    lands closer. In every cell with more than `min_generated_per_cell` samples (the paper's
    tau = 20 / m), the Mann-Whitney z of the samples' distances against the held-out images' is
    taken; C_T is their average weighted by the cells' share of held-out images. Cells keep a
    generator that only favours dense regions (where every distance is short) from looking like a
    copier. Returns:

    - `data_copying_ct`: about 0 without copying; strongly negative when the samples sit closer to
      the training images than new real images do (the paper flags data copying below about -3);
      positive when farther (an underfit generator, which classifier-FD already penalises). None
      when no cell holds enough samples;
    - `data_copying_cells`: cells that entered C_T, of `data_copying_cells_total`;
    - `near_train_fraction`: the share of samples closer to a training image than all but
      `near_quantile` (5%) of the held-out images: about 0.05 without copying, 1 for copies;
    - `train_distance_ratio`: median sample distance over median held-out distance.
    """
    generated_distances = np.asarray(generated_distances, np.float64).reshape(-1)
    heldout_distances = np.asarray(heldout_distances, np.float64).reshape(-1)
    generated_cells = np.asarray(generated_cells, np.int64).reshape(-1)
    heldout_cells = np.asarray(heldout_cells, np.int64).reshape(-1)
    m, n = len(generated_distances), len(heldout_distances)
    if not m or not n:
        raise ValueError(f"the data-copying test needs generated and held-out distances, got {m} and {n}")
    if len(generated_cells) != m or len(heldout_cells) != n:
        raise ValueError(f"cells and distances differ in length: {len(generated_cells)} cells for {m} samples, "
                         f"{len(heldout_cells)} for {n} held-out images")
    weights, scores = [], []
    cells = np.union1d(generated_cells, heldout_cells)
    for cell in cells:
        in_generated, in_heldout = generated_cells == cell, heldout_cells == cell
        if not in_heldout.any():
            continue
        held = heldout_distances[in_heldout]
        if in_generated.sum() > min_generated_per_cell:
            weights.append(in_heldout.sum() / n)
            scores.append(mann_whitney_z(generated_distances[in_generated], held))
    median_heldout = float(np.median(heldout_distances))
    return {
        "data_copying_ct": float(np.dot(weights, scores) / np.sum(weights)) if weights else None,
        "data_copying_cells": len(weights),
        "data_copying_cells_total": int(len(cells)),
        "near_train_fraction": float((generated_distances < np.quantile(heldout_distances, near_quantile)).mean()),
        "train_distance_ratio": (float(np.median(generated_distances) / median_heldout) if median_heldout > 0
                                 else float("inf")),
    }
