"""`genpipe submit` and `genpipe schedule`: the requests sent to Vertex AI and Kubeflow Pipelines.

No cloud and no KFP server is reachable here, so only the network layer is replaced:
- Vertex AI: the real aiplatform.PipelineJob / PipelineJobSchedule with anonymous credentials; the
  gapic clients' create_pipeline_job / create_schedule record their request instead of sending it.
- Kubeflow Pipelines: the real kfp.Client talks to FakeKfpApiServer, a small HTTP server in this
  process that answers the KFP v2beta1 endpoints the client calls and records each request.

The compiled pipeline is the real `genpipe compile` output of the denoise preset on MNIST files (built once; on
the embedded mnist-sample a data_dir would mean nothing).
"""
import copy
import dataclasses
import http.server
import json
import socket
import threading
import urllib.parse

import pytest

from pipelines import cli
from pipelines import kubeflow_runner
from pipelines import submit

PROJECT = "genpipe-test-project"
REGION = "us-central1"
ROOT = "gs://test-bucket/genpipe"
SERVICE_ACCOUNT = "runner@genpipe-test-project.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Path of the compiled denoise pipeline (PipelineJob JSON), built with the real compiler."""
    from pipelines import autoencoder_pipeline
    from pipelines import config as config_lib

    # Compiled with a data_dir, as for a scheduled run: submit refuses mnist without one (the image holds no MNIST).
    config = dataclasses.replace(config_lib.presets()["denoise"], pipeline_root=ROOT, dataset="mnist",
                                 data_dir="gs://test-bucket/compiled-mnist")
    path = tmp_path_factory.mktemp("compiled") / "denoise.json"
    kubeflow_runner.compile_pipeline(config.resolved_for_kubeflow(), autoencoder_pipeline.create_pipeline,
                                     image="genpipe-test:1", output=str(path))
    return str(path)


@pytest.fixture(scope="module")
def job(compiled):
    return kubeflow_runner.load_job(compiled)


