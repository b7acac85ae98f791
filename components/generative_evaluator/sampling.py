"""Beam stages of the sample metrics: real and generated images -> domain-classifier statistics.

Real images come from the transformed eval split; generated ones from each model's `sample`
signature, one Beam element per batch with seed `seed + batch_index`, so the same model
always yields the same samples and the work spreads over workers. Both go through the
domain classifier (and InceptionV3 when weights are given, local or gs://) and are combined per key
into mergeable feature moments plus the classifier's features and probabilities; `summarize`
turns one key's statistics into the flat metrics of sample_metrics. With a train split pattern, the
training images' features are a side input that cuts the feature space into cells, and every
real and generated image also gets its cell and its distance to the nearest training image
there, for the data-copying test.
"""
import json
from typing import Dict, List, Optional, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf

from components.generative_evaluator import sample_metrics
from serving import signatures as sig
from trainer_modules import contract

REAL = "real"
TRAIN = "train"
INCEPTION = "inception"
TRAIN_DISTANCES = "train_distances"
TRAIN_CELLS = "train_cells"
FEATURE_ROWS = "feature_rows"


def to_unit_range(images: np.ndarray, value_range: str) -> np.ndarray:
    """Transformed images ([0, 1] or [-1, 1]) -> [0, 1], the range the classifier was trained on."""
    images = np.asarray(images, np.float32)
    if value_range == "symmetric":
        images = (images + 1.0) / 2.0
    elif value_range != "unit":
        raise ValueError(f"value_range must be 'unit' or 'symmetric', got {value_range!r}")
    return np.clip(images, 0.0, 1.0)


def slerp(a, b, t) -> np.ndarray:
    """Spherical interpolation from latent point `a` to `b` at fractions `t` ([T] -> [T, dim]).

    Under a Gaussian prior nearly all mass lies near the sphere of radius sqrt(dim); the straight
    line between two points cuts inside it, through latents the generator rarely saw. The great
    circle keeps the interpolants at the endpoints' norm when the norms are equal (White, 2016).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    t = np.asarray(t, np.float64)[:, None]
    cosine = np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12)
    omega = np.arccos(np.clip(cosine, -1.0, 1.0))
    if np.sin(omega) < 1e-6:  # (anti)parallel: no unique great circle; the line is as good
        return (1.0 - t) * a + t * b
    return (np.sin((1.0 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def interpolation_latents(latent_dim: int, seed: int, rows: int = 8, steps: int = 10) -> np.ndarray:
    """[rows * steps, latent_dim]: `rows` walks between fixed N(0, I) endpoint pairs, `steps` points each."""
    ends = np.random.default_rng(seed).standard_normal((rows, 2, latent_dim))
    fractions = np.linspace(0.0, 1.0, steps)
    return np.concatenate([slerp(start, end, fractions) for start, end in ends]).astype(np.float32)


def sample_batches(model_names: List[str], num_samples: int, batch_size: int) -> List[Tuple[str, int, int]]:
    """(model name, batch index, batch size) elements covering num_samples per model."""
    elements = []
    for name in model_names:
        for index, start in enumerate(range(0, num_samples, batch_size)):
            elements.append((name, index, min(batch_size, num_samples - start)))
    return elements


class GenerateSamples(beam.DoFn):
    """(model, batch index, num) -> (model, images in [0, 1]) through the model's `sample` signature."""

    def __init__(self, model_dirs: Dict[str, str], seed: int):
        self._model_dirs = model_dirs
        self._seed = seed
        self._sample = {}

    def setup(self):
        for name, path in self._model_dirs.items():
            loaded = tf.saved_model.load(path)
            if sig.SAMPLE not in loaded.signatures:
                raise ValueError(f"model {path} has no {sig.SAMPLE!r} signature (has {sorted(loaded.signatures)})")
            self._sample[name] = loaded.signatures[sig.SAMPLE]

    def process(self, element):
        name, index, num = element
        images = self._sample[name](**{
            sig.NUM_INPUT: tf.constant(num, tf.int32),
            sig.SEED_INPUT: tf.constant(self._seed + index, tf.int32),
        })[sig.IMAGES_OUTPUT]
        yield name, images.numpy()


class ParseRealImages(beam.DoFn):
    """A batch of transformed records -> (key, images in [0, 1]); key "real" for the eval split."""

    def __init__(self, feature_spec, value_range: str, key: str = REAL):
        self._feature_spec = feature_spec
        self._value_range = value_range
        self._key = key

    def process(self, records: List[bytes]):
        features = tf.io.parse_example(tf.constant(records), self._feature_spec)
        yield self._key, to_unit_range(features[contract.IMAGE_KEY].numpy(), self._value_range)


