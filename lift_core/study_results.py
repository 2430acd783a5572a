"""A study's scores: each run's test score and its baselines' under the same factor, gathered from the run
folders; their mean and spread across seeds per level; the table the CLI prints and the CSV a person downloads."""

from collections.abc import Iterator

import numpy as np
import pandas as pd

from lift_core.boundary import DEFAULT_MARGIN, boundary_levels
from lift_core.studies import LIFT, SCORES, Study, wide_range

SCORE_NAMES = {"accuracy": "test accuracy (higher is better)",
               "rae": "test RAE, relative absolute error (lower is better)"}
RESULT_COLUMNS = ["level", "seed", "run", "state", "method", "metric", "score"]


def score_metric(study: Study) -> str:
    return SCORES[study.definition()["task"]]


def results(study: Study) -> pd.DataFrame:
    """One row per run and method (LIFT, then each baseline fitted on the run's rows): level, seed, run, the run's
    state, method, metric and test score (empty until the run is evaluated and its baselines fitted)."""
    metric = score_metric(study)
    states = study.states()
    rows = []
    for name in study.run_names():
        planned, run = study.planned(name), study.run(name)
        row = {"level": planned["level"], "seed": planned["seed"], "run": name, "state": states[name],
               "metric": metric}
        evaluated = run.eval_results() if run.exists() else None
        rows.append({**row, "method": LIFT, "score": evaluated.get(metric) if evaluated else None})
        baselines = run.baselines() if run.exists() else None
        for baseline in [] if baselines is None else baselines.to_dict("records"):
            rows.append({**row, "method": baseline["name"], "score": baseline.get(metric)})
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Per level and method, in the study's order: the mean score, its sample standard deviation across seeds (0 for
    one seed) and how many runs it is over; levels or methods with no score yet are left out."""
    scored = scores.dropna(subset=["score"]).astype({"score": float, "level": str})
    grouped = scored.groupby(["level", "method"], sort=False)["score"]
    table = grouped.agg(mean="mean", std=lambda values: float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                        runs="count")
    return table.reset_index()


def summary_text(study: Study) -> str:
    """Levels down, methods across, "mean ± std" where there are several seeds: what `study` prints."""
    scores = results(study)
    table = summary(scores)
    if table.empty:
        return "No run of this study has finished yet."
    several = table["runs"].max() > 1
    table["cell"] = [f"{mean:.3f} ± {std:.3f}" if several else f"{mean:.3f}"
                     for mean, std in zip(table["mean"], table["std"])]
    grid = table.pivot(index="level", columns="method", values="cell")
    levels = list(dict.fromkeys(scores["level"].astype(str)))
    methods = list(dict.fromkeys(table["method"]))
    grid = grid.reindex(index=[level for level in levels if level in grid.index], columns=methods).fillna("–")
    grid.index.name = study.spec().factor()
    metric = score_metric(study)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        return f"{SCORE_NAMES[metric]}\n{grid.to_string()}"


# A small multiple per level: coarser than Explore's 60 × 60, so that a study's maps take a fraction of its runs.
MAP_RESOLUTION = 30


def drawable(study: Study) -> bool:
    """Whether the study's runs can be drawn, as in Explore: two numeric features, or one for a regression."""
    definition = study.definition()
    features = definition["features"]
    numeric = all(name in definition["ranges"] for name in features)
    return numeric and len(features) in ((1, 2) if definition["task"] == "regression" else (2,))


def level_maps(study: Study, resolution: int = MAP_RESOLUTION) -> Iterator[tuple]:
    """(level, map, training rows) for each level whose first-seed run has finished: the model's decision boundary
    over the plane, or a 1-D regression's predictions over the paper's wider range (wide_range of the study's rows),
    with the study's own feature names (a shuffled-names run's columns named back). Each map is saved in its run, so
    the small multiples come back without the model."""
    definition = study.definition()
    features = definition["features"]
    for name in study.run_names():
        planned, run = study.planned(name), study.run(name)
        if planned["seed"] != study.spec().base_config().seed or not run.has_adapter():
            continue
        if run.reconcile().get("state") != "completed":
            continue
        margin = DEFAULT_MARGIN[len(features)]
        if len(features) == 1:
            margin = _margin_to_cover(run.split("train")[features[0]], wide_range(*definition["ranges"][features[0]]))
        *_, grid = boundary_levels(run, resolution=resolution, margin=margin)
        named_back = {shown: name for name, shown in planned.get("renamed", {}).items()}
        yield planned["level"], grid.rename(columns=named_back), run.split("train").rename(columns=named_back)


def _margin_to_cover(values: pd.Series, covered: tuple[float, float]) -> float:
    """The grid margin (a share of the training range on each side) that reaches `covered` at both ends."""
    low, high = float(values.min()), float(values.max())
    width = (high - low) or 1.0
    return round(max(low - covered[0], covered[1] - high) / width, 3)