@pytest.fixture(autouse=True)
def no_cloud_environment(monkeypatch):
    for name in submit.PROJECT_ENV + submit.REGION_ENV + (submit.KFP_TOKEN_ENV, "KF_PIPELINES_UI_ENDPOINT",
                                                          "KF_PIPELINES_DEFAULT_EXPERIMENT_NAME",
                                                          "KF_PIPELINES_OVERRIDE_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)


def genpipe(capsys, *argv):
    """(exit code, stdout, stderr) of `genpipe ARGV`."""
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------------------------------ Vertex AI

@pytest.fixture
def vertex(monkeypatch):
    """Records what the Vertex AI SDK would send: {"pipeline_jobs": [...], "schedules": [...]} (gapic kwargs)."""
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform.utils import gcs_utils
    from google.cloud.aiplatform_v1.services.pipeline_service import PipelineServiceClient
    from google.cloud.aiplatform_v1.services.schedule_service import ScheduleServiceClient
    from google.cloud.aiplatform_v1.types import pipeline_state

    sent = {"pipeline_jobs": [], "schedules": [], "buckets": []}

    def create_pipeline_job(self, request=None, *, parent=None, pipeline_job=None, pipeline_job_id=None, **_):
        sent["pipeline_jobs"].append({"parent": parent, "pipeline_job": pipeline_job, "pipeline_job_id": pipeline_job_id})
        created = type(pipeline_job)(pipeline_job)
        created.name = f"{parent}/pipelineJobs/{pipeline_job_id}"
        return created

    def get_pipeline_job(self, request=None, *, name=None, **_):
        done = type(sent["pipeline_jobs"][-1]["pipeline_job"])(sent["pipeline_jobs"][-1]["pipeline_job"])
        done.name = name
        done.state = pipeline_state.PipelineState.PIPELINE_STATE_SUCCEEDED
        return done

    def create_schedule(self, request=None, *, parent=None, schedule=None, **_):
        sent["schedules"].append({"parent": parent, "schedule": schedule})
        created = type(schedule)(schedule)
        created.name = f"{parent}/schedules/4242"
        return created

    monkeypatch.setattr(google.auth, "default", lambda scopes=None, **_: (AnonymousCredentials(), None))
    monkeypatch.setattr(PipelineServiceClient, "create_pipeline_job", create_pipeline_job)
    monkeypatch.setattr(PipelineServiceClient, "get_pipeline_job", get_pipeline_job)
    monkeypatch.setattr(ScheduleServiceClient, "create_schedule", create_schedule)
    # PipelineJob.submit makes sure the pipeline root's bucket exists: another request.
    monkeypatch.setattr(gcs_utils, "create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist",
                        lambda **kwargs: sent["buckets"].append(kwargs))
    return sent


def _parameter_values(runtime_config) -> dict:
    from google.protobuf import json_format

    return json_format.MessageToDict(runtime_config._pb)["parameterValues"]


def test_submit_vertex_sends_the_pipeline_job(capsys, compiled, job, vertex):
    code, out, err = genpipe(capsys, "submit", compiled, "--vertex", "--project", PROJECT, "--region", REGION,
                             "--service-account", SERVICE_ACCOUNT, "--label", "team=generative",
                             "--param", "data_dir=gs://test-bucket/mnist", "--param", "train_steps=2000",
                             "--param", "noise_factor=0.3", "--job-id", "denoise-nightly-1")
    assert code == 0, err
    [request] = vertex["pipeline_jobs"]
    assert request["parent"] == f"projects/{PROJECT}/locations/{REGION}"
    assert request["pipeline_job_id"] == "denoise-nightly-1"
    sent = request["pipeline_job"]
    assert sent.display_name == job["displayName"]
    assert dict(sent.pipeline_spec) == job["pipelineSpec"]  # caching as compiled: no --no-cache
    assert sent.service_account == SERVICE_ACCOUNT
    assert dict(sent.labels) == {"team": "generative"}
    assert sent.runtime_config.gcs_output_directory == ROOT
    values = _parameter_values(sent.runtime_config)
    defaults = {name: p["default"] for name, p in kubeflow_runner.runtime_parameters(job).items()}
    assert set(values) == set(defaults)
    assert values["data_dir"] == "gs://test-bucket/mnist"
    assert json.loads(values["train_args"]) == {**json.loads(defaults["train_args"]), "num_steps": 2000}
    transform_config = json.loads(values["transform_config"])
    assert transform_config == {**json.loads(defaults["transform_config"]), "noise_factor": 0.3}
    assert values["trainer_config"] == defaults["trainer_config"]
    resource = f"projects/{PROJECT}/locations/{REGION}/pipelineJobs/denoise-nightly-1"
    assert resource in out
    assert (f"https://console.cloud.google.com/vertex-ai/locations/{REGION}/pipelines/runs/denoise-nightly-1"
            f"?project={PROJECT}") in out


def test_submit_vertex_pipeline_root_and_no_cache(capsys, compiled, vertex):
    code, out, err = genpipe(capsys, "submit", compiled, "--vertex", "--project", PROJECT, "--region", REGION,
                             "--pipeline-root", "gs://other-bucket/runs", "--no-cache", "--wait")
    assert code == 0, err
    assert "PIPELINE_STATE_SUCCEEDED" in out
    sent = vertex["pipeline_jobs"][0]["pipeline_job"]
    assert sent.runtime_config.gcs_output_directory == "gs://other-bucket/runs"
    tasks = sent.pipeline_spec["root"]["dag"]["tasks"]
    assert tasks and all(task["cachingOptions"]["enableCache"] is False for task in tasks.values())
    assert vertex["buckets"][0]["output_artifacts_gcs_dir"] == "gs://other-bucket/runs"
    # The Trainer's checkpoints and the Pusher's serving dir (compiled under the old root) move beside the run's
    # artifacts too.
    trainer_config = json.loads(sent.runtime_config.parameter_values["trainer_config"])
    assert trainer_config["checkpoint_root"] == "gs://other-bucket/runs/checkpoints"
    assert _push_destination(sent.pipeline_spec) == "gs://other-bucket/runs/serving/denoise_mnist"


def _push_destination(spec) -> str:
    parameter = spec["root"]["dag"]["tasks"]["Pusher"]["inputs"]["parameters"]["push_destination"]
    return json.loads(parameter["runtimeValue"]["constant"])["filesystem"]["base_directory"]


def test_submit_vertex_reads_project_and_region_from_the_environment(capsys, compiled, vertex, monkeypatch):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "env-project")
    monkeypatch.setenv("GOOGLE_CLOUD_REGION", "europe-west4")
    code, _, err = genpipe(capsys, "submit", compiled, "--vertex")
    assert code == 0, err
    assert vertex["pipeline_jobs"][0]["parent"] == "projects/env-project/locations/europe-west4"


