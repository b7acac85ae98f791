"""CelebAExampleGen: aligned CelebA faces, face-centred to 64x64 PNG tf.Examples in `train`/`eval`/`test`."""
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.artifact import Artifact
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.celeba_example_gen import executor, face_centering, sources


class ExampleRejects(Artifact):
    """The inputs an ExampleGen could not turn into examples: `rejects.jsonl` with one JSON object per image.

    Each line holds `image_id`, `split` (null when the image has no partition entry), `reason`
    and `detail`. Custom properties: `num_rejects`, `num_input_images`, `reject_fraction`,
    `max_reject_fraction` and `reject_counts` (JSON, see executor.reject_summary).
    """

    TYPE_NAME = "genpipe.ExampleRejects"  # namespace.Name: the schema title Kubeflow V2 requires


class CelebAExampleGenSpec(types.ComponentSpec):
    """Where CelebA is, how to crop it, how much to keep and how many rejects to tolerate."""

    PARAMETERS = {
        executor.DATA_DIR_KEY: ExecutionParameter(type=str),
        executor.CROP_KEY: ExecutionParameter(type=str, optional=True),
        executor.MAX_EXAMPLES_PER_SPLIT_KEY: ExecutionParameter(type=int, optional=True),
        executor.MAX_REJECT_FRACTION_KEY: ExecutionParameter(type=float, optional=True),
        executor.INPUT_FINGERPRINT_KEY: ExecutionParameter(type=str, optional=True),
        executor.SOURCE_KEY: ExecutionParameter(type=str, optional=True),
        executor.DOWNLOAD_KEY: ExecutionParameter(type=(bool, int), optional=True),
    }
    INPUTS = {}
    OUTPUTS = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.REJECTS_KEY: ChannelParameter(type=ExampleRejects),
    }


class CelebAExampleGen(base_beam_component.BaseBeamComponent):
    """An ExampleGen for CelebA whose output the stock StatisticsGen, SchemaGen and Transform read.

    Writes `{examples.uri}/Split-{train,eval,test}/data_tfrecord-*.gz` with features `image`
    (PNG 64x64x3), `image_id` (the file name, or the TFDS id), `landmarks` (float [10], output
    pixels) and `attributes` (int64 [40] of 0/1, when the source has them), and
    `{rejects.uri}/rejects.jsonl` with every image that did not become an example and why.
    See `sources` for the input layouts and `face_centering` for the crops.
    """

    SPEC_CLASS = CelebAExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        data_dir: str,
        crop: str = face_centering.FACE_CROP,
        max_examples_per_split: int = 0,
        max_reject_fraction: float = sources.DEFAULT_MAX_REJECT_FRACTION,
        input_fingerprint: str = "",
        source: str = sources.AUTO_SOURCE,
        download: bool = False,
        examples: Optional[types.Channel] = None,
        rejects: Optional[types.Channel] = None,
    ):
        """Configures the component; see the class docstring for what it writes.

        Args:
          data_dir: the folder with the CelebA files (see `sources`), or the TFDS data dir
            holding a prepared `celeb_a`; local or any tf.io.gfile path (gs://...).
          crop: `face` (centred and scaled by the landmarks) or `center` (the course's 128x128 crop).
          max_examples_per_split: consider the first N images of each split; 0 keeps all.
          max_reject_fraction: fail the run when more than this fraction of the input is rejected.
          input_fingerprint: `sources.input_fingerprint(data_dir, source, crop)`, so a change of
            the input files invalidates the cached run. The executor records it on the Examples
            (the domain classifier's data key); when empty (a compiled pipeline, whose data_dir is
            a runtime parameter) the executor computes it from the files it read.
          source: `auto`, `files` or `tfds`.
          download: let TFDS download and prepare `celeb_a` when nothing is in data_dir.
          examples: optional output channel.
          rejects: optional output channel.
        """
        if isinstance(data_dir, str):
            sources.check_data_dir(data_dir)
        if isinstance(crop, str):
            face_centering.check_crop(crop)
        if isinstance(source, str):
            sources.check_source(source)
        if isinstance(max_examples_per_split, int):
            sources.check_max_examples_per_split(max_examples_per_split)
        if isinstance(max_reject_fraction, (int, float)):
            sources.check_max_reject_fraction(max_reject_fraction)
            max_reject_fraction = float(max_reject_fraction)
        spec = CelebAExampleGenSpec(
            data_dir=data_dir,
            crop=crop,
            max_examples_per_split=max_examples_per_split,
            max_reject_fraction=max_reject_fraction,
            input_fingerprint=input_fingerprint,
            source=source,
            download=download,
            examples=examples or types.Channel(type=standard_artifacts.Examples),
            rejects=rejects or types.Channel(type=ExampleRejects),
        )
        super().__init__(spec=spec)
