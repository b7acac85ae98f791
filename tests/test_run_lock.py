"""One `genpipe run` at a time per ML Metadata store: the lock beside the SQLite file.

The lock holder is a separate small Python process (no TensorFlow), as a second cron or systemd
run would be; no test here runs a pipeline.
"""
import functools
import io
import json
import math
import os
import shlex
import subprocess
import sys
import time

import pytest

from pipelines import run_lock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Takes the lock the way `genpipe run` does, says so, and keeps it for argv[3] seconds.
HOLDER = """
import sys, time
from pipelines import run_lock
with run_lock.hold(sys.argv[1], sys.argv[2]):
    print("locked", flush=True)
    time.sleep(float(sys.argv[3]))
"""


@pytest.fixture
def start_holder():
    """Starts processes that hold a store's lock; kills those still running at the end."""
    processes = []

    def start(metadata_path, pipeline="denoise", seconds=60.0):
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        process = subprocess.Popen([sys.executable, "-c", HOLDER, metadata_path, pipeline, str(seconds)],
                                   stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)
        processes.append(process)
        assert process.stdout.readline().strip() == "locked", "the holder process did not take the lock"
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()


@pytest.fixture
def metadata_path(tmp_path):
    return str(tmp_path / "runs" / "metadata.sqlite")


def test_second_run_refuses_at_once_naming_the_lock_file_and_its_holder(start_holder, metadata_path):
    holder = start_holder(metadata_path, "denoise")
    lock_file = metadata_path + ".lock"
    details_before = run_lock.read_holder(lock_file)
    started = time.monotonic()
    with pytest.raises(run_lock.RunLockError) as refused:
        with run_lock.hold(metadata_path, "gan-dcgan-mnist-sample"):
            pytest.fail("got a lock another process holds")
    assert time.monotonic() - started < 2.0
    message = str(refused.value)
    assert isinstance(refused.value, ValueError)  # cli.main prints it as `genpipe: error: ...` and exits 2
    assert lock_file in message
    assert f"PID {holder.pid} " in message
    assert "pipeline denoise" in message
    assert f"started {details_before['started']}" in message and details_before["started"][:2] == "20"
    assert "--wait-for-lock [SECONDS]" in message
    assert run_lock.read_holder(lock_file) == details_before  # the refused run wrote nothing
    assert not os.path.exists(metadata_path)


def test_waiting_run_gives_up_after_its_limit_and_says_once_that_it_waits(start_holder, metadata_path):
    holder = start_holder(metadata_path)
    out = io.StringIO()
    started = time.monotonic()
    with pytest.raises(run_lock.RunLockError) as timed_out:
        with run_lock.hold(metadata_path, "denoise", wait_seconds=0.6, out=out):
            pytest.fail("got a lock another process holds")
    assert time.monotonic() - started >= 0.6
    assert "gave up after waiting" in str(timed_out.value) and f"PID {holder.pid} " in str(timed_out.value)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Waiting (up to 0.6 s) for PID")
    assert metadata_path + ".lock" in lines[0]


def test_waiting_run_starts_when_the_holder_finishes(start_holder, metadata_path):
    start_holder(metadata_path, seconds=1.0)
    out = io.StringIO()
    started = time.monotonic()
    with run_lock.hold(metadata_path, "vae-conv-mnist-sample", wait_seconds=math.inf, out=out) as lock_file:
        assert time.monotonic() - started > 0.2
        assert run_lock.read_holder(lock_file)["pid"] == os.getpid()
        assert run_lock.read_holder(lock_file)["pipeline"] == "vae-conv-mnist-sample"
    assert out.getvalue().startswith("Waiting (as long as it takes) for PID")


def test_lock_is_free_once_the_holder_is_killed(start_holder, metadata_path):
    holder = start_holder(metadata_path)
    holder.kill()  # SIGKILL: no cleanup runs; the kernel drops the flock with the process
    holder.wait()
    assert run_lock.read_holder(metadata_path + ".lock")["pid"] == holder.pid  # its details stay behind
    with run_lock.hold(metadata_path, "denoise") as lock_file:
        assert run_lock.read_holder(lock_file)["pid"] == os.getpid()


