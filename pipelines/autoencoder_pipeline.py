"""The autoencoder family's pipeline (plain autoencoders and the denoiser).

    genpipe run denoise
    genpipe run autoencoder --variant dense|deep|conv
"""
from tfx import v1 as tfx

import serving
import trainer_modules
from components.generative_evaluator import GenerativeEvaluator
from components.mnist_example_gen import MnistExampleGen
from components.mnist_example_gen.sources import input_fingerprint
from pipelines.config import RunConfig, code_fingerprint
from trainer_modules import preprocessing, training
from trainer_modules.autoencoder import VARIANT

PREPROCESSING_FN = "trainer_modules.preprocessing.preprocessing_fn"
RUN_FN = "trainer_modules.autoencoder.run_fn"


def create_pipeline(config: RunConfig) -> tfx.dsl.Pipeline:
    """ExampleGen -> statistics -> schema -> Transform -> Trainer -> GenerativeEvaluator -> Pusher."""
    fingerprint = code_fingerprint(trainer_modules, serving)

    example_gen = MnistExampleGen(
        dataset=config.dataset,
        data_dir=config.data_dir,
        max_examples_per_split=config.max_examples_per_split,
        input_fingerprint=input_fingerprint(config.dataset, config.data_dir),
    )
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config={
            preprocessing.NOISE_FACTOR: config.noise_factor,
            preprocessing.SEED: config.seed,
            preprocessing.VALUE_RANGE: "unit",
            training.CODE_FINGERPRINT: fingerprint,
        },
    )
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(num_steps=config.train_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=config.eval_steps),
        custom_config={
            VARIANT: config.variant,
            training.BATCH_SIZE: config.batch_size,
            training.LEARNING_RATE: config.learning_rate,
            training.SEED: config.seed,
            training.STRATEGY: config.strategy,
            training.MIXED_PRECISION: config.mixed_precision,
            training.CHECKPOINT_EVERY: config.checkpoint_every,
            training.CHECKPOINT_ROOT: f"{config.pipeline_root}/checkpoints",
            training.CODE_FINGERPRINT: fingerprint,
        },
    )
    model_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    evaluator = GenerativeEvaluator(
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        family=config.family,
        variant=config.variant,
        blessing_config={"thresholds": config.thresholds, "baseline": config.baseline_comparison},
    )
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=f"{config.serving_dir}/{config.model_name}"
            )
        ),
    )
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, transform, trainer, model_resolver, evaluator, pusher],
        enable_cache=config.enable_cache,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path),
        beam_pipeline_args=list(config.beam_args),
    )
