"""Compiles the pipelines for Kubeflow Pipelines and Vertex AI Pipelines (KubeflowV2DagRunner).

`genpipe compile PIPELINE --image IMAGE --pipeline-root URI --output FILE` builds the same
pipeline object `genpipe run` runs (same presets, same flags), turns the values users change
between runs into runtime parameters, and writes the PipelineJob JSON that `genpipe submit`,
the Vertex AI console and the KFP UI take.

Runtime parameters. TFX compiles a RuntimeParameter only as a whole top-level execution
property, so the compiled pipeline carries:

| parameter          | what it holds                                              |
|--------------------|------------------------------------------------------------|
| `data_dir`         | the ExampleGen's data location (gs://... or a path in the image) |
| `train_args`       | the Trainer's TrainArgs as JSON, `{"num_steps": N}`        |
| `transform_config` | Transform's custom_config as JSON (noise_factor, seed, ...) |
| `trainer_config`   | the Trainer's custom_config as JSON (batch_size, learning_rate, ...) |
| `style_config`     | the style evaluator's settings as JSON (vgg_weights, eval_images, gatys_steps) |

`parameter_values` turns friendly assignments into those values, starting from the compiled
defaults: `train_steps=2000` sets `train_args.num_steps`, `noise_factor=0.3` sets
`transform_config.noise_factor` (denoising pipeline only: no other reads noise); `PARAM.KEY=VALUE`
sets any key of a JSON parameter and `PARAM=VALUE` a whole parameter. `check_values` then refuses,
before any request, what the pipeline would refuse locally or ignore: JSON parameters that are not
JSON objects, steps, batch sizes, rates and noise out of range, a data_dir for the embedded
mnist-sample (which reads none) and a missing one for MNIST, Fashion-MNIST, CelebA and the style
pipeline's content images (the image holds none of them).

Fixed at compile time: the style image. It names the pipeline and the model it pushes, and TFX
cannot make a pipeline name or a push destination a runtime parameter, so a run may not change it:
one compiled pipeline per style (`genpipe compile style --style-image URI`).

What differs from a local run: KubeflowV2DagRunner compiles only TFX's stock resolver
strategies, so the domain classifier is found in a folder under the pipeline root instead of in
ML Metadata (pipelines/common.py), and the ExampleGen task is never served from the cache,
because the files behind `data_dir` may change between runs and are not read at compile time
(the ExampleGen fingerprints them when it runs). A run under another pipeline root
(`genpipe submit --pipeline-root`) moves what was compiled under the old one: the Trainer's
checkpoints (`relocated`), the serving dir and the domain classifiers' folder (`relocated_job`).
"""
import copy
import dataclasses
import json
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from components import files
from components.mnist_example_gen.sources import MNIST_SAMPLE
from pipelines import config as config_lib

DATA_DIR = "data_dir"
TRAIN_ARGS = "train_args"
TRANSFORM_CONFIG = "transform_config"
TRAINER_CONFIG = "trainer_config"
STYLE_CONFIG = "style_config"
JSON_PARAMETERS = (TRAIN_ARGS, TRANSFORM_CONFIG, TRAINER_CONFIG, STYLE_CONFIG)
# Keys of the JSON parameters (tests/test_compile.py checks them against the trainer_modules constants).
NUM_STEPS = "num_steps"  # TrainArgs.num_steps
NOISE_FACTOR = "noise_factor"  # trainer_modules.preprocessing.NOISE_FACTOR
BATCH_SIZE = "batch_size"  # trainer_modules.training.BATCH_SIZE
LEARNING_RATE = "learning_rate"  # trainer_modules.training.LEARNING_RATE
CHECKPOINT_EVERY = "checkpoint_every"  # trainer_modules.training.CHECKPOINT_EVERY
CHECKPOINT_ROOT = "checkpoint_root"  # trainer_modules.training.CHECKPOINT_ROOT
VARIANT = "variant"  # trainer_modules.autoencoder.VARIANT
STYLE_IMAGE = "style_image"  # trainer_modules.style_transfer.STYLE_IMAGE
VGG_WEIGHTS = "vgg_weights"  # trainer_modules.style_transfer.VGG_WEIGHTS
# The Trainer variants that read the noisy images Transform makes: the denoise pipeline's.
NOISY_VARIANTS = config_lib.VARIANTS["denoise"]

