"""Prompt tab: how each row is written as a sentence, previewed live, with its length in the model's tokens."""

from functools import partial

import gradio as gr
import pandas as pd

from lift_core import models, prompts
from lift_core.config import DEFAULTS, SETTINGS, TrainConfig
from lift_core.errors import LiftError
from lift_core.encoding import example_lengths
from lift_core.selection import check_prompt_lengths
from lift_ui.common import error_message, setting_control
from lift_ui.context import AppContext
from lift_ui.tables import selected_dataset

PREVIEW_ROWS = 5
PREVIEW_COLUMNS = ("prompt", "completion")
TOKEN_STAT_ROWS = 200
COUNTS_QUEUE = {"concurrency_id": "token_counts", "concurrency_limit": 1}
STATS_HELP = ("**Count tokens** measures the examples in the tokens of the model chosen in the Train tab; loading "
              "its tokenizer the first time can take a few seconds.")
_TEMPLATE_HELP = (
    "**lift** writes the features as x1, x2, ... as in the LIFT paper; **names** and **sentence** use the column "
    "names, which lets a pretrained model use what it knows about them; **custom** is your own text."
)


def prompt_config(template, template_text, decimals, trim_zeros, model: str = DEFAULTS.model) -> TrainConfig:
    """The settings this tab chooses, with the model whose tokens measure the examples."""
    return TrainConfig(model=model, template=template, template_text=template_text if template == "custom" else None,
                       decimals=decimals, trim_zeros=trim_zeros)


def selected_template(dataset, template, template_text, decimals, trim_zeros) -> prompts.PromptTemplate:
    return prompt_config(template, template_text, decimals, trim_zeros).template_for(dataset.features, dataset.target)


def placeholders_line(features) -> str:
    if not features:
        return "Choose features in the Data tab to use them as `{column}` placeholders."
    return "Placeholders: " + ", ".join(f"`{{{name}}}`" for name in features) + " (`{{` and `}}` are literal braces)."


def preview_prompts(data_path, target, features, task, template, template_text, decimals, trim_zeros):
    """(message, placeholders line, table of the first rows as prompt and completion)."""
    placeholders, empty = placeholders_line(features), pd.DataFrame(columns=PREVIEW_COLUMNS)
    try:
        dataset = selected_dataset(data_path, target, features, task)
    except LiftError:  # said once: the active-table line above the tabs flags it, the Data tab says why
        return "", placeholders, empty
    try:
        prompt_template = selected_template(dataset, template, template_text, decimals, trim_zeros)
        examples = [prompt_template.example(row) for row in dataset.frame.head(PREVIEW_ROWS).to_dict("records")]
    except LiftError as error:
        return error_message(error), placeholders, empty
    return "", placeholders, pd.DataFrame(examples, columns=PREVIEW_COLUMNS)


def length_warning(ctx: AppContext, data_path, target, features, task, template, template_text, decimals,
                   trim_zeros, model_name) -> str:
    """Start's refusal of examples longer than the chosen model takes, said as the prompt is chosen; nothing when
    the choice itself has a problem, which the message line already shows, or the model has one, which the Train
    tab shows."""
    if not model_name:
        return ""
    try:
        ctx.launcher.check_model(model_name)
        models.resolve_model(model_name)
        dataset = selected_dataset(data_path, target, features, task)
        config = prompt_config(template, template_text, decimals, trim_zeros, model=model_name)
        config.template_for(dataset.features, dataset.target)
    except LiftError:
        return ""
    try:
        check_prompt_lengths(config, dataset)
    except LiftError as error:
        return error_message(error)
    return ""


def token_stats(ctx: AppContext, data_path, target, features, task, template, template_text, decimals, model_name,
                trim_zeros):
    """(message, statistics) of the tokens per training example: prompt, completion and end-of-text token; a
    problem goes to the message line, and the statistics line keeps its help."""
    try:
        ctx.launcher.check_model(model_name)
        dataset = selected_dataset(data_path, target, features, task)
        prompt_template = selected_template(dataset, template, template_text, decimals, trim_zeros)
        lengths = example_lengths(dataset.frame.head(TOKEN_STAT_ROWS), prompt_template, model_name)
    except LiftError as error:
        return error_message(error), STATS_HELP
    stats = (f"**Tokens per example** (prompt + completion, over the first {len(lengths)} rows): "
             f"mean **{sum(lengths) / len(lengths):.1f}**, max **{max(lengths)}**, "
             f"counted with the tokenizer of `{model_name}`.")
    return "", stats


def reset_counts(data_path, target, features, task):
    """(Count tokens button, statistics line) after a change: counts made for another choice would mislead, so the
    line goes back to its help, and counting waits for a table the Data tab accepts."""
    try:
        selected_dataset(data_path, target, features, task)
    except LiftError:
        return gr.Button(interactive=False), STATS_HELP
    return gr.Button(interactive=True), STATS_HELP


def build(ctx: AppContext) -> None:
    with gr.Tab("Prompt"):
        gr.Markdown("Each row becomes a prompt ending in `###`; the model learns to answer with the target "
                    "followed by `@@@`. " + _TEMPLATE_HELP)
        message = gr.Markdown()
        with gr.Row():
            ctx.template = gr.Radio(list(prompts.TEMPLATE_KINDS), value=DEFAULTS.template,
                                    label=SETTINGS["template"].metadata["label"], scale=3)
            ctx.decimals = setting_control("decimals", minimum=0, maximum=prompts.MAX_DECIMALS)
            ctx.trim_zeros = setting_control("trim_zeros")
        with gr.Column(visible=False) as custom_box:
            ctx.template_text = gr.Textbox(
                "", label="Custom template", lines=2,
                placeholder="e.g. A flower with petal length {petal length} and petal width {petal width} is a",
            )
            placeholders = gr.Markdown(placeholders_line([]))
        preview = gr.Dataframe(label=f"First {PREVIEW_ROWS} rows as the model sees them",
                               headers=list(PREVIEW_COLUMNS), interactive=False, wrap=True)
        too_long = gr.Markdown()
        with gr.Row():
            count_button = gr.Button("Count tokens", scale=0, interactive=False)
            stats = gr.Markdown(STATS_HELP)

    # Drop trailing zeros is each endpoint's last input: API calls written before it existed keep their meaning
    # (an input left out takes the control's default).
    selection = [ctx.data_path, ctx.target, ctx.features, ctx.task, ctx.template, ctx.template_text, ctx.decimals]
    previewed = selection + [ctx.trim_zeros]
    ctx.template.change(lambda kind: gr.update(visible=kind == "custom"), ctx.template, custom_box,
                        api_visibility="private")
    ctx.example_template.change(lambda kind: kind or gr.skip(), ctx.example_template, ctx.template,
                                api_visibility="private", show_progress="hidden")
    gr.on([component.change for component in previewed], preview_prompts, previewed,
          [message, placeholders, preview], api_name="preview_prompts", trigger_mode="always_last")
    gr.on([component.change for component in previewed + [ctx.model]], partial(length_warning, ctx),
          previewed + [ctx.model], too_long, api_visibility="private", trigger_mode="always_last",
          show_progress="hidden")
    # One queue for both, in the order they were asked: a reset sent before a count never wipes it out.
    gr.on([component.change for component in previewed + [ctx.model]], reset_counts, selection[:4],
          [count_button, stats], api_visibility="private", trigger_mode="always_last", show_progress="hidden",
          **COUNTS_QUEUE)
    count_button.click(partial(token_stats, ctx), selection + [ctx.model, ctx.trim_zeros], [message, stats],
                       api_name="token_stats", **COUNTS_QUEUE)
