"""Prompt tab: how each row is written as a sentence, previewed live, with its length in the model's tokens."""

from functools import partial

import gradio as gr
import pandas as pd

from lift_core import prompts
from lift_core.config import DEFAULTS, SETTINGS, TrainConfig
from lift_core.errors import LiftError
from lift_core.encoding import example_lengths
from lift_ui.common import error_message, setting_control
from lift_ui.context import AppContext
from lift_ui.tables import selected_dataset

PREVIEW_ROWS = 5
TOKEN_STAT_ROWS = 200
_TEMPLATE_HELP = (
    "**lift** writes the features as x1, x2, ... as in the LIFT paper; **names** and **sentence** use the column "
    "names, which lets a pretrained model use what it knows about them; **custom** is your own text."
)


def selected_template(dataset, template, template_text, decimals, trim_zeros) -> prompts.PromptTemplate:
    config = TrainConfig(template=template, template_text=template_text if template == "custom" else None,
                         decimals=decimals, trim_zeros=trim_zeros)
    return config.template_for(dataset.features, dataset.target)


def placeholders_line(features) -> str:
    if not features:
        return "Choose features in the Data tab to use them as `{column}` placeholders."
    return "Placeholders: " + ", ".join(f"`{{{name}}}`" for name in features) + " (`{{` and `}}` are literal braces)."


def preview_prompts(data_path, target, features, task, template, template_text, decimals, trim_zeros):
    """(message, placeholders line, table of the first rows as prompt and completion)."""
    placeholders = placeholders_line(features)
    try:
        dataset = selected_dataset(data_path, target, features, task)
        prompt_template = selected_template(dataset, template, template_text, decimals, trim_zeros)
        examples = [prompt_template.example(row) for row in dataset.frame.head(PREVIEW_ROWS).to_dict("records")]
    except LiftError as error:
        return error_message(error), placeholders, None
    return "", placeholders, pd.DataFrame(examples, columns=["prompt", "completion"])


def token_stats(ctx: AppContext, data_path, target, features, task, template, template_text, decimals, model_name,
                trim_zeros):
    """(message, statistics) of the tokens per training example: prompt, completion and end-of-text token."""
    try:
        ctx.launcher.check_model(model_name)
        dataset = selected_dataset(data_path, target, features, task)
        prompt_template = selected_template(dataset, template, template_text, decimals, trim_zeros)
        lengths = example_lengths(dataset.frame.head(TOKEN_STAT_ROWS), prompt_template, model_name)
    except LiftError as error:
        return error_message(error), ""
    stats = (f"**Tokens per example** (prompt + completion, over the first {len(lengths)} rows): "
             f"mean **{sum(lengths) / len(lengths):.1f}**, max **{max(lengths)}**, "
             f"counted with the tokenizer of `{model_name}`.")
    return "", stats


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
                               headers=["prompt", "completion"], interactive=False, wrap=True)
        with gr.Row():
            count_button = gr.Button("Count tokens", scale=0)
            stats = gr.Markdown("The tokenizer comes from the model chosen in the Train tab; loading it the first "
                                "time can take a few seconds.")

    # Drop trailing zeros is each endpoint's last input: API calls written before it existed keep their meaning
    # (an input left out takes the control's default).
    selection = [ctx.data_path, ctx.target, ctx.features, ctx.task, ctx.template, ctx.template_text, ctx.decimals]
    previewed = selection + [ctx.trim_zeros]
    ctx.template.change(lambda kind: gr.update(visible=kind == "custom"), ctx.template, custom_box,
                        api_visibility="private")
    gr.on([component.change for component in previewed], preview_prompts, previewed,
          [message, placeholders, preview], api_name="preview_prompts", trigger_mode="always_last")
    count_button.click(partial(token_stats, ctx), selection + [ctx.model, ctx.trim_zeros], [message, stats],
                       api_name="token_stats")
