"""Evaluate: a finished run's test metrics, its errors, the baselines on the same split, and new predictions."""

from pathlib import Path

import gradio as gr
import pandas as pd

from lift_core import data
from lift_core.errors import LiftError
from lift_core.evaluation import cached_baselines, ensure_evaluated
from lift_core.metrics import METRIC_NAMES
from lift_core.predict import predict_table
from lift_core.runs import Run
from lift_core.zerogpu import evaluation_seconds, prediction_seconds
from lift_ui.common import (MODEL_JOB, download_copy, engine_progress, error_message, majority_note,
                            gpu_handler, rounded_for_display, run_tab_header, shown_number, with_context)
from lift_ui.context import AppContext
from lift_ui.figures.evaluation import baseline_scores_figure, confusion_figure, parity_figure

# The score the model's bar shows among the baselines.
HEADLINE_METRIC = {"classification": "accuracy", "regression": "rmse"}
# What the model's columns of a predictions table mean, said under it. CLASS_COLUMN stands for p_<class>.
CLASS_COLUMN = "p_<class>"
PREDICTION_COLUMNS = {
    "y_true": "the test row's true value",
    "y_pred": "the model's prediction",
    CLASS_COLUMN: "the model's probability of each class",
    "spread": "how unsure the model is, from 0 (one class takes all the probability) to 1 (all classes equally "
              "likely): the normalized entropy of the class probabilities",
    "median": "the median of the model's sampled answers (y_pred is their mean)",
    "std": "the standard deviation of the model's sampled answers",
    "invalid": "the share of the model's answers that could not be read as a class or a number (always 0 with "
               "label scoring, which picks a class)",
}


def metrics_table(results: dict) -> pd.DataFrame:
    rows = [(label, shown_number(results[key])) for key, label in METRIC_NAMES.items()
            if results.get(key) is not None]
    return pd.DataFrame(rows, columns=["metric", "value"])


def errors_figure(run: Run, predictions: pd.DataFrame):
    info = run.dataset_info()
    if info.task == "classification":
        return confusion_figure(predictions["y_true"], predictions["y_pred"], info.classes)
    return parity_figure(predictions["y_true"], predictions["y_pred"], predictions.get("std"))


def column_legend(columns, classes: list[str] | None) -> str:
    """One line per prediction column of the table, saying what it holds."""
    shown = {CLASS_COLUMN if classes and name in {f"p_{label}" for label in classes} else name for name in columns}
    return "  \n".join(f"`{name}`: {text}." for name, text in PREDICTION_COLUMNS.items() if name in shown)


def evaluate(ctx: AppContext, run_name: str, request: gr.Request, progress=gr.Progress()):
    """The run's test results, evaluating it first if it never was (a run stopped before its evaluation)."""
    try:
        run = ctx.access(request).finished_trained_run(run_name)
        results = ensure_evaluated(run, progress=engine_progress(progress, "Predicting the test split"))
    except LiftError as error:
        return no_results(error_message(error))
    return results_view(run, results)


def saved_results(ctx: AppContext, run_name: str | None, request: gr.Request):
    """The run's saved test results, shown as the tab opens or the run changes: no model is loaded, so they never
    wait behind another visitor's model job; a run without results says how to get them."""
    if not run_name:
        return no_results("")
    try:
        run = ctx.access(request).finished_trained_run(run_name)
    except LiftError as error:
        return no_results(error_message(error))
    results = run.eval_results()
    if results is None:
        return no_results(f"**{run.name}** has no test results yet (it stopped before its evaluation): press "
                          "Show test results to evaluate it.")
    return results_view(run, results)


def results_view(run: Run, results: dict) -> tuple:
    """The results as the page shows them; the Show button turns plain once they are on the page."""
    predictions = run.predictions()
    download = download_copy(predictions, f"{run.name}-predictions.csv")
    return (metrics_table(results), errors_figure(run, predictions), rounded_for_display(predictions),
            download, column_legend(predictions.columns, run.dataset_info().classes), gr.Button(variant="secondary"),
            f"Test results of **{run.name}** ({results.get('mode', '')})." + majority_note(results))


def no_results(message: str) -> tuple:
    """No results on the page, Show test results primary, and why."""
    return None, None, None, None, "", gr.Button(variant="primary"), message


def baselines(ctx: AppContext, run_name: str, request: gr.Request, progress=gr.Progress()):
    try:
        run = ctx.access(request).finished_trained_run(run_name)
        results = ensure_evaluated(run, progress=engine_progress(progress, "Predicting the test split"))
        progress(0, desc="Fitting the baselines")
        table = cached_baselines(run)
    except LiftError as error:
        return None, None, error_message(error)
    return *baseline_view(run, results, table), (f"Baselines fitted on the same train+validation rows as "
                                                 f"**{run.name}**, scored on its test rows.")


def saved_baselines(ctx: AppContext, run_name: str, request: gr.Request):
    """The run's baselines as soon as its results are shown, when they were fitted before; else nothing new."""
    try:
        run = ctx.access(request).finished_trained_run(run_name)
    except LiftError:
        return gr.skip(), gr.skip()
    results, table = run.eval_results(), run.baselines()
    return baseline_view(run, results, table) if results and table is not None else (gr.skip(), gr.skip())


