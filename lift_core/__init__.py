"""LIFT Studio's engine: Language-Interfaced FineTuning of causal LMs on tables."""

from lift_core.errors import LiftError
from lift_core.estimators import LiftClassifier, LiftRegressor

__all__ = ["LiftClassifier", "LiftError", "LiftRegressor"]