# Friendly names -> (JSON parameter, key) pairs they set.
ALIASES: Dict[str, Tuple[Tuple[str, str], ...]] = {
    "train_steps": ((TRAIN_ARGS, NUM_STEPS),),
    "noise_factor": ((TRANSFORM_CONFIG, NOISE_FACTOR),),
    "batch_size": ((TRAINER_CONFIG, BATCH_SIZE),),
    "learning_rate": ((TRAINER_CONFIG, LEARNING_RATE),),
    "vgg_weights": ((TRAINER_CONFIG, VGG_WEIGHTS), (STYLE_CONFIG, VGG_WEIGHTS)),
}
# (parameter, key) -> (check, what it expects), as RunConfig.validate checks the flags of a local run.
VALUE_CHECKS = {
    (TRAIN_ARGS, NUM_STEPS): (lambda v: _is_int(v) and v >= 1, "a whole number >= 1"),
    (TRAINER_CONFIG, BATCH_SIZE): (lambda v: _is_int(v) and v >= 1, "a whole number >= 1"),
    (TRAINER_CONFIG, LEARNING_RATE): (lambda v: _is_number(v) and v > 0, "a number > 0"),
    (TRAINER_CONFIG, CHECKPOINT_EVERY): (lambda v: _is_int(v) and v >= 1, "a whole number >= 1"),
    (TRANSFORM_CONFIG, NOISE_FACTOR): (lambda v: _is_number(v) and 0 <= v <= config_lib.MAX_NOISE_FACTOR,
                                       f"a number between 0 and {config_lib.MAX_NOISE_FACTOR:g}"),
}
# ExampleGen tasks (component ids, their class names) that read nothing without a data_dir -> what it holds.
DATA_DIR_REQUIRED = {
    "CelebAExampleGen": "a folder with img_align_celeba/ and the list_*.txt files, or a TFDS data dir with a "
                        "prepared celeb_a",
    "ImageFolderExampleGen": "the folder of content images (JPEG/PNG)",
}
# Task inputs compiled as locations, moved with the pipeline root when under it (`relocated_job`):
# task -> (input parameter, keys of the location inside its JSON value; () for the value itself).
ROOT_LOCATIONS = {
    "Pusher": ("push_destination", ("filesystem", "base_directory")),
    "DomainClassifier": ("reuse_dir", ()),
}
_DESCRIPTIONS = {
    DATA_DIR: "the ExampleGen's input folder (gs://... or a path inside the image; empty: the dataset's default)",
    TRAIN_ARGS: 'Trainer TrainArgs as JSON, e.g. {"num_steps": 2000}',
    TRANSFORM_CONFIG: "Transform custom_config as JSON (noise_factor, seed, value_range, image_shape)",
    TRAINER_CONFIG: "Trainer custom_config as JSON (batch_size, learning_rate, ...)",
    STYLE_CONFIG: "the style evaluator's settings as JSON (vgg_weights, eval_images, gatys_steps)",
}


@dataclasses.dataclass
class CompiledPipeline:
    path: str
    job: dict

    @property
    def tasks(self) -> List[str]:
        return list(self.job["pipelineSpec"]["root"]["dag"]["tasks"])


def runtime_parameter(name: str, default: str):
    """A str RuntimeParameter with this module's description of `name`."""
    from tfx import v1 as tfx

    return tfx.dsl.experimental.RuntimeParameter(name=name, ptype=str, default=default,
                                                 description=_DESCRIPTIONS[name])


def parameterize(pipeline) -> Dict[str, str]:
    """Turns the run-to-run settings of the pipeline's components into runtime parameters.

    Returns name -> default. The defaults are the values the pipeline was built with, so a
    run that sets nothing runs the preset.
    """
    from tfx import v1 as tfx

    defaults: Dict[str, str] = {}

    def attach(component, key: str, name: str, value: str):
        if name in defaults:
            raise ValueError(f"two components of {pipeline.pipeline_info.pipeline_name} would share the runtime "
                             f"parameter {name!r}")
        component.exec_properties[key] = runtime_parameter(name, value)
        defaults[name] = value

    for component in pipeline.components:
        properties = component.exec_properties
        if isinstance(component, tfx.components.Trainer):
            attach(component, "train_args", TRAIN_ARGS, _json_text(properties["train_args"]))
            attach(component, "custom_config", TRAINER_CONFIG, _json_text(properties["custom_config"]))
        elif isinstance(component, tfx.components.Transform):
            attach(component, "custom_config", TRANSFORM_CONFIG, _json_text(properties["custom_config"]))
        elif isinstance(properties.get(DATA_DIR), tfx.dsl.experimental.RuntimeParameter):
            # Made a parameter when the ExampleGen was built (pipelines/common.py): its
            # constructor checks a plain folder name at once, and compiling reads no data.
            defaults[DATA_DIR] = properties[DATA_DIR].default or ""
        elif component.id == "GenerativeEvaluator" and json.loads(properties.get("style_config") or "null"):
            attach(component, "style_config", STYLE_CONFIG, _json_text(properties["style_config"]))
    return defaults


