"""The TF Serving clients and `genpipe predict` against the in-process gRPC and REST test fixtures.

Tiny SavedModels are exported with the real export code (a dense GAN generator in two versions, a
one-residual-block style network, the untrained conv autoencoder with its [N, 7, 7, 256] latent) and served
by serving.testing; results are compared with calling the SavedModel directly.
"""
import base64
import os
import socket
import time

import keras
import numpy as np
import pytest
import requests
import tensorflow as tf

from pipelines import cli
from serving import client as client_lib
from serving import signatures as sig
from serving import testing
from trainer_modules import autoencoder, contract, gan, preprocessing, style_transfer

GAN_MODEL = "gan_dense_mnist"
STYLE_MODEL = "style_fast"
AUTOENCODER_MODEL = "autoencoder_conv_mnist"
LATENT_DIM = 8
CONV_LATENT_SHAPE = (7, 7, 256)


def _export_conv_autoencoder(export_dir):
    """The conv autoencoder's export with a stand-in for the Transform layer (PNG bytes -> [0, 1], what
    preprocessing_fn does without noise), so no Transform run is needed; decode and encode are the real ones."""
    keras.utils.set_random_seed(5)
    model, encoder, decoder = autoencoder.build_autoencoder("conv")
    transform = lambda raw: {contract.IMAGE_KEY: preprocessing.decode_images(raw[contract.IMAGE_KEY])}  # noqa: E731
    module = autoencoder.AutoencoderExport(model, encoder, decoder, transform)
    tf.saved_model.save(module, export_dir, signatures=module.signatures())


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    for version, seed in ((1, 11), (2, 22)):
        keras.utils.set_random_seed(seed)
        generator, _ = gan.build_networks("dense", LATENT_DIM)
        gan.export_generator(generator, LATENT_DIM, "unit", str(root / GAN_MODEL / str(version)))
    keras.utils.set_random_seed(3)
    net = style_transfer.build_transform_net(residual_blocks=1, base_filters=4)
    style_transfer.export_stylizer(net, str(root / STYLE_MODEL / "1"))
    _export_conv_autoencoder(str(root / AUTOENCODER_MODEL / "1"))
    return {GAN_MODEL: str(root / GAN_MODEL), STYLE_MODEL: str(root / STYLE_MODEL / "1"),
            AUTOENCODER_MODEL: str(root / AUTOENCODER_MODEL / "1")}


@pytest.fixture(scope="module")
def repository(model_dirs):
    return testing.ModelRepository(model_dirs)


@pytest.fixture(scope="module")
def grpc_server(repository):
    with testing.serve_grpc(repository) as server:
        yield server


@pytest.fixture(scope="module")
def rest_server(repository):
    with testing.serve_rest(repository) as server:
        yield server


@pytest.fixture(params=["grpc", "rest"])
def served(request, grpc_server, rest_server):
    """(server fixture, client factory) for each protocol; the server's failure injection is reset after."""
    server = grpc_server if request.param == "grpc" else rest_server
    make = (lambda **kw: client_lib.GrpcClient(server.address, **kw)) if request.param == "grpc" else \
        (lambda **kw: client_lib.RestClient(server.url, **kw))
    yield server, make
    server.fail_next(0)
    server.delay = 0.0


def _direct(repository, model, version, signature, **inputs):
    _, loaded = repository.resolve(model, version)
    outputs = loaded.module.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in outputs.items()}


def _random_images(count, height=12, width=16, seed=0):
    return np.random.default_rng(seed).uniform(size=(count, height, width, 3)).astype(np.float32)


def _sample(num=4, seed=3):
    return {sig.NUM_INPUT: np.int32(num), sig.SEED_INPUT: np.int32(seed)}


# ---------------------------------------------------------------------------
# Results


def test_sample_matches_the_saved_model_and_versions_are_selected(served, repository):
    _, make = served
    with make() as client:
        latest = client.predict(GAN_MODEL, sig.SAMPLE, _sample())[sig.IMAGES_OUTPUT]
        first = client.predict(GAN_MODEL, sig.SAMPLE, _sample(), version=1)[sig.IMAGES_OUTPUT]
        second = client.predict(GAN_MODEL, sig.SAMPLE, _sample(), version=2)[sig.IMAGES_OUTPUT]
    assert latest.shape == (4, 28, 28, 1) and latest.dtype == np.float32
    for version, images in ((2, latest), (1, first)):
        direct = _direct(repository, GAN_MODEL, version, sig.SAMPLE, num=4, seed=3)[sig.IMAGES_OUTPUT]
        np.testing.assert_array_equal(images, direct)
    np.testing.assert_array_equal(second, latest)
    assert np.abs(first - second).max() > 1e-3


