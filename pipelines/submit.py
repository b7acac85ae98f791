"""`genpipe submit` and `genpipe schedule`: run a compiled pipeline on Vertex AI or Kubeflow Pipelines.

FILE is what `genpipe compile` writes: a PipelineJob ({"displayName", "pipelineSpec", "runtimeConfig"}).

- `submit --vertex --project P --region R`: one Vertex AI PipelineJob (google-cloud-aiplatform), run as
  --service-account, artifacts under the compiled pipeline root (gs://...) or --pipeline-root.
- `submit --kfp-host URL`: one Kubeflow Pipelines run (kfp.Client, KFP v2 API) in --experiment. KFP's
  client takes a PipelineSpec, so the file's `pipelineSpec` goes to the server and its pipeline root goes
  as the run's runtime_config.pipeline_root. An authenticated endpoint gets --kfp-token (or
  $KF_PIPELINES_TOKEN) as a bearer token.
- `schedule ... --cron "0 3 * * *"`: a Vertex AI PipelineJobSchedule (the time zone as the cron's
  "TZ=<zone>" prefix), or a KFP recurring run (KFP's cron has a leading seconds field, so "0 3 * * *"
  is sent as "0 0 3 * * *").

Every run receives every runtime parameter: the compiled defaults with the --param assignments applied
(see pipelines/kubeflow_runner.py for the shorthands such as train_steps and noise_factor, and for what
kubeflow_runner.check_values refuses). With --pipeline-root the locations compiled under the old root
(checkpoints, serving dir, domain classifiers) move under the new one. Everything
that can be checked locally (targets, flags, the file, parameters, cron, times, credentials) is checked
before the first request; errors are ValueError or FileNotFoundError, which `genpipe` prints as
`genpipe: error: ...` with exit code 2. The SDKs are imported only when a command runs.
"""
import argparse
import contextlib
import datetime
import io
import json
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from typing import Dict, Optional, Sequence, Tuple

from pipelines import kubeflow_runner

VERTEX = "vertex"
KFP = "kfp"
PROJECT_ENV = ("GOOGLE_CLOUD_PROJECT",)
REGION_ENV = ("GOOGLE_CLOUD_REGION", "CLOUD_ML_REGION")  # the variables google-cloud-aiplatform reads too
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
KFP_HEALTHZ = "/apis/v2beta1/healthz"
KFP_TOKEN_ENV = "KF_PIPELINES_TOKEN"  # genpipe's: kfp.Client reads no token from the environment itself
KFP_CONNECT_TIMEOUT = 15.0  # seconds for the reachability check of --kfp-host
KFP_TERMINAL_STATES = ("SUCCEEDED", "SKIPPED", "FAILED", "CANCELED")
WAIT_POLL_SECONDS = 10.0

# Cron fields as users write them (unix cron, the format of Vertex AI schedules): name, range, names.
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
CRON_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 6, _DAYS),
)
CRON_MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
_CRON_ITEM = re.compile(r"^(?P<range>\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(?P<step>[0-9]+))?$")


# ---------------------------------------------------------------------------------------------- argparse

