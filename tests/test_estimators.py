"""LiftClassifier and LiftRegressor as scikit-learn estimators, trained with the tiny model."""

import signal
import threading

import numpy as np
import pandas as pd
import pytest
from helpers import TINY_FAST, two_gaussians
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import r2_score
from sklearn.model_selection import cross_val_score
from sklearn.utils import estimator_checks

from lift_core import LiftClassifier, LiftError, LiftRegressor, synthetic
from lift_core.config import TrainConfig
from lift_core.models import DEFAULT_MODEL

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The estimators' own names for two TrainConfig fields.
RENAMED = {"samples": "eval_samples", "temperature": "eval_temperature"}

# scikit-learn's own checks of the estimator contract that need no fit (a fit trains a model).
CONTRACT_CHECKS = [
    estimator_checks.check_parameters_default_constructible,
    estimator_checks.check_no_attributes_set_in_init,
    estimator_checks.check_get_params_invariance,
    estimator_checks.check_set_params,
    estimator_checks.check_do_not_raise_errors_in_init_or_set_params,
    estimator_checks.check_estimator_cloneable,
    estimator_checks.check_estimator_repr,
    estimator_checks.check_mixin_order,
    estimator_checks.check_valid_tag_types,
    estimator_checks.check_estimators_unfitted,
]


# ---- parameters ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [LiftClassifier, LiftRegressor])
def test_get_params_defaults_are_the_shipped_training_defaults(cls):
    params = cls().get_params()
    assert params.pop("run_dir") is None
    shipped = TrainConfig()
    assert params == {name: getattr(shipped, RENAMED.get(name, name)) for name in params}
    assert params["model"] == DEFAULT_MODEL
    assert {"epochs", "max_steps", "lr", "warmup", "batch_size", "lora_r"} <= set(params)


@pytest.mark.parametrize("cls", [LiftClassifier, LiftRegressor])
def test_set_params_and_clone(cls):
    estimator = cls(model="tiny")
    assert estimator.set_params(lr=5e-3, epochs=2, template="names") is estimator
    params = estimator.get_params()
    assert (params["model"], params["lr"], params["epochs"], params["template"]) == ("tiny", 5e-3, 2, "names")
    copy = clone(estimator)
    assert type(copy) is cls and copy is not estimator
    assert copy.get_params() == params
    with pytest.raises(ValueError):
        estimator.set_params(no_such_parameter=1)


@pytest.mark.parametrize("check", CONTRACT_CHECKS, ids=lambda check: check.__name__)
@pytest.mark.parametrize("cls", [LiftClassifier, LiftRegressor])
def test_scikit_learn_contract_without_a_fit(cls, check):
    check(cls.__name__, cls())


@pytest.mark.parametrize("cls", [LiftClassifier, LiftRegressor])
def test_get_params_set_params_round_trip(cls):
    """Every parameter, changed from its default, is read back as set, and a clone carries them all."""
    defaults = cls().get_params()
    changed = {name: f"not-{value}" if isinstance(value, str) else [value] for name, value in defaults.items()}
    estimator = cls().set_params(**changed)
    assert estimator.get_params() == changed != defaults
    assert clone(estimator).get_params() == changed


def test_predict_before_fit():
    with pytest.raises(NotFittedError):
        LiftClassifier(model="tiny").predict(np.zeros((2, 2)))


# ---- a classifier on arrays with integer labels ---------------------------------------------------------------

def _data(n=200, seed=0, labels=(0, 1)):
    frame = two_gaussians(n, seed, labels)
    return frame[["x1", "x2"]], frame["y"]


@pytest.fixture(scope="module")
def int_classifier(model_cache):
    X, y = _data()
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    classifier = LiftClassifier(**TINY_FAST).fit(X.to_numpy()[:160], y.to_numpy()[:160])
    after = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    return classifier, X.to_numpy()[160:], y.to_numpy()[160:], handlers, after


def test_classifier_on_arrays(int_classifier):
    classifier, X_test, y_test, _, _ = int_classifier
    assert classifier.n_features_in_ == 2
    assert list(classifier.feature_names_in_) == ["x1", "x2"]
    assert classifier.classes_.tolist() == [0, 1]
    predicted = classifier.predict(X_test)
    assert predicted.shape == (40,)
    assert np.issubdtype(predicted.dtype, np.integer)  # the caller's label type, not "0"/"1"
    assert set(predicted.tolist()) <= {0, 1}
    assert (predicted == y_test).mean() >= 0.9
    proba = classifier.predict_proba(X_test)
    assert proba.shape == (40, 2)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    assert (classifier.classes_[proba.argmax(1)] == predicted).all()
    assert classifier.score(X_test, y_test) == pytest.approx((predicted == y_test).mean())


def test_classifier_run_folder(int_classifier):
    classifier, _, _, _, _ = int_classifier
    run = classifier.run_
    assert run.status()["state"] == "completed"
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()
    info = run.dataset_info()
    assert info.n_test == 0 and info.n_train + info.n_val == 160
    assert run.config().model == "tiny"


def test_classifier_rows_one_by_one_match_a_batch(int_classifier):
    classifier, X_test, _, _, _ = int_classifier
    batch = classifier.predict_proba(X_test[:5])
    single = np.vstack([classifier.predict_proba(X_test[i:i + 1]) for i in range(5)])
    np.testing.assert_allclose(single, batch, atol=1e-4)


def test_wrong_number_of_features(int_classifier):
    classifier, X_test, _, _, _ = int_classifier
    with pytest.raises(LiftError, match="3 features"):
        classifier.predict(np.hstack([X_test, X_test[:, :1]]))
    with pytest.raises(LiftError, match="2-D"):
        classifier.predict(X_test[:, 0])


