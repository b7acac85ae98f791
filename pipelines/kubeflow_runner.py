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
| `trainer_config`   | the Trainer's custom_config as JSON (batch_size, learning_rate, style_image, ...) |
| `style_config`     | the style evaluator's settings as JSON (style_image, ...)  |

`parameter_values` turns friendly assignments into those values, starting from the compiled
defaults: `train_steps=2000` sets `train_args.num_steps`, `noise_factor=0.3` sets
`transform_config.noise_factor`, `style_image=gs://b/s.jpg` sets it in both `trainer_config`
and `style_config`; `PARAM.KEY=VALUE` sets any key of a JSON parameter and `PARAM=VALUE` a
whole parameter.

What differs from a local run: KubeflowV2DagRunner compiles only TFX's stock resolver
strategies, so the domain classifier is found in a folder under the pipeline root instead of in
ML Metadata (pipelines/common.py), and the ExampleGen task is never served from the cache,
because the files behind `data_dir` may change between runs and are not read at compile time
(the ExampleGen fingerprints them when it runs).
"""
import dataclasses
import json
import os
from typing import Callable, Dict, List, Sequence, Tuple

DATA_DIR = "data_dir"
TRAIN_ARGS = "train_args"
TRANSFORM_CONFIG = "transform_config"
TRAINER_CONFIG = "trainer_config"
STYLE_CONFIG = "style_config"
CHECKPOINT_ROOT = "checkpoint_root"  # trainer_modules.training.CHECKPOINT_ROOT

# Friendly names -> (JSON parameter, key) pairs they set. Keys are the custom_config keys of
# trainer_modules (tests/test_compile.py checks them against the modules' constants).
ALIASES: Dict[str, Tuple[Tuple[str, str], ...]] = {
    "train_steps": ((TRAIN_ARGS, "num_steps"),),
    "noise_factor": ((TRANSFORM_CONFIG, "noise_factor"),),
    "batch_size": ((TRAINER_CONFIG, "batch_size"),),
    "learning_rate": ((TRAINER_CONFIG, "learning_rate"),),
    "style_image": ((TRAINER_CONFIG, "style_image"), (STYLE_CONFIG, "style_image")),
    "vgg_weights": ((TRAINER_CONFIG, "vgg_weights"), (STYLE_CONFIG, "vgg_weights")),
}
_DESCRIPTIONS = {
    DATA_DIR: "the ExampleGen's input folder (gs://... or a path inside the image; empty: the dataset's default)",
    TRAIN_ARGS: 'Trainer TrainArgs as JSON, e.g. {"num_steps": 2000}',
    TRANSFORM_CONFIG: "Transform custom_config as JSON (noise_factor, seed, value_range, image_shape)",
    TRAINER_CONFIG: "Trainer custom_config as JSON (batch_size, learning_rate, style_image, ...)",
    STYLE_CONFIG: "the style evaluator's settings as JSON (style_image, vgg_weights, eval_images, gatys_steps)",
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
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f".{os.path.basename(path)}.tmp")
    with open(temporary, "w") as f:
        f.write(text)
    os.replace(temporary, path)


def load_job(path: str) -> dict:
    """A compiled pipeline file (`genpipe compile` output): the PipelineJob dict with `pipelineSpec`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no compiled pipeline there (write one with `genpipe compile`)")
    with open(path) as f:
        text = f.read()
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml

            job = yaml.safe_load(text)
        else:
            job = json.loads(text)
    except ValueError as error:
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
        if name in ALIASES:
            targets = _alias_targets(name, parameters)
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
    compiled_root = job.get("runtimeConfig", {}).get("gcsOutputDirectory", "").rstrip("/")
    trainer = runtime_parameters(job).get(TRAINER_CONFIG)
    if not pipeline_root or not trainer or pipeline_root.rstrip("/") == compiled_root:
        return list(assignments)
    key = f"{TRAINER_CONFIG}.{CHECKPOINT_ROOT}"
    if any(a.partition("=")[0].strip() in (key, TRAINER_CONFIG) for a in assignments):
        return list(assignments)
    if json.loads(trainer["default"] or "{}").get(CHECKPOINT_ROOT) != f"{compiled_root}/checkpoints":
        return list(assignments)
    return [f"{key}={pipeline_root.rstrip('/')}/checkpoints", *assignments]


def _alias_targets(alias: str, parameters: Dict[str, dict]) -> List[Tuple[str, str]]:
    """The (parameter, key) pairs a shorthand sets in this pipeline: keys its compiled defaults have."""
    targets = []
    for parameter, key in ALIASES[alias]:
        if parameter in parameters:
            try:
                default = json.loads(parameters[parameter]["default"] or "{}")
            except ValueError:
                continue
            if isinstance(default, dict) and key in default:
                targets.append((parameter, key))
    return targets


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