def _add_common_arguments(parser: argparse.ArgumentParser, verb: str) -> None:
    parser.add_argument("file", metavar="FILE", help="compiled pipeline written by `genpipe compile` (.json or .yaml)")
    target = parser.add_argument_group("target (give exactly one)")
    target.add_argument("--vertex", action="store_true", help=f"{verb} on Vertex AI Pipelines")
    target.add_argument("--kfp-host", metavar="URL",
                        help="Kubeflow Pipelines API endpoint, e.g. http://localhost:8080 after `kubectl port-forward "
                             "-n kubeflow svc/ml-pipeline-ui 8080:80` (https:// when no scheme is given)")
    vertex = parser.add_argument_group("Vertex AI")
    vertex.add_argument("--project", help="Google Cloud project (default: $GOOGLE_CLOUD_PROJECT)")
    vertex.add_argument("--region", help="Vertex AI region, e.g. us-central1 (default: $GOOGLE_CLOUD_REGION or "
                                         "$CLOUD_ML_REGION)")
    vertex.add_argument("--network", help="VPC network to peer, projects/NUMBER/global/networks/NAME")
    vertex.add_argument("--label", dest="labels", action="append", default=[], metavar="KEY=VALUE",
                        help="label of the PipelineJob (repeatable; lowercase letters, digits, - and _)")
    kfp = parser.add_argument_group("Kubeflow Pipelines")
    kfp.add_argument("--namespace", help="Kubernetes namespace of a multi-user deployment")
    kfp.add_argument("--experiment", help="experiment the runs belong to (created when missing; default: Default)")
    kfp.add_argument("--kfp-token", metavar="TOKEN",
                     help=f"bearer token of an authenticated endpoint (default: ${KFP_TOKEN_ENV}, which keeps it "
                          "out of the process list), e.g. $(kubectl -n PROFILE create token default-editor) for a "
                          "multi-user Kubeflow Platform")
    parser.add_argument("--service-account",
                        help="identity the pipeline runs as: a Google service account e-mail on Vertex AI, a "
                             "Kubernetes service account on Kubeflow Pipelines")
    parser.add_argument("--param", dest="params", action="append", default=[], metavar="NAME=VALUE",
                        help="runtime parameter value (repeatable): a parameter (data_dir=gs://bucket/mnist), a "
                             "shorthand (train_steps=2000, batch_size, learning_rate, noise_factor=0.3 for the "
                             "denoising pipeline, vgg_weights for style) or PARAM.KEY=VALUE for a key of a JSON "
                             "parameter; `genpipe compile` lists what the pipeline takes. The style image is fixed "
                             "at compile time: one compiled pipeline per style")
    parser.add_argument("--pipeline-root", help="artifact root for these runs (default: the compiled one)")
    parser.add_argument("--no-cache", action="store_true",
                        help="run every task, even those with cached results (default: the compiled caching)")


def add_submit_parser(commands) -> None:
    parser = commands.add_parser(
        "submit", help="run a compiled pipeline once on Vertex AI Pipelines or Kubeflow Pipelines",
        description="Submits FILE (from `genpipe compile`) as one Vertex AI PipelineJob (--vertex --project P "
                    "--region R) or one Kubeflow Pipelines run (--kfp-host URL) and prints the job and its link. "
                    "Vertex AI uses Application Default Credentials: run `gcloud auth application-default login` "
                    "or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file.")
    _add_common_arguments(parser, "run")
    parser.add_argument("--job-id", help="Vertex AI: the PipelineJob ID (default <pipeline name>-<timestamp>); "
                                         "Kubeflow Pipelines: the run name")
    parser.add_argument("--wait", action="store_true",
                        help="wait until the run ends; exit 1 unless it succeeded")
    parser.set_defaults(handler=run_submit)


def add_schedule_parser(commands) -> None:
    parser = commands.add_parser(
        "schedule", help="run a compiled pipeline on a cron schedule (Vertex AI schedule or KFP recurring run)",
        description="Creates a Vertex AI PipelineJobSchedule (--vertex) or a Kubeflow Pipelines recurring run "
                    "(--kfp-host) that runs FILE at the times of --cron.")
    _add_common_arguments(parser, "schedule")
    parser.add_argument("--cron", required=True,
                        help='5-field unix cron "MINUTE HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK", e.g. "0 3 * * *" '
                             "(03:00 daily) or @daily; numbers, names (JAN, MON), *, ranges a-b, steps /n and "
                             "lists. Kubeflow Pipelines takes a 6-field cron with seconds first: genpipe sends "
                             '"0 " + CRON')
    parser.add_argument("--time-zone", help="IANA time zone of --cron, e.g. America/New_York (default UTC); Vertex "
                                            "AI only, KFP runs cron in its scheduler's zone (CRON_SCHEDULE_TIMEZONE "
                                            "of ml-pipeline-scheduledworkflow)")
    parser.add_argument("--name", help="the schedule's / recurring run's name (default <pipeline name>-schedule)")
    parser.add_argument("--max-concurrent-runs", type=int, default=1,
                        help="scheduled runs that may run at once (default 1)")
    parser.add_argument("--start-time", help="ISO 8601 time of the first possible run (default now); without an "
                                             "offset it is read in --time-zone, else UTC")
    parser.add_argument("--end-time", help="ISO 8601 time after which no run starts (default never)")
    parser.set_defaults(handler=run_schedule)