def _json_text(value) -> str:
    """A JSON execution property (a proto message or its JSON text) as compact, key-sorted JSON."""
    from tfx.utils import proto_utils

    text = value if isinstance(value, str) else proto_utils.proto_to_json(value)
    return json.dumps(json.loads(text), sort_keys=True)


def compile_pipeline(config, create_pipeline: Callable, image: str, output: str,
                     display_name: str = "") -> CompiledPipeline:
    """Builds `create_pipeline(config)`, compiles it for Kubeflow V2 / Vertex and writes `output` (JSON or YAML)."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kv2

    if not image:
        raise ValueError("genpipe compile needs --image IMAGE: the pipeline image built from pipelines/Dockerfile")
    if not output.endswith((".json", ".yaml", ".yml")):
        raise ValueError(f"--output {output}: expected a .json or .yaml file name")
    pipeline = create_pipeline(config)
    defaults = parameterize(pipeline)
    runner = kv2.KubeflowV2DagRunner(config=kv2.KubeflowV2DagRunnerConfig(
        display_name=display_name or None, default_image=image, use_pipeline_spec_2_1=True))
    # The defaults go into the job's runtimeConfig (Vertex) and, since TFX leaves them out of the
    # spec, into the root's input definitions (a KFP run reads only the spec).
    job = runner.run(pipeline, parameter_values=defaults, write_out=False)
    for name, definition in job["pipelineSpec"]["root"].get("inputDefinitions", {}).get("parameters", {}).items():
        if name in defaults:
            definition.update(defaultValue=defaults[name], isOptional=True, description=_DESCRIPTIONS[name])
    for name, task in job["pipelineSpec"]["root"]["dag"]["tasks"].items():
        if name.endswith("ExampleGen"):  # its input files are not fingerprinted at compile time
            task.pop("cachingOptions", None)
    # The PipelineSpec proto is the contract of both KFP and Vertex: fail here, not at submission.
    json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    _write(output, job)
    return CompiledPipeline(path=output, job=job)


def _write(path: str, job: dict) -> None:
    """Writes the whole file or nothing: a failed write leaves the previous file in place."""
    if path.endswith((".yaml", ".yml")):
        import yaml

        text = yaml.safe_dump(job, sort_keys=True)
    else:
        text = json.dumps(job, indent=2, sort_keys=True) + "\n"
    files.write_text_whole(path, text)


def load_job(path: str) -> dict:
    """A compiled pipeline file (`genpipe compile` output): the PipelineJob dict with `pipelineSpec`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no compiled pipeline there (write one with `genpipe compile`)")
    with open(path) as f:
        text = f.read()
    import yaml

    try:
        job = yaml.safe_load(text) if path.endswith((".yaml", ".yml")) else json.loads(text)
    except (ValueError, yaml.YAMLError) as error:
        raise ValueError(f"{path} is not a compiled pipeline: {error}") from error
    if not isinstance(job, dict) or "pipelineSpec" not in job:
        raise ValueError(f"{path} is not a compiled pipeline: expected a PipelineJob with a 'pipelineSpec' "
                         "(the output of `genpipe compile`)")
    return job


def runtime_parameters(job: dict) -> Dict[str, dict]:
    """name -> {"type": KFP parameter type, "default": compiled default} of a compiled pipeline."""
    definitions = job["pipelineSpec"]["root"].get("inputDefinitions", {}).get("parameters", {})
    defaults = job.get("runtimeConfig", {}).get("parameterValues", {})
    return {
        name: {"type": spec.get("parameterType", "STRING"), "default": defaults.get(name, spec.get("defaultValue"))}
        for name, spec in definitions.items()
    }


