"""Warmup requests (assets.extra/tf_serving_warmup_requests) for every family's pushed SavedModel."""
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from serving import signatures as sig
from serving import warmup

STYLE_EXAMPLES = np.random.default_rng(0).uniform(size=(2, 18, 22, 3)).astype(np.float32)  # any size, not /4
GAN_LATENT_DIMS = {"dense": 8, "dcgan": 8, "dcgan64": 128}  # dcgan64: the face generator's own latent size


def _digits(data):
    return data["images"][48:52].astype(np.float32) / 255.0


def _export_autoencoder(variant):
    def export(data, path):
        import tensorflow_transform as tft

        from trainer_modules import autoencoder

        model, encoder, decoder = autoencoder.build_autoencoder(variant)
        autoencoder.export_autoencoder(model, encoder, decoder, tft.TFTransformOutput(data["transform_graph"]), path)
        return _digits(data)

    return export


def _export_vae(data, path):
    import tensorflow_transform as tft

    from trainer_modules import vae

    model, _, _ = vae.build_vae(latent_dim=3)
    vae.export_vae(model, tft.TFTransformOutput(data["transform_graph"]), path)
    return _digits(data)


def _export_gan(variant):
    def export(data, path):
        from trainer_modules import gan

        latent_dim = GAN_LATENT_DIMS[variant]
        generator, _ = gan.build_networks(variant, latent_dim)
        gan.export_generator(generator, latent_dim, gan.get_variant(variant).value_range, path)
        return None  # no signature takes images

    return export


def _export_style(data, path):
    from trainer_modules import style_transfer

    style_transfer.export_stylizer(style_transfer.build_transform_net(residual_blocks=1, base_filters=4), path)
    return STYLE_EXAMPLES


FAMILIES = {  # "<family>-<variant>": export(transformed digits, export_dir) -> the example images for add_warmup
    "autoencoder-dense": _export_autoencoder("dense"),
    "autoencoder-deep": _export_autoencoder("deep"),
    "autoencoder-denoising": _export_autoencoder("denoising"),  # the conv net `genpipe run denoise` pushes
    "vae": _export_vae,
    "gan-dense": _export_gan("dense"),
    "gan-dcgan": _export_gan("dcgan"),
    "gan-dcgan64": _export_gan("dcgan64"),  # the 64x64x3 face generator `genpipe run faces` pushes
    "style": _export_style,
}


def _request_batch(inputs: dict) -> int:
    if sig.NUM_INPUT in inputs:
        return int(inputs[sig.NUM_INPUT])
    return len(next(iter(inputs.values())))


def _warmup_images(name: str, value: np.ndarray) -> np.ndarray:
    """The uint8 pixels an image input of a warmup request carries (PNGs decoded, floats mapped back)."""
    if name == sig.IMAGE_BYTES_INPUT:
        return np.stack([tf.io.decode_png(png).numpy() for png in value])
    return np.round(value * 255).astype(np.uint8)


