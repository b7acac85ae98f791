"""`genpipe compile`: every pipeline compiles for Kubeflow V2 / Vertex into a valid PipelineSpec.

The compiled files are checked against golden files in tests/golden/compile/ after the
volatile fields (SDK version, telemetry labels, code fingerprints) are normalised. After an
intended change, regenerate them with

    GENPIPE_UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/test_compile.py

and review the diff like code.
"""
import json
import os
import pathlib
import re
import sys

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from pipelines import cli, kubeflow_runner

IMAGE = "europe-west4-docker.pkg.dev/genpipe-test/pipelines/genpipe:test"
ROOT = "gs://genpipe-test-bucket/pipelines"
GOLDEN = pathlib.Path(__file__).parent / "golden" / "compile"
RESOLVERS = ["latest_blessed_model_resolver-model-blessing-resolver", "latest_blessed_model_resolver-model-resolver"]
STYLE_IMAGE = "gs://genpipe-test-bucket/styles/wave.jpg"
# Flags a pipeline cannot compile without: the style image names the style pipeline (one compiled file per style).
REQUIRED_FLAGS = {"style": ["--style-image", STYLE_IMAGE]}

# Pipeline -> its tasks in an order where every task comes after the tasks it depends on.
EXPECTED_TASKS = {
    "denoise": ["MnistExampleGen", "StatisticsGen", "SchemaGen", "Transform", "Trainer", *RESOLVERS,
                "GenerativeEvaluator", "Pusher"],
    "autoencoder": ["MnistExampleGen", "StatisticsGen", "SchemaGen", "Transform", "Trainer", *RESOLVERS,
                    "GenerativeEvaluator", "Pusher"],
    "vae": ["MnistExampleGen", "StatisticsGen", "SchemaGen", "Transform", "Trainer", "DomainClassifier", *RESOLVERS,
            "GenerativeEvaluator", "Pusher"],
    "gan": ["MnistExampleGen", "StatisticsGen", "SchemaGen", "Transform", "Trainer", "DomainClassifier", *RESOLVERS,
            "GenerativeEvaluator", "Pusher"],
    "faces": ["CelebAExampleGen", "StatisticsGen", "SchemaGen", "Transform", "Trainer", "DomainClassifier",
              *RESOLVERS, "GenerativeEvaluator", "Pusher"],
    "style": ["ImageFolderExampleGen", "StatisticsGen", "SchemaGen", "Transform", "Trainer", *RESOLVERS,
              "GenerativeEvaluator", "Pusher"],
}
BEAM_TASKS = ("ExampleGen", "StatisticsGen", "SchemaGen", "Transform", "GenerativeEvaluator")
# A code fingerprint inside JSON text inside JSON (escaped quotes, any depth).
_FINGERPRINT = re.compile(r'(code_fingerprint\\*"\s*:\s*\\*")[0-9a-f]{16}')


def compile_cli(tmp_path, pipeline, *flags):
    output = tmp_path / f"{pipeline}.json"
    code = cli.main(["compile", pipeline, "--image", IMAGE, "--pipeline-root", ROOT, "--output", str(output), *flags])
    assert code == 0
    return json.loads(output.read_text())


def normalised(job: dict) -> dict:
    """The compiled job without what changes with the TFX version or any edit of the project's code."""
    job = json.loads(_FINGERPRINT.sub(r"\1<code fingerprint>", json.dumps(job)))
    job.pop("labels", None)
    job["pipelineSpec"].pop("sdkVersion", None)
    return job


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compiled")
    return {name: compile_cli(folder, name, *REQUIRED_FLAGS.get(name, [])) for name in EXPECTED_TASKS}


def compiled_name(pipeline, *flags) -> str:
    """The pipeline name `genpipe compile PIPELINE FLAGS` gives (RunConfig.pipeline_name)."""
    args = cli.build_parser().parse_args(["compile", pipeline, "--image", IMAGE, "--pipeline-root", ROOT,
                                          "--output", "x.json", *flags])
    return cli.config_from_args(args).pipeline_name


