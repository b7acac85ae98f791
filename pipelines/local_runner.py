"""Runs a pipeline under TFX's LocalDagRunner with per-component progress and a run summary.

Progress comes from the runner's own log records; the summary is read back from ML
Metadata (what ran, what was cached, the evaluation, the blessing, the pushed model).
"""
import functools
import json
import logging
import os
import re
import sys
import time
from typing import Callable, Dict, List, Optional

from absl import logging as absl_logging
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components import files
from pipelines import run_lock
from pipelines.config import RunConfig

_RUNNING = re.compile(r"Component (\S+) is running\.")
_FINISHED = re.compile(r"Component (\S+) is finished\.")
_CACHED = re.compile(r"A cached execution (\d+) is used\.")
STATE_NAMES = {v: k for k, v in metadata_store_pb2.Execution.State.items()}  # COMPLETE, CACHED, FAILED, ...
_ALARM = re.compile(r"((mode|posterior)-collapse alarm .*|stop_on_collapse: .*)")  # trainer_modules/collapse.py, shown as it happens


class ProgressPrinter(logging.Handler):
    """Turns LocalDagRunner's log records into one line per component start and finish."""

    def __init__(self, node_ids: List[str], out):
        super().__init__(logging.INFO)
        self.node_ids = node_ids
        self.out = out
        self.current: Optional[str] = None
        self.started = 0.0
        self.cached = False
        self.timings: Dict[str, float] = {}

    def emit(self, record):
        message = record.getMessage()
        if match := _RUNNING.match(message):
            self.current, self.started, self.cached = match.group(1), time.time(), False
            self._print(f"{self.current} ...")
        elif _CACHED.match(message):
            self.cached = True
        elif _ALARM.match(message):
            self._print(f"{self.current}: {message}")
        elif match := _FINISHED.match(message):
            node = match.group(1)
            seconds = time.time() - self.started
            self.timings[node] = seconds
            self._print(f"{node} {'cached' if self.cached else 'done'} in {seconds:.1f} s")

    def failed(self, error: BaseException) -> None:
        """The line for the component that was running when the run stopped with `error`."""
        if self.current is not None:
            self._print(f"{self.current} FAILED after {time.time() - self.started:.1f} s: {type(error).__name__}")

    def _print(self, text):
        index = self.node_ids.index(self.current) + 1 if self.current in self.node_ids else 0
        print(f"[{index}/{len(self.node_ids)}] {text}", file=self.out, flush=True)


class PipelineRunFailed(RuntimeError):
    """A component of the run raised; `summary` holds what the run did up to there and the failure.

    The original exception is the `__cause__`; its traceback is in the run's log file.
    """

    def __init__(self, summary: dict):
        super().__init__(summary["error"])
        self.summary = summary

    @property
    def error(self) -> BaseException:
        """The component's exception."""
        return self.__cause__


def run_pipeline(config: RunConfig, create_pipeline: Callable, out=None,
                 wait_for_lock: Optional[float] = None) -> dict:
    """Runs the pipeline; returns the summary (also written to the pipeline root).

    The whole run holds the locks of its ML Metadata store and its pipeline root
    (pipelines/run_lock.py): while another run holds either, this one raises run_lock.RunLockError
    before touching the store or the pipeline's artifacts, or with `wait_for_lock` seconds
    (math.inf: no limit) waits for it first. A root that holds another store's artifacts raises
    run_lock.RootStoreError, equally early.
    """
    out = out or sys.stdout
    recorded_here = functools.partial(recorded_in_root, config)
    run_lock.check_root(config.pipeline_root, config.metadata_path, recorded_here)  # before making a lock file
    with run_lock.hold_run(config.metadata_path, config.pipeline_root, config.pipeline_name,
                           wait_seconds=wait_for_lock, out=out):
        run_lock.claim_root(config.pipeline_root, config.metadata_path, recorded_here)
        return _run_holding_lock(config, create_pipeline, out)


