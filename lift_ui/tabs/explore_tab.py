"""Explore: what a run's model predicts across the feature plane (decision boundaries, as in the LIFT paper),
beside a classical baseline, and how much its sampled answers vary."""

import time
from collections.abc import Iterator
from functools import partial
from typing import NamedTuple

import gradio as gr
import pandas as pd

from lift_core.baselines import CLASSIFIERS, REGRESSORS
from lift_core.boundary import (DEFAULT_BASELINE, DEFAULT_MARGIN, EVALUATION_BASIS, PROBABILITY_TOLERANCE,
                                VALUE_TOLERANCE, baseline_boundary, boundary_levels, explorable_features,
                                sampling_estimate, saved_model_map)
from lift_core.errors import LiftError
from lift_core.estimate import readable_duration
from lift_core.runs import Run
from lift_core.zerogpu import map_seconds
from lift_ui.common import MODEL_JOB, engine_progress, error_message, gpu_handler, run_tab_header, with_context
from lift_ui.context import AppContext
from lift_ui.figures.explore import prediction_figure, regression_band_figure, value_map_figure

# A map's levels are drawn as they land, but none sooner than this after the picture before, except the last: the
# small trailing levels of a map come in quick succession and would only flood the page.
PICTURE_INTERVAL_S = 1.0


class Picture(NamedTuple):
    level: int  # 1 for the coarsest
    grid: pd.DataFrame
    figures: object  # what the handler drew of the grid
    final: bool  # the finished map (shown a second time if its level was shown while refining)


def grid_figure(run: Run, grid: pd.DataFrame, features: list[str], title: str):
    """The predictions over the grid: a class map, a regression surface, or a 1-D regression line."""
    info = run.dataset_info()
    return prediction_figure(grid, features, run.split("train"), info.target, info.classes, title)


def spread_figure(run: Run, grid: pd.DataFrame, features: list[str], title: str, sampled: bool):
    """How unsure the model is: the entropy of its class probabilities (or of sampled votes), the std of numbers."""
    info, train = run.dataset_info(), run.split("train")
    if len(features) == 1:
        return regression_band_figure(grid, features[0], train, info.target, title)
    if info.task == "classification":
        return value_map_figure(grid, features, "spread", train, info.target, info.classes, title,
                                colorscale="Magma", value_range=(0, 1),
                                value_label="vote entropy" if sampled else "entropy")
    return value_map_figure(grid, features, "std", train, info.target, None, title, colorscale="Magma",
                            value_label="std")


def run_defaults(ctx: AppContext, run_name: str | None, request: gr.Request):
    """The baseline choices and the margin that suit the chosen run; a message if it cannot be drawn."""
    if not run_name:  # the page is still loading its run list: nothing is wrong yet
        return gr.Dropdown(), gr.Slider(), ""
    try:
        run = ctx.access(request).finished_trained_run(run_name)
        task = run.dataset_info().task
        features = explorable_features(run)
    except LiftError as error:
        return gr.Dropdown(), gr.Slider(), error_message(error)
    names = list(CLASSIFIERS if task == "classification" else REGRESSORS)
    return (gr.Dropdown(choices=names, value=DEFAULT_BASELINE[task]), gr.Slider(value=DEFAULT_MARGIN[len(features)]),
            f"**{run.name}**: {task} on {' and '.join(features)}.")


def answered_count(grid: pd.DataFrame) -> int:
    return int(grid["scored"].sum())


def paced_pictures(levels: Iterator[pd.DataFrame], draw) -> Iterator[Picture]:
    """The pictures worth showing of a map's levels (coarse first): the first at once, then none sooner than
    PICTURE_INTERVAL_S after the one before, and at the end the last level again as the final picture (drawn only
    if it was skipped: no level says it is the last until the next one fails to come)."""
    shown_at = drawn = figures = None
    for number, grid in enumerate(levels, 1):
        if shown_at is None or time.perf_counter() - shown_at >= PICTURE_INTERVAL_S:
            drawn, figures, shown_at = grid, draw(grid), time.perf_counter()
            yield Picture(number, grid, figures, final=False)
    yield Picture(number, grid, figures if drawn is grid else draw(grid), final=True)


