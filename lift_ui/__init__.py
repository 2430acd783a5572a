"""LIFT Studio's web interface. It holds no ML logic: every computation is a call into lift_core."""

from functools import partial
from pathlib import Path

import gradio as gr

from lift_core import models
from lift_core.access import VisitorLimits
from lift_core.launcher import TrainingLauncher
from lift_ui import header, visitors
from lift_ui.context import AppContext
from lift_ui.tables import NO_TABLE_LINE, active_table_line
from lift_ui.tabs import data_tab, evaluate_tab, explore_tab, prompt_tab, runs_tab, studies_tab, train_tab


# How often a multi-user server deletes visitors' runs past their age, and starts a waiting run whose turn came
# while no process of this server watched the slot.
SWEEP_INTERVAL_S = 300


def build_app(runs_dir="runs", default_model: str = models.DEFAULT_MODEL, default_quant: str = "auto",
              notice: str | None = None, delete_cache: tuple[int, int] | None = None,
              allowed_models: list[str] | None = None, examples_dir: Path | None = None,
              limits: VisitorLimits | None = None, on_space: bool = False) -> gr.Blocks:
    """The whole app. `notice` is a warning shown under the title (an exposed server without a password);
    `delete_cache` is gradio's (frequency, age) sweep of its temporary copies of uploads and downloads;
    `allowed_models`, for a public server, are the only models offered and loaded; `examples_dir` holds example
    runs listed read-only beside the person's own; `limits` make it a multi-user server, where each visitor sees
    only the examples and their own runs; `on_space`: served by Hugging Face Spaces."""
    # Imported once here: a page's first events (token lengths, the memory and duration estimates) would otherwise
    # import it from several threads at once, where its lazy modules sometimes raise ImportError.
    import transformers  # noqa: F401

    if allowed_models and default_model not in allowed_models:
        default_model = allowed_models[0]
    runs_dir = Path(runs_dir).resolve()
    context = AppContext(
        runs_dir=runs_dir,
        default_model=default_model,
        default_quant=default_quant,
        hardware=models.hardware_summary(),
        launcher=TrainingLauncher(runs_dir, allowed_models, limits),
        examples_dir=Path(examples_dir).resolve() if examples_dir else None,
        limits=limits,
        on_space=on_space,
    )
    if limits is not None:
        context.launcher.sweep_every(SWEEP_INTERVAL_S)
    else:  # a study the server left half-finished when it stopped goes on
        context.launcher.continue_studies()
    with gr.Blocks(title=header.TITLE, delete_cache=delete_cache) as app:
        training_time = header.build(context)
        if notice:
            gr.Markdown(f"⚠️ **{notice}**")
        visitors.build(ctx=context)
        # Above the tab bar, so it shows on every tab (gradio's tab bar holds nothing but the tabs).
        context.table_lines = [gr.Markdown(NO_TABLE_LINE, elem_classes="table-line")]
        context.data_path = gr.State(None)
        # Names only, so a choice is never cut off; the Train tab describes the chosen model (size, download,
        # licence) under the list.
        choices = list(allowed_models or models.LISTED_MODELS)
        context.model = gr.Dropdown(
            choices=choices, value=default_model,
            allow_custom_value=not allowed_models,
            label="Model (from the list, a hub id or a local folder)", render=False,
        )
        for tab in (data_tab, prompt_tab, train_tab, evaluate_tab, explore_tab, studies_tab, runs_tab):
            tab.build(context)
        header.wire(context, training_time)
        choice = [context.data_path, context.target, context.features, context.task]
        gr.on([app.load] + [component.change for component in choice], partial(table_lines, context.table_lines),
              choice, context.table_lines, api_name="table_line", trigger_mode="always_last", show_progress="hidden")
    return app


def table_lines(lines: list[gr.Markdown], data_path, target, features, task) -> dict:
    """Every active-table line (one above the tabs, one in the Train tab) names the table and the choice on it."""
    line = active_table_line(data_path, target, features, task)
    return {component: line for component in lines}
