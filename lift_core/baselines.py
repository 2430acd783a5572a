"""Classical baselines the fine-tuned LM is compared against (the LIFT paper's set).

Each baseline is a scikit-learn Pipeline (impute, standardize numbers, one-hot text, then the model) tuned by
a small 3-fold grid search on train+val and scored on test with lift_core.metrics, so its numbers sit in the
same table as the LM's.
"""

import math
import time
import warnings

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.impute import SimpleImputer
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, PolynomialFeatures, StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from lift_core.data import Dataset, Splits
from lift_core.errors import LiftError
from lift_core.metrics import classification_metrics, regression_metrics

CLASSIFIERS = (
    "majority", "logreg", "knn", "decision_tree", "rbf_svm", "random_forest", "mlp", "gradient_boosting",
)
REGRESSORS = (
    "polynomial", "knn", "kernel_ridge", "random_forest", "gradient_boosting", "mlp", "gaussian_process",
)
CV_FOLDS = 3
KNN_NEIGHBORS = (1, 3, 5, 9)
# Adam's default step (1e-3) needs hundreds more epochs on small tables; 1e-2 reached better scores on the
# synthetic sets in a fraction of the time.
MLP_LEARNING_RATE = 0.01
MLP_MAX_ITER = 300
# Exact GP regression costs O(n^3) time and O(n^2) memory; a seeded subsample of this many training rows
# keeps it to seconds.
GP_MAX_ROWS = 1000
# One-hot columns per categorical feature; rarer values share one "infrequent" column, so an ID-like text
# column cannot blow up the dense design matrix.
MAX_CATEGORIES = 50
# Polynomial degrees whose expanded design matrix would be wider than this are left out of the grid.
POLYNOMIAL_MAX_COLUMNS = 5000


def run_baselines(splits: Splits, dataset: Dataset, *, names=None, seed: int = 0) -> pd.DataFrame:
    """Fit each named baseline (default: all for the task) and score it on the test split.

    One row per baseline: name, the metrics of lift_core.metrics, fit_seconds (grid search + refit).
    """
    names = check_names(names, dataset.task)
    rows = []
    for name in names:
        start = time.perf_counter()
        model = fit_baseline(name, splits, dataset, seed=seed)
        fit_seconds = time.perf_counter() - start
        rows.append({"name": name, **_score(model, splits.test, dataset), "fit_seconds": fit_seconds})
    return pd.DataFrame(rows)


def fit_baseline(name: str, splits: Splits, dataset: Dataset, *, seed: int = 0) -> Pipeline:
    """Grid-search one baseline on train+val and return the refit Pipeline.

    The Pipeline takes a DataFrame with the feature columns, so it can be evaluated on any grid of points
    (decision boundaries); use class_probabilities for predict_proba columns in dataset.classes order.
    """
    check_names([name], dataset.task)
    train = _training_rows(name, splits, dataset, seed)
    X, y = train[dataset.features], train[dataset.target]
    if dataset.task == "classification" and name != "majority" and y.nunique() < 2:
        raise LiftError(
            f"The training rows hold only the class {y.iloc[0]!r}, so {name} has nothing to separate. "
            "Use more rows or a smaller test_size so that every class reaches training."
        )
    if dataset.task == "classification":
        model, grid = _classifier(name, len(y), seed)
    else:
        model, grid = _regressor(name, X, seed)
    pipeline = Pipeline([("features", _preprocessor(X)), ("model", model)])
    with warnings.catch_warnings():
        # Small grids on small data often stop before full convergence; the test score is what matters.
        warnings.simplefilter("ignore", ConvergenceWarning)
        # SVC(probability=True) is deprecated in scikit-learn 1.9 (pinned). Its suggested replacement,
        # CalibratedClassifierCV, rejects any class with fewer rows than calibration folds, which rare classes
        # of real tables hit inside the grid search; libsvm's own Platt scaling copes with them.
        warnings.filterwarnings("ignore", message="The `probability` parameter", category=FutureWarning)
        if not grid:
            return pipeline.fit(X, y)
        search = GridSearchCV(
            pipeline,
            {f"model__{key}": values for key, values in grid.items()},
            cv=_folds(y, dataset.task, seed),
            n_jobs=1,
        )
        return search.fit(X, y).best_estimator_


