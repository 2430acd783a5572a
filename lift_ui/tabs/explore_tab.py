"""Explore: what a run's model predicts across the feature plane (decision boundaries, as in the LIFT paper),
beside a classical baseline, and how much its sampled answers vary."""

import time
from functools import partial

import gradio as gr
import pandas as pd

from lift_core.baselines import CLASSIFIERS, REGRESSORS
from lift_core.boundary import (DEFAULT_BASELINE, DEFAULT_MARGIN, EVALUATION_BASIS, baseline_boundary,
                                explorable_features, model_boundary, refinement_resolutions, sampling_estimate)
from lift_core.errors import LiftError
from lift_core.estimate import readable_duration
from lift_core.runs import Run, finished_trained_run
from lift_ui.common import MODEL_JOB, engine_progress, error_message, run_tab_header
from lift_ui.context import AppContext
from lift_ui.figures.explore import class_boundary_figure, regression_band_figure, value_map_figure


def grid_figure(run: Run, grid: pd.DataFrame, features: list[str], title: str):
    """The predictions over the grid: a class map, a regression surface, or a 1-D regression line."""
    info, train = run.dataset_info(), run.split("train")
    if len(features) == 1:
        return regression_band_figure(grid, features[0], train, info.target, title)
    if info.task == "classification":
        return class_boundary_figure(grid, features, info.classes, train, info.target, title)
    return value_map_figure(grid, features, "y_pred", train, info.target, None, title,
                            value_label=f"predicted {info.target}")


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


def run_defaults(ctx: AppContext, run_name: str | None):
    """The baseline choices and the margin that suit the chosen run; a message if it cannot be drawn."""
    if not run_name:  # the page is still loading its run list: nothing is wrong yet
        return gr.Dropdown(), gr.Slider(), ""
    try:
        run = finished_trained_run(ctx.runs_dir, run_name)
        task = run.dataset_info().task
        features = explorable_features(run)
    except LiftError as error:
        return gr.Dropdown(), gr.Slider(), error_message(error)
    names = list(CLASSIFIERS if task == "classification" else REGRESSORS)
    return (gr.Dropdown(choices=names, value=DEFAULT_BASELINE[task]), gr.Slider(value=DEFAULT_MARGIN[len(features)]),
            f"**{run.name}**: {task} on {' and '.join(features)}.")


def boundary(ctx: AppContext, run_name: str, resolution: float, margin: float, baseline: str,
             progress=gr.Progress()):
    """The model's map beside the baseline's, and the model's spread from the same pass: a coarse picture within
    seconds, then the full resolution in its place."""
    try:
        run = finished_trained_run(ctx.runs_dir, run_name)
        features = explorable_features(run)
        baseline_grid = baseline_boundary(run, baseline, resolution=int(resolution), margin=margin)
        baseline_figure = grid_figure(run, baseline_grid, features, f"Baseline: {baseline}")
        progress(0, desc="Loading the model")
        steps = refinement_resolutions(int(resolution))
        for step in steps:
            grid = model_boundary(run, resolution=step, margin=margin,
                                  progress=engine_progress(progress, f"Predicting the {step}×{step} grid"))
            done = step == steps[-1]
            note = (f"{len(grid)} grid points, {margin:.0%} past the training data on each side." if done else
                    f"A {step}×{step} picture so far; refining to {steps[-1]}×{steps[-1]}… (Cancel keeps it)")
            yield (grid_figure(run, grid, features, f"Finetuned model ({run.name})"), baseline_figure,
                   spread_figure(run, grid, features, f"Spread of the model's answers ({run.name})", sampled=False),
                   note)
    except LiftError as error:
        yield None, None, None, error_message(error)


def sampling_note(ctx: AppContext, run_name: str | None, resolution: float, samples: float) -> str:
    """How long mapping the variance will take, said before the person starts it."""
    try:
        run = finished_trained_run(ctx.runs_dir, run_name)
        answers, seconds, basis = sampling_estimate(run, resolution=int(resolution), samples=int(samples))
    except LiftError:
        return ""  # the run's problem is shown once, in the message line
    if seconds is None:
        return (f"{answers:,} answers to sample. No time estimate yet: the model's speed is measured by its test "
                "evaluation (Evaluate tab) and, for a classifier, by drawing the decision boundaries.")
    duration = readable_duration(seconds)
    if basis == EVALUATION_BASIS:
        return (f"{answers:,} answers to sample: about {duration} or less, estimated from the speed of {basis}, "
                "whose few rows make it slow per answer; drawing the decision boundaries first measures the speed "
                "on the grid.")
    return (f"{answers:,} answers to sample: about {duration}, estimated from the speed of {basis} (plus loading "
            "the model if another run's is loaded).")


def variance(ctx: AppContext, run_name: str, resolution: float, margin: float, samples: float, temperature: float,
             progress=gr.Progress()):
    try:
        if samples < 2 or temperature < 0:
            raise LiftError("Draw at least 2 samples per point, at a temperature of 0 or more.")
        run = finished_trained_run(ctx.runs_dir, run_name)
        features = explorable_features(run)
        progress(0, desc="Loading the model")
        started = time.perf_counter()
        grid = model_boundary(run, resolution=int(resolution), margin=margin, samples=int(samples),
                              temperature=temperature, progress=engine_progress(progress, "Sampling over the grid"))
    except LiftError as error:
        return None, error_message(error)
    title = f"Spread of {int(samples)} samples at temperature {temperature:g} ({run.name})"
    invalid = grid["invalid"].mean()
    return (spread_figure(run, grid, features, title, sampled=True),
            f"Sampled {len(grid) * int(samples):,} answers in {time.perf_counter() - started:.0f} s. "
            f"{invalid:.1%} of the sampled answers were invalid.")


def build(ctx: AppContext) -> None:
    with gr.Tab("Explore") as tab:
        picker, message = run_tab_header(
            ctx.runs_dir, tab, "For runs on two numeric features (or one, for a regression): the model's predictions "
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
        drawing = draw.click(partial(boundary, ctx), [picker, resolution, margin, baseline],
                             [model_plot, baseline_plot, spread_plot, message], api_name="boundary",
                             **MODEL_JOB)
        sampling = sample.click(partial(variance, ctx), [picker, resolution, margin, samples, temperature],
                                [variance_plot, message], api_name="variance", **MODEL_JOB)
        cancel_drawing.click(None, cancels=[drawing], api_visibility="private")
        cancel_sampling.click(None, cancels=[sampling], api_visibility="private")
        estimating = partial(sampling_note, ctx), [picker, resolution, samples], estimate
        gr.on([tab.select, picker.change, resolution.change, samples.change], *estimating,
              api_name="sampling_estimate")
        for timed in (drawing, sampling):  # each measures the model's speed anew
            timed.then(*estimating, api_visibility="private")

        # No triggers: on page load and whenever the run changes, so the first run shown gets its settings too.
        gr.on(None, partial(run_defaults, ctx), picker, [baseline, margin, message], api_visibility="private")
