"""`genpipe history PIPELINE`: every run of a pipeline recorded in ML Metadata, oldest first.

A pipeline that runs every night leaves one line per night here: when it ran, what ran and what
came from the cache, whether the model was blessed and pushed (and as which version), and the
pipeline's headline metrics (its quality targets and the metric its baseline comparison uses), so
a regression shows as a column that moves. Everything is read from the run's ML Metadata store and
the evaluator's `metrics.json`; nothing is written.
"""
import json
import os
import sys
import time
from typing import Dict, List, Optional

from ml_metadata.proto import metadata_store_pb2

from pipelines import local_runner
from pipelines.config import RunConfig


def headline_metrics(config: RunConfig) -> List[str]:
    """The metrics a history line shows: the quality targets, then the baseline comparison's metric."""
    names = list(config.quality_targets) + [config.baseline_comparison.get("metric")]
    return [name for name in dict.fromkeys(names) if name]


def run_record(store, run_context, executions: Dict[str, metadata_store_pb2.Execution]) -> dict:
    """One run: its id, start, the states of the components it executed, blessing, push and metrics."""
    node_ids = sorted(executions, key=lambda node: executions[node].id)  # in the order they ran
    states = {node: local_runner.STATE_NAMES.get(executions[node].last_known_state, "UNKNOWN") for node in node_ids}
    finished = [e.last_update_time_since_epoch for e in executions.values() if e.last_update_time_since_epoch]
    record = {
        "run_id": run_context.name,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run_context.create_time_since_epoch / 1000)),
        "seconds": round((max(finished) - run_context.create_time_since_epoch) / 1000, 1) if finished else None,
        "components": states,
        "ran": sum(state == "COMPLETE" for state in states.values()),
        "cached": sum(state == "CACHED" for state in states.values()),
        "failed": [node for node, state in states.items() if state == "FAILED"],
        # Still running, or the process was killed (the store then keeps the state it last wrote).
        "unfinished": [node for node, state in states.items() if state in ("NEW", "RUNNING")],
        "blessed": None,
        "pushed_version": None,
        "already_serving": False,
        "metrics": {},
    }
    evaluator = next((node for node in node_ids if node.startswith("GenerativeEvaluator")), None)
    report = local_runner.evaluation_report(store, executions[evaluator]) if evaluator else None
    if report is not None:
        record["blessed"], record["metrics"] = report["blessed"], report["metrics"]
    if "Pusher" in executions:
        pushed = local_runner.push_result(store, executions["Pusher"])
        if pushed["pushed"]:
            record["pushed_version"] = os.path.basename(pushed["pushed_model"].rstrip("/"))
            record["already_serving"] = pushed["already_serving"]
    return record


def read_history(config: RunConfig) -> List[dict]:
    """Every run of config's pipeline in its ML Metadata store, oldest first."""
    if not os.path.exists(config.metadata_path):
        raise FileNotFoundError(f"no ML Metadata store at {config.metadata_path}: {config.pipeline_name} has not "
                                "run there (give the --pipeline-root or --metadata of its runs)")
    store = local_runner.open_store(config)
    return [run_record(store, context, local_runner.run_executions(store, config.pipeline_name, context))
            for context in local_runner.run_contexts(store, config.pipeline_name)]


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_history(config: RunConfig, records: List[dict], metrics: List[str]) -> str:
    """A table, one run per line."""
    header = ["started", "ran", "cached", "blessed", "pushed version", *metrics]
    rows = []
    for record in records:
        if record["failed"]:
            outcome = f"FAILED at {', '.join(record['failed'])}"
        elif record["unfinished"]:
            outcome = f"running or killed at {', '.join(record['unfinished'])}"
        else:
            outcome = _cell(record["blessed"])
        version = record["pushed_version"]
        if version and record["already_serving"]:
            version += " (same)"
        rows.append([record["started"], str(record["ran"]), str(record["cached"]), outcome, _cell(version),
                     *(_cell(record["metrics"].get(name)) for name in metrics)])
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    lines = [f"{config.pipeline_name}: {len(records)} run(s) in {config.metadata_path}"]
    for row in [header] + rows:
        lines.append("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return "\n".join(lines)


def run(config: RunConfig, last: Optional[int] = None, as_json: bool = False, out=None) -> int:
    out = out or sys.stdout
    records = read_history(config)
    if last:
        records = records[-last:]
    if as_json:
        json.dump(records, out, indent=2)
        print(file=out)
    elif not records:
        print(f"{config.pipeline_name}: no runs in {config.metadata_path}", file=out)
    else:
        print(format_history(config, records, headline_metrics(config)), file=out)
    return 0
