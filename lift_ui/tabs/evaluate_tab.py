"""Evaluate: a finished run's test metrics, its errors, the baselines on the same split, and new predictions."""

import tempfile
from functools import partial
from pathlib import Path

import gradio as gr
import pandas as pd

from lift_core import data
from lift_core.errors import LiftError
from lift_core.evaluation import evaluate_run, run_baselines
from lift_core.predict import cached_predictor
from lift_core.runs import ACTIVE_STATES, Run, list_runs
from lift_ui.context import AppContext, error_message, majority_note
from lift_ui.figures.evaluation import baseline_scores_figure, confusion_figure, parity_figure

METRIC_NAMES = {
    "accuracy": "Accuracy",
    "macro_f1": "Macro-F1",
    "log_loss": "Log-loss",
    "generated_accuracy": "Accuracy of greedy generation",
    "rmse": "RMSE",
    "mae": "MAE",
    "rae": "RAE",
    "invalid_rate": "Invalid-output rate",
    "n_test": "Test rows",
}
# The score the model's bar shows among the baselines.
HEADLINE_METRIC = {"classification": "accuracy", "regression": "rmse"}
TABLE_DECIMALS = 4


# --- Run selection, shared with the Explore tab -------------------------------------------------------------

def trained_runs(runs_dir) -> list[str]:
    """Names of the runs with a saved adapter, newest first: the ones there is a model to ask."""
    return [run.name for run in list_runs(runs_dir) if run.adapter_dir.exists()]


def run_choices(runs_dir, current: str | None = None) -> gr.Dropdown:
    """The trained runs, keeping the current choice while it exists, else the newest."""
    names = trained_runs(runs_dir)
    return gr.Dropdown(choices=names, value=current if current in names else next(iter(names), None))


def run_picker(ctx: AppContext, tab: gr.Tab) -> gr.Dropdown:
    """A run dropdown that refreshes with its button and whenever the tab opens."""
    names = trained_runs(ctx.runs_dir)
    with gr.Row():
        # Runs finished after the page loaded are valid too, hence custom values; open_run checks the name.
        picker = gr.Dropdown(names, value=next(iter(names), None), label="Run", allow_custom_value=True, scale=4)
        refresh = gr.Button("↻ Refresh runs", scale=0, min_width=140)
    for trigger in (refresh.click, tab.select):
        trigger(lambda current: run_choices(ctx.runs_dir, current), picker, picker, api_visibility="private")
    return picker


def open_run(ctx: AppContext, name: str | None) -> Run:
    """The named run of this server's runs folder, with its adapter; a name never reaches the file system."""
    if not name:
        raise LiftError("Choose a run first (train one in the Train tab, then press ↻ Refresh runs).")
    run = next((run for run in list_runs(ctx.runs_dir) if run.name == name), None)
    if run is None:
        raise LiftError(f"There is no run named '{name}'. Press ↻ Refresh runs to see the current ones.")
    state = run.status().get("state")
    if state in ACTIVE_STATES:
        raise LiftError(f"Run '{name}' is still {state}; evaluate it once it has finished.")
    if not run.adapter_dir.exists():
        raise LiftError(f"Run '{name}' has no trained adapter (it ended as '{state}'), so there is no model to "
                        "evaluate.")
    return run


def engine_progress(progress: gr.Progress, description: str):
    """The engine's progress(done, total) callback, shown as a gradio progress bar."""
    return lambda done, total: progress(done / total if total else 1.0, desc=description)


# --- Handlers ------------------------------------------------------------------------------------------------

def test_results(run: Run, progress: gr.Progress) -> dict:
    """The run's eval.json; a run stopped before its evaluation is evaluated now, once."""
    results = run.eval_results()
    if results is None:
        progress(0, desc="Loading the model")
        results = evaluate_run(run, predictor=cached_predictor(run),
                               progress=engine_progress(progress, "Predicting the test split"))
    return results


def metrics_table(results: dict) -> pd.DataFrame:
    rows = [(label, round(results[key], TABLE_DECIMALS)) for key, label in METRIC_NAMES.items()
            if results.get(key) is not None]
    return pd.DataFrame(rows, columns=["metric", "value"])


def errors_figure(run: Run, predictions: pd.DataFrame):
    info = run.dataset_info()
    if info["task"] == "classification":
        return confusion_figure(predictions["y_true"], predictions["y_pred"], info["classes"])
    return parity_figure(predictions["y_true"], predictions["y_pred"], predictions.get("std"))


def download_copy(table: pd.DataFrame, file_name: str) -> str:
    """A CSV in a fresh temporary folder: gradio serves it from anywhere, under a name that says what it is."""
    path = Path(tempfile.mkdtemp(prefix="lift-")) / file_name
    table.to_csv(path, index=False)
    return str(path)