def baseline_view(run: Run, results: dict, table: pd.DataFrame) -> tuple:
    """The baselines' scores and the chart comparing the model's headline score with theirs."""
    metric = HEADLINE_METRIC[results["task"]]
    return rounded_for_display(table), baseline_scores_figure(table, metric, results.get(metric))


def predict_upload(ctx: AppContext, run_name: str, upload: str | None, request: gr.Request,
                   progress=gr.Progress()):
    try:
        run = ctx.access(request).finished_trained_run(run_name)
        if not upload:
            raise LiftError("Upload a table to predict (CSV, TSV, Parquet, Excel or JSON lines).")
        progress(0, desc="Loading the model")
        result = predict_table(run, data.load_table(upload), progress=engine_progress(progress, "Predicting"))
    except LiftError as error:
        return None, None, "", error_message(error)
    download = download_copy(result, f"{Path(upload).stem}-predicted-by-{run.name}.csv")
    return (rounded_for_display(result), download, column_legend(result.columns, run.dataset_info().classes),
            f"Predicted {len(result)} rows with **{run.name}**.")


def predicted_rows_seconds(run: Run, upload: str | None, *_) -> int:
    """A ZeroGPU call's seconds for predicting the uploaded table (the handler says what is wrong with it)."""
    try:
        rows = len(data.load_table(upload)) if upload else 0
    except LiftError:
        rows = 0
    return prediction_seconds(run, rows)


def results_of_another_run():
    """What the page shows from the moment another run is picked until its results arrive: none of the last
    run's results, and Show test results primary again."""
    return None, None, None, None, "", gr.Button(variant="primary"), None, None, None, None, ""


# --- Layout --------------------------------------------------------------------------------------------------

def build(ctx: AppContext) -> None:
    with gr.Tab("Evaluate") as tab:
        picker, message = run_tab_header(ctx, tab, "Test-split results of a trained run, the classical "
                                         "baselines on the same split, and predictions for a new table.")
        with gr.Row():
            show = gr.Button("Show test results", variant="primary")
            cancel = gr.Button("Cancel", scale=0, min_width=120)
        with gr.Row():
            metrics = gr.Dataframe(label="Test metrics", headers=["metric", "value"], interactive=False, scale=1,
                                   wrap=True)
            errors = gr.Plot(label="Errors on the test split", scale=2)
        with gr.Accordion("Test predictions", open=False):
            predictions = gr.Dataframe(label="Test predictions", interactive=False, max_height=400)
            predictions_legend = gr.Markdown()
            predictions_file = gr.File(label="Download predictions.csv", interactive=False)
        results = [metrics, errors, predictions, predictions_file, predictions_legend, show, message]
        # On ZeroGPU hardware each asks for a GPU: a second where the results are saved.
        evaluated = gpu_handler(ctx, evaluate, lambda run, *_: evaluation_seconds(run))
        evaluating = show.click(evaluated, picker, results, api_name="evaluate", **MODEL_JOB)
        # Not a model job: saved results never wait behind another visitor's map.
        showing = tab.select(with_context(saved_results, ctx), picker, results, api_name="saved_results")

        gr.Markdown("### Baselines on the same split")
        compare = gr.Button("Fit baselines")
        baseline_table = gr.Dataframe(label="Baseline test scores", headers=["name", "score"], interactive=False,
                                      wrap=True)
        baseline_chart = gr.Plot(label="Compared with the finetuned model")
        fitted = gpu_handler(ctx, baselines, lambda run, *_: evaluation_seconds(run))
        comparing = compare.click(fitted, picker, [baseline_table, baseline_chart, message],
                                  api_name="baselines")

        gr.Markdown("### Predict a new table\nThe table needs the run's feature columns; other columns are kept.")
        with gr.Row():
            upload = gr.File(label="Table to predict", file_types=list(data.SUPPORTED_SUFFIXES), type="filepath")
            predicted_file = gr.File(label="Download the predictions", interactive=False)
        predict = gr.Button("Predict")
        predicted_table = gr.Dataframe(label="Predictions", headers=["y_pred"], interactive=False, max_height=400)
        predicted_legend = gr.Markdown()
        predicting = predict.click(gpu_handler(ctx, predict_upload, predicted_rows_seconds), [picker, upload],
                                   [predicted_table, predicted_file, predicted_legend, message],
                                   api_name="predict_table", **MODEL_JOB)
        # Results below the run picker belong to the run that produced them: a new run's are fetched afresh.
        cleared = [*results[:-1], baseline_table, baseline_chart, predicted_table, predicted_file, predicted_legend]
        reshowing = picker.change(results_of_another_run, None, cleared, api_visibility="private").then(
            with_context(saved_results, ctx), picker, results, api_visibility="private")
        for shown in (evaluating, showing, reshowing):
            shown.then(with_context(saved_baselines, ctx), picker, [baseline_table, baseline_chart],
                       api_visibility="private", show_progress="hidden")
        cancel.click(None, cancels=[evaluating, reshowing, comparing, predicting], api_visibility="private")