def level_note(picture: Picture, answered: str) -> str:
    """What a picture of a map still being refined shows, e.g. answered="answered by the model"."""
    return (f"Level {picture.level}: {answered_count(picture.grid):,} of {len(picture.grid):,} points {answered} so "
            "far; the rest filled in from them. Refining… (Cancel keeps this picture)")


def boundary_note(run: Run, grid: pd.DataFrame) -> str:
    """What is exact in a finished map of the model and what is filled in, and how."""
    answered = answered_count(grid)
    if answered == len(grid):
        return f"{len(grid):,} grid points, every one answered by the model."
    if run.dataset_info().task == "classification":
        agreement = f"each at least {1 - PROBABILITY_TOLERANCE:.0%} sure of the same class"
    else:
        agreement = f"their answers within {VALUE_TOLERANCE:.0%} of the range of {run.dataset_info().target}"
    return (f"{len(grid):,} grid points: {answered:,} answered by the model, {len(grid) - answered:,} filled in from "
            f"answered neighbours that agree ({agreement}). Tick 'Score every point' for the exact map.")


def boundary(ctx: AppContext, run_name: str, resolution: float, margin: float, baseline: str, exhaustive: bool,
             request: gr.Request, progress=gr.Progress()):
    """The model's map beside the baseline's, and the model's spread from the same pass: a coarse picture within
    seconds, then finer ones in its place. The baseline is fitted after the model's first picture: some take
    seconds."""
    try:
        run = ctx.access(request).finished_trained_run(run_name)
        features = explorable_features(run)
        progress(0, desc="Loading the model")
        levels = boundary_levels(run, resolution=int(resolution), margin=margin, exhaustive=exhaustive,
                                 progress=engine_progress(progress, "Asking the model, coarse points first"))
        baseline_figure = None
        for picture in paced_pictures(levels, partial(model_maps, run, features)):
            model_figure, spread = picture.figures
            note = boundary_note(run, picture.grid) if picture.final else level_note(picture, "answered by the model")
            yield model_figure, baseline_figure, spread, note
            if baseline_figure is None:
                baseline_grid = baseline_boundary(run, baseline, resolution=int(resolution), margin=margin)
                baseline_figure = grid_figure(run, baseline_grid, features, f"Baseline: {baseline}")
    except LiftError as error:
        yield None, None, None, error_message(error)


def saved_maps(ctx: AppContext, run_name: str | None, resolution: float, margin: float, baseline: str,
               exhaustive: bool, request: gr.Request):
    """The maps drawn before with these settings, shown as the tab opens or the run changes, without loading the
    model (a shipped example's are drawn in advance); nothing new when there are none: Draw computes them."""
    nothing = (gr.skip(),) * 4
    if not run_name:
        return nothing
    try:
        run = ctx.access(request).finished_trained_run(run_name)
        features = explorable_features(run)
        grid = saved_model_map(run, resolution=int(resolution), margin=margin, exhaustive=exhaustive)
        if grid is None:
            return nothing
        baseline_figure = grid_figure(run, baseline_boundary(run, baseline, resolution=int(resolution), margin=margin),
                                      features, f"Baseline: {baseline}")
    except LiftError:
        return nothing  # the run's problem is shown once, by run_defaults
    return (*model_maps(run, features, grid), baseline_figure,
            f"{boundary_note(run, grid)} Shown from the map saved when it was drawn; no model was loaded.")


def model_maps(run: Run, features: list[str], grid: pd.DataFrame) -> tuple:
    """The model's map and the spread of its answers, from one grid."""
    return (grid_figure(run, grid, features, f"Finetuned model ({run.name})"),
            spread_figure(run, grid, features, f"Spread of the model's answers ({run.name})", sampled=False))


