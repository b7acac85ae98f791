"""The Beam stage of CelebAExampleGen: one shard of candidates in, tf.Examples per split and JSON rejects out.

This module imports neither TensorFlow nor TFX (the tf.Example is serialized here, see
`serialize_example`), so a Beam worker process that unpickles the DoFn imports only Beam,
numpy and PIL: a worker starts in a few seconds instead of the 10-20 s that importing
TensorFlow and TFX costs on a busy 2-core machine. (A worker reading a TFDS source or a
remote folder still imports TensorFlow, lazily, for tf.data or tf.io.gfile.)
"""
import struct
from typing import Any, Dict, Iterator, Sequence, Tuple

import apache_beam as beam

from components.celeba_example_gen import face_centering, sources
from trainer_modules import contract

METRICS_NAMESPACE = "CelebAExampleGen"
REJECTS_TAG = "rejects"

Shard = Tuple[str, int, int]


def examples_counter(split: str) -> str:
    return f"examples_{split}"


def rejects_counter(reason: str) -> str:
    return f"rejects_{reason}"


def padded_counter(split: str) -> str:
    return f"padded_{split}"


# tf.Example in the protobuf wire format (tensorflow/core/example/{example,feature}.proto):
#   Example  { Features features = 1; }
#   Features { map<string, Feature> feature = 1; }   a map entry is { string key = 1; Feature value = 2; }
#   Feature  { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
#   BytesList { repeated bytes value = 1; }  FloatList { repeated float value = 1 [packed]; }
#   Int64List { repeated int64 value = 1 [packed]; }


def _varint(value: int) -> bytes:
    value &= 0xFFFFFFFFFFFFFFFF  # int64 two's complement, as protobuf encodes negative values
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(field_number: int, payload: bytes) -> bytes:
    return _varint(field_number << 3 | 2) + _varint(len(payload)) + payload


def bytes_feature(values: Sequence[bytes]) -> bytes:
    return _length_delimited(1, b"".join(_length_delimited(1, value) for value in values))


def float_feature(values: Sequence[float]) -> bytes:
    return _length_delimited(2, _length_delimited(1, struct.pack(f"<{len(values)}f", *values)))


def int64_feature(values: Sequence[int]) -> bytes:
    return _length_delimited(3, _length_delimited(1, b"".join(_varint(int(value)) for value in values)))


def serialize_example(features: Dict[str, bytes]) -> bytes:
    """A serialized tf.Example from {name: an encoded Feature (bytes_feature, float_feature, int64_feature)}."""
    entries = b"".join(
        _length_delimited(1, _length_delimited(1, name.encode()) + _length_delimited(2, feature))
        for name, feature in sorted(features.items())
    )
    return _length_delimited(1, entries)


def to_tf_example(face: face_centering.CenteredFace, candidate: sources.Candidate) -> bytes:
    """A serialized tf.Example: image (PNG), image_id, landmarks (float [10]) and attributes (int64 [40]) if known."""
    features = {
        contract.IMAGE_KEY: bytes_feature([face.png]),
        contract.IMAGE_ID_KEY: bytes_feature([candidate.image_id.encode()]),
        contract.LANDMARKS_KEY: float_feature(face.landmarks.tolist()),
    }
    if candidate.attributes is not None:
        features[contract.ATTRIBUTES_KEY] = int64_feature(candidate.attributes.tolist())
    return serialize_example(features)


class CenterFacesInShard(beam.DoFn):
    """Reads one shard, face-centres its images; emits serialized tf.Examples per split and JSON rejects."""

    def __init__(self, source: sources.CelebASource, crop: str, max_examples_per_split: int, draft: bool = False):
        self._source = source
        self._crop = crop
        self._max_examples = max_examples_per_split
        self._draft = draft

    def process(self, shard: Shard) -> Iterator[Any]:
        split, start, stop = shard
        examples = padded = handled = 0
        for item in self._source.read(split, start, stop, self._max_examples):
            handled += 1
            if isinstance(item, sources.Reject):
                yield _tagged_reject(item)
                continue
            candidate, encoded = item
            try:
                face = face_centering.center_face(encoded, candidate.landmarks, self._crop, self._draft)
            except face_centering.ImageRejected as rejected:
                detail = f"{self._source.location(candidate)}: {rejected.detail}"
                yield _tagged_reject(sources.Reject(candidate.image_id, split, rejected.reason, detail))
                continue
            examples += 1
            padded += face.padded
            yield beam.pvalue.TaggedOutput(split, to_tf_example(face, candidate))
        beam.metrics.Metrics.counter(METRICS_NAMESPACE, examples_counter(split)).inc(examples)
        beam.metrics.Metrics.counter(METRICS_NAMESPACE, padded_counter(split)).inc(padded)
        if handled != stop - start:
            raise sources.CelebADataError(
                f"{self._source}: split {split} images {start}..{stop - 1}: read {handled} of {stop - start}"
            )


def _tagged_reject(reject: sources.Reject) -> beam.pvalue.TaggedOutput:
    beam.metrics.Metrics.counter(METRICS_NAMESPACE, rejects_counter(reject.reason)).inc()
    return beam.pvalue.TaggedOutput(REJECTS_TAG, reject.to_json())


def count_planned_reject(line: str) -> str:
    """Counts a reject the plan found (so the counters cover every reject) and passes it on."""
    beam.metrics.Metrics.counter(METRICS_NAMESPACE, rejects_counter(sources.Reject.from_json(line).reason)).inc()
    return line
