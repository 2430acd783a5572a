"""Grids over one or two numeric features, for decision boundaries and variance maps."""

import numpy as np
import pandas as pd

from lift_core.errors import LiftError


def numeric_features(frame: pd.DataFrame, features: list[str]) -> list[str]:
    return [name for name in features if pd.api.types.is_numeric_dtype(frame[name])]


def grid_over(frame: pd.DataFrame, features: list[str], resolution: int = 60, margin: float = 0.2) -> pd.DataFrame:
    """A regular grid spanning the data plus `margin` of its range on each side.

    Two features give resolution x resolution points; one feature gives a line (for 1-D regression).
    """
    if len(features) not in (1, 2) or numeric_features(frame, features) != list(features):
        raise LiftError("Decision boundaries need a table with one or two numeric features; this run has "
                        f"{len(features)} ({', '.join(features)}).")
    if not 2 <= resolution <= 400:
        raise LiftError("Grid resolution must be between 2 and 400 points per side.")
    if margin < 0:
        raise LiftError("The grid margin must be zero or positive.")
    axes = []
    for name in features:
        low, high = float(frame[name].min()), float(frame[name].max())
        pad = margin * (high - low) or 1.0
        axes.append(np.linspace(low - pad, high + pad, resolution))
    mesh = np.meshgrid(*axes, indexing="xy")
    return pd.DataFrame({name: axis.ravel() for name, axis in zip(features, mesh)})
