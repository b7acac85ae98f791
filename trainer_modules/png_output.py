"""The `png_bytes` output of the exported signatures: float images in [0, 1] as PNG bytes, in the graph.

Shared by every family's export (autoencoder, vae, gan, style), so a served PNG holds exactly the
pixels a client gets by encoding the float output itself (serving.client.encode_png): uint8
round(x * 255) of the images clipped to [0, 1], round half to even in both.
"""
import tensorflow as tf


def to_uint8(images: tf.Tensor) -> tf.Tensor:
    """Float images in [0, 1] (any shape) -> uint8 round(x * 255), out-of-range values clipped."""
    pixels = tf.round(tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 1.0) * 255.0)
    return tf.cast(pixels, tf.uint8)


def encode_png(images: tf.Tensor) -> tf.Tensor:
    """Float images [N, H, W, C] in [0, 1] (C 1, 3 or 4) -> string [N], one PNG per image."""
    return tf.map_fn(tf.io.encode_png, to_uint8(images), fn_output_signature=tf.TensorSpec([], tf.string))