def check_warmup_file(export_dir: str, examples=None, *, eval_images=None) -> dict:
    """Asserts that `export_dir` carries a warmup file TF Serving loads; returns the replay (signature -> outputs).

    The file is `assets.extra/tf_serving_warmup_requests` and parses as PredictLog records with the
    model name left empty, one request per signature of the SavedModel, each with that signature's
    input names, dtypes and shapes; replayed through the loaded SavedModel every request answers
    with its own batch size. `examples`: the images given to add_warmup, which the image inputs must
    hold exactly. `eval_images`: float [M, H, W, C] in [0, 1] (a run's transformed eval split), from
    which every image of the requests must come.
    """
    path = os.path.join(export_dir, "assets.extra", "tf_serving_warmup_requests")
    assert os.path.isfile(path), f"{export_dir} has no warmup file"
    assert warmup.warmup_path(export_dir) == path
    loaded = tf.saved_model.load(export_dir)  # as TF Serving loads it
    logs = warmup.read_warmup_requests(export_dir)
    assert 0 < len(logs) <= warmup.MAX_WARMUP_RECORDS
    assert all(log.WhichOneof("log_type") == "predict_log" for log in logs)
    requests = [log.predict_log.request for log in logs]
    assert sorted(r.model_spec.signature_name for r in requests) == sorted(loaded.signatures)
    candidates = None if eval_images is None else np.round(np.asarray(eval_images) * 255).astype(np.uint8)
    batches = {}
    for request in requests:
        signature = request.model_spec.signature_name
        assert request.model_spec.name == ""  # TF Serving fills in the servable it loads
        specs = loaded.signatures[signature].structured_input_signature[1]
        assert set(request.inputs) == set(specs), signature
        inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        batches[signature] = _request_batch(inputs)
        for name, value in inputs.items():
            where = (export_dir, signature, name)
            assert tf.as_dtype(request.inputs[name].dtype) == specs[name].dtype, where
            assert specs[name].shape.is_compatible_with(value.shape), where
            if name in (sig.NUM_INPUT, sig.SEED_INPUT):
                assert value.shape == () and value.dtype == np.int32, where
            if name not in (sig.IMAGE_BYTES_INPUT, sig.IMAGES_INPUT):
                continue
            pixels = _warmup_images(name, value)
            if examples is not None:  # lossless PNGs, or the floats themselves
                if name == sig.IMAGES_INPUT:
                    np.testing.assert_array_equal(value, examples[:len(value)], err_msg=str(where))
                np.testing.assert_array_equal(pixels, np.round(examples[:len(value)] * 255).astype(np.uint8))
            if candidates is not None:  # real eval images, not made-up pixels
                assert pixels.shape[1:] == candidates.shape[1:], (where, pixels.shape, candidates.shape)
                for image in pixels:
                    assert np.any(np.all(candidates == image, axis=(1, 2, 3))), (where, "not an eval image")

    outputs = warmup.replay_warmup_requests(export_dir)
    assert set(outputs) == set(loaded.signatures)
    for signature, result in outputs.items():
        for name, value in result.items():
            assert value.shape[0] == batches[signature], (export_dir, signature, name, value.shape)
    return outputs


def transformed_eval_images(config) -> np.ndarray:
    """The transformed eval split's images (float [M, H, W, C]) of the latest run of `config`'s pipeline.

    They are what the Trainer's eval preview, and so the pushed model's warmup requests, are drawn
    from; found through ML Metadata (the Transform's transform_graph and transformed_examples).
    """
    import tensorflow_transform as tft

    from pipelines import local_runner
    from trainer_modules import contract

    store = local_runner.open_store(config)
    outputs = local_runner.output_artifacts(
        store, local_runner.latest_run_executions(store, config.pipeline_name)["Transform"].id)
    spec = tft.TFTransformOutput(outputs["transform_graph"][0].uri).transformed_feature_spec()
    spec = {contract.IMAGE_KEY: spec[contract.IMAGE_KEY]}
    files = tf.io.gfile.glob(os.path.join(outputs["transformed_examples"][0].uri, f"Split-{contract.EVAL_SPLIT}", "*"))
    records = list(tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator())
    assert records, f"no transformed eval examples in {files}"
    return tf.io.parse_example(records, spec)[contract.IMAGE_KEY].numpy()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_warmup_file_matches_signatures_and_replays(family, transformed_data, tmp_path):
    export_dir = str(tmp_path / family / "1")
    examples = FAMILIES[family](transformed_data, export_dir)
    path = warmup.add_warmup(export_dir, examples)
    assert path == os.path.join(export_dir, "assets.extra", "tf_serving_warmup_requests")
    check_warmup_file(export_dir, examples)


