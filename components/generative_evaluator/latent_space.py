"""The latent space of a VAE or autoencoder: where the eval images land, how well it sorts them,
and (VAE) what the decoder draws.

The course and the Keras VAE example end with two plots made by hand after training; the
GenerativeEvaluator makes them for every run and adds numbers that can be compared across runs:

- `latent_space.png`: the codes of the eval images (`encode`: the VAE's posterior means `mu`, an
  autoencoder's `latent`, flattened), one dot per image, coloured by label. With a latent size of 2
  the axes are z[0] and z[1]; with more, the codes are projected on their first two principal
  components (the axis labels give the share of variance).
- `latent_manifold.png` (VAE): the decoder's images over a square grid of latent points. With a
  latent size of 2 the grid spans the standard-normal quantiles 5%..95% of both coordinates, the
  figure of Kingma & Welling (2014); with more, the same quantiles along the first two principal
  axes of the means (scaled by their spread), the other coordinates at the means' centre. An
  autoencoder has no prior to sample, so it gets no manifold.
- `latent_knn_accuracy`: leave-one-out accuracy of a 5-nearest-neighbour vote of the labels in the
  space of the codes: 1.0 when every digit sits among its own kind, about 1/classes when the
  labels are scattered. Reported only where the eval split has labels.
- `active_units`: latent dimensions whose code varies across images by more than 0.01 (Burda et
  al. 2016): for the VAE the count the Trainer's posterior-collapse alarm watches, for an
  autoencoder the code units in use (dead ReLU units do not count).

Up to 5,000 eval images are encoded, fewer for wide codes (at most 25 million code values: 1,992
images of the conv autoencoder's 7x7x256 code).
"""
import io
import os
from typing import Dict, Optional, Tuple

import numpy as np
import scipy.stats
import tensorflow as tf
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from serving import signatures as sig
from trainer_modules import collapse, contract, training

SCATTER_FILE = "latent_space.png"
MANIFOLD_FILE = "latent_manifold.png"
KNN_NEIGHBOURS = 5
MAX_POINTS = 5000           # eval images encoded per model (the whole eval split of the embedded sample)
MAX_CODE_VALUES = 25_000_000  # ... and at most this many code values (float32), for wide codes
MANIFOLD_SIZE = 15          # the manifold is MANIFOLD_SIZE x MANIFOLD_SIZE decoded images
QUANTILES = (0.05, 0.95)    # the manifold's span, as quantiles of a standard normal
BATCH_SIZE = 250


