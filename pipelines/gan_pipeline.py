"""The GAN family's pipeline.

    genpipe run gan --variant dcgan|dense [--dataset mnist|fashion_mnist|mnist-sample]
"""
from tfx import v1 as tfx

from pipelines import common
from pipelines.config import RunConfig, value_range
from trainer_modules import gan

RUN_FN = "trainer_modules.gan.run_fn"


def create_pipeline(config: RunConfig) -> tfx.dsl.Pipeline:
    """Data -> Trainer (two-phase GAN) -> DomainClassifier -> GenerativeEvaluator (samples) -> Pusher."""
    options = {gan.VARIANT: config.variant, **config.model_options}
    if config.latent_dim:
        options[gan.LATENT_DIM] = config.latent_dim
    return common.generative_pipeline(config, RUN_FN, value_range(config), **options)
