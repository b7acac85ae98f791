"""File access shared by the image ExampleGens: local paths through os and open(), remote ones
(gs://, ...) through tf.io.gfile.

A Beam worker reading a local folder then never imports TensorFlow, which would add seconds to
every worker's start (measured in benchmarks/README.md, face_centering.py).
"""
import os
from typing import List, Tuple


def is_remote(path: str) -> bool:
    return "://" in path


def gfile():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    return tf.io.gfile


def exists(path: str) -> bool:
    return gfile().exists(path) if is_remote(path) else os.path.exists(path)


def isdir(path: str) -> bool:
    return gfile().isdir(path) if is_remote(path) else os.path.isdir(path)


def listdir(path: str) -> List[str]:
    return [name.rstrip("/") for name in gfile().listdir(path)] if is_remote(path) else os.listdir(path)


def size_and_mtime(path: str) -> Tuple[int, int]:
    if is_remote(path):
        stat = gfile().stat(path)
        return stat.length, stat.mtime_nsec
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def read_bytes(path: str) -> bytes:
    """The file's bytes; FileNotFoundError if it does not exist."""
    if not is_remote(path):
        with open(path, "rb") as f:
            return f.read()
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read()
    except tf.errors.NotFoundError as error:
        raise FileNotFoundError(path) from error
