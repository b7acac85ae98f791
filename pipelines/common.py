"""Pipeline pieces every pipeline shares: data, Trainer, domain classifier, baseline resolver, Pusher.

Each family's `create_pipeline(config)` composes these, so the data contract, caching
keys and push layout stay the same across families.
"""
import dataclasses
from typing import List

from tfx import v1 as tfx

import serving
import trainer_modules
from components.mnist_example_gen import MnistExampleGen
from components.mnist_example_gen import sources as mnist_sources
from pipelines.config import CELEBA, DEFAULT_GCP_REGION, IMAGE_FOLDER, RunConfig, code_fingerprint
from trainer_modules import contract, preprocessing, training

PREPROCESSING_FN = "trainer_modules.preprocessing.preprocessing_fn"


@dataclasses.dataclass
class DataComponents:
    example_gen: object
    statistics_gen: object
    schema_gen: object
    transform: object

    def as_list(self) -> List[object]:
        return [self.example_gen, self.statistics_gen, self.schema_gen, self.transform]


def code_version() -> str:
    """Fingerprint of the trainer modules and serving conventions (a cache key for Transform/Trainer)."""
    return code_fingerprint(trainer_modules, serving)


def input_fingerprint(config: RunConfig) -> str:
    """The source files' fingerprint: a cache key of the ExampleGen and the domain classifier's data key.

    Empty when compiling for Kubeflow / Vertex: the data is not on this machine (and its location
    is a runtime parameter), so the compiled ExampleGen never reuses a cached result instead
    (pipelines/kubeflow_runner.py).
    """
    if config.remote:
        return ""
    if config.dataset == CELEBA:
        from components.celeba_example_gen import sources as celeba_sources

        return celeba_sources.input_fingerprint(config.data_dir, crop=config.crop)
    if config.dataset == IMAGE_FOLDER:
        from components.image_folder_example_gen import sources as folder_sources

        return folder_sources.input_fingerprint(config.data_dir)
    return mnist_sources.input_fingerprint(config.dataset, config.data_dir)


def image_shape(config: RunConfig):
    if config.dataset == IMAGE_FOLDER:
        return (config.image_size, config.image_size, 3)
    return contract.CELEBA_SHAPE if config.dataset == CELEBA else contract.MNIST_SHAPE


def data_dir(config: RunConfig):
    """The ExampleGen's data_dir; compiled for Kubeflow / Vertex, the `data_dir` runtime parameter."""
    if config.remote:
        from pipelines import kubeflow_runner

        return kubeflow_runner.runtime_parameter(kubeflow_runner.DATA_DIR, config.data_dir)
    return config.data_dir


def example_gen(config: RunConfig) -> object:
    """MnistExampleGen; for CelebA the face-centering CelebAExampleGen; for style, ImageFolderExampleGen.

    CelebA's ExampleGen decodes, crops and re-encodes every image, so locally it runs Beam's
    DirectRunner over all cores (config.direct_running_mode); --beam-arg options given by the
    user (another runner, other worker counts) come later on the command line and win.
    """
    if config.dataset == IMAGE_FOLDER:
        from components.image_folder_example_gen import ImageFolderExampleGen

        return _local_beam(config, ImageFolderExampleGen(
            data_dir=data_dir(config),
            image_size=config.image_size,
            max_examples_per_split=config.max_examples_per_split,
            max_reject_fraction=config.max_reject_fraction,
            input_fingerprint=input_fingerprint(config),
            seed=config.seed,
        ))
    if config.dataset != CELEBA:
        return MnistExampleGen(
            dataset=config.dataset,
            data_dir=data_dir(config),
            max_examples_per_split=config.max_examples_per_split,
            input_fingerprint=input_fingerprint(config),
        )
    from components.celeba_example_gen import CelebAExampleGen

    component = CelebAExampleGen(
        data_dir=data_dir(config),
        crop=config.crop,
        max_examples_per_split=config.max_examples_per_split,
        max_reject_fraction=config.max_reject_fraction,
        input_fingerprint=input_fingerprint(config),
        download=config.tfds_download,
    )
    return _local_beam(config, component)


def _local_beam(config: RunConfig, component):
    """The image ExampleGens decode and re-encode every image: locally they use every core."""
    if config.direct_running_mode != "in_memory":
        local = [f"--direct_running_mode={config.direct_running_mode}", "--direct_num_workers=0"]
        given = {arg.split("=")[0] for arg in config.beam_args}
        component = component.with_beam_pipeline_args([a for a in local if a.split("=")[0] not in given])
    return component


