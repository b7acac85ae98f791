"""Clients for the pushed models behind TF Serving: gRPC (`GrpcClient`) and REST (`RestClient`).

Both speak TF Serving's own protocols (PredictionService over gRPC; `POST /v1/models/...:predict`
over HTTP) and offer the same calls:

    client = GrpcClient("localhost:8500")            # or RestClient("http://localhost:8501")
    images = client.predict("gan_dense_mnist", sig.SAMPLE, {sig.NUM_INPUT: np.int32(16),
                                                            sig.SEED_INPUT: np.int32(0)})[sig.IMAGES_OUTPUT]
    styled = client.predict_batched("style", sig.STYLIZE_BYTES, {sig.IMAGE_BYTES_INPUT: image_file_bytes(paths)})
    pngs = client.predict("gan_dense_mnist", sig.SERVING_DEFAULT, {...},
                          output_filter=[sig.PNG_BYTES_OUTPUT])[sig.PNG_BYTES_OUTPUT]

Output filter: `predict` and `predict_batched` take `output_filter`, the names of the outputs wanted
(None or empty: all of them), e.g. only `png_bytes` of a `serving_default` that also returns the float
images. Over gRPC it is PredictRequest.output_filter, so TF Serving sends only those tensors; TF
Serving's REST API has no filter, so the RestClient receives every output and keeps the named ones.

Retries: a call is retried with exponential backoff (`backoff`, 2 x backoff, 4 x backoff, ...) up to
`retries` times when the server could not be reached or said it is unavailable (gRPC UNAVAILABLE, HTTP
503, connection errors). Predict on these models has no side effects (sampling is keyed by the seed), so a
retry cannot change a result; timeouts (gRPC DEADLINE_EXCEEDED, HTTP read timeouts) are nevertheless NOT
retried by default, because a request that was too slow once is usually too slow again and retrying it
multiplies the caller's wait and the server's load. Pass `retry_timeouts=True` to retry them too.
Client mistakes (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, HTTP 4xx) are never retried.

Input dtypes: over gRPC each input whose name serving/signatures.py's INPUTS lists is sent in the
dtype listed there (a Python int `num` or `seed` as int32, float64 latent points as float32), so both
protocols take the same values (REST's JSON carries no dtype). A cast that would change a value (a
float `num`, an int beyond int32) is not made: the server refuses the dtype. Inputs of other names
keep their dtype.

Every failure is a `ServingError` naming the server, model, version (or "latest version" when none
was asked for), signature, the status and TF Serving's message, e.g. "model 'gan_dcgan_mnist'
(version 3) signature 'sample' at localhost:8500: NOT_FOUND: Servable not found for request:
Specific(gan_dcgan_mnist, 3)".
"""
import base64
import dataclasses
import time
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from serving import signatures as sig

DEFAULT_GRPC_SERVER = "localhost:8500"
DEFAULT_REST_URL = "http://localhost:8501"

GRPC_RETRYABLE = ("UNAVAILABLE",)
GRPC_TIMEOUT = "DEADLINE_EXCEEDED"
HTTP_RETRYABLE = (503,)


class ServingError(RuntimeError):
    """A request to TF Serving failed; the message names server, model, version, signature and cause."""

    def __init__(self, server: str, model: str, version: Optional[int], signature: str, status: str,
                 details: str, attempts: int = 1):
        self.server, self.model, self.version, self.signature = server, model, version, signature
        self.status, self.details, self.attempts = status, details, attempts
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        super().__init__(f"{describe_request(server, model, version, signature)}: {status}: {details}{tries}")