def _run_holding_lock(config: RunConfig, create_pipeline: Callable, out) -> dict:
    from tfx import v1 as tfx  # here, so that a run refused before it starts does not wait for TensorFlow

    pipeline = create_pipeline(config)
    node_ids = [component.id for component in pipeline.components]
    log_path = os.path.join(log_dir(config), time.strftime("run-%Y%m%d-%H%M%S.log"))
    os.makedirs(os.path.dirname(log_path), exist_ok=True)

    progress = ProgressPrinter(node_ids, out)
    file_handler = logging.FileHandler(log_path)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    absl_logger = logging.getLogger("absl")
    # Set the absl flag, not only the logger level: TensorFlow restores the level from the flag.
    previous_verbosity, previous_propagate = absl_logging.get_verbosity(), absl_logger.propagate
    absl_logging.set_verbosity(absl_logging.INFO)
    absl_logger.propagate = False  # the console gets progress lines; everything else goes to the log file
    absl_logger.addHandler(progress)
    absl_logger.addHandler(file_handler)
    print(f"Running {config.pipeline_name}: {len(node_ids)} components, root {config.pipeline_root}", file=out)
    print(f"Log: {log_path}", file=out, flush=True)
    started = time.time()
    failure = None
    try:
        tfx.orchestration.LocalDagRunner().run(pipeline)
    except Exception as error:  # a component raised: say which, keep the traceback in the log, summarise
        failure = error
        progress.failed(error)
        absl_logger.error("Component %s failed", progress.current, exc_info=True)
    finally:
        absl_logger.removeHandler(progress)
        absl_logger.removeHandler(file_handler)
        absl_logging.set_verbosity(previous_verbosity)
        absl_logger.propagate = previous_propagate
        file_handler.close()
    summary = read_summary(config, node_ids)
    summary["wall_seconds"] = round(time.time() - started, 1)
    summary["log"] = log_path
    if failure is not None:
        failed_at = progress.current or "the pipeline"
        summary["failed_component"] = progress.current
        summary["error"] = f"{failed_at} failed: {type(failure).__name__}: {failure}"
        if not summary["pushed"]:
            summary["not_pushed_reason"] = f"the run stopped when {failed_at} failed"
    write_summary(summary, os.path.join(config.pipeline_root, SUMMARY_NAME))
    if failure is not None:
        raise PipelineRunFailed(summary) from failure
    return summary


SUMMARY_NAME = "last_run_summary.json"  # <pipeline root>/last_run_summary.json


def log_dir(config: RunConfig) -> str:
    """<pipeline root>/logs; for a remote root (gs://...), which the logging module cannot write, the
    pipeline's folder beside its (local) ML Metadata store."""
    if files.is_remote(config.pipeline_root):
        return os.path.join(os.path.dirname(config.metadata_path), "logs", config.pipeline_name)
    return os.path.join(config.pipeline_root, "logs")


def write_summary(summary: dict, path: str) -> None:
    """Writes the summary as JSON to `path` (local, or remote through tf.io.gfile); a local file is replaced whole."""
    files.write_text_whole(path, json.dumps(summary, indent=2))


def stopped_summary(error: BaseException, pipeline: str, pipeline_root: Optional[str] = None,
                    metadata: Optional[str] = None, wall_seconds: float = 0.0) -> dict:
    """The summary of a run that stopped outside its components: refused by a lock or by its pipeline
    root, a bad flag or file, the pipeline failing to build. Shaped as a failed run's, with no component."""
    summary = empty_summary(pipeline, pipeline_root, metadata, {})
    summary.update(wall_seconds=round(wall_seconds, 1), log=None, failed_component=None,
                   error=f"{type(error).__name__}: {error}",
                   not_pushed_reason="the run stopped outside its components (see error)")
    return summary


# ---------------------------------------------------------------------------
# Reading a run back from ML Metadata


def open_store(config: RunConfig) -> metadata_store.MetadataStore:
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = config.metadata_path
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(connection)


def run_contexts(store, pipeline_name: str) -> List[metadata_store_pb2.Context]:
    """The pipeline's runs (pipeline_run contexts), oldest first."""
    runs = [c for c in store.get_contexts_by_type("pipeline_run") if c.name]
    pipeline_ctx = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline_ctx is not None:
        in_pipeline = {c.id for c in store.get_children_contexts_by_context(pipeline_ctx.id)}
        runs = [c for c in runs if c.id in in_pipeline] or runs
    return sorted(runs, key=lambda c: (c.create_time_since_epoch, c.id))