def test_stale_lock_file_of_a_dead_process_does_not_block(metadata_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    dead_pid = int(finished.stdout)
    os.makedirs(os.path.dirname(metadata_path))
    with open(metadata_path + ".lock", "w") as f:
        json.dump({"pid": dead_pid, "pipeline": "denoise", "started": "2024-01-01 03:00:00 +0000",
                   "command": "genpipe run denoise"}, f)
    with run_lock.hold(metadata_path, "denoise") as lock_file:
        assert run_lock.read_holder(lock_file)["pid"] == os.getpid()
    assert os.path.exists(lock_file) and run_lock.read_holder(lock_file) == {}  # released: no stale details


def test_one_lock_per_store(start_holder, tmp_path):
    start_holder(str(tmp_path / "a" / "metadata.sqlite"))
    with run_lock.hold(str(tmp_path / "b" / "metadata.sqlite"), "denoise"):
        pass


def test_negative_wait_is_rejected(metadata_path):
    with pytest.raises(ValueError, match="--wait-for-lock SECONDS must be"):
        with run_lock.hold(metadata_path, "denoise", wait_seconds=-1):
            pass


# ---------------------------------------------------------------------------
# `genpipe run` and run_pipeline: refused before anything is built or written


def test_wait_for_lock_flag():
    from pipelines import cli

    parse = cli.build_parser().parse_args
    assert parse(["run", "denoise"]).wait_for_lock is None
    assert parse(["run", "denoise", "--wait-for-lock"]).wait_for_lock == math.inf
    assert parse(["run", "denoise", "--wait-for-lock", "--summary", "s.json"]).wait_for_lock == math.inf
    assert parse(["run", "denoise", "--wait-for-lock", "90"]).wait_for_lock == 90.0
    assert parse(["run", "denoise", "--wait-for-lock=1.5"]).wait_for_lock == 1.5


def test_run_pipeline_refuses_before_building_the_pipeline(start_holder, tmp_path):
    from pipelines import cli, local_runner

    metadata = str(tmp_path / "store" / "metadata.sqlite")
    root = tmp_path / "root"
    holder = start_holder(metadata)
    config = cli.config_from_args(cli.build_parser().parse_args(
        ["run", "denoise", "--pipeline-root", str(root), "--metadata", metadata]))

    def create_pipeline(config):
        pytest.fail("the pipeline was built while another run held the store")

    with pytest.raises(run_lock.RunLockError, match=f"PID {holder.pid} "):
        local_runner.run_pipeline(config, create_pipeline, out=io.StringIO())
    with pytest.raises(run_lock.RunLockError, match="gave up after waiting"):
        local_runner.run_pipeline(config, create_pipeline, out=io.StringIO(), wait_for_lock=0.3)
    assert not root.exists() and not os.path.exists(metadata)


def test_cli_run_exits_2_with_the_holders_details(start_holder, tmp_path, capsys):
    from pipelines import cli

    metadata = str(tmp_path / "store" / "metadata.sqlite")
    root = tmp_path / "root"
    holder = start_holder(metadata, "denoise")
    assert cli.main(["run", "denoise", "--pipeline-root", str(root), "--metadata", metadata]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genpipe: error: another genpipe run is using this ML Metadata store")
    assert f"PID {holder.pid} " in err and metadata + ".lock" in err and "--wait-for-lock" in err

    assert cli.main(["run", "denoise", "--pipeline-root", str(root), "--metadata", metadata,
                     "--wait-for-lock", "0.3"]) == 2
    captured = capsys.readouterr()
    assert "Waiting (up to 0.3 s)" in captured.out and "gave up after waiting" in captured.err
    assert not root.exists() and not os.path.exists(metadata)


def test_runs_on_two_stores_still_refuse_to_share_a_pipeline_root(start_holder, tmp_path):
    """Each store numbers its executions from 1, so two runs on one root would write the same artifact
    folders: the second run refuses, naming the root's lock, and neither its store nor the root's
    artifacts are touched."""
    from pipelines import cli, local_runner

    root = tmp_path / "root"
    holder = start_holder(str(root / run_lock.ROOT_LOCK_NAME), "denoise")
    other_store = str(tmp_path / "other" / "metadata.sqlite")
    config = cli.config_from_args(cli.build_parser().parse_args(
        ["run", "denoise", "--pipeline-root", str(root), "--metadata", other_store]))

    def create_pipeline(config):
        pytest.fail("the pipeline was built while another run held its root")

    with pytest.raises(run_lock.RunLockError) as refused:
        local_runner.run_pipeline(config, create_pipeline, out=io.StringIO())
    message = str(refused.value)
    assert message.startswith("another genpipe run is using this pipeline root")
    assert f"PID {holder.pid} " in message and str(root / "pipeline-root.lock") in message
    assert sorted(os.listdir(root)) == ["pipeline-root.lock"] and not os.path.exists(other_store)
    # The store's lock was released with the refusal: a run on that store alone goes ahead.
    with run_lock.hold(other_store, "denoise"):
        pass


# ---------------------------------------------------------------------------
# The store that first ran in a pipeline root owns it: runs on other stores are refused, even one after the other


def _config(*flags):
    from pipelines import cli

    return cli.config_from_args(cli.build_parser().parse_args(["run", "denoise", *flags]))


def _claim(config):
    """What run_pipeline does before it builds the pipeline."""
    from pipelines import local_runner

    recorded_here = functools.partial(local_runner.recorded_in_root, config)
    run_lock.check_root(config.pipeline_root, config.metadata_path, recorded_here)
    with run_lock.hold_run(config.metadata_path, config.pipeline_root, config.pipeline_name):
        run_lock.claim_root(config.pipeline_root, config.metadata_path, recorded_here)


def _files(root):
    """Every file under root -> its bytes."""
    result = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                result[os.path.relpath(path, root)] = f.read()
    return result


def _artifacts_of_a_run(root):
    """A few output folders and the summary as a run on the root's store leaves them."""
    for path, text in [("MnistExampleGen/examples/1/Split-train/data_tfrecord-00000-of-00001.gz", "A's examples"),
                       ("Transform/transform_graph/5/transform_fn/saved_model.pb", "A's transform graph"),
                       ("last_run_summary.json", json.dumps({"pipeline": "denoise-mnist-sample", "blessed": True}))]:
        os.makedirs(os.path.dirname(os.path.join(root, path)), exist_ok=True)
        with open(os.path.join(root, path), "w") as f:
            f.write(text)


@pytest.fixture
def owned_root(tmp_path):
    """runs/denoise-mnist-sample, owned by the shared runs/metadata.sqlite (`genpipe run denoise`), with
    artifacts; and the config of `genpipe run denoise --pipeline-root runs/denoise-mnist-sample`, whose store
    is <root>/metadata.sqlite."""
    root = tmp_path / "runs" / "denoise-mnist-sample"
    shared_store = str(tmp_path / "runs" / "metadata.sqlite")
    _claim(_config("--pipeline-root", str(root), "--metadata", shared_store))
    _artifacts_of_a_run(root)
    other = _config("--pipeline-root", str(root))
    assert other.metadata_path == str(root / "metadata.sqlite")
    return root, shared_store, other


def test_run_on_another_store_is_refused_by_the_roots_owner_and_changes_nothing(owned_root):
    from pipelines import local_runner

    root, shared_store, other = owned_root
    with open(root / run_lock.STORE_MARKER) as f:
        assert json.load(f) == {"metadata": shared_store}
    before = _files(root)

    def create_pipeline(config):
        pytest.fail("the pipeline was built on a root another store owns")

    with pytest.raises(run_lock.RootStoreError) as refused:
        local_runner.run_pipeline(other, create_pipeline, out=io.StringIO())
    message = str(refused.value)
    assert isinstance(refused.value, ValueError)  # `genpipe: error: ...`, exit 2
    assert message.startswith(f"the pipeline root {root} holds the artifacts of runs on the ML Metadata store "
                              f"{shared_store} ({root / run_lock.STORE_MARKER} says so), not on this run's store "
                              f"{other.metadata_path}.")
    assert f"Rerun with --metadata {shared_store} to use the root's store" in message
    assert "--pipeline-root DIR" in message and "this run changed nothing" in message
    assert _files(root) == before and not os.path.exists(other.metadata_path)
    _claim(_config("--pipeline-root", str(root), "--metadata", shared_store))  # the owner runs on


def test_the_owning_store_is_recognised_through_a_symlink(tmp_path):
    store = tmp_path / "runs" / "metadata.sqlite"
    _claim(_config("--pipeline-root", str(tmp_path / "root"), "--metadata", str(store)))
    os.symlink(tmp_path / "runs", tmp_path / "link")
    _claim(_config("--pipeline-root", str(tmp_path / "root"), "--metadata", str(tmp_path / "link" / "metadata.sqlite")))
    assert run_lock.root_store(str(tmp_path / "root")) == str(store)


def _store_with_artifact(metadata_path, pipeline_name, uri):
    """An ML Metadata store that recorded one artifact of the pipeline at `uri`, as a TFX run records it."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata_path
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(connection)
    context_type = store.put_context_type(metadata_store_pb2.ContextType(name="pipeline"))
    artifact_type = store.put_artifact_type(metadata_store_pb2.ArtifactType(name="Examples"))
    [context] = store.put_contexts([metadata_store_pb2.Context(type_id=context_type, name=pipeline_name)])
    [artifact] = store.put_artifacts([metadata_store_pb2.Artifact(type_id=artifact_type, uri=uri)])
    store.put_attributions_and_associations([metadata_store_pb2.Attribution(artifact_id=artifact, context_id=context)],
                                            [])


def test_root_from_before_the_owner_file_goes_only_to_the_store_that_recorded_its_artifacts(tmp_path):
    from pipelines import local_runner

    root = tmp_path / "root"
    _artifacts_of_a_run(root)
    before = _files(root)
    elsewhere = _config("--pipeline-root", str(root), "--metadata", str(tmp_path / "elsewhere.sqlite"))
    _store_with_artifact(elsewhere.metadata_path, elsewhere.pipeline_name, str(tmp_path / "root2" / "x" / "y" / "1"))
    for config in (_config("--pipeline-root", str(root), "--metadata", str(tmp_path / "new.sqlite")), elsewhere):
        assert not local_runner.recorded_in_root(config)
        with pytest.raises(run_lock.RootStoreError) as refused:
            _claim(config)
        assert str(refused.value).startswith(
            f"the pipeline root {root} holds artifacts of earlier runs (e.g. {root}/MnistExampleGen/examples/1) "
            f"that this run's ML Metadata store {config.metadata_path} did not record")
        assert "--metadata PATH of the store those runs used" in str(refused.value)
        assert _files(root) == before

    owner = _config("--pipeline-root", str(root), "--metadata", str(tmp_path / "owner.sqlite"))
    _store_with_artifact(owner.metadata_path, owner.pipeline_name, str(root / "MnistExampleGen" / "examples" / "1"))
    assert local_runner.recorded_in_root(owner)
    _claim(owner)
    assert run_lock.root_store(str(root)) == owner.metadata_path
    with pytest.raises(run_lock.RootStoreError, match="holds the artifacts of runs on the ML Metadata store"):
        _claim(elsewhere)


def test_owner_file_naming_a_store_that_is_gone(tmp_path):
    """An empty root goes to the next store; a root with artifacts is refused, saying what to do."""
    root = tmp_path / "root"
    gone = str(tmp_path / "gone" / "metadata.sqlite")
    _claim(_config("--pipeline-root", str(root), "--metadata", gone))
    new = _config("--pipeline-root", str(root), "--metadata", str(tmp_path / "new.sqlite"))
    _claim(new)
    assert run_lock.root_store(str(root)) == new.metadata_path

    root = tmp_path / "root2"
    _claim(_config("--pipeline-root", str(root), "--metadata", gone))
    _artifacts_of_a_run(root)
    with pytest.raises(run_lock.RootStoreError) as refused:
        _claim(_config("--pipeline-root", str(root), "--metadata", new.metadata_path))
    assert (f"{gone} does not exist on this machine: if the store moved, put its new path in "
            f"{root / run_lock.STORE_MARKER}") in str(refused.value)
    assert run_lock.root_store(str(root)) == gone


def test_remote_root_takes_no_flock_and_keeps_its_owner_file_through_gfile(tmp_path, monkeypatch):
    """tf.io.gfile's ram:// file system stands in for gs://."""
    from components import files

    monkeypatch.chdir(tmp_path)
    root = f"ram://genpipe-test-{os.getpid()}/root"
    store = str(tmp_path / "metadata.sqlite")
    with run_lock.hold_run(store, root, "denoise"):
        run_lock.claim_root(root, store, lambda: pytest.fail("an empty root needs no store's records"))
    assert os.listdir(tmp_path) == ["metadata.sqlite.lock"]  # no local folder named after the URI
    assert run_lock.root_store(root) == store
    files.gfile().makedirs(f"{root}/MnistExampleGen/examples/1")
    assert run_lock.artifact_folder(root) == f"{root}/MnistExampleGen/examples/1"
    with pytest.raises(run_lock.RootStoreError, match=f"the pipeline root {root} holds the artifacts of runs on "
                                                      f"the ML Metadata store {store}"):
        run_lock.claim_root(root, str(tmp_path / "other.sqlite"), lambda: False)


# ---------------------------------------------------------------------------
# A run that stops before its components still replaces the previous run's summaries


def _old_summary(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"pipeline": "denoise-mnist-sample", "blessed": True, "pushed": True, "error": None}, f)


def _read(path):
    with open(path) as f:
        return json.load(f)


def _assert_stopped_summary(summary, error_start, root, metadata):
    from pipelines import local_runner

    shape = set(local_runner.empty_summary("", None, None, {})) | {"wall_seconds", "log", "failed_component", "error"}
    assert set(summary) == shape
    assert summary["error"].startswith(error_start)
    assert summary["failed_component"] is None and summary["components"] == {} and summary["log"] is None
    assert summary["pushed"] is False and summary["blessed"] is None and summary["not_pushed_reason"]
    assert (summary["pipeline_root"], summary["metadata"]) == (root, metadata)


def test_lock_refusal_replaces_the_previous_summary(start_holder, tmp_path, capsys):
    from pipelines import cli

    metadata = str(tmp_path / "store" / "metadata.sqlite")
    root = tmp_path / "root"
    summary = str(tmp_path / "reports" / "denoise-summary.json")
    _old_summary(summary)
    start_holder(metadata, "denoise")
    assert cli.main(["run", "denoise", "--pipeline-root", str(root), "--metadata", metadata,
                     "--summary", summary]) == 2
    assert "another genpipe run is using this ML Metadata store" in capsys.readouterr().err
    written = _read(summary)
    _assert_stopped_summary(written, "RunLockError: another genpipe run is using this ML Metadata store",
                            str(root), metadata)
    assert written["pipeline"] == "denoise-mnist-sample"
    assert not root.exists()  # a root that does not exist yet gets no summary

    assert cli.main(["run", "denoise", "--variant", "dense", "--summary", summary]) == 2
    _assert_stopped_summary(_read(summary), "ValueError: --variant 'dense' is not a variant of denoise", None, None)
    assert _read(summary)["pipeline"] == "denoise"
    assert sorted(os.listdir(tmp_path / "reports")) == ["denoise-summary.json"]


def test_store_refusal_replaces_the_summaries_and_nothing_else(owned_root, capsys):
    from pipelines import cli

    root, shared_store, other = owned_root
    summary = str(root.parent / "denoise-summary.json")
    _old_summary(summary)
    before = _files(root)
    assert cli.main(["run", "denoise", "--pipeline-root", str(root), "--summary", summary]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"genpipe: error: the pipeline root {root} holds the artifacts of runs on")
    assert f"summary JSON: {summary}" in captured.out
    written = _read(summary)
    _assert_stopped_summary(written, "RootStoreError: the pipeline root", str(root), other.metadata_path)
    assert _read(root / "last_run_summary.json") == written
    after = _files(root)
    del before["last_run_summary.json"], after["last_run_summary.json"]
    assert after == before and not os.path.exists(other.metadata_path)


# ---------------------------------------------------------------------------
# pipelines/deploy/: the cron and systemd examples call `genpipe run` with flags it accepts

DEPLOY = os.path.join(REPO, "pipelines", "deploy")


def _unit(name):
    """systemd unit file -> {key: value} (the examples set each key once)."""
    with open(os.path.join(DEPLOY, name)) as f:
        return dict(line.strip().split("=", 1) for line in f if "=" in line and not line.startswith(("#", ";")))


def _genpipe_args(command):
    words = shlex.split(command)
    binary = next(w for w in words if w.endswith("/bin/genpipe"))
    return binary, words[words.index(binary) + 1:]


def test_deploy_examples_run_denoise_nightly_from_the_venv_with_a_bounded_wait():
    from pipelines import cli

    service, timer = _unit("genpipe-denoise.service"), _unit("genpipe-denoise.timer")
    assert service["Type"] == "oneshot" and service["SyslogIdentifier"] == "genpipe-denoise"
    binary, service_args = _genpipe_args(service["ExecStart"])
    assert binary == service["WorkingDirectory"] + "/.venv/bin/genpipe"  # runs/ resolves inside the checkout
    assert timer["Unit"] == "genpipe-denoise.service" and timer["OnCalendar"] == "*-*-* 03:00:00"
    assert timer["WantedBy"] == "timers.target"

    with open(os.path.join(DEPLOY, "genpipe.crontab")) as f:
        entries = [line.split(None, 5) for line in f if line.strip() and not line.startswith("#")]
    assert len(entries) == 1 and entries[0][:5] == ["0", "3", "*", "*", "*"]
    command = entries[0][5]
    assert "%" not in command  # cron turns % into newlines
    assert "systemd-cat -t genpipe-denoise" in command
    binary, cron_args = _genpipe_args(command)
    assert binary == ".venv/bin/genpipe" and command.startswith(f"cd {service['WorkingDirectory']} && ")

    for args in (service_args, cron_args):
        parsed = cli.build_parser().parse_args(args)
        assert parsed.command == "run" and parsed.pipeline == "denoise"
        assert parsed.summary == "runs/denoise-summary.json" and parsed.wait_for_lock == 7200
