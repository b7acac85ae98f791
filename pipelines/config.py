"""Run configuration: one record per run, built from a preset plus command-line overrides.

`genpipe run denoise` is `presets()["denoise"]` with the flags applied; tests shrink it
with `smoke=True` instead of keeping a second copy of the pipeline.
"""
import dataclasses
import hashlib
import os
import pathlib
from typing import Dict, List

from components.mnist_example_gen.sources import KNOWN_DATASETS as DATASETS
from trainer_modules import contract


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

    @property
    def pipeline_name(self) -> str:
        """Unique per pipeline, variant and dataset, so blessing baselines never cross datasets."""
        base = self.pipeline if self.pipeline == "denoise" else f"{self.pipeline}-{self.variant}"
        return f"{base}-{self.dataset.replace('_', '-')}"

    @property
    def model_name(self) -> str:
        """Directory name under the serving dir: `<serving_dir>/<model_name>/<version>/`."""
        return self.pipeline_name.replace("-", "_")

    def resolved(self, runs_dir: str = "runs") -> "RunConfig":
        """Fills in default paths under `runs_dir` and validates the values."""
        config = dataclasses.replace(self)
        config.pipeline_root = os.path.abspath(config.pipeline_root or os.path.join(runs_dir, config.pipeline_name))
        config.serving_dir = os.path.abspath(config.serving_dir or os.path.join(runs_dir, "serving"))
        config.metadata_path = config.metadata_path or os.path.join(config.pipeline_root, "metadata.sqlite")
        config.data_dir = os.path.abspath(config.data_dir) if config.data_dir else ""
        config.validate()
        return config

    def validate(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; expected one of {', '.join(DATASETS)}")
        for name in ("train_steps", "eval_steps", "batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_examples_per_split < 0:
            raise ValueError(f"max_examples_per_split must be >= 0, got {self.max_examples_per_split}")
        if not 0.0 <= self.noise_factor <= 10.0:
            raise ValueError(f"--noise-factor must be between 0 and 10, got {self.noise_factor}")
        if self.variant == "denoising" and self.noise_factor <= 0:
            raise ValueError("the denoising pipeline needs --noise-factor > 0")
        if self.learning_rate <= 0:
            raise ValueError(f"--learning-rate must be > 0, got {self.learning_rate}")
        if self.data_dir and not os.path.isdir(self.data_dir):
            raise ValueError(f"--data-dir {self.data_dir} is not a directory")

    def smoke(self) -> "RunConfig":
        """A laptop/test-sized copy: a few steps on a few hundred examples, lenient thresholds."""
        return dataclasses.replace(
            self, train_steps=4, eval_steps=1, batch_size=16, checkpoint_every=2, max_examples_per_split=64,
            thresholds={}, baseline_comparison={},
        )


AUTOENCODER_THRESHOLDS = {"psnr_db": {"min": 12.0}}
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
    return {"denoise": denoise, "autoencoder": autoencoder}


VARIANTS = {"denoise": ("denoising",), "autoencoder": ("dense", "deep", "conv")}


def code_fingerprint(*modules) -> str:
    """Digest of the source of the given modules' packages, so edited code invalidates the cache."""
    digest = hashlib.sha256()
    for module in modules:
        folder = pathlib.Path(module.__file__).parent
        for path in sorted(folder.rglob("*.py")):
            digest.update(path.relative_to(folder).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
