"""TEST FIXTURES ONLY: in-process stand-ins for TF Serving, for tests of the clients and `genpipe predict`.

There is no TF Serving binary here, so tests serve SavedModel directories with these instead:

    with serve_grpc({"gan": {1: dir_v1, 2: dir_v2}}) as server:   # server.address == "127.0.0.1:<port>"
        GrpcClient(server.address).predict("gan", "sample", {"num": np.int32(4), "seed": np.int32(0)})
    with serve_rest({"style": base_dir}) as server:               # server.url == "http://127.0.0.1:<port>"
        ...

Models are given as name -> {version: SavedModel dir}, or name -> a SavedModel dir (served as version 1),
or name -> a Pusher-style base dir holding numbered version folders. Unversioned requests get the highest
version, as TF Serving's default version policy does.

What they mirror from TF Serving (statuses and messages, so client error handling is tested against the
real shapes): PredictionService.Predict and GetModelMetadata over gRPC; `POST /v1/models/{name}[/versions/
{v}]:predict` (columnar "inputs", `{"b64": ...}` decoded to the bytes of a DT_STRING tensor, outputs whose
name ends in `_bytes` encoded back as `{"b64": ...}`, a single output given without its name) and `GET
.../metadata` over HTTP; errors as `{"error": "..."}`. Unknown model or version: NOT_FOUND / 404 "Servable
not found for request: Latest(name)". Unknown signature: FAILED_PRECONDITION 'Serving signature key "x" not
found.' over gRPC and 400 'Serving signature name: "x" not found in signature def' over REST (what TF
Serving answers; it is not NOT_FOUND). Unknown, missing, wrongly typed or shaped inputs: INVALID_ARGUMENT / 400.

What they do not: batching, model config files, version policies, warmup, classify/regress, the row
("instances") format. They load every model eagerly on start and run signatures with TF eager.

Failure injection for tests (Predict calls only; metadata calls are never failed or delayed):
`fail_first=N` answers the first N Predict calls with UNAVAILABLE / HTTP 503, `delay=seconds` sleeps before
each Predict (client timeouts), and `.calls` counts the Predict calls received. `fail_next(n)` and `.delay`
change them on a running server.
"""
import base64
import json
import os
import re
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

INIT_OP_SIGNATURE = "__saved_model_init_op"
HTTP_STATUS = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "NOT_FOUND": 404, "UNAVAILABLE": 503,
               "DEADLINE_EXCEEDED": 504, "INTERNAL": 500}


