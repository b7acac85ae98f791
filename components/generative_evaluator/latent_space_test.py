"""The VAE latent-space views with known answers: k-NN accuracy, the plane, the manifold's layout.

The model is a stand-in with the VAE's `encode` and `decode` signatures whose behaviour is known:
its encoder puts every image at (10 x mean brightness, 0), its decoder paints each half of the
image with the latent coordinates, so the manifold PNG can be read back cell by cell.
"""
import os

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from components.generative_evaluator import latent_space
from conftest import encode_transformed, write_split
from serving import signatures as sig
from trainer_modules import contract


def test_knn_accuracy_of_separated_clusters_is_one_and_of_scattered_labels_near_chance():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 30)
    clusters = np.eye(10)[labels] * 100.0 + rng.normal(size=(300, 10))
    assert latent_space.knn_accuracy(clusters, labels) == 1.0
    scattered = rng.normal(size=(300, 2))
    assert latent_space.knn_accuracy(scattered, rng.permutation(labels)) < 0.3


def test_knn_leaves_the_point_itself_out_and_breaks_ties_by_the_nearest():
    # 1-NN of two points with different labels: each sees only the other, so both are wrong.
    assert latent_space.knn_accuracy(np.array([[0.0], [1.0]]), np.array([0, 1]), k=1) == 0.0
    # 2-NN on a line at 0, 1, 3. The point at 0 sees 1 and 3; the point at 1 sees 0 (nearer) and 3,
    # the point at 3 sees 1 (nearer) and 0. Labelled 1, 0, 0: 0 is out-voted (wrong); 1 has a tie
    # that its nearest neighbour (label 1) breaks (wrong); 3 has a tie broken by 1 (label 0: right).
    points = np.array([[0.0], [1.0], [3.0]])
    assert latent_space.knn_accuracy(points, np.array([1, 0, 0]), k=2) == pytest.approx(1 / 3)
    # The same with the labels swapped: a tie is never broken by the smaller label value.
    assert latent_space.knn_accuracy(points, np.array([0, 1, 1]), k=2) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="3 points but 2 labels"):
        latent_space.knn_accuracy(points, np.array([0, 1]))
    with pytest.raises(ValueError, match="needs more than 5 points"):
        latent_space.knn_accuracy(points, np.array([0, 0, 1]), k=5)


def test_the_plane_of_a_2d_latent_is_the_prior_and_of_a_larger_one_its_principal_axes():
    rng = np.random.default_rng(1)
    plane = latent_space.principal_plane(rng.normal(size=(100, 2)) * 5 + 3)
    np.testing.assert_array_equal(plane["axes"], np.eye(2))
    np.testing.assert_array_equal(plane["center"], [0, 0])
    # Means spread 10 along (1, 1, 0, 0)/sqrt2 and 2 along z[3], centred at (0, 0, 7, 0).
    direction = np.array([1.0, 1.0, 0.0, 0.0]) / np.sqrt(2)
    mu = (np.outer(rng.normal(size=2000) * 10, direction) + np.outer(rng.normal(size=2000) * 2, np.eye(4)[3])
          + np.array([0, 0, 7, 0]))
    plane = latent_space.principal_plane(mu)
    assert abs(plane["axes"][0] @ direction) == pytest.approx(1.0, abs=1e-3)
    assert abs(plane["axes"][1] @ np.eye(4)[3]) == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_allclose(plane["scales"], [10, 2], rtol=0.05)
    np.testing.assert_allclose(plane["center"], [0, 0, 7, 0], atol=0.6)
    points = latent_space.manifold_latents(plane, size=5)
    assert points.shape == (25, 4)
    # Every point lies in the plane: nothing is left after removing the two axes.
    offsets = points - plane["center"]
    residual = offsets - (offsets @ plane["axes"].T) @ plane["axes"]
    np.testing.assert_allclose(residual, 0, atol=1e-9)


def test_the_2d_manifold_spans_the_prior_quantiles_left_to_right_and_top_down():
    plane = latent_space.principal_plane(np.zeros((3, 2)))
    points = latent_space.manifold_latents(plane, size=4).reshape(4, 4, 2)
    edge = scipy.stats.norm.ppf(0.95)
    np.testing.assert_allclose(points[0, 0], [-edge, edge])     # top left: z0 lowest, z1 highest
    np.testing.assert_allclose(points[-1, -1], [edge, -edge])   # bottom right
    assert (np.diff(points[..., 0], axis=1) > 0).all() and (np.diff(points[..., 1], axis=0) < 0).all()


class _StandIn(tf.Module):
    """encode: mu = (10 * mean brightness, 0); decode: left half z[0] / 4 + 0.5, right half z[1] / 4 + 0.5."""

    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name=sig.IMAGES_INPUT)])
    def encode(self, images):
        brightness = tf.reduce_mean(images, axis=[1, 2, 3])
        mu = tf.stack([10.0 * brightness, tf.zeros_like(brightness)], axis=1)
        return {sig.MU_OUTPUT: mu, sig.LOG_VAR_OUTPUT: tf.zeros_like(mu)}

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name=sig.LATENT_INPUT)])
    def decode(self, latent):
        values = tf.clip_by_value(latent / 4.0 + 0.5, 0.0, 1.0)
        left = tf.tile(values[:, None, None, :1], [1, 28, 14, 1])
        right = tf.tile(values[:, None, None, 1:], [1, 28, 14, 1])
        return {sig.RECONSTRUCTION_OUTPUT: tf.concat([left, right], axis=2)}