def evaluate(ctx: AppContext, run_name: str, progress=gr.Progress()):
    try:
        run = open_run(ctx, run_name)
        results = test_results(run, progress)
        predictions = run.predictions()
    except LiftError as error:
        return None, None, None, None, error_message(error)
    download = download_copy(predictions, f"{run.name}-predictions.csv")
    return (metrics_table(results), errors_figure(run, predictions), predictions.round(TABLE_DECIMALS),
            download, f"Test results of **{run.name}** ({results.get('mode', '')})." + majority_note(results))


def baselines(ctx: AppContext, run_name: str, progress=gr.Progress()):
    try:
        run = open_run(ctx, run_name)
        results = test_results(run, progress)
        saved = run.file("baselines.csv")
        if saved.exists():
            table = pd.read_csv(saved)
        else:
            progress(0, desc="Fitting the baselines")
            table = run_baselines(run)
    except LiftError as error:
        return None, None, error_message(error)
    metric = HEADLINE_METRIC[results["task"]]
    figure = baseline_scores_figure(table, metric, results.get(metric))
    message = f"Baselines fitted on the same train+validation rows as **{run.name}**, scored on its test rows."
    return table.round(TABLE_DECIMALS), figure, message


def predict_table(ctx: AppContext, run_name: str, upload: str | None, progress=gr.Progress()):
    try:
        run = open_run(ctx, run_name)
        if not upload:
            raise LiftError("Upload a table to predict (CSV, TSV, Parquet, Excel or JSON lines).")
        table = data.load_table(upload)
        features = run.dataset_info()["features"]
        missing = [name for name in features if name not in table.columns]
        if missing:
            raise LiftError(f"The table lacks the feature column(s) {', '.join(missing)}, which run '{run.name}' "
                            f"was trained on. Columns found: {', '.join(map(str, table.columns))}.")
        progress(0, desc="Loading the model")
        predicted = cached_predictor(run).predict(table[features], progress=engine_progress(progress, "Predicting"))
    except LiftError as error:
        return None, None, error_message(error)
    # A re-uploaded predictions file already has these columns; the new predictions replace them.
    result = pd.concat([table.drop(columns=predicted.columns, errors="ignore"), predicted], axis=1)
    download = download_copy(result, f"{Path(upload).stem}-predicted-by-{run.name}.csv")
    return result.round(TABLE_DECIMALS), download, f"Predicted {len(result)} rows with **{run.name}**."


# --- Layout --------------------------------------------------------------------------------------------------

def build(ctx: AppContext) -> None:
    with gr.Tab("Evaluate") as tab:
        gr.Markdown("Test-split results of a trained run, the classical baselines on the same split, and "
                    "predictions for a new table.")
        picker = run_picker(ctx, tab)
        message = gr.Markdown()
        show = gr.Button("Show test results", variant="primary")
        with gr.Row():
            metrics = gr.Dataframe(label="Test metrics", headers=["metric", "value"], interactive=False, scale=1)
            errors = gr.Plot(label="Errors on the test split", scale=2)
        with gr.Accordion("Test predictions", open=False):
            predictions = gr.Dataframe(label="predictions.csv", interactive=False, max_height=400)
            predictions_file = gr.File(label="Download predictions.csv", interactive=False)
        gr.on([show.click, picker.change, tab.select], partial(evaluate, ctx), picker,
              [metrics, errors, predictions, predictions_file, message], api_name="evaluate")

        gr.Markdown("### Baselines on the same split")
        compare = gr.Button("Fit baselines")
        with gr.Row():
            baseline_table = gr.Dataframe(label="Baseline test scores", headers=["name", "score"], interactive=False,
                                          scale=1)
            baseline_chart = gr.Plot(label="Compared with the finetuned model", scale=1)
        compare.click(partial(baselines, ctx), picker, [baseline_table, baseline_chart, message],
                      api_name="baselines")

        gr.Markdown("### Predict a new table\nThe table needs the run's feature columns; other columns are kept.")
        with gr.Row():
            upload = gr.File(label="Table to predict", file_types=list(data.SUPPORTED_SUFFIXES), type="filepath")
            predicted_file = gr.File(label="Download the predictions", interactive=False)
        predict = gr.Button("Predict")
        predicted_table = gr.Dataframe(label="Predictions", headers=["y_pred"], interactive=False, max_height=400)
        predict.click(partial(predict_table, ctx), [picker, upload], [predicted_table, predicted_file, message],
                      api_name="predict_table")
        # Results below the run picker belong to the run that produced them.
        picker.change(lambda: (None,) * 4, None, [baseline_table, baseline_chart, predicted_table, predicted_file],
                      api_visibility="private")