def test_generate_takes_latent_points(served, repository):
    _, make = served
    latent = np.random.default_rng(0).normal(size=(3, LATENT_DIM)).astype(np.float32)
    with make() as client:
        images = client.predict(GAN_MODEL, sig.GENERATE, {sig.LATENT_INPUT: latent})[sig.IMAGES_OUTPUT]
    direct = _direct(repository, GAN_MODEL, 2, sig.GENERATE, latent=latent)[sig.IMAGES_OUTPUT]
    np.testing.assert_array_equal(images, direct)


def test_bytes_inputs_and_outputs(served, repository):
    """Encoded PNGs in (REST: as {"b64": ...}), floats and PNG bytes out, equal to the SavedModel's."""
    _, make = served
    images = _random_images(3)
    pngs = [client_lib.encode_png(image) for image in images]
    with make() as client:
        outputs = client.predict(STYLE_MODEL, sig.STYLIZE_BYTES, {sig.IMAGE_BYTES_INPUT: pngs})
    direct = _direct(repository, STYLE_MODEL, None, sig.STYLIZE_BYTES, image_bytes=pngs)
    np.testing.assert_array_equal(outputs[sig.IMAGES_OUTPUT], direct[sig.IMAGES_OUTPUT])
    assert outputs[sig.PNG_BYTES_OUTPUT].shape == (3,)
    assert list(outputs[sig.PNG_BYTES_OUTPUT]) == list(direct[sig.PNG_BYTES_OUTPUT])
    decoded = client_lib.decode_image_bytes(outputs[sig.PNG_BYTES_OUTPUT][0], 3)
    np.testing.assert_allclose(decoded, outputs[sig.IMAGES_OUTPUT][0], atol=1 / 255)


def test_output_filter_returns_only_the_named_outputs(served, repository):
    """gRPC sends PredictRequest.output_filter; REST has none, so the client keeps the named outputs."""
    server, make = served
    with make() as client:
        pngs = client.predict(GAN_MODEL, sig.SERVING_DEFAULT, _sample(num=3), output_filter=[sig.PNG_BYTES_OUTPUT])
        assert set(pngs) == {sig.PNG_BYTES_OUTPUT} and pngs[sig.PNG_BYTES_OUTPUT].shape == (3,)
        direct = _direct(repository, GAN_MODEL, None, sig.SERVING_DEFAULT, num=3, seed=3)
        assert list(pngs[sig.PNG_BYTES_OUTPUT]) == list(direct[sig.PNG_BYTES_OUTPUT])
        both = client.predict(GAN_MODEL, sig.SERVING_DEFAULT, _sample(num=3), output_filter=())
        assert set(both) == {sig.IMAGES_OUTPUT, sig.PNG_BYTES_OUTPUT}  # empty filter: every output
        pixels = np.stack([tf.io.decode_png(png).numpy() for png in both[sig.PNG_BYTES_OUTPUT]])
        np.testing.assert_array_equal(pixels, np.round(both[sig.IMAGES_OUTPUT] * 255).astype(np.uint8))
        batched = client.predict_batched(STYLE_MODEL, sig.STYLIZE_BYTES,
                                         {sig.IMAGE_BYTES_INPUT: [client_lib.encode_png(i) for i in _random_images(3)]},
                                         batch_size=2, output_filter=sig.PNG_BYTES_OUTPUT)
        assert set(batched) == {sig.PNG_BYTES_OUTPUT} and batched[sig.PNG_BYTES_OUTPUT].shape == (3,)
        with pytest.raises(client_lib.ServingError) as raised:
            client.predict(GAN_MODEL, sig.SAMPLE, _sample(num=1), output_filter=[sig.PNG_BYTES_OUTPUT])
    assert raised.value.status == "INVALID_ARGUMENT"  # the server's over gRPC, the client's own over REST
    assert sig.PNG_BYTES_OUTPUT in str(raised.value) and str(raised.value).startswith(
        f"model {GAN_MODEL!r} (latest version) signature 'sample' at {client.server}: ")


