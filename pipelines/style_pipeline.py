"""The fast style-transfer pipeline.

    genpipe run style --style-image B.jpg --data-dir CONTENT_DIR [--vgg-weights PATH]
"""
from tfx import v1 as tfx

from pipelines import common
from pipelines.config import RunConfig
from trainer_modules import style_transfer

RUN_FN = "trainer_modules.style_transfer.run_fn"


def style_options(config: RunConfig) -> dict:
    """What the Trainer and the evaluator both need to know about the style and its losses."""
    return {
        style_transfer.STYLE_IMAGE: config.style_image,
        style_transfer.VGG_WEIGHTS: config.vgg_weights,
        # The style image's bytes are part of the cache key: a changed file at the same path retrains.
        # Compiled for Kubeflow / Vertex the image (fixed at compile time, a URI) is not read here.
        "style_image_sha256": "" if config.remote else style_transfer.file_digest(config.style_image),
        **{k: v for k, v in config.model_options.items()
           if k in (style_transfer.CONTENT_WEIGHT, style_transfer.STYLE_WEIGHT, style_transfer.TV_WEIGHT)},
    }


def create_pipeline(config: RunConfig) -> tfx.dsl.Pipeline:
    """Image folder -> StatisticsGen -> SchemaGen -> Transform -> Trainer (Johnson net) -> evaluator -> Pusher."""
    from components.generative_evaluator import GenerativeEvaluator

    options = style_options(config)
    data = common.data_components(config, value_range="unit")
    trainer_component = common.trainer(config, data, RUN_FN, **options)
    model_resolver = common.latest_blessed_model_resolver()
    evaluator = GenerativeEvaluator(
        examples=data.transform.outputs["transformed_examples"],
        transform_graph=data.transform.outputs["transform_graph"],
        model=trainer_component.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        family=config.family,
        variant=config.variant,
        blessing_config={"thresholds": config.thresholds, "baseline": config.baseline_comparison},
        style_config={**options, "eval_images": config.eval_images, "gatys_steps": config.gatys_steps},
    )
    push = common.pusher(config, trainer_component.outputs["model"], evaluator.outputs["blessing"])
    return common.pipeline(config, data.as_list() + [trainer_component, model_resolver, evaluator, push])
