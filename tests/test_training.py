"""Shared training plumbing: how train_steps are split into checkpoint chunks and executions."""
import glob
import os

import pytest
import tensorflow as tf

from trainer_modules import autoencoder, training
from conftest import trainer_fn_args, training_summary


@pytest.mark.parametrize(
    "train_steps, checkpoint_every, steps_per_execution, expected",
    [
        (1500, 100, 10, (15, 100, 10)),  # the presets: no padding
        (1234, 100, 10, (13, 95, 5)),  # 95-step chunks run as 19 executions of 5
        (97, 100, 10, (1, 98, 7)),  # a prime chunk: one step of padding instead of three
        (5, 2, 10, (3, 2, 2)),  # never more steps per execution than a chunk has
        (1, 100, 10, (1, 1, 1)),
        (10, 5, 1, (2, 5, 1)),  # steps_per_execution 1: chunks as they are
    ],
)
def test_chunks_are_whole_executions(train_steps, checkpoint_every, steps_per_execution, expected):
    epochs, per_epoch, execution = training.chunk_steps(train_steps, checkpoint_every, steps_per_execution)
    assert (epochs, per_epoch, execution) == expected
    assert per_epoch % execution == 0
    assert train_steps <= epochs * per_epoch < train_steps + epochs * execution


def test_collapse_settings_key_the_checkpoint_only_when_they_can_stop_the_run():
    from trainer_modules import collapse

    report_only = collapse.CollapseConfig()
    assert training.collapse_key_parts(report_only) == ()
    assert training.collapse_key_parts(collapse.CollapseConfig(min_kl=5.0)) == ()
    stopping = training.collapse_key_parts(collapse.CollapseConfig(stop_on_collapse=True))
    stricter = training.collapse_key_parts(collapse.CollapseConfig(stop_on_collapse=True, patience=5))
    keys = {training.run_key("vae", 2), training.run_key("vae", 2, *stopping), training.run_key("vae", 2, *stricter)}
    assert len(keys) == 3


@pytest.mark.parametrize("bad", [{"steps_per_execution": 0}, {"checkpoint_every": 0}, {"batch_size": 0}])
def test_bad_training_config_is_named(bad):
    (name, value), = bad.items()
    with pytest.raises(ValueError, match=f"{name} must be >= 1, got {value}"):
        training.TrainingConfig.from_custom_config(bad)


def test_fit_runs_exactly_the_planned_steps(transformed_data, tmp_path):
    # 5 steps in one chunk with at most 4 per execution: 2 executions of 3, 6 optimizer steps.
    fn_args = trainer_fn_args(transformed_data, tmp_path, "spe", train_steps=5,
                              **{autoencoder.VARIANT: "dense", training.CHECKPOINT_EVERY: 5,
                                 training.STEPS_PER_EXECUTION: 4})
    autoencoder.run_fn(fn_args)
    assert training_summary(fn_args)["train_steps"] == 6
    (index,) = glob.glob(os.path.join(fn_args.custom_config[training.CHECKPOINT_ROOT], "*", "ckpt-1.index"))
    reader = tf.train.load_checkpoint(index[: -len(".index")])
    iterations = [name for name in reader.get_variable_to_shape_map() if name.startswith("optimizer/_iterations/")]
    assert iterations, sorted(reader.get_variable_to_shape_map())
    assert reader.get_tensor(iterations[0]) == 6