def test_rest_json_is_tf_servings(rest_server):
    """The wire format itself: columnar inputs with b64, a single output given without its name."""
    png = client_lib.encode_png(_random_images(1)[0])
    body = {"signature_name": sig.STYLIZE_BYTES,
            "inputs": {sig.IMAGE_BYTES_INPUT: [{"b64": base64.b64encode(png).decode()}]}}
    answer = requests.post(f"{rest_server.url}/v1/models/{STYLE_MODEL}:predict", json=body, timeout=10).json()
    assert set(answer["outputs"]) == {sig.IMAGES_OUTPUT, sig.PNG_BYTES_OUTPUT}
    assert base64.b64decode(answer["outputs"][sig.PNG_BYTES_OUTPUT][0]["b64"]).startswith(b"\x89PNG")
    body = {"signature_name": sig.SAMPLE, "inputs": {"num": 2, "seed": 1}}
    answer = requests.post(f"{rest_server.url}/v1/models/{GAN_MODEL}/versions/1:predict", json=body, timeout=10)
    assert answer.status_code == 200 and np.asarray(answer.json()["outputs"]).shape == (2, 28, 28, 1)
    answer = requests.post(f"{rest_server.url}/v1/models/nope:predict", json=body, timeout=10)
    assert answer.status_code == 404 and answer.json() == {"error": "Servable not found for request: Latest(nope)"}


def test_predict_batched_splits_images_and_concatenates(served):
    server, make = served
    images = _random_images(7)
    with make() as client:
        whole = client.predict(STYLE_MODEL, sig.STYLIZE, {sig.IMAGES_INPUT: images})[sig.IMAGES_OUTPUT]
        before = server.calls
        batched = client.predict_batched(STYLE_MODEL, sig.STYLIZE, {sig.IMAGES_INPUT: images}, batch_size=3)
        assert server.calls - before == 3
        np.testing.assert_allclose(batched[sig.IMAGES_OUTPUT], whole, atol=1e-6)
        before = server.calls
        sampled = client.predict_batched(GAN_MODEL, sig.SAMPLE, _sample(num=5), batch_size=2)
        assert server.calls - before == 1  # scalar inputs are never split
        assert sampled[sig.IMAGES_OUTPUT].shape == (5, 28, 28, 1)
        with pytest.raises(ValueError, match="first dimension"):
            client.predict_batched(STYLE_MODEL, sig.STYLIZE, {"a": np.zeros((2, 1)), "b": np.zeros((3, 1))})


def test_inputs_go_in_the_dtypes_of_the_convention(served, repository):
    """Python ints for num/seed and float64 latent points are sent as INPUTS' int32 and float32 (REST's JSON
    always was); names INPUTS does not list keep their dtype, and so do casts that would change a value."""
    _, make = served
    latent = np.random.default_rng(0).normal(size=(2, LATENT_DIM))
    with make() as client:
        sampled = client.predict(GAN_MODEL, sig.SAMPLE, {sig.NUM_INPUT: 2, sig.SEED_INPUT: 0})[sig.IMAGES_OUTPUT]
        generated = client.predict(GAN_MODEL, sig.GENERATE, {sig.LATENT_INPUT: latent})[sig.IMAGES_OUTPUT]
    direct = _direct(repository, GAN_MODEL, 2, sig.SAMPLE, num=2, seed=0)[sig.IMAGES_OUTPUT]
    np.testing.assert_array_equal(sampled, direct)
    direct = _direct(repository, GAN_MODEL, 2, sig.GENERATE, latent=latent.astype(np.float32))[sig.IMAGES_OUTPUT]
    np.testing.assert_array_equal(generated, direct)
    assert client_lib._input_array("z", np.int64(1)).dtype == np.int64
    assert client_lib._input_array(sig.NUM_INPUT, np.int64(2 ** 40)).dtype == np.int64
    assert client_lib._input_array(sig.NUM_INPUT, np.float32(2)).dtype == np.float32


def test_signature_info_from_model_metadata(served):
    _, make = served
    with make() as client:
        info = client.signature_info(GAN_MODEL, sig.SAMPLE)
        assert info.inputs == {sig.NUM_INPUT: client_lib.TensorInfo("int32", ()),
                               sig.SEED_INPUT: client_lib.TensorInfo("int32", ())}
        assert info.outputs == {sig.IMAGES_OUTPUT: client_lib.TensorInfo("float32", (None, 28, 28, 1))}
        assert client.signature_info(STYLE_MODEL, sig.STYLIZE).inputs[sig.IMAGES_INPUT].shape == (None, None, None, 3)
        with pytest.raises(client_lib.ServingError, match="no signature 'nope'"):
            client.signature_info(GAN_MODEL, "nope")