def parameter_values(job: dict, assignments: Sequence[str]) -> Dict[str, object]:
    """The runtime parameter values for `NAME=VALUE` assignments (see the module docstring).

    Returns only the parameters the assignments change, each as its whole value (JSON
    parameters start from their compiled default). Unknown names and values of the wrong
    type are errors that list what the pipeline takes.
    """
    parameters = runtime_parameters(job)
    values: Dict[str, object] = {}
    json_values: Dict[str, dict] = {}
    for assignment in assignments:
        name, sep, raw = assignment.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"--param {assignment!r}: expected NAME=VALUE")
        if name in parameters:
            values[name] = _typed(name, raw, parameters[name]["type"])
            json_values.pop(name, None)
            continue
        if name == STYLE_IMAGE and STYLE_IMAGE in _default_document(parameters, TRAINER_CONFIG):
            raise _style_image_is_compiled(f"--param {assignment}")
        if name in ALIASES:
            targets = _alias_targets(name, parameters)
            if not targets and name == "noise_factor":
                raise ValueError(f"--param {name}: {job.get('displayName', 'this pipeline')} reads no noise; only "
                                 f"the denoising pipeline does (its Trainer variant {', '.join(NOISY_VARIANTS)})")
            if not targets:
                raise ValueError(f"--param {name}: this pipeline has no {name} (it sets "
                                 f"{', '.join(p + '.' + k for p, k in ALIASES[name])})")
        elif "." in name and name.split(".", 1)[0] in parameters:
            targets = [tuple(name.split(".", 1))]
        else:
            known = sorted(parameters) + shorthands(parameters)
            raise ValueError(f"--param {name}: not a runtime parameter of {job.get('displayName', 'this pipeline')}; "
                             f"expected one of {', '.join(known)} or PARAM.KEY for a JSON parameter")
        for parameter, key in targets:
            if parameter not in json_values:
                current = values.get(parameter, parameters[parameter]["default"])
                try:
                    json_values[parameter] = json.loads(current or "{}")
                except ValueError as error:
                    raise ValueError(f"runtime parameter {parameter} is not JSON ({current!r}): {error}") from error
            document = json_values[parameter]
            document[key] = _json_value(f"{parameter}.{key}", raw, document.get(key))
            values[parameter] = json.dumps(document, sort_keys=True)
    return values


def relocated(job: dict, pipeline_root: str, assignments: Sequence[str]) -> List[str]:
    """`assignments` plus the Trainer checkpoint root under another pipeline root, when one is given.

    The checkpoint root (`<pipeline root>/checkpoints`, where a retried Trainer finds its last
    checkpoint) is compiled into trainer_config; a run with another root keeps it beside its artifacts.
    """
    compiled_root = _compiled_root(job)
    trainer = runtime_parameters(job).get(TRAINER_CONFIG)
    if not pipeline_root or not trainer or pipeline_root.rstrip("/") == compiled_root:
        return list(assignments)
    key = f"{TRAINER_CONFIG}.{CHECKPOINT_ROOT}"
    if any(a.partition("=")[0].strip() in (key, TRAINER_CONFIG) for a in assignments):
        return list(assignments)
    if json.loads(trainer["default"] or "{}").get(CHECKPOINT_ROOT) != f"{compiled_root}/checkpoints":
        return list(assignments)
    return [f"{key}={pipeline_root.rstrip('/')}/checkpoints", *assignments]


def relocated_job(job: dict, pipeline_root: Optional[str]) -> dict:
    """The job with its compiled locations under the pipeline root moved under `pipeline_root`.

    The Pusher's serving dir (`<pipeline root>/serving` unless compiled with --serving-dir) and the
    domain classifiers' folder are constants of the spec (ROOT_LOCATIONS), not runtime parameters;
    those compiled outside the compiled root stay where they are. Returns `job` itself when nothing moves.
    """
    compiled_root = _compiled_root(job)
    new_root = (pipeline_root or "").rstrip("/")
    if not new_root or not compiled_root or new_root == compiled_root:
        return job
    moved = copy.deepcopy(job)
    tasks = moved["pipelineSpec"]["root"]["dag"]["tasks"]
    for task_name, (input_name, keys) in ROOT_LOCATIONS.items():
        value = tasks.get(task_name, {}).get("inputs", {}).get("parameters", {}).get(input_name, {}).get(
            "runtimeValue")
        if not value or not isinstance(value.get("constant"), str):
            continue
        if not keys:
            value["constant"] = _moved(value["constant"], compiled_root, new_root)
            continue
        document = json.loads(value["constant"])
        holder = document
        for key in keys[:-1]:
            holder = holder.get(key) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and isinstance(holder.get(keys[-1]), str):
            holder[keys[-1]] = _moved(holder[keys[-1]], compiled_root, new_root)
            value["constant"] = json.dumps(document, indent=2)
    return moved


def _moved(location: str, compiled_root: str, new_root: str) -> str:
    if location == compiled_root or location.startswith(compiled_root + "/"):
        return new_root + location[len(compiled_root):]
    return location