def test_schedule_vertex_sends_the_schedule(capsys, compiled, job, vertex):
    code, out, err = genpipe(capsys, "schedule", compiled, "--cron", "0 3 * * MON-FRI", "--vertex",
                             "--project", PROJECT, "--region", REGION, "--service-account", SERVICE_ACCOUNT,
                             "--time-zone", "America/New_York", "--max-concurrent-runs", "2",
                             "--name", "denoise-weekdays", "--param", "train_steps=500",
                             "--start-time", "2030-01-01T00:00:00Z", "--end-time", "2030-12-31T00:00:00+00:00")
    assert code == 0, err
    assert not vertex["pipeline_jobs"], "scheduling must not also start a run"
    [request] = vertex["schedules"]
    parent = f"projects/{PROJECT}/locations/{REGION}"
    assert request["parent"] == parent
    schedule = request["schedule"]
    assert schedule.display_name == "denoise-weekdays"
    assert schedule.cron == "TZ=America/New_York 0 3 * * 1-5"
    assert schedule.max_concurrent_run_count == 2
    assert schedule.start_time.isoformat() == "2030-01-01T00:00:00+00:00"
    assert schedule.end_time.isoformat() == "2030-12-31T00:00:00+00:00"
    run = schedule.create_pipeline_job_request
    assert run.parent == parent
    assert dict(run.pipeline_job.pipeline_spec) == job["pipelineSpec"]
    assert run.pipeline_job.service_account == SERVICE_ACCOUNT
    assert run.pipeline_job.runtime_config.gcs_output_directory == ROOT
    assert json.loads(_parameter_values(run.pipeline_job.runtime_config)["train_args"])["num_steps"] == 500
    assert f"{parent}/schedules/4242" in out
    assert f"/pipelines/schedules/4242?project={PROJECT}" in out


def test_vertex_without_credentials_says_how_to_log_in(capsys, compiled, vertex, monkeypatch):
    import google.auth
    from google.auth import exceptions

    def no_credentials(scopes=None, **_):
        raise exceptions.DefaultCredentialsError("Your default credentials were not found.")

    monkeypatch.setattr(google.auth, "default", no_credentials)
    code, _, err = genpipe(capsys, "submit", compiled, "--vertex", "--project", PROJECT, "--region", REGION)
    assert code == 2
    assert "gcloud auth application-default login" in err and "GOOGLE_APPLICATION_CREDENTIALS" in err
    assert not vertex["pipeline_jobs"]


@pytest.mark.parametrize("flags, missing", [
    (["--region", REGION], "--project"),
    (["--project", PROJECT], "--region"),
])
def test_vertex_needs_project_and_region(capsys, compiled, vertex, flags, missing):
    code, _, err = genpipe(capsys, "submit", compiled, "--vertex", *flags)
    assert code == 2
    assert f"--vertex needs {missing}" in err
    if missing == "--project":
        assert "GOOGLE_CLOUD_PROJECT" in err
    assert not vertex["pipeline_jobs"]


def test_vertex_rejects_an_unknown_region(capsys, compiled, vertex):
    code, _, err = genpipe(capsys, "submit", compiled, "--vertex", "--project", PROJECT, "--region", "mars-north1")
    assert code == 2 and "region" in err
    assert not vertex["pipeline_jobs"]


def test_vertex_needs_a_cloud_storage_pipeline_root(capsys, compiled, vertex):
    code, _, err = genpipe(capsys, "submit", compiled, "--vertex", "--project", PROJECT, "--region", REGION,
                           "--pipeline-root", "/tmp/runs")
    assert code == 2 and "gs://" in err and "--pipeline-root" in err


