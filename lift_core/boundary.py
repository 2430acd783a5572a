"""Grids over one or two numeric features, for decision boundaries and variance maps.

A model's map is computed adaptively (refine.py): a coarse lattice first, then only where its answers change, and
the points in between are filled in from answered neighbours; each level is a better picture of the same map.
"""

import time
from collections.abc import Iterator
from functools import partial
from typing import NamedTuple

import numpy as np
import pandas as pd

from lift_core import answers, refine
from lift_core.errors import LiftError


# The baseline drawn beside the model unless the person picks another.
DEFAULT_BASELINE = {"classification": "logreg", "regression": "polynomial"}
# Share of the data range added on each side. A 1-D regression is about extrapolation, so its line reaches
# further past the data than a 2-D map.
DEFAULT_MARGIN = {1: 0.5, 2: 0.2}


# A cell of the map is filled in from its corners only where they agree: for classes, each corner gives the same
# class a probability (or vote share) of at least 1 - PROBABILITY_TOLERANCE, and their shares of invalid answers
# differ by at most that; for numbers, the prediction, median and std differ by at most VALUE_TOLERANCE of the
# training targets' range. Elsewhere cells are split down to neighbouring points (see refine.py). A language
# model's probabilities are not smooth where it is unsure (each number is read digit by digit): interpolating
# them there missed the 0.05 promise on 3% of a map, hence nothing unsure is filled in.
PROBABILITY_TOLERANCE = 0.03
VALUE_TOLERANCE = 0.03

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
    answers: int  # grid points × samples per point: every point, as an exhaustive map; an adaptive one draws fewer
    seconds: float | None  # None: nothing of this run was timed yet
    basis: str | None  # where the speed was measured, in words


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
    seconds = test_seconds_per_answer(run)
    if seconds is None:
        return SamplingEstimate(answers, None, None)
    return SamplingEstimate(answers, answers * seconds, EVALUATION_BASIS)


def answers_per_row(run) -> int:
    """The answers a run's model gives a row: a classification one greedy answer (after scoring the classes), a
    regression eval_samples draws."""
    return 1 if run.dataset_info().task == "classification" else run.config().eval_samples


def test_seconds_per_answer(run) -> float | None:
    """The seconds per answer of the run's test evaluation (eval.json), None before it."""
    results = run.eval_results() or {}
    seconds, rows = results.get("eval_seconds"), results.get("n_test")
    return seconds / (rows * answers_per_row(run)) if seconds and rows else None


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


def map_key(*, resolution: int, margin: float, exhaustive: bool = False, baseline: str | None = None) -> str:
    """The name a finished map is saved under in its run: the model's scored map, or a baseline's."""
    kind = f"baseline-{baseline}" if baseline else "model-" + ("exhaustive" if exhaustive else "adaptive")
    return f"{kind}-{resolution}-margin{margin:g}"


def saved_model_map(run, *, resolution: int, margin: float, exhaustive: bool = False) -> pd.DataFrame | None:
    """The model's finished map with these settings, if it was drawn before: an exhaustive one also answers an
    adaptive request (it is the exact map). Sampled (variance) maps are never saved: each asks for new samples."""
    for exact in (True, False) if not exhaustive else (True,):
        saved = run.saved_map(map_key(resolution=resolution, margin=margin, exhaustive=exact))
        if saved is not None:
            return saved
    return None


