"""GenerativeEvaluator component: wires channels and parameters to the executor."""
import json
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.generative_evaluator import executor


class GenerativeEvaluatorSpec(ComponentSpec):
    PARAMETERS = {
        "family": ExecutionParameter(type=str),
        "variant": ExecutionParameter(type=str, optional=True),
        "blessing_config": ExecutionParameter(type=str, optional=True),
        executor.MAX_EVAL_EXAMPLES_KEY: ExecutionParameter(type=int, optional=True),
        "grid_examples": ExecutionParameter(type=int, optional=True),
        "sample_config": ExecutionParameter(type=str, optional=True),
        "style_config": ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "transform_graph": ChannelParameter(type=standard_artifacts.TransformGraph),
        "model": ChannelParameter(type=standard_artifacts.Model),
        "baseline_model": ChannelParameter(type=standard_artifacts.Model, optional=True),
        "classifier": ChannelParameter(type=standard_artifacts.Model, optional=True),
    }
    OUTPUTS = {
        "evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation),
        "blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
    }


class GenerativeEvaluator(base_beam_component.BaseBeamComponent):
    """Evaluates a generative model on the transformed eval split and decides its blessing.

    `examples` are Transform's transformed examples, of which every metric and grid reads
    the first `max_eval_examples` of the eval split (0: all); `baseline_model` comes from a
    latest-blessed-model resolver and is evaluated on the same images. `blessing_config`
    is {"thresholds": {metric: {"min"|"max": value}}, "baseline": {"metric": m,
    "tolerance": t, "relative_tolerance": r}, "require_trustworthy_classifier": true}.

    Families "vae" and "gan" also need `classifier` (the DomainClassifier's model): their
    samples are scored with classifier-FD, classifier score and mode coverage as set by
    `sample_config` (see executor.SAMPLE_DEFAULTS). Family "style" stylizes held-out content
    images and scores them with the VGG19 perceptual losses as set by `style_config` (see
    style_scoring.STYLE_DEFAULTS).
    """

    SPEC_CLASS = GenerativeEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        transform_graph: types.BaseChannel,
        model: types.BaseChannel,
        family: str,
        variant: str = "",
        baseline_model: Optional[types.BaseChannel] = None,
        blessing_config: Optional[dict] = None,
        max_eval_examples: int = 0,
        grid_examples: int = 10,
        classifier: Optional[types.BaseChannel] = None,
        sample_config: Optional[dict] = None,
        style_config: Optional[dict] = None,
    ):
        if isinstance(max_eval_examples, int):
            executor.check_max_eval_examples(max_eval_examples)
        spec = GenerativeEvaluatorSpec(
            examples=examples,
            transform_graph=transform_graph,
            model=model,
            baseline_model=baseline_model,
            family=family,
            variant=variant,
            blessing_config=json.dumps(blessing_config or {}, sort_keys=True),
            max_eval_examples=max_eval_examples,
            grid_examples=grid_examples,
            classifier=classifier,
            sample_config=json.dumps(sample_config or {}, sort_keys=True),
            style_config=json.dumps(style_config or {}, sort_keys=True),
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
        )
        super().__init__(spec=spec)