# ---------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize("model, signature, inputs, version, grpc_status, http_status, text", [
    ("nope", sig.SAMPLE, _sample(), None, "NOT_FOUND", 404, "Servable not found for request: Latest(nope)"),
    (GAN_MODEL, sig.SAMPLE, _sample(), 7, "NOT_FOUND", 404, f"Specific({GAN_MODEL}, 7)"),
    (GAN_MODEL, "nope", _sample(), None, "FAILED_PRECONDITION", 400, '"nope" not found'),
    (GAN_MODEL, sig.SAMPLE, {"num": np.float32(2), "seed": np.int32(0)}, None, "INVALID_ARGUMENT", 400, "int32"),
    (GAN_MODEL, sig.SAMPLE, {"num": np.int32(2)}, None, "INVALID_ARGUMENT", 400, "Missing but required: {seed}"),
    (GAN_MODEL, sig.SAMPLE, {**_sample(), "z": np.int32(1)}, None, "INVALID_ARGUMENT", 400,
     "input tensor alias not found in signature: z"),
    (GAN_MODEL, sig.GENERATE, {"latent": np.zeros((2, 5), np.float32)}, None, "INVALID_ARGUMENT", 400, "shape [2, 5]"),
])
def test_errors_name_the_request_and_are_not_retried(served, model, signature, inputs, version, grpc_status,
                                                     http_status, text):
    server, make = served
    rest = isinstance(server, testing.RestFixtureServer)
    before = server.calls
    with make(retries=3, backoff=0.01) as client, pytest.raises(client_lib.ServingError) as raised:
        client.predict(model, signature, inputs, version=version)
    error = raised.value
    assert error.status == (f"HTTP {http_status}" if rest else grpc_status)
    assert text in str(error)
    where = f"model {model!r} ({'latest version' if version is None else f'version {version}'}) signature {signature!r}"
    assert str(error).startswith(f"{where} at {client.server}: {error.status}: ")
    assert error.attempts == 1 and server.calls - before == 1


def test_unavailable_is_retried_with_backoff(served):
    server, make = served
    with make(retries=3, backoff=0.05) as client:
        server.fail_next(2)
        before = server.calls
        images = client.predict(GAN_MODEL, sig.SAMPLE, _sample(num=1))[sig.IMAGES_OUTPUT]
        assert images.shape == (1, 28, 28, 1) and server.calls - before == 3
        server.fail_next(10)
        before, start = server.calls, time.perf_counter()
        with pytest.raises(client_lib.ServingError) as raised:
            client.predict(GAN_MODEL, sig.SAMPLE, _sample(num=1))
    assert server.calls - before == 4 and raised.value.attempts == 4
    assert time.perf_counter() - start >= 0.05 + 0.1 + 0.2
    assert raised.value.status in ("UNAVAILABLE", "HTTP 503") and "(after 4 attempts)" in str(raised.value)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_server_down_retries_then_fails_clearly(protocol):
    address = f"127.0.0.1:{_free_port()}"
    client = client_lib.make_client(address, rest=protocol == "rest", timeout=2.0, retries=2, backoff=0.1)
    start = time.perf_counter()
    with client, pytest.raises(client_lib.ServingError) as raised:
        client.predict(GAN_MODEL, sig.SAMPLE, _sample(), version=3)
    assert time.perf_counter() - start >= 0.1 + 0.2
    assert raised.value.attempts == 3
    assert raised.value.status == ("UNAVAILABLE" if protocol == "grpc" else "CONNECTION")
    assert str(raised.value).startswith(f"model '{GAN_MODEL}' (version 3) signature 'sample' at ")
    assert address in str(raised.value) and "(after 3 attempts)" in str(raised.value)


def test_timeouts_are_not_retried_unless_asked(served):
    server, make = served
    server.delay = 0.4
    with make(timeout=0.15, retries=2, backoff=0.01) as client:
        before = server.calls
        with pytest.raises(client_lib.ServingError) as raised:
            client.predict(GAN_MODEL, sig.SAMPLE, _sample(num=1))
        assert raised.value.status in ("DEADLINE_EXCEEDED", "TIMEOUT") and raised.value.attempts == 1
    with make(timeout=0.15, retries=1, backoff=0.01, retry_timeouts=True) as client:
        with pytest.raises(client_lib.ServingError) as raised:
            client.predict(GAN_MODEL, sig.SAMPLE, _sample(num=1))
        assert raised.value.attempts == 2
    time.sleep(0.3)  # the delayed handlers finish before the next test counts calls
    assert server.calls - before == 3


