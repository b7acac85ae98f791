"""Collapse alarms while a generative model trains, so a failing run is caught at its checkpoints.

The GenerativeEvaluator judges the finished model with the domain classifier (mode coverage,
classifier-FD) and does not bless a collapsed one. That verdict comes after the last step; on a
long run (the 64x64 face generator trains for hours on a GPU) a user wants to know at step 2,000
that the generator has collapsed. The Trainer has no domain classifier, so the GAN's monitor looks
at pixels only, which needs no labels and works for faces as for digits.

GANs, mode collapse (`CollapseMonitor`): after every checkpoint chunk one fixed latent batch goes
through the generator and the samples are compared with a fixed batch of real training images:

- `sample_diversity`: the samples' total pixel variance over the real images' (1: as varied as
  the data; 0: one image). The mean squared distance between two images of a set is twice its
  total variance, so this is also the ratio of mean squared pairwise distances.
- `duplicate_fraction`: the share of samples whose nearest other sample is closer than half the
  median nearest-neighbour distance among the real images: near-copies, which is what a generator
  that collapsed onto a few outputs draws.

A check fails when the diversity is below `min_diversity` (0.25), or has fallen below `max_drop`
(0.5) times the best diversity of the run so far, or when more than `max_duplicate_fraction` (half)
of the samples are near-copies although the run already had at most half that share. The last two
compare the generator with its own earlier self: early in training the samples are blurry and alike
(the course's dense GAN draws 80-100% near-copies for its first 1,500 steps on the embedded
sample), which is not collapse; samples that were distinct and become alike are.

VAEs, posterior collapse (`PosteriorCollapseMonitor`): the decoder learns to ignore z, the KL term
goes to 0 and prior samples become one blurry average. A check fails when the eval KL is below
`min_kl` (0.1 nats per image) or no latent unit is active (the encoder's means do not vary across
a fixed batch of eval images). A freshly initialised encoder looks like that too (KL 0.002 nats,
no active unit); on the embedded sample the course's VAE passes 0.1 nats by step 40 and has both
units active by step 60 (KL 4.8 at step 600), well inside the warm-up of its 1,500 steps.

For both, checks in the first `warmup_fraction` (0.2) of the steps do not count (an untrained
generator draws near-constant images), and `patience` (2) failing checks in a row raise the alarm:
a warning in the Trainer's log (which `genpipe run` shows as it happens), the measurements as
TensorBoard scalars every chunk (`collapse_*`), and the alarm in the training summary, which the
run summary shows. With `stop_on_collapse` training stops there; the model is still exported and
judged by the evaluator, which does not bless a collapsed one. The monitors' state (checks, the
run's best values, the alarm) is saved in the training checkpoint (`get_state`/`set_state`,
training.CallbackState), so a killed Trainer resumes judging the whole run, and one that the alarm
stopped stays stopped.
"""
import abc
import dataclasses
from typing import Callable, Dict, List, Optional

import keras
import numpy as np
from absl import logging  # the absl logger: `genpipe run` shows the alarm on the console as it happens

# custom_config keys.
MIN_DIVERSITY = "collapse_min_diversity"
MAX_DROP = "collapse_max_drop"
MAX_DUPLICATE_FRACTION = "collapse_max_duplicate_fraction"
MIN_KL = "collapse_min_kl"
PATIENCE = "collapse_patience"
WARMUP_FRACTION = "collapse_warmup_fraction"
STOP_ON_COLLAPSE = "stop_on_collapse"
ACTIVE_UNIT_VARIANCE = 0.01  # Burda et al.'s threshold on Var_x(E[z | x]) for an active latent unit


@dataclasses.dataclass
class CollapseConfig:
    """The alarm's settings from custom_config (defaults: see the module docstring)."""

    min_diversity: float = 0.25
    max_drop: float = 0.5
    max_duplicate_fraction: float = 0.5
    min_kl: float = 0.1  # VAE: nats per image
    patience: int = 2
    warmup_fraction: float = 0.2
    stop_on_collapse: bool = False
    num_samples: int = 256

    @classmethod
    def from_custom_config(cls, custom_config) -> "CollapseConfig":
        config = dict(custom_config or {})
        keys = {MIN_DIVERSITY: "min_diversity", MAX_DROP: "max_drop", MAX_DUPLICATE_FRACTION: "max_duplicate_fraction",
                MIN_KL: "min_kl", PATIENCE: "patience", WARMUP_FRACTION: "warmup_fraction",
                STOP_ON_COLLAPSE: "stop_on_collapse"}
        result = cls(**{field: config[key] for key, field in keys.items() if key in config})
        result.min_diversity = float(result.min_diversity)
        result.max_drop = float(result.max_drop)
        result.min_kl = float(result.min_kl)
        result.max_duplicate_fraction = float(result.max_duplicate_fraction)
        result.patience = int(result.patience)
        result.warmup_fraction = float(result.warmup_fraction)
        result.stop_on_collapse = bool(result.stop_on_collapse)
        if not 0.0 <= result.min_diversity <= 1.0:
            raise ValueError(f"custom_config[{MIN_DIVERSITY!r}] must be in [0, 1], got {result.min_diversity}")
        if not 0.0 <= result.max_drop <= 1.0:
            raise ValueError(f"custom_config[{MAX_DROP!r}] must be in [0, 1], got {result.max_drop}")
        if not 0.0 <= result.max_duplicate_fraction <= 1.0:
            raise ValueError(f"custom_config[{MAX_DUPLICATE_FRACTION!r}] must be in [0, 1], "
                             f"got {result.max_duplicate_fraction}")
        if result.min_kl < 0.0:
            raise ValueError(f"custom_config[{MIN_KL!r}] must be >= 0, got {result.min_kl}")
        if result.patience < 1:
            raise ValueError(f"custom_config[{PATIENCE!r}] must be >= 1, got {result.patience}")
        if not 0.0 <= result.warmup_fraction < 1.0:
            raise ValueError(f"custom_config[{WARMUP_FRACTION!r}] must be in [0, 1), got {result.warmup_fraction}")
        return result

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _flat(images) -> np.ndarray:
    array = np.asarray(images, dtype=np.float64)
    return array.reshape(array.shape[0], -1)