def data_components(config: RunConfig, value_range: str, noise_factor: float = 0.0) -> DataComponents:
    """ExampleGen -> StatisticsGen -> SchemaGen -> Transform (decode, scale, optional noise)."""
    example_gen_component = example_gen(config)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen_component.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    transform = tfx.components.Transform(
        examples=example_gen_component.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config={
            preprocessing.NOISE_FACTOR: noise_factor,
            preprocessing.SEED: config.seed,
            preprocessing.VALUE_RANGE: value_range,
            preprocessing.IMAGE_SHAPE: list(image_shape(config)),
            training.CODE_FINGERPRINT: code_version(),
        },
    )
    return DataComponents(example_gen_component, statistics_gen, schema_gen, transform)


def trainer(config: RunConfig, data: DataComponents, run_fn: str, **custom_config) -> object:
    """The stock Trainer running `run_fn` on the transformed examples, with the shared training knobs.

    With `config.vertex_training` it is TFX's Google Cloud Trainer: the same run_fn runs as a Vertex
    AI Training custom job on the pipeline image with the chosen GPUs or TPU; the module picks its
    tf.distribute strategy from what it finds there (trainer_modules/training.py).
    """
    component_class = tfx.components.Trainer
    if config.vertex_training:
        component_class = tfx.extensions.google_cloud_ai_platform.Trainer
        custom_config = {**custom_config, **vertex_training_config(config)}
    return component_class(
        run_fn=run_fn,
        examples=data.transform.outputs["transformed_examples"],
        transform_graph=data.transform.outputs["transform_graph"],
        schema=data.schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(num_steps=config.train_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=config.eval_steps),
        custom_config={
            training.BATCH_SIZE: config.batch_size,
            training.LEARNING_RATE: config.learning_rate,
            training.SEED: config.seed,
            training.STRATEGY: config.strategy,
            training.MIXED_PRECISION: config.mixed_precision,
            training.CHECKPOINT_EVERY: config.checkpoint_every,
            training.CHECKPOINT_ROOT: f"{config.pipeline_root}/checkpoints",
            training.CODE_FINGERPRINT: code_version(),
            **custom_config,
        },
    )


def vertex_training_config(config: RunConfig) -> dict:
    """custom_config keys of TFX's Google Cloud Trainer: a Vertex AI CustomJob on the pipeline image."""
    cloud = tfx.extensions.google_cloud_ai_platform
    return {
        cloud.ENABLE_VERTEX_KEY: True,
        cloud.VERTEX_REGION_KEY: config.gcp_region or DEFAULT_GCP_REGION,
        cloud.TRAINING_ARGS_KEY: {
            "project": config.gcp_project,
            "job_spec": {"worker_pool_specs": [{
                "machine_spec": config.vertex_machine_spec(),
                "replica_count": 1,
                "container_spec": {"image_uri": config.image},
            }]},
        },
    }


def latest_blessed_model_resolver() -> object:
    """The baseline: this pipeline's latest blessed model (empty on a first run)."""
    return tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")


def pusher(config: RunConfig, model_channel, blessing_channel) -> object:
    """Stock Pusher to `<serving_dir>/<model_name>/<version>/`, only for blessed models.

    Its executor (components/pusher) does not add a version when the newest one already is this
    model, as on a rerun with unchanged inputs.
    """
    from tfx.dsl.components.base import executor_spec

    from components.pusher import executor as pusher_executor

    return tfx.components.Pusher(
        model=model_channel,
        model_blessing=blessing_channel,
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=f"{config.serving_dir}/{config.model_name}")
        ),
        custom_executor_spec=executor_spec.ExecutorClassSpec(pusher_executor.Executor),
    )


def pipeline(config: RunConfig, components: List[object]) -> tfx.dsl.Pipeline:
    """The pipeline; locally with its SQLite ML Metadata store (Kubeflow and Vertex bring their own)."""
    metadata = None
    if not config.remote:
        metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=components,
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata,
        beam_pipeline_args=list(config.beam_args),
    )