# ---------------------------------------------------------------------------
# genpipe predict


def _write_pngs(directory, count, height=12, width=16):
    os.makedirs(directory, exist_ok=True)
    paths = []
    for index, image in enumerate(_random_images(count, height, width, seed=5)):
        path = os.path.join(directory, f"content{index}.png")
        with open(path, "wb") as f:
            f.write(client_lib.encode_png(image))
        paths.append(path)
    return paths


def _png_shape(path):
    with open(path, "rb") as f:
        return client_lib.decode_image_bytes(f.read()).shape


@pytest.fixture
def predict_calls(monkeypatch):
    """The output_filter of every predict call the clients make (spied on both client classes)."""
    calls = []
    for cls in (client_lib.GrpcClient, client_lib.RestClient):
        original = cls.predict

        def spy(self, *args, _original=original, **kwargs):
            calls.append(kwargs.get("output_filter"))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "predict", spy)
    return calls


@pytest.mark.parametrize("protocol, signature", [("grpc", sig.SAMPLE), ("rest", sig.SAMPLE),
                                                 ("grpc", sig.SERVING_DEFAULT), ("rest", sig.SERVING_DEFAULT)])
def test_cli_predict_sample(protocol, signature, grpc_server, rest_server, repository, predict_calls, tmp_path,
                            capsys):
    """`sample` returns floats, encoded here; `serving_default` also returns png_bytes, written as they are."""
    server = grpc_server if protocol == "grpc" else rest_server
    out_dir = tmp_path / "out"
    flags = ["--rest"] if protocol == "rest" else []
    code = cli.main(["predict", "--server", server.address, *flags, "--model", GAN_MODEL, "--signature", signature,
                     "--version", "1", "--num", "3", "--seed", "4", "--out-dir", str(out_dir)])
    assert code == 0
    names = sorted(os.listdir(out_dir))
    assert names == [f"sample-s4-{i:04d}-images.png" for i in range(3)]
    direct = _direct(repository, GAN_MODEL, 1, signature, num=3, seed=4)
    with open(out_dir / names[1], "rb") as f:
        data = f.read()
    np.testing.assert_allclose(client_lib.decode_image_bytes(data), direct[sig.IMAGES_OUTPUT][1], atol=0.5 / 255 + 1e-6)
    if signature == sig.SERVING_DEFAULT:  # the server's PNG, byte for byte, and no float images asked for
        assert data == direct[sig.PNG_BYTES_OUTPUT][1]
        assert predict_calls == [[sig.PNG_BYTES_OUTPUT]]
    else:
        assert predict_calls == [None]
    printed = capsys.readouterr().out
    assert "wrote 3 files" in printed and str(out_dir / names[0]) in printed


@pytest.mark.parametrize("protocol, signature", [("rest", sig.STYLIZE_BYTES), ("grpc", sig.STYLIZE),
                                                 ("grpc", sig.SERVING_DEFAULT)])
def test_cli_predict_image_files(protocol, signature, grpc_server, rest_server, repository, predict_calls, tmp_path,
                                 capsys):
    server = grpc_server if protocol == "grpc" else rest_server
    inputs = _write_pngs(tmp_path / "in", 3) + _write_pngs(tmp_path / "in_small", 1, 8, 8)
    out_dir = tmp_path / "out"
    flags = ["--rest"] if protocol == "rest" else []
    code = cli.main(["predict", "--server", server.address, *flags, "--model", STYLE_MODEL, "--signature", signature,
                     "--batch-size", "2", "--out-dir", str(out_dir), *inputs])
    assert code == 0
    # one PNG per input either way: from png_bytes (stylize_bytes, serving_default) or encoded from floats
    stems = ["content0", "content1", "content2", "content0-2"]  # the two inputs named content0.png get distinct stems
    assert sorted(os.listdir(out_dir)) == sorted(f"{s}-{sig.IMAGES_OUTPUT}.png" for s in stems)
    assert _png_shape(out_dir / "content1-images.png") == (12, 16, 3)
    assert _png_shape(out_dir / "content0-2-images.png") == (8, 8, 3)
    assert f"wrote {len(stems)} files" in capsys.readouterr().out
    first_request = client_lib.image_file_bytes(inputs[:2])  # content0 and content1 went in one request
    with open(out_dir / "content1-images.png", "rb") as f:
        written = f.read()
    if signature == sig.STYLIZE:
        assert predict_calls == [None, None, None]  # 3 + 1 images in batches of 2
        images = np.stack([client_lib.decode_image_bytes(data, 3) for data in first_request])
        styled = _direct(repository, STYLE_MODEL, None, sig.STYLIZE, images=images)[sig.IMAGES_OUTPUT][1]
        np.testing.assert_array_equal(tf.io.decode_png(written).numpy(), np.round(styled * 255).astype(np.uint8))
    else:
        assert predict_calls == [[sig.PNG_BYTES_OUTPUT]] * 3
        direct = _direct(repository, STYLE_MODEL, None, signature, image_bytes=first_request)
        assert written == direct[sig.PNG_BYTES_OUTPUT][1]