def test_fit_restores_signal_handlers(int_classifier):
    """Training in-process must not leave Ctrl+C (and SIGTERM) of the caller's program swallowed."""
    _, _, _, before, after = int_classifier
    assert after == before


# ---- a classifier on a DataFrame with text labels -------------------------------------------------------------

@pytest.fixture(scope="module")
def text_classifier(model_cache):
    X, y = _data(labels=("no", "yes"))
    X = X.rename(columns={"x1": "height (cm)", "x2": "y"})  # a feature may even be called y
    X.index = X.index + 1000  # a caller's index must not matter
    X_train = X.iloc[:160].copy()
    classifier = LiftClassifier(**TINY_FAST, template="names").fit(X_train, y.iloc[:160])
    return classifier, X_train, X.iloc[160:], y.iloc[160:].to_numpy()


def test_classifier_on_a_dataframe_with_text_labels(text_classifier):
    classifier, X_train, X_test, y_test = text_classifier
    assert list(classifier.feature_names_in_) == ["height (cm)", "y"]
    assert list(X_train.columns) == ["height (cm)", "y"]  # the caller's frame is not modified
    assert classifier.classes_.tolist() == ["no", "yes"]
    predicted = classifier.predict(X_test)
    assert set(predicted.tolist()) <= {"no", "yes"}
    assert (predicted == y_test).mean() >= 0.9
    assert classifier.score(X_test, y_test) >= 0.9
    # Columns are matched by name, not position.
    reordered = classifier.predict_proba(X_test[["y", "height (cm)"]])
    np.testing.assert_allclose(reordered, classifier.predict_proba(X_test), atol=1e-6)


def test_missing_feature_column(text_classifier):
    classifier, _, X_test, _ = text_classifier
    with pytest.raises(LiftError, match="height"):
        classifier.predict(X_test[["y"]].assign(other=1.0))


def test_feature_columns_named_y_and_target(model_cache):
    """Whatever the features are called, the estimator's own target column must not collide with them."""
    X, y = _data(n=40)
    X = X.assign(target=X["x1"] * 2).rename(columns={"x1": "y"})
    classifier = LiftClassifier(**{**TINY_FAST, "max_steps": 1}).fit(X, y)
    assert list(classifier.feature_names_in_) == ["y", "x2", "target"]
    assert classifier.run_.dataset_info().features == ["y", "x2", "target"]
    assert classifier.predict_proba(X.head(3)).shape == (3, 2)


def test_fit_from_a_worker_thread(model_cache):
    """The Python API works off the main thread (notebook widgets, thread pools), where signals cannot be set."""
    X, y = _data(n=40)
    outcome = {}

    def work():
        try:
            outcome["model"] = LiftClassifier(**{**TINY_FAST, "max_steps": 1}).fit(X, y)
        except BaseException as error:  # noqa: BLE001 - reported below
            outcome["error"] = error

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert "error" not in outcome, repr(outcome.get("error"))
    assert outcome["model"].run_.status()["state"] == "completed"


# ---- cross-validation -----------------------------------------------------------------------------------------

def test_cross_val_score(model_cache):
    X, y = _data(n=120, seed=1)
    scores = cross_val_score(LiftClassifier(**TINY_FAST), X.to_numpy(), y.to_numpy(), cv=2)
    assert scores.shape == (2,)
    assert (scores >= 0.8).all(), scores


# ---- regression -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def regressor(model_cache):
    train, test = synthetic.make_regression("linear", n=100, p=1)
    model = LiftRegressor(**TINY_FAST, samples=3).fit(train[["x1"]], train["y"])
    return model, test.head(10)


def test_regressor_predict_with_std(regressor, monkeypatch):
    model, test = regressor
    mean, std = model.predict(test[["x1"]], return_std=True)
    assert isinstance(mean, np.ndarray) and isinstance(std, np.ndarray)
    assert mean.shape == std.shape == (len(test),)
    assert np.isfinite(mean).all() and np.isfinite(std).all()
    plain = model.predict(test[["x1"]].to_numpy())
    assert isinstance(plain, np.ndarray) and plain.shape == (len(test),) and np.isfinite(plain).all()

    # With canned draws the answer is known: the mean and (population) std of the readable draws, which the
    # estimator asks for `samples` at a time, at its `temperature`.
    draws = []

    def canned(frame, k, temperature, progress=None):
        draws.append((len(frame), k, temperature))
        return [[" 1.00@@@", " 3.00@@@", "junk"][:k]] * len(frame)

    monkeypatch.setattr(model.predictor_, "sample_answers", canned)
    mean, std = model.predict(test[["x1"]], return_std=True)
    assert mean.tolist() == [2.0] * len(test) and std.tolist() == [1.0] * len(test)
    assert {(k, temperature) for _, k, temperature in draws} == {(3, model.temperature)}
    assert sum(rows for rows, _, _ in draws) == len(test)
    assert model.score(test[["x1"]], test["y"]) == pytest.approx(r2_score(test["y"], np.full(len(test), 2.0)))


def test_regressor_run(regressor):
    model, test = regressor
    info = model.run_.dataset_info()
    assert info.task == "regression" and info.n_test == 0
    assert info.n_train + info.n_val == 80
    assert model.get_params()["samples"] == 3


def test_regressor_with_a_text_target_is_a_lift_error(tmp_path):
    X = pd.DataFrame({"x1": np.arange(20.0)})
    with pytest.raises(LiftError, match="numeric target"):
        LiftRegressor(model="tiny", quant="none", run_dir=str(tmp_path / "run")).fit(X, ["a", "b"] * 10)
    assert not (tmp_path / "run").exists()