def sampling_note(ctx: AppContext, run_name: str | None, resolution: float, samples: float, exhaustive: bool,
                  request: gr.Request) -> str:
    """How long mapping the variance will take, said before the person starts it: an exhaustive map samples every
    point, an adaptive one at most that."""
    try:
        run = ctx.access(request).finished_trained_run(run_name)
        answers, seconds, basis = sampling_estimate(run, resolution=int(resolution), samples=int(samples))
    except LiftError:
        return ""  # the run's problem is shown once, in the message line
    count = (f"{answers:,} answers to sample" if exhaustive else
             f"At most {answers:,} answers to sample (fewer where neighbouring points agree)")
    if seconds is None:
        return (f"{count}. No time estimate yet: the model's speed is measured by its test evaluation (Evaluate "
                "tab) and, for a classifier, by drawing the decision boundaries.")
    duration = f"about {readable_duration(seconds)}" + ("" if exhaustive and basis != EVALUATION_BASIS else " or less")
    if basis == EVALUATION_BASIS:
        return (f"{count}: {duration}, estimated from the speed of {basis}, whose few rows make it slow per answer; "
                "drawing the decision boundaries first measures the speed on the grid.")
    return (f"{count}: {duration}, estimated from the speed of {basis} (plus loading the model if another run's is "
            "loaded).")


def variance_note(grid: pd.DataFrame, samples: int, seconds: float) -> str:
    """How many answers a finished variance map sampled, against an exhaustive map, and how many were invalid."""
    answered = answered_count(grid)
    every = ("every point of the map" if answered == len(grid) else
             f"against {len(grid) * samples:,} answers for every point of the map")
    invalid = grid.loc[grid["scored"], "invalid"].mean()
    return (f"Sampled {answered * samples:,} answers in {seconds:.0f} s: {answered:,} points × {samples} samples, "
            f"{every}. {invalid:.1%} of the sampled answers were invalid.")


def variance(ctx: AppContext, run_name: str, resolution: float, margin: float, samples: float, temperature: float,
             exhaustive: bool, request: gr.Request, progress=gr.Progress()):
    """The spread of sampled answers over the grid, drawn level by level as the boundary maps are."""
    try:
        if samples < 2 or temperature < 0:
            raise LiftError("Draw at least 2 samples per point, at a temperature of 0 or more.")
        run = ctx.access(request).finished_trained_run(run_name)
        features = explorable_features(run)
        progress(0, desc="Loading the model")
        started = time.perf_counter()
        levels = boundary_levels(run, resolution=int(resolution), margin=margin, samples=int(samples),
                                 temperature=temperature, exhaustive=exhaustive,
                                 progress=engine_progress(progress, "Sampling, coarse points first"))
        title = f"Spread of {int(samples)} samples at temperature {temperature:g} ({run.name})"
        for picture in paced_pictures(levels, lambda grid: spread_figure(run, grid, features, title, sampled=True)):
            yield picture.figures, (variance_note(picture.grid, int(samples), time.perf_counter() - started)
                                    if picture.final else level_note(picture, f"sampled {int(samples)} times"))
    except LiftError as error:
        yield None, error_message(error)


def map_handlers(ctx: AppContext) -> tuple:
    """The boundary and variance handlers; on ZeroGPU hardware each asks for a GPU for the answers its map needs
    (a second for a saved map)."""
    drawn = gpu_handler(ctx, boundary, lambda run, resolution, margin, baseline, exhaustive, *_: map_seconds(
        run, resolution=int(resolution), margin=margin, exhaustive=exhaustive, samples=0))
    sampled = gpu_handler(ctx, variance, lambda run, resolution, margin, samples, temperature, exhaustive, *_:
                          map_seconds(run, resolution=int(resolution), margin=margin, exhaustive=exhaustive,
                                      samples=int(samples)))
    return drawn, sampled