@pytest.mark.parametrize("argv, message", [
    (["--model", "nope", "--signature", sig.SAMPLE, "--num", "2"],
     "model 'nope' (latest version) signature 'sample' at "),
    (["--model", GAN_MODEL, "--signature", sig.SAMPLE], "nothing to predict"),
    (["--model", STYLE_MODEL, "--signature", sig.STYLIZE, "--num", "2"],
     "takes images (input 'images'), not latent points: --num/--seed only applies to sample and latent signatures"),
    (["--model", GAN_MODEL, "--signature", sig.SAMPLE, "missing.png"], "missing.png does not exist"),
])
def test_cli_predict_errors(argv, message, grpc_server, tmp_path, capsys):
    code = cli.main(["predict", "--server", grpc_server.address, "--retries", "0", "--out-dir", str(tmp_path),
                     *argv])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("genpipe: error: ") and message in err


def test_cli_predict_request_errors_name_the_signature_and_write_nothing(grpc_server, tmp_path, capsys):
    """Requests the signature cannot take are refused before --out-dir exists, naming model, version and
    signature as the server's own errors do."""
    (image,) = _write_pngs(tmp_path / "in", 1)
    out_dir = tmp_path / "out"
    for argv, message in [
        (["--model", GAN_MODEL, "--signature", sig.SAMPLE, str(image)], "takes num and seed, not images"),
        (["--model", GAN_MODEL, "--signature", sig.SAMPLE, "--input-name", "pixels", str(image)],
         "--input-name 'pixels' is not an input of signature 'sample'"),
        (["--model", GAN_MODEL, "--signature", sig.SAMPLE, "--num", "2", "--input-name", "bogus"],
         "--input-name 'bogus' is not an input of signature 'sample'; it takes ['num', 'seed']"),
    ]:
        assert cli.main(["predict", "--server", grpc_server.address, "--retries", "0", "--out-dir", str(out_dir),
                         *argv]) == 2
        err = capsys.readouterr().err
        assert f"genpipe: error: model {GAN_MODEL!r} (latest version) signature 'sample' at " in err, err
        assert message in err
        assert not out_dir.exists()


@pytest.mark.parametrize("make_out_dir, message", [
    (lambda tmp: tmp / "taken.png", "--out-dir {tmp}/taken.png is a file, not a directory"),
    (lambda tmp: tmp / "taken.png" / "out", "--out-dir {tmp}/taken.png/out cannot be made: {tmp}/taken.png is a file"),
    (lambda tmp: tmp / "locked" / "out", "--out-dir {tmp}/locked/out cannot be made: {tmp}/locked is not writable"),
])
def test_cli_predict_refuses_a_bad_out_dir_before_any_request(make_out_dir, message, grpc_server, tmp_path, capsys,
                                                              monkeypatch):
    (tmp_path / "taken.png").write_bytes(b"not a folder")
    (tmp_path / "locked").mkdir(mode=0o500)
    locked, access = str(tmp_path / "locked"), os.access
    # root ignores permission bits: pretend the read-only folder is what it would be for anyone else
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == locked else access(path, mode))
    before = grpc_server.calls
    code = cli.main(["predict", "--server", grpc_server.address, "--model", GAN_MODEL, "--signature", sig.SAMPLE,
                     "--num", "2", "--out-dir", str(make_out_dir(tmp_path))])
    assert code == 2
    assert f"genpipe: error: {message.format(tmp=tmp_path)}" in capsys.readouterr().err
    assert grpc_server.calls == before


