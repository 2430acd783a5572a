"""Runs tab: every run folder of this server, one run's curves and results, several runs overlaid,
the adapter as a zip, and deleting a run."""

import json
from functools import partial

import gradio as gr
import pandas as pd

from lift_core.errors import LiftError
from lift_core.metrics import SUMMARY_METRICS
from lift_core.runs import Run, find_run, list_runs
from lift_ui.common import error_message
from lift_ui.context import AppContext
from lift_ui.figures.training import loss_curve, overlay

# Run.summary() keys in the order the table shows them.
COLUMNS = ("run", "state", "model", "template", "data", "target", *SUMMARY_METRICS, "created")


def runs_table(runs: list[Run]) -> pd.DataFrame:
    frame = pd.DataFrame([run.summary() for run in runs], columns=list(COLUMNS)).round(4)
    # Regression metrics only take room when every run is a classification, and the other way round.
    unused = [name for name in SUMMARY_METRICS if frame[name].isna().all()]
    return frame.drop(columns=unused) if len(frame) else frame


def run_overview(run: Run) -> str:
    status, config, info = run.reconcile(), run.saved_config(), run.dataset_info()
    lines = [f"**{run.name}**: {status.get('state')} · model `{config.get('model')}` · "
             f"template `{config.get('template')}`"]
    if info:
        lines.append(f"{info.task} of `{info.target}` from {', '.join(info.features)}: "
                     f"{info.n_train} train / {info.n_val} validation / {info.n_test} test rows")
    history = [entry["state"] for entry in status.get("history", [])]
    if history.count("running") > 1:  # resumed: say how it got here, not only where it ended
        lines.append(f"History: {' → '.join(history)}")
    if status.get("error"):
        lines.append(f"Error: {status['error']}")
    return "  \n".join(lines)


def refresh(ctx: AppContext, selected_name, compared_names):
    runs = list_runs(ctx.runs_dir)
    for run in runs:
        run.reconcile()  # a run whose process died is listed as interrupted, not running
    names = [run.name for run in runs]
    kept = [name for name in compared_names or [] if name in names]
    current = selected_name if selected_name in names else next(iter(names), None)
    return (runs_table([Run(ctx.runs_dir / name) for name in names]),
            gr.Dropdown(choices=names, value=current), gr.Dropdown(choices=names, value=kept))


def run_details(ctx: AppContext, name, log_y):
    try:
        run = find_run(ctx.runs_dir, name)
    except LiftError as error:
        return loss_curve([]), error_message(error) if name else "", None, ""
    return loss_curve(run.metrics(), log_y), run_overview(run), run.eval_results(), json.dumps(run.saved_config(), indent=2)


def overlay_runs(ctx: AppContext, names, log_y):
    runs = {run.name: run for run in list_runs(ctx.runs_dir) if run.name in (names or [])}
    return overlay({name: run.metrics() for name, run in runs.items()}, log_y)


def download_adapter(ctx: AppContext, name):
    try:
        return find_run(ctx.runs_dir, name).zip_adapter(), ""
    except LiftError as error:
        return None, error_message(error)


def resume_run(ctx: AppContext, name):
    """Resume the selected run; the Train tab follows it."""
    try:
        run = find_run(ctx.runs_dir, name)
        point = ctx.launcher.resume(run)
    except LiftError as error:
        return error_message(error), gr.skip(), gr.skip()
    return f"Resumed run '{name}' {point}: follow it in the Train tab.", str(run.path), gr.Timer(active=True)


def delete_run(ctx: AppContext, name, confirmed, compared_names):
    try:
        run = find_run(ctx.runs_dir, name)
        if not confirmed:
            raise LiftError(f"Tick the box to confirm deleting '{name}'.")
        ctx.launcher.delete(run)
        note = f"Deleted run '{name}'."
    except LiftError as error:
        note = error_message(error)
    return note, False, *refresh(ctx, name, compared_names)


def build(ctx: AppContext) -> None:
    with gr.Tab("Runs") as tab:
        gr.Markdown(f"Every training run on this server, newest first (folder `{ctx.runs_dir}`).")
        refresh_button = gr.Button("Refresh")
        table = gr.Dataframe(runs_table([]), interactive=False, label="Runs", wrap=False)
        message = gr.Markdown()
        log_y = gr.Checkbox(False, label="Log-scale loss")
        gr.Markdown("### One run")
        with gr.Row():
            selected = gr.Dropdown([], label="Run", scale=3)
            resume_button = gr.Button("Resume training", scale=1)
            zip_button = gr.Button("Zip adapter for download", scale=1)
            adapter_zip = gr.File(label="Adapter", interactive=False, scale=1)
        with gr.Row():
            plot = gr.Plot(label="Loss")
            with gr.Column():
                overview = gr.Markdown()
                evaluation = gr.JSON(label="Test metrics (eval.json)")
                config = gr.Code(language="json", label="Config (config.json)", interactive=False, max_lines=16)
        with gr.Row():
            confirm = gr.Checkbox(False, label="Yes, delete this run's folder for good")
            delete_button = gr.Button("Delete run", variant="stop")
        gr.Markdown("### Compare runs")
        compared = gr.Dropdown([], multiselect=True, label="Runs to overlay")
        overlay_plot = gr.Plot(label="Loss of the selected runs")

        listing = [table, selected, compared]
        gr.on([refresh_button.click, tab.select], partial(refresh, ctx), inputs=[selected, compared],
              outputs=listing, api_name="runs")
        gr.on([selected.change, log_y.change], partial(run_details, ctx), inputs=[selected, log_y],
              outputs=[plot, overview, evaluation, config], api_name="run_details")
        gr.on([compared.change, log_y.change], partial(overlay_runs, ctx), inputs=[compared, log_y],
              outputs=overlay_plot, api_name="overlay")
        resume_button.click(partial(resume_run, ctx), inputs=selected,
                            outputs=[message, ctx.training_run, ctx.training_timer], api_name="resume_run")
        zip_button.click(partial(download_adapter, ctx), inputs=selected, outputs=[adapter_zip, message],
                         api_name="download_adapter")
        delete_button.click(partial(delete_run, ctx), inputs=[selected, confirm, compared],
                            outputs=[message, confirm, *listing], api_name="delete_run")