# ---------------------------------------------------------------------------------------------- checks

def target_of(args) -> str:
    """VERTEX or KFP; an error unless exactly one of --vertex / --kfp-host is given."""
    if args.vertex and args.kfp_host:
        raise ValueError("give either --vertex or --kfp-host URL, not both")
    if not args.vertex and not args.kfp_host:
        raise ValueError("where to run? give --vertex --project P --region R (Vertex AI Pipelines) or "
                         "--kfp-host URL (Kubeflow Pipelines)")
    target = VERTEX if args.vertex else KFP
    only = {
        VERTEX: {"--project": args.project, "--region": args.region, "--network": args.network,
                 "--label": args.labels},
        KFP: {"--namespace": args.namespace, "--experiment": args.experiment, "--kfp-token": args.kfp_token},
    }
    other = KFP if target == VERTEX else VERTEX
    for flag, value in only[other].items():
        if value:
            platform = "Vertex AI (--vertex)" if other == VERTEX else "Kubeflow Pipelines (--kfp-host)"
            raise ValueError(f"{flag} applies to {platform} only")
    return target


def load_pipeline(path: str) -> dict:
    """The compiled PipelineJob of `path`; an error naming the file unless its pipelineSpec is a PipelineSpec."""
    job = kubeflow_runner.load_job(path)
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = job["pipelineSpec"]
    if not isinstance(spec, dict) or not spec.get("root") or not spec.get("pipelineInfo", {}).get("name"):
        raise ValueError(f"{path} is not a compiled pipeline: its pipelineSpec has no root DAG or pipelineInfo.name "
                         "(write it with `genpipe compile`)")
    try:
        json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    except json_format.ParseError as error:
        raise ValueError(f"{path} is not a compiled pipeline: its pipelineSpec is not a KFP PipelineSpec "
                         f"({error})") from error
    return job


def run_parameters(job: dict, assignments: Sequence[str], path: str,
                   pipeline_root: Optional[str] = None) -> Dict[str, object]:
    """Every runtime parameter's value: the compiled default with the --param assignments applied.

    With another --pipeline-root, the Trainer's checkpoints move under it too (unless an
    assignment sets trainer_config.checkpoint_root itself). Values the pipeline would refuse or
    ignore are errors (kubeflow_runner.check_values).
    """
    parameters = kubeflow_runner.runtime_parameters(job)
    values = {name: p["default"] for name, p in parameters.items() if p["default"] is not None}
    values.update(kubeflow_runner.parameter_values(job, kubeflow_runner.relocated(job, pipeline_root, assignments)))
    missing = sorted(set(parameters) - set(values))
    if missing:
        raise ValueError(f"{path} has no value for the runtime parameter(s) {', '.join(missing)}: give each with "
                         "--param NAME=VALUE, or compile the file again (`genpipe compile` writes the defaults)")
    kubeflow_runner.check_values(job, values)
    return values