def boundary_levels(run, *, resolution: int = 60, margin: float = 0.2, samples: int = 0, temperature: float = 1.0,
                    exhaustive: bool = False, progress=None, predictor=None) -> Iterator[pd.DataFrame]:
    """The finetuned model's predictions over a grid around the run's training data, as one full grid frame per
    refinement level, coarse first; the last is the map.

    With samples=0 classes are scored (probabilities, entropy as spread); with samples=k each point gets
    k generations at `temperature`, and the spread is their vote entropy (classification) or std (regression).
    The `scored` column says which points the model answered; the others are interpolated from answered
    neighbours, unless `exhaustive`, whose last level has every point answered. `progress(done, total)` follows
    each level's points. A scored map of the run's own model is saved in the run when finished, and a saved one
    is then the only level, with no model loaded.
    """
    from lift_core.predict import cached_predictor

    # Only the run's own model's scored maps are saved and reused: another predictor (a test's, a benchmark's) draws
    # its own, and a sampled map asks for new samples.
    key = None if samples or predictor else map_key(resolution=resolution, margin=margin, exhaustive=exhaustive)
    saved = saved_model_map(run, resolution=resolution, margin=margin, exhaustive=exhaustive) if key else None
    if saved is not None:
        yield saved
        return
    info = run.dataset_info()
    features = explorable_features(run)
    train = run.split("train")
    grid = grid_over(train, features, resolution=resolution, margin=margin)
    predictor = predictor or cached_predictor(run)
    classification = info.task == "classification"
    columns = [f"p_{label}" for label in info.classes] if classification else ["y_pred", "median", "std"]
    columns.append("invalid")
    judge = partial(_unsettled, class_count=len(info.classes) if classification else 0,
                    value_scale=float(np.ptp(train[info.target].to_numpy(float))) if not classification else 0.0)
    timed = {"seconds": 0.0, "points": 0}

    def answer(points: np.ndarray) -> np.ndarray:
        started = time.perf_counter()  # the model is loaded by now: its loading is no part of the speed
        predicted = predictor.predict(grid.iloc[points], samples=samples, temperature=temperature, progress=progress)
        timed["seconds"] += time.perf_counter() - started
        timed["points"] += len(points)
        return predicted[columns].to_numpy(float)

    for level in refine.refine(resolution, len(features), answer, judge, exhaustive=exhaustive):
        if classification:
            predicted = answers.shares_frame(info.classes, level.values[:, :-1], level.values[:, -1])
        else:
            predicted = pd.DataFrame(level.values, columns=columns)
        frame = grid.join(predicted).assign(scored=level.scored)
        yield frame
    if key and not run.read_only:
        run.save_map(key, frame)
    if samples or classification:  # a regression's map samples a number of its own
        basis = SAMPLED_BASIS if samples else SCORED_BASIS
        _seconds_per_answer[str(run.path), basis] = timed["seconds"] / (timed["points"] * max(1, samples))


def _unsettled(corner_values: np.ndarray, class_count: int, value_scale: float) -> np.ndarray:
    """Which cells (corner_values: cells, corners, columns) have corners that do not agree as the tolerances above
    ask. A classification's columns are its class shares then the share of invalid answers; a regression's are its
    numbers then the share of invalid answers."""
    invalid_differs = np.ptp(corner_values[..., -1], axis=1) > PROBABILITY_TOLERANCE
    if not class_count:
        numbers = corner_values[..., :-1]
        return invalid_differs | (np.ptp(numbers, axis=1) > VALUE_TOLERANCE * (value_scale or 1.0)).any(axis=1)
    shares = corner_values[..., :class_count]
    winners = shares.argmax(axis=-1)
    return (invalid_differs | (winners != winners[:, :1]).any(axis=1)
            | (shares.max(axis=-1).min(axis=1) < 1 - PROBABILITY_TOLERANCE))


def model_boundary(run, **options) -> pd.DataFrame:
    """The finished map of boundary_levels (same options), without its coarser pictures."""
    *_, last = boundary_levels(run, **options)
    return last


def baseline_boundary(run, name: str, *, resolution: int = 60, margin: float = 0.2) -> pd.DataFrame:
    """A classical baseline fitted on the run's split, predicted over the same grid as the model."""
    from lift_core import baselines
    from lift_core.evaluation import run_dataset

    key = map_key(resolution=resolution, margin=margin, baseline=name)
    saved = run.saved_map(key)
    if saved is not None:
        return saved
    dataset, splits = run_dataset(run)
    grid = grid_over(splits.train, explorable_features(run), resolution=resolution, margin=margin)
    fitted = baselines.fit_baseline(name, splits, dataset, seed=run.config().seed)
    if dataset.task == "regression":
        result = grid.assign(y_pred=fitted.predict(grid))
    else:
        proba = baselines.class_probabilities(fitted, grid, dataset.classes)
        result = grid.assign(y_pred=np.asarray(dataset.classes)[proba.argmax(axis=1)])
        for index, label in enumerate(dataset.classes):
            result[f"p_{label}"] = proba[:, index]
    if not run.read_only:
        run.save_map(key, result)
    return result
