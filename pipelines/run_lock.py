"""One `genpipe run` at a time per ML Metadata store and per pipeline root: advisory lock files.

Two LocalDagRunner runs on one SQLite store (by default runs/metadata.sqlite, shared by every
pipeline) can interleave their writes and leave executions half-recorded, so a run holds
`<metadata_path>.lock` from before it builds the pipeline until its summary is written. The lock is
an `fcntl.flock` on that file: the kernel drops it when the holder's process dies, however it dies,
so a lock file left behind by a killed run never blocks the next one. The file only tells others
who holds the lock (PID, pipeline, start time, command line); it is never deleted, because deleting
a flock'ed file lets two processes lock two different files of the same name.

Runs on different stores may still share a pipeline root (`--metadata FILE` without
`--pipeline-root`): each store numbers its executions from 1, so their artifacts would land in the
same `<root>/<component>/<output>/<execution id>/` folders. A run therefore also holds
`<pipeline root>/pipeline-root.lock`, taken after the store's lock (always in that order, so two
waiting runs cannot deadlock).
"""
import contextlib
import errno
import fcntl
import json
import math
import os
import shlex
import socket
import sys
import time
from typing import Iterator, Optional

LOCK_SUFFIX = ".lock"
WAIT_FLAG = "--wait-for-lock"
POLL_SECONDS = 0.2


class RunLockError(ValueError):
    """Another run holds the metadata store's lock (and this one did not, or could no longer, wait)."""


def lock_path(metadata_path: str) -> str:
    """The lock file beside an ML Metadata SQLite file."""
    return os.path.abspath(metadata_path) + LOCK_SUFFIX


def read_holder(path: str) -> dict:
    """What the lock file says about its holder; {} when it is empty or not ours to read."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return {}
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def describe_holder(holder: dict) -> str:
    """'PID 123 (pipeline denoise, started 2024-11-24 03:00:01, command: genpipe run denoise)'."""
    if not holder.get("pid"):
        return "a process that has not written its details yet"
    details = [f"pipeline {holder.get('pipeline') or '?'}", f"started {holder.get('started') or '?'}"]
    if holder.get("host") and holder["host"] != socket.gethostname():
        details.append(f"host {holder['host']}")
    if holder.get("command"):
        details.append(f"command: {holder['command']}")
    return f"PID {holder['pid']} ({', '.join(details)})"


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _current_holder(path: str) -> dict:
    holder = read_holder(path)
    if not holder:  # the holder may be between taking the lock and writing its details
        time.sleep(0.05)
        holder = read_holder(path)
    return holder


def _write_holder(fd: int, pipeline_name: str) -> None:
    holder = {
        "pid": os.getpid(),
        "pipeline": pipeline_name,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": shlex.join(sys.argv),
        "host": socket.gethostname(),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)


ROOT_LOCK_NAME = "pipeline-root"  # <pipeline root>/pipeline-root.lock
_WHY = {
    "store": ("this ML Metadata store", "Two runs on one SQLite store can corrupt it"),
    "root": ("this pipeline root", "Two runs on one pipeline root can write their artifacts into the same folders"),
}


def _refusal(path: str, holder: dict, what: str = "store") -> RunLockError:
    using, why = _WHY[what]
    return RunLockError(
        f"another genpipe run is using {using}: {describe_holder(holder)} holds {path}. "
        f"{why}, so this run changed nothing. Let that run finish, "
        f"or rerun with {WAIT_FLAG} [SECONDS] to wait for it (SECONDS: at most that long; no value: "
        f"as long as it takes).")


def _timeout(path: str, holder: dict, waited: float) -> RunLockError:
    return RunLockError(
        f"gave up after waiting {waited:.0f} s for {path}, still held by {describe_holder(holder)}; "
        f"this run changed nothing. Raise the {WAIT_FLAG} SECONDS, or give no value to wait as long as it "
        f"takes.")


@contextlib.contextmanager
def hold(metadata_path: str, pipeline_name: str, wait_seconds: Optional[float] = None,
         out=None, what: str = "store") -> Iterator[str]:
    """Holds the lock of the store at `metadata_path` for the body; yields the lock file's path.

    what: "store", or "root" when `metadata_path` is `<pipeline root>/pipeline-root` (`hold_run`).

    wait_seconds: None refuses at once when another process holds the lock; a number waits at most
    that long (math.inf: as long as it takes), saying once on `out` that it waits. Either way a run
    that does not get the lock raises RunLockError before anything touches the store.
    """
    if wait_seconds is not None and not wait_seconds >= 0:
        raise ValueError(f"{WAIT_FLAG} SECONDS must be a number of seconds >= 0, not {wait_seconds}")
    out = out or sys.stdout
    path = lock_path(metadata_path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        if not _try_lock(fd):
            holder = _current_holder(path)
            if wait_seconds is None:
                raise _refusal(path, holder, what)
            limit = "as long as it takes" if math.isinf(wait_seconds) else f"up to {wait_seconds:g} s"
            print(f"Waiting ({limit}) for {describe_holder(holder)} to release {path} ...", file=out, flush=True)
            started = time.monotonic()
            while not _try_lock(fd):
                waited = time.monotonic() - started
                if waited >= wait_seconds:
                    raise _timeout(path, _current_holder(path), waited)
                time.sleep(min(POLL_SECONDS, max(wait_seconds - waited, 0.0)))
        _write_holder(fd, pipeline_name)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # no stale details once released; the kernel drops the lock with the fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def hold_run(metadata_path: str, pipeline_root: str, pipeline_name: str, wait_seconds: Optional[float] = None,
             out=None) -> Iterator[str]:
    """Holds the store's lock, then the pipeline root's, for the body; yields the store lock's path."""
    with hold(metadata_path, pipeline_name, wait_seconds=wait_seconds, out=out) as path:
        with hold(os.path.join(pipeline_root, ROOT_LOCK_NAME), pipeline_name, wait_seconds=wait_seconds, out=out,
                  what="root"):
            yield path
