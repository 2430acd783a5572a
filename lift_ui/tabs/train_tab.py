"""Train tab: the settings become a TrainConfig, the engine's launcher trains it in a subprocess, and a timer shows the
run's loss curve, progress and log as its folder fills. The page holds nothing the run folder does not."""

import json
import shlex
from functools import lru_cache, partial
from pathlib import Path

import gradio as gr

from lift_core import models
from lift_core.access import RunAccess
from lift_core.config import SETTINGS, TrainConfig
from lift_core.errors import OUT_OF_MEMORY_HINT, LiftError
from lift_core.launcher import FORCE_AFTER_S, ran_out_of_memory, training_command
from lift_core.memory import memory_summary
from lift_core.metrics import metrics_line
from lift_core.presets import DEFAULT_PRESET, PRESET_FIELDS, PRESETS, apply_preset
from lift_core.runs import ACTIVE_STATES, Run
from lift_ui.common import error_message, majority_note, setting_control, with_context
from lift_ui.context import AppContext
from lift_ui.tables import NO_TABLE_LINE, make_config
from lift_ui.figures.training import loss_curve

POLL_SECONDS = 1.5
LOG_LINES = 15
FAILURE_LOG_LINES = 8
STOP_MESSAGES = {
    "requested": "Stopping run `{name}` after its current step; its adapter will be saved.",
    "waiting": "Run `{name}` is finishing its current step. If it has not stopped {seconds} s after the first "
               "Stop, press Stop again to kill it (without saving an adapter).",
    "killed": "Killed run `{name}`; no adapter was saved.",
    "cancelled": "Took run `{name}` out of the line before it started; delete it in the Runs tab, or resume it.",
}
# The line above the tabs already says when no table is loaded.
NO_RUN = "No training run on this page yet: choose the settings above and press **Start training**."
CALIBRATING = "⏱️ Timing a few training steps of `{model}` on this machine, once per model…"
# Where a browser keeps the run its Train tab follows, so that a refreshed page follows it again.
FOLLOWED_RUN_KEY = "lift-studio-train-run"
# What the memory estimate depends on: the table's token lengths, the model and how it is trained.
MEMORY_SETTINGS = ("data", "target", "features", "task", "template", "template_text", "decimals", "trim_zeros",
                   "model", "quant", "batch_size", "lora_r", "lora_targets", "lora_dropout", "lora_layers",
                   "num_processes")
DECISION_LOSS_HELP = (
    "*Decision loss* = loss of the first answer token where the classes differ; the format tokens (`@@@`) are "
    "learned in a few steps and hide it in the mean loss. If it stays near ln(number of classes), the model is "
    "guessing. Right axis: the validation score (accuracy, or RAE for regression); the best one's weights are kept.")


def preset_values(name: str) -> list:
    """The preset's values of PRESET_FIELDS, in that order: what the preset selector puts into the settings."""
    values = apply_preset(name)
    return [values[field] for field in PRESET_FIELDS]


def preset_help(name: str) -> str:
    return f"**{name}**: {PRESETS[name].description}"


def model_note(model) -> str:
    """The chosen model's size, download and licence, which the model list, names only, leaves out."""
    model = (model or "").strip()
    listed = models.LISTED_MODELS.get(model)
    if listed is None:
        return "A hub id (downloaded when a run first loads it) or a local folder." if model else ""
    return f"`{model}`: {listed.description(model)}."


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


def state_message(run: Run, status: dict, has_metrics: bool, place_in_line: int | None = None) -> str:
    """What became of the run and, when it was resumed, the way it went: its end alone would hide that it was
    stopped or interrupted on the way. `place_in_line`: the run waits for the training slot, in that place."""
    history = Run.resumed_history(status)
    return (_state_line(run, status, has_metrics, place_in_line)
            + (f"\n\nHistory: {' → '.join(history)}" if history else ""))


def _state_line(run: Run, status: dict, has_metrics: bool, place_in_line: int | None) -> str:
    state = status.get("state")
    if place_in_line:
        ahead = "it starts next" if place_in_line == 1 else f"{place_in_line - 1} waiting runs start before it"
        return (f"🕒 **Run `{run.name}`** waits for the training slot (one training at a time on this server): "
                f"{ahead}, in turn by visitor. Stop takes it out of the line.")
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


