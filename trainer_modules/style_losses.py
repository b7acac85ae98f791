"""Perceptual losses of neural style transfer: VGG19 features, Gram matrices, content/style/TV terms.

One library for every style method of the project: the Gatys optimisation (`gatys.py`) and the
feed-forward network trained with the same losses (`style_transfer.py`) must agree on what
"content" and "style" mean, so both import the layers, the preprocessing and the loss terms here.

Images enter as float RGB in [0, 255] (VGG's own scale). Every feature or Gram tensor has a leading
batch axis. The loss functions reduce a batch by averaging per-image losses (`*_per_image`
variants return them unreduced), so a feed-forward trainer's loss does not grow with its batch size
and a batch of one gives exactly the single-image value of the course.
"""
import dataclasses
import logging
from typing import Dict, List, Optional, Sequence, Tuple, Union

import keras
import tensorflow as tf

# Gatys et al. 2016 as in the TF style-transfer tutorial and the course: the first conv of each
# block for style (from fine texture to large patterns), a deep layer for content (layout, objects).
CONTENT_LAYERS = ("block5_conv2",)
STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")

VGG_IMAGENET = "imagenet"
VGG_RANDOM = "random"  # untrained VGG19: tests and timing only, its features carry no style
IMAGENET_NOTOP_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_NOTOP_URL = f"https://storage.googleapis.com/tensorflow/keras-applications/vgg19/{IMAGENET_NOTOP_FILE}"

# ImageNet channel means in BGR order, the "caffe" preprocessing VGG19 was trained with.
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)

# Block 5 sees the image through four 2x2 poolings: a side below 16 px leaves it no pixels.
MIN_IMAGE_SIDE = 16

_log = logging.getLogger(__name__)

Tensors = Union[tf.Tensor, Sequence[tf.Tensor]]


class VGGWeightsError(ValueError):
    """The requested VGG19 weights cannot be loaded (no network, wrong file, missing choice)."""


def _weights_help() -> str:
    return (f"pass {VGG_IMAGENET!r} (Keras downloads {IMAGENET_NOTOP_FILE} where there is a network, or reads it "
            f"from ~/.keras/models/), a local path to that file (or to a .weights.h5/.keras file of the same "
            f"VGG19 no-top model), or {VGG_RANDOM!r} (tests only: untrained features, meaningless stylization)")


def load_vgg19(weights: Optional[str]) -> keras.Model:
    """The frozen VGG19 convolutional base (include_top=False, any image size).

    `weights` must be chosen explicitly: a run on random weights produces noise that looks like a
    result, so "random" is a value the caller spells out and an empty value is an error.
    """
    if not weights:
        raise VGGWeightsError(f"VGG19 weights not given: {_weights_help()}")
    weights = str(weights)
    if weights == VGG_RANDOM:
        _log.warning("VGG19 with RANDOM weights (%r): only for tests and timing; features carry no style",
                     VGG_RANDOM)
        vgg = keras.applications.VGG19(include_top=False, weights=None)
    elif weights == VGG_IMAGENET:
        try:
            vgg = keras.applications.VGG19(include_top=False, weights=VGG_IMAGENET)
        except Exception as error:  # Keras raises a bare Exception("URL fetch failure ...")
            raise VGGWeightsError(
                f"cannot get the ImageNet VGG19 weights ({error}). Without network access, download "
                f"{IMAGENET_NOTOP_FILE} elsewhere ({IMAGENET_NOTOP_URL}) and pass --vgg-weights PATH to it "
                f"(or put it in ~/.keras/models/)") from error
    else:
        if not tf.io.gfile.exists(weights):
            raise FileNotFoundError(f"VGG19 weights file {weights} does not exist; {_weights_help()}")
        try:
            vgg = keras.applications.VGG19(include_top=False, weights=weights)
        except Exception as error:
            raise VGGWeightsError(
                f"cannot load VGG19 weights from {weights}: {error}. Expected {IMAGENET_NOTOP_FILE} (legacy .h5) "
                f"or a .weights.h5/.keras file saved from keras.applications.VGG19(include_top=False)") from error
    vgg.trainable = False
    return vgg


