"""Warmup requests that TF Serving replays when it loads a pushed SavedModel.

TF Serving looks for `<version dir>/assets.extra/tf_serving_warmup_requests`: a TFRecord file of
`tensorflow.serving.PredictionLog` records (Classify, Regress, Predict or MultiInference logs; we
write PredictLogs). When a version loads, the server runs every record through the new session
before it marks the version AVAILABLE, so the one-off costs of the first call (graph
initialisation, kernel selection, oneDNN/XLA autotuning, lazily created resources) are paid at
load instead of by the first real request. It reads at most 1000 records (more makes the load
fail), and a request the model rejects makes the whole version fail to load, so every request
written here is first run through the signature it names.

One request per signature, built from the signature's own input spec:

- `image_bytes`: the example images PNG-encoded (one size, as TF Serving batches them);
- `images`: the example images as float32 in [0, 1] (`stylize` takes any size);
- `latent`: seeded standard-normal points of the signature's latent shape;
- `num`, `seed`: int32 scalars (`num` draws from the prior with stateless `seed`).

The model name in `model_spec` is left empty: TF Serving fills in the servable being loaded.
"""
import logging
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2

from serving import signatures as sig

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving refuses to load a version whose warmup file holds more
DEFAULT_NUM = 4  # `num` of sample requests
DEFAULT_SEED = 0  # `seed` of sample requests and of the latent points
MAX_EXAMPLES = 4  # example images per request: warmup needs the shapes, not volume

_log = logging.getLogger(__name__)


def warmup_path(export_dir: str) -> str:
    """`<export_dir>/assets.extra/tf_serving_warmup_requests`, where TF Serving looks."""
    return os.path.join(export_dir, WARMUP_DIR, WARMUP_FILE)


def predict_request(signature_name: str, inputs: Dict[str, object], dtypes: Optional[Dict[str, tf.DType]] = None
                    ) -> predict_pb2.PredictRequest:
    """A PredictRequest for `signature_name` with each input made a TensorProto (model name left empty)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = signature_name
    for name, value in inputs.items():
        dtype = (dtypes or {}).get(name)
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
    return request


def write_warmup_requests(export_dir: str, requests: Sequence[predict_pb2.PredictRequest]) -> str:
    """Writes `requests` as PredictionLog(PredictLog) records to the warmup file; returns its path."""
    if not requests:
        raise ValueError(f"no warmup requests to write for {export_dir}")
    if len(requests) > MAX_WARMUP_RECORDS:
        raise ValueError(f"{len(requests)} warmup requests for {export_dir}; TF Serving reads at most "
                         f"{MAX_WARMUP_RECORDS} and fails the load beyond that")
    if not tf.io.gfile.exists(os.path.join(export_dir, "saved_model.pb")):
        raise FileNotFoundError(f"{export_dir} has no saved_model.pb: warmup requests belong beside a SavedModel")
    path = warmup_path(export_dir)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(export_dir: str) -> List[prediction_log_pb2.PredictionLog]:
    """The PredictionLog records of `export_dir`'s warmup file, in order."""
    path = warmup_path(export_dir)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{export_dir} has no warmup file {WARMUP_DIR}/{WARMUP_FILE}")
    logs = []
    for index, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
        log = prediction_log_pb2.PredictionLog()
        try:
            log.ParseFromString(record)
        except Exception as error:  # protobuf's DecodeError
            raise ValueError(f"{path}: record {index} is not a tensorflow.serving.PredictionLog ({error})") from error
        logs.append(log)
    return logs


def _as_images(examples, where: str) -> np.ndarray:
    if examples is None:
        raise ValueError(f"{where} takes images, but no example images were given")
    images = np.asarray(examples, dtype=np.float32)
    if images.ndim != 4 or images.shape[0] < 1:
        raise ValueError(f"{where}: example images must be float32 [N, H, W, C] with N >= 1, got {images.shape}")
    if images.min() < 0.0 or images.max() > 1.0:
        raise ValueError(f"{where}: example images must be in [0, 1], got [{images.min():.3g}, {images.max():.3g}]; "
                         "pass the model's [0, 1] images (map tanh-range images with (x + 1) / 2)")
    return images[:MAX_EXAMPLES]


def _check_shape(value: np.ndarray, spec: tf.TensorSpec, where: str) -> None:
    if not spec.shape.is_compatible_with(value.shape):
        raise ValueError(f"{where}: example images have shape {list(value.shape)}, the signature takes "
                         f"{spec.shape.as_list()}")