def settled(message_shown) -> str:
    """The message line once the settings give an estimate again: a warning there answered an earlier action and
    is out of date (it comes back if the mistake is made again); other news stays."""
    return "" if (message_shown or "").startswith(error_message("")) else gr.skip()


def show_command(ctx: AppContext, **values):
    try:
        config = make_config(**values)
    except LiftError as error:
        return "", error_message(error), gr.skip()
    line = training_command(config, ctx.launcher.new_run_path(config))
    return shlex.join(["python", *line[1:]]), "", gr.Accordion(open=True)


def estimate(ctx: AppContext, message_shown, **values):
    """The Estimate button: the duration of the run the settings describe, from a short timed training of the model
    the first time it is asked for here (the progress text says so meanwhile). A mistake goes to the message line
    only."""
    try:
        config = make_config(**values)
        config.check()  # before the timing text: settings that cannot train are not timed
        ctx.launcher.check_model(config.model)
        if ctx.launcher.will_time(config):
            yield CALIBRATING.format(model=config.model), gr.skip()
        yield ctx.launcher.estimate(config, calibrate=True).summary(), settled(message_shown)
    except LiftError as error:
        yield "", error_message(error)


def unasked_estimate(ctx: AppContext, config: TrainConfig | None) -> str:
    """The estimate shown without being asked for (of the run just started, or after a preset): never timed, which
    would take a while or slow the training, and silent on a mistake, which Start's message says."""
    if config is None:  # Start launched nothing
        return gr.skip()
    try:
        return ctx.launcher.estimate(config).summary()
    except LiftError:
        return ""


def preset_estimate(ctx: AppContext, **values) -> str:
    try:
        config = make_config(**values)
    except LiftError:
        return ""
    return unasked_estimate(ctx, config)


def memory(ctx: AppContext, message_shown, **values):
    """The memory line: what training the chosen model needs against what this machine has free; a setting it
    cannot use is said in the message line, as soon as it is chosen."""
    try:
        config = make_config(table_required=False, **values)
        ctx.launcher.check_model(config.model)
        return memory_summary(config), settled(message_shown)
    except LiftError as error:
        return "", error_message(error)


def start(ctx: AppContext, request: gr.Request, **values):
    """Launches the run, and hands its config on for the estimate shown once it has started."""
    try:
        config = make_config(**values)
        run = ctx.launcher.start(config, owner=ctx.access(request).owner)
    except LiftError as error:
        return gr.skip(), error_message(error), None
    place = ctx.launcher.queue_position(run)
    started = f"Queued run `{run.name}`: place {place} in line." if place else f"Started run `{run.name}`."
    return str(run.path), started, config


def resume(ctx: AppContext, run_path, request: gr.Request):
    """Resume the run this page follows (the Runs tab resumes any other)."""
    try:
        if not run_path:
            raise LiftError("This page follows no run to resume: choose one in the Runs tab and resume it there.")
        run = ctx.access(request).find_own(Path(run_path).name)
        point = ctx.launcher.resume(run)
    except LiftError as error:
        return gr.skip(), error_message(error)
    return str(run.path), f"Resumed run `{run.name}` {point}."


def stop(ctx: AppContext, request: gr.Request) -> str:
    stopping = ctx.launcher.stop(owner=ctx.access(request).owner)
    if stopping is None:
        return "No training of yours is running." if ctx.multi_user else "No training is running."
    run, outcome = stopping
    return STOP_MESSAGES[outcome].format(name=run.name, seconds=FORCE_AFTER_S)


def followed_run(ctx: AppContext, run_path, access: RunAccess) -> Run | None:
    """The run this page follows: the one it started or resumed, else the one training on the server now if it is
    the person's own. Never an earlier run nobody here asked for, nor another visitor's."""
    if run_path and Path(run_path).is_dir():
        return Run(run_path)
    active = ctx.launcher.active_run()
    return active if active is not None and access.owner in (None, active.owner()) else None


def remembered_run(ctx: AppContext, remembered, request: gr.Request) -> str | None:
    """The run the browser followed before the page was refreshed, if it is still one of the person's runs: what a
    browser sends is only trusted as the name of a listed run."""
    if not (remembered and isinstance(remembered, str)):
        return None
    try:
        return str(ctx.access(request).find_own(Path(remembered).name).path)
    except LiftError:
        return None