def total_variance(images) -> float:
    """Sum over pixels of the variance across images (half the mean squared pairwise distance)."""
    flat = _flat(images)
    return float(((flat - flat.mean(axis=0)) ** 2).sum(axis=1).mean())


def nearest_neighbour_distances(images) -> np.ndarray:
    """Each image's Euclidean distance to its nearest other image of the set."""
    flat = _flat(images)
    if flat.shape[0] < 2:
        raise ValueError(f"nearest neighbours need at least 2 images, got {flat.shape[0]}")
    squared = (flat * flat).sum(axis=1)
    distances = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2.0 * flat @ flat.T, 0.0))
    np.fill_diagonal(distances, np.inf)
    return distances.min(axis=1)


class RealReference:
    """What samples are compared with: the real images' total variance and median nearest-neighbour distance."""

    def __init__(self, real_images):
        flat = _flat(real_images)
        self.variance = total_variance(flat)
        self.nn_distance = float(np.median(nearest_neighbour_distances(flat)))
        if self.variance <= 0.0 or self.nn_distance <= 0.0:
            raise ValueError("the real reference images are all identical: diversity cannot be measured against them")

    def measure(self, samples) -> Dict[str, float]:
        return {
            "sample_diversity": total_variance(samples) / self.variance,
            "duplicate_fraction": float((nearest_neighbour_distances(samples) < 0.5 * self.nn_distance).mean()),
        }


class _AlarmMonitor(keras.callbacks.Callback, abc.ABC):
    """After every chunk (epoch): measure, judge past the warm-up, alarm after `patience` failing checks.

    Subclasses give `KIND` (the alarm's name), `measure(logs)` (numbers, also put into the epoch logs
    under `LOG_NAMES`, so they reach TensorBoard and the history; put the monitor before the
    TensorBoard callback) and `failing_reasons(measured)`, and may keep the run's best in `remember`.
    The chunk length and the number of chunks come from the fit's callback params (`steps`, `epochs`).
    """

    KIND = ""
    LOG_NAMES: Dict[str, str] = {}
    # What a resumed run must carry on with (training.CallbackState puts it into the checkpoint).
    STATE = ("checks", "alarm", "stopped_early", "_failing")

    def __init__(self, config: CollapseConfig):
        super().__init__()
        self.config = config
        self.checks: List[dict] = []
        self.alarm: Optional[dict] = None
        self.stopped_early = False
        self._failing = 0

    @abc.abstractmethod
    def measure(self, logs: dict) -> Dict[str, float]:
        """This check's measurements (the epoch logs hold the losses and the val_* metrics)."""

    @abc.abstractmethod
    def failing_reasons(self, measured: Dict[str, float]) -> List[str]:
        """Why the measurements count as collapse; empty when they do not."""

    def remember(self, measured: Dict[str, float]) -> None:
        """Keeps what later checks compare with (after this check was judged)."""

    def on_epoch_end(self, epoch, logs=None):
        steps_per_epoch, epochs = int(self.params["steps"]), int(self.params["epochs"])
        step = (epoch + 1) * steps_per_epoch
        warmup_steps = int(self.config.warmup_fraction * epochs * steps_per_epoch)
        measured = self.measure(logs or {})
        reasons = self.failing_reasons(measured) if step > warmup_steps else []
        self._failing = self._failing + 1 if reasons else 0
        self.remember(measured)
        check = {"step": step, **{k: round(v, 4) for k, v in measured.items()}, "failing": bool(reasons)}
        self.checks.append(check)
        if logs is not None:
            logs.update({log_name: measured[name] for name, log_name in self.LOG_NAMES.items()})
        if self._failing >= self.config.patience and self.alarm is None:
            self.alarm = {
                **check,
                "message": f"{self.KIND} alarm at step {step} ({self._failing} checks in a row): " + "; ".join(reasons),
            }
            logging.warning(self.alarm["message"])
            if self.config.stop_on_collapse:
                self.stopped_early = True
                self.model.stop_training = True
                logging.warning("stop_on_collapse: training stops at step %d", step)

    def get_state(self) -> dict:
        return {name: getattr(self, name) for name in self.STATE}

    def set_state(self, state: dict) -> None:
        for name in self.STATE:
            setattr(self, name, state[name])

    def summary(self) -> dict:
        return {
            "kind": self.KIND,
            "config": self.config.as_dict(),
            "alarm": self.alarm,
            "stopped_early": self.stopped_early,
            "checks": self.checks,
        }


