"""The autoencoder family's pipeline (plain autoencoders and the denoiser).

    genpipe run denoise
    genpipe run autoencoder --variant dense|deep|conv
"""
from tfx import v1 as tfx

from components.generative_evaluator import GenerativeEvaluator
from pipelines import common
from pipelines.config import RunConfig
from trainer_modules.autoencoder import VARIANT

RUN_FN = "trainer_modules.autoencoder.run_fn"


def create_pipeline(config: RunConfig) -> tfx.dsl.Pipeline:
    """ExampleGen -> statistics -> schema -> Transform -> Trainer -> GenerativeEvaluator -> Pusher."""
    data = common.data_components(config, value_range="unit", noise_factor=config.noise_factor)
    trainer = common.trainer(config, data, RUN_FN, **{VARIANT: config.variant})
    model_resolver = common.latest_blessed_model_resolver()
    evaluator = GenerativeEvaluator(
        examples=data.transform.outputs["transformed_examples"],
        transform_graph=data.transform.outputs["transform_graph"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        family=config.family,
        variant=config.variant,
        blessing_config={"thresholds": config.thresholds, "baseline": config.baseline_comparison},
    )
    pusher = common.pusher(config, trainer.outputs["model"], evaluator.outputs["blessing"])
    return common.pipeline(config, data.as_list() + [trainer, model_resolver, evaluator, pusher])
