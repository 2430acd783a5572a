"""Studies tab: the LIFT paper's experiments on the current table. One factor varies across runs (how many training
rows, how many wrong labels, the feature names, the training range, or a setting); the engine's launcher trains the
runs one after another in a process of its own, and a timer shows each run's state and LIFT's curve against the
baselines' as the study's folder fills."""

from dataclasses import asdict
from typing import NamedTuple

import gradio as gr
import pandas as pd

from lift_core.baselines import CLASSIFIERS, REGRESSORS
from lift_core.config import SETTINGS, split_list
from lift_core.errors import LiftError
from lift_core.estimate import readable_duration
from lift_core.launcher import FORCE_AFTER_S, STUDIES_ON_A_SHARED_SERVER
from lift_core.presets import PRESETS, apply_preset
from lift_core.runs import ACTIVE_STATES
from lift_core.studies import (DEFAULT_LEVELS, FACTORS, KINDS, LIFT, NOISE_MODES, NOT_A_FACTOR, Study, StudySpec,
                               levels_text)
from lift_core.study_results import SCORE_NAMES, drawable, level_maps, results, score_metric, summary
from lift_core.zerogpu import MAX_SECONDS, gpu_job
from lift_ui.common import MODEL_JOB, download_copy, error_message, rounded_for_display, with_context
from lift_ui.context import AppContext
from lift_ui.figures.studies import level_maps_figure, study_curve
from lift_ui.tables import make_config

POLL_SECONDS = 2.0
LOG_LINES = 15
DEFAULT_KIND = "sample-efficiency"
STUDY_PRESET = "Quick look"
# The settings a vary-setting study may vary, as (label, name) choices.
VARIED_SETTINGS = [(SETTINGS[name].metadata["label"] or name, name) for name in SETTINGS if name not in NOT_A_FACTOR]
STATE_COLUMNS = ["run", "level", "seed", "state", "LIFT score"]
VARIED_LEVELS = "values of the setting chosen beside, e.g. 1e-4,1e-3 for the learning rate"
DESCRIPTION = (
    "The LIFT paper's studies on the current table: runs that differ in one factor, each scored on the same test "
    "rows beside the classical baselines fitted under the same factor. A study trains the model chosen in the "
    "Train tab on the Data tab's table, with the Prompt tab's template and the budget preset below; its runs train "
    "one after another in the background, so you can close this page and come back. Hover over the curve and click "
    "the camera icon to save it as a PNG; **Download CSV** gives every run's scores.")
NO_STUDY = "No study chosen: set one up above and press **Start study**, or pick an earlier one."
STOP_MESSAGES = {
    "requested": "Stopping study `{name}`: no further run starts, and the run training now stops after its current "
                 "step, its adapter saved. **Resume** continues the study.",
    "waiting": "Study `{name}`'s run is finishing its current step. If it has not stopped {seconds} s after the first "
               "Stop, press Stop again to kill it (without saving an adapter).",
    "killed": "Killed study `{name}` and its training run (no adapter saved). **Resume** continues the study.",
}


def level_controls(kind: str) -> tuple[gr.Textbox, gr.Radio, gr.Dropdown]:
    """A kind's default levels, with what they mean; the noise mode for label noise, the setting for vary-setting."""
    return (gr.Textbox(value=levels_text(DEFAULT_LEVELS[kind]), info=levels_info(kind)),
            gr.Radio(visible=kind == "label-noise"), gr.Dropdown(visible=kind == "vary-setting"))


def study_spec(ctx: AppContext, kind, levels, noise_mode, setting, seeds, preset, baselines=None,
               **table) -> StudySpec:
    """The study the page describes: the current table, template and model with the preset laid over them."""
    config = make_config(**table)
    typed = split_list(levels or "")
    if not typed:
        raise LiftError("Give the levels of the study, separated by commas.")
    if seeds is None:
        raise LiftError("Give the number of seeds, from 1 to 20.")
    base = {**asdict(config), **apply_preset(preset), "quant": ctx.default_quant}
    return StudySpec(kind, base, typed, int(seeds), noise_mode, setting if kind == "vary-setting" else "",
                     list(baselines or []))


