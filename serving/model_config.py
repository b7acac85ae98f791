"""TF Serving's model config file (`--model_config_file`) for a serving dir of pushed models.

The Pusher writes `<serving_dir>/<model_name>/<version>/saved_model.pb`; TF Serving serves every
model listed in a ModelServerConfig text proto, one `config { ... }` per model, and polls each
model's base path for new numeric version folders. This module finds the models of a serving dir
and writes that file (by default `<serving_dir>/models.config`), with base paths either absolute
on this machine or rewritten under a prefix (`/models` when the serving dir is mounted there in
the container, as in serving/deploy/). A serving dir or output in a bucket (gs://..., where compiled
pipelines push) is read and written through tf.io.gfile (components/files.py).
"""
import dataclasses
import logging
import os
import posixpath
from typing import Dict, List, Optional

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2
from tensorflow_serving.config import file_system_storage_path_source_pb2

from components import files

CONFIG_FILE = "models.config"
MODEL_PLATFORM = "tensorflow"
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
VERSIONS_HELP = ("latest (newest version, default), latest:K (newest K), all, or version numbers "
                 "V[,V...] (each model serves those of them it has, and must have at least one)")
EXPECTED_LAYOUT = "<serving dir>/<model name>/<numeric version>/saved_model.pb"

_log = logging.getLogger(__name__)
_Policy = file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy


@dataclasses.dataclass
class ServingDirScan:
    """What a serving dir holds: model name -> sorted versions, and the folders skipped (with why)."""

    serving_dir: str
    models: Dict[str, List[int]]
    skipped: List[str]


def scan_serving_dir(serving_dir: str) -> ServingDirScan:
    """Finds `<model>/<numeric version>/saved_model.pb` under `serving_dir`.

    Numeric version folders without a saved_model.pb (an unfinished push, a stray folder) are
    skipped with a warning; non-numeric folders are ignored, as TF Serving ignores them.
    """
    if not files.isdir(serving_dir):
        reason = files.unreadable_reason(serving_dir)
        if reason:
            raise ValueError(f"serving dir {serving_dir} cannot be read: {reason} (for gs://: gcloud auth "
                             "application-default login, or GOOGLE_APPLICATION_CREDENTIALS=key.json)")
        raise FileNotFoundError(f"serving dir {serving_dir} does not exist (expected {EXPECTED_LAYOUT})")
    models, skipped = {}, []
    for model in sorted(files.listdir(serving_dir)):
        model_dir = os.path.join(serving_dir, model)
        if not files.isdir(model_dir):
            continue
        versions = []
        for version in sorted(files.listdir(model_dir)):
            version_dir = os.path.join(model_dir, version)
            if not version.isdigit() or not files.isdir(version_dir):
                continue
            if any(files.isfile(os.path.join(version_dir, name)) for name in SAVED_MODEL_FILES):
                versions.append(int(version))
            else:
                message = f"skipped {version_dir}: a version folder without saved_model.pb"
                _log.warning(message)
                skipped.append(message)
        if versions:
            models[model] = sorted(versions)
    if not models:
        raise ValueError(f"no models found in serving dir {serving_dir}: expected {EXPECTED_LAYOUT} "
                         "(run a pipeline so its Pusher writes there, or pass --serving-dir)")
    return ServingDirScan(files.local_or_uri(serving_dir), models, skipped)


def version_policy(versions: str, model: str = "", available: Optional[List[int]] = None) -> _Policy:
    """The ServableVersionPolicy of a --versions value (see VERSIONS_HELP)."""
    policy = _Policy()
    text = str(versions).strip()
    if text == "latest":
        policy.latest.num_versions = 1
    elif text.startswith("latest:"):
        count = text.split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"--versions {text}: latest:K needs a whole number K >= 1")
        policy.latest.num_versions = int(count)
    elif text == "all":
        policy.all.SetInParent()
    else:
        parts = [part.strip() for part in text.split(",")]
        if not parts or not all(part.isdigit() for part in parts):
            raise ValueError(f"--versions {text!r} is not one of: {VERSIONS_HELP}")
        wanted = sorted({int(part) for part in parts})
        if available is not None:
            wanted = [v for v in wanted if v in available]
            if not wanted:
                raise ValueError(f"--versions {text}: model {model} has none of these versions "
                                 f"(it has {available})")
        policy.specific.versions.extend(wanted)
    return policy


def base_path(scan: ServingDirScan, model: str, base_path_prefix: Optional[str] = None) -> str:
    """Where TF Serving finds `model`: under the scanned dir (absolute, or its URL), or `<prefix>/<model>`."""
    if base_path_prefix:
        return posixpath.join(base_path_prefix.rstrip("/") or "/", model)
    return os.path.join(scan.serving_dir, model)


def build_model_server_config(scan: ServingDirScan, versions: str = "latest",
                              base_path_prefix: Optional[str] = None) -> model_server_config_pb2.ModelServerConfig:
    """One `config { name base_path model_platform model_version_policy }` per model of the scan."""
    version_policy(versions)  # a bad value fails before any model is looked at
    config = model_server_config_pb2.ModelServerConfig()
    for model, available in scan.models.items():
        entry = config.model_config_list.config.add()
        entry.name = model
        entry.base_path = base_path(scan, model, base_path_prefix)
        entry.model_platform = MODEL_PLATFORM
        entry.model_version_policy.CopyFrom(version_policy(versions, model, available))
    return config


def to_text(config: model_server_config_pb2.ModelServerConfig, header: str = "") -> str:
    lines = "".join(f"# {line}\n" for line in header.splitlines())
    return lines + text_format.MessageToString(config)


def write_model_server_config(serving_dir: str, output: Optional[str] = None, versions: str = "latest",
                              base_path_prefix: Optional[str] = None):
    """Scans `serving_dir` and writes the config (default `<serving_dir>/models.config`).

    Returns (path written, ModelServerConfig, ServingDirScan).
    """
    scan = scan_serving_dir(serving_dir)
    config = build_model_server_config(scan, versions, base_path_prefix)
    path = files.local_or_uri(output or os.path.join(serving_dir, CONFIG_FILE))
    where = "as scanned" if files.is_remote(scan.serving_dir) else "absolute on this machine"
    header = (f"TF Serving model config (--model_config_file) written by `genpipe serving-config` for "
              f"{scan.serving_dir}\nversions: {versions}; base paths "
              f"{'under ' + base_path_prefix if base_path_prefix else where}")
    files.write_text_whole(path, to_text(config, header))
    return path, config, scan


def read_model_server_config(path: str) -> model_server_config_pb2.ModelServerConfig:
    """Parses a model config text file back (what TF Serving does with --model_config_file)."""
    text = files.read_bytes(path).decode("utf-8")
    try:
        return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as error:
        raise ValueError(f"{path} is not a ModelServerConfig text proto: {error}") from error
