"""Every signature of every family's pushed SavedModel, called over TF Serving's REST API.

Each family is exported the way tests/test_serving_warmup.py exports it (its `FAMILIES` helpers:
tiny untrained networks of every pushed kind, among them the conv denoiser `genpipe run denoise`
pushes, the deep autoencoder and the 64x64x3 dcgan64 face generator of `genpipe run faces`), given
its warmup file, served with `serving.testing.serve_rest` and called through
`serving.client.RestClient` with the inputs the documented requests carry: PNG bytes as
{"b64": ...}, float `images` in [0, 1], `latent` points and `num`/`seed`. Every answer is checked
for names, dtypes, shapes and ranges, and against the same signature of the SavedModel loaded with
`tf.saved_model.load` (what TF Serving runs) on the same inputs. The SignatureDefs themselves (what
TF Serving's model metadata reports) are checked against the tables of serving.signatures.
"""
import numpy as np
import pytest
import tensorflow as tf

from conftest import make_face_images
from serving import signatures as sig
from serving import warmup
from serving import testing
from serving.client import RestClient
from serving.testing import serve_rest
from test_serving_warmup import FAMILIES

DIGIT_SHAPE = (28, 28, 1)
FACE_SHAPE = (64, 64, 3)
NUM, SEED = 3, 5
STYLE_CONTENT = make_face_images(2, seed=11)[:, 5:35, 3:41]  # 30x38: not a multiple of 4, the net pads
FAMILY_DIMS = {  # what the FAMILIES exports fix of the tables' symbolic dims (serving.signatures.concrete_shape)
    "autoencoder-dense": dict(image_shape=DIGIT_SHAPE, latent_shape=(32,)),
    "autoencoder-deep": dict(image_shape=DIGIT_SHAPE, latent_shape=(32,)),
    "autoencoder-denoising": dict(image_shape=DIGIT_SHAPE, latent_shape=(7, 7, 256)),  # the conv code
    "vae": dict(image_shape=DIGIT_SHAPE, latent_dim=3),
    "gan-dense": dict(image_shape=DIGIT_SHAPE, latent_dim=8),
    "gan-dcgan": dict(image_shape=DIGIT_SHAPE, latent_dim=8),
    "gan-dcgan64": dict(image_shape=FACE_SHAPE, latent_dim=128),
    "style": dict(image_shape=(None, None, 3)),  # any height and width
}


def _convention(family: str) -> str:
    """The family of serving.signatures.FAMILY_SIGNATURES an export of FAMILIES ("gan-dcgan64", ...) belongs to."""
    return family.split("-")[0]


EXPECTED_SIGNATURES = {  # signature -> output names, per exported family, from serving.signatures
    family: {name: set(outputs) for name, (_, outputs) in sig.FAMILY_SIGNATURES[_convention(family)].items()}
    for family in FAMILIES
}
UNIT_RANGE_OUTPUTS = {name for name, spec in sig.OUTPUTS.items() if spec.value_range == (0.0, 1.0)}


@pytest.fixture(scope="module")
def served(transformed_data, tmp_path_factory):
    """Every family exported with its warmup file and served over REST: (RestClient, family -> dir, images)."""
    root = tmp_path_factory.mktemp("families")
    export_dirs, content = {}, {}
    for family, export in FAMILIES.items():
        export_dir = str(root / family / "1")
        warmup.add_warmup(export_dir, export(transformed_data, export_dir))
        export_dirs[family] = export_dir
        # The requests' images: held-out digits as the ExampleGen stores them (uint8), faces for style.
        content[family] = STYLE_CONTENT if family == "style" else transformed_data["images"][52:56]
    with serve_rest(export_dirs) as server, RestClient(server.url, timeout=60.0) as client:
        yield client, export_dirs, content


def request_inputs(specs, pixels: np.ndarray) -> dict:
    """The documented request of a signature with input `specs`, made from uint8 images `pixels`."""
    inputs = {}
    for name, spec in specs.items():
        if name == sig.IMAGE_BYTES_INPUT:
            inputs[name] = np.array([tf.io.encode_png(image).numpy() for image in pixels], dtype=object)
        elif name == sig.IMAGES_INPUT:
            inputs[name] = pixels.astype(np.float32) / 255.0
        elif name == sig.LATENT_INPUT:
            shape = [len(pixels)] + spec.shape.as_list()[1:]
            inputs[name] = np.random.default_rng(SEED).standard_normal(shape).astype(np.float32)
        elif name == sig.NUM_INPUT:
            inputs[name] = np.int32(NUM)
        elif name == sig.SEED_INPUT:
            inputs[name] = np.int32(SEED)
        else:
            raise AssertionError(f"input {name!r} follows none of the conventions of serving.signatures")
    return inputs