def _encode(model_dir):
    return tf.saved_model.load(model_dir).signatures[sig.ENCODE]


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent")
    module = _StandIn()
    model_dir = str(root / "model")
    tf.saved_model.save(module, model_dir, signatures={sig.ENCODE: module.encode, sig.DECODE: module.decode})
    # Transformed eval examples: 6 images per label 0..4 of brightness (label + 1) / 10, in label
    # order interleaved, so the labels must travel with their images for the k-NN vote to be right.
    labels = np.tile(np.arange(5), 6)
    images = np.ones((30, 28, 28, 1), np.float32) * ((labels + 1) / 10.0)[:, None, None, None]
    records = [encode_transformed({contract.IMAGE_KEY: image, contract.LABEL_KEY: np.int64(label)})
               for image, label in zip(images, labels)]
    split_dir = write_split(str(root / "examples"), contract.EVAL_SPLIT, records)
    spec = {contract.IMAGE_KEY: tf.io.FixedLenFeature([28, 28, 1], tf.float32),
            contract.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}
    return {"model": model_dir, "pattern": os.path.join(split_dir, "*"), "spec": spec, "labels": labels,
            "root": root}


def test_evaluate_reports_latent_metrics_and_draws_the_candidate(stand_in):
    out_dir = str(stand_in["root"] / "evaluation")
    result = latent_space.evaluate({"candidate": stand_in["model"], "baseline": stand_in["model"]}, "candidate",
                                   stand_in["pattern"], stand_in["spec"], out_dir)
    for name in ("candidate", "baseline"):
        metrics = result["models"][name]
        assert metrics["latent_points"] == 30 and metrics["latent_dim"] == 2
        assert metrics["active_units"] == 1   # z[0] varies with brightness, z[1] is always 0
        assert metrics["latent_knn_accuracy"] == 1.0  # each label's 6 images share one point
    scatter = tf.io.decode_png(tf.io.read_file(result["latent_space"])).numpy()
    assert scatter.shape[:2] == (600, 700)
    manifold = tf.io.decode_png(tf.io.read_file(result["latent_manifold"])).numpy()[..., 0]
    size, cell = latent_space.MANIFOLD_SIZE, 30  # 28 px and a 1 px gap on each side
    assert manifold.shape == (size * cell, size * cell)
    offsets = scipy.stats.norm.ppf(np.linspace(*latent_space.QUANTILES, size))

    def painted(row, column, half):
        return manifold[row * cell + 14, column * cell + 1 + (3 if half == 0 else 24)] / 255.0

    for row, column in [(0, 0), (0, size - 1), (size - 1, 0), (7, 3)]:
        assert painted(row, column, 0) == pytest.approx(offsets[column] / 4 + 0.5, abs=1 / 255)
        assert painted(row, column, 1) == pytest.approx(offsets[::-1][row] / 4 + 0.5, abs=1 / 255)


def test_scattered_labels_lower_the_knn_accuracy_and_missing_labels_skip_it(stand_in):
    no_labels = {contract.IMAGE_KEY: stand_in["spec"][contract.IMAGE_KEY]}
    result = latent_space.evaluate({"candidate": stand_in["model"]}, "candidate", stand_in["pattern"], no_labels,
                                   None)
    assert "latent_knn_accuracy" not in result["models"]["candidate"]
    assert "latent_space" not in result  # no out_dir: metrics only
    mu, labels = latent_space.encode_eval_images(_encode(stand_in["model"]), stand_in["pattern"], stand_in["spec"])
    np.testing.assert_array_equal(labels, stand_in["labels"])
    np.testing.assert_allclose(mu[:, 0], (stand_in["labels"] + 1), rtol=1e-5)
    shuffled = np.arange(30) // 6  # the 6 images of one brightness now carry 5 different labels
    assert latent_space.knn_accuracy(mu, shuffled) < 0.5
    first_ten, _ = latent_space.encode_eval_images(_encode(stand_in["model"]), stand_in["pattern"], stand_in["spec"],
                                                   max_points=10)
    assert len(first_ten) == 10


class _AutoencoderStandIn(tf.Module):
    """encode: a 2x2x1 code per image (the mean brightness of each quadrant), as an autoencoder's `latent`."""

    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name=sig.IMAGES_INPUT)])
    def encode(self, images):
        return {sig.LATENT_OUTPUT: tf.nn.avg_pool2d(images, 14, 14, "VALID")}


def test_an_autoencoder_s_codes_are_flattened_and_get_no_manifold(stand_in, monkeypatch):
    module = _AutoencoderStandIn()
    model_dir = str(stand_in["root"] / "autoencoder")
    tf.saved_model.save(module, model_dir, signatures={sig.ENCODE: module.encode})
    out_dir = str(stand_in["root"] / "autoencoder_evaluation")
    result = latent_space.evaluate({"candidate": model_dir}, "candidate", stand_in["pattern"], stand_in["spec"],
                                   out_dir, manifold=False)
    metrics = result["models"]["candidate"]
    assert metrics["latent_dim"] == 4 and metrics["active_units"] == 4  # every quadrant tracks the brightness
    assert metrics["latent_knn_accuracy"] == 1.0
    assert result["latent_manifold"] is None and not os.path.exists(os.path.join(out_dir, latent_space.MANIFOLD_FILE))
    assert os.path.exists(result["latent_space"])
    # Wide codes: at most MAX_CODE_VALUES values are kept (here 40: 10 images of 4 values).
    monkeypatch.setattr(latent_space, "MAX_CODE_VALUES", 40)
    codes, labels = latent_space.encode_eval_images(_encode(model_dir), stand_in["pattern"], stand_in["spec"])
    assert codes.shape == (10, 4) and len(labels) == 10