def _latent_points(num, seed, point_shape=(LATENT_DIM,)):
    """The points `genpipe predict --num N --seed S` draws for a latent signature, as its docs say."""
    return np.random.Generator(np.random.PCG64(seed)).standard_normal((num, *point_shape)).astype(np.float32)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _predict(server, protocol, *argv):
    flags = ["--rest"] if protocol == "rest" else []
    return cli.main(["predict", "--server", server.address, *flags, "--retries", "0", *argv])


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_cli_predict_generate_draws_reproducible_latent_points(protocol, grpc_server, rest_server, repository,
                                                               predict_calls, tmp_path, capsys):
    """--num/--seed on `generate`: points drawn here (numpy PCG64), sent in batches, one PNG per point."""
    server = grpc_server if protocol == "grpc" else rest_server

    def generate(seed, out_dir, *more):
        code = _predict(server, protocol, "--model", GAN_MODEL, "--signature", sig.GENERATE, "--version", "1",
                        "--num", "3", "--seed", str(seed), "--out-dir", str(out_dir), *more)
        assert code == 0, capsys.readouterr().err
        return {name: _read(out_dir / name) for name in sorted(os.listdir(out_dir))}

    first = generate(7, tmp_path / "a", "--batch-size", "2")
    names = [f"latent-s7-{i:04d}-{sig.IMAGES_OUTPUT}.png" for i in range(3)]
    assert sorted(first) == names
    assert predict_calls == [None, None]  # 3 points in batches of 2
    direct = _direct(repository, GAN_MODEL, 1, sig.GENERATE, latent=_latent_points(3, 7))[sig.IMAGES_OUTPUT]
    for name, image in zip(names, direct):
        np.testing.assert_array_equal(tf.io.decode_png(first[name]).numpy(), np.round(image * 255).astype(np.uint8))
    assert "wrote 3 files" in capsys.readouterr().out

    again = generate(7, tmp_path / "b")  # one request this time: the batch size does not change the points
    assert again == first
    other = generate(8, tmp_path / "c")
    assert sorted(other) == [name.replace("-s7-", "-s8-") for name in names]
    assert all(other[name.replace("-s7-", "-s8-")] != first[name] for name in names)


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_cli_predict_decode_reads_latent_files(protocol, grpc_server, rest_server, repository, predict_calls,
                                               tmp_path, capsys):
    """--latent on the conv autoencoder's `decode` ([N, 7, 7, 256]), and a point `encode` wrote, fed back."""
    server = grpc_server if protocol == "grpc" else rest_server
    points = np.random.default_rng(1).uniform(0.0, 2.0, size=(3, *CONV_LATENT_SHAPE))  # float64: cast to float32
    np.save(tmp_path / "codes.npy", points)
    out_dir = tmp_path / "out"
    code = _predict(server, protocol, "--model", AUTOENCODER_MODEL, "--signature", sig.DECODE,
                    "--latent", str(tmp_path / "codes.npy"), "--batch-size", "2", "--out-dir", str(out_dir))
    assert code == 0, capsys.readouterr().err
    names = [f"codes-{i:04d}-{sig.RECONSTRUCTION_OUTPUT}.png" for i in range(3)]
    assert sorted(os.listdir(out_dir)) == names
    assert len(predict_calls) == 2
    direct = _direct(repository, AUTOENCODER_MODEL, None, sig.DECODE,
                     latent=points.astype(np.float32))[sig.RECONSTRUCTION_OUTPUT]
    assert direct.shape == (3, 28, 28, 1) and np.ptp(direct) > 1e-3
    for name, image in zip(names, direct):
        np.testing.assert_array_equal(tf.io.decode_png(_read(out_dir / name)).numpy(),
                                      np.round(image * 255).astype(np.uint8))

    digit = np.random.default_rng(2).uniform(size=(28, 28, 1)).astype(np.float32)
    with open(tmp_path / "digit.png", "wb") as f:
        f.write(client_lib.encode_png(digit))
    codes_dir, decoded_dir = tmp_path / "codes", tmp_path / "decoded"
    assert _predict(server, protocol, "--model", AUTOENCODER_MODEL, "--signature", sig.ENCODE,
                    "--out-dir", str(codes_dir), str(tmp_path / "digit.png")) == 0
    assert os.listdir(codes_dir) == [f"digit-{sig.LATENT_OUTPUT}.npy"]
    assert np.load(codes_dir / "digit-latent.npy").shape == CONV_LATENT_SHAPE  # one point, no batch axis
    assert _predict(server, protocol, "--model", AUTOENCODER_MODEL, "--signature", sig.DECODE,
                    "--latent", str(codes_dir / "digit-latent.npy"), "--out-dir", str(decoded_dir)) == 0
    assert os.listdir(decoded_dir) == ["digit-latent-0000-reconstruction.png"]
    pixels = np.round(digit * 255) / 255  # what the PNG holds
    reconstructed = _direct(repository, AUTOENCODER_MODEL, None, sig.RECONSTRUCT,
                            images=pixels[np.newaxis].astype(np.float32))[sig.RECONSTRUCTION_OUTPUT][0]
    np.testing.assert_allclose(client_lib.decode_image_bytes(_read(decoded_dir / os.listdir(decoded_dir)[0])),
                               reconstructed, atol=0.5 / 255 + 1e-5)


