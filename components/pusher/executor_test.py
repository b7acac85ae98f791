"""The Pusher executor: pushes a blessed model once, not again while it is the newest version."""
import os
from unittest import mock

import tensorflow as tf
from tfx.components.pusher import executor as stock_pusher
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from components.pusher import executor as executor_lib


def export(directory, value):
    """A tiny SavedModel whose one variable holds `value`, under directory/Format-Serving."""
    module = tf.Module()
    module.v = tf.Variable(value)
    module.call = tf.function(lambda: module.v * 2.0, input_signature=[])
    model = standard_artifacts.Model()
    model.uri = str(directory)
    tf.saved_model.save(module, os.path.join(str(directory), "Format-Serving"))
    return model


def push(model, serving, output, blessed=True, now=1_700_000_000):
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(output) + "-blessing"
    blessing.set_int_custom_property("blessed", int(blessed))
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(output)
    destination = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(
        base_directory=str(serving)))
    with mock.patch.object(stock_pusher.time, "time", return_value=now):
        executor_lib.Executor().Do(
            {standard_component_specs.MODEL_KEY: [model], standard_component_specs.MODEL_BLESSING_KEY: [blessing]},
            {standard_component_specs.PUSHED_MODEL_KEY: [pushed]},
            {standard_component_specs.PUSH_DESTINATION_KEY: proto_utils.proto_to_json(destination)})
    return pushed


def versions(serving):
    return sorted(os.listdir(serving)) if os.path.isdir(serving) else []


def test_a_model_is_pushed_once_while_it_is_the_newest_version(tmp_path):
    serving = tmp_path / "serving" / "model"
    first_model = export(tmp_path / "m1", 1.0)
    first = push(first_model, serving, tmp_path / "p1", now=1_700_000_000)
    assert versions(serving) == ["1700000000"]
    assert first.get_int_custom_property("pushed") == 1
    assert not first.get_int_custom_property(executor_lib.ALREADY_SERVING)

    # The same model again (a rerun whose Trainer came from the cache): no new version.
    again = push(first_model, serving, tmp_path / "p2", now=1_700_000_100)
    assert versions(serving) == ["1700000000"]
    assert again.get_int_custom_property("pushed") == 1
    assert again.get_int_custom_property(executor_lib.ALREADY_SERVING) == 1
    assert again.get_string_custom_property("pushed_destination") == str(serving / "1700000000")
    assert again.get_string_custom_property("pushed_version") == "1700000000"
    assert os.path.isfile(os.path.join(again.uri, "saved_model.pb"))  # archived like a push

    # Other weights, same graph: a new version. Then the first model again (a rollback): pushed again.
    second = push(export(tmp_path / "m2", 2.0), serving, tmp_path / "p3", now=1_700_000_200)
    assert versions(serving) == ["1700000000", "1700000200"]
    assert not second.get_int_custom_property(executor_lib.ALREADY_SERVING)
    push(first_model, serving, tmp_path / "p4", now=1_700_000_300)
    assert versions(serving) == ["1700000000", "1700000200", "1700000300"]


def test_unblessed_models_are_not_pushed(tmp_path):
    serving = tmp_path / "serving"
    pushed = push(export(tmp_path / "m", 1.0), serving, tmp_path / "p", blessed=False)
    assert pushed.get_int_custom_property("pushed") == 0 and versions(serving) == []


def test_same_model_compares_graph_and_weights(tmp_path):
    a = os.path.join(export(tmp_path / "a", 1.0).uri, "Format-Serving")
    b = os.path.join(export(tmp_path / "b", 1.0).uri, "Format-Serving")
    c = os.path.join(export(tmp_path / "c", 3.0).uri, "Format-Serving")
    assert executor_lib.same_model(a, a)
    assert not executor_lib.same_model(a, c)
    assert not executor_lib.same_model(a, str(tmp_path / "missing"))
    assert executor_lib.same_model(a, b) == all(
        open(os.path.join(a, name), "rb").read() == open(os.path.join(b, name), "rb").read()
        for name in executor_lib.IDENTITY_FILES if os.path.exists(os.path.join(a, name)))