def class_probabilities(model: Pipeline, X: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """predict_proba with one column per label of `classes`, in that order.

    The model only knows the classes it saw in training (model.classes_, sorted by scikit-learn);
    a class it never saw gets probability 0.
    """
    proba = model.predict_proba(X)
    column_of = {label: column for column, label in enumerate(classes)}
    aligned = np.zeros((len(X), len(classes)))
    for column, label in enumerate(model.classes_):
        aligned[:, column_of[label]] = proba[:, column]
    return aligned


def check_names(names, task: str) -> list[str]:
    """The baselines named (all of the task's for None), refused when one is not a baseline of the task."""
    valid = CLASSIFIERS if task == "classification" else REGRESSORS
    if names is None:
        return list(valid)
    names = [names] if isinstance(names, str) else list(names)
    unknown = [name for name in names if name not in valid]
    if unknown:
        raise LiftError(
            f"Unknown {task} baseline(s): {', '.join(map(str, unknown))}. Choose from: {', '.join(valid)}."
        )
    return names


def _training_rows(name: str, splits: Splits, dataset: Dataset, seed: int) -> pd.DataFrame:
    train = pd.concat([frame for frame in (splits.train, splits.val) if len(frame)], ignore_index=True)
    if train.empty:
        raise LiftError("The train and validation splits are empty: there is nothing to fit baselines on.")
    if dataset.task == "regression" and name == "gaussian_process" and len(train) > GP_MAX_ROWS:
        train = train.sample(n=GP_MAX_ROWS, random_state=seed)
    return train


def _preprocessor(X: pd.DataFrame) -> ColumnTransformer:
    numeric = [column for column in X.columns if is_numeric_dtype(X[column]) and not is_bool_dtype(X[column])]
    categorical = [column for column in X.columns if column not in numeric]
    numeric_steps = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    categorical_steps = make_pipeline(
        FunctionTransformer(_as_text),
        SimpleImputer(strategy="most_frequent"),
        OneHotEncoder(handle_unknown="ignore", max_categories=MAX_CATEGORIES, sparse_output=False),
    )
    branches = (("numeric", numeric_steps, numeric), ("categorical", categorical_steps, categorical))
    transformers = [(kind, steps, columns) for kind, steps, columns in branches if columns]
    # Dense output: the GP needs it, and MAX_CATEGORIES bounds its width.
    return ColumnTransformer(transformers, sparse_threshold=0)


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    # The imputer and encoder sort values, which fails on bool or mixed-type columns, so categories become
    # strings; missing values (None included) become NaN, the marker the imputer looks for.
    text = frame.apply(lambda column: column.map(str, na_action="ignore")).astype(object)
    return text.where(frame.notna(), np.nan)


def _folds(y: pd.Series, task: str, seed: int):
    # Stratify when every class can appear in every fold; rare classes would make StratifiedKFold complain.
    if task == "classification" and y.value_counts().min() >= CV_FOLDS:
        return StratifiedKFold(CV_FOLDS, shuffle=True, random_state=seed)
    return KFold(CV_FOLDS, shuffle=True, random_state=seed)


def _neighbor_counts(n_rows: int) -> list[int]:
    # k must not exceed the rows of a grid-search training fold.
    fold_rows = n_rows - math.ceil(n_rows / CV_FOLDS)
    return [k for k in KNN_NEIGHBORS if k <= fold_rows] or [1]


def _classifier(name: str, n_rows: int, seed: int):
    """(estimator, grid) for a classification baseline; grid keys are the estimator's parameters."""
    match name:
        case "majority":
            return DummyClassifier(strategy="most_frequent"), {}
        case "logreg":
            return LogisticRegression(max_iter=1000), {"C": [0.1, 1.0, 10.0]}
        case "knn":
            return KNeighborsClassifier(), {"n_neighbors": _neighbor_counts(n_rows)}
        case "decision_tree":
            return DecisionTreeClassifier(random_state=seed), {"max_depth": [3, 5, None]}
        case "rbf_svm":
            return SVC(kernel="rbf", probability=True, random_state=seed), {"C": [0.1, 1.0, 10.0]}
        case "random_forest":
            return RandomForestClassifier(random_state=seed, n_jobs=1), {"n_estimators": [50, 100]}
        case "mlp":
            return (
                MLPClassifier(learning_rate_init=MLP_LEARNING_RATE, max_iter=MLP_MAX_ITER, random_state=seed),
                {"hidden_layer_sizes": [(64,), (64, 64)]},
            )
        case "gradient_boosting":
            return GradientBoostingClassifier(random_state=seed), {"n_estimators": [50, 100]}


def _regressor(name: str, X: pd.DataFrame, seed: int):
    """(estimator, grid) for a regression baseline.

    The model is wrapped so it learns a standardized target: kernel ridge has no intercept and the MLP and
    GP train badly on targets in the thousands.
    """
    match name:
        case "polynomial":
            model = make_pipeline(PolynomialFeatures(include_bias=False), Ridge())
            grid = {"polynomialfeatures__degree": _polynomial_degrees(X), "ridge__alpha": [1e-3, 1.0]}
        case "knn":
            model, grid = KNeighborsRegressor(), {"n_neighbors": _neighbor_counts(len(X))}
        case "kernel_ridge":
            model, grid = KernelRidge(kernel="rbf"), {"alpha": [0.01, 0.1, 1.0], "gamma": [0.1, 1.0]}
        case "random_forest":
            model, grid = RandomForestRegressor(random_state=seed, n_jobs=1), {"n_estimators": [50, 100]}
        case "gradient_boosting":
            model, grid = GradientBoostingRegressor(random_state=seed), {"n_estimators": [50, 100]}
        case "mlp":
            model = MLPRegressor(
                learning_rate_init=MLP_LEARNING_RATE, max_iter=MLP_MAX_ITER, random_state=seed
            )
            grid = {"hidden_layer_sizes": [(64,), (64, 64)]}
        case "gaussian_process":
            # No grid: the kernel's hyperparameters are fit by maximizing the marginal likelihood.
            kernel = ConstantKernel() * RBF() + WhiteKernel()
            model, grid = GaussianProcessRegressor(kernel=kernel, random_state=seed), {}
    wrapped = TransformedTargetRegressor(regressor=model, transformer=StandardScaler())
    return wrapped, {f"regressor__{key}": values for key, values in grid.items()}


def _polynomial_degrees(X: pd.DataFrame) -> list[int]:
    width = _preprocessor(X).fit_transform(X).shape[1]
    # A degree-d expansion of w columns has comb(w + d, d) - 1 terms (no bias column).
    higher = [degree for degree in (2, 3) if math.comb(width + degree, degree) - 1 <= POLYNOMIAL_MAX_COLUMNS]
    return [1, *higher]


def _score(model: Pipeline, test: pd.DataFrame, dataset: Dataset) -> dict:
    X, y_true = test[dataset.features], test[dataset.target].tolist()
    if dataset.task == "classification":
        proba = class_probabilities(model, X, dataset.classes)
        return classification_metrics(y_true, model.predict(X).tolist(), proba, dataset.classes)
    return regression_metrics(y_true, model.predict(X).tolist())
