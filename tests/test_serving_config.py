"""`genpipe serving-config`, the ModelServerConfig it writes, and the serving/deploy/ files that read it."""
import os
import shutil

import pytest
import tensorflow as tf
import yaml

from pipelines import cli
from pipelines import config as config_lib
from serving import model_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(REPO, "serving", "deploy")
MOUNT = "/models"
TF_SERVING_IMAGE = "tensorflow/serving:2.16.1"
GRPC_PORT, REST_PORT = 8500, 8501


class _Double(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def double(self, x):
        return {"y": 2.0 * x}


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """One genuine SavedModel, copied into every version folder of the fake serving dirs."""
    path = str(tmp_path_factory.mktemp("saved_model") / "model")
    module = _Double()
    tf.saved_model.save(module, path, signatures={"serving_default": module.double})
    return path


@pytest.fixture
def serving_dir(tmp_path, saved_model):
    """denoise_mnist_sample versions 1, 3, 12 and vae_conv_mnist_sample 5, plus a stray and an unfinished version."""
    root = tmp_path / "serving"
    for model, versions in {"denoise_mnist_sample": (1, 3, 12), "vae_conv_mnist_sample": (5,)}.items():
        for version in versions:
            shutil.copytree(saved_model, root / model / str(version))
    (root / "vae_conv_mnist_sample" / "7").mkdir()  # a push in progress: no saved_model.pb yet
    (root / "vae_conv_mnist_sample" / "tmp-push").mkdir()  # not a version: ignored like TF Serving does
    (root / "notes.txt").write_text("not a model")
    return str(root)


def _by_name(config):
    return {entry.name: entry for entry in config.model_config_list.config}


def test_scan_finds_models_and_numeric_versions(serving_dir):
    scan = model_config.scan_serving_dir(serving_dir)
    assert scan.models == {"denoise_mnist_sample": [1, 3, 12], "vae_conv_mnist_sample": [5]}
    assert len(scan.skipped) == 1 and os.path.join("vae_conv_mnist_sample", "7") in scan.skipped[0]


def test_written_config_parses_back_with_absolute_paths_and_latest(serving_dir):
    path, _, _ = model_config.write_model_server_config(serving_dir)
    assert path == os.path.join(serving_dir, model_config.CONFIG_FILE)
    config = model_config.read_model_server_config(path)
    entries = _by_name(config)
    assert list(entries) == ["denoise_mnist_sample", "vae_conv_mnist_sample"]
    for name, entry in entries.items():
        assert entry.base_path == os.path.join(serving_dir, name) and os.path.isabs(entry.base_path)
        assert entry.model_platform == "tensorflow"
        assert entry.model_version_policy.WhichOneof("policy_choice") == "latest"
        assert entry.model_version_policy.latest.num_versions == 1


@pytest.mark.parametrize("versions, choice, check", [
    ("all", "all", lambda policy: True),
    ("latest:2", "latest", lambda policy: policy.latest.num_versions == 2),
])
def test_version_policies(serving_dir, versions, choice, check):
    _, config, _ = model_config.write_model_server_config(serving_dir, versions=versions)
    for entry in config.model_config_list.config:
        assert entry.model_version_policy.WhichOneof("policy_choice") == choice
        assert check(entry.model_version_policy)


def test_specific_versions_pin_each_model_to_those_it_has(serving_dir, tmp_path, saved_model):
    with pytest.raises(ValueError, match=r"model vae_conv_mnist_sample has none of these versions \(it has \[5\]\)"):
        model_config.write_model_server_config(serving_dir, versions="3")
    shutil.copytree(saved_model, os.path.join(serving_dir, "vae_conv_mnist_sample", "3"))
    path, _, _ = model_config.write_model_server_config(serving_dir, versions="12,3,5", output=str(tmp_path / "x.cfg"))
    entries = _by_name(model_config.read_model_server_config(path))
    policies = {name: entry.model_version_policy for name, entry in entries.items()}
    assert all(policy.WhichOneof("policy_choice") == "specific" for policy in policies.values())
    assert list(policies["denoise_mnist_sample"].specific.versions) == [3, 12]
    assert list(policies["vae_conv_mnist_sample"].specific.versions) == [3, 5]


@pytest.mark.parametrize("versions", ["newest", "latest:0", "latest:x", "1,a", ""])
def test_bad_versions_are_rejected(serving_dir, versions):
    with pytest.raises(ValueError, match="--versions"):
        model_config.write_model_server_config(serving_dir, versions=versions)


def test_cli_end_to_end_with_prefix_and_output(serving_dir, tmp_path, capsys):
    output = str(tmp_path / "out" / "tf.config")
    code = cli.main(["serving-config", "--serving-dir", serving_dir, "--output", output,
                     "--versions", "all", "--base-path-prefix", "/models/"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"Wrote {output} (2 models" in captured.out and "denoise_mnist_sample" in captured.out
    assert "warning: skipped" in captured.err and "without saved_model.pb" in captured.err
    entries = _by_name(model_config.read_model_server_config(output))
    assert {name: e.base_path for name, e in entries.items()} == {
        "denoise_mnist_sample": "/models/denoise_mnist_sample", "vae_conv_mnist_sample": "/models/vae_conv_mnist_sample"}
    assert all(e.model_version_policy.HasField("all") for e in entries.values())
    assert not os.path.exists(os.path.join(serving_dir, model_config.CONFIG_FILE))


def test_cli_errors(tmp_path, capsys):
    missing = str(tmp_path / "nowhere")
    assert cli.main(["serving-config", "--serving-dir", missing]) == 2
    assert f"serving dir {missing} does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    (empty / "some_model" / "1").mkdir(parents=True)  # a version without saved_model.pb only
    assert cli.main(["serving-config", "--serving-dir", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "no models found" in err and model_config.EXPECTED_LAYOUT in err
    with pytest.raises(SystemExit):
        cli.main(["serving-config"])  # --serving-dir is required
    capsys.readouterr()


def test_a_bucket_that_cannot_be_read_is_not_called_missing(monkeypatch, capsys):
    """Without credentials or network, gfile.isdir answers False as for a missing folder: the error gives the
    store's own answer and how to log in instead of "does not exist"."""
    from components import files

    class UnreachableStore:  # tf.io.gfile as it answers here for gs:// (no network to googleapis.com)
        @staticmethod
        def isdir(path):
            return False

        @staticmethod
        def stat(path):
            raise tf.errors.FailedPreconditionError(None, None, "Error executing an HTTP request: libcurl code 6 "
                                                    f"meaning 'Couldn't resolve host name' when reading {path}")

    monkeypatch.setattr(files, "gfile", UnreachableStore)
    assert cli.main(["serving-config", "--serving-dir", "gs://bucket/serving"]) == 2
    err = capsys.readouterr().err
    assert "serving dir gs://bucket/serving cannot be read: Error executing an HTTP request" in err
    assert "gcloud auth application-default login" in err and "does not exist" not in err


def test_remote_serving_dir_is_read_and_written_through_gfile(serving_dir, tmp_path, capsys):
    """A bucket (gs://..., where compiled pipelines push) goes through tf.io.gfile; a file:// URL stands in for it."""
    url = "file://" + serving_dir
    assert cli.main(["serving-config", "--serving-dir", url]) == 0
    captured = capsys.readouterr()
    written = f"{url}/{model_config.CONFIG_FILE}"
    assert f"Wrote {written} (2 models" in captured.out and "warning: skipped" in captured.err
    assert os.path.isfile(os.path.join(serving_dir, model_config.CONFIG_FILE))
    entries = _by_name(model_config.read_model_server_config(written))
    assert {name: e.base_path for name, e in entries.items()} == {
        name: f"{url}/{name}" for name in ("denoise_mnist_sample", "vae_conv_mnist_sample")}

    output = f"file://{tmp_path}/configs/new/tf.config"  # a folder that does not exist yet
    assert cli.main(["serving-config", "--serving-dir", url, "--output", output, "--base-path-prefix", MOUNT]) == 0
    capsys.readouterr()
    entries = _by_name(model_config.read_model_server_config(str(tmp_path / "configs" / "new" / "tf.config")))
    assert entries["vae_conv_mnist_sample"].base_path == f"{MOUNT}/vae_conv_mnist_sample"

    missing = f"file://{tmp_path}/nowhere"
    assert cli.main(["serving-config", "--serving-dir", missing]) == 2
    assert f"serving dir {missing} does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# serving/deploy/: the files TF Serving starts from, checked statically (no TF Serving binary here).


def _load_yaml(name):
    with open(os.path.join(DEPLOY, name)) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def _config_flag(args):
    flags = dict(arg.split("=", 1) for arg in args if arg.startswith("--") and "=" in arg)
    assert flags["--port"] == str(GRPC_PORT) and flags["--rest_api_port"] == str(REST_PORT)
    assert "--enable_batching" not in " ".join(args)  # scalar num/seed inputs cannot be batched
    return flags["--model_config_file"]


def _check_config_path(config_file, mount, serving_dir):
    """The container's config file is what `serving-config --base-path-prefix <mount>` writes in the mounted dir."""
    path, config, _ = model_config.write_model_server_config(serving_dir, base_path_prefix=mount)
    assert config_file == f"{mount}/{os.path.relpath(path, serving_dir)}"
    for entry in config.model_config_list.config:
        assert entry.base_path == f"{mount}/{entry.name}"


def test_docker_compose(serving_dir):
    (compose,) = _load_yaml("docker-compose.yml")
    (service,) = compose["services"].values()
    assert service["image"] == TF_SERVING_IMAGE
    assert sorted(service["ports"]) == [f"{GRPC_PORT}:{GRPC_PORT}", f"{REST_PORT}:{REST_PORT}"]
    (volume,) = service["volumes"]
    assert volume["target"] == MOUNT and volume["read_only"] is True
    assert volume["source"].endswith("runs/serving}")  # the default serving dir, relative to serving/deploy/
    _check_config_path(_config_flag(service["command"]), volume["target"], serving_dir)


def test_kubernetes_manifest(serving_dir):
    docs = {doc["kind"]: doc for doc in _load_yaml("kubernetes.yaml")}
    assert set(docs) == {"PersistentVolumeClaim", "Deployment", "Service"}
    assert all(doc["apiVersion"] in ("v1", "apps/v1") for doc in docs.values())
    pod = docs["Deployment"]["spec"]["template"]
    assert docs["Deployment"]["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    assert container["image"] == TF_SERVING_IMAGE
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"grpc": GRPC_PORT, "http": REST_PORT}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    probe = container["readinessProbe"]["httpGet"]
    assert probe["port"] == "http" and probe["path"] == f"/v1/models/{config_lib.presets()['denoise'].model_name}"
    (mount,) = container["volumeMounts"]
    (volume,) = pod["spec"]["volumes"]
    assert mount["name"] == volume["name"] and mount["mountPath"] == MOUNT and mount["readOnly"] is True
    assert volume["persistentVolumeClaim"]["claimName"] == docs["PersistentVolumeClaim"]["metadata"]["name"]
    _check_config_path(_config_flag(container["args"]), mount["mountPath"], serving_dir)

    service = docs["Service"]["spec"]
    assert service["selector"] == docs["Deployment"]["spec"]["selector"]["matchLabels"]
    assert {p["port"]: p["targetPort"] for p in service["ports"]} == {GRPC_PORT: "grpc", REST_PORT: "http"}

    (loader,) = _load_yaml("kubernetes-loader.yaml")
    (loader_volume,) = loader["spec"]["volumes"]
    assert loader_volume["persistentVolumeClaim"]["claimName"] == volume["persistentVolumeClaim"]["claimName"]
    assert loader["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] == MOUNT


def test_images_are_pinned():
    for name in ("docker-compose.yml", "kubernetes.yaml", "kubernetes-loader.yaml"):
        with open(os.path.join(DEPLOY, name)) as f:
            images = [line.split("image:", 1)[1].strip() for line in f if line.strip().startswith("image:")]
        assert images, name
        for image in images:
            repository, _, tag = image.rpartition(":")
            assert repository and tag and tag != "latest", f"{name}: image {image} is not pinned to a version"