def call_loaded(function, specs, inputs: dict) -> dict:
    return {k: v.numpy() for k, v in function(**{n: tf.constant(v, specs[n].dtype) for n, v in inputs.items()}).items()}


def assert_same_outputs(served_outputs: dict, direct: dict, where: str) -> None:
    assert set(served_outputs) == set(direct), where
    for name, value in direct.items():
        got = served_outputs[name]
        assert got.shape == value.shape, (where, name)
        if value.dtype == object:
            assert got.dtype == object and list(got) == list(value), (where, name)
        else:
            assert got.dtype == value.dtype == np.float32, (where, name, got.dtype)
            np.testing.assert_allclose(got, value, rtol=1e-6, atol=1e-6, err_msg=f"{where} {name}")


def check_outputs(family: str, signature: str, inputs: dict, outputs: dict, image_shape) -> None:
    """Names, dtypes, shapes and ranges of one signature's answer."""
    where = f"{family} {signature}"
    assert set(outputs) == EXPECTED_SIGNATURES[family][signature], where
    batch = int(inputs[sig.NUM_INPUT]) if sig.NUM_INPUT in inputs else len(next(iter(inputs.values())))
    for name, value in outputs.items():
        assert value.shape[0] == batch, (where, name, value.shape)
        if name == sig.PNG_BYTES_OUTPUT:
            assert value.dtype == object and value.shape == (batch,), (where, name)
            continue
        assert value.dtype == np.float32, (where, name, value.dtype)
        assert np.all(np.isfinite(value)), (where, name)
        if name in UNIT_RANGE_OUTPUTS:
            assert value.shape[1:] == image_shape, (where, name, value.shape)
            assert 0.0 <= value.min() and value.max() <= 1.0, (where, name, value.min(), value.max())
    if signature == sig.ELBO:
        assert np.all(outputs[sig.KL_OUTPUT] >= 0) and np.all(outputs[sig.RECONSTRUCTION_NLL_OUTPUT] >= 0), where
        np.testing.assert_allclose(outputs[sig.ELBO_OUTPUT],
                                   -(outputs[sig.KL_OUTPUT] + outputs[sig.RECONSTRUCTION_NLL_OUTPUT]), rtol=1e-5)
    if sig.PNG_BYTES_OUTPUT in outputs:  # the PNGs are the float images, round(x * 255) per channel
        (image_output,) = set(outputs) & UNIT_RANGE_OUTPUTS
        decoded = np.stack([tf.io.decode_png(png).numpy() for png in outputs[sig.PNG_BYTES_OUTPUT]])
        np.testing.assert_array_equal(decoded, np.round(outputs[image_output] * 255).astype(np.uint8), err_msg=where)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_signature_over_rest_matches_the_saved_model(family, served):
    client, export_dirs, content = served
    loaded = tf.saved_model.load(export_dirs[family])  # as TF Serving loads it
    assert set(loaded.signatures) == set(EXPECTED_SIGNATURES[family])
    pixels = content[family]
    answers = {}
    for signature in sorted(loaded.signatures):
        function = loaded.signatures[signature]
        specs = function.structured_input_signature[1]
        inputs = request_inputs(specs, pixels)
        answers[signature] = outputs = client.predict(family, signature, inputs)
        image_shape = pixels.shape[1:] if family == "style" else FAMILY_DIMS[family]["image_shape"]
        check_outputs(family, signature, inputs, outputs, image_shape)
        assert_same_outputs(outputs, call_loaded(function, specs, inputs), f"{family} {signature}")

    # One model behind every signature: the PNG path equals the float path on the same pixels.
    if sig.RECONSTRUCT in answers:
        np.testing.assert_allclose(answers[sig.SERVING_DEFAULT][sig.RECONSTRUCTION_OUTPUT],
                                   answers[sig.RECONSTRUCT][sig.RECONSTRUCTION_OUTPUT], atol=1e-5)
    if family == "style":
        for signature in (sig.STYLIZE_BYTES, sig.SERVING_DEFAULT):
            np.testing.assert_allclose(answers[signature][sig.IMAGES_OUTPUT],
                                       answers[sig.STYLIZE][sig.IMAGES_OUTPUT], atol=1e-5)
    if sig.SAMPLE in answers:  # stateless seed: the same request draws the same images
        again = client.predict(family, sig.SAMPLE, {sig.NUM_INPUT: np.int32(NUM), sig.SEED_INPUT: np.int32(SEED)})
        np.testing.assert_array_equal(again[sig.IMAGES_OUTPUT], answers[sig.SAMPLE][sig.IMAGES_OUTPUT])
    if family.startswith("gan"):  # serving_default is `sample`
        np.testing.assert_array_equal(answers[sig.SERVING_DEFAULT][sig.IMAGES_OUTPUT],
                                      answers[sig.SAMPLE][sig.IMAGES_OUTPUT])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_warmup_covers_every_signature_and_replays_over_rest(family, served):
    client, export_dirs, _ = served
    loaded = tf.saved_model.load(export_dirs[family])
    requests = [log.predict_log.request for log in warmup.read_warmup_requests(export_dirs[family])]
    assert sorted(r.model_spec.signature_name for r in requests) == sorted(loaded.signatures)
    for request in requests:
        signature = request.model_spec.signature_name
        function = loaded.signatures[signature]
        specs = function.structured_input_signature[1]
        inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        assert set(inputs) == set(specs), (family, signature)
        outputs = client.predict(family, signature, inputs)
        assert set(outputs) == EXPECTED_SIGNATURES[family][signature], (family, signature)
        assert_same_outputs(outputs, call_loaded(function, specs, inputs), f"{family} warmup {signature}")