def _input_value(name: str, spec: tf.TensorSpec, examples, seed: int, num: int, where: str):
    """The warmup value of one named input, or None when the name is not one of our conventions."""
    if name == sig.IMAGE_BYTES_INPUT:
        images = _as_images(examples, where)
        pixels = np.round(images * 255.0).astype(np.uint8)
        return np.array([tf.io.encode_png(image).numpy() for image in pixels], dtype=object)
    if name == sig.IMAGES_INPUT:
        images = _as_images(examples, where)
        _check_shape(images, spec, where)
        return images
    if name == sig.LATENT_INPUT:
        dims = spec.shape.as_list()
        if not dims:
            raise ValueError(f"{where}: latent input has no batch dimension ({dims})")
        count = len(examples[:MAX_EXAMPLES]) if examples is not None else num
        shape = [count if dims[0] is None else dims[0]] + [1 if d is None else d for d in dims[1:]]
        return np.random.default_rng(seed).standard_normal(shape).astype(spec.dtype.as_numpy_dtype)
    if name == sig.NUM_INPUT:
        return np.array(num, dtype=spec.dtype.as_numpy_dtype)
    if name == sig.SEED_INPUT:
        return np.array(seed, dtype=spec.dtype.as_numpy_dtype)
    return None


def requests_for(saved_model_dir: str, examples=None, *, num: int = DEFAULT_NUM, seed: int = DEFAULT_SEED
                 ) -> List[predict_pb2.PredictRequest]:
    """One validated PredictRequest per signature of the SavedModel in `saved_model_dir`.

    `examples` are a few real images, float32 [N, H, W, C] in [0, 1] (the first 4 are used); they
    may be None when no signature takes images (a GAN). A signature with an input outside the
    naming conventions of `serving.signatures` is skipped with a warning; a request the signature
    rejects, or a signature that needs images when none were given, raises ValueError.
    """
    loaded = tf.saved_model.load(saved_model_dir)
    requests = []
    for name in sorted(loaded.signatures):
        function = loaded.signatures[name]
        specs = function.structured_input_signature[1]
        where = f"{saved_model_dir} signature {name!r}"
        values = {key: _input_value(key, spec, examples, seed, num, where) for key, spec in specs.items()}
        unknown = sorted(key for key, value in values.items() if value is None)
        if unknown:
            _log.warning("%s: no warmup request (inputs %s are not %s, %s, %s, %s or %s)", where, unknown,
                         sig.IMAGE_BYTES_INPUT, sig.IMAGES_INPUT, sig.LATENT_INPUT, sig.NUM_INPUT, sig.SEED_INPUT)
            continue
        try:
            function(**{key: tf.constant(value, dtype=specs[key].dtype) for key, value in values.items()})
        except (tf.errors.OpError, ValueError, TypeError) as error:
            raise ValueError(f"{where} rejects its warmup request "
                             f"({ {k: list(np.shape(v)) for k, v in values.items()} }): {error}") from error
        requests.append(predict_request(name, values, {key: spec.dtype for key, spec in specs.items()}))
    return requests


def add_warmup(export_dir: str, example_images=None, *, num: int = DEFAULT_NUM, seed: int = DEFAULT_SEED) -> str:
    """Builds, validates and writes the warmup requests of the SavedModel just exported to `export_dir`.

    `example_images`: a few real images the model takes, float32 [N, H, W, C] in [0, 1] (e.g. the
    Trainer's eval preview batch); None for models without image inputs. Returns the file's path.
    """
    return write_warmup_requests(export_dir, requests_for(export_dir, example_images, num=num, seed=seed))


def replay_warmup_requests(export_dir: str) -> Dict[str, Dict[str, np.ndarray]]:
    """Runs every warmup request through the SavedModel as TF Serving would; signature -> outputs.

    Raises ValueError naming the record when a request names a missing signature or inputs the
    signature does not take.
    """
    loaded = tf.saved_model.load(export_dir)
    outputs = {}
    for index, log in enumerate(read_warmup_requests(export_dir)):
        if not log.HasField("predict_log"):
            raise ValueError(f"{warmup_path(export_dir)}: record {index} is not a PredictLog")
        request = log.predict_log.request
        name = request.model_spec.signature_name or sig.SERVING_DEFAULT
        if name not in loaded.signatures:
            raise ValueError(f"{warmup_path(export_dir)}: record {index} names signature {name!r}; the model has "
                             f"{sorted(loaded.signatures)}")
        function = loaded.signatures[name]
        expected = set(function.structured_input_signature[1])
        if set(request.inputs) != expected:
            raise ValueError(f"{warmup_path(export_dir)}: record {index} ({name!r}) has inputs "
                             f"{sorted(request.inputs)}, the signature takes {sorted(expected)}")
        inputs = {key: tf.constant(tf.make_ndarray(proto)) for key, proto in request.inputs.items()}
        outputs[name] = {key: value.numpy() for key, value in function(**inputs).items()}
    return outputs