def _compiled_root(job: dict) -> str:
    return job.get("runtimeConfig", {}).get("gcsOutputDirectory", "").rstrip("/")


def _alias_targets(alias: str, parameters: Dict[str, dict]) -> List[Tuple[str, str]]:
    """The (parameter, key) pairs a shorthand sets in this pipeline: keys its compiled defaults have.

    noise_factor only where the Trainer reads the noisy images (every Transform has the key).
    """
    if alias == "noise_factor" and not reads_noise(parameters):
        return []
    return [(parameter, key) for parameter, key in ALIASES[alias]
            if key in _default_document(parameters, parameter)]


def _default_document(parameters: Dict[str, dict], parameter: str) -> dict:
    """The compiled default of a JSON parameter ({} when the pipeline has none or it is not a JSON object)."""
    try:
        default = json.loads(parameters[parameter]["default"] or "{}") if parameter in parameters else {}
    except ValueError:
        return {}
    return default if isinstance(default, dict) else {}


def reads_noise(parameters: Dict[str, dict]) -> bool:
    """Whether the compiled Trainer trains on Transform's noisy images (the denoising variant)."""
    return _default_document(parameters, TRAINER_CONFIG).get(VARIANT) in NOISY_VARIANTS


def _style_image_is_compiled(given: str) -> ValueError:
    return ValueError(f"{given}: the style image is fixed when the pipeline is compiled. It names the pipeline and "
                      "the model it pushes, and neither can change per run, so each style is its own compiled "
                      "pipeline: `genpipe compile style --style-image URI ...` and submit that file")


def check_values(job: dict, values: Dict[str, object]) -> None:
    """Refuses, before any request, values the pipeline would refuse or ignore (see the module docstring).

    `values` holds every runtime parameter of the run: the compiled defaults with the assignments applied.
    """
    parameters = runtime_parameters(job)
    name = job.get("displayName") or job["pipelineSpec"]["pipelineInfo"]["name"]
    documents = {}
    for parameter in JSON_PARAMETERS:
        if parameter not in values:
            continue
        try:
            documents[parameter] = json.loads(values[parameter]) if isinstance(values[parameter], str) else None
        except ValueError:
            documents[parameter] = None
        if not isinstance(documents[parameter], dict):
            raise ValueError(f"runtime parameter {parameter}={values[parameter]!r}: expected a JSON object such as "
                             f"{parameters[parameter]['default'] if parameter in parameters else '{}'}")
    for (parameter, key), (check, expected) in VALUE_CHECKS.items():
        if key in documents.get(parameter, {}) and not check(documents[parameter][key]):
            raise ValueError(f"{_label(parameter, key)}={documents[parameter][key]!r}: expected {expected}")
    if TRANSFORM_CONFIG in documents:
        noise = documents[TRANSFORM_CONFIG].get(NOISE_FACTOR, 0)
        if reads_noise(parameters) and not noise > 0:
            raise ValueError(f"{_label(TRANSFORM_CONFIG, NOISE_FACTOR)}={noise!r}: the denoising pipeline needs a "
                             "noise factor > 0 (its Trainer learns to remove that noise)")
        compiled = _default_document(parameters, TRANSFORM_CONFIG).get(NOISE_FACTOR, 0)
        if not reads_noise(parameters) and noise != compiled:
            raise ValueError(f"{TRANSFORM_CONFIG}.{NOISE_FACTOR}={noise!r}: {name} reads no noise; only the "
                             "denoising pipeline does")
    for parameter in (TRAINER_CONFIG, STYLE_CONFIG):
        compiled = _default_document(parameters, parameter)
        if STYLE_IMAGE in compiled and documents.get(parameter, compiled).get(STYLE_IMAGE) != compiled[STYLE_IMAGE]:
            raise _style_image_is_compiled(f"{parameter}.{STYLE_IMAGE}={documents[parameter].get(STYLE_IMAGE)!r}")
    if DATA_DIR in values:
        _check_data_dir(job, name, values[DATA_DIR] or "")


def _check_data_dir(job: dict, name: str, data_dir: str) -> None:
    task_name, dataset = _example_gen(job)
    if data_dir and dataset == MNIST_SAMPLE:
        raise ValueError(f"--param {DATA_DIR}={data_dir}: {name} was compiled for the dataset {MNIST_SAMPLE}, the "
                         "5,000 digits inside the image, which reads no data_dir. To train on the files there, "
                         "compile with --dataset mnist or --dataset fashion_mnist")
    reads = data_dir_reads(job)
    if not data_dir and reads:
        raise ValueError(f"{name} has no {DATA_DIR}: its {task_name} reads {reads}. "
                         f"Give --param {DATA_DIR}=gs://BUCKET/PATH (or compile with --data-dir)")