def _signature_defs(export_dir: str) -> dict:
    """The SignatureDef protos of a SavedModel, as TF Serving reads them and reports them in model metadata."""
    from tensorflow.python.saved_model import loader_impl

    meta_graph = loader_impl.parse_saved_model(export_dir).meta_graphs[0]
    return {k: v for k, v in meta_graph.signature_def.items() if k != testing.INIT_OP_SIGNATURE}


def _proto_shape(tensor_info):
    if tensor_info.tensor_shape.unknown_rank:
        return None
    return tuple(None if d.size < 0 else d.size for d in tensor_info.tensor_shape.dim)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_exported_signatures_follow_the_convention_table(family, served):
    """Signature names, input and output names, dtypes and shapes of every SignatureDef are the ones
    serving.signatures documents (FAMILY_SIGNATURES, INPUTS, OUTPUTS), with the symbolic dims the export fixes."""
    _, export_dirs, _ = served
    signature_defs = _signature_defs(export_dirs[family])
    table = sig.FAMILY_SIGNATURES[_convention(family)]
    assert set(signature_defs) == set(table)
    loaded = tf.saved_model.load(export_dirs[family])
    for name, (inputs, outputs) in table.items():
        for kind, names, tensors, conventions in (("input", inputs, signature_defs[name].inputs, sig.INPUTS),
                                                  ("output", outputs, signature_defs[name].outputs, sig.OUTPUTS)):
            assert set(tensors) == set(names), (family, name, kind)
            for key, tensor in tensors.items():
                where = (family, name, kind, key)
                assert tf.dtypes.as_dtype(tensor.dtype).name == conventions[key].dtype, where
                assert _proto_shape(tensor) == sig.concrete_shape(conventions[key], **FAMILY_DIMS[family]), where
        # The loaded function takes exactly the specs serving.signatures.input_spec builds.
        specs = loaded.signatures[name].structured_input_signature[1]
        for key, spec in specs.items():
            assert spec == sig.input_spec(key, **FAMILY_DIMS[family]), (family, name, key)


def test_every_pipeline_variant_pushes_a_network_exported_here():
    """The checks above cover what the pipelines push, every --variant of each (pipelines.config.VARIANTS):
    `denoise` the conv net, `autoencoder` dense, deep and conv, `faces` dcgan64, and so on."""
    from pipelines import config as config_lib
    from trainer_modules import autoencoder

    exported = {tuple(family.split("-", 1)) if "-" in family else (family, None) for family in FAMILIES}
    presets = config_lib.presets()
    assert set(config_lib.VARIANTS) == set(presets)
    for name, variants in config_lib.VARIANTS.items():
        family = presets[name].family
        for variant in variants:
            if family == "autoencoder":  # conv and denoising are one network, trained on other inputs
                networks = {autoencoder.BUILDERS[v] for f, v in exported if f == "autoencoder"}
                assert autoencoder.BUILDERS[variant] in networks, (name, variant)
            elif (family, None) in exported:  # exported without a variant: the family has one network
                assert variants == (presets[name].variant,), (name, variants)
            else:
                assert (family, variant) in exported, (name, variant)