# ------------------------------------------------------------------------------------------ Kubeflow Pipelines

class FakeKfpApiServer:
    """Test fixture: an HTTP server on 127.0.0.1 answering the KFP v2beta1 REST calls kfp.Client makes.

    Records every request as (method, path, query, JSON body); knows no experiment at first.
    """

    API = "/apis/v2beta1"

    def __init__(self):
        self.requests = []
        self.authorizations = []  # the Authorization header of each request
        self.token = None  # when set, requests without "Bearer <token>" get 401, as behind an auth proxy
        self.experiments = []
        self.final_state = "SUCCEEDED"
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self._answer("GET")

            def do_POST(self):
                self._answer("POST")

            def _answer(self, method):
                url = urllib.parse.urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                fake.requests.append((method, url.path, urllib.parse.parse_qs(url.query), body))
                fake.authorizations.append(self.headers.get("Authorization"))
                if fake.token and self.headers.get("Authorization") != f"Bearer {fake.token}":
                    status, answer = 401, {"error": "Unauthorized", "code": 16, "message": "Unauthorized"}
                else:
                    status, answer = fake.route(method, url.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def route(self, method, path, body):
        api = self.API
        if (method, path) == ("GET", f"{api}/healthz"):
            return 200, {"multi_user": False}
        if (method, path) == ("GET", f"{api}/experiments"):
            return 200, {"experiments": self.experiments, "total_size": len(self.experiments)}
        if (method, path) == ("POST", f"{api}/experiments"):
            experiment = {**body, "experiment_id": f"experiment-{len(self.experiments) + 1}"}
            self.experiments.append(experiment)
            return 200, experiment
        if (method, path) == ("POST", f"{api}/runs"):
            return 200, {**body, "run_id": "run-1", "state": "PENDING"}
        if (method, path) == ("GET", f"{api}/runs/run-1"):
            return 200, {"run_id": "run-1", "state": self.final_state}
        if (method, path) == ("POST", f"{api}/recurringruns"):
            return 200, {**body, "recurring_run_id": "recurring-1", "status": "ENABLED"}
        return 404, {"error": f"no {method} {path} here", "code": 5, "message": f"no {method} {path} here"}

    def posted(self, path):
        return [body for method, p, _, body in self.requests if method == "POST" and p == self.API + path]


@pytest.fixture
def kfp_server(monkeypatch, tmp_path):
    import kfp

    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    server = FakeKfpApiServer()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_submit_kfp_creates_a_run_from_the_pipeline_spec(capsys, compiled, job, kfp_server):
    code, out, err = genpipe(capsys, "submit", compiled, "--kfp-host", kfp_server.url, "--experiment", "denoise",
                             "--param", "train_steps=2000", "--param", "data_dir=gs://test-bucket/mnist",
                             "--job-id", "denoise nightly", "--service-account", "pipeline-runner", "--wait")
    assert code == 0, err
    [experiment] = kfp_server.posted("/experiments")
    assert experiment["display_name"] == "denoise"
    [run] = kfp_server.posted("/runs")
    assert run["display_name"] == "denoise nightly"
    assert run["experiment_id"] == "experiment-1"
    assert run["service_account"] == "pipeline-runner"
    assert run["pipeline_spec"] == job["pipelineSpec"]  # the PipelineSpec, not the PipelineJob around it
    assert run["runtime_config"]["pipeline_root"] == ROOT
    parameters = run["runtime_config"]["parameters"]
    assert set(parameters) == set(kubeflow_runner.runtime_parameters(job))
    assert parameters["data_dir"] == "gs://test-bucket/mnist"
    assert json.loads(parameters["train_args"])["num_steps"] == 2000
    assert f"{kfp_server.url}/#/runs/details/run-1" in out
    assert "SUCCEEDED" in out


def test_submit_kfp_wait_fails_with_the_run(capsys, compiled, kfp_server):
    kfp_server.final_state = "FAILED"
    code, out, _ = genpipe(capsys, "submit", compiled, "--kfp-host", kfp_server.url, "--wait")
    assert code == 1 and "FAILED" in out


def test_submit_kfp_reuses_the_experiment_and_overrides_caching(capsys, compiled, kfp_server):
    kfp_server.experiments.append({"experiment_id": "existing", "display_name": "Default"})
    code, _, err = genpipe(capsys, "submit", compiled, "--kfp-host", kfp_server.url + "/", "--no-cache",
                           "--pipeline-root", "gs://other-bucket/runs")
    assert code == 0, err
    assert not kfp_server.posted("/experiments")
    [run] = kfp_server.posted("/runs")
    assert run["experiment_id"] == "existing"
    assert run["runtime_config"]["pipeline_root"] == "gs://other-bucket/runs"
    tasks = run["pipeline_spec"]["root"]["dag"]["tasks"]
    assert _push_destination(run["pipeline_spec"]) == "gs://other-bucket/runs/serving/denoise_mnist"
    # The client sends the spec through MessageToDict, which leaves false out: {} is enable_cache=false.
    assert all(task.get("cachingOptions", {}).get("enableCache", False) is False for task in tasks.values())
    compiled_tasks = kubeflow_runner.load_job(compiled)["pipelineSpec"]["root"]["dag"]["tasks"]
    assert any(task.get("cachingOptions", {}).get("enableCache") for task in compiled_tasks.values())


def test_schedule_kfp_creates_a_recurring_run_with_a_seconds_field(capsys, compiled, job, kfp_server):
    code, out, err = genpipe(capsys, "schedule", compiled, "--cron", "30 3 * * *", "--kfp-host", kfp_server.url,
                             "--experiment", "nightly", "--name", "denoise-nightly", "--max-concurrent-runs", "3",
                             "--param", "noise_factor=0.25", "--start-time", "2030-01-01T00:00:00")
    assert code == 0, err
    [recurring] = kfp_server.posted("/recurringruns")
    assert recurring["display_name"] == "denoise-nightly"
    assert recurring["experiment_id"] == "experiment-1"
    assert recurring["trigger"]["cron_schedule"]["cron"] == "0 30 3 * * *"
    assert recurring["trigger"]["cron_schedule"]["start_time"].startswith("2030-01-01T00:00:00")
    assert int(recurring["max_concurrency"]) == 3
    assert recurring["mode"] == "ENABLE"
    assert recurring["no_catchup"] is True
    assert recurring["pipeline_spec"] == job["pipelineSpec"]
    assert recurring["runtime_config"]["pipeline_root"] == ROOT
    assert json.loads(recurring["runtime_config"]["parameters"]["transform_config"])["noise_factor"] == 0.25
    assert not kfp_server.posted("/runs"), "scheduling must not also start a run"
    assert "recurring-1" in out and "0 30 3 * * *" in out


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_kfp_host_refusing_connections_is_named(capsys, compiled):
    host = f"http://127.0.0.1:{_closed_port()}"
    code, _, err = genpipe(capsys, "submit", compiled, "--kfp-host", host)
    assert code == 2
    assert f"cannot reach Kubeflow Pipelines at {host}" in err


def test_kfp_api_errors_name_the_host(capsys, compiled, kfp_server, monkeypatch):
    monkeypatch.setattr(FakeKfpApiServer, "route", lambda self, method, path, body: (
        (200, {}) if path.endswith("/healthz") else
        (403, {"error": "forbidden", "code": 7, "message": "user cannot create runs in namespace kubeflow"})))
    code, _, err = genpipe(capsys, "submit", compiled, "--kfp-host", kfp_server.url)
    assert code == 2
    assert f"Kubeflow Pipelines at {kfp_server.url} refused the request: 403" in err
    assert "user cannot create runs" in err
    assert "--kfp-token TOKEN or KF_PIPELINES_TOKEN=TOKEN" in err  # no token was given: say how to give one


def test_kfp_token_from_the_flag_or_the_environment_goes_with_every_request(capsys, compiled, kfp_server,
                                                                             monkeypatch):
    kfp_server.token = "t0ken"
    monkeypatch.setenv(submit.KFP_TOKEN_ENV, "t0ken")
    code, out, err = genpipe(capsys, "submit", compiled, "--kfp-host", kfp_server.url, "--wait")
    assert code == 0, err
    assert kfp_server.posted("/runs") and "SUCCEEDED" in out
    assert set(kfp_server.authorizations) == {"Bearer t0ken"}  # the reachability check too
    monkeypatch.setenv(submit.KFP_TOKEN_ENV, "stale")
    code, _, err = genpipe(capsys, "schedule", compiled, "--cron", "0 3 * * *", "--kfp-host", kfp_server.url,
                           "--kfp-token", "t0ken")
    assert code == 0, err
    assert kfp_server.posted("/recurringruns") and set(kfp_server.authorizations) == {"Bearer t0ken"}


@pytest.mark.parametrize("token, expected", [
    (None, "answered 401 Unauthorized (the endpoint wants credentials: give a bearer token with --kfp-token TOKEN "
           "or KF_PIPELINES_TOKEN=TOKEN in the environment, e.g. $(kubectl -n PROFILE create token default-editor)"),
    ("wrong", "answered 401 Unauthorized (the endpoint did not accept the token of --kfp-token / KF_PIPELINES_TOKEN"),
])
def test_kfp_unauthorized_says_how_to_authenticate_at_once(capsys, compiled, kfp_server, token, expected):
    kfp_server.token = "t0ken"
    code, _, err = genpipe(capsys, "submit", compiled, "--kfp-host", kfp_server.url,
                           *(["--kfp-token", token] if token else []))
    assert code == 2 and f"Kubeflow Pipelines at {kfp_server.url} refused the request" in err
    assert " ".join(err.split()).find(expected) >= 0, err
    assert "t0ken" not in err
    assert len(kfp_server.requests) == 1, "one health check: no kfp.Client retries, no run"


def test_kfp_forbidden_with_a_token_names_the_namespace(capsys, compiled, kfp_server, monkeypatch):
    monkeypatch.setattr(FakeKfpApiServer, "route", lambda self, method, path, body: (
        (200, {}) if path.endswith("/healthz") else (403, {"message": "not allowed in namespace team-a"})))
    code, _, err = genpipe(capsys, "submit", compiled, "--kfp-host", kfp_server.url, "--kfp-token", "t0ken",
                           "--namespace", "team-a")
    assert code == 2 and "refused the request: 403" in err
    assert "the token's identity may not use the namespace team-a" in err


@pytest.mark.parametrize("status, expected", [
    (404, "no Kubeflow Pipelines v2 API at {url}: GET {url}/apis/v2beta1/healthz answered 404"),
    (503, "Kubeflow Pipelines at {url} is not serving"),
])
def test_kfp_host_without_a_kfp_api_is_named(capsys, compiled, kfp_server, monkeypatch, status, expected):
    monkeypatch.setattr(FakeKfpApiServer, "route", lambda self, method, path, body: (status, {}))
    code, _, err = genpipe(capsys, "submit", compiled, "--kfp-host", kfp_server.url)
    assert code == 2 and expected.format(url=kfp_server.url) in err
    assert len(kfp_server.requests) == 1, "one health check, no retries by kfp.Client"


def test_kfp_does_not_take_a_time_zone(capsys, compiled, kfp_server):
    code, _, err = genpipe(capsys, "schedule", compiled, "--cron", "0 3 * * *", "--kfp-host", kfp_server.url,
                           "--time-zone", "Europe/Paris")
    assert code == 2 and "CRON_SCHEDULE_TIMEZONE" in err
    assert not kfp_server.requests


# ------------------------------------------------------------------------------------------ local checks

@pytest.mark.parametrize("targets, expected", [
    ([], "where to run?"),
    (["--vertex", "--project", PROJECT, "--region", REGION, "--kfp-host", "http://127.0.0.1:1"], "not both"),
    (["--kfp-host", "http://127.0.0.1:1", "--project", PROJECT], "--project applies to Vertex AI"),
    (["--vertex", "--project", PROJECT, "--region", REGION, "--experiment", "x"],
     "--experiment applies to Kubeflow Pipelines"),
    (["--vertex", "--project", PROJECT, "--region", REGION, "--kfp-token", "t"],
     "--kfp-token applies to Kubeflow Pipelines"),
])
def test_exactly_one_target(capsys, compiled, targets, expected):
    code, _, err = genpipe(capsys, "submit", compiled, *targets)
    assert code == 2 and expected in err


def test_unknown_param_is_an_error_before_any_request(capsys, compiled, kfp_server):
    code, _, err = genpipe(capsys, "submit", compiled, "--kfp-host", kfp_server.url, "--param", "epochs=3")
    assert code == 2 and "--param epochs" in err and "train_steps" in err
    assert not kfp_server.requests


@pytest.fixture(scope="module")
def sample_and_style(tmp_path_factory):
    """Compiled files that need a check of data_dir: denoise on the embedded mnist-sample, on Fashion-MNIST and
    style without one."""
    folder = tmp_path_factory.mktemp("more-compiled")
    files = {"sample": folder / "denoise-sample.json", "style": folder / "style.json",
             "fashion": folder / "denoise-fashion.json"}
    assert cli.main(["compile", "denoise", "--image", "genpipe-test:1", "--pipeline-root", ROOT,
                     "--output", str(files["sample"])]) == 0
    assert cli.main(["compile", "denoise", "--dataset", "fashion_mnist", "--image", "genpipe-test:1",
                     "--pipeline-root", ROOT, "--output", str(files["fashion"])]) == 0
    assert cli.main(["compile", "style", "--image", "genpipe-test:1", "--pipeline-root", ROOT, "--style-image",
                     "gs://test-bucket/styles/wave.jpg", "--output", str(files["style"])]) == 0
    return {name: str(path) for name, path in files.items()}


@pytest.mark.parametrize("command", ["submit", "schedule"])
@pytest.mark.parametrize("which, params, expected", [
    ("denoise", ["train_args=notjson"], "runtime parameter train_args='notjson': expected a JSON object"),
    ("denoise", ["noise_factor=0"], "noise_factor)=0.0: the denoising pipeline needs a noise factor > 0"),
    ("denoise", ["noise_factor=-0.1"], "noise_factor)=-0.1: expected a number between 0 and 10"),
    ("sample", ["data_dir=gs://test-bucket/mnist"], "compiled for the dataset mnist-sample, the 5,000 digits inside "
                                                    "the image, which reads no data_dir. To train on the files there, "
                                                    "compile with --dataset mnist or --dataset fashion_mnist"),
    ("style", [], "has no data_dir: its ImageFolderExampleGen reads the folder of content images"),
    # The image holds no Fashion-MNIST and the ExampleGen never downloads: the run would stop at its first task.
    ("fashion", [], "has no data_dir: its MnistExampleGen reads the four fashion_mnist IDX files (train and t10k "
                    "images and labels, .gz or not) or a TFDS data dir with a prepared fashion_mnist, and the image "
                    "holds neither. Give --param data_dir=gs://BUCKET/PATH (or compile with --data-dir)"),
    ("style", ["data_dir=gs://test-bucket/content", "style_image=gs://test-bucket/styles/starry.jpg"],
     "--param style_image=gs://test-bucket/styles/starry.jpg: the style image is fixed when the pipeline is "
     "compiled. It names the pipeline and the model it pushes"),
])
def test_param_values_the_pipeline_would_refuse_are_errors_before_any_request(
        capsys, compiled, sample_and_style, kfp_server, command, which, params, expected):
    path = compiled if which == "denoise" else sample_and_style[which]
    cron = ["--cron", "0 3 * * *"] if command == "schedule" else []
    code, _, err = genpipe(capsys, command, path, *cron, "--kfp-host", kfp_server.url,
                           *[a for p in params for a in ("--param", p)])
    assert code == 2 and expected in " ".join(err.split()), err
    assert not kfp_server.requests


@pytest.mark.parametrize("cron, expected", [
    ("0 3 * *", "expected 5 fields"),
    ("0 0 3 * * *", "no seconds field"),
    ("0 24 * * *", "the hour field '24'"),
    ("61 3 * * *", "the minute field '61'"),
    ("0 3 0 * *", "the day of month field '0'"),
    ("0 3 * 13 *", "the month field '13'"),
    ("0 3 * * 7", "write Sunday as 0"),
    ("0 3 * * FUN", "the day of week field 'FUN'"),
    ("*/0 3 * * *", "step /0"),
    ("0 5-2 * * *", "ends before it starts"),
])
def test_bad_cron_names_the_field_before_any_request(capsys, compiled, kfp_server, cron, expected):
    code, _, err = genpipe(capsys, "schedule", compiled, "--cron", cron, "--kfp-host", kfp_server.url)
    assert code == 2 and expected in err, err
    assert not kfp_server.requests


@pytest.mark.parametrize("cron, vertex_cron, kfp_cron, zone", [
    ("0 3 * * *", "0 3 * * *", "0 0 3 * * *", None),
    ("@daily", "0 0 * * *", "0 0 0 * * *", None),
    ("*/15 9-17 * jan-mar mon,fri", "*/15 9-17 * 1-3 1,5", "0 */15 9-17 * 1-3 1,5", None),
    ("TZ=Europe/Paris 0 3 * * *", "0 3 * * *", "0 0 3 * * *", "Europe/Paris"),
])
def test_cron_conversion(cron, vertex_cron, kfp_cron, zone):
    assert submit.parse_cron(cron) == (vertex_cron, zone)
    assert submit.kfp_cron(vertex_cron) == kfp_cron


def test_a_file_that_is_not_a_compiled_pipeline(capsys, tmp_path):
    not_compiled = tmp_path / "config.json"
    not_compiled.write_text(json.dumps({"pipeline": "denoise"}))
    code, _, err = genpipe(capsys, "submit", not_compiled, "--kfp-host", "http://127.0.0.1:1")
    assert code == 2 and f"{not_compiled} is not a compiled pipeline" in err
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"pipelineSpec": {"root": {"dag": {"tasks": {}}}, "pipelineInfo": {"name": "x"},
                                                   "components": {"comp-a": {"notAField": 1}}}}))
    code, _, err = genpipe(capsys, "submit", broken, "--kfp-host", "http://127.0.0.1:1")
    assert code == 2 and "is not a KFP PipelineSpec" in err
    code, _, err = genpipe(capsys, "submit", tmp_path / "missing.json", "--kfp-host", "http://127.0.0.1:1")
    assert code == 2 and "missing.json" in err


