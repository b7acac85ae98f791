"""ImageFolderExampleGen: every JPEG/PNG under a folder, centre-cropped to square RGB PNG tf.Examples."""
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.celeba_example_gen.component import ExampleRejects
from components.image_folder_example_gen import executor, sources


class ImageFolderExampleGenSpec(types.ComponentSpec):
    """Where the images are, how large the crops are, how to split and how many rejects to tolerate."""

    PARAMETERS = {
        executor.DATA_DIR_KEY: ExecutionParameter(type=str),
        executor.IMAGE_SIZE_KEY: ExecutionParameter(type=int, optional=True),
        executor.EVAL_FRACTION_KEY: ExecutionParameter(type=float, optional=True),
        executor.MAX_EXAMPLES_PER_SPLIT_KEY: ExecutionParameter(type=int, optional=True),
        executor.MAX_REJECT_FRACTION_KEY: ExecutionParameter(type=float, optional=True),
        executor.INPUT_FINGERPRINT_KEY: ExecutionParameter(type=str, optional=True),
        executor.SEED_KEY: ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {}
    OUTPUTS = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.REJECTS_KEY: ChannelParameter(type=ExampleRejects),
    }


class ImageFolderExampleGen(base_beam_component.BaseBeamComponent):
    """An ExampleGen for a folder of photos whose output the stock StatisticsGen, SchemaGen and Transform read.

    Writes `{examples.uri}/Split-{train,eval}/data_tfrecord-*.gz` with features `image` (PNG,
    image_size x image_size x 3), `image_id` (the path relative to data_dir), `source_height` and
    `source_width` (int64, the upright source size), and `{rejects.uri}/rejects.jsonl` with every
    image that did not become an example and why (CelebAExampleGen's format). See `sources` for
    what counts as an image and how splits are assigned, `square_crop` for the crop.
    """

    SPEC_CLASS = ImageFolderExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        data_dir: str,
        image_size: int = sources.DEFAULT_IMAGE_SIZE,
        eval_fraction: float = sources.DEFAULT_EVAL_FRACTION,
        max_examples_per_split: int = 0,
        max_reject_fraction: float = sources.DEFAULT_MAX_REJECT_FRACTION,
        input_fingerprint: str = "",
        seed: int = 0,
        examples: Optional[types.Channel] = None,
        rejects: Optional[types.Channel] = None,
    ):
        """Configures the component; see the class docstring for what it writes.

        Args:
          data_dir: the folder of images (nested folders too); local or any tf.io.gfile path (gs://...).
          image_size: the side of the square outputs, >= 8; sources whose short side is below a
            quarter of it are rejected as too small.
          eval_fraction: the share of images (by a hash of their path) in `eval`, in (0, 1).
          max_examples_per_split: consider the first N images (by path) of each split; 0 keeps all.
          max_reject_fraction: fail the run when more than this fraction of the images is rejected.
          input_fingerprint: `sources.input_fingerprint(data_dir)`, so a change of the input files
            invalidates the cached run; not read by the executor.
          seed: part of the split hash: another seed, another split.
          examples: optional output channel.
          rejects: optional output channel.
        """
        if isinstance(data_dir, str):
            sources.check_data_dir(data_dir)
        if isinstance(image_size, (int, float)):
            sources.check_image_size(image_size)
        if isinstance(eval_fraction, (int, float)):
            sources.check_eval_fraction(eval_fraction)
            eval_fraction = float(eval_fraction)
        if isinstance(max_examples_per_split, (int, float)):
            sources.check_max_examples_per_split(max_examples_per_split)
        if isinstance(max_reject_fraction, (int, float)):
            sources.check_max_reject_fraction(max_reject_fraction)
            max_reject_fraction = float(max_reject_fraction)
        if isinstance(seed, (int, float)):
            sources.check_seed(seed)
        spec = ImageFolderExampleGenSpec(
            data_dir=data_dir,
            image_size=image_size,
            eval_fraction=eval_fraction,
            max_examples_per_split=max_examples_per_split,
            max_reject_fraction=max_reject_fraction,
            input_fingerprint=input_fingerprint,
            seed=seed,
            examples=examples or types.Channel(type=standard_artifacts.Examples),
            rejects=rejects or types.Channel(type=ExampleRejects),
        )
        super().__init__(spec=spec)
