"""The stock Pusher's executor, which does not push a model that TF Serving already serves as its newest version.

A rerun whose Trainer comes from the cache still re-runs the GenerativeEvaluator (its baseline,
the latest blessed model, is now this very model) and so the Pusher, which would copy the same
model into a new version every time: a nightly `genpipe run` on unchanged data would add a
version per night. When the newest version under the push destination holds the same files
(saved_model.pb, the variables index with its per-tensor checksums, and the SavedModel
fingerprint), this executor records that version as the push (`pushed` 1, its destination and
version, `already_serving` 1) instead of copying. A model that differs from the newest version,
even one equal to an older version (a rollback), is pushed as the stock Pusher does.
"""
import logging
import os
from typing import Any, Dict, List, Optional

from tfx import types
from tfx.components.pusher import executor as stock_pusher
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

ALREADY_SERVING = "already_serving"
# The files that identify a SavedModel's graph and weights (variables.index holds each tensor's checksum).
IDENTITY_FILES = ("saved_model.pb", os.path.join("variables", "variables.index"), "fingerprint.pb")


def newest_version(base_directory: str) -> Optional[str]:
    """The highest numeric version under base_directory that holds a saved_model.pb, or None."""
    if not fileio.isdir(base_directory):
        return None
    versions = [name.rstrip("/") for name in fileio.listdir(base_directory)]
    complete = [v for v in versions if v.isdigit()
                and fileio.exists(os.path.join(base_directory, v, "saved_model.pb"))]
    return max(complete, key=int) if complete else None


def same_model(model_path: str, version_path: str) -> bool:
    """Whether two SavedModel directories hold the same graph and weights (compared file by file)."""
    compared = 0
    for name in IDENTITY_FILES:
        left, right = os.path.join(model_path, name), os.path.join(version_path, name)
        if fileio.exists(left) != fileio.exists(right):
            return False
        if fileio.exists(left):
            if io_utils.read_bytes_file(left) != io_utils.read_bytes_file(right):
                return False
            compared += 1
    return compared > 0


class Executor(stock_pusher.Executor):
    """Pushes like the stock Pusher, unless the newest served version is already this model."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        if destination.WhichOneof("destination") == "filesystem" and self.CheckBlessing(input_dict):
            base = destination.filesystem.base_directory
            version = newest_version(base)
            model_path = self.GetModelPath(input_dict)
            if version is not None and same_model(model_path, os.path.join(base, version)):
                self._log_startup(input_dict, output_dict, exec_properties)
                model_push = artifact_utils.get_single_instance(
                    output_dict[standard_component_specs.PUSHED_MODEL_KEY])
                io_utils.copy_dir(model_path, model_push.uri)  # archived, as the stock Pusher does
                self._MarkPushed(model_push, pushed_destination=os.path.join(base, version), pushed_version=version)
                model_push.set_int_custom_property(ALREADY_SERVING, 1)
                logging.info("Pusher: %s already serves this model as version %s; not pushed again", base, version)
                return
        super().Do(input_dict, output_dict, exec_properties)
