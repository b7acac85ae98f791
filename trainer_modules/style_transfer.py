"""Fast style transfer: the Trainer module (`run_fn`) of a feed-forward image transformation network.

The network is Johnson et al. 2016 ("Perceptual Losses for Real-Time Style Transfer"): a 9x9
conv, two stride-2 downsampling convs, five residual blocks, two upsampling stages and a 9x9
output conv, with instance normalisation (Ulyanov et al.; Keras's GroupNormalization with one
group per channel) instead of batch normalisation. Upsampling is nearest-neighbour resize +
conv rather than transposed convs, which avoids the checkerboard artefacts of the original.

It is trained for ONE style image with the VGG19 perceptual loss of `style_losses` (the same
content, style and total-variation terms as the Gatys optimisation): content against the
content image's own features, style against the style image's Gram matrices. The VGG19 weights
come from `vgg_weights` (a local file, "imagenet" where the network allows, or "random" in tests).

Images cross the network's boundary as float [0, 255] RGB, VGG's own scale; the served
signatures take and return [0, 1] like every other family. The network is fully convolutional:
`stylize` takes any height and width (padded by reflection to a multiple of 4 and cropped back),
so one pushed model stylizes any image size.
"""
import dataclasses
import hashlib
import os
from typing import Dict, Optional

import keras
import tensorflow as tf
import tensorflow_transform as tft

from serving import signatures as sig
from serving import warmup
from trainer_modules import contract
from trainer_modules import gatys
from trainer_modules import png_output
from trainer_modules import style_losses
from trainer_modules import training

# custom_config keys of this family (the shared ones are in training.py).
STYLE_IMAGE = "style_image"  # path (any tf.io.gfile path) of the style image, JPEG or PNG
STYLE_IMAGE_SIZE = "style_image_size"  # long side the style image is resized to before its Grams are taken
VGG_WEIGHTS = "vgg_weights"  # local VGG19 no-top weights file, "imagenet", or style_losses.VGG_RANDOM (tests)
CONTENT_WEIGHT = "content_weight"
STYLE_WEIGHT = "style_weight"
TV_WEIGHT = "tv_weight"
RESIDUAL_BLOCKS = "residual_blocks"
BASE_FILTERS = "base_filters"

DEFAULT_STYLE_IMAGE_SIZE = 256
DEFAULT_RESIDUAL_BLOCKS = 5
DEFAULT_BASE_FILTERS = 32  # Johnson et al.: 32, 64, 128 filters
PAD_MULTIPLE = 4  # two stride-2 stages
GRID_IMAGES = 6


