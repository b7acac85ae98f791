"""Fast arbitrary style transfer with Magenta's pre-trained TF Hub module (Ghiasi et al. 2017).

One forward pass stylizes any content image with any style image: the module predicts the
style's normalisation parameters from the style image, so there is neither an optimisation per
image (Gatys) nor a network per style (the feed-forward `style_transfer`). The module cannot be
downloaded here, so `load_hub_module` also takes a local SavedModel directory.
"""
import importlib.util
import sys
import types

import tensorflow as tf

DEFAULT_HUB_HANDLE = "https://tfhub.dev/google/magenta/arbitrary-image-stylization-v1-256/2"
# The compressed download of the same module, for a machine without network access.
DEFAULT_HUB_ARCHIVE = DEFAULT_HUB_HANDLE + "?tf-hub-format=compressed"
HUB_STYLE_SIZE = 256  # the module was trained on 256x256 style images


class HubModuleError(ValueError):
    """A TF Hub module cannot be loaded or does not have the arbitrary-stylization signature."""


def import_tensorflow_hub():
    """tensorflow_hub, importable although setuptools >= 81 no longer ships `pkg_resources`.

    tensorflow_hub 0.16.1 imports `pkg_resources.parse_version` once, to check the TF version.
    Where that module is missing, a stand-in with `packaging`'s parse_version serves that one
    import and is removed again, so no other library mistakes it for the real pkg_resources.
    """
    if "tensorflow_hub" in sys.modules or importlib.util.find_spec("pkg_resources") is not None:
        import tensorflow_hub
        return tensorflow_hub
    from packaging.version import parse

    shim = types.ModuleType("pkg_resources")
    shim.parse_version = parse
    sys.modules["pkg_resources"] = shim
    try:
        import tensorflow_hub
    finally:
        if sys.modules.get("pkg_resources") is shim:
            del sys.modules["pkg_resources"]
    return tensorflow_hub


def _is_remote(handle: str) -> bool:
    return handle.startswith(("http://", "https://"))


def load_hub_module(handle: str = DEFAULT_HUB_HANDLE):
    """The stylization module behind a tfhub.dev/Kaggle handle or a local SavedModel directory.

    tensorflow_hub.load reads $TFHUB_CACHE_DIR first, so a module cached there loads offline too.
    """
    if not handle:
        raise HubModuleError(f"no TF Hub handle given; expected a URL such as {DEFAULT_HUB_HANDLE} or a local "
                             f"SavedModel directory")
    if not _is_remote(handle) and not tf.io.gfile.isdir(handle):
        raise FileNotFoundError(f"TF Hub module directory {handle} does not exist (expected an unpacked "
                                f"SavedModel directory, e.g. of {DEFAULT_HUB_ARCHIVE})")
    hub = import_tensorflow_hub()
    try:
        module = hub.load(handle)
    except Exception as error:  # URLError without network, OSError/ValueError for a broken directory
        if _is_remote(handle):
            raise HubModuleError(
                f"cannot load TF Hub module {handle}: {error}. Without network access (this environment has "
                f"none) fetch {handle}?tf-hub-format=compressed on a machine that has it, unpack the .tar.gz "
                f"into a directory and pass that directory (--hub-handle DIR)") from error
        raise HubModuleError(f"cannot load TF Hub module from {handle}: {error}. Expected a SavedModel directory "
                             f"(saved_model.pb and variables/)") from error
    if not callable(module):
        raise HubModuleError(f"TF Hub module {handle} is not callable as module(content, style); expected the "
                             f"arbitrary-image-stylization signature of {DEFAULT_HUB_HANDLE}")
    return module


def _as_unit_image(image, name: str) -> tf.Tensor:
    image = tf.convert_to_tensor(image, tf.float32)
    if image.shape.rank != 4 or image.shape[0] != 1 or image.shape[-1] != 3:
        raise ValueError(f"{name} image must be float [1, H, W, 3] RGB in [0, 1], got shape {image.shape}")
    low, high = float(tf.reduce_min(image)), float(tf.reduce_max(image))
    if low < 0.0 or high > 1.0:
        raise ValueError(f"{name} image must hold pixels in [0, 1], got [{low:g}, {high:g}]")
    return image


def stylize_hub(module, content, style, style_size: int = HUB_STYLE_SIZE) -> tf.Tensor:
    """content [1, H, W, 3] and style [1, h, w, 3] in [0, 1] -> the stylized content, [1, H', W', 3] in [0, 1].

    The style image is resized to style_size x style_size, the size the module was trained on
    (larger style images change the scale of the strokes it reproduces). The output has about the
    content's size (the magenta module may round H and W to its strides).
    """
    content = _as_unit_image(content, "content")
    style = tf.image.resize(_as_unit_image(style, "style"), (style_size, style_size), antialias=True)
    outputs = module(tf.constant(content), tf.constant(tf.clip_by_value(style, 0.0, 1.0)))
    stylized = tf.convert_to_tensor(outputs[0], tf.float32)
    if stylized.shape.rank != 4 or stylized.shape[-1] != 3:
        raise HubModuleError(f"the module returned {stylized.shape} as its first output; expected stylized "
                             f"images [1, H, W, 3]")
    return tf.clip_by_value(stylized, 0.0, 1.0)