def data_dir_reads(job: dict) -> str:
    """What the data_dir of a compiled pipeline must hold, when its ExampleGen reads nothing without one ('' when
    it needs none: mnist-sample is inside the image)."""
    task_name, dataset = _example_gen(job)
    if task_name in DATA_DIR_REQUIRED:
        return DATA_DIR_REQUIRED[task_name]
    if dataset and dataset != MNIST_SAMPLE:
        # The container's default TFDS folder is empty and the ExampleGen never downloads: without a data_dir
        # the run would stop at its first task.
        return (f"the four {dataset} IDX files (train and t10k images and labels, .gz or not) or a TFDS data dir "
                f"with a prepared {dataset}, and the image holds neither")
    return ""


def _example_gen(job: dict) -> Tuple[str, Optional[str]]:
    """(ExampleGen task name, the dataset compiled into it when it takes one) of a compiled pipeline."""
    for task_name, task in job["pipelineSpec"]["root"]["dag"]["tasks"].items():
        if task_name.endswith("ExampleGen"):
            dataset = task.get("inputs", {}).get("parameters", {}).get("dataset", {}).get("runtimeValue", {})
            return task_name, dataset.get("constant")
    return "", None


def _label(parameter: str, key: str) -> str:
    """`parameter.key`, with the shorthand that sets it: 'train_args.num_steps (train_steps)'."""
    aliases = [alias for alias, targets in ALIASES.items() if (parameter, key) in targets]
    return f"{parameter}.{key}" + (f" ({aliases[0]})" if aliases else "")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def shorthands(parameters: Dict[str, dict]) -> List[str]:
    """The ALIASES that apply to a compiled pipeline's parameters."""
    return sorted(alias for alias in ALIASES if _alias_targets(alias, parameters))


def _typed(name: str, raw: str, kfp_type: str) -> object:
    try:
        if kfp_type == "NUMBER_INTEGER":
            return int(raw)
        if kfp_type == "NUMBER_DOUBLE":
            return float(raw)
        if kfp_type == "BOOLEAN":
            return _boolean(raw)
    except ValueError as error:
        raise ValueError(f"--param {name}={raw}: expected a {kfp_type.lower().replace('_', ' ')}") from error
    return raw


def _boolean(raw: str) -> bool:
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise ValueError(raw)


def _json_value(name: str, raw: str, current: object) -> object:
    """`raw` as the type the key already has (int, float, bool, str), else parsed as JSON."""
    try:
        if isinstance(current, bool):
            return _boolean(raw)
        if isinstance(current, int):
            return int(raw)
        if isinstance(current, float):
            return float(raw)
        if isinstance(current, str):
            return raw
        return json.loads(raw)
    except ValueError as error:
        kind = type(current).__name__ if current is not None else "JSON value"
        raise ValueError(f"--param {name}={raw}: expected a {kind}") from error


def describe(compiled: CompiledPipeline, out) -> None:
    """What `genpipe compile` prints: the file, its tasks and its runtime parameters."""
    print(f"Wrote {compiled.path}: {compiled.job.get('displayName')} with {len(compiled.tasks)} tasks "
          f"({', '.join(sorted(compiled.tasks))})", file=out)
    parameters = runtime_parameters(compiled.job)
    print("Runtime parameters (genpipe submit --param NAME=VALUE):", file=out)
    for name, parameter in sorted(parameters.items()):
        print(f"  {name:<17} {parameter['default']!s}", file=out)
    aliases = shorthands(parameters)
    if aliases:
        print(f"  shorthands: {', '.join(aliases)} (e.g. --param train_steps=2000)", file=out)
    reads = data_dir_reads(compiled.job)
    if _example_gen(compiled.job)[1] == MNIST_SAMPLE:
        print(f"  {DATA_DIR} stays empty: {MNIST_SAMPLE} is inside the image (compile with --dataset mnist or "
              "fashion_mnist to read a data_dir)", file=out)
    elif reads and not parameters.get(DATA_DIR, {}).get("default"):
        print(f"  {DATA_DIR} is empty: give it per run (--param {DATA_DIR}=gs://BUCKET/PATH); the ExampleGen reads "
              f"{reads}", file=out)