class Featurize(beam.DoFn):
    """(key, images) -> (key, {"features", "probabilities"[, "inception"]}) with the domain classifier."""

    def __init__(self, classifier_uri: str, inception_weights: str = ""):
        self._classifier_uri = classifier_uri
        self._inception_weights = inception_weights
        self._classify = None
        self._inception = None

    def setup(self):
        from components.domain_classifier import model as classifier_model

        self._classify = classifier_model.load_classifier(self._classifier_uri)
        if self._inception_weights:
            self._inception = sample_metrics.inception_fid_extractor(self._inception_weights)

    def process(self, element):
        key, images = element
        outputs = self._classify(images)
        result = {
            "features": np.asarray(outputs["features"], np.float64),
            "probabilities": np.asarray(outputs["probabilities"], np.float64),
        }
        if self._inception is not None:
            result[INCEPTION] = np.asarray(self._inception(images), np.float64)
        yield key, result


class AddTrainDistances(beam.DoFn):
    """(key, featurized) -> the same with `train_cells` and `train_distances`: each image's cell of the
    training set's partition and its distance to the nearest training image of that cell, in the
    classifier's feature space (side input: the training images' features; sample_metrics.TrainingCells)."""

    def __init__(self, num_cells: int):
        self._num_cells = num_cells
        self._cells = None

    def process(self, element, train_features):
        key, result = element
        if not train_features:  # no training images: no data-copying test
            yield element
            return
        if self._cells is None:  # once per worker: the side input is the same for every bundle
            self._cells = sample_metrics.TrainingCells(np.concatenate(train_features), self._num_cells)
        cells, distances = self._cells.assign(result["features"])
        yield key, {**result, TRAIN_CELLS: cells, TRAIN_DISTANCES: distances}


class CombineStatistics(beam.CombineFn):
    """The classifier's features and probabilities of every image of a key, their feature moments,
    and Inception feature moments."""

    def create_accumulator(self):
        return {INCEPTION: None, "probabilities": [], FEATURE_ROWS: [], TRAIN_DISTANCES: [], TRAIN_CELLS: []}

    def add_input(self, accumulator, element):
        accumulator[FEATURE_ROWS].append(element["features"])
        if INCEPTION in element:
            if accumulator[INCEPTION] is None:
                accumulator[INCEPTION] = sample_metrics.FeatureMoments()
            accumulator[INCEPTION].add(element[INCEPTION])
        accumulator["probabilities"].append(element["probabilities"])
        if TRAIN_DISTANCES in element:
            accumulator[TRAIN_DISTANCES].append(element[TRAIN_DISTANCES])
            accumulator[TRAIN_CELLS].append(element[TRAIN_CELLS])
        return accumulator

    def merge_accumulators(self, accumulators):
        result = self.create_accumulator()
        for acc in accumulators:
            if acc[INCEPTION] is not None:
                if result[INCEPTION] is None:
                    result[INCEPTION] = sample_metrics.FeatureMoments()
                result[INCEPTION].merge(acc[INCEPTION])
            result["probabilities"].extend(acc["probabilities"])
            result[FEATURE_ROWS].extend(acc[FEATURE_ROWS])
            result[TRAIN_DISTANCES].extend(acc[TRAIN_DISTANCES])
            result[TRAIN_CELLS].extend(acc[TRAIN_CELLS])
        return result

    def extract_output(self, accumulator):
        probabilities = np.concatenate(accumulator["probabilities"]) if accumulator["probabilities"] else np.zeros((0, 0))
        rows = {key: np.concatenate(accumulator[key]) if accumulator[key] else None
                for key in (FEATURE_ROWS, TRAIN_DISTANCES, TRAIN_CELLS)}
        moments = sample_metrics.FeatureMoments()  # of the rows kept anyway for precision, recall and the rest
        if rows[FEATURE_ROWS] is not None:
            moments.add(rows[FEATURE_ROWS])
        return {"features": moments, INCEPTION: accumulator[INCEPTION], "probabilities": probabilities, **rows}


def fidelity_diversity(real_rows, generated_rows, nearest_k: int, max_points: int) -> Dict[str, object]:
    """sample_metrics.fidelity_diversity on at most `max_points` rows a side, picked the same way in
    every run; empty when a side has too few rows for k-NN balls."""
    if (real_rows is None or generated_rows is None
            or min(len(real_rows), len(generated_rows)) < sample_metrics.prdc_min_points(nearest_k)):
        return {}
    real = sample_metrics.canonical_subset(real_rows, max_points)
    generated = sample_metrics.canonical_subset(generated_rows, max_points)
    return {**sample_metrics.fidelity_diversity(real, generated, nearest_k),
            "prdc_k": int(nearest_k), "prdc_num_real": len(real), "prdc_num_generated": len(generated)}


