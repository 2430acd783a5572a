"""The LIFT paper's synthetic datasets: 2-D classification shapes and regression functions on [-10, 10]^p."""

import math

import numpy as np
import pandas as pd
from sklearn.datasets import make_blobs, make_circles, make_moons

from lift_core.errors import LiftError

CLASSIFICATION_KINDS = ("nine_gaussians", "blobs", "circles", "moons", "two_circles", "xor", "spiral")
REGRESSION_KINDS = ("linear", "quadratic", "exponential", "cosine", "l1norm", "piecewise")


def make_classification(kind, *, n=400, noise=0.1, seed=0) -> pd.DataFrame:
    """n points in 2-D with integer labels, columns x1, x2, y; the same seed gives the same frame."""
    _check_kind(kind, CLASSIFICATION_KINDS, "classification")
    n = _whole_number(n, "n", 2)
    _check_noise(noise)
    rng = np.random.RandomState(seed)
    X, y = _SHAPES[kind](n, noise, rng)
    order = rng.permutation(n)  # no runs of one class, whichever way a shape was built
    return pd.DataFrame({"x1": X[order, 0], "x2": X[order, 1], "y": y[order].astype(np.int64)})


def _nine_gaussians(n, noise, rng):
    # The paper's layout: centers 10 apart on a 3x3 grid, one class each; noise is the spread per unit of spacing.
    centers = np.array([(a, b) for a in (-10.0, 0.0, 10.0) for b in (-10.0, 0.0, 10.0)])
    y = np.arange(n) % 9
    return centers[y] + rng.normal(scale=10 * noise, size=(n, 2)), y


def _blobs(n, noise, rng):
    # Centers are drawn in sklearn's (-10, 10) box, so noise=0.1 gives its default cluster_std of 1.
    return make_blobs(n_samples=n, centers=3, n_features=2, cluster_std=10 * noise, random_state=rng)


def _circles(n, noise, rng):
    return make_circles(n_samples=n, noise=noise, factor=0.5, random_state=rng)


def _moons(n, noise, rng):
    return make_moons(n_samples=n, noise=noise, random_state=rng)


def _two_circles(n, noise, rng):
    # Two ring pairs 3 apart; as in the paper the right pair has its labels swapped (outer ring = class 1).
    X_left, y_left = make_circles(n_samples=n // 2, noise=noise, factor=0.5, random_state=rng)
    X_right, y_right = make_circles(n_samples=n - n // 2, noise=noise, factor=0.5, random_state=rng)
    X_right[:, 0] += 3
    return np.vstack([X_left, X_right]), np.concatenate([y_left, 1 - y_right])


def _xor(n, noise, rng):
    X = rng.uniform(-1, 1, size=(n, 2))
    y = (X[:, 0] * X[:, 1] < 0).astype(np.int64)  # 1 where the signs of x1 and x2 differ
    return X + rng.normal(scale=noise, size=(n, 2)), y


def _spiral(n, noise, rng):
    y = np.arange(n) % 2
    # sqrt spaces points evenly along the arm, whose length grows with the angle; 1.5 turns scaled to radius 1.
    angle = np.sqrt(rng.uniform(size=n)) * 3 * np.pi
    radius = angle / (3 * np.pi)
    angle = angle + np.pi * y  # the second arm is the first turned by half a turn
    X = np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
    return X + rng.normal(scale=noise, size=(n, 2)), y


_SHAPES = {
    "nine_gaussians": _nine_gaussians,
    "blobs": _blobs,
    "circles": _circles,
    "moons": _moons,
    "two_circles": _two_circles,
    "xor": _xor,
    "spiral": _spiral,
}


def _piecewise(x):
    g = np.where(x < -3, x + 6, np.where(x < 3, 0.0, x - 6))
    return ((g + 4) / 8 - 0.5) * 18


# Every function is a mean over dimensions of a per-dimension curve that maps [-10, 10] onto [-9, 9].
_CURVES = {
    "linear": lambda x: 0.9 * x,
    "quadratic": lambda x: (x**2 - 50) * 9 / 50,
    "exponential": lambda x: 18 * ((np.exp(0.2 * x) - np.exp(-2)) / (np.exp(2) - np.exp(-2)) - 0.5),
    "cosine": lambda x: 9 * np.cos(np.pi * x / 2),
    "l1norm": lambda x: (np.abs(x) / 10 - 0.5) * 18,
    "piecewise": _piecewise,
}


def regression_function(kind, X: np.ndarray) -> np.ndarray:
    """The clean target for each row of X, shape (n, p) -> (n,)."""
    _check_kind(kind, REGRESSION_KINDS, "regression")
    return _CURVES[kind](np.asarray(X, dtype=float)).mean(axis=1)


def make_regression(kind, *, n=400, p=1, noise=0.1, seed=0, test_size=0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train_df, test_df) with columns x1..xp, y; only the train rows carry noise, test rows are clean."""
    _check_kind(kind, REGRESSION_KINDS, "regression")
    n = _whole_number(n, "n", 2)
    p = _whole_number(p, "p", 1)
    _check_noise(noise)
    if not 0 < test_size < 1:
        raise LiftError(f"test_size must be between 0 and 1 (got {test_size}).")
    n_train = n - math.ceil(test_size * n)
    if n_train < 1:
        raise LiftError(
            f"With n={n}, test_size={test_size} leaves no training rows. Use a larger n or a smaller test_size."
        )
    rng = np.random.RandomState(seed)
    X = rng.uniform(-10, 10, size=(n, p))
    y = regression_function(kind, X)
    # As in the paper, the noise scale follows the spread of the clean training targets.
    y_train = y[:n_train] + rng.normal(scale=noise * y[:n_train].std(), size=n_train)
    return _regression_frame(X[:n_train], y_train), _regression_frame(X[n_train:], y[n_train:])


def _regression_frame(X, y) -> pd.DataFrame:
    frame = pd.DataFrame(X, columns=[f"x{i + 1}" for i in range(X.shape[1])])
    frame["y"] = y
    return frame


def _check_kind(kind, kinds, task):
    if kind not in kinds:
        raise LiftError(f"Unknown {task} dataset '{kind}'. Choose one of: {', '.join(kinds)}.")


def _whole_number(value, name, minimum) -> int:
    if not (float(value).is_integer() and value >= minimum):
        raise LiftError(f"{name} must be a whole number of at least {minimum} (got {value}).")
    return int(value)


def _check_noise(noise):
    if not noise >= 0:  # also rejects NaN
        raise LiftError(f"noise must be 0 or more (got {noise}).")