def vgg_preprocess(images: tf.Tensor) -> tf.Tensor:
    """RGB floats in [0, 255] -> VGG19 input: BGR with the ImageNet means subtracted.

    The same numbers as keras.applications.vgg19.preprocess_input, written in TF ops so it stays
    differentiable inside a tf.function and never converts to numpy.
    """
    images = _float32(images)
    return tf.reverse(images, axis=[-1]) - tf.constant(IMAGENET_MEAN_BGR, tf.float32)


def _float32(values) -> tf.Tensor:
    """Values as a float32 tensor, also from the bfloat16 / float16 outputs of VGG19 under a mixed-precision policy."""
    return tf.cast(tf.convert_to_tensor(values), tf.float32)


CHANNELS_LAST = "channels_last"  # [B, H, W, C]: Keras's layout, VGG19's features
CHANNELS_FIRST = "channels_first"  # [B, C, H, W]: the course's einsum('cij,dij->cd') worked example


def gram_matrix(features: tf.Tensor, data_format: str = CHANNELS_LAST) -> tf.Tensor:
    """Channel correlations [B, C, C] of features, divided by the H*W locations.

    `data_format` says where the channels are, as in Keras layers: "channels_last" reads
    [B, H, W, C] (VGG19's features), "channels_first" reads [B, C, H, W]. Dividing by the locations
    makes a style image's Grams comparable across image sizes.
    """
    features = _float32(features)
    if features.shape.rank is not None and features.shape.rank != 4:
        raise ValueError(f"gram_matrix expects features of rank 4 with a batch axis, got shape {features.shape}")
    shape = tf.shape(features)
    if data_format == CHANNELS_LAST:
        gram, locations = tf.einsum("bijc,bijd->bcd", features, features), shape[1] * shape[2]
    elif data_format == CHANNELS_FIRST:
        gram, locations = tf.einsum("bcij,bdij->bcd", features, features), shape[2] * shape[3]
    else:
        raise ValueError(f"data_format must be {CHANNELS_LAST!r} or {CHANNELS_FIRST!r}, got {data_format!r}")
    return gram / tf.cast(locations, tf.float32)


class StyleContentExtractor:
    """VGG19 content features and style Grams of images in [0, 255], from one forward pass.

    One keras.Model maps the VGG input to exactly the layers needed, so each step of an
    optimisation or of a trainer runs the network once for both terms.
    """

    def __init__(self, vgg: keras.Model, content_layers: Sequence[str] = CONTENT_LAYERS,
                 style_layers: Sequence[str] = STYLE_LAYERS):
        self.content_layers = tuple(content_layers)
        self.style_layers = tuple(style_layers)
        if not self.content_layers or not self.style_layers:
            raise ValueError(f"need at least one content and one style layer, got {self.content_layers} "
                             f"and {self.style_layers}")
        names = [layer.name for layer in vgg.layers]
        unknown = [name for name in self.style_layers + self.content_layers if name not in names]
        if unknown:
            convs = [name for name in names if "conv" in name]
            raise ValueError(f"layers {unknown} are not in {vgg.name}; its conv layers are {convs}")
        outputs = [vgg.get_layer(name).output for name in self.style_layers + self.content_layers]
        self.model = keras.Model(vgg.inputs, outputs, name="style_content_extractor")
        self.model.trainable = False

    def __call__(self, images_0_255: tf.Tensor) -> Dict[str, List[tf.Tensor]]:
        """{"content": [features [B, h, w, c] per content layer], "style": [Grams [B, c, c] per style layer]}."""
        outputs = self.model(vgg_preprocess(images_0_255), training=False)
        style_outputs = outputs[: len(self.style_layers)]
        content_outputs = outputs[len(self.style_layers):]
        return {"content": list(content_outputs), "style": [gram_matrix(out) for out in style_outputs]}


def _as_list(tensors: Tensors) -> List[tf.Tensor]:
    return list(tensors) if isinstance(tensors, (list, tuple)) else [tensors]


def _check_pairs(name: str, values: List, targets: List):
    if len(values) != len(targets) or not values:
        raise ValueError(f"{name}: {len(values)} feature tensors against {len(targets)} targets; "
                         f"expected one target per layer")