def parse_labels(assignments: Sequence[str]) -> Dict[str, str]:
    labels = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key:
            raise ValueError(f"--label {assignment!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


def vertex_location(args) -> Tuple[str, str]:
    """(project, region) from the flags or the environment; an error naming the missing flag."""
    project = args.project or next((os.environ[v] for v in PROJECT_ENV if os.environ.get(v)), None)
    region = args.region or next((os.environ[v] for v in REGION_ENV if os.environ.get(v)), None)
    if not project:
        raise ValueError("--vertex needs --project PROJECT (or GOOGLE_CLOUD_PROJECT in the environment)")
    if not region:
        raise ValueError("--vertex needs --region REGION, e.g. us-central1 (or GOOGLE_CLOUD_REGION in the "
                         "environment)")
    return project, region


def google_credentials():
    """Application Default Credentials, or an error saying how to get them."""
    import google.auth
    from google.auth import exceptions

    try:
        credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    except exceptions.DefaultCredentialsError as error:
        raise ValueError("no Google Cloud credentials for Vertex AI: run `gcloud auth application-default login`, "
                         "or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file "
                         f"({error})") from error
    return credentials


def vertex_pipeline_root(job: dict, override: Optional[str], path: str) -> str:
    root = override or job.get("runtimeConfig", {}).get("gcsOutputDirectory") or ""
    if not root.startswith("gs://"):
        source = "--pipeline-root" if override else f"the pipeline root compiled into {path}"
        raise ValueError(f"Vertex AI keeps artifacts in Cloud Storage: {source} is {root or 'empty'!r}, expected "
                         "gs://BUCKET/PATH (give --pipeline-root gs://...)")
    return root


def kfp_host(url: str) -> str:
    """The API endpoint as kfp.Client uses it (https:// when no scheme is given, no trailing slash)."""
    if "://" not in url:
        url = "https://" + url
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"--kfp-host {url!r}: expected http(s)://HOST[:PORT][/PATH]")
    return url.rstrip("/")


def check_kfp_reachable(host: str, timeout: float = KFP_CONNECT_TIMEOUT, token: Optional[str] = None,
                        namespace: Optional[str] = None) -> None:
    """An error naming the host unless a KFP v2 API may answer there.

    Fails when the connection fails, and when GET <host>/apis/v2beta1/healthz (with the bearer
    token, as kfp.Client sends it) answers 404 (no KFP v2 API under that URL), 5xx, or 401 / 403
    (saying how to authenticate: kfp.Client would retry its own health check 5 times, 5 s apart,
    printing a traceback each time, and then report a timeout). Other answers pass.
    """
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # like kfp.Client: no proxy from env
    url = host + KFP_HEALTHZ
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with opener.open(request, timeout=timeout):
            pass
    except urllib.error.HTTPError as error:
        if error.code == 404:
            raise ValueError(f"no Kubeflow Pipelines v2 API at {host}: GET {url} answered 404 (give the API "
                             "endpoint: the ml-pipeline-ui service, e.g. http://localhost:8080 after a port-forward, "
                             "or https://<Kubeflow host>/pipeline)") from error
        if error.code in (401, 403):
            raise ValueError(f"Kubeflow Pipelines at {host} refused the request: GET {url} answered {error.code} "
                             f"{error.reason} ({kfp_auth_hint(error.code, token, namespace)})") from error
        if error.code >= 500:
            raise ValueError(f"Kubeflow Pipelines at {host} is not serving: GET {url} answered {error.code} "
                             f"{error.reason}") from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ValueError(f"cannot reach Kubeflow Pipelines at {host}: {reason} (is the API server running, or "
                         "the port-forward open?)") from error


def parse_cron(expression: str) -> Tuple[str, Optional[str]]:
    """(5-field cron with numbers only, time zone of a "TZ=" / "CRON_TZ=" prefix or None).

    Errors name the field that is wrong and what it takes.
    """
    text = expression.strip()
    zone = None
    match = re.match(r"^(?:CRON_TZ|TZ)=(\S+)\s+(.*)$", text)
    if match:
        zone, text = match.group(1), match.group(2)
    text = CRON_MACROS.get(text.lower(), text)
    fields = text.split()
    if len(fields) != len(CRON_FIELDS):
        raise ValueError(f"--cron {expression!r}: expected 5 fields (minute hour day-of-month month day-of-week), "
                         f"got {len(fields)}" + (" (no seconds field: genpipe adds it for Kubeflow Pipelines)"
                                                 if len(fields) == 6 else ""))
    return " ".join(_cron_field(expression, value, *spec) for value, spec in zip(fields, CRON_FIELDS)), zone