def test_latent_and_sample_values(tmp_path):
    from trainer_modules import gan

    generator, _ = gan.build_networks("dense", 5)
    export_dir = gan.export_generator(generator, 5, "unit", str(tmp_path / "gan"))
    by_name = {r.model_spec.signature_name: r for r in warmup.requests_for(export_dir, num=3, seed=9)}
    latent = tf.make_ndarray(by_name[sig.GENERATE].inputs[sig.LATENT_INPUT])
    assert latent.shape == (3, 5) and latent.dtype == np.float32 and latent.std() > 0
    again = tf.make_ndarray(warmup.requests_for(export_dir, num=3, seed=9)[0].inputs[sig.LATENT_INPUT])
    np.testing.assert_array_equal(latent, again)  # seeded: a re-export writes the same file
    assert tf.make_ndarray(by_name[sig.SAMPLE].inputs[sig.NUM_INPUT]) == 3
    assert tf.make_ndarray(by_name[sig.SAMPLE].inputs[sig.SEED_INPUT]) == 9


class _Images(tf.Module):
    """`images` [None, 4, 4, 1] -> at most 2 per batch; `other` takes an input no convention names."""

    @tf.function(input_signature=[tf.TensorSpec([None, 4, 4, 1], tf.float32, name=sig.IMAGES_INPUT)])
    def small_batches(self, images):
        tf.debugging.assert_less(tf.shape(images)[0], 3, message="batch too large")
        return {"mean": tf.reduce_mean(images, axis=[1, 2, 3])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="words")])
    def other(self, words):
        return {"out": words}


@pytest.fixture(scope="module")
def images_model(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("images_model") / "1")
    module = _Images()
    tf.saved_model.save(module, path, signatures={"small": module.small_batches, "other": module.other})
    return path


def test_rejected_and_unfit_examples_raise(images_model):
    with pytest.raises(ValueError, match=r"(?s)signature 'small' rejects its warmup request.*batch too large"):
        warmup.requests_for(images_model, np.zeros((3, 4, 4, 1), np.float32))
    with pytest.raises(ValueError, match="takes images, but no example images were given"):
        warmup.requests_for(images_model, None)
    with pytest.raises(ValueError, match=r"shape \[2, 5, 4, 1\], the signature takes \[None, 4, 4, 1\]"):
        warmup.requests_for(images_model, np.zeros((2, 5, 4, 1), np.float32))
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        warmup.requests_for(images_model, -np.ones((2, 4, 4, 1), np.float32))
    with pytest.raises(ValueError, match=r"\[N, H, W, C\]"):
        warmup.requests_for(images_model, np.zeros((4, 4, 1), np.float32))


def test_unknown_inputs_are_skipped_with_a_warning(images_model, caplog):
    requests = warmup.requests_for(images_model, np.ones((2, 4, 4, 1), np.float32))
    assert [r.model_spec.signature_name for r in requests] == ["small"]
    assert "signature 'other': no warmup request" in caplog.text and "words" in caplog.text


def test_write_and_read_errors(images_model, tmp_path):
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = "small"
    with pytest.raises(FileNotFoundError, match="no saved_model.pb"):
        warmup.write_warmup_requests(str(tmp_path), [request])
    with pytest.raises(ValueError, match="no warmup requests"):
        warmup.write_warmup_requests(images_model, [])
    with pytest.raises(ValueError, match="at most 1000"):
        warmup.write_warmup_requests(images_model, [request] * (warmup.MAX_WARMUP_RECORDS + 1))
    with pytest.raises(FileNotFoundError, match="has no warmup file"):
        warmup.read_warmup_requests(str(tmp_path))


def test_replay_catches_requests_the_model_does_not_take(images_model, tmp_path):
    wrong_signature = warmup.predict_request("missing", {sig.IMAGES_INPUT: np.zeros((1, 4, 4, 1), np.float32)})
    warmup.write_warmup_requests(images_model, [wrong_signature])
    with pytest.raises(ValueError, match=r"record 0 names signature 'missing'"):
        warmup.replay_warmup_requests(images_model)
    wrong_input = warmup.predict_request("small", {"pixels": np.zeros((1, 4, 4, 1), np.float32)})
    warmup.write_warmup_requests(images_model, [wrong_input])
    with pytest.raises(ValueError, match=r"has inputs \['pixels'\], the signature takes \['images'\]"):
        warmup.replay_warmup_requests(images_model)