@pytest.mark.parametrize("pipeline", sorted(EXPECTED_TASKS))
def test_compiled_pipeline_is_a_valid_pipeline_spec_naming_the_image(compiled, pipeline):
    job = compiled[pipeline]
    spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    assert spec.pipeline_info.name == compiled_name(pipeline, *REQUIRED_FLAGS.get(pipeline, []))
    assert job["runtimeConfig"]["gcsOutputDirectory"] == ROOT
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"].values()
    containers = [executor["container"] for executor in executors if "container" in executor]
    assert len(containers) == len(EXPECTED_TASKS[pipeline]) - len(RESOLVERS)
    assert {c["image"] for c in containers} == {IMAGE}
    for container in containers:
        assert container["command"][-1] == "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"


@pytest.mark.parametrize("pipeline", sorted(EXPECTED_TASKS))
def test_compiled_tasks_come_in_dependency_order(compiled, pipeline):
    tasks = compiled[pipeline]["pipelineSpec"]["root"]["dag"]["tasks"]
    expected = EXPECTED_TASKS[pipeline]
    assert sorted(tasks) == sorted(expected)
    for name, task in tasks.items():
        for dependency in task.get("dependentTasks", []):
            assert expected.index(dependency) < expected.index(name), f"{name} runs before {dependency}"
    # The chain that matters: data -> Transform -> Trainer -> evaluator -> Pusher.
    example_gen = expected[0]
    assert example_gen in tasks["Transform"]["dependentTasks"]
    assert "Transform" in tasks["Trainer"]["dependentTasks"]
    assert {"Trainer", "latest_blessed_model_resolver-model-resolver"} <= set(
        tasks["GenerativeEvaluator"]["dependentTasks"])
    assert "GenerativeEvaluator" in tasks["Pusher"]["dependentTasks"]
    if "DomainClassifier" in tasks:
        assert "DomainClassifier" in tasks["GenerativeEvaluator"]["dependentTasks"]
        # No ML Metadata resolver compiles for it: it keeps and finds classifiers under the root instead.
        reuse_dir = tasks["DomainClassifier"]["inputs"]["parameters"]["reuse_dir"]
        assert reuse_dir == {"runtimeValue": {"constant": f"{ROOT}/domain_classifiers"}}


