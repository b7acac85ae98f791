"""The VAE family's pipeline.

    genpipe run vae [--latent-dim 2] [--dataset mnist|fashion_mnist|mnist-sample]
"""
from tfx import v1 as tfx

from pipelines import common
from pipelines.config import RunConfig
from trainer_modules import vae

RUN_FN = "trainer_modules.vae.run_fn"


def create_pipeline(config: RunConfig) -> tfx.dsl.Pipeline:
    """Data -> Trainer (conv VAE) -> DomainClassifier -> GenerativeEvaluator (ELBO + samples) -> Pusher."""
    options = dict(config.model_options)
    if config.latent_dim:
        options[vae.LATENT_DIM] = config.latent_dim
    return common.generative_pipeline(config, RUN_FN, "unit", **options)