def describe_request(server: str, model: str, version: Optional[int], signature: str) -> str:
    """The request as errors name it: model 'm' (version 3) signature 's' at server; (latest version) without one."""
    version_text = "latest version" if version is None else f"version {version}"
    return f"model {model!r} ({version_text}) signature {signature!r} at {server}"


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One input or output of a served signature: dtype name ('float32', 'string', 'int32') and shape."""
    dtype: str
    shape: Optional[Tuple[Optional[int], ...]]  # None when the rank is unknown; None per unknown dimension


@dataclasses.dataclass(frozen=True)
class SignatureInfo:
    name: str
    inputs: Dict[str, TensorInfo]
    outputs: Dict[str, TensorInfo]


def signature_info_from_proto(name: str, signature_def) -> SignatureInfo:
    """A tensorflow.SignatureDef proto (as TF Serving's model metadata returns it) -> SignatureInfo."""
    import tensorflow as tf

    def info(tensor):
        shape = None
        if not tensor.tensor_shape.unknown_rank:
            shape = tuple(None if d.size < 0 else int(d.size) for d in tensor.tensor_shape.dim)
        return TensorInfo(tf.dtypes.as_dtype(tensor.dtype).name, shape)

    return SignatureInfo(name, {k: info(v) for k, v in signature_def.inputs.items()},
                         {k: info(v) for k, v in signature_def.outputs.items()})


# ---------------------------------------------------------------------------
# Image helpers


def image_file_bytes(paths: Sequence[str]) -> np.ndarray:
    """The encoded bytes of image files as a string batch [N] (object array: trailing NULs survive)."""
    values = []
    for path in paths:
        with open(path, "rb") as f:
            values.append(f.read())
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def decode_image_bytes(data: bytes, channels: int = 0, path: str = "image") -> np.ndarray:
    """JPEG/PNG/GIF/BMP bytes -> float32 [H, W, C] in [0, 1] (channels 0: as stored)."""
    import tensorflow as tf

    try:
        image = tf.io.decode_image(data, channels=channels, expand_animations=False)
    except tf.errors.InvalidArgumentError as error:
        raise ValueError(f"{path} is not a JPEG, PNG, GIF or BMP image: {error.message}") from None
    return tf.image.convert_image_dtype(image, tf.float32).numpy()


def load_image_files(paths: Sequence[str], channels: int = 3) -> np.ndarray:
    """Image files of one size -> float32 [N, H, W, channels] in [0, 1], the `images` input of the signatures."""
    images = []
    for path in paths:
        with open(path, "rb") as f:
            images.append(decode_image_bytes(f.read(), channels, path))
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        sizes = {path: image.shape for path, image in zip(paths, images)}
        raise ValueError(f"images of different sizes cannot form one batch: {sizes}")
    return np.stack(images)


def encode_png(image: np.ndarray) -> bytes:
    """float [H, W, C] in [0, 1] (C 1, 3 or 4) -> PNG bytes, 8 bits per channel."""
    import tensorflow as tf

    pixels = np.round(np.clip(np.asarray(image, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    return tf.io.encode_png(pixels).numpy()


# ---------------------------------------------------------------------------
# Shared client logic


def _filter_names(output_filter) -> Tuple[str, ...]:
    """An output filter as a tuple of names; a single name may be given as a string."""
    if output_filter is None:
        return ()
    if isinstance(output_filter, str):
        return (output_filter,)
    return tuple(output_filter)


def _as_array(value) -> np.ndarray:
    """Inputs as numpy; bytes become object arrays (numpy's 'S' dtype would drop trailing NUL bytes)."""
    if isinstance(value, np.ndarray):
        return value.astype(object) if value.dtype.kind == "S" else value
    if isinstance(value, bytes):
        array = np.empty((), dtype=object)
        array[()] = value
        return array
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], bytes):
        array = np.empty(len(value), dtype=object)
        array[:] = value
        return array
    return np.asarray(value)


def _input_array(name: str, value) -> np.ndarray:
    """An input as numpy in the dtype INPUTS gives its name, when the cast keeps every value (see the module doc)."""
    array = _as_array(value)
    convention = sig.INPUTS.get(name)
    if convention is None or convention.dtype == "string":
        return array
    dtype = np.dtype(convention.dtype)
    if array.dtype == dtype or not np.can_cast(array.dtype, dtype, casting="same_kind"):
        return array
    cast = array.astype(dtype)
    if dtype.kind in "iu" and not np.array_equal(cast, array):
        return array
    return cast


class _Client:
    server: str
    timeout: float
    retries: int
    backoff: float
    retry_timeouts: bool

    def predict(self, model: str, signature: str, inputs: dict, version: Optional[int] = None,
                output_filter: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def signature_info(self, model: str, signature: str, version: Optional[int] = None) -> SignatureInfo:
        raise NotImplementedError

    def predict_batched(self, model: str, signature: str, inputs: dict, batch_size: int = 64,
                        version: Optional[int] = None, output_filter: Optional[Sequence[str]] = None
                        ) -> Dict[str, np.ndarray]:
        """`predict` in requests of at most `batch_size` along axis 0, outputs concatenated.

        Inputs of rank >= 1 (images, image bytes, latent points) are split and must share their first
        dimension; scalar inputs (num, seed) go unchanged with every request, so a `sample` request is
        never split (splitting would change which points are drawn). `output_filter` goes with every
        request (see `predict`).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        arrays = {name: _as_array(value) for name, value in inputs.items()}
        sizes = {name: array.shape[0] for name, array in arrays.items() if array.ndim >= 1}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"batched inputs of {model}/{signature} differ in their first dimension: {sizes}")
        total = next(iter(sizes.values()), 0)
        if not sizes or total <= batch_size:
            return self.predict(model, signature, arrays, version=version, output_filter=output_filter)
        parts = []
        for start in range(0, total, batch_size):
            chunk = {name: array[start:start + batch_size] if name in sizes else array
                     for name, array in arrays.items()}
            parts.append(self.predict(model, signature, chunk, version=version, output_filter=output_filter))
        return {name: np.concatenate([part[name] for part in parts], axis=0) if parts[0][name].ndim >= 1
                else np.stack([part[name] for part in parts]) for name in parts[0]}

    def _error(self, model, version, signature, status, details, attempts=1) -> ServingError:
        return ServingError(self.server, model, version, signature, status, details, attempts)

    def _with_retries(self, call, retryable, describe, model, version, signature):
        """Runs call() until it succeeds or fails with a status that is not retryable; sleeps in between."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return call()
            except Exception as error:  # noqa: BLE001 - describe() decides what the error means
                status, details = describe(error)
                if status is None:
                    raise
                if status not in retryable or attempt > self.retries:
                    raise self._error(model, version, signature, status, details, attempt) from None
                time.sleep(self.backoff * (2 ** (attempt - 1)))


# ---------------------------------------------------------------------------
# gRPC


class GrpcClient(_Client):
    """TF Serving's PredictionService over gRPC (port 8500 by default)."""

    def __init__(self, server: str = DEFAULT_GRPC_SERVER, timeout: float = 10.0, retries: int = 3,
                 backoff: float = 0.2, retry_timeouts: bool = False):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.server, self.timeout, self.retries, self.backoff = server, timeout, retries, backoff
        self.retry_timeouts = retry_timeouts
        reconnect_ms = max(50, int(backoff * 1000))
        self._channel = grpc.insecure_channel(server, options=[
            ("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", -1),
            # Reconnect about as often as we retry, so a server that comes back is seen by the next retry.
            ("grpc.initial_reconnect_backoff_ms", reconnect_ms),
            ("grpc.min_reconnect_backoff_ms", reconnect_ms),
            ("grpc.max_reconnect_backoff_ms", max(reconnect_ms, 2000)),
        ])
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._grpc = grpc

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _retryable(self):
        return GRPC_RETRYABLE + ((GRPC_TIMEOUT,) if self.retry_timeouts else ())

    def _describe(self, error):
        if isinstance(error, self._grpc.RpcError) and hasattr(error, "code"):
            return error.code().name, error.details()
        return None, None

    def _model_spec(self, spec, model, signature, version):
        spec.name = model
        spec.signature_name = signature
        if version is not None:
            spec.version.value = int(version)

    def predict(self, model: str, signature: str, inputs: dict, version: Optional[int] = None,
                output_filter: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
        """One PredictRequest: inputs name -> numpy (or python values), outputs name -> numpy.

        `output_filter`: names of the outputs to return (None or empty: all), sent as the request's
        output_filter, so TF Serving fetches and sends only those; an unknown name is the server's
        INVALID_ARGUMENT.
        """
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec, model, signature, version)
        request.output_filter.extend(_filter_names(output_filter))
        for name, value in inputs.items():
            try:
                request.inputs[name].CopyFrom(tf.make_tensor_proto(_input_array(name, value)))
            except (TypeError, ValueError) as error:
                raise ValueError(f"input {name!r} of {model}/{signature} cannot be sent as a tensor: {error}") from None
        response = self._with_retries(lambda: self._stub.Predict(request, timeout=self.timeout),
                                      self._retryable(), self._describe, model, version, signature)
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def signature_info(self, model: str, signature: str, version: Optional[int] = None) -> SignatureInfo:
        """The inputs and outputs of one signature, from TF Serving's GetModelMetadata."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._model_spec(request.model_spec, model, "", version)
        response = self._with_retries(lambda: self._stub.GetModelMetadata(request, timeout=self.timeout),
                                      self._retryable(), self._describe, model, version, signature)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        if signature not in signatures.signature_def:
            known = sorted(k for k in signatures.signature_def if not k.startswith("__"))
            raise self._error(model, version, signature, "NOT_FOUND",
                              f"the model has no signature {signature!r}; it serves {known}")
        return signature_info_from_proto(signature, signatures.signature_def[signature])


# ---------------------------------------------------------------------------
# REST


def _to_json(array: np.ndarray):
    """numpy -> TF Serving's JSON: numbers as lists, bytes as {"b64": ...} (the REST API's binary encoding)."""
    if array.dtype == object or array.dtype.kind == "S":
        def encode(value):
            if isinstance(value, str):
                value = value.encode("utf-8")
            return {"b64": base64.b64encode(value).decode("ascii")}
        if array.ndim == 0:
            return encode(array[()])
        return np.vectorize(encode, otypes=[object])(array).tolist()
    return array.tolist()


def _nested_shape(value) -> tuple:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return tuple(shape)


def _from_json(value) -> np.ndarray:
    """TF Serving's JSON output -> numpy: {"b64": ...} and strings become bytes, floats float32."""
    shape = _nested_shape(value)
    leaf = value
    for _ in shape:
        leaf = leaf[0] if leaf else None
    if isinstance(leaf, (dict, str)):
        array = np.empty(shape, dtype=object)
        for index in np.ndindex(*shape):
            item = value
            for i in index:
                item = item[i]
            array[index] = base64.b64decode(item["b64"]) if isinstance(item, dict) else item.encode("utf-8")
        return array
    array = np.asarray(value)
    return array.astype(np.float32) if array.dtype == np.float64 else array


class RestClient(_Client):
    """TF Serving's REST API (port 8501 by default): `POST /v1/models/{name}[/versions/{v}]:predict`.

    Requests use the columnar format {"signature_name": ..., "inputs": {...}}; bytes inputs go as
    {"b64": ...}. TF Serving leaves out the output name when a signature has one output; the client then
    asks the model metadata once for that name (cached per model, version and signature).
    """

    def __init__(self, base_url: str = DEFAULT_REST_URL, timeout: float = 10.0, retries: int = 3,
                 backoff: float = 0.2, retry_timeouts: bool = False):
        import requests

        if "://" not in base_url:
            base_url = "http://" + base_url
        self.server = self.base_url = base_url.rstrip("/")
        self.timeout, self.retries, self.backoff, self.retry_timeouts = timeout, retries, backoff, retry_timeouts
        self._requests = requests
        self._session = requests.Session()
        self._output_names = {}

    def close(self):
        self._session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _url(self, model, version, suffix):
        return f"{self.base_url}/v1/models/{model}" + ("" if version is None else f"/versions/{int(version)}") + suffix

    def _retryable(self):
        return ("HTTP 503", "CONNECTION") + (("TIMEOUT",) if self.retry_timeouts else ())

    def _describe(self, error):
        requests = self._requests
        if isinstance(error, _HttpStatus):
            return f"HTTP {error.status}", error.message
        if isinstance(error, requests.ConnectionError):  # also ConnectTimeout: nothing was sent
            return "CONNECTION", str(error)
        if isinstance(error, requests.Timeout):
            return "TIMEOUT", f"no answer within {self.timeout} s ({error})"
        return None, None

    def _send(self, method, url, body=None):
        response = self._session.request(method, url, json=body, timeout=self.timeout)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code != 200:
            message = payload.get("error") if isinstance(payload, dict) and "error" in payload else response.text
            raise _HttpStatus(response.status_code, message.strip() or response.reason)
        if not isinstance(payload, dict):
            raise _HttpStatus(response.status_code, f"the answer is not a JSON object: {response.text[:200]!r}")
        return payload

    def predict(self, model: str, signature: str, inputs: dict, version: Optional[int] = None,
                output_filter: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
        """One `:predict` call: inputs name -> numpy (or python values), outputs name -> numpy.

        `output_filter`: names of the outputs to return (None or empty: all). TF Serving's REST API has no
        output filter, so the server sends every output and the client keeps the named ones;
        a name the answer lacks raises ServingError. Use gRPC to save the transfer of unwanted outputs.
        """
        wanted = _filter_names(output_filter)
        body = {"signature_name": signature,
                "inputs": {name: _to_json(_as_array(value)) for name, value in inputs.items()}}
        payload = self._with_retries(lambda: self._send("POST", self._url(model, version, ":predict"), body),
                                     self._retryable(), self._describe, model, version, signature)
        if "outputs" not in payload:
            raise self._error(model, version, signature, "HTTP 200", f"the answer has no 'outputs': {list(payload)}")
        outputs = payload["outputs"]
        if not isinstance(outputs, dict):
            outputs = {self._single_output_name(model, signature, version): outputs}
        missing = [name for name in wanted if name not in outputs]
        if missing:
            raise self._error(model, version, signature, "INVALID_ARGUMENT",
                              f"output_filter names {missing}, which the signature does not return; it returns "
                              f"{sorted(outputs)} (REST has no output filter: the client selects the outputs)")
        return {name: _from_json(value) for name, value in outputs.items() if not wanted or name in wanted}

    def _single_output_name(self, model, signature, version):
        key = (model, signature, version)
        if key not in self._output_names:
            outputs = list(self.signature_info(model, signature, version).outputs)
            if len(outputs) != 1:
                raise self._error(model, version, signature, "HTTP 200",
                                  f"the answer has one unnamed output but the signature has outputs {outputs}")
            self._output_names[key] = outputs[0]
        return self._output_names[key]

    def signature_info(self, model: str, signature: str, version: Optional[int] = None) -> SignatureInfo:
        """The inputs and outputs of one signature, from `GET /v1/models/{name}[/versions/{v}]/metadata`."""
        from google.protobuf import json_format
        from tensorflow.core.protobuf import meta_graph_pb2

        payload = self._with_retries(lambda: self._send("GET", self._url(model, version, "/metadata")),
                                     self._retryable(), self._describe, model, version, signature)
        signatures = payload.get("metadata", {}).get("signature_def", {}).get("signature_def", {})
        if signature not in signatures:
            known = sorted(k for k in signatures if not k.startswith("__"))
            raise self._error(model, version, signature, "NOT_FOUND",
                              f"the model has no signature {signature!r}; it serves {known}")
        proto = json_format.ParseDict(signatures[signature], meta_graph_pb2.SignatureDef(), ignore_unknown_fields=True)
        return signature_info_from_proto(signature, proto)


class _HttpStatus(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


def make_client(server: str, rest: bool = False, **options) -> _Client:
    """A GrpcClient for "host:port", or with rest=True a RestClient for "host:port" or a URL."""
    return RestClient(server, **options) if rest else GrpcClient(server, **options)
