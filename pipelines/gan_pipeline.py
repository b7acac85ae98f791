"""The GAN family's pipeline.

    genpipe run gan --variant dcgan|dense [--dataset mnist|fashion_mnist|mnist-sample]
"""
from tfx import v1 as tfx

from components.generative_evaluator import GenerativeEvaluator
from pipelines import common
from pipelines.config import RunConfig, value_range
from trainer_modules import gan

RUN_FN = "trainer_modules.gan.run_fn"


def create_pipeline(config: RunConfig) -> tfx.dsl.Pipeline:
    """Data -> Trainer (two-phase GAN) -> DomainClassifier -> GenerativeEvaluator (samples) -> Pusher."""
    scale = value_range(config)
    data = common.data_components(config, value_range=scale)
    options = {gan.VARIANT: config.variant, **config.model_options}
    if config.latent_dim:
        options[gan.LATENT_DIM] = config.latent_dim
    trainer = common.trainer(config, data, RUN_FN, **options)
    resolver, classifier = common.domain_classifier(config, data)
    model_resolver = common.latest_blessed_model_resolver()
    evaluator = GenerativeEvaluator(
        examples=data.transform.outputs["transformed_examples"],
        transform_graph=data.transform.outputs["transform_graph"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        classifier=classifier.outputs["model"],
        family=config.family,
        variant=config.variant,
        blessing_config={"thresholds": config.thresholds, "baseline": config.baseline_comparison},
        sample_config=common.sample_config(config, scale),
    )
    pusher = common.pusher(config, trainer.outputs["model"], evaluator.outputs["blessing"])
    return common.pipeline(config, data.as_list() + [trainer, resolver, classifier, model_resolver, evaluator, pusher])
