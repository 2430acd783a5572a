"""Train tab: the settings become a TrainConfig, the engine's launcher trains it in a subprocess, and a timer shows the
run's loss curve, progress and log as its folder fills. The page holds nothing the run folder does not."""

import json
import shlex
from functools import lru_cache, partial
from pathlib import Path

import gradio as gr

from lift_core import models
from lift_core.config import DEFAULTS, SETTINGS, TrainConfig
from lift_core.errors import OUT_OF_MEMORY_HINT, LiftError
from lift_core.estimate import estimate_duration
from lift_core.launcher import FORCE_AFTER_S, ran_out_of_memory, training_command
from lift_core.memory import memory_summary
from lift_core.metrics import metrics_line
from lift_core.presets import DEFAULT_PRESET, PRESET_FIELDS, PRESETS, apply_preset
from lift_core.runs import ACTIVE_STATES, Run
from lift_ui.common import error_message, majority_note, setting_control
from lift_ui.context import AppContext
from lift_ui.figures.training import loss_curve

POLL_SECONDS = 1.5
LOG_LINES = 15
FAILURE_LOG_LINES = 8
STOP_MESSAGES = {
    "requested": "Stopping run `{name}` after its current step; its adapter will be saved.",
    "waiting": "Run `{name}` is finishing its current step. If it has not stopped {seconds} s after the first "
               "Stop, press Stop again to kill it (without saving an adapter).",
    "killed": "Killed run `{name}`; no adapter was saved.",
}
NO_RUN = "No training run yet. Load a table in the Data tab, choose the settings above and press **Start**."
# What the memory estimate depends on: the table's token lengths, the model and how it is trained.
MEMORY_SETTINGS = ("data", "target", "features", "task", "template", "template_text", "decimals", "trim_zeros",
                   "model", "quant", "batch_size", "lora_r", "lora_targets", "lora_dropout", "lora_layers",
                   "num_processes")
PRESET_HELP = "  \n".join(f"**{name}**: {preset.description}" for name, preset in PRESETS.items())
DECISION_LOSS_HELP = (
    "*Decision loss* = loss of the first answer token where the classes differ; the format tokens (`@@@`) are "
    "learned in a few steps and hide it in the mean loss. If it stays near ln(number of classes), the model is "
    "guessing. Right axis: the validation score (accuracy, or RAE for regression); the best one's weights are kept.")


def make_config(data, target, features, task, template, template_text, decimals, model, table_required=True,
                **settings) -> TrainConfig:
    """The TrainConfig the page describes: the shared Data/Prompt components plus this tab's settings.

    `settings` are keyed by TrainConfig field; each value is cast to the type of that field's default. Settings
    that need no translation come this way whichever tab shows them (the Prompt tab's trim_zeros). Without
    `table_required`, a config without a table or target is one too.
    """
    if table_required and not data:
        raise LiftError("No data loaded yet: load or generate a table in the Data tab first.")
    if table_required and not target:
        raise LiftError("Choose the target column in the Data tab.")
    if not (model or "").strip():
        raise LiftError("Choose a model: one from the list, a hub id or a local folder.")
    empty = [name for name, value in settings.items() if value is None or value == ""]
    if empty:
        raise LiftError(f"Give a value for: {', '.join(empty)}.")
    return TrainConfig(
        data=data or "", target=target or "", features=list(features or []) or None,
        task=None if task in (None, "auto") else task,
        template=template or DEFAULTS.template,
        template_text=template_text if template == "custom" else None,
        decimals=int(decimals if decimals is not None else DEFAULTS.decimals),
        model=model.strip(),
        **{name: type(getattr(DEFAULTS, name))(value) for name, value in settings.items()},
    )


def preset_values(name: str) -> list:
    """The preset's values of PRESET_FIELDS, in that order: what the preset selector puts into the settings."""
    values = apply_preset(name)
    return [values[field] for field in PRESET_FIELDS]


