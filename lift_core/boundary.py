"""Grids over one or two numeric features, for decision boundaries and variance maps."""

import time
from typing import NamedTuple

import numpy as np
import pandas as pd

from lift_core.errors import LiftError


# The baseline drawn beside the model unless the person picks another.
DEFAULT_BASELINE = {"classification": "logreg", "regression": "polynomial"}
# Share of the data range added on each side. A 1-D regression is about extrapolation, so its line reaches
# further past the data than a 2-D map.
DEFAULT_MARGIN = {1: 0.5, 2: 0.2}


# Resolutions drawn before the requested one, each only when it is at most half of that: on a 2-core CPU an 8x8
# picture takes about 4 s with smollm2-135m and a 20x20 one about 25 s, against minutes for 60x60, and together
# they add 13% to a 60x60 map.
PREVIEW_RESOLUTIONS = (8, 20)

# Seconds per answer that a run's model took on its last grids in this process, by (run folder, basis): a
# process-local timing like the cached model, not run state. A sampled map times the very work a variance map
# repeats; a scored boundary map (a classifier's label scoring of a point takes a little less than sampling one
# answer: 0.35 against 0.5 ms with tiny) times this model in this process; eval.json's timing of the test split,
# a few dozen rows whose fixed costs weigh more (4 ms a row with tiny), comes last.
SAMPLED_BASIS = "the last variance map"
SCORED_BASIS = "the last decision-boundary map"
EVALUATION_BASIS = "this run's test evaluation"
_seconds_per_answer: dict[tuple[str, str], float] = {}


class SamplingEstimate(NamedTuple):
    answers: int  # grid points × samples per point
    seconds: float | None  # None: nothing of this run was timed yet
    basis: str | None  # where the speed was measured, in words


def refinement_resolutions(resolution: int) -> list[int]:
    """The resolutions to draw a map at, coarse first: a picture within seconds, then finer ones in its place."""
    return [preview for preview in PREVIEW_RESOLUTIONS if 2 * preview <= resolution] + [resolution]


def numeric_features(frame: pd.DataFrame, features: list[str]) -> list[str]:
    return [name for name in features if pd.api.types.is_numeric_dtype(frame[name])]


def explorable_features(run) -> list[str]:
    """The run's features when they can be drawn: two numeric ones, or one numeric one for regression."""
    info = run.dataset_info()
    features = info.features
    numeric = numeric_features(run.split("train"), features)
    if numeric == features and (len(features) == 2 or (len(features) == 1 and info.task == "regression")):
        return features
    described = ", ".join(f"{name} ({'number' if name in numeric else 'text'})" for name in features)
    raise LiftError(f"Decision boundaries need two numeric features (or one numeric feature for a regression); "
                    f"run '{run.name}' has {len(features)}: {described}. Evaluation works for any table.")


def sampling_estimate(run, *, resolution: int, samples: int) -> SamplingEstimate:
    """How many answers a variance map of `samples` per grid point draws, and about how long that takes at the
    best measured speed of the run's model (see _seconds_per_answer).

    The sampler keeps its batches the same size whatever the samples per point, so the time scales with the
    answers asked for.
    """
    answers = resolution ** len(explorable_features(run)) * samples
    for basis in (SAMPLED_BASIS, SCORED_BASIS):
        seconds = _seconds_per_answer.get((str(run.path), basis))
        if seconds is not None:
            return SamplingEstimate(answers, answers * seconds, basis)
    results = run.eval_results() or {}
    seconds, rows = results.get("eval_seconds"), results.get("n_test")
    if not seconds or not rows:
        return SamplingEstimate(answers, None, None)
    # A classification's evaluation wrote one greedy answer per row (after scoring it), a regression's drew
    # eval_samples answers per row.
    answered = rows if results.get("task") == "classification" else rows * run.config().eval_samples
    return SamplingEstimate(answers, answers * seconds / answered, EVALUATION_BASIS)


def grid_over(frame: pd.DataFrame, features: list[str], *, resolution: int = 60,
              margin: float = 0.2) -> pd.DataFrame:
    """A regular grid spanning the data plus `margin` of its range on each side.

    Two features give resolution x resolution points; one feature gives a line (for 1-D regression).
    """
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


def model_boundary(run, *, resolution: int = 60, margin: float = 0.2, samples: int = 0, temperature: float = 1.0,
                   progress=None, predictor=None) -> pd.DataFrame:
    """The finetuned model's predictions over a grid around the run's training data.

    With samples=0 classes are scored (probabilities, entropy as spread); with samples=k each point gets
    k generations at `temperature`, and the spread is their vote entropy (classification) or std (regression).
    """
    from lift_core.predict import cached_predictor

    grid = grid_over(run.split("train"), explorable_features(run), resolution=resolution, margin=margin)
    predictor = predictor or cached_predictor(run)
    started = time.perf_counter()  # once the model is loaded: its loading is no part of the speed
    predicted = predictor.predict(grid, samples=samples, temperature=temperature, progress=progress)
    if samples or run.dataset_info().task == "classification":  # a regression's map samples a number of its own
        basis = SAMPLED_BASIS if samples else SCORED_BASIS
        _seconds_per_answer[str(run.path), basis] = (time.perf_counter() - started) / (len(grid) * max(1, samples))
    return grid.join(predicted)


def baseline_boundary(run, name: str, *, resolution: int = 60, margin: float = 0.2) -> pd.DataFrame:
    """A classical baseline fitted on the run's split, predicted over the same grid as the model."""
    from lift_core import baselines
    from lift_core.evaluation import run_dataset

    dataset, splits = run_dataset(run)
    grid = grid_over(splits.train, explorable_features(run), resolution=resolution, margin=margin)
    fitted = baselines.fit_baseline(name, splits, dataset, seed=run.config().seed)
    if dataset.task == "regression":
        return grid.assign(y_pred=fitted.predict(grid))
    proba = baselines.class_probabilities(fitted, grid, dataset.classes)
    result = grid.assign(y_pred=np.asarray(dataset.classes)[proba.argmax(axis=1)])
    for index, label in enumerate(dataset.classes):
        result[f"p_{label}"] = proba[:, index]
    return result
