"""The blessing rule: configured thresholds hold, and no regression past the latest blessed model."""
from typing import Dict, List, Optional, Tuple

from components.generative_evaluator.metrics import HIGHER_IS_BETTER


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
    metrics: Dict[str, float], baseline: Optional[Dict[str, float]], metric: str, tolerance: float
) -> List[str]:
    """Reasons the candidate is worse than the baseline on `metric` by more than `tolerance`."""
    if not baseline:
        return []
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"cannot compare on {metric!r}; comparable metrics: {sorted(HIGHER_IS_BETTER)}")
    candidate, reference = metrics[metric], baseline[metric]
    regression = reference - candidate if HIGHER_IS_BETTER[metric] else candidate - reference
    if regression > tolerance:
        return [
            f"{metric} = {candidate:.4g} is worse than the latest blessed model's {reference:.4g} "
            f"by {regression:.4g} (tolerance {tolerance})"
        ]
    return []


def decide(metrics, thresholds, baseline_metrics, comparison) -> Tuple[bool, List[str]]:
    """(blessed, reasons): blessed when every threshold holds and there is no regression."""
    reasons = check_thresholds(metrics, thresholds or {})
    if comparison:
        reasons += check_baseline(metrics, baseline_metrics, comparison["metric"], float(comparison.get("tolerance", 0.0)))
    return not reasons, reasons
