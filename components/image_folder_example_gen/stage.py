"""The Beam stage of ImageFolderExampleGen: a shard of (image_id, split) in, tf.Examples and JSON rejects out.

Like CelebAExampleGen's `centering_stage` (whose tf.Example wire-format writer, counter names and
rejects tag this module uses), it imports neither TensorFlow nor TFX, so a Beam worker process
that unpickles the DoFn imports only Beam, numpy and PIL. (A worker reading a remote folder
imports TensorFlow lazily, for tf.io.gfile.)
"""
from typing import Any, Iterator, Tuple

import apache_beam as beam

from components.celeba_example_gen.centering_stage import (
    REJECTS_TAG, bytes_feature, examples_counter, int64_feature, rejects_counter, serialize_example,
)
from components.image_folder_example_gen import sources, square_crop
from trainer_modules import contract

METRICS_NAMESPACE = "ImageFolderExampleGen"

Shard = Tuple[sources.Candidate, ...]


def upscaled_counter(split: str) -> str:
    return f"upscaled_{split}"


def to_tf_example(image_id: str, image: square_crop.SquareImage) -> bytes:
    """A serialized tf.Example: image (PNG), image_id, source_height and source_width (int64)."""
    return serialize_example({
        contract.IMAGE_KEY: bytes_feature([image.png]),
        contract.IMAGE_ID_KEY: bytes_feature([image_id.encode()]),
        sources.SOURCE_HEIGHT_KEY: int64_feature([image.source_height]),
        sources.SOURCE_WIDTH_KEY: int64_feature([image.source_width]),
    })


class CropImagesInShard(beam.DoFn):
    """Reads one shard's images and crops them square; emits serialized tf.Examples per split and JSON rejects."""

    def __init__(self, data_dir: str, image_size: int):
        self._data_dir = data_dir
        self._image_size = image_size

    def process(self, shard: Shard) -> Iterator[Any]:
        examples = {split: 0 for split in sources.SPLITS}
        upscaled = {split: 0 for split in sources.SPLITS}
        for image_id, split in shard:
            path = sources.image_path(self._data_dir, image_id)
            try:
                encoded = sources.read_bytes(path)
            except FileNotFoundError:
                yield _tagged_reject(sources.Reject(
                    image_id, split, sources.MISSING_IMAGE, f"{path}: listed when the run was planned, gone when read"))
                continue
            except Exception as error:  # permissions, I/O errors, remote filesystem errors
                yield _tagged_reject(sources.Reject(
                    image_id, split, sources.UNREADABLE_IMAGE, f"{path}: cannot be read ({error})"))
                continue
            try:
                image = square_crop.square_crop(encoded, self._image_size)
            except square_crop.ImageRejected as rejected:
                yield _tagged_reject(sources.Reject(image_id, split, rejected.reason, f"{path}: {rejected.detail}"))
                continue
            examples[split] += 1
            upscaled[split] += image.upscaled
            yield beam.pvalue.TaggedOutput(split, to_tf_example(image_id, image))
        for split in sources.SPLITS:
            beam.metrics.Metrics.counter(METRICS_NAMESPACE, examples_counter(split)).inc(examples[split])
            beam.metrics.Metrics.counter(METRICS_NAMESPACE, upscaled_counter(split)).inc(upscaled[split])


def _tagged_reject(reject: sources.Reject) -> beam.pvalue.TaggedOutput:
    beam.metrics.Metrics.counter(METRICS_NAMESPACE, rejects_counter(reject.reason)).inc()
    return beam.pvalue.TaggedOutput(REJECTS_TAG, reject.to_json())