def estimate(ctx: AppContext, kind, levels, noise_mode, setting, seeds, preset, baselines=None, calibrate=False,
             **table) -> str:
    """The whole study's duration from the duration estimate of each of its runs; a mistake in one line. Shown
    unasked as the settings change, it never times the model (that holds the training slot a while); with
    `calibrate` (the button), a model never run here is timed first, once."""
    try:
        spec = study_spec(ctx, kind, levels, noise_mode, setting, seeds, preset, baselines, **table)
        seconds = ctx.launcher.estimate_study(spec, calibrate=calibrate)
    except LiftError as error:
        return error_message(error)
    runs = f"{len(spec.levels) * spec.seeds} runs, one after another"
    if seconds is None:
        return (f"Estimated total: unknown ({runs}): no run of `{spec.base['model']}` has been timed on this "
                "machine yet. **Time the model** times a few steps of it once.")
    return f"Estimated total: about {readable_duration(seconds)} ({runs}, from the duration estimate of each)."


def timed_estimate(ctx: AppContext, **choices) -> str:
    return estimate(ctx, calibrate=True, **choices)


def chosen_study(ctx: AppContext, name) -> Study:
    """The study a page names; none on a shared server, whose visitors can neither run a study nor act on one."""
    if ctx.multi_user:
        raise LiftError(STUDIES_ON_A_SHARED_SERVER)
    return ctx.launcher.find_study(name)


def listed_studies(ctx: AppContext, current) -> gr.Dropdown:
    """The studies of this server, newest first, keeping the current choice, else the one training, else the
    newest."""
    names = [] if ctx.multi_user else [study.name for study in ctx.launcher.studies()]
    active = None if ctx.multi_user else ctx.launcher.active_study()
    chosen = current if current in names else active.name if active else next(iter(names), None)
    return gr.Dropdown(choices=names, value=chosen)


def start(ctx: AppContext, kind, levels, noise_mode, setting, seeds, preset, baselines=None, **table):
    """Creates the study and launches its process; the page then follows it."""
    try:
        spec = study_spec(ctx, kind, levels, noise_mode, setting, seeds, preset, baselines, **table)
        study = ctx.launcher.start_study(spec)
    except LiftError as error:
        return gr.skip(), error_message(error), gr.skip()
    runs = len(study.run_names())
    return (listed_studies(ctx, study.name), f"Started study `{study.name}`: {runs} runs, one after another.",
            gr.Timer(active=True))


def stop(ctx: AppContext, name) -> str:
    try:
        study = chosen_study(ctx, name)
        outcome = ctx.launcher.stop_study(study)
    except LiftError as error:
        return error_message(error)
    if outcome != "idle":
        return STOP_MESSAGES[outcome].format(name=study.name, seconds=FORCE_AFTER_S)
    if study.finished():
        return f"Study `{study.name}` has finished: there is nothing to stop."
    return f"Study `{study.name}` is not running: there is nothing to stop. **Resume** continues it."


def resume(ctx: AppContext, name):
    try:
        study = chosen_study(ctx, name)
        ctx.launcher.resume_study(study)
    except LiftError as error:
        return error_message(error), gr.skip()
    return (f"Resumed study `{study.name}`: its unfinished runs train one after another; the finished ones are "
            "kept.", gr.Timer(active=True))