def _duration(seconds) -> str:
    if seconds is None:
        return "–"
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def progress_html(rows: list[dict], active: bool) -> str:
    """A bar and one line: step/total, elapsed, ETA (while running) and throughput, from the last metrics row."""
    logged = [row for row in rows if row.get("total_steps")]
    if not logged:
        return "<div>Waiting for the first training step (loading data and model)…</div>" if active else ""
    last = logged[-1]
    step, total = last["step"], last["total_steps"]
    parts = [f"step {step}/{total}", f"elapsed {_duration(last.get('elapsed_s'))}"]
    if active:
        parts.append(f"ETA {_duration(last.get('eta_s'))}")
    if last.get("tokens_per_s"):
        parts.append(f"{last['tokens_per_s']:,.0f} tokens/s")
    return (f'<progress value="{step}" max="{total}" style="width:100%"></progress>'
            f"<div>{' · '.join(parts)}</div>")


def failure_message(run: Run, status: dict) -> str:
    """Why a run failed: exit code, error, the log's last lines, and what to try when memory ran out."""
    log = run.log_tail(FAILURE_LOG_LINES)
    exit_code = status.get("exit_code")
    head = f"❌ **Run `{run.name}` {status['state']}**"
    if exit_code is not None:
        head += f" (exit code {exit_code})"
    lines = [f"{head}: {status.get('error') or 'no error recorded'}"]
    if ran_out_of_memory(run, status):
        lines.append(f"💡 {OUT_OF_MEMORY_HINT}")
    if log.strip():
        lines.append(f"Last lines of the log:\n```\n{log}\n```")
    return "\n\n".join(lines)


def state_message(run: Run, status: dict, has_metrics: bool) -> str:
    state = status.get("state")
    if state in ACTIVE_STATES:
        doing = "training" if has_metrics else "loading data and model"
        return f"⏳ **Run `{run.name}`**: {doing}… (Stop saves the adapter after the current step)"
    if state == "completed":
        results = run.eval_results() or {}
        metrics = metrics_line(results, " · ")
        return (f"✅ **Run `{run.name}` completed.**" + (f" Test set: {metrics}" if metrics else "")
                + majority_note(results))
    if state == "stopped":
        return (f"⏹️ **Run `{run.name}` stopped** on request. {status.get('note') or 'Its adapter is saved'} (see "
                "the Evaluate and Runs tabs)." + resume_hint(run))
    return failure_message(run, status) + resume_hint(run)


def resume_hint(run: Run) -> str:
    return "" if run.resume_problem() else f"\n\n↻ **Resume** continues it {run.resume_point()}."


def show_command(ctx: AppContext, **values):
    try:
        config = make_config(**values)
    except LiftError as error:
        return "", error_message(error), gr.skip()
    line = training_command(config, ctx.launcher.new_run_path(config))
    return shlex.join(["python", *line[1:]]), "", gr.Accordion(open=True)


def estimate(ctx: AppContext, **values) -> str:
    try:
        config = make_config(**values)
        ctx.launcher.check_model(config.model)
        return estimate_duration(config, ctx.runs_dir).summary()
    except LiftError as error:
        return error_message(error)


def memory(ctx: AppContext, **values) -> str:
    """The memory line: what training the chosen model needs against what this machine has free."""
    try:
        config = make_config(table_required=False, **values)
        ctx.launcher.check_model(config.model)
        return memory_summary(config)
    except LiftError as error:
        return error_message(error)


def start(ctx: AppContext, **values):
    try:
        run = ctx.launcher.start(make_config(**values))
    except LiftError as error:
        return gr.skip(), error_message(error)
    return str(run.path), f"Started run `{run.name}`."


def resume(ctx: AppContext, run_path):
    """Resume this page's run, else the server's latest."""
    try:
        run = Run(run_path) if run_path and Path(run_path).is_dir() else ctx.launcher.latest_run()
        if run is None:
            raise LiftError("There is no run to resume yet.")
        point = ctx.launcher.resume(run)
    except LiftError as error:
        return gr.skip(), error_message(error)
    return str(run.path), f"Resumed run `{run.name}` {point}."


def stop(ctx: AppContext) -> str:
    stopping = ctx.launcher.stop()
    if stopping is None:
        return "No training is running."
    run, outcome = stopping
    return STOP_MESSAGES[outcome].format(name=run.name, seconds=FORCE_AFTER_S)


def status(ctx: AppContext, run_path, log_y, smoothing):
    """The loss plot, progress, log tail and state of this page's run, else of the server's latest run."""
    run = Run(run_path) if run_path and Path(run_path).is_dir() else ctx.launcher.latest_run()
    if run is None:
        return loss_curve([]), "", "", NO_RUN, gr.Timer(active=False)
    rows, run_status = run.metrics(), run.reconcile()
    active = run_status.get("state") in ACTIVE_STATES
    return (run_loss_curve(json.dumps(rows), log_y, smoothing), progress_html(rows, active), run.log_tail(LOG_LINES),
            state_message(run, run_status, bool(rows)), gr.Timer(active=active or ctx.launcher.finishing(run)))