class FixtureError(Exception):
    """A TF Serving status: code is a grpc.StatusCode name, message TF Serving's text."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class _LoadedModel:
    def __init__(self, export_dir: str):
        from tensorflow.python.saved_model import loader_impl

        self.export_dir = export_dir
        self.module = tf.saved_model.load(export_dir)
        meta_graph = loader_impl.parse_saved_model(export_dir).meta_graphs[0]
        self.signature_defs = {k: v for k, v in meta_graph.signature_def.items() if k != INIT_OP_SIGNATURE}


def _versions(name: str, spec) -> Dict[int, str]:
    if isinstance(spec, dict):
        return {int(version): str(path) for version, path in spec.items()}
    path = str(spec)
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return {1: path}
    versions = {int(entry): os.path.join(path, entry) for entry in os.listdir(path) if entry.isdigit()}
    if not versions:
        raise ValueError(f"model {name!r}: {path} is neither a SavedModel nor a folder of numbered versions")
    return versions


class ModelRepository:
    """The loaded SavedModels of every served model and version; share one between a gRPC and a REST fixture."""

    def __init__(self, model_dirs: dict):
        self.models = {name: {version: _LoadedModel(path) for version, path in _versions(name, spec).items()}
                       for name, spec in model_dirs.items()}

    def resolve(self, name: str, version: Optional[int]):
        """(version, model) for a request; NOT_FOUND as TF Serving says it."""
        versions = self.models.get(name)
        if version is None:
            if not versions:
                raise FixtureError("NOT_FOUND", f"Servable not found for request: Latest({name})")
            version = max(versions)
        elif not versions or version not in versions:
            raise FixtureError("NOT_FOUND", f"Servable not found for request: Specific({name}, {version})")
        return version, versions[version]

    def signature_def(self, model: _LoadedModel, signature: str, rest: bool = False):
        signature = signature or "serving_default"
        if signature not in model.signature_defs:
            if rest:
                raise FixtureError("INVALID_ARGUMENT",
                                   f'Serving signature name: "{signature}" not found in signature def')
            raise FixtureError("FAILED_PRECONDITION", f'Serving signature key "{signature}" not found.')
        return signature, model.signature_defs[signature]

    def predict(self, model: _LoadedModel, signature: str, inputs: Dict[str, np.ndarray], output_filter=()):
        """Checks the inputs against the SignatureDef as TF Serving does, runs the signature, returns numpy."""
        signature_def = model.signature_defs[signature]
        expected = dict(signature_def.inputs)
        for alias in inputs:
            if alias not in expected:
                raise FixtureError("INVALID_ARGUMENT", f"input tensor alias not found in signature: {alias}. Inputs "
                                                       f"expected to be in the set {{{','.join(sorted(expected))}}}.")
        missing = sorted(set(expected) - set(inputs))
        if missing:
            raise FixtureError("INVALID_ARGUMENT", "Request inputs do not match required inputs for the model. "
                                                   f"Send extra: {{}}. Missing but required: {{{','.join(missing)}}}.")
        tensors = {}
        for index, (alias, info) in enumerate(sorted(expected.items())):
            want = tf.dtypes.as_dtype(info.dtype)
            value = inputs[alias]
            got = tf.string if value.dtype.kind in "OSU" else tf.dtypes.as_dtype(value.dtype)
            if got != want:
                raise FixtureError("INVALID_ARGUMENT", f"Expects arg[{index}] to be {want.name} but {got.name} is "
                                                       f"provided (input {alias!r})")
            shape = tf.TensorShape(None if info.tensor_shape.unknown_rank else
                                   [None if d.size < 0 else d.size for d in info.tensor_shape.dim])
            if not shape.is_compatible_with(value.shape):
                raise FixtureError("INVALID_ARGUMENT", f"input {alias!r} has shape {list(value.shape)} but the "
                                                       f"signature expects {shape}")
            tensors[alias] = tf.constant(value, dtype=want)
        try:
            outputs = model.module.signatures[signature](**tensors)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as error:
            raise FixtureError("INVALID_ARGUMENT", getattr(error, "message", str(error))) from None
        for name in output_filter:
            if name not in outputs:
                raise FixtureError("INVALID_ARGUMENT", f"output tensor alias not found in signature: {name} Outputs "
                                                       f"expected to be in the set {{{','.join(sorted(outputs))}}}.")
        return {name: value.numpy() for name, value in outputs.items() if not output_filter or name in output_filter}


class _FixtureServer:
    """Failure injection and call counting shared by the gRPC and REST fixtures."""

    def __init__(self, models, fail_first: int = 0, delay: float = 0.0):
        self.repository = models if isinstance(models, ModelRepository) else ModelRepository(models)
        self.delay = delay
        self.calls = 0
        self._fail_remaining = fail_first
        self._lock = threading.Lock()

    def fail_next(self, count: int):
        """Answer the next `count` Predict calls with UNAVAILABLE (gRPC) / 503 (REST)."""
        with self._lock:
            self._fail_remaining = count

    def _admit(self):
        with self._lock:
            self.calls += 1
            fail = self._fail_remaining > 0
            self._fail_remaining -= 1 if fail else 0
        if fail:
            raise FixtureError("UNAVAILABLE", "injected failure: the server is not ready (test fixture)")
        if self.delay:
            time.sleep(self.delay)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------------------
# gRPC


class GrpcFixtureServer(_FixtureServer):
    """TEST FIXTURE: a PredictionService on 127.0.0.1:<free port>; `.address` is what GrpcClient takes."""

    def __init__(self, models, fail_first: int = 0, delay: float = 0.0, max_workers: int = 4):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        super().__init__(models, fail_first, delay)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=[
            ("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)])
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_PredictionServicer(self), self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{port}"
        self._server.start()

    def stop(self):
        self._server.stop(grace=None)


def _prediction_servicer_base():
    from tensorflow_serving.apis import prediction_service_pb2_grpc
    return prediction_service_pb2_grpc.PredictionServiceServicer


class _PredictionServicer(_prediction_servicer_base()):
    def __init__(self, fixture: GrpcFixtureServer):
        self.fixture = fixture

    @staticmethod
    def _abort(context, error: FixtureError):
        import grpc
        context.abort(getattr(grpc.StatusCode, error.code), error.message)

    def Predict(self, request, context):
        from tensorflow_serving.apis import predict_pb2

        spec = request.model_spec
        try:
            self.fixture._admit()
            repository = self.fixture.repository
            version, model = repository.resolve(spec.name, spec.version.value if spec.HasField("version") else None)
            signature, _ = repository.signature_def(model, spec.signature_name)
            inputs = {alias: tf.make_ndarray(proto) for alias, proto in request.inputs.items()}
            outputs = repository.predict(model, signature, inputs, tuple(request.output_filter))
        except FixtureError as error:
            self._abort(context, error)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = version
        response.model_spec.signature_name = signature
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return response

    def GetModelMetadata(self, request, context):
        from tensorflow_serving.apis import get_model_metadata_pb2

        spec = request.model_spec
        try:
            if list(request.metadata_field) != ["signature_def"]:
                raise FixtureError("INVALID_ARGUMENT", "Metadata field signature_def must be requested; got "
                                                       f"{list(request.metadata_field)}")
            version, model = self.fixture.repository.resolve(
                spec.name, spec.version.value if spec.HasField("version") else None)
        except FixtureError as error:
            self._abort(context, error)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for name, signature_def in model.signature_defs.items():
            signatures.signature_def[name].CopyFrom(signature_def)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = version
        response.metadata["signature_def"].Pack(signatures)
        return response


def serve_grpc(models, fail_first: int = 0, delay: float = 0.0) -> GrpcFixtureServer:
    """TEST FIXTURE: serves `models` (dict or ModelRepository) over gRPC in this process; use as a context manager."""
    return GrpcFixtureServer(models, fail_first=fail_first, delay=delay)


# ---------------------------------------------------------------------------
# REST

_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<verb>:predict|/metadata)$")


def _nested_shape(value) -> tuple:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return tuple(shape)


def _json_to_array(alias: str, value, dtype: tf.DType) -> np.ndarray:
    """A JSON input -> numpy of the signature's dtype, decoding {"b64": ...} as TF Serving does."""
    def convert(item):
        if isinstance(item, list):
            return [convert(i) for i in item]
        if isinstance(item, dict):
            if set(item) != {"b64"}:
                raise FixtureError("INVALID_ARGUMENT", f"JSON object: does not have named input: b64 ({alias})")
            if dtype != tf.string:
                raise FixtureError("INVALID_ARGUMENT", f'JSON Value: {{"b64": ...}} not formatted correctly for '
                                                       f"base64 data of {dtype.name} input {alias}")
            try:
                return base64.b64decode(item["b64"], validate=True)
            except ValueError:
                raise FixtureError("INVALID_ARGUMENT", f"Unable to base64 decode input {alias}") from None
        if dtype == tf.string:
            if not isinstance(item, str):
                raise FixtureError("INVALID_ARGUMENT", f"JSON Value: {json.dumps(item)} Is not of expected type: "
                                                       f"string ({alias})")
            return item.encode("utf-8")
        if isinstance(item, (str, bool)) and dtype != tf.bool or not isinstance(item, (int, float, bool)):
            raise FixtureError("INVALID_ARGUMENT", f"JSON Value: {json.dumps(item)} Is not of expected type: "
                                                   f"{dtype.name} ({alias})")
        if dtype.is_integer and isinstance(item, float):
            raise FixtureError("INVALID_ARGUMENT",
                               f"JSON Value: {item} Is not of expected type: {dtype.name} ({alias})")
        return item

    converted = convert(value)
    try:
        if dtype == tf.string:
            array = np.empty(_nested_shape(converted), dtype=object)
            for index in np.ndindex(*array.shape):
                item = converted
                for i in index:
                    item = item[i]
                if isinstance(item, list):
                    raise ValueError(f"ragged at {index}")
                array[index] = item
            return array
        return np.asarray(converted, dtype=dtype.as_numpy_dtype)
    except (ValueError, IndexError) as error:
        raise FixtureError("INVALID_ARGUMENT", f"Input {alias} is not a rectangular list of values: {error}") from None