@dataclasses.dataclass
class StyleConfig:
    """What the style family reads from custom_config besides the shared TrainingConfig."""

    style_image: str = ""
    vgg_weights: str = ""
    style_image_size: int = DEFAULT_STYLE_IMAGE_SIZE
    content_weight: Optional[float] = None  # None: style_losses.StyleWeights' defaults
    style_weight: Optional[float] = None
    tv_weight: Optional[float] = None
    residual_blocks: int = DEFAULT_RESIDUAL_BLOCKS
    base_filters: int = DEFAULT_BASE_FILTERS

    @classmethod
    def from_custom_config(cls, custom_config: Optional[dict]) -> "StyleConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        config = cls(**{k: v for k, v in (custom_config or {}).items() if k in known})
        if not config.style_image:
            raise ValueError(f"custom_config[{STYLE_IMAGE!r}] must name the style image (JPEG or PNG)")
        if not tf.io.gfile.exists(config.style_image):
            raise ValueError(f"style image {config.style_image} does not exist")
        if config.style_image_size < 16:
            raise ValueError(f"custom_config[{STYLE_IMAGE_SIZE!r}] must be >= 16, got {config.style_image_size}")
        if config.residual_blocks < 0 or config.base_filters < 1:
            raise ValueError(f"residual_blocks must be >= 0 and base_filters >= 1, got "
                             f"{config.residual_blocks} and {config.base_filters}")
        return config

    def weights(self) -> "style_losses.StyleWeights":
        defaults = style_losses.StyleWeights()
        return style_losses.StyleWeights(**{
            name: getattr(defaults, name) if getattr(self, name) is None else float(getattr(self, name))
            for name in ("content_weight", "style_weight", "tv_weight")
        })

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def file_digest(path: str) -> str:
    """sha256 of a file's bytes (the style image is part of what a checkpoint was trained for)."""
    with tf.io.gfile.GFile(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


# ---------------------------------------------------------------------------
# The image transformation network


def _instance_norm(name):
    return keras.layers.GroupNormalization(groups=-1, epsilon=1e-3, name=name)


def _conv_block(x, filters, kernel, strides, name, relu=True):
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", name=f"{name}_conv")(x)
    x = _instance_norm(f"{name}_in")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _residual_block(x, filters, name):
    y = _conv_block(x, filters, 3, 1, f"{name}_a")
    y = _conv_block(y, filters, 3, 1, f"{name}_b", relu=False)
    return keras.layers.Add(name=f"{name}_add")([x, y])


def _upsample_block(x, filters, name):
    x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_up")(x)
    return _conv_block(x, filters, 3, 1, name)


def build_transform_net(residual_blocks: int = DEFAULT_RESIDUAL_BLOCKS,
                        base_filters: int = DEFAULT_BASE_FILTERS) -> keras.Model:
    """images float [N, H, W, 3] in [0, 255] (H, W multiples of 4) -> stylized images, same shape and range."""
    images = keras.Input((None, None, 3), name="images")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="to_symmetric")(images)
    x = _conv_block(x, base_filters, 9, 1, "down0")
    x = _conv_block(x, base_filters * 2, 3, 2, "down1")
    x = _conv_block(x, base_filters * 4, 3, 2, "down2")
    for index in range(residual_blocks):
        x = _residual_block(x, base_filters * 4, f"res{index}")
    x = _upsample_block(x, base_filters * 2, "up1")
    x = _upsample_block(x, base_filters, "up2")
    x = keras.layers.Conv2D(3, 9, padding="same", name="out_conv", dtype="float32")(x)
    # tanh keeps the pixels in range by construction; (t + 1) * 127.5 maps it onto [0, 255].
    x = keras.layers.Activation("tanh", dtype="float32", name="out_tanh")(x)
    outputs = keras.layers.Rescaling(127.5, offset=127.5, dtype="float32", name="to_pixels")(x)
    return keras.Model(images, outputs, name="transform_net")


def stylize_any_size(net: keras.Model, images_0_255: tf.Tensor, training: bool = False) -> tf.Tensor:
    """Runs the net on images of any height and width: reflect-pads to a multiple of 4, crops back.

    The stylized images always have the input's size, so the content loss compares like with like.
    """
    shape = tf.shape(images_0_255)
    height, width = shape[1], shape[2]
    pad_h = (-height) % PAD_MULTIPLE
    pad_w = (-width) % PAD_MULTIPLE
    # REFLECT needs the pad to be smaller than the side; SYMMETRIC allows up to the side (sides >= 3 here).
    padded = tf.pad(images_0_255, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode="SYMMETRIC")
    styled = net(padded, training=training)
    return styled[:, :height, :width, :]


# ---------------------------------------------------------------------------
# Training