def encode_eval_images(encode, pattern: str, feature_spec, max_points: int = MAX_POINTS
                       ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Codes (VAE: posterior means) of the first `max_points` eval images through the model's `encode`
    signature, flattened, and their labels when the split has them."""
    dataset = training.make_dataset(pattern, feature_spec, lambda f: f, BATCH_SIZE, shuffle=False,
                                    repeat=False, drop_remainder=False)
    batches, labels = [], []
    count = 0
    for batch in dataset:
        outputs = encode(**{sig.IMAGES_INPUT: batch[contract.IMAGE_KEY][:max_points - count]})
        codes = outputs[sig.MU_OUTPUT] if sig.MU_OUTPUT in outputs else outputs[sig.LATENT_OUTPUT]
        codes = codes.numpy().reshape(codes.shape[0], -1).astype(np.float32)
        if not batches:  # wide codes: fewer images
            max_points = min(max_points, max(KNN_NEIGHBOURS + 1, MAX_CODE_VALUES // codes.shape[1]))
        codes = codes[:max_points - count]
        batches.append(codes)
        if contract.LABEL_KEY in batch:
            labels.append(np.reshape(batch[contract.LABEL_KEY].numpy(), [-1])[:len(codes)])
        count += len(codes)
        if count >= max_points:
            break
    if not count:
        raise ValueError(f"no eval examples found at {pattern}")
    mu = np.concatenate(batches)
    label_array = np.concatenate(labels).astype(np.int64) if labels else None
    if label_array is not None and (label_array < 0).any():  # -1: the source had no label
        label_array = None
    return mu, label_array


def knn_accuracy(points: np.ndarray, labels: np.ndarray, k: int = KNN_NEIGHBOURS) -> float:
    """Leave-one-out accuracy of a majority vote of each point's k nearest other points' labels.

    Ties go to the label of the nearest point among the tied ones, so the result does not depend on
    the order of the labels.
    """
    points = np.asarray(points, dtype=np.float64)
    labels = np.asarray(labels)
    if len(points) != len(labels):
        raise ValueError(f"{len(points)} points but {len(labels)} labels")
    if len(points) <= k:
        raise ValueError(f"a {k}-nearest-neighbour vote needs more than {k} points, got {len(points)}")
    # k + 1 neighbours: the nearest is the point itself (or an exact duplicate, which is as good).
    _, index = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
    correct = 0
    for i, row in enumerate(index):
        votes = labels[np.delete(row, np.flatnonzero(row == i)[:1])[:k]]
        values, counts = np.unique(votes, return_counts=True)
        tied = set(values[counts == counts.max()])
        winner = next(label for label in votes if label in tied)  # nearest first
        correct += int(winner == labels[i])
    return correct / len(points)


def principal_plane(mu: np.ndarray) -> Dict[str, np.ndarray]:
    """Centre, two unit axes and the spread along them of the plane the plots show.

    A latent size of 2 shows the latent space itself against the prior: centre 0, axes z[0] and
    z[1], spread 1. A larger one shows the two principal directions of the means.
    """
    latent_dim = mu.shape[1]
    if latent_dim == 2:
        return {"center": np.zeros(2), "axes": np.eye(2), "scales": np.ones(2), "explained": None}
    if latent_dim < 2:
        return {"center": np.zeros(latent_dim), "axes": np.eye(1, latent_dim), "scales": np.ones(1),
                "explained": None}
    pca = PCA(n_components=2).fit(mu)
    return {"center": pca.mean_, "axes": pca.components_, "scales": np.sqrt(np.maximum(pca.explained_variance_, 1e-12)),
            "explained": pca.explained_variance_ratio_}


def manifold_latents(plane: Dict[str, np.ndarray], size: int = MANIFOLD_SIZE) -> np.ndarray:
    """[size * size, latent_dim] latent points, row by row: the first axis left to right, the second
    top to bottom from high to low, so the grid reads like the scatter plot."""
    offsets = scipy.stats.norm.ppf(np.linspace(QUANTILES[0], QUANTILES[1], size))
    axes, scales, center = plane["axes"], plane["scales"], plane["center"]
    if len(axes) == 1:
        return center + np.outer(offsets * scales[0], axes[0])
    points = [center + x * scales[0] * axes[0] + y * scales[1] * axes[1]
              for y in offsets[::-1] for x in offsets]
    return np.asarray(points)


def _save_figure(figure: Figure, path: str) -> str:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buffer.getvalue())
    return path


def write_scatter(path: str, mu: np.ndarray, labels: Optional[np.ndarray], plane: Dict[str, np.ndarray],
                  title: str) -> str:
    """The means projected on the plane, coloured by label."""
    projected = (mu - plane["center"]) @ plane["axes"].T
    figure = Figure(figsize=(7, 6), dpi=100)
    axes = figure.add_subplot()
    if projected.shape[1] == 1:
        projected = np.concatenate([projected, np.zeros_like(projected)], axis=1)
    if labels is None:
        axes.scatter(projected[:, 0], projected[:, 1], s=4, alpha=0.6)
    else:
        for label in np.unique(labels):
            chosen = labels == label
            axes.scatter(projected[chosen, 0], projected[chosen, 1], s=4, alpha=0.7, label=str(label),
                         color=_colour(int(label)))
        axes.legend(title="label", markerscale=3, loc="best", fontsize="small")
    if plane["explained"] is None:
        axes.set_xlabel("z[0]")
        axes.set_ylabel("z[1]" if mu.shape[1] > 1 else "")
    else:
        axes.set_xlabel(f"principal component 1 ({plane['explained'][0]:.0%} of the variance)")
        axes.set_ylabel(f"principal component 2 ({plane['explained'][1]:.0%} of the variance)")
    axes.set_title(title, fontsize="medium")
    figure.tight_layout()
    return _save_figure(figure, path)


def _colour(label: int):
    from matplotlib import colormaps

    return colormaps["tab10"](label % 10) if label < 10 else colormaps["tab20"](label % 20)


def write_manifold(path: str, decode, plane: Dict[str, np.ndarray], size: int = MANIFOLD_SIZE) -> str:
    """The images of the model's `decode` signature over the grid of manifold_latents, as one PNG."""
    latents = tf.constant(manifold_latents(plane, size), tf.float32)
    images = decode(**{sig.LATENT_INPUT: latents})[sig.RECONSTRUCTION_OUTPUT].numpy()
    per_row = size if len(plane["axes"]) > 1 else len(images)
    return training.write_png(path, training.image_grid(training.grid_rows(images, per_row)))


def evaluate(model_dirs: Dict[str, str], candidate: str, pattern: str, feature_spec, out_dir: Optional[str],
             max_points: int = MAX_POINTS, manifold: bool = True) -> Dict[str, dict]:
    """Latent metrics of every model; plots of `candidate` into out_dir (when given), the decoded
    manifold only with `manifold` (VAE).

    Returns {"models": {name: metrics}, "latent_space": path, "latent_manifold": path or None}.
    """
    result: Dict[str, dict] = {"models": {}}
    for name, model_dir in model_dirs.items():
        signatures = tf.saved_model.load(model_dir).signatures  # loaded once for the codes and the manifold
        mu, labels = encode_eval_images(signatures[sig.ENCODE], pattern, feature_spec, max_points)
        metrics = {"active_units": collapse.active_units(mu), "latent_dim": int(mu.shape[1]),
                   "latent_points": int(len(mu))}
        if labels is not None and len(mu) > KNN_NEIGHBOURS:
            metrics["latent_knn_accuracy"] = knn_accuracy(mu, labels)
        result["models"][name] = metrics
        if name == candidate and out_dir:
            plane = principal_plane(mu)
            knn = metrics.get("latent_knn_accuracy")
            title = (f"{'posterior means' if manifold else 'codes'} of {len(mu)} eval images"
                     + (f"; {KNN_NEIGHBOURS}-NN label accuracy {knn:.3f}" if knn is not None else ""))
            result["latent_space"] = write_scatter(os.path.join(out_dir, SCATTER_FILE), mu, labels, plane, title)
            result["latent_manifold"] = (write_manifold(os.path.join(out_dir, MANIFOLD_FILE), signatures[sig.DECODE], plane)
                                         if manifold else None)
    return result
