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

Locks only keep such runs apart in time: one after the other they would still overwrite (and, when
a component fails, TFX's cleanup deletes) each other's artifacts. So the first store that runs in a
root owns it: `claim_root` records the store in `<pipeline root>/.genpipe-store` and refuses runs on
any other store. A pipeline root on a remote file system (gs://...) cannot be flock'ed: it gets the
store's lock and the owner file (through tf.io.gfile) only.
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
from typing import Callable, Iterator, Optional

from components import files

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
    """Holds the store's lock, then the pipeline root's (a local one), for the body; yields the store lock's path."""
    with hold(metadata_path, pipeline_name, wait_seconds=wait_seconds, out=out) as path:
        root_lock = contextlib.nullcontext() if files.is_remote(pipeline_root) else hold(
            os.path.join(pipeline_root, ROOT_LOCK_NAME), pipeline_name, wait_seconds=wait_seconds, out=out,
            what="root")
        with root_lock:
            yield path


STORE_MARKER = ".genpipe-store"  # <pipeline root>/.genpipe-store: {"metadata": "<the owning store's absolute path>"}


class RootStoreError(ValueError):
    """The pipeline root holds the artifacts of another ML Metadata store's runs."""


def store_marker_path(pipeline_root: str) -> str:
    return os.path.join(pipeline_root, STORE_MARKER)


def root_store(pipeline_root: str) -> str:
    """The store that owns the root, as its `.genpipe-store` says; "" when it has none."""
    path = store_marker_path(pipeline_root)
    try:
        text = files.read_bytes(path).decode()
    except FileNotFoundError:
        return ""
    try:
        return json.loads(text)["metadata"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} should be JSON naming the ML Metadata store that owns the pipeline root, "
                         f'{{"metadata": "/path/to/metadata.sqlite"}}; it holds {text[:200]!r}') from error


def artifact_folder(pipeline_root: str) -> str:
    """One `<root>/<component>/<output>/<execution id>` folder already in the root; "" when there is none."""
    if not files.isdir(pipeline_root):
        return ""
    for node in sorted(files.listdir(pipeline_root)):
        node_dir = os.path.join(pipeline_root, node)
        if not files.isdir(node_dir):
            continue
        for key in sorted(files.listdir(node_dir)):
            key_dir = os.path.join(node_dir, key)
            if files.isdir(key_dir):
                execution = next((n for n in sorted(files.listdir(key_dir)) if n.isdigit()), None)
                if execution is not None:
                    return os.path.join(key_dir, execution)
    return ""


def _same_store(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _foreign_store(pipeline_root: str, owner: str, metadata_path: str) -> RootStoreError:
    marker = store_marker_path(pipeline_root)
    moved = ""
    if not os.path.exists(owner):
        moved = (f" {owner} does not exist on this machine: if the store moved, put its new path in {marker}; if "
                 f"it is gone, the root's artifacts belong to no store, so use another --pipeline-root.")
    return RootStoreError(
        f"the pipeline root {pipeline_root} holds the artifacts of runs on the ML Metadata store {owner} "
        f"({marker} says so), not on this run's store {metadata_path}. Every store numbers its executions "
        f"from 1, so runs of two stores in one root overwrite, and when a component fails delete, each other's "
        f"artifacts; this run changed nothing. Rerun with --metadata {owner} to use the root's store, or give "
        f"this store a root of its own with --pipeline-root DIR.{moved}")


def _write_marker(pipeline_root: str, metadata_path: str, replace: bool = False) -> bool:
    """Writes the owner file whole (temporary file, then rename); False when another run wrote one first
    (and `replace` is False)."""
    path = store_marker_path(pipeline_root)
    text = json.dumps({"metadata": os.path.abspath(metadata_path)}) + "\n"
    if not files.is_remote(pipeline_root):  # the root's lock keeps other runs out meanwhile
        files.write_text_whole(path, text)
        return True
    temporary = os.path.join(pipeline_root, f".{os.getpid()}.tmp{STORE_MARKER}")
    gfile = files.gfile()
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    gfile.makedirs(pipeline_root)
    with gfile.GFile(temporary, "w") as f:
        f.write(text)
    try:
        gfile.rename(temporary, path, overwrite=replace)
    except tf.errors.OpError:
        if not gfile.exists(path):
            raise
        gfile.remove(temporary)
        return False
    return True


def check_root(pipeline_root: str, metadata_path: str, recorded_here: Callable[[], bool]) -> bool:
    """Raises RootStoreError when the run's store must not use the pipeline root; True when it owns it.

    TFX writes a component's outputs to `<root>/<component>/<output>/<execution id>/` and every store
    numbers its executions from 1, so the store named in `<root>/.genpipe-store` owns the root. A root
    without that file that already holds such folders (from a genpipe that did not write the file)
    may go to this store only when `recorded_here()` says the store recorded artifacts of this
    pipeline under the root: a store that did not make the folders cannot tell which of them it would
    overwrite. A root whose owner file names a store that does not exist, and that holds no such
    folders, may go to this store.
    """
    owner = root_store(pipeline_root)
    if owner and _same_store(owner, metadata_path):
        return True
    folder = artifact_folder(pipeline_root)
    if owner and (os.path.exists(owner) or folder):
        raise _foreign_store(pipeline_root, owner, metadata_path)
    if not owner and folder and not recorded_here():
        raise RootStoreError(
            f"the pipeline root {pipeline_root} holds artifacts of earlier runs (e.g. {folder}) that this run's ML "
            f"Metadata store {metadata_path} did not record, and no {STORE_MARKER} there names their store. Every "
            f"store numbers its executions from 1, so this run would overwrite, and if a component fails delete, "
            f"them; this run changed nothing. Rerun with --metadata PATH of the store those runs used (by default "
            f"runs/metadata.sqlite; <pipeline root>/metadata.sqlite for runs given --pipeline-root alone), or use "
            f"another --pipeline-root.")
    return False


def claim_root(pipeline_root: str, metadata_path: str, recorded_here: Callable[[], bool]) -> None:
    """`check_root`, then records the run's store as the root's owner; called holding the locks (`hold_run`)."""
    if check_root(pipeline_root, metadata_path, recorded_here):
        return
    replace = bool(root_store(pipeline_root))
    if not _write_marker(pipeline_root, metadata_path, replace=replace):  # a remote root has no root lock
        owner = root_store(pipeline_root)
        if not _same_store(owner, metadata_path):
            raise _foreign_store(pipeline_root, owner, metadata_path)