def real_halves(real_rows, max_points: int, seed: int = 0):
    """The real images' features in two halves of a seeded shuffle (each at most max_points rows)."""
    rows = sample_metrics.canonical_subset(real_rows, 2 * max_points, seed)
    shuffled = rows[np.random.default_rng(seed).permutation(len(rows))]
    middle = len(shuffled) // 2
    return shuffled[:middle], shuffled[middle:2 * middle]


def summarize(stats, real_stats, num_classes: int, min_fraction: float, min_classes: Optional[int],
              score_splits: int, task: str = "classes", attribute_names=None,
              min_attribute_diversity: float = 0.5, prdc_k: int = sample_metrics.PRDC_NEAREST_K,
              prdc_max_points: int = sample_metrics.PRDC_MAX_POINTS) -> Dict[str, object]:
    """Flat sample metrics of one key's statistics against the real eval images' statistics.

    Task "classes": classifier score and mode coverage from the class probabilities.
    Task "attributes": attribute rates and diversity against the real images' (see
    sample_metrics.attribute_agreement). Classifier-FD, precision, recall, density and coverage
    (and Inception FID, and the data-copying test) in both.
    """
    probabilities = stats["probabilities"]
    result = {
        "classifier_fd": sample_metrics.frechet_distance_from_moments(real_stats["features"], stats["features"]),
        "num_generated": int(len(probabilities)),
        "num_real": int(real_stats["features"].count),
    }
    if task == "attributes":
        agreement = sample_metrics.attribute_agreement(real_stats["probabilities"], probabilities, attribute_names,
                                                       min_diversity=min_attribute_diversity)
        result.update({k: v for k, v in agreement.items() if k != "real_attribute_rates"})
    else:
        splits = max(1, min(score_splits, len(probabilities)))
        score, score_std = sample_metrics.classifier_score(probabilities, splits=splits)
        coverage = sample_metrics.mode_coverage(probabilities, num_classes, min_fraction=min_fraction,
                                                min_classes=min_classes)
        result.update({
            "classifier_score": score,
            "classifier_score_std": score_std,
            "classes_covered": coverage["classes_covered"],
            "kl_to_uniform": coverage["kl_to_uniform"],
            "max_class_fraction": coverage["max_class_fraction"],
            "class_histogram": coverage["class_histogram"],
            "collapsed": coverage["collapsed"],
        })
    result.update(fidelity_diversity(real_stats.get(FEATURE_ROWS), stats.get(FEATURE_ROWS), prdc_k, prdc_max_points))
    if stats.get(INCEPTION) is not None and real_stats.get(INCEPTION) is not None:
        result["inception_fid"] = sample_metrics.frechet_distance_from_moments(real_stats[INCEPTION], stats[INCEPTION])
    if stats.get(TRAIN_DISTANCES) is not None and real_stats.get(TRAIN_DISTANCES) is not None:
        copying = sample_metrics.data_copying(stats[TRAIN_DISTANCES], stats[TRAIN_CELLS],
                                              real_stats[TRAIN_DISTANCES], real_stats[TRAIN_CELLS])
        result.update({k: v for k, v in copying.items() if v is not None})
    return result


def real_summary(real_stats, num_classes: int, min_fraction: float, score_splits: int, task: str = "classes",
                 attribute_names=None, prdc_k: int = sample_metrics.PRDC_NEAREST_K,
                 prdc_max_points: int = sample_metrics.PRDC_MAX_POINTS) -> Dict[str, object]:
    """The classifier's view of the real eval images: the reference for score and coverage (or attribute
    rates), and for precision, recall, density and coverage: one half of the eval images scored as
    samples against the other half, what a generator of the data distribution gets at that size."""
    probabilities = real_stats["probabilities"]
    result = {"num_images": int(real_stats["features"].count)}
    if real_stats.get(FEATURE_ROWS) is not None:
        result.update(fidelity_diversity(*real_halves(real_stats[FEATURE_ROWS], prdc_max_points),
                                         prdc_k, prdc_max_points))
    if real_stats.get(TRAIN_DISTANCES) is not None:
        result["train_distance_median"] = float(np.median(real_stats[TRAIN_DISTANCES]))
    if task == "attributes":
        rates = sample_metrics.attribute_agreement(probabilities, probabilities, attribute_names)["attribute_rates"]
        return {"attribute_rates": rates, **result}
    score, _ = sample_metrics.classifier_score(probabilities, splits=max(1, min(score_splits, len(probabilities))))
    coverage = sample_metrics.mode_coverage(probabilities, num_classes, min_fraction=min_fraction, min_classes=0)
    return {"classifier_score": score, "classes_covered": coverage["classes_covered"],
            "kl_to_uniform": coverage["kl_to_uniform"], **result}