def domain_classifier(config: RunConfig, data: DataComponents) -> List[object]:
    """[resolver, DomainClassifier]: the dataset's classifier, reused from ML Metadata when it exists.

    Compiled for Kubeflow / Vertex it is [DomainClassifier] alone: KubeflowV2DagRunner compiles
    only TFX's two stock resolver strategies, so the cross-pipeline search of
    LatestDomainClassifierStrategy cannot run there. Instead the classifier keeps a copy of
    itself under `<pipeline root>/domain_classifiers/` and later runs on the same data (by the
    ExampleGen's input fingerprint and example counts) copy it instead of training.
    """
    from components.domain_classifier import DomainClassifier
    from components.domain_classifier import model as classifier_model
    from pipelines.resolvers import LatestDomainClassifierStrategy

    classifier_config = classifier_model.ClassifierConfig(
        train_steps=config.classifier_train_steps, seed=config.classifier_seed, **classifier_task(config))
    settings = dict(
        train_steps=config.classifier_train_steps,
        min_accuracy=config.classifier_min_accuracy,
        seed=config.classifier_seed,
        dataset=config.dataset,
        **classifier_task(config),
    )
    if config.remote:  # no ML Metadata resolver: classifiers are kept by data and config under the root
        return [DomainClassifier(examples=data.example_gen.outputs["examples"],
                                 reuse_dir=f"{config.pipeline_root}/domain_classifiers", **settings)]
    previous = tfx.dsl.Resolver(
        strategy_class=LatestDomainClassifierStrategy,
        config={
            "data_fingerprint": input_fingerprint(config),
            "classifier_config": classifier_model.config_hash(classifier_config),
        },
        classifier=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
    ).with_id("domain_classifier_resolver")
    classifier = DomainClassifier(
        examples=data.example_gen.outputs["examples"], previous=previous.outputs["classifier"], **settings)
    return [previous, classifier]


def classifier_task(config: RunConfig) -> dict:
    """What the domain classifier learns: digit/clothing classes, or CelebA's 40 face attributes."""
    from components.domain_classifier import model as classifier_model

    if config.dataset == CELEBA:
        return {"task": classifier_model.ATTRIBUTES, "num_classes": len(contract.CELEBA_ATTRIBUTES),
                "image_shape": contract.CELEBA_SHAPE}
    return {"task": classifier_model.CLASSES, "num_classes": contract.MNIST_NUM_CLASSES,
            "image_shape": contract.MNIST_SHAPE}


def sample_config(config: RunConfig, value_range: str) -> dict:
    """The GenerativeEvaluator's sample-metric settings for this run.

    No seed: the samples it scores and its samples.png and interpolations.png grids are drawn from
    its own fixed seed (executor.SAMPLE_DEFAULTS), so runs trained with different --seed compare.
    """
    return {
        "num_samples": config.num_samples,
        "value_range": value_range,
        "min_classes": config.min_classes or None,
        "inception_weights": config.inception_weights,
        "attribute_names": list(contract.CELEBA_ATTRIBUTES) if config.dataset == CELEBA else None,
        "min_attribute_diversity": config.min_attribute_diversity,
    }


def generative_pipeline(config: RunConfig, run_fn: str, value_range: str, **model_options) -> tfx.dsl.Pipeline:
    """Data -> Trainer -> DomainClassifier -> GenerativeEvaluator (ELBO and/or samples) -> Pusher.

    The shape every sample-scored family (vae, gan) shares; `model_options` go to the
    Trainer's custom_config.
    """
    from components.generative_evaluator import GenerativeEvaluator

    data = data_components(config, value_range=value_range)
    trainer_component = trainer(config, data, run_fn, **model_options)
    *classifier_nodes, classifier = domain_classifier(config, data)
    model_resolver = latest_blessed_model_resolver()
    evaluator = GenerativeEvaluator(
        examples=data.transform.outputs["transformed_examples"],
        transform_graph=data.transform.outputs["transform_graph"],
        model=trainer_component.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        classifier=classifier.outputs["model"],
        family=config.family,
        variant=config.variant,
        blessing_config={"thresholds": config.thresholds, "baseline": config.baseline_comparison},
        sample_config=sample_config(config, value_range),
    )
    push = pusher(config, trainer_component.outputs["model"], evaluator.outputs["blessing"])
    return pipeline(config, data.as_list() + [trainer_component, *classifier_nodes, classifier, model_resolver,
                                              evaluator, push])
