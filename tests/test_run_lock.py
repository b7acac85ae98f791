"""One `genpipe run` at a time per ML Metadata store: the lock beside the SQLite file.

The lock holder is a separate small Python process (no TensorFlow), as a second cron or systemd
run would be; no test here runs a pipeline.
"""
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