def _cron_field(expression: str, value: str, name: str, low: int, high: int, names: Tuple[str, ...]) -> str:
    """One field with names turned into numbers; an error naming the field."""
    takes = f"{low}-{high}" + (f" or {names[0]}-{names[-1]}" if names else "")

    def bad(why: str) -> ValueError:
        return ValueError(f"--cron {expression!r}: the {name} field {value!r} {why}; it takes {takes}, *, "
                          "ranges a-b, steps /n and lists a,b")

    def number(token: str) -> int:
        if token.upper() in names:
            return low + names.index(token.upper())
        if not token.isdigit():
            raise bad(f"has {token!r}, which is not a number" + (" or a name" if names else ""))
        if not low <= int(token) <= high:
            sunday = " (write Sunday as 0)" if names is _DAYS and int(token) == 7 else ""
            raise bad(f"has {token}, out of range {low}-{high}{sunday}")
        return int(token)

    items = []
    for item in value.split(","):
        match = _CRON_ITEM.match(item)
        if not match:
            raise bad(f"has {item!r}, which is not a value, a range or *")
        span, step = match.group("range"), match.group("step")
        if span == "*":
            normalised = "*"
        else:
            start, _, end = span.partition("-")
            first = number(start)
            normalised = str(first)
            if end:
                last = number(end)
                if last < first:
                    raise bad(f"has the range {span}, which ends before it starts")
                normalised += f"-{last}"
        if step is not None:
            if int(step) < 1:
                raise bad("has the step /0")
            normalised += f"/{int(step)}"
        items.append(normalised)
    return ",".join(items)


def kfp_cron(cron: str) -> str:
    """KFP's 6-field cron (seconds first, robfig/cron) for a 5-field cron from parse_cron."""
    return "0 " + cron


def check_time_zone(zone: str) -> str:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
        if zoneinfo.available_timezones():  # without a tz database here, leave the check to the server
            raise ValueError(f"--time-zone {zone!r} is not an IANA time zone such as America/New_York") from error
    return zone


def parse_time(flag: str, text: Optional[str], zone: Optional[str]) -> Optional[datetime.datetime]:
    """An aware UTC datetime for an ISO 8601 flag value; times without an offset are read in `zone` (else UTC)."""
    if not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError as error:
        raise ValueError(f"{flag} {text!r}: expected an ISO 8601 time such as 2025-01-31T03:00:00Z") from error
    if moment.tzinfo is None:
        if zone:
            import zoneinfo

            moment = moment.replace(tzinfo=zoneinfo.ZoneInfo(zone))
        else:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


def rfc3339(moment: Optional[datetime.datetime]) -> Optional[str]:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


# ---------------------------------------------------------------------------------------------- commands

def _prepare(args) -> Tuple[str, dict, Dict[str, object]]:
    target = target_of(args)
    job = load_pipeline(args.file)
    values = run_parameters(job, args.params, args.file, args.pipeline_root)
    return target, kubeflow_runner.relocated_job(job, args.pipeline_root), values


def run_submit(args, out=None) -> int:
    out = out or sys.stdout
    target, job, values = _prepare(args)
    if target == VERTEX:
        return _submit_vertex(args, job, values, out)
    return _submit_kfp(args, job, values, out)