def build(ctx: AppContext) -> None:
    with gr.Tab("Explore") as tab:
        picker, message = run_tab_header(
            ctx, tab, "For runs on two numeric features (or one, for a regression): the model's predictions "
            "over a grid that reaches past the training data, as in the LIFT paper's decision-boundary plots.")
        with gr.Row(equal_height=True):
            resolution = gr.Slider(10, 120, value=60, step=1, label="Grid resolution (points per side)",
                                   info="A finer map takes longer to draw.")
            margin = gr.Slider(0, 1, value=DEFAULT_MARGIN[2], step=0.05, label="Margin",
                               info="Share of the data range added on each side.")
            # Both tasks' names: a run finished after the page loaded may be of either task.
            baseline = gr.Dropdown(list(dict.fromkeys(CLASSIFIERS + REGRESSORS)),
                                   value=DEFAULT_BASELINE["classification"], label="Baseline beside the model",
                                   info="A classical model fitted on the run's own split.")
            exhaustive = gr.Checkbox(label="Score every point (exact map, slower)",
                                     info="Otherwise the model answers a coarse lattice and the points where "
                                     "neighbours disagree; the rest is filled in from them.")
        with gr.Row():
            draw = gr.Button("Draw decision boundaries", variant="primary")
            cancel_drawing = gr.Button("Cancel", scale=0, min_width=120)
        with gr.Row():
            model_plot = gr.Plot(label="Finetuned model")
            baseline_plot = gr.Plot(label="Baseline")

        gr.Markdown("### Prediction variance\nDrawing the boundaries also maps how unsure the model is, at no extra "
                    "cost (left): the entropy of its class probabilities (for numbers, the spread of its sampled "
                    "answers). The paper's view (right) samples each grid point several times and maps how much "
                    "the answers disagree (vote entropy for classes, standard deviation for numbers).")
        with gr.Row():
            samples = gr.Slider(2, 20, value=5, step=1, label="Samples per point")
            temperature = gr.Slider(0, 2, value=1.0, step=0.1, label="Sampling temperature")
        estimate = gr.Markdown()
        with gr.Row():
            sample = gr.Button("Map the variance of sampled answers")
            cancel_sampling = gr.Button("Cancel", scale=0, min_width=120)
        # Two slots of one size, as the boundary maps above: the three maps share their axes and their square.
        with gr.Row():
            spread_plot = gr.Plot(label="Spread of the scored answers")
            variance_plot = gr.Plot(label="Variance of sampled answers")
        drawn, sampled = map_handlers(ctx)
        drawing = draw.click(drawn, [picker, resolution, margin, baseline, exhaustive],
                             [model_plot, baseline_plot, spread_plot, message], api_name="boundary",
                             **MODEL_JOB)
        sampling = sample.click(sampled, [picker, resolution, margin, samples, temperature, exhaustive],
                                [variance_plot, message], api_name="variance", **MODEL_JOB)
        for cancel, job in ((cancel_drawing, drawing), (cancel_sampling, sampling)):
            cancel.click(None, cancels=[job], api_visibility="private")
        estimating = with_context(sampling_note, ctx), [picker, resolution, samples, exhaustive], estimate
        gr.on([tab.select, picker.change, resolution.change, samples.change, exhaustive.change], *estimating,
              api_name="sampling_estimate")
        for timed in (drawing, sampling):  # each measures the model's speed anew
            timed.then(*estimating, api_visibility="private")
        # No triggers: on page load and whenever the run changes, so the first run shown gets its settings too.
        defaults = gr.on(None, with_context(run_defaults, ctx), picker, [baseline, margin, message],
                         api_visibility="private")
        # Not a model job: showing saved maps never waits behind another visitor's drawing.
        showing = with_context(saved_maps, ctx), [picker, resolution, margin, baseline, exhaustive]
        shown = [model_plot, spread_plot, baseline_plot, message]
        tab.select(*showing, shown, api_name="saved_maps", show_progress="hidden")  # first: it takes the name
        defaults.then(*showing, shown, api_visibility="private", show_progress="hidden")