@lru_cache(maxsize=16)
def run_loss_curve(rows_json: str, log_y: bool, smoothing: float):
    """The loss figure of a run's metrics rows (as JSON), drawn once per new row: every open page polls the same
    run every POLL_SECONDS, and drawing costs far more than reading the rows."""
    return loss_curve(json.loads(rows_json), log_y, smoothing)


def gpu_controls() -> dict:
    """The multi-GPU settings, shown only where there is more than one GPU to use: the number of training
    processes, all GPUs by default."""
    count = models.cuda_device_count()
    if count < 2:
        return {}
    return {"num_processes": setting_control("num_processes", value=count, minimum=1, maximum=count)}


def settings_panel(ctx: AppContext) -> tuple[dict, gr.Radio, gr.Markdown]:
    """The Model, LoRA and Optimisation columns: this tab's settings keyed by TrainConfig field, the preset, and the
    memory line."""
    with gr.Row():
        with gr.Column():
            gr.Markdown("### Model")
            ctx.model.render()
            quant = gr.Radio(list(models.QUANT_MODES), value=ctx.default_quant,
                             label=SETTINGS["quant"].metadata["label"],
                             info=f"{SETTINGS['quant'].metadata['help']}. This server: {ctx.hardware}")
            gpus = gpu_controls()
            memory_line = gr.Markdown()
            preset = gr.Radio(list(PRESETS), value=DEFAULT_PRESET, label="Preset",
                              info="Fills the LoRA and optimisation settings (Logging and limits too) and the "
                                   "Prompt tab's trailing zeros; change any of them afterwards.")
            gr.Markdown(PRESET_HELP)
        with gr.Column():
            gr.Markdown("### LoRA")
            settings = {"lora_r": setting_control("lora_r", minimum=1),
                        "lora_alpha": setting_control("lora_alpha", minimum=1),
                        "lora_dropout": setting_control("lora_dropout", minimum=0, maximum=0.9, step=0.05),
                        "lora_targets": setting_control("lora_targets"),
                        "lora_layers": setting_control("lora_layers", minimum=0)}
        with gr.Column():
            gr.Markdown("### Optimisation")
            settings |= {"lr": setting_control("lr", minimum=0, step=0.0001),
                         "epochs": setting_control("epochs", minimum=0, step=0.5),
                         "max_steps": setting_control("max_steps", minimum=0),
                         "warmup": setting_control("warmup", minimum=0, maximum=1, step=0.01),
                         "batch_size": setting_control("batch_size", minimum=1),
                         "val_size": setting_control("val_size", slider=True, minimum=0, maximum=0.5, step=0.05),
                         "seed": setting_control("seed")}
            with gr.Accordion("Logging and limits", open=False):
                settings |= {"logging_steps": setting_control("logging_steps", minimum=0),
                             "eval_steps": setting_control("eval_steps", minimum=0),
                             "evaluations": setting_control("evaluations", minimum=1),
                             "stop_when_perfect": setting_control("stop_when_perfect", minimum=0),
                             "max_example_tokens": setting_control("max_example_tokens", minimum=1)}
    settings |= {"quant": quant, **gpus}
    return settings, preset, memory_line


def run_view() -> tuple[gr.Plot, gr.Checkbox, gr.Slider, gr.Markdown, gr.HTML, gr.Textbox]:
    """The followed run: its loss plot with the plot's log-scale and smoothing options, then its state, progress
    bar and log."""
    with gr.Row():
        with gr.Column(scale=3):
            plot = gr.Plot(label="Loss")
            with gr.Row():
                log_y = gr.Checkbox(False, label="Log-scale loss")
                smoothing = gr.Slider(0, 0.99, value=0, step=0.01, label="Smoothing (EMA of the train losses)")
            gr.Markdown(DECISION_LOSS_HELP)
        with gr.Column(scale=2):
            run_state = gr.Markdown(NO_RUN)
            progress = gr.HTML()
            # Room for wrapped long lines, so the newest line is not cut off at the bottom.
            log = gr.Textbox(label="Log (last lines)", lines=LOG_LINES, max_lines=2 * LOG_LINES, interactive=False,
                             autoscroll=True)
    return plot, log_y, smoothing, run_state, progress, log


