"""Test-set scores for LIFT and the baselines, with invalid (unparseable) answers counted against the model."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score, mean_absolute_error, root_mean_squared_error

from lift_core.errors import LiftError

LOG_LOSS_EPS = 1e-15
# Every test metric a run can report (eval.json), in reading order, with its name for people.
METRIC_NAMES = {
    "accuracy": "Accuracy",
    "macro_f1": "Macro-F1",
    "log_loss": "Log-loss",
    "generated_accuracy": "Accuracy of greedy generation",
    "rmse": "RMSE",
    "mae": "MAE",
    "rae": "RAE",
    "invalid_rate": "Invalid-output rate",
    "n_test": "Test rows",
}
# The few that sum a run up in one row of a table of runs.
SUMMARY_METRICS = ("accuracy", "macro_f1", "rmse", "mae", "invalid_rate")
_INVALID = -1  # class code of a prediction that is None or not one of the classes


def classification_metrics(y_true, y_pred, proba: np.ndarray | None, classes) -> dict:
    """accuracy, macro_f1, log_loss (None without proba), invalid_rate and n_test.

    y_pred holds a label or None per row; None (invalid) is always wrong. proba has one column per class,
    in the order of `classes`.
    """
    classes, y_true, y_pred = list(classes), list(y_true), list(y_pred)
    if len(y_pred) != len(y_true):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    if not y_true:
        raise LiftError("there are no test rows to score; use a larger test split")
    code = {label: position for position, label in enumerate(classes)}
    unknown = sorted({str(label) for label in y_true if label not in code})
    if unknown:
        raise ValueError(f"true labels {unknown} are not among the classes {classes}")
    true_codes = np.array([code[label] for label in y_true])
    pred_codes = np.array([code.get(label, _INVALID) for label in y_pred])
    # labels= keeps every class in the macro average (even one absent from the test rows) and leaves the
    # invalid code out, so an invalid answer is a miss for its true class, not a class of its own.
    macro_f1 = f1_score(true_codes, pred_codes, labels=list(range(len(classes))), average="macro", zero_division=0)
    return {
        "accuracy": float(np.mean(pred_codes == true_codes)),
        "macro_f1": float(macro_f1),
        "log_loss": None if proba is None else _log_loss(true_codes, proba, len(classes)),
        "invalid_rate": float(np.mean(pred_codes == _INVALID)),
        "n_test": len(y_true),
    }


def _log_loss(true_codes: np.ndarray, proba, n_classes: int) -> float:
    proba = np.asarray(proba, dtype=float)
    if proba.shape != (len(true_codes), n_classes):
        raise ValueError(f"proba has shape {proba.shape}, expected (n_test, n_classes) = "
                         f"({len(true_codes)}, {n_classes})")
    # sklearn's log_loss no longer takes eps; clipping at 1e-15 and renormalising, as it once did, keeps a
    # confident wrong answer at about 34.5 nats instead of infinity.
    clipped = np.clip(proba, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    clipped /= clipped.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(clipped[np.arange(len(true_codes)), true_codes])))


def regression_metrics(y_true, y_pred, n_invalid: int = 0) -> dict:
    """rmse, mae, rae (None when y_true is constant), invalid_rate and n_test.

    y_pred has a number for every row: as in the LIFT paper, invalid answers are imputed (with the training
    mean) before scoring, and n_invalid says how many rows that was.
    """
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{len(y_true)} true values but {len(y_pred)} predictions")
    if not 0 <= n_invalid <= len(y_true):
        raise ValueError(f"n_invalid must be between 0 and {len(y_true)}, got {n_invalid}")
    if not len(y_true):
        raise LiftError("there are no test rows to score; use a larger test split")
    if not np.isfinite(y_pred).all():
        raise ValueError("y_pred holds missing or infinite values; impute invalid answers before scoring")
    spread = float(np.abs(y_true - y_true.mean()).sum())
    return {
        "rmse": float(root_mean_squared_error(y_true, y_pred)),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "rae": float(np.abs(y_true - y_pred).sum() / spread) if spread > 0 else None,
        "invalid_rate": n_invalid / len(y_true),
        "n_test": len(y_true),
    }


def metrics_line(results: dict, separator: str = "  ") -> str:
    """The reported metrics on one line, `name=value`, as the CLI prints them and the Train tab shows them."""
    return separator.join(f"{key}={results[key]:.4g}" if isinstance(results[key], float) else f"{key}={results[key]}"
                          for key in METRIC_NAMES if results.get(key) is not None)
