"""LIFT Studio's engine: Language-Interfaced FineTuning of causal LMs on tables.

The estimators are imported on first use (PEP 562), so `import lift_core` and the CLI's light commands
never pay for torch.
"""

from lift_core.errors import LiftError

__all__ = ["LiftClassifier", "LiftError", "LiftRegressor"]


def __getattr__(name: str):
    if name in ("LiftClassifier", "LiftRegressor"):
        from lift_core import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module 'lift_core' has no attribute {name!r}")
