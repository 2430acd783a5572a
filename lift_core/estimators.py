"""scikit-learn estimators: LiftClassifier and LiftRegressor."""

import tempfile

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from lift_core import data
from lift_core.config import DEFAULTS as _DEFAULTS
from lift_core.config import SETTINGS, TrainConfig
from lift_core.errors import LiftError

# The TrainConfig fields an estimator takes as parameters: the same names, defaults and meaning as in the CLI
# and the web app (a test checks the signature against this list).
TRAIN_SETTINGS = ("model", "template", "template_text", "decimals", "trim_zeros", "quant", "epochs", "max_steps", "lr",
                  "warmup", "batch_size", "lora_r", "lora_alpha", "lora_dropout", "lora_layers", "val_size", "seed",
                  "evaluations", "stop_when_perfect")
# Named for what they do in predict, they are TrainConfig's eval_samples and eval_temperature.
PREDICT_SETTINGS = {"samples": "eval_samples", "temperature": "eval_temperature"}


def _parameters_doc() -> str:
    """The numpydoc Parameters section, written from TrainConfig's help texts."""
    settings = {**{name: name for name in TRAIN_SETTINGS}, **PREDICT_SETTINGS}
    lines = ["", "    Parameters", "    ----------"]
    for parameter, setting in settings.items():
        lines += [f"    {parameter} : default {getattr(_DEFAULTS, setting)!r}",
                  f"        {SETTINGS[setting].metadata['help']}"]
    lines += ["    run_dir : default None", "        the run folder to write; None: a fresh temporary folder", ""]
    return "\n".join(lines)


def _as_frame(X, feature_names=None) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X.reset_index(drop=True)
    array = np.asarray(X, dtype=object if not np.issubdtype(np.asarray(X).dtype, np.number) else None)
    if array.ndim != 2:
        raise LiftError(f"X must be 2-D (rows x features); got an array of shape {array.shape}.")
    names = feature_names or [f"x{i + 1}" for i in range(array.shape[1])]
    if len(names) != array.shape[1]:
        raise LiftError(f"X has {array.shape[1]} features; the estimator was fitted with {len(names)}.")
    return pd.DataFrame(array, columns=names)


class _LiftEstimator(BaseEstimator):
    _task = ""

    def __init__(self, model=_DEFAULTS.model, template=_DEFAULTS.template, template_text=None,
                 decimals=_DEFAULTS.decimals, trim_zeros=_DEFAULTS.trim_zeros, quant=_DEFAULTS.quant,
                 epochs=_DEFAULTS.epochs, max_steps=_DEFAULTS.max_steps, lr=_DEFAULTS.lr, warmup=_DEFAULTS.warmup,
                 batch_size=_DEFAULTS.batch_size, lora_r=_DEFAULTS.lora_r, lora_alpha=_DEFAULTS.lora_alpha,
                 lora_dropout=_DEFAULTS.lora_dropout, lora_layers=_DEFAULTS.lora_layers, val_size=_DEFAULTS.val_size,
                 seed=_DEFAULTS.seed, evaluations=_DEFAULTS.evaluations, stop_when_perfect=_DEFAULTS.stop_when_perfect,
                 samples=_DEFAULTS.eval_samples, temperature=_DEFAULTS.eval_temperature, run_dir=None):
        self.model = model
        self.template = template
        self.template_text = template_text
        self.decimals = decimals
        self.trim_zeros = trim_zeros
        self.quant = quant
        self.epochs = epochs
        self.max_steps = max_steps
        self.lr = lr
        self.warmup = warmup
        self.batch_size = batch_size
        self.lora_r = lora_r
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.lora_layers = lora_layers
        self.val_size = val_size
        self.seed = seed
        self.evaluations = evaluations
        self.stop_when_perfect = stop_when_perfect
        self.samples = samples
        self.temperature = temperature
        self.run_dir = run_dir

    def fit(self, X, y):
        from lift_core.predict import Predictor
        from lift_core.training import run_training

        frame = _as_frame(X)
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = frame.shape[1]
        target = next(name for name in ("y", "target", "__lift_target__") if name not in frame.columns)
        frame[target] = np.asarray(y)
        dataset = data.prepare_dataset(frame, target, features=list(frame.columns[:-1]), task=self._task)
        # No test rows: the caller holds out its own (cross_val_score does).
        splits = data.split_dataset(dataset, test_size=0.0, val_size=self.val_size, seed=self.seed)
        config = TrainConfig(data="<in-memory>", target=target, task=self._task, test_size=0.0,
                             **{name: getattr(self, name) for name in TRAIN_SETTINGS})
        run_dir = self.run_dir or tempfile.mkdtemp(prefix="lift-run-")
        self.run_ = run_training(config, run_dir, splits_loaded=(dataset, splits))
        self.predictor_ = Predictor.from_run(self.run_)
        self._remember_targets(y, dataset)
        return self

    def _remember_targets(self, y, dataset) -> None:
        pass

    def _predict_frame(self, X, **kwargs) -> pd.DataFrame:
        check_is_fitted(self, "predictor_")
        names = list(self.feature_names_in_)
        frame = _as_frame(X, names)
        missing = [name for name in names if name not in frame.columns]
        if missing:
            raise LiftError(f"X lacks the features seen in fit: {', '.join(missing)}.")
        return self.predictor_.predict(frame[names], **kwargs)


class LiftClassifier(ClassifierMixin, _LiftEstimator):
    __doc__ = ("LIFT classification: finetune a causal LM on rows-as-sentences; probabilities by label scoring.\n"
               + _parameters_doc())

    _task = "classification"

    def _remember_targets(self, y, dataset) -> None:
        # The model answers in label text; map it back to the caller's own label values and types.
        originals = pd.Series(np.asarray(y)).drop_duplicates()
        by_text = {data.label_text(value): value for value in originals}
        self.classes_ = np.asarray([by_text[text] for text in dataset.classes])

    def predict_proba(self, X) -> np.ndarray:
        predicted = self._predict_frame(X)
        return predicted[[c for c in predicted.columns if c.startswith("p_")]].to_numpy()

    def predict(self, X) -> np.ndarray:
        proba = self.predict_proba(X)  # checks that the estimator is fitted before classes_ is read
        return self.classes_[proba.argmax(axis=1)]


class LiftRegressor(RegressorMixin, _LiftEstimator):
    __doc__ = "LIFT regression: the mean of `samples` generations at `temperature`.\n" + _parameters_doc()

    _task = "regression"

    def predict(self, X, return_std: bool = False):
        predicted = self._predict_frame(X, samples=self.samples, temperature=self.temperature)
        mean = predicted["y_pred"].to_numpy()
        return (mean, predicted["std"].to_numpy()) if return_std else mean
