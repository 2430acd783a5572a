import math
import time

import numpy as np
import pandas as pd
import pytest

from lift_core import baselines
from lift_core.baselines import CLASSIFIERS, REGRESSORS, class_probabilities, fit_baseline, run_baselines
from lift_core.data import Dataset, Splits, prepare_dataset, split_dataset
from lift_core.errors import LiftError
from lift_core.synthetic import make_classification


def make_dataset(frame, target, task, classes=None):
    if task == "classification" and classes is None:
        classes = sorted(frame[target].unique())
    features = [column for column in frame.columns if column != target]
    return Dataset(frame=frame, target=target, features=features, task=task, classes=classes, n_dropped=0)


def split_tail(frame, n_test, n_val=0):
    """Rows are already in random order, so the last rows make an honest test split."""
    n_train = len(frame) - n_test - n_val
    parts = frame.iloc[:n_train], frame.iloc[n_train : n_train + n_val], frame.iloc[n_train + n_val :]
    train, val, test = (part.reset_index(drop=True) for part in parts)
    return Splits(train=train, val=val, test=test)


def separable_frame(n=300, seed=0):
    """Two classes split by the line x1 + x2 = 0.6 with a margin; "low" is the majority (about 70%)."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(-1, 1, size=(4 * n, 2))
    margin = np.abs(points.sum(axis=1) - 0.6) > 0.1
    points = points[margin][:n]
    labels = np.where(points.sum(axis=1) > 0.6, "high", "low")
    return pd.DataFrame({"x1": points[:, 0], "x2": points[:, 1], "y": labels})


def linear_frame(n=120, seed=0):
    x = np.random.default_rng(seed).uniform(-5, 5, size=n)
    return pd.DataFrame({"x": x, "y": 2 * x + 1})


@pytest.fixture(scope="module")
def separable():
    frame = separable_frame()
    return split_tail(frame, n_test=80, n_val=30), make_dataset(frame, "y", "classification")


def test_logreg_separates_a_linearly_separable_set(separable):
    splits, dataset = separable
    result = run_baselines(splits, dataset, names=["logreg"]).set_index("name")
    assert result.loc["logreg", "accuracy"] >= 0.95


def test_majority_scores_the_share_of_the_training_majority(separable):
    splits, dataset = separable
    train_majority = pd.concat([splits.train, splits.val])["y"].mode()[0]
    share = (splits.test["y"] == train_majority).mean()
    assert 0.5 < share < 0.9  # an unbalanced set, so the check means something
    result = run_baselines(splits, dataset, names="majority").set_index("name")
    assert result.loc["majority", "accuracy"] == pytest.approx(share)


def test_classification_suite_reports_every_baseline(separable):
    splits, dataset = separable
    started = time.perf_counter()
    result = run_baselines(splits, dataset, seed=1)
    elapsed = time.perf_counter() - started
    assert list(result["name"]) == list(CLASSIFIERS)
    assert {"accuracy", "macro_f1", "log_loss", "fit_seconds"} <= set(result.columns)
    assert np.isfinite(result["log_loss"].astype(float)).all()
    # Each fit is timed on its own: every one took some time, and together no more than the whole call.
    assert (result["fit_seconds"] > 0).all() and result["fit_seconds"].sum() <= elapsed
    assert (result.set_index("name").drop(index="majority")["accuracy"] >= 0.85).all()


def test_suite_runs_on_a_prepared_synthetic_dataset():
    dataset = prepare_dataset(make_classification("nine_gaussians", n=270, seed=0), "y")
    splits = split_dataset(dataset, seed=0)
    result = run_baselines(splits, dataset, names=["knn", "rbf_svm", "random_forest"]).set_index("name")
    assert (result["accuracy"] >= 0.9).all()


def test_a_rare_class_does_not_break_the_grid_search():
    """Two rows of "rare" in training: too few for stratified 3-fold CV, and absent from some folds."""
    frame = separable_frame(n=90)
    frame.loc[[3, 40], "y"] = "rare"
    splits, dataset = split_tail(frame, n_test=20), make_dataset(frame, "y", "classification")
    result = run_baselines(splits, dataset)
    assert list(result["name"]) == list(CLASSIFIERS)
    assert np.isfinite(result["log_loss"].astype(float)).all()


def test_polynomial_recovers_a_line():
    frame = linear_frame()
    splits, dataset = split_tail(frame, n_test=30, n_val=10), make_dataset(frame, "y", "regression")
    result = run_baselines(splits, dataset, names=["polynomial"]).set_index("name")
    assert result.loc["polynomial", "rmse"] < 0.1


def test_regression_suite_reports_every_baseline(monkeypatch):
    monkeypatch.setattr(baselines, "GP_MAX_ROWS", 50)  # keeps the test fast and exercises the subsample
    frame = linear_frame(n=100, seed=1)
    splits, dataset = split_tail(frame, n_test=25), make_dataset(frame, "y", "regression")
    result = run_baselines(splits, dataset)
    assert list(result["name"]) == list(REGRESSORS)
    assert {"rmse", "mae", "rae", "fit_seconds"} <= set(result.columns)
    assert np.isfinite(result["rmse"].astype(float)).all()
    # Every model beats predicting the mean (rae 1) by far on a noiseless line.
    assert (result["rae"] < 0.5).all()


def test_gaussian_process_trains_on_a_capped_subsample(monkeypatch):
    monkeypatch.setattr(baselines, "GP_MAX_ROWS", 40)
    frame = linear_frame(n=100)
    splits, dataset = split_tail(frame, n_test=20), make_dataset(frame, "y", "regression")
    model = fit_baseline("gaussian_process", splits, dataset)
    assert model.named_steps["model"].regressor_.X_train_.shape[0] == 40


def test_probability_columns_follow_dataset_classes():
    """Class "b" never reaches training: its column must exist, in its place, and hold zeros."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=120)
    labels = np.where(x > 0, "c", "a")
    labels[-5:] = "b"
    frame = pd.DataFrame({"x": x, "y": labels})
    splits, dataset = split_tail(frame, n_test=30), make_dataset(frame, "y", "classification")
    assert dataset.classes == ["a", "b", "c"]
    model = fit_baseline("logreg", splits, dataset)
    proba = class_probabilities(model, splits.test[["x"]], dataset.classes)
    assert proba.shape == (30, 3)
    assert np.allclose(proba.sum(axis=1), 1)
    assert (proba[:, 1] == 0).all()
    expected = np.array(dataset.classes)[proba.argmax(axis=1)]
    assert (expected == model.predict(splits.test[["x"]])).all()
    clear_c = splits.test["x"].to_numpy() > 0.5
    assert clear_c.any()
    assert (proba[clear_c, 2] > 0.5).all()
    result = run_baselines(splits, dataset, names=["logreg", "majority"])
    assert np.isfinite(result["log_loss"].astype(float)).all()


