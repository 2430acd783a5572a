"""Evaluate: a finished run's test metrics, its errors, the baselines on the same split, and new predictions."""

from functools import partial
from pathlib import Path

import gradio as gr
import pandas as pd

from lift_core import data
from lift_core.errors import LiftError
from lift_core.evaluation import cached_baselines, ensure_evaluated
from lift_core.metrics import METRIC_NAMES
from lift_core.predict import predict_table
from lift_core.runs import Run, finished_trained_run
from lift_ui.common import (MODEL_JOB, download_copy, engine_progress, error_message, majority_note,
                            run_tab_header)
from lift_ui.context import AppContext
from lift_ui.figures.evaluation import baseline_scores_figure, confusion_figure, parity_figure

# The score the model's bar shows among the baselines.
HEADLINE_METRIC = {"classification": "accuracy", "regression": "rmse"}
TABLE_DECIMALS = 4


def metrics_table(results: dict) -> pd.DataFrame:
    rows = [(label, round(results[key], TABLE_DECIMALS)) for key, label in METRIC_NAMES.items()
            if results.get(key) is not None]
    return pd.DataFrame(rows, columns=["metric", "value"])


def errors_figure(run: Run, predictions: pd.DataFrame):
    info = run.dataset_info()
    if info.task == "classification":
        return confusion_figure(predictions["y_true"], predictions["y_pred"], info.classes)
    return parity_figure(predictions["y_true"], predictions["y_pred"], predictions.get("std"))


def evaluate(ctx: AppContext, run_name: str, progress=gr.Progress()):
    try:
        run = finished_trained_run(ctx.runs_dir, run_name)
        results = ensure_evaluated(run, progress=engine_progress(progress, "Predicting the test split"))
        predictions = run.predictions()
    except LiftError as error:
        return None, None, None, None, error_message(error)
    download = download_copy(predictions, f"{run.name}-predictions.csv")
    return (metrics_table(results), errors_figure(run, predictions), predictions.round(TABLE_DECIMALS),
            download, f"Test results of **{run.name}** ({results.get('mode', '')})." + majority_note(results))


def baselines(ctx: AppContext, run_name: str, progress=gr.Progress()):
    try:
        run = finished_trained_run(ctx.runs_dir, run_name)
        results = ensure_evaluated(run, progress=engine_progress(progress, "Predicting the test split"))
        progress(0, desc="Fitting the baselines")
        table = cached_baselines(run)
    except LiftError as error:
        return None, None, error_message(error)
    metric = HEADLINE_METRIC[results["task"]]
    figure = baseline_scores_figure(table, metric, results.get(metric))
    message = f"Baselines fitted on the same train+validation rows as **{run.name}**, scored on its test rows."
    return table.round(TABLE_DECIMALS), figure, message


def predict_upload(ctx: AppContext, run_name: str, upload: str | None, progress=gr.Progress()):
    try:
        run = finished_trained_run(ctx.runs_dir, run_name)
        if not upload:
            raise LiftError("Upload a table to predict (CSV, TSV, Parquet, Excel or JSON lines).")
        progress(0, desc="Loading the model")
        result = predict_table(run, data.load_table(upload), progress=engine_progress(progress, "Predicting"))
    except LiftError as error:
        return None, None, error_message(error)
    download = download_copy(result, f"{Path(upload).stem}-predicted-by-{run.name}.csv")
    return result.round(TABLE_DECIMALS), download, f"Predicted {len(result)} rows with **{run.name}**."


# --- Layout --------------------------------------------------------------------------------------------------

def build(ctx: AppContext) -> None:
    with gr.Tab("Evaluate") as tab:
        picker, message = run_tab_header(ctx.runs_dir, tab, "Test-split results of a trained run, the classical "
                                         "baselines on the same split, and predictions for a new table.")
        with gr.Row():
            show = gr.Button("Show test results", variant="primary")
            cancel = gr.Button("Cancel", variant="stop", scale=0, min_width=120)
        with gr.Row():
            metrics = gr.Dataframe(label="Test metrics", headers=["metric", "value"], interactive=False, scale=1)
            errors = gr.Plot(label="Errors on the test split", scale=2)
        with gr.Accordion("Test predictions", open=False):
            predictions = gr.Dataframe(label="Test predictions", interactive=False, max_height=400)
            predictions_file = gr.File(label="Download predictions.csv", interactive=False)
        evaluating = gr.on([show.click, picker.change, tab.select], partial(evaluate, ctx), picker,
                           [metrics, errors, predictions, predictions_file, message], api_name="evaluate", **MODEL_JOB)

        gr.Markdown("### Baselines on the same split")
        compare = gr.Button("Fit baselines")
        with gr.Row():
            baseline_table = gr.Dataframe(label="Baseline test scores", headers=["name", "score"], interactive=False,
                                          scale=1)
            baseline_chart = gr.Plot(label="Compared with the finetuned model", scale=1)
        comparing = compare.click(partial(baselines, ctx), picker, [baseline_table, baseline_chart, message],
                                  api_name="baselines")

        gr.Markdown("### Predict a new table\nThe table needs the run's feature columns; other columns are kept.")
        with gr.Row():
            upload = gr.File(label="Table to predict", file_types=list(data.SUPPORTED_SUFFIXES), type="filepath")
            predicted_file = gr.File(label="Download the predictions", interactive=False)
        predict = gr.Button("Predict")
        predicted_table = gr.Dataframe(label="Predictions", headers=["y_pred"], interactive=False, max_height=400)
        predicting = predict.click(partial(predict_upload, ctx), [picker, upload],
                                   [predicted_table, predicted_file, message], api_name="predict_table", **MODEL_JOB)
        cancel.click(None, cancels=[evaluating, comparing, predicting], api_visibility="private")
        # Results below the run picker belong to the run that produced them.
        picker.change(lambda: (None,) * 4, None, [baseline_table, baseline_chart, predicted_table, predicted_file],
                      api_visibility="private")