def run_executions(store, pipeline_name: str, run: metadata_store_pb2.Context) -> Dict[str, metadata_store_pb2.Execution]:
    """node id -> execution of one pipeline run."""
    result = {}
    for execution in store.get_executions_by_context(run.id):
        node_contexts = [
            c for c in store.get_contexts_by_execution(execution.id) if c.name.startswith(pipeline_name + ".")
        ]
        for context in node_contexts:
            result[context.name[len(pipeline_name) + 1:]] = execution
    return result


def latest_run_executions(store, pipeline_name: str) -> Dict[str, metadata_store_pb2.Execution]:
    """node id -> execution of the most recent pipeline run."""
    runs = run_contexts(store, pipeline_name)
    return run_executions(store, pipeline_name, runs[-1]) if runs else {}


def output_artifacts(store, execution_id: int) -> Dict[str, List[metadata_store_pb2.Artifact]]:
    """Output key -> artifacts of an execution."""
    events = [e for e in store.get_events_by_execution_ids([execution_id])
              if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    result: Dict[str, List[metadata_store_pb2.Artifact]] = {}
    for event in events:
        key = event.path.steps[0].key if event.path.steps else ""
        if event.artifact_id in artifacts:
            result.setdefault(key, []).append(artifacts[event.artifact_id])
    return result


def recorded_in_root(config: RunConfig) -> bool:
    """Whether the run's store recorded artifacts of its pipeline under its pipeline root."""
    if not os.path.exists(config.metadata_path):
        return False
    store = open_store(config)
    pipeline_ctx = store.get_context_by_type_and_name("pipeline", config.pipeline_name)
    if pipeline_ctx is None:
        return False
    inside = config.pipeline_root.rstrip("/") + "/"
    return any(artifact.uri.startswith(inside) for artifact in store.get_artifacts_by_context(pipeline_ctx.id))


def custom_property(artifact, name):
    value = artifact.custom_properties.get(name)
    if value is None:
        return None
    return getattr(value, value.WhichOneof("value"))


def rejects_summary(outputs: Dict[str, List[metadata_store_pb2.Artifact]]) -> Optional[dict]:
    """The image ExampleGens' rejected source images: counts by reason and split, and where they are listed."""
    from components.celeba_example_gen import executor as rejects_lib

    rejects = outputs.get(rejects_lib.REJECTS_KEY)
    if not rejects:
        return None
    artifact = rejects[0]
    counts = custom_property(artifact, rejects_lib.REJECT_COUNTS_PROPERTY)
    return {
        "total": custom_property(artifact, rejects_lib.NUM_REJECTS_PROPERTY),
        "input_images": custom_property(artifact, rejects_lib.NUM_INPUT_IMAGES_PROPERTY),
        "fraction": custom_property(artifact, rejects_lib.REJECT_FRACTION_PROPERTY),
        "max_fraction": custom_property(artifact, rejects_lib.MAX_REJECT_FRACTION_PROPERTY),
        "counts": json.loads(counts) if counts else None,
        "list": os.path.join(artifact.uri, rejects_lib.REJECTS_FILE),
    }


def output_json(store, execution, key: str, filename: str) -> Optional[dict]:
    """The JSON file `filename` in the execution's first `key` output artifact, if it was written."""
    artifacts = output_artifacts(store, execution.id).get(key)
    path = os.path.join(artifacts[0].uri, filename) if artifacts else ""
    if not path or not files.exists(path):
        return None
    return json.loads(files.read_bytes(path))


def evaluation_report(store, execution) -> Optional[dict]:
    """The GenerativeEvaluator's metrics.json (metrics, blessing, grids) of one execution, if it wrote one."""
    return output_json(store, execution, "evaluation", "metrics.json")


def push_result(store, execution) -> dict:
    """pushed, pushed_model (the version directory) and already_serving of one Pusher execution."""
    pushed = output_artifacts(store, execution.id).get("pushed_model", [])
    if not pushed or custom_property(pushed[0], "pushed") != 1:
        return {"pushed": False, "pushed_model": None, "already_serving": False}
    return {"pushed": True, "pushed_model": custom_property(pushed[0], "pushed_destination"),
            "already_serving": custom_property(pushed[0], "already_serving") == 1}


def training_alarm(store, execution) -> dict:
    """The Trainer's collapse alarm (trainer_modules/collapse.py) from its training summary, if any."""
    training = output_json(store, execution, "model_run", "training_summary.json") or {}
    monitor = training.get("collapse_monitor") or {}
    if not monitor.get("alarm"):
        return {}
    return {"training_alarm": monitor["alarm"]["message"], "stopped_at_step": training.get("stopped_at_step")}


def empty_summary(pipeline: str, pipeline_root: Optional[str], metadata: Optional[str],
                  components: Dict[str, str]) -> dict:
    """The summary's fields, before anything is read from ML Metadata."""
    return {
        "pipeline": pipeline,
        "pipeline_root": pipeline_root,
        "metadata": metadata,
        "components": components,
        "metrics": {},
        "blessed": None,
        "blessing_reasons": [],
        "pushed": False,
        "pushed_model": None,
        "already_serving": False,
        "not_pushed_reason": None,
        "reconstructions_png": None,
        "samples_png": None,
        "classifier": None,
        "quality_targets": {},
    }


def read_summary(config: RunConfig, node_ids: List[str]) -> dict:
    """What the last run did, read from ML Metadata and the artifacts it recorded."""
    store = open_store(config)
    executions = latest_run_executions(store, config.pipeline_name)
    components = {
        node: STATE_NAMES.get(executions[node].last_known_state, "UNKNOWN") if node in executions else "NOT_RUN"
        for node in node_ids
    }
    summary = empty_summary(config.pipeline_name, config.pipeline_root, config.metadata_path, components)
    example_gen = next((n for n in node_ids if n in ("CelebAExampleGen", "ImageFolderExampleGen")), None)
    if example_gen in executions:
        summary["rejects"] = rejects_summary(output_artifacts(store, executions[example_gen].id))
    evaluator = next((n for n in node_ids if n.startswith("GenerativeEvaluator")), None)
    if evaluator in executions:
        report = evaluation_report(store, executions[evaluator])
        if report is not None:
            summary["metrics"] = report["metrics"]
            summary["baseline_metrics"] = report.get("baseline_metrics")
            summary["blessed"] = report["blessed"]
            summary["blessing_reasons"] = report["reasons"]
            summary["reconstructions_png"] = report.get("grid") if report["family"] in ("autoencoder", "vae") else None
            if report["family"] == "style":
                summary["stylized_png"] = report.get("grid")
            summary["samples_png"] = report.get("samples_grid")
            if report.get("interpolations"):
                summary["interpolations_png"] = report["interpolations"]
            if report.get("latent_space"):
                summary["latent_space_png"] = report["latent_space"]
                summary["latent_manifold_png"] = report.get("latent_manifold")
            summary["classifier"] = report.get("classifier")
            if report.get("real_images"):
                summary["real_images"] = report["real_images"]
            if report.get("inception_fid"):
                summary["inception_fid"] = report["inception_fid"]
    if "Trainer" in executions:
        summary.update(training_alarm(store, executions["Trainer"]))
    if "Pusher" in executions:
        summary.update(push_result(store, executions["Pusher"]))
    if not summary["pushed"]:
        if summary["blessed"] is False:
            summary["not_pushed_reason"] = "not blessed: " + "; ".join(summary["blessing_reasons"])
        else:
            summary["not_pushed_reason"] = f"Pusher state {components.get('Pusher')}"
    for metric, target in config.quality_targets.items():
        value = summary["metrics"].get(metric)
        summary["quality_targets"][metric] = {"target": target, "value": value,
                                              "met": value is not None and value >= target}
    return summary


def format_summary(summary: dict) -> str:
    """The human-readable end of `genpipe run`."""
    from components.generative_evaluator.executor import SAMPLE_DEFAULTS

    lines = [f"\n== {summary['pipeline']} summary =="]
    for node, state in summary["components"].items():
        lines.append(f"  {node:<32} {state}")
    if summary.get("error"):
        lines.append(f"  FAILED: {summary['error']}")
        lines.append(f"  traceback: {summary['log']}")
    if summary["metrics"]:
        lines.append("  metrics (eval split):")
        for key, value in summary["metrics"].items():
            if isinstance(value, dict):  # e.g. attribute_rates: in the summary JSON and metrics.json
                value = f"{len(value)} values (see metrics.json)"
            lines.append(f"    {key:<22} {value:.4f}" if isinstance(value, float) else f"    {key:<22} {value}")
    for metric, target in summary["quality_targets"].items():
        if summary.get("error") and target["value"] is None:
            continue  # the run failed before the evaluator
        state = "met" if target["met"] else "NOT met"
        value = "n/a" if target["value"] is None else f"{target['value']:.2f}"
        lines.append(f"  quality target {metric} >= {target['target']}: {value} ({state})")
    if summary.get("training_alarm"):
        stopped = f" (training stopped at step {summary['stopped_at_step']})" if summary.get("stopped_at_step") else ""
        lines.append(f"  Trainer {summary['training_alarm']}{stopped}")
    if summary["blessed"] is not None or not summary.get("error"):
        lines.append(f"  blessed: {summary['blessed']}")
    for reason in summary["blessing_reasons"]:
        lines.append(f"    - {reason}")
    if summary["pushed"]:
        again = " (already the newest version: not copied again)" if summary.get("already_serving") else ""
        lines.append(f"  pushed model: {summary['pushed_model']}{again}")
    else:
        lines.append(f"  not pushed: {summary['not_pushed_reason']}")
    rejects = summary.get("rejects")
    if rejects:
        reasons = {k: v for k, v in ((rejects.get("counts") or {}).get("by_reason") or {}).items() if v}
        shown = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "none"
        lines.append(f"  rejected source images: {rejects['total']} of {rejects['input_images']} ({shown}); "
                     f"listed in {rejects['list']}")
    classifier = summary.get("classifier")
    if classifier:
        trust = "trustworthy" if classifier.get("trustworthy") else "NOT trustworthy"
        lines.append(f"  domain classifier: eval accuracy {classifier.get('test_accuracy', float('nan')):.4f} "
                     f"(needs {classifier.get('min_accuracy')}; {trust})")
    generated = (summary["metrics"] or {}).get("num_generated")
    recommended = SAMPLE_DEFAULTS["num_samples"]  # classifier-FD from fewer samples is biased upward
    if generated is not None and generated < recommended:
        lines.append(f"  note: classifier-FD from {generated} generated images (fewer than {recommended:,}) "
                     "is biased upward; compare it only between runs with the same --num-samples")
    reference = summary.get("real_images") or {}
    if "sample_coverage" in reference:
        lines.append("  reference for the sample_ metrics, eval images half against half ("
                     f"{reference['prdc_num_generated']} and {reference['prdc_num_real']}): "
                     + ", ".join(f"{name} {reference['sample_' + name]:.3f}"
                                 for name in ("precision", "recall", "density", "coverage")))
    if summary.get("inception_fid") and summary["inception_fid"] != "computed":
        lines.append(f"  {summary['inception_fid']}")
    if summary["reconstructions_png"]:
        lines.append(f"  sample reconstructions: {summary['reconstructions_png']}")
    if summary.get("stylized_png"):
        lines.append(f"  content / stylized images: {summary['stylized_png']}")
    if summary.get("samples_png"):
        lines.append(f"  generated samples (fixed seed): {summary['samples_png']}")
    if summary.get("interpolations_png"):
        lines.append(f"  latent interpolations (fixed endpoints): {summary['interpolations_png']}")
    if summary.get("latent_space_png"):
        lines.append(f"  latent space (eval images by label): {summary['latent_space_png']}")
    if summary.get("latent_manifold_png"):
        lines.append(f"  latent manifold (decoded grid): {summary['latent_manifold_png']}")
    if "wall_seconds" in summary:
        lines.append(f"  wall time: {summary['wall_seconds']} s")
    return "\n".join(lines)