def run_schedule(args, out=None) -> int:
    out = out or sys.stdout
    target, job, values = _prepare(args)
    cron, prefix_zone = parse_cron(args.cron)
    if prefix_zone and args.time_zone and prefix_zone != args.time_zone:
        raise ValueError(f"--cron names the time zone {prefix_zone} and --time-zone {args.time_zone}: give one")
    zone = args.time_zone or prefix_zone
    if zone:
        check_time_zone(zone)
        if target == KFP:
            raise ValueError("Kubeflow Pipelines runs cron in its scheduler's time zone (CRON_SCHEDULE_TIMEZONE of "
                             "the ml-pipeline-scheduledworkflow deployment, UTC by default): drop --time-zone and "
                             "write --cron in that zone")
    start = parse_time("--start-time", args.start_time, zone)
    end = parse_time("--end-time", args.end_time, zone)
    if start and end and end <= start:
        raise ValueError(f"--end-time {args.end_time} is not after --start-time {args.start_time}")
    if args.max_concurrent_runs < 1:
        raise ValueError(f"--max-concurrent-runs must be >= 1, got {args.max_concurrent_runs}")
    name = args.name or f"{job.get('displayName') or job['pipelineSpec']['pipelineInfo']['name']}-schedule"
    if target == VERTEX:
        return _schedule_vertex(args, job, values, cron, zone, start, end, name, out)
    return _schedule_kfp(args, job, values, cron, start, end, name, out)


# ---------------------------------------------------------------------------------------------- Vertex AI

def _vertex_job(args, job: dict, values: Dict[str, object], job_id: Optional[str] = None):
    """The aiplatform.PipelineJob for FILE, after every local check (no request is sent here)."""
    project, region = vertex_location(args)
    root = vertex_pipeline_root(job, args.pipeline_root, args.file)
    labels = parse_labels(args.labels)
    credentials = google_credentials()
    from google.cloud import aiplatform

    with _job_file(job) as template_path:  # FILE as run: its locations under --pipeline-root
        pipeline_job = aiplatform.PipelineJob(
            display_name=job.get("displayName") or job["pipelineSpec"]["pipelineInfo"]["name"],
            template_path=template_path,
            job_id=job_id,
            pipeline_root=root,
            parameter_values=values,
            enable_caching=False if args.no_cache else None,
            labels=labels or None,
            project=project,
            location=region,
            credentials=credentials,
        )
    return pipeline_job, project, region


def _google_api_errors():
    """The request errors of the Google Cloud SDK: refused requests and credentials that do not refresh."""
    from google.api_core import exceptions
    from google.auth import exceptions as auth_exceptions

    return exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError


def _submit_vertex(args, job: dict, values: Dict[str, object], out) -> int:
    pipeline_job, project, region = _vertex_job(args, job, values, job_id=args.job_id)
    try:
        pipeline_job.submit(service_account=args.service_account, network=args.network)
    except _google_api_errors() as error:
        raise ValueError(f"Vertex AI refused the PipelineJob in projects/{project}/locations/{region}: "
                         f"{error}") from error
    job_id = pipeline_job.resource_name.rsplit("/", 1)[-1]
    print(f"Submitted Vertex AI PipelineJob {pipeline_job.resource_name}", file=out)
    print(f"  console: https://console.cloud.google.com/vertex-ai/locations/{region}/pipelines/runs/{job_id}"
          f"?project={project}", file=out)
    _print_parameters(values, out)
    if not args.wait:
        return 0
    print("Waiting for the run to end (Ctrl-C stops waiting, not the run)...", file=out)
    try:
        pipeline_job.wait()
    except RuntimeError as error:  # the SDK raises it for failed and cancelled jobs
        print(f"  {error}", file=out)
        return 1
    except KeyboardInterrupt:
        print("  stopped waiting; the run goes on", file=out)
        return 130
    print(f"  {pipeline_job.state.name}", file=out)
    return 0 if pipeline_job.state.name == "PIPELINE_STATE_SUCCEEDED" else 1