class CollapseMonitor(_AlarmMonitor):
    """The GAN's mode-collapse alarm: the generator's samples against real images (module docstring).

    `sample_fn()` returns the generator's images for the fixed latent batch, in [0, 1], and
    `real_images` a fixed batch of real training images in [0, 1]. The measurements go into the
    epoch logs as `collapse_diversity` and `collapse_duplicates`.
    """

    KIND = "mode-collapse"
    LOG_NAMES = {"sample_diversity": "collapse_diversity", "duplicate_fraction": "collapse_duplicates"}
    STATE = _AlarmMonitor.STATE + ("best_diversity", "fewest_duplicates")

    def __init__(self, sample_fn: Callable[[], np.ndarray], real_images, config: CollapseConfig):
        super().__init__(config)
        self.sample_fn = sample_fn
        self.reference = RealReference(real_images)
        self.best_diversity: Optional[float] = None
        self.fewest_duplicates: Optional[float] = None

    def measure(self, logs: dict) -> Dict[str, float]:
        return self.reference.measure(self.sample_fn())

    def failing_reasons(self, measured: Dict[str, float]) -> List[str]:
        """Why this measurement counts as collapsing, given the run's best so far (empty: it does not)."""
        diversity, duplicates = measured["sample_diversity"], measured["duplicate_fraction"]
        reasons = []
        if diversity < self.config.min_diversity:
            reasons.append(f"sample diversity {diversity:.2f} is below {self.config.min_diversity}")
        elif self.best_diversity is not None and diversity < self.config.max_drop * self.best_diversity:
            reasons.append(f"sample diversity {diversity:.2f} fell below {self.config.max_drop} x the run's best "
                           f"{self.best_diversity:.2f}")
        if (duplicates > self.config.max_duplicate_fraction and self.fewest_duplicates is not None
                and self.fewest_duplicates <= self.config.max_duplicate_fraction / 2):
            reasons.append(f"{duplicates:.0%} of the samples are near-copies (the run had {self.fewest_duplicates:.0%})")
        return reasons

    def remember(self, measured: Dict[str, float]) -> None:
        self.best_diversity = max(self.best_diversity or 0.0, measured["sample_diversity"])
        self.fewest_duplicates = min(
            measured["duplicate_fraction"], 1.0 if self.fewest_duplicates is None else self.fewest_duplicates)


def active_units(mu, threshold: float = ACTIVE_UNIT_VARIANCE) -> int:
    """Latent dimensions whose posterior mean varies across images by more than `threshold` (Burda et
    al. 2016): a dimension the encoder does not use has the same mean for every image."""
    mu = np.asarray(mu, dtype=np.float64)
    return int((mu.var(axis=0) > threshold).sum())


class PosteriorCollapseMonitor(_AlarmMonitor):
    """The VAE's alarm: posterior collapse, the VAE's way of failing, where the decoder learns to ignore z.

    Then the KL term goes to 0 and every image gets the same posterior, so the samples from the
    prior are one blurry average. After every chunk it reads the eval KL (`val_kl`, nats per image,
    from the epoch logs) and counts the active latent units of `mu_fn()` (the encoder's means on a
    fixed batch of eval images). A check fails when no unit is active or the KL is below `min_kl`.
    """

    KIND = "posterior-collapse"
    LOG_NAMES = {"active_units": "collapse_active_units"}

    def __init__(self, mu_fn: Callable[[], np.ndarray], config: CollapseConfig):
        super().__init__(config)
        self.mu_fn = mu_fn

    def measure(self, logs: dict) -> Dict[str, float]:
        measured = {"active_units": float(active_units(self.mu_fn()))}
        kl = logs.get("val_kl", logs.get("kl"))
        if kl is not None:
            measured["kl"] = float(kl)
        return measured

    def failing_reasons(self, measured: Dict[str, float]) -> List[str]:
        reasons = []
        if measured["active_units"] < 1:
            reasons.append("no latent unit is active (the encoder maps every image to the same mean)")
        if "kl" in measured and measured["kl"] < self.config.min_kl:
            reasons.append(f"KL {measured['kl']:.3g} nats per image is below {self.config.min_kl:g}")
        return reasons