def test_parameters_without_a_value_are_named(capsys, job, tmp_path, kfp_server):
    stripped = copy.deepcopy(job)
    stripped["runtimeConfig"].pop("parameterValues", None)
    for definition in stripped["pipelineSpec"]["root"]["inputDefinitions"]["parameters"].values():
        definition.pop("defaultValue", None)
    path = tmp_path / "no-defaults.json"
    path.write_text(json.dumps(stripped))
    code, _, err = genpipe(capsys, "submit", path, "--kfp-host", kfp_server.url, "--param", "data_dir=gs://b/d")
    assert code == 2 and "no value for the runtime parameter(s)" in err and "train_args" in err
    assert "data_dir" not in err.split("parameter(s)")[1].split(":")[0]
    assert not kfp_server.requests


def test_bad_times_and_counts(capsys, compiled, kfp_server):
    base = ["schedule", compiled, "--cron", "0 3 * * *", "--kfp-host", kfp_server.url]
    code, _, err = genpipe(capsys, *base, "--start-time", "tomorrow")
    assert code == 2 and "--start-time 'tomorrow'" in err
    code, _, err = genpipe(capsys, *base, "--start-time", "2030-02-01", "--end-time", "2030-01-01")
    assert code == 2 and "is not after --start-time" in err
    code, _, err = genpipe(capsys, *base, "--max-concurrent-runs", "0")
    assert code == 2 and "--max-concurrent-runs must be >= 1" in err
    assert not kfp_server.requests


def test_help_explains_the_cron_conversion(capsys):
    with pytest.raises(SystemExit):
        cli.main(["schedule", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "seconds first" in text and '"0 " + CRON' in text
