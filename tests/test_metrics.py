import json
import math

import numpy as np
import pytest

from lift_core.errors import LiftError
from lift_core.metrics import classification_metrics, regression_metrics

CLASSES = ["a", "b", "c"]
Y_TRUE = ["a", "b", "a", "c"]
# Row 1 is invalid (None) and row 2 is wrong.
Y_PRED = ["a", None, "b", "c"]
PROBA = np.array([[0.8, 0.1, 0.1], [0.2, 0.5, 0.3], [0.5, 0.25, 0.25], [0.1, 0.1, 0.8]])


def test_classification_by_hand():
    scores = classification_metrics(Y_TRUE, Y_PRED, PROBA, CLASSES)
    # F1 per class: a = 2*1*0.5/1.5 = 2/3 (one of two found, no false alarm), b = 0 (the invalid answer is a
    # miss, row 2 a false alarm), c = 1.
    assert scores == pytest.approx({
        "accuracy": 0.5,
        "macro_f1": (2 / 3 + 0 + 1) / 3,
        "log_loss": -(math.log(0.8) + math.log(0.5) + math.log(0.5) + math.log(0.8)) / 4,
        "invalid_rate": 0.25,
        "n_test": 4,
    })
    json.dumps(scores)  # plain Python numbers, ready for eval.json


def test_class_absent_from_the_test_rows_still_counts_in_macro_f1():
    proba = np.hstack([PROBA, np.zeros((4, 1))])
    scores = classification_metrics(Y_TRUE, Y_PRED, proba, [*CLASSES, "d"])
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 0 + 1 + 0) / 4)
    assert scores["accuracy"] == 0.5


def test_perfect_predictions():
    scores = classification_metrics(Y_TRUE, Y_TRUE, np.eye(3)[[0, 1, 0, 2]], CLASSES)
    assert scores["accuracy"] == 1 and scores["macro_f1"] == 1 and scores["invalid_rate"] == 0
    assert scores["log_loss"] == pytest.approx(0, abs=1e-12)


def test_all_invalid():
    scores = classification_metrics(Y_TRUE, [None] * 4, None, CLASSES)
    assert scores == {"accuracy": 0.0, "macro_f1": 0.0, "log_loss": None, "invalid_rate": 1.0, "n_test": 4}


def test_a_label_outside_the_classes_counts_as_invalid():
    scores = classification_metrics(["a", "b"], ["a", "zzz"], None, ["a", "b"])
    assert scores["accuracy"] == 0.5 and scores["invalid_rate"] == 0.5


def test_log_loss_clips_a_zero_probability():
    scores = classification_metrics(["a", "b"], ["b", "b"], np.array([[0.0, 1.0], [0.0, 1.0]]), ["a", "b"])
    assert scores["log_loss"] == pytest.approx(-math.log(1e-15) / 2)


def test_log_loss_renormalises_rows():
    scores = classification_metrics(["a"], ["a"], np.array([[2.0, 2.0]]), ["a", "b"])
    assert scores["log_loss"] == pytest.approx(math.log(2))


def test_classification_input_errors():
    with pytest.raises(ValueError, match="shape"):
        classification_metrics(Y_TRUE, Y_PRED, PROBA[:, :2], CLASSES)
    with pytest.raises(ValueError, match="predictions"):
        classification_metrics(Y_TRUE, Y_PRED[:3], None, CLASSES)
    with pytest.raises(ValueError, match=r"\['z'\] are not among the classes"):
        classification_metrics(["a", "z"], ["a", "a"], None, CLASSES)
    with pytest.raises(LiftError, match="no test rows"):
        classification_metrics([], [], None, CLASSES)


def test_regression_by_hand():
    # errors 0, 1, -1, 0; mean(y) = 2.5 so sum |y - mean| = 1.5 + 0.5 + 0.5 + 1.5 = 4.
    scores = regression_metrics([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0])
    assert scores == pytest.approx({"rmse": math.sqrt(0.5), "mae": 0.5, "rae": 0.5, "invalid_rate": 0.0,
                                    "n_test": 4})
    json.dumps(scores)


def test_regression_counts_invalid_rows_among_the_scored_ones():
    # The invalid rows are already imputed in y_pred; n_invalid only reports them.
    scores = regression_metrics([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0], n_invalid=1)
    assert scores == pytest.approx({"rmse": math.sqrt(0.5), "mae": 0.5, "rae": 0.5, "invalid_rate": 0.25,
                                    "n_test": 4})


def test_regression_rae_against_a_mean_predictor_is_one():
    y = np.array([3.0, -1.0, 4.0, 1.5])
    assert regression_metrics(y, np.full(4, y.mean()))["rae"] == pytest.approx(1.0)


def test_regression_rae_is_none_for_a_constant_target():
    assert regression_metrics([5.0], [3.0]) == {"rmse": 2.0, "mae": 2.0, "rae": None, "invalid_rate": 0.0,
                                                "n_test": 1}


@pytest.mark.parametrize("y_true, y_pred, n_invalid, message", [
    ([1.0, 2.0], [1.0], 0, "predictions"),
    ([1.0], [1.0], -1, "n_invalid"),
    ([1.0], [1.0], 2, "n_invalid"),
    ([1.0, 2.0], [1.0, None], 1, "impute"),
    ([1.0, 2.0], [1.0, float("inf")], 0, "impute"),
])
def test_regression_input_errors(y_true, y_pred, n_invalid, message):
    with pytest.raises(ValueError, match=message):
        regression_metrics(y_true, y_pred, n_invalid)


def test_regression_without_rows():
    with pytest.raises(LiftError, match="no test rows"):
        regression_metrics([], [])
