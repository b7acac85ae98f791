"""Runs a compiled PipelineJob (`genpipe compile` output) on this machine, as the KFP v2 launcher would.

TEST FIXTURE, not a runner: it stands in for the Vertex AI / Kubeflow Pipelines launcher, which
cannot run here, so that tests can show the compiled definition executes, not only that it
parses. For each container task, in dependency order, it builds the ExecutorInput the launcher
builds (pipeline_spec_pb2.ExecutorInput):

- `inputs.parameterValues`: the task's constants, or the run's value of the pipeline parameter
  the task reads (`componentInputParameter`), from the job's `runtimeConfig.parameterValues`
  overridden by `parameter_values`;
- `inputs.artifacts`: the artifacts upstream tasks wrote to their `executor_output.json`, with
  their name, uri, metadata (custom properties such as split_names, blessed) and type;
- `outputs.artifacts`: one fresh artifact per output of the component's outputDefinitions, at
  `<root>/<task>/<output key>`; `outputs.outputFile`: `<root>/<task>/executor_output.json`;

substitutes its JSON for `{{$}}` in the container's args and runs TFX's own container entrypoint
(`kubeflow_v2_run_executor`) in this process. Resolver tasks (TFX's latest-blessed-model
resolver) resolve to no artifacts, as on a first run with no blessed model in ML Metadata; an
input fed only by them is left out of the ExecutorInput, as the launcher leaves out an optional
input with nothing to resolve. Nothing is cached and nothing is recorded in ML Metadata.
"""
import dataclasses
import json
import os
import re
from typing import Dict, List, Mapping, Optional

EXECUTOR_INPUT_PLACEHOLDER = "{{$}}"
ENTRYPOINT = "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"
EXECUTOR_OUTPUT_FILE = "executor_output.json"


@dataclasses.dataclass
class Artifact:
    """An artifact as the launcher passes it on: resource name, uri, metadata and artifact type."""

    name: str
    uri: str
    metadata: dict
    type: dict  # the artifactType of the producer's outputDefinitions: schemaTitle or instanceSchema

    def runtime_artifact(self) -> dict:
        """The RuntimeArtifact JSON of an ExecutorInput."""
        return {"name": self.name, "uri": self.uri, "metadata": self.metadata, "type": self.type}


@dataclasses.dataclass
class TaskRun:
    """One task of a local run: what it was given and what it produced."""

    name: str
    kind: str  # "container" or "resolver"
    executor_class: str = ""  # --executor_class_path of a container task
    executor_input: dict = dataclasses.field(default_factory=dict)  # what replaced {{$}}
    argv: List[str] = dataclasses.field(default_factory=list)  # the container's args after substitution
    outputs: Dict[str, List[Artifact]] = dataclasses.field(default_factory=dict)
    executor_output: dict = dataclasses.field(default_factory=dict)  # the task's executor_output.json


@dataclasses.dataclass
class LocalRun:
    """A finished local run: the tasks in the order they ran, and the run's parameter values."""

    root: str
    parameter_values: Dict[str, object]
    tasks: Dict[str, TaskRun]

    @property
    def order(self) -> List[str]:
        return list(self.tasks)

    def output(self, task: str, key: str) -> Artifact:
        """The single artifact `task` produced under output `key`."""
        if task not in self.tasks:
            raise KeyError(f"no task {task!r} ran; the run has {', '.join(self.tasks)}")
        artifacts = self.tasks[task].outputs.get(key) or []
        if len(artifacts) != 1:
            raise KeyError(f"task {task} produced {len(artifacts)} artifacts for output {key!r}, expected 1 "
                           f"(outputs: {sorted(self.tasks[task].outputs)})")
        return artifacts[0]


class LaunchError(RuntimeError):
    """The compiled job cannot be launched as written (not an executor's own failure)."""


def task_order(job: dict) -> List[str]:
    """The job's root DAG tasks, each after every task it depends on or reads an artifact from."""
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    upstream = {}
    for name, task in tasks.items():
        needs = set(task.get("dependentTasks", []))
        for spec in task.get("inputs", {}).get("artifacts", {}).values():
            if "taskOutputArtifact" in spec:
                needs.add(spec["taskOutputArtifact"]["producerTask"])
        unknown = needs - set(tasks)
        if unknown:
            raise LaunchError(f"task {name} depends on {sorted(unknown)}, which are not tasks of the root DAG")
        upstream[name] = needs
    order: List[str] = []
    while len(order) < len(tasks):
        ready = sorted(name for name, needs in upstream.items() if name not in order and needs <= set(order))
        if not ready:
            raise LaunchError(f"tasks {sorted(set(tasks) - set(order))} depend on each other in a cycle")
        order.extend(ready)
    return order