def connect_settings(ctx: AppContext, settings: dict, preset: gr.Radio, estimate_button: gr.Button,
                     estimate_line: gr.Markdown, memory_line: gr.Markdown) -> None:
    """The preset filling the settings, and the duration and memory estimates of the run they describe."""
    preset_filled = preset.change(preset_values, preset, [settings[field] for field in PRESET_FIELDS],
                                  api_name="preset")
    # On request and after a preset, not on every keystroke: the estimate reads the table and tokenizes rows.
    estimate_button.click(partial(estimate, ctx), inputs_kwargs=settings, outputs=estimate_line, api_name="estimate")
    preset_filled.then(partial(estimate, ctx), inputs_kwargs=settings, outputs=estimate_line,
                       api_visibility="private")
    # On page load and whenever one of the settings it depends on changes; cheap after the first time (the
    # architecture and the table's token lengths are cached).
    memory_inputs = {name: settings[name] for name in MEMORY_SETTINGS if name in settings}
    gr.on(None, partial(memory, ctx), inputs_kwargs=memory_inputs, outputs=memory_line, api_name="memory",
          show_progress="hidden")


def build(ctx: AppContext) -> None:
    with gr.Tab("Train"):
        gr.Markdown("Finetune the model on the current table with LoRA. Training runs in the background on the "
                    "server: you can close or refresh this page and come back to it.")
        tab_settings, preset, memory_line = settings_panel(ctx)
        with gr.Row():
            start_button = gr.Button("Start training", variant="primary")
            stop_button = gr.Button("Stop", variant="stop")
            resume_button = gr.Button("Resume")
            command_button = gr.Button("Show command")
            estimate_button = gr.Button("Estimate duration")
        estimate_line = gr.Markdown()
        message = gr.Markdown()
        with gr.Accordion("Command line", open=False) as command_box:
            command = gr.Code(language="shell", label="The same training from a terminal", interactive=False,
                              lines=2, wrap_lines=True, show_line_numbers=False, buttons=["copy"])
        plot, log_y, smoothing, run_state, progress, log = run_view()
        current_run = gr.State(None)  # this page's run folder; without one the page follows the runs folder
        # Ticks once after the page opens (reattaching to the run), then only while a run is active.
        timer = gr.Timer(POLL_SECONDS)
        ctx.training_run, ctx.training_timer = current_run, timer

        # Keyed by make_config's parameters (TrainConfig fields), so every button describes the same run, and a
        # preset sets the Prompt tab's controls among them too.
        settings = {"data": ctx.data_path, "target": ctx.target, "features": ctx.features, "task": ctx.task,
                    "template": ctx.template, "template_text": ctx.template_text, "decimals": ctx.decimals,
                    "trim_zeros": ctx.trim_zeros, "model": ctx.model, **tab_settings}
        connect_settings(ctx, settings, preset, estimate_button, estimate_line, memory_line)
        command_button.click(partial(show_command, ctx), inputs_kwargs=settings,
                             outputs=[command, message, command_box], api_name="show_command")
        started = start_button.click(partial(start, ctx), inputs_kwargs=settings, outputs=[current_run, message],
                                     api_name="start")
        stop_button.click(partial(stop, ctx), outputs=message, api_name="stop")
        resumed = resume_button.click(partial(resume, ctx), inputs=current_run, outputs=[current_run, message],
                                      api_name="resume")
        status_inputs, status_outputs = [current_run, log_y, smoothing], [plot, progress, log, run_state, timer]
        gr.on([timer.tick, log_y.change, smoothing.change], partial(status, ctx), inputs=status_inputs,
              outputs=status_outputs, api_name="status", show_progress="hidden")
        # Shows the new run at once and switches the timer on.
        for launched in (started, resumed):
            launched.success(partial(status, ctx), inputs=status_inputs, outputs=status_outputs,
                             show_progress="hidden", api_visibility="private")
        # After Start has answered, so the page never waits for the estimate; a failing estimate says why.
        started.success(partial(estimate, ctx), inputs_kwargs=settings, outputs=estimate_line,
                        api_visibility="private")
