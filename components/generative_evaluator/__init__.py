"""GenerativeEvaluator: metrics, sample grids and a ModelBlessing for generative models."""
from components.generative_evaluator.component import GenerativeEvaluator

__all__ = ["GenerativeEvaluator"]