def run_parameter_values(job: dict, overrides: Optional[Mapping[str, object]] = None) -> Dict[str, object]:
    """The pipeline parameters of a run: the spec's defaults, the job's runtimeConfig, then `overrides`."""
    definitions = job["pipelineSpec"]["root"].get("inputDefinitions", {}).get("parameters", {})
    values = {name: spec["defaultValue"] for name, spec in definitions.items() if "defaultValue" in spec}
    values.update(job.get("runtimeConfig", {}).get("parameterValues", {}))
    unknown = set(overrides or {}) - set(definitions)
    if unknown:
        raise LaunchError(f"parameters {sorted(unknown)} are not parameters of the pipeline "
                          f"(it takes {', '.join(sorted(definitions))})")
    values.update(overrides or {})
    return values


def run_job(job: dict, root: str, parameter_values: Optional[Mapping[str, object]] = None) -> LocalRun:
    """Runs every task of the compiled `job` under the local pipeline root `root`; see the module docstring.

    An executor's exception propagates unchanged (the task's container would have failed the
    same way); later tasks do not run.
    """
    spec = job["pipelineSpec"]
    values = run_parameter_values(job, parameter_values)
    run = LocalRun(root=root, parameter_values=values, tasks={})
    for name in task_order(job):
        task = spec["root"]["dag"]["tasks"][name]
        component = spec["components"][task["componentRef"]["name"]]
        executor = spec["deploymentSpec"]["executors"][component["executorLabel"]]
        if "resolver" in executor:
            run.tasks[name] = TaskRun(name=name, kind="resolver", outputs={
                key: [] for key in executor["resolver"].get("outputArtifactQueries", {})})
        elif "container" in executor:
            run.tasks[name] = _run_container_task(name, task, component, executor["container"], run)
        else:
            raise LaunchError(f"task {name}: executor {component['executorLabel']} is neither a container nor a "
                              f"resolver ({sorted(executor)})")
    return run


def executor_input(name: str, task: dict, component: dict, run: LocalRun) -> dict:
    """The ExecutorInput JSON the launcher gives task `name`, checked against pipeline_spec_pb2.ExecutorInput."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    parameters = {}
    for key, spec in task.get("inputs", {}).get("parameters", {}).items():
        if "componentInputParameter" in spec:
            parameter = spec["componentInputParameter"]
            if parameter not in run.parameter_values:
                raise LaunchError(f"task {name}: input {key} reads pipeline parameter {parameter!r}, which has no "
                                  "value and no default")
            parameters[key] = run.parameter_values[parameter]
        elif "runtimeValue" in spec and "constant" in spec["runtimeValue"]:
            parameters[key] = spec["runtimeValue"]["constant"]
        else:
            raise LaunchError(f"task {name}: input parameter {key} is {spec}; this launcher takes constants and "
                              "pipeline parameters only")
    artifacts = {}
    for key, spec in task.get("inputs", {}).get("artifacts", {}).items():
        if "taskOutputArtifact" not in spec:
            raise LaunchError(f"task {name}: input artifact {key} is {spec}; expected a taskOutputArtifact")
        producer = spec["taskOutputArtifact"]["producerTask"]
        output_key = spec["taskOutputArtifact"]["outputArtifactKey"]
        produced = run.tasks[producer].outputs.get(output_key)
        if produced is None:
            raise LaunchError(f"task {name}: input {key} reads output {output_key!r} of {producer}, which has only "
                              f"{sorted(run.tasks[producer].outputs)}")
        if not produced:
            if run.tasks[producer].kind != "resolver":
                raise LaunchError(f"task {name}: input {key}: container task {producer} produced no {output_key}")
            continue  # nothing resolved: the launcher leaves the optional input out
        artifacts[key] = {"artifacts": [artifact.runtime_artifact() for artifact in produced]}
    outputs = {}
    for key, spec in component.get("outputDefinitions", {}).get("artifacts", {}).items():
        outputs[key] = {"artifacts": [Artifact(name=_artifact_name(name, key), uri=f"{run.root}/{name}/{key}",
                                               metadata={}, type=spec["artifactType"]).runtime_artifact()]}
    document = {
        "inputs": {"parameterValues": parameters, "artifacts": artifacts},
        "outputs": {"artifacts": outputs, "outputFile": f"{run.root}/{name}/{EXECUTOR_OUTPUT_FILE}"},
    }
    message = json_format.ParseDict(document, pipeline_spec_pb2.ExecutorInput())
    return json_format.MessageToDict(message)


def _artifact_name(task: str, key: str) -> str:
    """The artifact's resource name, unique in the run (Vertex: projects/.../metadataStores/default/artifacts/ID)."""
    return f"artifacts/{task}/{key}"