def runs_table(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its level, seed, state and LIFT's test score."""
    lift = scores[scores["method"] == LIFT].rename(columns={"score": "LIFT score"})
    return rounded_for_display(lift[STATE_COLUMNS].astype({"LIFT score": float}))


def numeric_levels(study: Study) -> bool:
    """Whether the study's levels lie on a number line (shares, a number setting) rather than being names."""
    levels = study.spec().levels
    return all(isinstance(level, (int, float)) and not isinstance(level, bool) for level in levels)


def study_curve_of(study: Study, scores: pd.DataFrame):
    return study_curve(summary(scores), study.spec().factor(), SCORE_NAMES[score_metric(study)],
                       numeric_levels(study))


def study_line(study: Study, states: dict[str, str], active: bool) -> str:
    """What the study is doing, how far it is, and why a run failed."""
    spec = study.spec()
    done = len(states) - len(study.pending())
    head = (f"**{study.name}**: {spec.kind}, {len(spec.levels)} levels × {spec.seeds} seed(s); {done} of "
            f"{len(states)} runs finished")
    training = next((name for name, state in states.items() if state in ACTIVE_STATES), None)
    if active:
        doing = f"training `{training}`" if training else "fitting baselines or starting the next run"
        line = f"⏳ {head}; {'stopping' if study.stop_requested() else doing}…"
    elif done == len(states):  # a failed run that can be resumed is not done: Resume retries it
        line = f"✅ {head}: every run has its result."
    elif study.stop_requested():
        line = f"⏹️ {head}. Stopped on request: **Resume** continues it, keeping the finished runs."
    else:
        line = f"⏸️ {head}. Its process has ended with runs left to train: **Resume** trains them."
    failures = [f"❌ Run `{name}` failed: {study.run(name).status().get('error') or 'no error recorded'}"
                for name, state in states.items() if state == "failed"]
    return "\n\n".join([line, *failures])


def status(ctx: AppContext, name):
    """The chosen study's runs, curve, state line and log; the poll goes on while its process lives. Then Start,
    Stop, Resume and the boundaries button as the study allows."""
    if not name:
        return nothing_shown(ctx, NO_STUDY)
    try:
        study = chosen_study(ctx, name)
    except LiftError as error:
        return nothing_shown(ctx, error_message(error))
    active = ctx.launcher.active_study()
    active = active is not None and active.path == study.path
    scores, states = results(study), study.states()
    return (runs_table(scores), study_curve_of(study, scores), study_line(study, states, active),
            study.log_tail(LOG_LINES), gr.Timer(active=active), *study_buttons(ctx, study, active))


def nothing_shown(ctx: AppContext, note: str) -> tuple:
    """status's outputs without a study: `note` says why."""
    return (pd.DataFrame(columns=STATE_COLUMNS), None, note, "", gr.Timer(active=False),
            *study_buttons(ctx, None, False))


def study_buttons(ctx: AppContext, study: Study | None, active: bool) -> tuple:
    """Start (never on a shared server, nor while the study trains), Stop (in red) while it trains, Resume for a
    study that has not finished, and Draw for one whose runs can be drawn."""
    resumable = study is not None and not active and not study.finished()
    return (gr.Button(interactive=not ctx.multi_user and not active),
            gr.Button(interactive=active, variant="stop" if active else "secondary"),
            gr.Button(interactive=resumable), gr.Button(visible=study is not None and drawable(study)))


def draw_maps(ctx: AppContext, name, progress=gr.Progress()):
    """The decision boundaries of each level's first-seed run, side by side, the figure growing as each level's map
    arrives (a map drawn before comes back without the model)."""
    try:
        study = chosen_study(ctx, name)
        if not drawable(study):
            raise LiftError("Decision boundaries need two numeric features (or one numeric feature for a "
                            "regression); this study's table has other features.")
        total, panels = len(study.spec().levels), []
        progress(0, desc="Loading the model of the first level")
        table = study.definition()
        for level, grid, train in level_maps(study):
            panels.append((levels_text([level]), grid, train))
            progress(len(panels) / total, desc=f"Drew {len(panels)} of {total} levels")
            figure = level_maps_figure(panels, table["features"], table["target"], table["classes"],
                                       study.spec().factor())
            yield figure, f"Drew {len(panels)} of {total} levels (each level's run with the first seed)."
        if not panels:
            raise LiftError("No run of the study's first seed has finished yet: draw the boundaries once one has.")
        if len(panels) < total:
            yield gr.skip(), f"Drew {len(panels)} of {total} levels: the other levels' runs have not finished yet."
    except LiftError as error:
        yield gr.skip(), error_message(error)


def download_csv(ctx: AppContext, name):
    """Every run's and baseline's test score, with every digit."""
    try:
        study = chosen_study(ctx, name)
        return download_copy(results(study), f"{study.name}.csv"), ""
    except LiftError as error:
        return None, error_message(error)


def levels_info(kind: str) -> str:
    return f"Separated by commas: {FACTORS.get(kind, VARIED_LEVELS)}."


def study_controls() -> dict:
    """The study's own choices, keyed by study_spec's parameters."""
    with gr.Row():
        kind = gr.Radio(list(KINDS), value=DEFAULT_KIND, label="Study", scale=3)
        preset = gr.Radio(list(PRESETS), value=STUDY_PRESET, label="Budget preset", scale=2,
                          info="The training settings of every run (the Train tab describes each preset).")
    with gr.Row():
        levels = gr.Textbox(levels_text(DEFAULT_LEVELS[DEFAULT_KIND]), label="Levels", info=levels_info(DEFAULT_KIND),
                            scale=3)
        noise_mode = gr.Radio(list(NOISE_MODES), value=NOISE_MODES[0], label="Label noise", visible=False, scale=2,
                              info="random: to another class, drawn uniformly; systematic: each class to the next.")
        setting = gr.Dropdown(VARIED_SETTINGS, value=None, label="Setting to vary", visible=False, scale=2)
        seeds = gr.Number(1, label="Seeds", precision=0, minimum=1, maximum=20, scale=1,
                          info="Each level is trained this many times; the curve's band is their spread.")
    baselines = gr.Dropdown(list(dict.fromkeys(CLASSIFIERS + REGRESSORS)), value=[], multiselect=True,
                            label="Baselines", info="Fitted beside each run on its training rows; none chosen: all of "
                                                    "the task's (the CLI's --baselines).")
    return {"kind": kind, "levels": levels, "noise_mode": noise_mode, "setting": setting, "seeds": seeds,
            "preset": preset, "baselines": baselines}


class StudyView(NamedTuple):
    picker: gr.Dropdown
    refresh: gr.Button
    line: gr.Markdown
    curve: gr.Plot
    runs: gr.Dataframe
    log: gr.Textbox
    draw: gr.Button
    maps_note: gr.Markdown
    maps: gr.Plot
    csv_button: gr.Button
    csv_file: gr.File


def study_view() -> StudyView:
    """The chosen study: its state, curve, runs and log, then its boundaries per level and its CSV."""
    with gr.Row(equal_height=True):
        # Studies started after the page loaded are valid too, hence custom values; the launcher checks the name.
        picker = gr.Dropdown([], label="Studies on this server (newest first)", allow_custom_value=True, scale=4)
        refresh = gr.Button("↻ Refresh studies", scale=0, min_width=160)
    line = gr.Markdown(NO_STUDY)
    with gr.Row():
        curve = gr.Plot(label="Test score against the factor", scale=3)
        runs = gr.Dataframe(pd.DataFrame(columns=STATE_COLUMNS), label="Runs", interactive=False, wrap=True,
                            scale=2)
    with gr.Accordion("Study log (last lines)", open=False):
        log = gr.Textbox(show_label=False, lines=LOG_LINES, max_lines=2 * LOG_LINES, interactive=False,
                         autoscroll=True)
    with gr.Row():
        draw = gr.Button("Draw the boundaries", visible=False)
        csv_button = gr.Button("Download CSV")
    csv_file = gr.File(label="Scores of every run (CSV)", interactive=False, visible=False)
    maps_note = gr.Markdown()
    maps = gr.Plot(label="Decision boundaries per level")
    return StudyView(picker, refresh, line, curve, runs, log, draw, maps_note, maps, csv_button, csv_file)


def connect_setup(ctx: AppContext, tab: gr.Tab, fields: dict, estimate_line: gr.Markdown,
                  time_button: gr.Button) -> dict:
    """The kind's levels, and the estimate of the study the page describes; returns the inputs every study
    handler takes (the study's fields and the shared table, template and model)."""
    inputs = {**fields, "data": ctx.data_path, "target": ctx.target, "features": ctx.features, "task": ctx.task,
              "template": ctx.template, "template_text": ctx.template_text, "decimals": ctx.decimals,
              "model": ctx.model}
    estimating = {"fn": with_context(estimate, ctx), "inputs_kwargs": inputs, "outputs": estimate_line,
                  "show_progress": "hidden"}
    kind_chosen = fields["kind"].change(level_controls, fields["kind"],
                                        [fields["levels"], fields["noise_mode"], fields["setting"]],
                                        api_visibility="private")
    kind_chosen.then(**estimating, api_visibility="private")
    # Not on every keystroke in the levels: the estimate reads the table and counts each run's tokens.
    triggers = [tab.select, fields["levels"].blur, fields["levels"].submit, fields["noise_mode"].change,
                fields["setting"].change, fields["seeds"].change, fields["preset"].change, fields["baselines"].change]
    gr.on(triggers, **estimating, api_name="study_estimate", trigger_mode="always_last")
    time_button.click(with_context(timed_estimate, ctx), inputs_kwargs=inputs, outputs=estimate_line,
                      api_name="study_timed_estimate")
    return inputs


def connect_study(ctx: AppContext, tab: gr.Tab, view: StudyView, buttons: tuple, message: gr.Markdown,
                  timer: gr.Timer, inputs: dict) -> None:
    """Start, Stop and Resume, the list of studies, and the poll of the chosen one."""
    start_button, stop_button, resume_button = buttons
    showing = {"fn": with_context(status, ctx), "inputs": view.picker, "show_progress": "hidden",
               "outputs": [view.runs, view.curve, view.line, view.log, timer, *buttons, view.draw]}
    gr.on([timer.tick, view.picker.change], **showing, api_name="study_status")
    listed = gr.on([tab.select, view.refresh.click], with_context(listed_studies, ctx), view.picker, view.picker,
                   api_name="studies", show_progress="hidden")
    started = start_button.click(with_context(start, ctx), inputs_kwargs=inputs,
                                 outputs=[view.picker, message, timer], api_name="start_study")
    stopped = stop_button.click(with_context(stop, ctx), view.picker, message, api_name="stop_study")
    resumed = resume_button.click(with_context(resume, ctx), view.picker, [message, timer], api_name="resume_study")
    for event in (listed, started, stopped, resumed):  # the buttons and the poll follow at once
        event.then(**showing, api_visibility="private")
    # Another study's maps and CSV are not this one's.
    view.picker.change(lambda: (None, "", gr.File(value=None, visible=False)), None,
                       [view.maps, view.maps_note, view.csv_file], api_visibility="private", show_progress="hidden")


def connect_results(ctx: AppContext, view: StudyView, message: gr.Markdown) -> None:
    """The boundaries per level (a model job, one at a time on the server, as Explore's) and the CSV."""
    # Where no study trains (ZeroGPU), one made elsewhere can still be drawn: its several maps ask for the most
    # one call may.
    drawn = gpu_job(lambda *_: MAX_SECONDS)(with_context(draw_maps, ctx))
    view.draw.click(drawn, view.picker, [view.maps, view.maps_note], api_name="study_maps", **MODEL_JOB)
    # The download box takes room only once it holds a file.
    view.csv_button.click(with_context(download_csv, ctx), view.picker, [view.csv_file, message],
                          api_name="study_csv").then(lambda path: gr.File(visible=bool(path)), view.csv_file,
                                                     view.csv_file, api_visibility="private")


def build(ctx: AppContext) -> None:
    with gr.Tab("Studies") as tab:
        gr.Markdown(DESCRIPTION)
        if ctx.multi_user:
            gr.Markdown(error_message(LiftError(STUDIES_ON_A_SHARED_SERVER)))
        fields = study_controls()
        with gr.Row(equal_height=True):
            estimate_line = gr.Markdown()
            time_button = gr.Button("⏱ Time the model", scale=0, min_width=160)
        with gr.Row():
            start_button = gr.Button("Start study", variant="primary", interactive=not ctx.multi_user)
            # Enabled (Stop in red) as the chosen study allows; the poll switches them as it goes.
            stop_button = gr.Button("Stop", interactive=False)
            resume_button = gr.Button("Resume", interactive=False)
        message = gr.Markdown()
        view = study_view()
        timer = gr.Timer(POLL_SECONDS, active=False)  # ticks while the chosen study's process lives
        inputs = connect_setup(ctx, tab, fields, estimate_line, time_button)
        connect_study(ctx, tab, view, (start_button, stop_button, resume_button), message, timer, inputs)
        connect_results(ctx, view, message)