@pytest.mark.parametrize("pipeline", sorted(EXPECTED_TASKS))
def test_compiled_pipeline_carries_the_runtime_parameters(compiled, pipeline):
    job = compiled[pipeline]
    parameters = kubeflow_runner.runtime_parameters(job)
    expected = {"data_dir", "train_args", "trainer_config", "transform_config"} | (
        {"style_config"} if pipeline == "style" else set())
    assert set(parameters) == expected
    preset = cli.config_lib.presets()[pipeline]
    assert json.loads(parameters["train_args"]["default"]) == {"num_steps": preset.train_steps}
    assert json.loads(parameters["transform_config"]["default"])["noise_factor"] == preset.noise_factor
    assert json.loads(parameters["trainer_config"]["default"])["batch_size"] == preset.batch_size
    # Both the KFP backend (the spec's defaults) and Vertex (the job's parameterValues) see the defaults.
    definitions = job["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]
    assert {name: d["defaultValue"] for name, d in definitions.items()} == job["runtimeConfig"]["parameterValues"]
    assert all(d["isOptional"] for d in definitions.values())
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    wired = {p["componentInputParameter"] for task in tasks.values()
             for p in task.get("inputs", {}).get("parameters", {}).values() if "componentInputParameter" in p}
    assert wired == expected
    example_gen = tasks[EXPECTED_TASKS[pipeline][0]]
    assert example_gen["inputs"]["parameters"]["data_dir"] == {"componentInputParameter": "data_dir"}
    assert "cachingOptions" not in example_gen  # its files are not fingerprinted at compile time
    assert tasks["Trainer"]["cachingOptions"] == {"enableCache": True}


@pytest.mark.parametrize("pipeline", sorted(EXPECTED_TASKS))
def test_compiled_pipeline_matches_its_golden_file(compiled, pipeline):
    path = GOLDEN / f"{pipeline}.json"
    actual = normalised(compiled[pipeline])
    if os.environ.get("GENPIPE_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
    assert path.exists(), f"no golden file {path}; run with GENPIPE_UPDATE_GOLDEN=1 to write it"
    assert actual == json.loads(path.read_text()), f"{pipeline} compiles differently from {path}"


def test_normalised_removes_only_volatile_fields(compiled):
    job = compiled["denoise"]
    text = json.dumps(normalised(job))
    assert "<code fingerprint>" in text and "sdkVersion" not in text
    assert _FINGERPRINT.search(text) is None and _FINGERPRINT.search(json.dumps(job))
    assert IMAGE in text and ROOT in text
    assert normalised(job)["pipelineSpec"]["root"]["dag"] == job["pipelineSpec"]["root"]["dag"]


def test_compiling_reads_no_local_data(tmp_path):
    job = compile_cli(tmp_path, "faces")  # no --data-dir: CelebA is not on this machine
    assert kubeflow_runner.runtime_parameters(job)["data_dir"]["default"] == ""
    flags = ["--style-image", STYLE_IMAGE, "--data-dir", "gs://genpipe-test-bucket/content"]
    job = compile_cli(tmp_path, "style", *flags)
    parameters = kubeflow_runner.runtime_parameters(job)
    assert parameters["data_dir"]["default"] == "gs://genpipe-test-bucket/content"
    assert json.loads(parameters["style_config"]["default"])["style_image"] == STYLE_IMAGE
    assert job["pipelineSpec"]["pipelineInfo"]["name"] == compiled_name("style", *flags)
    assert job["pipelineSpec"]["pipelineInfo"]["name"].startswith("style-wave")


def test_beam_args_reach_every_beam_task(tmp_path):
    """ExampleGen, statistics, schema, Transform and the evaluator run their Beam pipelines on Dataflow.

    (KubeflowV2DagRunner appends the pipeline's Beam args to every container's arguments; the
    entrypoint hands them to the executor, and executors without Beam ignore them.)
    """
    dataflow = ["--runner=DataflowRunner", "--project=genpipe-test", "--region=europe-west4",
                "--temp_location=gs://genpipe-test-bucket/tmp", "--max_num_workers=8"]
    job = compile_cli(tmp_path, "gan", *[f"--beam-arg={arg}" for arg in dataflow])
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
    beam_tasks = set()
    for name, executor in executors.items():
        if name.replace("_executor", "").endswith(BEAM_TASKS):
            args = executor["container"]["args"]
            assert args[-len(dataflow):] == dataflow, name
            beam_tasks.add(name)
    assert len(beam_tasks) == len(BEAM_TASKS)


def test_vertex_training_with_gpus_and_tpus(tmp_path):
    job = compile_cli(tmp_path, "faces", "--vertex-training", "--project", "genpipe-test", "--region", "europe-west4",
                      "--accelerator-type", "NVIDIA_TESLA_T4", "--accelerator-count", "2")
    trainer = job["pipelineSpec"]["deploymentSpec"]["executors"]["Trainer_executor"]["container"]
    assert "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor" in trainer["args"]
    config = json.loads(kubeflow_runner.runtime_parameters(job)["trainer_config"]["default"])
    assert config["ai_platform_enable_vertex"] is True
    assert config["ai_platform_vertex_region"] == "europe-west4"
    training = config["ai_platform_training_args"]
    assert training["project"] == "genpipe-test"
    (pool,) = training["job_spec"]["worker_pool_specs"]
    assert pool["machine_spec"] == {"machine_type": "n1-standard-8", "accelerator_type": "NVIDIA_TESLA_T4",
                                    "accelerator_count": 2}
    assert pool["container_spec"] == {"image_uri": IMAGE}
    assert config["variant"] == "dcgan64"  # the model's own settings travel with the cloud ones

    job = compile_cli(tmp_path, "gan", "--vertex-training", "--project", "genpipe-test", "--accelerator-type", "TPU_V3")
    config = json.loads(kubeflow_runner.runtime_parameters(job)["trainer_config"]["default"])
    (pool,) = config["ai_platform_training_args"]["job_spec"]["worker_pool_specs"]
    assert pool["machine_spec"] == {"machine_type": "cloud-tpu", "accelerator_type": "TPU_V3", "accelerator_count": 8}
    assert config["ai_platform_vertex_region"] == "us-central1"


def test_compiling_gpu_training_says_the_image_must_be_the_gpu_build(tmp_path, capsys):
    base = ["compile", "gan", "--image", IMAGE, "--pipeline-root", ROOT, "--output", str(tmp_path / "gan.json"),
            "--vertex-training", "--project", "genpipe-test"]
    assert cli.main([*base, "--accelerator-type", "NVIDIA_L4"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "the Trainer uses the NVIDIA_L4 GPUs only in the GPU build of the pipeline image (`make image-gpu`" in out
    assert f"--image {IMAGE} must be that build" in out
    assert cli.main([*base, "--accelerator-type", "TPU_V3"]) == 0
    assert "GPU build" not in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--accelerator-type", "NVIDIA_TESLA_T4"], "add --vertex-training"),
    (["--vertex-training"], "--vertex-training needs --project"),
    (["--vertex-training", "--project", "p", "--accelerator-type", "GTX_1080"], "not a Vertex AI accelerator"),
    (["--vertex-training", "--project", "p", "--accelerator-count", "2"], "needs --accelerator-type"),
])
def test_bad_training_flags_are_refused_before_writing(tmp_path, capsys, flags, message):
    output = tmp_path / "gan.json"
    output.write_text("previous definition")
    code = cli.main(["compile", "gan", "--image", IMAGE, "--pipeline-root", ROOT, "--output", str(output), *flags])
    assert code == 2
    assert message in capsys.readouterr().err
    assert output.read_text() == "previous definition"


@pytest.mark.parametrize("flags, message", [
    (["--image", IMAGE, "--output", "x.json"], "needs --pipeline-root"),
    (["--pipeline-root", ROOT, "--output", "x.json"], "needs --image"),
    (["--image", IMAGE, "--pipeline-root", "runs/kfp", "--output", "x.json"],
     "--pipeline-root runs/kfp is a path relative to this machine's directory"),
    (["--image", IMAGE, "--pipeline-root", ROOT, "--data-dir", "data/mnist", "--output", "x.json"],
     "--data-dir data/mnist is a path relative"),
    (["--image", IMAGE, "--pipeline-root", ROOT, "--output", "x.txt"], "expected a .json or .yaml"),
])
def test_compile_flag_errors(tmp_path, capsys, flags, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["compile", "denoise", *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_yaml_output_holds_the_same_job(tmp_path, compiled):
    output = tmp_path / "denoise.yaml"
    assert cli.main(["compile", "denoise", "--image", IMAGE, "--pipeline-root", ROOT, "--output", str(output)]) == 0
    assert normalised(kubeflow_runner.load_job(str(output))) == normalised(compiled["denoise"])


def test_parameter_values_from_shorthands_and_keys(compiled):
    style = compiled["style"]
    values = kubeflow_runner.parameter_values(style, [
        "train_steps=250", "vgg_weights=gs://b/vgg19_notop.h5", "trainer_config.learning_rate=0.01",
        "data_dir=gs://b/content"])
    assert set(values) == {"train_args", "trainer_config", "style_config", "data_dir"}
    assert json.loads(values["train_args"]) == {"num_steps": 250}
    trainer = json.loads(values["trainer_config"])
    assert trainer["vgg_weights"] == "gs://b/vgg19_notop.h5" and trainer["learning_rate"] == 0.01
    assert trainer["batch_size"] == 4 and trainer["style_image"] == STYLE_IMAGE  # untouched keys keep their defaults
    assert json.loads(values["style_config"])["vgg_weights"] == "gs://b/vgg19_notop.h5"
    assert values["data_dir"] == "gs://b/content"
    kubeflow_runner.check_values(style, {**_defaults(style), **values})

    denoise = kubeflow_runner.parameter_values(compiled["denoise"], ["noise_factor=0.3", "batch_size=64"])
    assert json.loads(denoise["transform_config"])["noise_factor"] == 0.3
    assert json.loads(denoise["trainer_config"])["batch_size"] == 64


@pytest.mark.parametrize("assignment, message", [
    ("style_image=gs://b/s.jpg", "not a runtime parameter"),
    ("vgg_weights=gs://b/vgg.h5", "this pipeline has no vgg_weights"),
    ("epochs=3", "not a runtime parameter"),
    ("train_steps=many", "train_args.num_steps=many: expected a int"),
    ("noise_factor", "expected NAME=VALUE"),
    ("trainer_config.batch_size=1.5", "expected a int"),
])
def test_parameter_value_errors(compiled, assignment, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        kubeflow_runner.parameter_values(compiled["denoise"], [assignment])


def _defaults(job) -> dict:
    return {name: p["default"] for name, p in kubeflow_runner.runtime_parameters(job).items()}


def _run_values(job, assignments) -> dict:
    """Every parameter's value for `assignments`, as genpipe submit builds them before checking."""
    return {**_defaults(job), **kubeflow_runner.parameter_values(job, assignments)}


def test_compiled_defaults_pass_the_checks_except_a_missing_data_dir(compiled):
    for pipeline in ("denoise", "autoencoder", "vae", "gan"):
        kubeflow_runner.check_values(compiled[pipeline], _defaults(compiled[pipeline]))
    for pipeline, example_gen in (("faces", "CelebAExampleGen"), ("style", "ImageFolderExampleGen")):
        with pytest.raises(ValueError, match=f"has no data_dir: its {example_gen} reads"):
            kubeflow_runner.check_values(compiled[pipeline], _defaults(compiled[pipeline]))
        kubeflow_runner.check_values(compiled[pipeline], _run_values(compiled[pipeline], ["data_dir=gs://b/data"]))


@pytest.mark.parametrize("pipeline, assignment, message", [
    ("denoise", "data_dir=gs://b/mnist", "compiled for the dataset mnist-sample, the 5,000 digits inside the image, "
                                         "which reads no data_dir. To train on the files there, compile with "
                                         "--dataset mnist or --dataset fashion_mnist"),
    ("denoise", "train_args=notjson", "runtime parameter train_args='notjson': expected a JSON object"),
    ("denoise", "trainer_config=[1, 2]", "runtime parameter trainer_config='[1, 2]': expected a JSON object"),
    ("denoise", "noise_factor=0", "transform_config.noise_factor (noise_factor)=0.0: the denoising pipeline needs "
                                  "a noise factor > 0"),
    ("denoise", "noise_factor=-0.5", "transform_config.noise_factor (noise_factor)=-0.5: expected a number between "
                                     "0 and 10"),
    ("denoise", "train_steps=0", "train_args.num_steps (train_steps)=0: expected a whole number >= 1"),
    ("denoise", "train_args={}", ""),
    ("gan", "batch_size=0", "trainer_config.batch_size (batch_size)=0: expected a whole number >= 1"),
    ("gan", "learning_rate=-1", "trainer_config.learning_rate (learning_rate)=-1.0: expected a number > 0"),
    ("gan", "trainer_config.checkpoint_every=0", "trainer_config.checkpoint_every=0: expected a whole number >= 1"),
    ("gan", "transform_config.noise_factor=0.3", "transform_config.noise_factor=0.3: gan-dcgan-mnist-sample reads "
                                                 "no noise; only the denoising pipeline does"),
    ("style", "trainer_config.style_image=gs://b/starry.jpg", "trainer_config.style_image='gs://b/starry.jpg': the "
                                                              "style image is fixed when the pipeline is compiled"),
    ("style", "style_config.style_image=gs://b/starry.jpg",
     "each style is its own compiled pipeline: `genpipe compile style --style-image URI ...`"),
])
def test_run_values_the_pipeline_would_refuse_are_errors(compiled, pipeline, assignment, message):
    job = compiled[pipeline]
    values = _run_values(job, [assignment, *(["data_dir=gs://b/content"] if pipeline == "style" else [])])
    if not message:  # a parameter without the checked key keeps only what it has: nothing to refuse
        kubeflow_runner.check_values(job, values)
        return
    with pytest.raises(ValueError, match=re.escape(message)):
        kubeflow_runner.check_values(job, values)


def test_style_image_is_no_runtime_parameter(compiled):
    style = compiled["style"]
    with pytest.raises(ValueError, match=re.escape("--param style_image=gs://b/starry.jpg: the style image is fixed "
                                                   "when the pipeline is compiled")):
        kubeflow_runner.parameter_values(style, ["style_image=gs://b/starry.jpg"])
    trainer = json.loads(_defaults(style)["trainer_config"])
    whole = json.dumps({**trainer, "style_image": "gs://b/starry.jpg"})
    with pytest.raises(ValueError, match="style image is fixed"):
        kubeflow_runner.check_values(style, {**_run_values(style, ["data_dir=gs://b/c"]), "trainer_config": whole})
    assert "style_image" not in kubeflow_runner.shorthands(kubeflow_runner.runtime_parameters(style))


def test_noise_factor_is_offered_only_where_noise_is_read(compiled, capsys):
    for pipeline in EXPECTED_TASKS:
        offered = "noise_factor" in kubeflow_runner.shorthands(kubeflow_runner.runtime_parameters(compiled[pipeline]))
        assert offered == (pipeline == "denoise"), pipeline
    with pytest.raises(ValueError, match=re.escape("--param noise_factor: gan-dcgan-mnist-sample reads no noise")):
        kubeflow_runner.parameter_values(compiled["gan"], ["noise_factor=0.3"])
    kubeflow_runner.describe(kubeflow_runner.CompiledPipeline("gan.json", compiled["gan"]), sys.stdout)
    out = capsys.readouterr().out
    assert "shorthands: batch_size, learning_rate, train_steps " in out
    assert "data_dir stays empty: mnist-sample is inside the image" in out
    kubeflow_runner.describe(kubeflow_runner.CompiledPipeline("faces.json", compiled["faces"]), sys.stdout)
    assert ("data_dir is empty: give it per run (--param data_dir=gs://BUCKET/PATH); the ExampleGen reads a folder "
            "with img_align_celeba/") in capsys.readouterr().out


def test_another_pipeline_root_moves_serving_dir_and_classifiers_compiled_under_the_old_one(compiled, tmp_path):
    job = compiled["gan"]
    moved = kubeflow_runner.relocated_job(job, "gs://other/root/")
    tasks = moved["pipelineSpec"]["root"]["dag"]["tasks"]
    push = json.loads(tasks["Pusher"]["inputs"]["parameters"]["push_destination"]["runtimeValue"]["constant"])
    assert push == {"filesystem": {"base_directory": "gs://other/root/serving/gan_dcgan_mnist_sample"}}
    reuse_dir = tasks["DomainClassifier"]["inputs"]["parameters"]["reuse_dir"]["runtimeValue"]["constant"]
    assert reuse_dir == "gs://other/root/domain_classifiers"
    json_format.ParseDict(moved["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    original = job["pipelineSpec"]["root"]["dag"]["tasks"]["Pusher"]["inputs"]["parameters"]["push_destination"]
    assert f"{ROOT}/serving/gan_dcgan_mnist_sample" in original["runtimeValue"]["constant"]  # the input is untouched
    for same in (ROOT, ROOT + "/", None, ""):
        assert kubeflow_runner.relocated_job(job, same) is job
    # A serving dir compiled outside the pipeline root stays where it is.
    elsewhere = compile_cli(tmp_path, "gan", "--serving-dir", "gs://serving-bucket/models")
    tasks = kubeflow_runner.relocated_job(elsewhere, "gs://other/root")["pipelineSpec"]["root"]["dag"]["tasks"]
    push = json.loads(tasks["Pusher"]["inputs"]["parameters"]["push_destination"]["runtimeValue"]["constant"])
    assert push == {"filesystem": {"base_directory": "gs://serving-bucket/models/gan_dcgan_mnist_sample"}}
    assert tasks["DomainClassifier"]["inputs"]["parameters"]["reuse_dir"]["runtimeValue"]["constant"] == \
        "gs://other/root/domain_classifiers"


def test_another_pipeline_root_moves_the_checkpoints_unless_set(compiled):
    job = compiled["gan"]
    moved = kubeflow_runner.relocated(job, "gs://other/root/", ["train_steps=5"])
    assert moved == ["trainer_config.checkpoint_root=gs://other/root/checkpoints", "train_steps=5"]
    values = kubeflow_runner.parameter_values(job, moved)
    assert json.loads(values["trainer_config"])["checkpoint_root"] == "gs://other/root/checkpoints"
    for kept in ([], ["trainer_config.checkpoint_root=gs://mine/ckpt"]):
        assert kubeflow_runner.relocated(job, ROOT, kept) == kept  # same root: nothing to move
    given = ["trainer_config.checkpoint_root=gs://mine/ckpt"]
    assert kubeflow_runner.relocated(job, "gs://other/root", given) == given
    assert kubeflow_runner.relocated(job, None, []) == []


def test_shorthand_keys_are_the_modules_config_keys():
    from tfx import v1 as tfx

    from trainer_modules import autoencoder, preprocessing, style_transfer, training

    assert (kubeflow_runner.CHECKPOINT_ROOT, kubeflow_runner.CHECKPOINT_EVERY) == (training.CHECKPOINT_ROOT,
                                                                                 training.CHECKPOINT_EVERY)
    assert (kubeflow_runner.BATCH_SIZE, kubeflow_runner.LEARNING_RATE) == (training.BATCH_SIZE, training.LEARNING_RATE)
    assert kubeflow_runner.NOISE_FACTOR == preprocessing.NOISE_FACTOR
    assert kubeflow_runner.VARIANT == autoencoder.VARIANT
    assert set(kubeflow_runner.NOISY_VARIANTS) <= set(autoencoder.VARIANTS)
    assert (kubeflow_runner.STYLE_IMAGE, kubeflow_runner.VGG_WEIGHTS) == (style_transfer.STYLE_IMAGE,
                                                                        style_transfer.VGG_WEIGHTS)
    assert kubeflow_runner.NUM_STEPS in tfx.proto.TrainArgs.DESCRIPTOR.fields_by_name
    keys = {key for targets in kubeflow_runner.ALIASES.values() for _, key in targets}
    assert keys == {kubeflow_runner.NUM_STEPS, preprocessing.NOISE_FACTOR, training.BATCH_SIZE,
                    training.LEARNING_RATE, style_transfer.VGG_WEIGHTS}
    assert {key for _, key in kubeflow_runner.VALUE_CHECKS} <= keys | {training.CHECKPOINT_EVERY}


def test_example_gens_that_need_a_data_dir_are_the_components():
    from components.celeba_example_gen import CelebAExampleGen
    from components.image_folder_example_gen import ImageFolderExampleGen

    assert set(kubeflow_runner.DATA_DIR_REQUIRED) == {CelebAExampleGen.__name__, ImageFolderExampleGen.__name__}
    assert set(kubeflow_runner.ROOT_LOCATIONS) <= {task for tasks in EXPECTED_TASKS.values() for task in tasks}


def test_load_job_rejects_what_is_not_a_compiled_pipeline(tmp_path):
    with pytest.raises(FileNotFoundError, match="genpipe compile"):
        kubeflow_runner.load_job(str(tmp_path / "missing.json"))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json is not a compiled pipeline"):
        kubeflow_runner.load_job(str(tmp_path / "broken.json"))
    (tmp_path / "other.json").write_text('{"components": {}}')
    with pytest.raises(ValueError, match="pipelineSpec"):
        kubeflow_runner.load_job(str(tmp_path / "other.json"))
    (tmp_path / "broken.yaml").write_text("pipelineSpec: {root: [unclosed\n")
    with pytest.raises(ValueError, match="broken.yaml is not a compiled pipeline"):
        kubeflow_runner.load_job(str(tmp_path / "broken.yaml"))


def test_local_faces_run_uses_every_core_for_its_example_gen(tmp_path):
    """The CelebA ExampleGen of a real (not smoke) local run gets the multi-processing DirectRunner."""
    from components.celeba_example_gen.fixture import write_celeba_fixture
    from pipelines import gan_pipeline

    data_dir = tmp_path / "celeba"
    write_celeba_fixture(str(data_dir), num_images=4)
    config = cli.config_from_args(cli.build_parser().parse_args(
        ["run", "faces", "--data-dir", str(data_dir), "--pipeline-root", str(tmp_path / "root"),
         "--beam-arg=--direct_num_workers=2"]))
    pipeline = gan_pipeline.create_pipeline(config)
    (example_gen,) = [c for c in pipeline.components if c.id == "CelebAExampleGen"]
    args = example_gen.executor_spec.beam_pipeline_args
    assert "--direct_running_mode=multi_processing" in args
    assert args.count("--direct_num_workers=2") == 1 and "--direct_num_workers=0" not in args
