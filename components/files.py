"""File access shared by the image ExampleGens: local paths through os and open(), remote ones
(gs://, ...) through tf.io.gfile.

A Beam worker reading a local folder then never imports TensorFlow, which would add seconds to
every worker's start (measured in benchmarks/README.md, face_centering.py).
"""
import os
from typing import List, Tuple


def is_remote(path: str) -> bool:
    return "://" in path


def nearest_existing(path: str) -> str:
    """The local path, made absolute, if it exists; else its nearest existing ancestor, where a folder
    still to be made would be created (so it can be checked before any work)."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    return existing


def local_or_uri(path: str) -> str:
    """A local path made absolute; a URI (gs://...) or "" as given."""
    return path if not path or is_remote(path) else os.path.abspath(path)


def write_text_whole(path: str, text: str) -> None:
    """Writes a text file so that a reader sees the old file or the new one, never half of it; its folders
    are made as needed. Locally through a temporary file beside it, renamed over `path`; a remote object
    (gs://...) appears only whole when its upload closes."""
    if is_remote(path):
        gfile().makedirs(os.path.dirname(path))
        with gfile().GFile(path, "w") as f:
            f.write(text)
        return
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with open(temporary, "w") as f:
        f.write(text)
    os.replace(temporary, path)


def gfile():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    return tf.io.gfile


def exists(path: str) -> bool:
    return gfile().exists(path) if is_remote(path) else os.path.exists(path)


def isdir(path: str) -> bool:
    return gfile().isdir(path) if is_remote(path) else os.path.isdir(path)


def isfile(path: str) -> bool:
    return exists(path) and not isdir(path) if is_remote(path) else os.path.isfile(path)


def unreadable_reason(path: str) -> str:
    """Why a remote store cannot be asked about `path` (no credentials, no network, no permission), or ''
    when it answered (the path exists or is not there) or the path is local. gfile's exists and isdir
    answer False for both, so a caller that found nothing asks this before it says "does not exist"."""
    if not is_remote(path):
        return ""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    try:
        gfile().stat(path)
    except tf.errors.NotFoundError:
        return ""
    except tf.errors.OpError as error:
        return error.message
    return ""


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