GENERATE_AT = f"model {GAN_MODEL!r} (latest version) signature 'generate' at "


@pytest.mark.parametrize("latent, argv, messages", [
    (np.zeros((2, 5), np.float32), ["--model", GAN_MODEL, "--signature", sig.GENERATE],
     [GENERATE_AT, "latent file LATENT holds float32 [2, 5], but input 'latent' takes float points [N, 8] "
                   "(or one point [8])"]),
    (np.zeros((2, 8), np.int64), ["--model", GAN_MODEL, "--signature", sig.GENERATE],
     [GENERATE_AT, "LATENT holds int64 [2, 8]", "[N, 8]"]),
    (np.zeros((2, 7, 7, 128), np.float32), ["--model", AUTOENCODER_MODEL, "--signature", sig.DECODE, "--version", "1"],
     [f"model {AUTOENCODER_MODEL!r} (version 1) signature 'decode' at ", "holds float32 [2, 7, 7, 128]",
      "takes float points [N, 7, 7, 256] (or one point [7, 7, 256])"]),
    (b"not an array", ["--model", GAN_MODEL, "--signature", sig.GENERATE],
     [GENERATE_AT, "latent file LATENT is not a readable .npy array", "[N, 8]"]),
    (np.zeros((2, 8), np.float32), ["--model", STYLE_MODEL, "--signature", sig.STYLIZE],
     [f"model {STYLE_MODEL!r} (latest version) signature 'stylize' at ",
      "takes images (input 'images'), not latent points: --latent only applies"]),
    (np.zeros((2, 8), np.float32), ["--model", GAN_MODEL, "--signature", sig.SAMPLE],
     ["signature 'sample' takes num and seed, not latent points: --latent only applies to latent signatures"]),
    (np.zeros((2, 8), np.float32), ["--model", GAN_MODEL, "--signature", sig.GENERATE, "--num", "2"],
     ["give one of INPUT files, --num/--seed (a draw) or --latent FILE.npy (latent points), not several"]),
    (np.zeros((2, 8), np.float32), ["--model", GAN_MODEL, "--signature", sig.GENERATE, "--seed", "1"],
     ["not several"]),
    (None, ["--model", GAN_MODEL, "--signature", sig.GENERATE],
     ["latent file LATENT does not exist"]),
    (None, ["--model", GAN_MODEL, "--signature", sig.GENERATE, "--num", "2", "--seed", "-1"],
     [GENERATE_AT, "--seed must be >= 0 for a latent draw, got -1"]),
    (None, ["--model", GAN_MODEL, "--signature", sig.GENERATE, "IMAGE"],
     ["signature 'generate' takes latent points (input 'latent'), not images: pass --num N [--seed S]"]),
])
def test_cli_predict_latent_errors(latent, argv, messages, grpc_server, tmp_path, capsys):
    """Exit code 2, a message naming the file, what the input takes and what was found, and nothing written."""
    path = tmp_path / "points.npy"
    if isinstance(latent, bytes):
        path.write_bytes(latent)
    elif latent is not None:
        np.save(path, latent)
    image = _write_pngs(tmp_path / "in", 1)[0]
    if "IMAGE" in argv:
        argv = [image if arg == "IMAGE" else arg for arg in argv]
    else:
        argv = [*argv, "--latent", str(path)] if latent is not None or "--num" not in argv else argv
    out_dir = tmp_path / "out"
    code = cli.main(["predict", "--server", grpc_server.address, "--retries", "0", "--out-dir", str(out_dir),
                     *argv])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("genpipe: error: ")
    for message in messages:
        assert message.replace("LATENT", str(path)) in err
    assert not out_dir.exists()