def test_categorical_features_with_missing_values():
    rng = np.random.default_rng(0)
    n = 150
    color = rng.choice(["red", "green", "blue"], size=n)
    frame = pd.DataFrame({
        "color": color,
        "noise": rng.normal(size=n),
        "flag": rng.choice([True, False], size=n),
        "y": np.where(color == "red", "yes", "no"),
    })
    train_rows = frame.index[:-40]
    frame.loc[train_rows[:5], "noise"] = np.nan
    frame["color"] = frame["color"].astype(object)
    frame.loc[train_rows[5:8], "color"] = None
    splits, dataset = split_tail(frame, n_test=40), make_dataset(frame, "y", "classification")
    result = run_baselines(splits, dataset, names=["logreg", "decision_tree"]).set_index("name")
    # Imputed colours mislabel a few training rows; ignoring the colour would score about 0.67.
    assert (result["accuracy"] >= 0.9).all()
    unseen = pd.DataFrame({"color": ["purple", None], "noise": [0.0, np.nan], "flag": [True, False]})
    model = fit_baseline("logreg", splits, dataset)
    assert class_probabilities(model, unseen, dataset.classes).shape == (2, 2)


def test_fitted_pipeline_scores_a_decision_grid(separable):
    splits, dataset = separable
    model = fit_baseline("rbf_svm", splits, dataset)
    axis = np.linspace(-1, 1, 15)
    grid = pd.DataFrame([(a, b) for a in axis for b in axis], columns=["x1", "x2"])
    proba = model.predict_proba(grid)
    assert proba.shape == (len(grid), 2)
    assert np.allclose(proba.sum(axis=1), 1)


def test_unknown_names_list_the_valid_ones(separable):
    splits, dataset = separable
    with pytest.raises(LiftError, match="logreg.*gradient_boosting"):
        run_baselines(splits, dataset, names=["logreg", "xgboost"])
    frame = linear_frame()
    regression = make_dataset(frame, "y", "regression")
    with pytest.raises(LiftError, match="gaussian_process"):
        fit_baseline("logreg", split_tail(frame, n_test=20), regression)


def test_a_single_training_class_is_explained():
    frame = pd.DataFrame({"x": np.arange(20.0), "y": ["a"] * 15 + ["b"] * 5})
    splits, dataset = split_tail(frame, n_test=5), make_dataset(frame, "y", "classification")
    with pytest.raises(LiftError, match="only the class 'a'"):
        fit_baseline("logreg", splits, dataset)
    assert math.isclose(run_baselines(splits, dataset, names=["majority"])["accuracy"][0], 0.0)