def _schedule_vertex(args, job, values, cron, zone, start, end, name, out) -> int:
    pipeline_job, project, region = _vertex_job(args, job, values)
    vertex_cron = f"TZ={zone} {cron}" if zone else cron
    try:
        schedule = pipeline_job.create_schedule(
            cron=vertex_cron, display_name=name, start_time=start, end_time=end,
            max_concurrent_run_count=args.max_concurrent_runs,
            service_account=args.service_account, network=args.network)
    except _google_api_errors() as error:
        raise ValueError(f"Vertex AI refused the schedule in projects/{project}/locations/{region}: "
                         f"{error}") from error
    schedule_id = schedule.resource_name.rsplit("/", 1)[-1]
    print(f"Created Vertex AI schedule {schedule.resource_name} ({name}): cron {vertex_cron!r}, at most "
          f"{args.max_concurrent_runs} run(s) at once", file=out)
    print(f"  console: https://console.cloud.google.com/vertex-ai/locations/{region}/pipelines/schedules/"
          f"{schedule_id}?project={project}", file=out)
    _print_parameters(values, out)
    return 0


# ---------------------------------------------------------------------------------------------- Kubeflow

def kfp_token(args) -> Optional[str]:
    """The bearer token for kfp.Client: --kfp-token, else $KF_PIPELINES_TOKEN, else none."""
    return args.kfp_token or os.environ.get(KFP_TOKEN_ENV) or None


def kfp_auth_hint(status: int, token: Optional[str], namespace: Optional[str]) -> str:
    """How to get past a 401 / 403 of a Kubeflow Pipelines endpoint."""
    if not token:
        return (f"the endpoint wants credentials: give a bearer token with --kfp-token TOKEN or {KFP_TOKEN_ENV}=TOKEN "
                "in the environment, e.g. $(kubectl -n PROFILE create token default-editor) for a multi-user "
                "Kubeflow Platform (or port-forward the ml-pipeline-ui service of a standalone deployment, which "
                "needs none)")
    if status == 401:
        return (f"the endpoint did not accept the token of --kfp-token / {KFP_TOKEN_ENV}: it may have expired or be "
                "meant for another audience; get a new one")
    return (f"the token's identity may not use the namespace {namespace or 'kubeflow'}: give --namespace with the "
            "profile it may edit")


@contextlib.contextmanager
def _kfp_client(args):
    """(kfp.Client, host, UI prefix), with SDK chatter silenced and its errors turned into errors naming the host."""
    host = kfp_host(args.kfp_host)
    token = kfp_token(args)
    check_kfp_reachable(host, token=token, namespace=args.namespace)
    import kfp
    import kfp_server_api
    import urllib3

    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore", FutureWarning)  # "This client only works with KFP v2.0.0-beta.2 and later"
            client = kfp.Client(host=host, namespace=args.namespace or "kubeflow", existing_token=token)
            yield client, host
    except kfp_server_api.ApiException as error:
        hint = f" ({kfp_auth_hint(error.status, token, args.namespace)})" if error.status in (401, 403) else ""
        raise ValueError(f"Kubeflow Pipelines at {host} refused the request: {error.status} {error.reason}"
                         f"{_api_message(error.body)}{hint}") from error
    except urllib3.exceptions.HTTPError as error:
        raise ValueError(f"cannot reach Kubeflow Pipelines at {host}: {error}") from error
    except TimeoutError as error:  # kfp.Client gives up on /healthz after 5 attempts
        raise ValueError(f"Kubeflow Pipelines at {host} did not answer {KFP_HEALTHZ}: {error}") from error


def _api_message(body) -> str:
    try:
        document = json.loads(body)
        message = document.get("message") or document.get("error")
    except (TypeError, ValueError, AttributeError):
        message = body.decode() if isinstance(body, bytes) else body
    return f": {message}" if message else ""


@contextlib.contextmanager
def _job_file(job: dict):
    """The whole PipelineJob as the template file aiplatform.PipelineJob reads (while it is constructed)."""
    with tempfile.TemporaryDirectory(prefix="genpipe-vertex-") as folder:
        path = os.path.join(folder, "pipeline_job.json")
        with open(path, "w") as f:
            json.dump(job, f)
        yield path