def perceptual_loss(extractor, styled, content_pixels, style_grams, weights) -> Dict[str, tf.Tensor]:
    """{loss, content, style, tv} of a batch of stylized images, each term a mean over the batch.

    Per image the terms are style_losses' own: content = 0.5 * sum of squared feature differences
    (averaged over content layers), style = mean squared Gram difference averaged over style layers,
    tv = tf.image.total_variation; a batch averages them over its images, so the loss does not grow
    with the batch size. `loss` is their StyleWeights combination.
    """
    styled_features = extractor(styled)
    content = style_losses.content_loss(styled_features["content"], extractor(content_pixels)["content"])
    style = style_losses.style_loss(styled_features["style"], style_grams)  # the style's Grams broadcast
    tv = style_losses.total_variation_loss(styled)
    loss = weights.content_weight * content + weights.style_weight * style + weights.tv_weight * tv
    return {"loss": loss, "content": content, "style": style, "tv": tv}


class StyleTransferModel(keras.Model):
    """The transformation network trained with the perceptual loss of one style (a custom train_step).

    Content targets are the batch's own VGG features; style targets are the style image's Grams,
    computed once. The loss per batch is the StyleWeights combination of content, style and TV.
    """

    def __init__(self, net, extractor, style_grams, weights, **kwargs):
        super().__init__(**kwargs)
        self.net = net
        self.extractor = extractor
        self.style_grams = [tf.constant(g) for g in style_grams]
        self.style_weights = weights
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", "content", "style", "tv")}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, images, training=False):
        return self.net(images, training=training)

    def losses_of(self, content_images, training=False):
        """Content images in [0, 1] -> {loss, content, style, tv} batch means of the stylized images."""
        pixels = tf.cast(content_images, tf.float32) * 255.0
        styled = stylize_any_size(self.net, pixels, training=training)
        return perceptual_loss(self.extractor, styled, pixels, self.style_grams, self.style_weights)

    def _record(self, parts):
        for name, tracker in self.trackers.items():
            tracker.update_state(parts[name])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, data):
        images, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            parts = self.losses_of(images, training=True)
            scaled = self.optimizer.scale_loss(parts["loss"] / replicas)
        variables = self.net.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        return self._record(parts)

    def test_step(self, data):
        images, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self._record(self.losses_of(images))


def style_targets(extractor, style_image_path: str, size: int):
    """The style image's Gram matrices, from the image resized so its long side is `size`."""
    style = gatys.load_image(style_image_path, max_dim=size)
    return [g.numpy() for g in extractor(style)["style"]]


# ---------------------------------------------------------------------------
# Export


class StyleExport(tf.Module):
    """The pushed SavedModel: `stylize` (float images), `stylize_bytes` and `serving_default` (encoded bytes)."""

    def __init__(self, net: keras.Model):
        super().__init__()
        self.net = net

        @tf.function(input_signature=[sig.input_spec(sig.IMAGES_INPUT, image_shape=(None, None, 3))])
        def stylize(images):
            styled = stylize_any_size(self.net, tf.clip_by_value(images, 0.0, 1.0) * 255.0)
            return {sig.IMAGES_OUTPUT: styled / 255.0}

        @tf.function(input_signature=[sig.input_spec(sig.IMAGE_BYTES_INPUT)])
        def stylize_bytes(image_bytes):
            # A batch of encoded images of one size (TF Serving batches requests that way); each
            # JPEG or PNG is decoded to RGB, stylized and returned as floats and as PNG bytes.
            decoded = tf.map_fn(
                lambda data: tf.image.convert_image_dtype(
                    tf.io.decode_image(data, channels=3, expand_animations=False), tf.float32),
                image_bytes, fn_output_signature=tf.TensorSpec([None, None, 3], tf.float32))
            styled = stylize_any_size(self.net, decoded * 255.0) / 255.0
            return {sig.IMAGES_OUTPUT: styled, sig.PNG_BYTES_OUTPUT: png_output.encode_png(styled)}

        self.stylize = stylize
        self.stylize_bytes = stylize_bytes

    def signatures(self) -> Dict[str, object]:
        return {sig.STYLIZE: self.stylize, sig.STYLIZE_BYTES: self.stylize_bytes,
                sig.SERVING_DEFAULT: self.stylize_bytes}