def to_json(value) -> str:
    return json.dumps(value, sort_keys=True)


class SampleStatistics(beam.PTransform):
    """Pipeline root -> JSON lines {"model": name, "metrics": {...}} for every model, plus "real"."""

    def __init__(self, eval_pattern: str, feature_spec, value_range: str, model_dirs: Dict[str, str],
                 classifier_uri: str, num_samples: int, batch_size: int, seed: int, num_classes: int,
                 min_fraction: float, min_classes: Optional[int], score_splits: int, inception_weights: str = "",
                 task: str = "classes", attribute_names=None, min_attribute_diversity: float = 0.5,
                 train_pattern: str = "", data_copying_cells: int = sample_metrics.DATA_COPYING_CELLS,
                 prdc_k: int = sample_metrics.PRDC_NEAREST_K, prdc_max_points: int = sample_metrics.PRDC_MAX_POINTS):
        super().__init__()
        self._prdc = (int(prdc_k), int(prdc_max_points))
        self._train_pattern = train_pattern
        self._data_copying_cells = data_copying_cells
        self._task = task
        self._attribute_names = list(attribute_names) if attribute_names is not None else None
        self._min_attribute_diversity = min_attribute_diversity
        self._eval_pattern = eval_pattern
        self._feature_spec = feature_spec
        self._value_range = value_range
        self._model_dirs = model_dirs
        self._classifier_uri = classifier_uri
        self._num_samples = num_samples
        self._batch_size = batch_size
        self._seed = seed
        self._num_classes = num_classes
        self._min_fraction = min_fraction
        self._min_classes = min_classes
        self._score_splits = score_splits
        self._inception_weights = inception_weights

    def expand(self, root):
        real = (
            root
            | "ReadEval" >> beam.io.ReadFromTFRecord(self._eval_pattern, coder=beam.coders.BytesCoder())
            | "BatchEval" >> beam.BatchElements(min_batch_size=64, max_batch_size=256)
            | "ParseEval" >> beam.ParDo(ParseRealImages(self._feature_spec, self._value_range))
        )
        generated = (
            root
            | "SampleBatches" >> beam.Create(sample_batches(sorted(self._model_dirs), self._num_samples, self._batch_size))
            | "Spread" >> beam.Reshuffle()
            | "Generate" >> beam.ParDo(GenerateSamples(self._model_dirs, self._seed))
        )
        featurized = (
            (real, generated)
            | "Images" >> beam.Flatten()
            | "Featurize" >> beam.ParDo(Featurize(self._classifier_uri, self._inception_weights))
        )
        if self._train_pattern:  # the data-copying test: distances to the nearest training image
            train_features = (
                root
                | "ReadTrain" >> beam.io.ReadFromTFRecord(self._train_pattern, coder=beam.coders.BytesCoder())
                | "BatchTrain" >> beam.BatchElements(min_batch_size=64, max_batch_size=256)
                | "ParseTrain" >> beam.ParDo(ParseRealImages(self._feature_spec, self._value_range, key=TRAIN))
                | "FeaturizeTrain" >> beam.ParDo(Featurize(self._classifier_uri))
                | "TrainFeatures" >> beam.Map(lambda kv: kv[1]["features"])
            )
            featurized = featurized | "TrainDistances" >> beam.ParDo(
                AddTrainDistances(self._data_copying_cells), beam.pvalue.AsList(train_features))
        stats = featurized | "Combine" >> beam.CombinePerKey(CombineStatistics())
        real_stats = stats | "RealOnly" >> beam.Filter(lambda kv: kv[0] == REAL) | "RealValue" >> beam.Values()
        num_classes, min_fraction, min_classes, splits = (
            self._num_classes, self._min_fraction, self._min_classes, self._score_splits)
        task, names, min_diversity = self._task, self._attribute_names, self._min_attribute_diversity
        prdc_k, prdc_max_points = self._prdc
        model_rows = (
            stats
            | "ModelsOnly" >> beam.Filter(lambda kv: kv[0] != REAL)
            | "Summarize" >> beam.Map(
                lambda kv, real_value: to_json({"model": kv[0], "metrics": summarize(
                    kv[1], real_value, num_classes, min_fraction, min_classes, splits, task, names, min_diversity,
                    prdc_k, prdc_max_points)}),
                real_value=beam.pvalue.AsSingleton(real_stats))
        )
        real_row = real_stats | "SummarizeReal" >> beam.Map(
            lambda value: to_json({"model": REAL, "metrics": real_summary(
                value, num_classes, min_fraction, splits, task, names, prdc_k, prdc_max_points)}))
        return (model_rows, real_row) | "Rows" >> beam.Flatten()