def _array_to_json(name: str, array: np.ndarray):
    if array.dtype.kind in "OS":
        if name.endswith("_bytes"):
            encode = lambda value: {"b64": base64.b64encode(value).decode("ascii")}  # noqa: E731
        else:
            encode = lambda value: value.decode("utf-8")  # noqa: E731
        return encode(array[()]) if array.ndim == 0 else np.vectorize(encode, otypes=[object])(array).tolist()
    return array.tolist()


class RestFixtureServer(_FixtureServer):
    """TEST FIXTURE: TF Serving's REST predict and metadata API on 127.0.0.1:<free port>; `.url` for RestClient."""

    def __init__(self, models, fail_first: int = 0, delay: float = 0.0):
        super().__init__(models, fail_first, delay)
        fixture = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def _handle(self, method):
                try:
                    status, payload = 200, fixture._answer(method, self.path, self._body())
                except FixtureError as error:
                    status, payload = HTTP_STATUS.get(error.code, 500), {"error": error.message}
                data = json.dumps(payload).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                    pass

            def _body(self):
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.address = f"127.0.0.1:{self._httpd.server_address[1]}"
        self.url = f"http://{self.address}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="rest-fixture", daemon=True)
        self._thread.start()

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()

    def _answer(self, method: str, path: str, body: bytes) -> dict:
        match = _PATH.match(path)
        if not match or (method == "POST") != (match["verb"] == ":predict"):
            raise FixtureError("INVALID_ARGUMENT", f"Malformed request: {method} {path}")
        name, version = match["name"], match["version"]
        repository = self.repository
        if match["verb"] == "/metadata":
            version, model = repository.resolve(name, None if version is None else int(version))
            from google.protobuf import json_format
            signature_defs = {k: json_format.MessageToDict(v, preserving_proto_field_name=True)
                              for k, v in model.signature_defs.items()}
            return {"model_spec": {"name": name, "signature_name": "", "version": str(version)},
                    "metadata": {"signature_def": {"signature_def": signature_defs}}}
        self._admit()
        try:
            request = json.loads(body or b"null")
        except ValueError as error:
            raise FixtureError("INVALID_ARGUMENT", f"JSON Parse error: {error}") from None
        if not isinstance(request, dict) or "inputs" not in request:
            raise FixtureError("INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key (this fixture only "
                                                   "implements the columnar 'inputs' format)")
        version, model = repository.resolve(name, None if version is None else int(version))
        signature, signature_def = repository.signature_def(model, request.get("signature_name", ""), rest=True)
        raw = request["inputs"]
        if not isinstance(raw, dict):
            if len(signature_def.inputs) != 1:
                raise FixtureError("INVALID_ARGUMENT", "inputs must be an object with one key per input: the "
                                                       f"signature has inputs {sorted(signature_def.inputs)}")
            raw = {next(iter(signature_def.inputs)): raw}
        inputs = {}
        for alias, value in raw.items():
            if alias not in signature_def.inputs:
                raise FixtureError("INVALID_ARGUMENT", f"input tensor alias not found in signature: {alias}. Inputs "
                                                       f"expected to be in the set "
                                                       f"{{{','.join(sorted(signature_def.inputs))}}}.")
            inputs[alias] = _json_to_array(alias, value, tf.dtypes.as_dtype(signature_def.inputs[alias].dtype))
        outputs = repository.predict(model, signature, inputs)
        if len(outputs) == 1:  # TF Serving's columnar answer leaves out the name of a single output
            (name, value), = outputs.items()
            return {"outputs": _array_to_json(name, value)}
        return {"outputs": {name: _array_to_json(name, value) for name, value in outputs.items()}}


def serve_rest(models, fail_first: int = 0, delay: float = 0.0) -> RestFixtureServer:
    """TEST FIXTURE: serves `models` (dict or ModelRepository) over TF Serving's REST API in this process."""
    return RestFixtureServer(models, fail_first=fail_first, delay=delay)