def run_buttons(run: Run | None, run_status: dict) -> tuple[gr.Button, gr.Button, gr.Button]:
    """Start, Stop and Resume as the followed run's state allows: no second start while it is active, Stop (in red)
    only then, Resume only where the engine can continue the run."""
    active = run_status.get("state") in ACTIVE_STATES
    return (gr.Button(interactive=not active), gr.Button(interactive=active, variant="stop" if active else "secondary"),
            gr.Button(interactive=run is not None and run.resume_problem() is None))


def status(ctx: AppContext, run_path, log_y, smoothing, request: gr.Request):
    """The followed run (kept as this page's), its loss plot, progress, log tail and state, the poll's next tick,
    and the buttons; a page that follows no run shows an empty plot and how to start one."""
    run = followed_run(ctx, run_path, ctx.access(request))
    if run is None:
        return None, loss_curve([]), "", "", NO_RUN, gr.Timer(active=False), *run_buttons(None, {})
    rows, run_status = run.metrics(), run.reconcile()
    active = run_status.get("state") in ACTIVE_STATES
    return (str(run.path), run_loss_curve(json.dumps(rows), log_y, smoothing), progress_html(rows, active),
            run.log_tail(LOG_LINES), state_message(run, run_status, bool(rows), ctx.launcher.queue_position(run)),
            gr.Timer(active=active or ctx.launcher.finishing(run)), *run_buttons(run, run_status))


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


def model_row(ctx: AppContext) -> tuple[gr.Radio, dict, gr.Markdown]:
    """The model across most of the page's width with its description under it, the quantization beside it, then
    the memory line."""
    gr.Markdown("### Model")
    with gr.Row():
        with gr.Column(scale=3):
            ctx.model.render()
            note = gr.Markdown(model_note(ctx.model.value))
        quant = gr.Radio(list(models.QUANT_MODES), value=ctx.default_quant, label=SETTINGS["quant"].metadata["label"],
                         info=f"{SETTINGS['quant'].metadata['help']}. This server: {ctx.hardware}", scale=2)
    ctx.model.change(model_note, ctx.model, note, api_visibility="private", show_progress="hidden")
    gpus = gpu_controls()
    return quant, gpus, gr.Markdown()


def settings_panel(ctx: AppContext) -> tuple[dict, gr.Radio, gr.Markdown]:
    """The model row, then the Preset, LoRA and Optimisation columns: this tab's settings keyed by TrainConfig
    field, the preset, and the memory line."""
    quant, gpus, memory_line = model_row(ctx)
    with gr.Row():
        with gr.Column():
            gr.Markdown("### Preset")
            preset = gr.Radio(list(PRESETS), value=DEFAULT_PRESET, show_label=False,
                              info="Fills the LoRA and optimisation settings (Logging and limits too) and the "
                                   "Prompt tab's trailing zeros; change any of them afterwards.")
            help_line = gr.Markdown(preset_help(DEFAULT_PRESET))
            preset.change(preset_help, preset, help_line, api_visibility="private", show_progress="hidden")
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
            plot = gr.Plot(loss_curve([]), label="Loss")
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
                     lines: tuple[gr.Markdown, gr.Markdown, gr.Markdown], opened) -> None:
    """The preset filling the settings, and the duration and memory estimates of the run they describe (`lines`:
    the estimate, memory and message lines)."""
    estimate_line, memory_line, message = lines
    preset_filled = preset.change(preset_values, preset, [settings[field] for field in PRESET_FIELDS],
                                  api_name="preset")
    # On request and after a preset, not on every keystroke: the estimate reads the table and tokenizes rows.
    estimate_button.click(partial(estimate, ctx), inputs_kwargs={"message_shown": message, **settings},
                          outputs=[estimate_line, message], api_name="estimate")
    preset_filled.then(partial(preset_estimate, ctx), inputs_kwargs=settings, outputs=estimate_line,
                       api_visibility="private")
    # When the page opens and whenever one of the settings it depends on changes (not the lines it reads); cheap
    # after the first time: the architecture and the table's token lengths are cached.
    memory_inputs = {name: settings[name] for name in MEMORY_SETTINGS if name in settings}
    inputs = {"message_shown": message, **memory_inputs}
    gr.on([component.change for component in memory_inputs.values()], partial(memory, ctx), inputs_kwargs=inputs,
          outputs=[memory_line, message], api_name="memory", show_progress="hidden")
    opened.then(partial(memory, ctx), inputs_kwargs=inputs, outputs=[memory_line, message], show_progress="hidden",
                api_visibility="private")