@contextlib.contextmanager
def _pipeline_spec_file(job: dict):
    """The job's PipelineSpec as the .yaml file kfp.Client takes (it reads .yaml/.yml, .zip and .tar.gz)."""
    with tempfile.TemporaryDirectory(prefix="genpipe-kfp-") as folder:
        path = os.path.join(folder, "pipeline.yaml")
        with open(path, "w") as f:
            json.dump(job["pipelineSpec"], f)  # JSON is YAML; the client parses it as a PipelineSpec
        yield path


def _kfp_pipeline_root(job: dict, override: Optional[str]) -> Optional[str]:
    return override or job.get("runtimeConfig", {}).get("gcsOutputDirectory") or None


def _experiment(client, args):
    return client.create_experiment(name=args.experiment or "Default", namespace=args.namespace)


def _submit_kfp(args, job: dict, values: Dict[str, object], out) -> int:
    run_name = args.job_id or f"{job.get('displayName', 'genpipe')} {datetime.datetime.now():%Y-%m-%d %H-%M-%S}"
    with _kfp_client(args) as (client, host), _pipeline_spec_file(job) as spec_path:
        experiment = _experiment(client, args)
        result = client.create_run_from_pipeline_package(
            pipeline_file=spec_path, arguments=values, run_name=run_name,
            experiment_id=experiment.experiment_id,
            pipeline_root=_kfp_pipeline_root(job, args.pipeline_root),
            enable_caching=False if args.no_cache else None,
            service_account=args.service_account)
    ui = os.environ.get("KF_PIPELINES_UI_ENDPOINT", host)
    print(f"Submitted Kubeflow Pipelines run {result.run_id} ({run_name}) in experiment "
          f"{experiment.display_name} at {host}", file=out)
    print(f"  UI: {ui}/#/runs/details/{result.run_id}", file=out)
    _print_parameters(values, out)
    if not args.wait:
        return 0
    print("Waiting for the run to end (Ctrl-C stops waiting, not the run)...", file=out)
    try:
        with _kfp_client(args) as (client, _):
            while True:
                state = str(client.get_run(result.run_id).state or "")
                if state in KFP_TERMINAL_STATES:
                    break
                time.sleep(WAIT_POLL_SECONDS)
    except KeyboardInterrupt:
        print("  stopped waiting; the run goes on", file=out)
        return 130
    print(f"  {state}", file=out)
    return 0 if state == "SUCCEEDED" else 1


def _schedule_kfp(args, job, values, cron, start, end, name, out) -> int:
    cron6 = kfp_cron(cron)
    with _kfp_client(args) as (client, host), _pipeline_spec_file(job) as spec_path:
        experiment = _experiment(client, args)
        recurring = client.create_recurring_run(
            experiment_id=experiment.experiment_id, job_name=name,
            description=f"genpipe schedule of {os.path.basename(args.file)}: cron {cron!r} (UTC or the scheduler's "
                        "time zone)",
            start_time=rfc3339(start), end_time=rfc3339(end), cron_expression=cron6,
            max_concurrency=args.max_concurrent_runs, no_catchup=True,
            params=values, pipeline_package_path=spec_path,
            pipeline_root=_kfp_pipeline_root(job, args.pipeline_root),
            enable_caching=False if args.no_cache else None,
            service_account=args.service_account)
    ui = os.environ.get("KF_PIPELINES_UI_ENDPOINT", host)
    print(f"Created Kubeflow Pipelines recurring run {recurring.recurring_run_id} ({name}) in experiment "
          f"{experiment.display_name} at {host}: cron {cron6!r} (seconds first), at most "
          f"{args.max_concurrent_runs} run(s) at once, missed runs not caught up", file=out)
    print(f"  UI: {ui}/#/recurringrun/details/{recurring.recurring_run_id}", file=out)
    _print_parameters(values, out)
    return 0


def _print_parameters(values: Dict[str, object], out) -> None:
    print("  parameters:", file=out)
    for name, value in sorted(values.items()):
        print(f"    {name} = {value}", file=out)