def _run_container_task(name: str, task: dict, component: dict, container: dict, run: LocalRun) -> TaskRun:
    command = container.get("command", [])
    if command[-1:] != [ENTRYPOINT]:
        raise LaunchError(f"task {name}: container command {command} is not TFX's entrypoint {ENTRYPOINT}")
    invocation = executor_input(name, task, component, run)
    invocation_json = json.dumps(invocation)
    argv = [invocation_json if arg == EXECUTOR_INPUT_PLACEHOLDER else arg for arg in container.get("args", [])]
    if invocation_json not in argv:
        raise LaunchError(f"task {name}: the container args have no {EXECUTOR_INPUT_PLACEHOLDER} argument")
    leftover = [arg for arg in argv if arg is not invocation_json and re.search(r"\{\{\$", arg)]
    if leftover:
        raise LaunchError(f"task {name}: container args hold placeholders this launcher does not fill: {leftover}")
    output_file = invocation["outputs"]["outputFile"]
    if os.path.exists(output_file):
        raise LaunchError(f"task {name}: {output_file} exists already; run each job under a fresh root")
    os.makedirs(os.path.dirname(output_file), exist_ok=True)  # as the launcher prepares a local output path
    _call_entrypoint(argv)
    if not os.path.isfile(output_file):
        raise LaunchError(f"task {name}: the entrypoint wrote no {output_file}")
    with open(output_file) as f:
        executor_output = json.load(f)
    produced = executor_output.get("artifacts", {})
    outputs = {}
    for key, provisioned in invocation["outputs"].get("artifacts", {}).items():
        (given,) = provisioned["artifacts"]
        # The launcher keeps the provisioned artifact for an output the executor did not report.
        reported = (produced.get(key) or {}).get("artifacts") or [given]
        if len(reported) != 1:
            raise LaunchError(f"task {name}: {output_file} lists {len(reported)} artifacts for output {key}, "
                              "expected 1")
        (written,) = reported
        outputs[key] = [Artifact(name=written.get("name") or given["name"], uri=written.get("uri") or given["uri"],
                                 metadata=written.get("metadata", {}), type=given["type"])]
    return TaskRun(name=name, kind="container", executor_class=_flag(argv, "--executor_class_path"),
                   executor_input=invocation, argv=argv, outputs=outputs, executor_output=executor_output)


def _call_entrypoint(args: List[str]) -> None:
    """`python -m kubeflow_v2_run_executor ARGS` in this process: absl's app.run parses the whole argv."""
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor as entrypoint

    entrypoint.main(entrypoint._parse_flags([entrypoint.__file__, *args]))


def _flag(argv: List[str], flag: str) -> str:
    return argv[argv.index(flag) + 1] if flag in argv else ""


def exec_properties(run: LocalRun, task: str) -> dict:
    """The exec properties TFX's entrypoint parses from what the task was given (its ExecutorInput and inputs spec)."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils

    task_run = run.tasks[task]
    invocation = json_format.ParseDict(task_run.executor_input, pipeline_spec_pb2.ExecutorInput())
    inputs_spec = json_format.Parse(_flag(task_run.argv, "--json_serialized_inputs_spec_args") or "{}",
                                    pipeline_spec_pb2.ComponentInputsSpec())
    return kubeflow_v2_entrypoint_utils.parse_execution_properties(
        invocation.inputs.parameter_values, invocation.inputs.parameters, inputs_spec)
