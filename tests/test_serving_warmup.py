"""Warmup requests (assets.extra/tf_serving_warmup_requests) for every family's pushed SavedModel."""
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from serving import signatures as sig
from serving import warmup

STYLE_EXAMPLES = np.random.default_rng(0).uniform(size=(2, 18, 22, 3)).astype(np.float32)  # any size, not /4


def _digits(data):
    return data["images"][48:52].astype(np.float32) / 255.0


def _export_autoencoder(data, path):
    import tensorflow_transform as tft

    from trainer_modules import autoencoder

    model, encoder, decoder = autoencoder.build_autoencoder("dense")
    autoencoder.export_autoencoder(model, encoder, decoder, tft.TFTransformOutput(data["transform_graph"]), path)
    return _digits(data)


def _export_vae(data, path):
    import tensorflow_transform as tft

    from trainer_modules import vae

    model, _, _ = vae.build_vae(latent_dim=3)
    vae.export_vae(model, tft.TFTransformOutput(data["transform_graph"]), path)
    return _digits(data)


def _export_gan(variant):
    def export(data, path):
        from trainer_modules import gan

        generator, _ = gan.build_networks(variant, 8)
        gan.export_generator(generator, 8, gan.get_variant(variant).value_range, path)
        return None  # no signature takes images

    return export


def _export_style(data, path):
    from trainer_modules import style_transfer

    style_transfer.export_stylizer(style_transfer.build_transform_net(residual_blocks=1, base_filters=4), path)
    return STYLE_EXAMPLES


FAMILIES = {
    "autoencoder": _export_autoencoder,
    "vae": _export_vae,
    "gan-dense": _export_gan("dense"),
    "gan-dcgan": _export_gan("dcgan"),
    "style": _export_style,
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_warmup_file_matches_signatures_and_replays(family, transformed_data, tmp_path):
    export_dir = str(tmp_path / family / "1")
    examples = FAMILIES[family](transformed_data, export_dir)
    path = warmup.add_warmup(export_dir, examples)
    assert path == os.path.join(export_dir, "assets.extra", "tf_serving_warmup_requests")

    loaded = tf.saved_model.load(export_dir)
    logs = warmup.read_warmup_requests(export_dir)
    assert 0 < len(logs) <= warmup.MAX_WARMUP_RECORDS
    requests = [log.predict_log.request for log in logs]
    assert all(log.WhichOneof("log_type") == "predict_log" for log in logs)
    assert sorted(r.model_spec.signature_name for r in requests) == sorted(loaded.signatures)
    for request in requests:
        assert request.model_spec.name == ""  # TF Serving fills in the servable it loads
        specs = loaded.signatures[request.model_spec.signature_name].structured_input_signature[1]
        assert set(request.inputs) == set(specs)
        for name, proto in request.inputs.items():
            value = tf.make_ndarray(proto)
            assert tf.as_dtype(proto.dtype) == specs[name].dtype, (request.model_spec.signature_name, name)
            assert specs[name].shape.is_compatible_with(value.shape), (request.model_spec.signature_name, name)
            if name == sig.IMAGE_BYTES_INPUT:  # lossless PNGs of the examples
                decoded = np.stack([tf.io.decode_png(png).numpy() for png in value])
                np.testing.assert_array_equal(decoded, np.round(examples[:len(value)] * 255).astype(np.uint8))
            if name in (sig.NUM_INPUT, sig.SEED_INPUT):
                assert value.shape == () and value.dtype == np.int32

    outputs = warmup.replay_warmup_requests(export_dir)
    assert set(outputs) == set(loaded.signatures)
    for name, result in outputs.items():
        for key, value in result.items():
            assert value.shape[0] >= 1, (name, key)


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
