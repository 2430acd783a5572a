"""Runs tab: every run folder of this server, one run's curves and results, several runs overlaid,
the adapter as a zip, and deleting a run."""

import json

import gradio as gr
import pandas as pd

from lift_core.errors import LiftError
from lift_core.metrics import SUMMARY_METRICS
from lift_core.runs import Run
from lift_ui.common import error_message, rounded, rounded_for_display, run_label, with_context
from lift_ui.context import AppContext
from lift_ui.figures.training import DEFAULT_OVERLAY_METRIC, OVERLAY_METRICS, loss_curve, overlay

# Run.summary() keys in the order the table shows them.
COLUMNS = ("run", "state", "model", "template", "data", "target", *SUMMARY_METRICS, "created")
# The most characters a column asks room for: a long run or file name wraps (at its dashes) rather than pushing
# the last columns out of sight. Each column also asks for its cell padding, about two characters.
MAX_COLUMN_CHARS = 20
CELL_PADDING_CHARS = 2


def runs_table(runs: list[Run]) -> pd.DataFrame:
    frame = rounded_for_display(pd.DataFrame([run.summary() for run in runs], columns=list(COLUMNS)))
    # Regression metrics only take room when every run is a classification, and the other way round.
    unused = [name for name in SUMMARY_METRICS if frame[name].isna().all()]
    return frame.drop(columns=unused) if len(frame) else frame


def fitted_columns(frame: pd.DataFrame) -> gr.Dataframe:
    """The runs table's columns across the page's width: each column's share follows its longest text (or
    header), so short values and headers stay whole."""
    chars = [min(MAX_COLUMN_CHARS, max([len(name), *(len(str(value)) for value in frame[name])]))
             + CELL_PADDING_CHARS for name in frame.columns]
    return gr.Dataframe(column_widths=[f"{100 * width / sum(chars):.1f}%" for width in chars])


def run_overview(run: Run) -> str:
    status, config, info = run.reconcile(), run.saved_config(), run.dataset_info()
    lines = [f"**{run.name}**: {status.get('state')} · model `{config.get('model')}` · "
             f"template `{config.get('template')}`"]
    if info:
        lines.append(f"{info.task} of `{info.target}` from {', '.join(info.features)}: "
                     f"{info.n_train} train / {info.n_val} validation / {info.n_test} test rows")
    history = Run.resumed_history(status)
    if history:  # resumed: say how it got here, not only where it ended
        lines.append(f"History: {' → '.join(history)}")
    if status.get("error"):
        lines.append(f"Error: {status['error']}")
    return "  \n".join(lines)


def refresh(ctx: AppContext, selected_name, compared_names, request: gr.Request):
    runs = ctx.access(request).runs()
    for run in runs:
        run.reconcile()  # a run whose process died is listed as interrupted, not running
    names = [run.name for run in runs]
    choices = [(run_label(name), name) for name in names]
    kept = [name for name in compared_names or [] if name in names]
    current = selected_name if selected_name in names else next(iter(names), None)
    return runs_table(runs), gr.Dropdown(choices=choices, value=current), gr.Dropdown(choices=choices, value=kept)


def run_details(ctx: AppContext, name, log_y, request: gr.Request):
    try:
        run = ctx.access(request).find(name)
    except LiftError as error:
        return loss_curve([]), error_message(error) if name else "", None, ""
    return (loss_curve(run.metrics(), log_y), run_overview(run), rounded(run.eval_results()),
            json.dumps(run.saved_config(), indent=2))


def run_actions(ctx: AppContext, name, request: gr.Request):
    """Resume only for a run that can be resumed, Delete only for one of the person's own; no adapter zip of
    another run."""
    try:
        run = ctx.access(request).find(name)
        resumable, own = not run.read_only and run.resume_problem() is None, not run.read_only
    except LiftError:
        resumable = own = False
    return gr.Button(interactive=resumable), gr.Checkbox(interactive=own, value=False), gr.File(value=None,
                                                                                              visible=False)


def overlay_runs(ctx: AppContext, names, log_y, metric, request: gr.Request):
    runs = {run.name: run for run in ctx.access(request).runs()}
    # In the order they were picked, so a run keeps its colour when another is added.
    return overlay({name: runs[name].metrics() for name in names or [] if name in runs}, metric, log_y)


def download_adapter(ctx: AppContext, name, request: gr.Request):
    try:
        return ctx.access(request).find(name).zip_adapter(), ""
    except LiftError as error:
        return None, error_message(error)


