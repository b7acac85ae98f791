"""The blessing rule: configured thresholds hold, and no regression past the latest blessed model."""
from typing import Dict, List, Optional, Tuple

from components.generative_evaluator.metrics import HIGHER_IS_BETTER as RECONSTRUCTION_HIGHER_IS_BETTER
from components.generative_evaluator.sample_metrics import SAMPLE_HIGHER_IS_BETTER

# Whether a larger value means a better model, for every metric a baseline can be compared on.
HIGHER_IS_BETTER = {
    **RECONSTRUCTION_HIGHER_IS_BETTER,
    **SAMPLE_HIGHER_IS_BETTER,
    "elbo": True,
    "reconstruction_nll": False,
    "classifier_fd_improvement": True,
    "attribute_max_gap": False,
    "latent_knn_accuracy": True,
    "active_units": True,
    # Style family (style_scoring): perceptual losses of the stylized held-out images, and speed.
    "total_loss": False,
    "content_loss": False,
    "style_loss": False,
    "tv_loss": False,
    "loss_improvement": True,
    "seconds_per_image": False,
    "speedup_vs_gatys": True,
}


def check_thresholds(metrics: Dict[str, float], thresholds: Dict[str, Dict[str, float]]) -> List[str]:
    """Reasons the thresholds fail ({"metric": {"min": x, "max": y}}); empty when all hold."""
    failures = []
    for name, bounds in sorted(thresholds.items()):
        unknown = set(bounds) - {"min", "max"}
        if unknown:
            raise ValueError(f"threshold for {name!r} has unknown keys {sorted(unknown)}; expected 'min' and/or 'max'")
        if name not in metrics:
            failures.append(f"{name} was not computed, so its threshold {bounds} cannot hold")
            continue
        value = metrics[name]
        if "min" in bounds and not value >= bounds["min"]:
            failures.append(f"{name} = {value:.4g} is below the minimum {bounds['min']}")
        if "max" in bounds and not value <= bounds["max"]:
            failures.append(f"{name} = {value:.4g} is above the maximum {bounds['max']}")
    return failures


def check_baseline(
    metrics: Dict[str, float], baseline: Optional[Dict[str, float]], metric: str, tolerance: float,
    relative_tolerance: float = 0.0,
) -> List[str]:
    """Reasons the candidate is worse than the baseline on `metric` by more than the tolerance.

    The allowed regression is `tolerance + relative_tolerance * |baseline value|`, so scale-free
    metrics such as classifier_fd can allow a fraction of their value.
    """
    if not baseline:
        return []
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"cannot compare on {metric!r}; comparable metrics: {sorted(HIGHER_IS_BETTER)}")
    if metric not in metrics or metric not in baseline:
        return [f"{metric} is missing for the candidate or the baseline, so they cannot be compared"]
    candidate, reference = metrics[metric], baseline[metric]
    regression = reference - candidate if HIGHER_IS_BETTER[metric] else candidate - reference
    allowed = tolerance + relative_tolerance * abs(reference)
    if regression > allowed:
        return [
            f"{metric} = {candidate:.4g} is worse than the latest blessed model's {reference:.4g} "
            f"by {regression:.4g} (allowed {allowed:.4g})"
        ]
    return []


def decide(metrics, thresholds, baseline_metrics, comparison) -> Tuple[bool, List[str]]:
    """(blessed, reasons): blessed when every threshold holds and there is no regression."""
    reasons = check_thresholds(metrics, thresholds or {})
    if comparison:
        unknown = set(comparison) - {"metric", "tolerance", "relative_tolerance"}
        if unknown:
            raise ValueError(f"baseline comparison has unknown keys {sorted(unknown)}; "
                             "expected metric, tolerance, relative_tolerance")
        reasons += check_baseline(metrics, baseline_metrics, comparison["metric"],
                                  float(comparison.get("tolerance", 0.0)),
                                  float(comparison.get("relative_tolerance", 0.0)))
    return not reasons, reasons