def page_opened(ctx: AppContext, current_run: gr.State) -> tuple:
    """The events of a page opening: it follows the run its browser followed before (kept by the browser, so that a
    refreshed page loses nothing), which the browser reads a moment after the page loads, and again once the page
    knows its visitor (on a multi-user server only a visitor's own run is followed)."""
    remembered = gr.BrowserState(None, storage_key=FOLLOWED_RUN_KEY)
    current_run.change(lambda path: path, current_run, remembered, api_visibility="private", show_progress="hidden")
    follow = with_context(remembered_run, ctx), remembered, current_run
    return (gr.on(None, *follow, api_visibility="private", show_progress="hidden"),
            ctx.visitor_known(*follow, api_visibility="private", show_progress="hidden"))


def follow_runs(ctx: AppContext, timer: gr.Timer, status_inputs: list, status_outputs: list, launches: list) -> None:
    """The poll of the followed run: after the page opens or a launch, on each tick while the run is active, and
    when a plot option changes."""
    gr.on([timer.tick, *(component.change for component in status_inputs[1:])], with_context(status, ctx),
          inputs=status_inputs, outputs=status_outputs, api_name="status", show_progress="hidden")
    # Shows a new run at once and switches the timer on.
    for event in launches:
        event.then(with_context(status, ctx), inputs=status_inputs, outputs=status_outputs, show_progress="hidden",
                   api_visibility="private")


def build(ctx: AppContext) -> None:
    with gr.Tab("Train"):
        gr.Markdown("Finetune the model on the current table with LoRA. Training runs in the background on the "
                    "server: you can close or refresh this page and come back to it.")
        # The app's line naming the active table, repeated where the choice becomes a run.
        ctx.table_lines.append(gr.Markdown(NO_TABLE_LINE, elem_classes="table-line"))
        tab_settings, preset, memory_line = settings_panel(ctx)
        with gr.Row():
            start_button = gr.Button("Start training", variant="primary")
            # Enabled (and red) only while a run is active; the poll switches them as the followed run's state goes.
            stop_button = gr.Button("Stop", interactive=False)
            resume_button = gr.Button("Resume", interactive=False)
            command_button = gr.Button("Show command")
            estimate_button = gr.Button("Estimate duration")
        estimate_line = gr.Markdown()
        message = gr.Markdown("")  # empty rather than None: the estimates read it (see `settled`)
        with gr.Accordion("Command line", open=False) as command_box:
            command = gr.Code(language="shell", label="The same training from a terminal", interactive=False,
                              lines=2, wrap_lines=True, show_line_numbers=False, buttons=["copy"])
        plot, log_y, smoothing, run_state, progress, log = run_view()
        current_run = gr.State(None)  # the folder of the run this page follows
        opened, visitor_known = page_opened(ctx, current_run)
        started_config = gr.State(None)  # the config of the run Start just launched, for its estimate
        timer = gr.Timer(POLL_SECONDS, active=False)  # ticks while the followed run is active
        ctx.training_run, ctx.training_timer = current_run, timer

        # Keyed by make_config's parameters (TrainConfig fields), so every button describes the same run, and a
        # preset sets the Prompt tab's controls among them too.
        settings = {"data": ctx.data_path, "target": ctx.target, "features": ctx.features, "task": ctx.task,
                    "template": ctx.template, "template_text": ctx.template_text, "decimals": ctx.decimals,
                    "trim_zeros": ctx.trim_zeros, "model": ctx.model, **tab_settings}
        connect_settings(ctx, settings, preset, estimate_button, (estimate_line, memory_line, message), opened)
        command_button.click(partial(show_command, ctx), inputs_kwargs=settings,
                             outputs=[command, message, command_box], api_name="show_command")
        started = start_button.click(with_context(start, ctx), inputs_kwargs=settings,
                                     outputs=[current_run, message, started_config], api_name="start")
        stop_button.click(with_context(stop, ctx), outputs=message, api_name="stop")
        resumed = resume_button.click(with_context(resume, ctx), inputs=current_run, outputs=[current_run, message],
                                      api_name="resume")
        follow_runs(ctx, timer, [current_run, log_y, smoothing],
                    [current_run, plot, progress, log, run_state, timer, start_button, stop_button, resume_button],
                    [opened, visitor_known, started, resumed])
        # After Start has answered, so the page never waits for the estimate.
        started.then(partial(unasked_estimate, ctx), inputs=started_config, outputs=estimate_line,
                     api_visibility="private")