def content_loss_per_image(features: Tensors, targets: Tensors) -> tf.Tensor:
    """[B]: per image 0.5 * sum of squared feature differences, averaged over the content layers.

    Averaged as the style term is over its layers (the course divides by NUM_CONTENT_LAYERS), so
    the default single block5_conv2 gives the plain value. Targets may have batch 1 (one content
    image for every image) or the batch of `features`.
    """
    features, targets = _as_list(features), _as_list(targets)
    _check_pairs("content_loss", features, targets)
    per_layer = []
    for value, target in zip(features, targets):
        squared = tf.square(_float32(value) - _float32(target))
        per_layer.append(0.5 * tf.reduce_sum(tf.reshape(squared, [tf.shape(squared)[0], -1]), axis=1))
    return tf.add_n(per_layer) / float(len(per_layer))


def content_loss(features: Tensors, targets: Tensors) -> tf.Tensor:
    """Scalar: content_loss_per_image averaged over the batch (for one image, the course's value)."""
    return tf.reduce_mean(content_loss_per_image(features, targets))


def style_loss_per_image(grams: Tensors, target_grams: Tensors) -> tf.Tensor:
    """[B]: per image the mean squared Gram difference, averaged over the style layers.

    Target Grams usually have batch 1 (the style image) and broadcast over the batch.
    """
    grams, target_grams = _as_list(grams), _as_list(target_grams)
    _check_pairs("style_loss", grams, target_grams)
    per_layer = []
    for gram, target in zip(grams, target_grams):
        squared = tf.square(_float32(gram) - _float32(target))
        per_layer.append(tf.reduce_mean(squared, axis=[1, 2]))
    return tf.add_n(per_layer) / float(len(per_layer))


def style_loss(grams: Tensors, target_grams: Tensors) -> tf.Tensor:
    """Scalar: style_loss_per_image averaged over the batch."""
    return tf.reduce_mean(style_loss_per_image(grams, target_grams))


def total_variation_loss_per_image(images: tf.Tensor) -> tf.Tensor:
    """[B]: tf.image.total_variation, the sum of absolute neighbour differences of each image."""
    return tf.image.total_variation(_float32(images))


def total_variation_loss(images: tf.Tensor) -> tf.Tensor:
    """Scalar: total variation averaged over the batch (one image: tf.image.total_variation)."""
    return tf.reduce_mean(total_variation_loss_per_image(images))


@dataclasses.dataclass(frozen=True)
class StyleWeights:
    """How much each term counts. Defaults: the course's regularised run.

    Source: DeepLearning.AI "Generative Deep Learning with TensorFlow", week 1 lab (neural style
    transfer): style_weight 2e-2, content_weight 1e-2, var_weight 2, with images in [0, 255], content
    = 0.5 * sum of squares and style = mean squared Gram difference -- the terms of this module. The
    TF tutorial's style 1e-2 / content 1e4 / total variation 30 belong to its mean-squared content
    loss and its [0, 1] pixels: on this module's terms they would weigh content about 10^5 times
    more (0.5 x the number of block5_conv2 features at 512 px) and total variation 255 times more.
    """

    content_weight: float = 1e-2
    style_weight: float = 2e-2
    tv_weight: float = 2.0


def total_loss(outputs: Dict[str, List[tf.Tensor]], targets: Dict[str, List[tf.Tensor]], images: tf.Tensor,
               weights: StyleWeights = StyleWeights()) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
    """(total, parts): the weighted sum and its weighted terms {"content", "style", "tv"}.

    `outputs` is the extractor's result for `images` (the image being optimised or the network's
    output), `targets` holds the content features ("content") and the style Grams ("style").
    Parts are already multiplied by their weights, so they add up to the total and show which
    term dominates. Batch reduction: mean over images, as in each term.
    """
    parts = {
        "content": weights.content_weight * content_loss(outputs["content"], targets["content"]),
        "style": weights.style_weight * style_loss(outputs["style"], targets["style"]),
        "tv": weights.tv_weight * total_variation_loss(images),
    }
    return parts["content"] + parts["style"] + parts["tv"], parts