def resume_run(ctx: AppContext, name, request: gr.Request):
    """Resume the selected run; the Train tab follows it."""
    try:
        run = ctx.access(request).find_own(name)
        point = ctx.launcher.resume(run)
    except LiftError as error:
        return error_message(error), gr.skip(), gr.skip()
    return f"Resumed run '{name}' {point}: follow it in the Train tab.", str(run.path), gr.Timer(active=True)


def delete_run(ctx: AppContext, name, confirmed, compared_names, request: gr.Request):
    try:
        run = ctx.access(request).find_own(name)
        if not confirmed:
            raise LiftError(f"Tick the box to confirm deleting '{name}'.")
        ctx.launcher.delete(run)
        note = f"Deleted run '{name}'."
    except LiftError as error:
        note = error_message(error)
    return note, False, *refresh(ctx, name, compared_names, request)


def runs_description(ctx: AppContext) -> str:
    examples = " Shipped examples come last: they can be opened, evaluated and explored, not changed." \
        if ctx.examples_dir else ""
    if ctx.multi_user:
        return ("Your training runs on this server, newest first: other visitors' runs are not shown, and they "
                f"cannot see, stop or delete yours.{examples}")
    return f"Every training run on this server, newest first (folder `{ctx.runs_dir}`).{examples}"


def build(ctx: AppContext) -> None:
    with gr.Tab("Runs") as tab:
        with gr.Row(equal_height=True):
            gr.Markdown(runs_description(ctx))
            refresh_button = gr.Button("↻ Refresh", scale=0, min_width=140)
        table = gr.Dataframe(runs_table([]), interactive=False, label="Runs", wrap=True)
        message = gr.Markdown()
        gr.Markdown("### One run")
        with gr.Row(equal_height=True):
            selected = gr.Dropdown([], label="Run", scale=2)
            resume_button = gr.Button("Resume training", scale=1)
            zip_button = gr.Button("Zip the adapter for download", scale=1)
        adapter_zip = gr.File(label="Adapter (zip of the LoRA weights)", interactive=False, visible=False)
        with gr.Row():
            with gr.Column():
                plot = gr.Plot(label="Loss")
                log_y = gr.Checkbox(False, label="Log-scale loss")
            with gr.Column():
                overview = gr.Markdown()
                evaluation = gr.JSON(label="Test metrics (eval.json)", open=True)
                config = gr.Code(language="json", label="Config (config.json)", interactive=False, max_lines=16)
        with gr.Row(equal_height=True):
            confirm = gr.Checkbox(False, label="Yes, delete this run's folder for good")
            delete_button = gr.Button("Delete run", variant="stop", interactive=False)
        gr.Markdown("### Compare runs")
        with gr.Row(equal_height=True):
            compared = gr.Dropdown([], multiselect=True, label="Runs to overlay", scale=3)
            metric = gr.Dropdown(list(OVERLAY_METRICS), value=DEFAULT_OVERLAY_METRIC, label="Metric", scale=1)
            overlay_log_y = gr.Checkbox(False, label="Log-scale loss", scale=0, min_width=160)
        overlay_plot = gr.Plot(label="The selected runs")

        listing = [table, selected, compared]
        actions = with_context(run_actions, ctx), selected, [resume_button, confirm, adapter_zip]
        listed = gr.on([refresh_button.click, tab.select, ctx.visitor_known], with_context(refresh, ctx),
                       inputs=[selected, compared], outputs=listing, api_name="runs")
        listed.then(*actions, api_visibility="private")
        selected.change(*actions, api_visibility="private")
        gr.on([selected.change, log_y.change], with_context(run_details, ctx), inputs=[selected, log_y],
              outputs=[plot, overview, evaluation, config], api_name="run_details")
        gr.on([compared.change, overlay_log_y.change, metric.change], with_context(overlay_runs, ctx),
              inputs=[compared, overlay_log_y, metric], outputs=overlay_plot, api_name="overlay")
        resume_button.click(with_context(resume_run, ctx), inputs=selected,
                            outputs=[message, ctx.training_run, ctx.training_timer],
                            api_name="resume_run").then(*actions, api_visibility="private")
        # The download box takes room only once it holds a zip.
        zip_button.click(with_context(download_adapter, ctx), inputs=selected, outputs=[adapter_zip, message],
                         api_name="download_adapter").then(lambda path: gr.File(visible=bool(path)), adapter_zip,
                                                           adapter_zip, api_visibility="private")
        confirm.change(lambda confirmed: gr.Button(interactive=confirmed), confirm, delete_button,
                       api_visibility="private")
        deleted = delete_button.click(with_context(delete_run, ctx), inputs=[selected, confirm, compared],
                                      outputs=[message, confirm, *listing], api_name="delete_run")
        for listing_shown in (listed, deleted):
            listing_shown.then(fitted_columns, table, table, api_visibility="private")