def export_stylizer(net: keras.Model, export_dir: str) -> str:
    module = StyleExport(net)
    tf.saved_model.save(module, export_dir, signatures=module.signatures())
    return export_dir


# ---------------------------------------------------------------------------
# Trainer entry point


def run_fn(fn_args):
    """TFX Trainer entry point (GenericExecutor)."""
    custom_config = dict(fn_args.custom_config or {})
    style_config = StyleConfig.from_custom_config(custom_config)
    config = training.TrainingConfig.from_custom_config(custom_config)
    keras.utils.set_random_seed(config.seed)
    strategy = training.choose_strategy(config.strategy)
    with training.precision_policy(config.mixed_precision, strategy) as policy:
        _train_and_export(fn_args, style_config, config, strategy, policy)


def _train_and_export(fn_args, style_config: StyleConfig, config, strategy, policy):
    replicas = strategy.num_replicas_in_sync
    global_batch = config.batch_size * replicas
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    spec = tf_transform_output.transformed_feature_spec()
    if contract.IMAGE_KEY not in spec or spec[contract.IMAGE_KEY].shape[-1:] != [3]:
        raise ValueError(f"transformed examples of {fn_args.transform_output} need an RGB {contract.IMAGE_KEY!r} "
                         f"[H, W, 3] in [0, 1]; got {spec.get(contract.IMAGE_KEY)}")
    spec = {contract.IMAGE_KEY: spec[contract.IMAGE_KEY]}

    def to_inputs(features):
        return features[contract.IMAGE_KEY]

    train_ds = training.make_dataset(
        fn_args.train_files, spec, to_inputs, global_batch, seed=config.seed, shuffle_buffer=config.shuffle_buffer)
    eval_ds = training.make_dataset(fn_args.eval_files, spec, to_inputs, global_batch, shuffle=False)
    preview = next(iter(training.make_dataset(
        fn_args.eval_files, spec, to_inputs, GRID_IMAGES, shuffle=False, repeat=False, drop_remainder=False)))

    weights = style_config.weights()
    with strategy.scope():
        vgg = style_losses.load_vgg19(style_config.vgg_weights)
        extractor = style_losses.StyleContentExtractor(vgg)
        grams = style_targets(extractor, style_config.style_image, style_config.style_image_size)
        net = build_transform_net(style_config.residual_blocks, style_config.base_filters)
        model = StyleTransferModel(net, extractor, grams, weights, name="style_transfer")
        model.compile(
            optimizer=keras.optimizers.Adam(config.learning_rate),
            jit_compile=config.jit_compile,
            steps_per_execution=config.execution_steps(fn_args.train_steps, strategy),
        )
        model.optimizer.build(net.trainable_variables)

    def grid_rows():
        styled = stylize_any_size(net, preview * 255.0) / 255.0
        return [preview.numpy(), styled.numpy()]

    fit = training.fit_resumable(
        model, fn_args, config, train_ds, eval_ds, global_batch,
        run_key_parts=(style_config.as_dict(), file_digest(style_config.style_image), replicas),
        trackables={"net": net, "optimizer": model.optimizer},  # VGG is fixed: not checkpointed
        callbacks=[training.ImageGridCallback(fn_args.model_run_dir, grid_rows, name="content_and_stylized")],
    )
    export_stylizer(net, fn_args.serving_model_dir)
    warmup.add_warmup(fn_args.serving_model_dir, preview.numpy())  # TF Serving replays these at load
    training.write_png(os.path.join(fn_args.model_run_dir, "stylized.png"), training.image_grid(grid_rows()))
    training.write_training_summary(fn_args.model_run_dir, {
        "family": "style",
        "style": style_config.as_dict(),
        "style_image_sha256": file_digest(style_config.style_image),
        "loss_weights": dataclasses.asdict(weights),
        "strategy": type(strategy).__name__,
        "replicas": replicas,
        "precision": policy,
        "parameters": int(net.count_params()),
        **fit.summary(),
    })
