"""The top of the page: the logo and title, the hardware this server trains on and how long the default training of
the current table takes on it; on a Hugging Face Space, how to get a private copy."""

from functools import partial
from pathlib import Path

import gradio as gr

from lift_core import models
from lift_core.config import DEFAULTS, TrainConfig
from lift_core.errors import LiftError
from lift_core.estimate import readable_duration
from lift_ui.context import AppContext
from lift_ui.tables import make_config, table_name

TITLE = "LIFT Studio"
LOGO = Path(__file__).resolve().parent.parent / "assets" / "logo.svg"
NO_TABLE_DURATION = "⏱️ Load a table to see how long its training would take here."
PRIVATE_COPY = ("A private copy of this Space runs on hardware of its own (pick a GPU in its Settings), with no visitor "
                "limits, and keeps its runs to itself.")


def build(ctx: AppContext) -> gr.Markdown:
    """The header, laid out before the tabs; returns the duration line, which `wire` keeps up to date."""
    with gr.Row():
        # gr.HTML ignores scale and min_width; a column around it keeps the logo small.
        with gr.Column(scale=0, min_width=70):
            gr.HTML(LOGO.read_text(), padding=False)
        with gr.Column(scale=4):
            gr.Markdown(
                f"# {TITLE}\nLanguage-Interfaced FineTuning: each table row becomes a sentence, a language model "
                f"is finetuned with (Q)LoRA, and its answers become predictions.  \n**Hardware:** {ctx.hardware}"
                + ("" if models.has_cuda() else
                   f"  \nNo CUDA GPU here: training defaults to `{ctx.default_model}` in full precision on the CPU.")
            )
            duration = gr.Markdown(NO_TABLE_DURATION)
        if ctx.on_space:
            with gr.Column(scale=1, min_width=220):
                gr.DuplicateButton("Duplicate this Space")
                gr.Markdown(PRIVATE_COPY)
    return duration


def wire(ctx: AppContext, duration: gr.Markdown) -> None:
    """Once the tabs are built: the duration line follows the Data tab's table and choice and the Prompt tab's
    template."""
    choice = [ctx.data_path, ctx.target, ctx.features, ctx.task, ctx.template, ctx.template_text]
    gr.on([component.change for component in choice], partial(default_training_line, ctx), choice, duration,
          api_name="default_training_time", trigger_mode="always_last", show_progress="hidden")


def default_training_line(ctx: AppContext, data_path, target, features, task, template, template_text) -> str:
    """How long the Train tab's default settings would train the current table here, from the engine's estimate
    without timing the model (which would take a while, or slow a training under way)."""
    if not data_path:
        return NO_TABLE_DURATION
    name, model = table_name(data_path), ctx.default_model
    try:
        estimate = ctx.launcher.estimate(default_training(ctx, data_path, target, features, task, template,
                                                          template_text))
    except LiftError as error:
        return f"⏱️ No estimate of the default training of **{name}** here: {error}"
    if estimate.seconds is None:
        return (f"⏱️ How long the default training of **{name}** takes here is not known until `{model}` has "
                "trained or been timed here (**Estimate duration** in the Train tab).")
    return f"⏱️ The default training of **{name}** (`{model}`) takes about {readable_duration(estimate.seconds)} here."


def default_training(ctx: AppContext, data_path, target, features, task, template, template_text) -> TrainConfig:
    """The run Start would launch with the Train tab untouched: the server's default model and quantization, every
    other setting at its default, on the page's table, choice and template."""
    return make_config(data_path, target, features, task, template, template_text, DEFAULTS.decimals,
                       ctx.default_model, quant=ctx.default_quant)
