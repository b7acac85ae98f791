"""MnistExampleGen: MNIST, Fashion-MNIST or the offline mnist-sample as `train`/`eval` PNG tf.Examples."""
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.mnist_example_gen import executor, sources


class MnistExampleGenSpec(types.ComponentSpec):
    """Which dataset to read, from where, and how much of it."""

    PARAMETERS = {
        executor.DATASET_KEY: ExecutionParameter(type=str),
        executor.DATA_DIR_KEY: ExecutionParameter(type=str, optional=True),
        executor.MAX_EXAMPLES_PER_SPLIT_KEY: ExecutionParameter(type=int, optional=True),
        executor.INPUT_FINGERPRINT_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {}
    OUTPUTS = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
    }


class MnistExampleGen(base_beam_component.BaseBeamComponent):
    """An ExampleGen for MNIST-family digits whose output the stock StatisticsGen, SchemaGen and Transform read.

    Writes `{uri}/Split-{train,eval}/data_tfrecord-*.gz` with features `image` (PNG,
    28x28 grayscale) and `label` (int64); see `sources` for where the digits come from.
    """

    SPEC_CLASS = MnistExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        dataset: str = sources.DEFAULT_DATASET,
        data_dir: str = "",
        max_examples_per_split: int = 0,
        input_fingerprint: str = "",
        examples: Optional[types.Channel] = None,
    ):
        """Configures the component; see the class docstring for what it writes.

        Args:
          dataset: one of `sources.KNOWN_DATASETS`.
          data_dir: a folder with the four IDX files (`.gz` or not), or a TFDS data dir;
            empty for mnist-sample.
          max_examples_per_split: keep the first N examples of each split; 0 keeps all.
          input_fingerprint: `sources.input_fingerprint(dataset, data_dir)`, so a change
            of the input files invalidates the cached run. The executor records it on the
            Examples; when empty (a compiled pipeline) it computes it from the files it read.
          examples: optional output channel.
        """
        if isinstance(dataset, str):
            sources.check_dataset(dataset)
            if isinstance(data_dir, str):
                sources.check_data_dir(dataset, data_dir)
        if isinstance(max_examples_per_split, int) and max_examples_per_split < 0:
            raise ValueError(f"max_examples_per_split must be >= 0, got {max_examples_per_split}")
        spec = MnistExampleGenSpec(
            dataset=dataset,
            data_dir=data_dir,
            max_examples_per_split=max_examples_per_split,
            input_fingerprint=input_fingerprint,
            examples=examples or types.Channel(type=standard_artifacts.Examples),
        )
        super().__init__(spec=spec)
