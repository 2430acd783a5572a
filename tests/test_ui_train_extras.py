"""The Train tab's decision-loss and validation curves, presets and warm-up, its multi-GPU controls, and the
majority-class warning in the Train and Evaluate tabs; all without a server or a model."""

import json
import os
from types import SimpleNamespace

import gradio as gr
import pandas as pd
import pytest

from lift_core import models
from lift_core.access import RunAccess
from lift_core.config import SETTINGS
from lift_core.errors import LiftError
from lift_core.presets import PRESET_FIELDS
from lift_core.processes import process_identity
from lift_core.runs import create_run

from helpers import put_in_state

from lift_ui.figures.training import loss_curve
from lift_ui.tables import make_config
from lift_ui.tabs.evaluate_tab import evaluate
from lift_ui.tabs.train_tab import (NO_RUN, model_note, preset_help, preset_values, remembered_run,
                                   run_buttons, start, state_message, status, unasked_estimate)

ROWS = [
    {"step": 1, "loss": 3.0, "decision_loss": 0.9},
    {"step": 5, "loss": 0.0, "decision_loss": 0.7},
    {"step": 5, "eval_loss": 1.0, "eval_decision_loss": 0.69, "val_accuracy": 0.5},
    {"step": 10, "loss": 0.5, "decision_loss": 0.2},
    {"step": 10, "eval_loss": 0.4, "eval_decision_loss": 0.1, "val_accuracy": 0.9},
]
# A classifier that always answers the commonest class.
GUESSING = {"task": "classification", "mode": "label scoring", "accuracy": 0.5, "majority_accuracy": 0.5,
            "n_test": 4}


def traces_by_name(figure) -> dict:
    return {trace.name: trace for trace in figure.data}


# ---------- figures ----------

def test_the_loss_plot_shows_decision_losses_and_the_validation_score_on_a_right_hand_axis():
    traces = traces_by_name(loss_curve(ROWS))
    assert list(traces) == ["train loss", "eval loss", "train decision loss", "eval decision loss", "val accuracy"]
    assert list(traces["train decision loss"].y) == [0.9, 0.7, 0.2]
    assert list(traces["eval decision loss"].x) == [5, 10]
    assert traces["eval decision loss"].line.dash != traces["train decision loss"].line.dash
    accuracy = traces["val accuracy"]
    assert accuracy.yaxis == "y2" and list(accuracy.y) == [0.5, 0.9]
    assert all(trace.yaxis in (None, "y") for name, trace in traces.items() if name != "val accuracy")
    assert list(loss_curve(ROWS).layout.yaxis2.range) == [0, 1.02]  # accuracy: the whole 0..1


def test_log_scale_and_smoothing_leave_the_validation_score_alone():
    figure = loss_curve(ROWS, log_y=True, smoothing=0.5)
    traces = traces_by_name(figure)
    assert figure.layout.yaxis.type == "log" and figure.layout.yaxis2.type != "log"
    assert list(traces["train decision loss"].y) == [0.9, 0.8, 0.5]  # train series are smoothed
    assert list(traces["train decision loss (raw)"].y) == [0.9, 0.7, 0.2]
    assert traces["train decision loss (raw)"].legendgroup == "train decision loss"  # hidden with its curve
    assert list(traces["eval decision loss"].y) == [0.69, 0.1]  # eval series are not
    assert traces["train loss (raw)"].y[1] == 0.01  # a zero loss sits a decade below the smallest loss
    assert list(traces["val accuracy"].y) == [0.5, 0.9]


def test_rows_without_decision_loss_or_score_give_the_plain_loss_plot():
    rows = [{"step": 1, "loss": 2.0}, {"step": 2, "eval_loss": 1.5}]
    figure = loss_curve(rows)
    assert [trace.name for trace in figure.data] == ["train loss", "eval loss"]
    assert "yaxis2" not in figure.to_dict()["layout"]  # no right-hand axis
    assert loss_curve([]).layout.annotations[0].text == "No loss logged yet"


def test_preset_values_follow_the_preset_fields():
    values = dict(zip(PRESET_FIELDS, preset_values("Paper")))
    assert values["lr"] == 1e-4 and values["lora_r"] == 16 and values["warmup"] == 0.002 and values["max_steps"] == 0


def test_make_config_takes_the_warm_up_share():
    config = make_config("table.csv", "y", [], "auto", "lift", "", 2, "tiny", warmup="0.1", epochs=3)
    assert config.warmup == 0.1 and config.epochs == 3.0


def test_make_config_without_a_table_when_none_is_required():
    config = make_config(None, None, [], "auto", "lift", "", 2, "tiny", table_required=False, batch_size=8)
    assert config.data == "" and config.target == "" and config.batch_size == 8
    with pytest.raises(LiftError, match="Load a table in the Data tab first"):
        make_config(None, None, [], "auto", "lift", "", 2, "tiny", batch_size=8)


def test_the_preset_help_follows_the_chosen_preset_and_the_model_note_the_chosen_model():
    assert preset_help("Quick look").startswith("**Quick look**: 80 steps")
    assert model_note("tiny") == f"`tiny`: {models.LISTED_MODELS['tiny'].description('tiny')}."
    assert "hub id" in model_note("some-org/some-model") and model_note("") == ""


# ---------- what the tab shows of a run, and its buttons ----------

def button_states(buttons) -> tuple[bool, bool, bool, str]:
    """Whether Start, Stop and Resume are enabled as the poll returns them, and Stop's variant (red: "stop")."""
    start_button, stop_button, resume_button = buttons
    return start_button.interactive, stop_button.interactive, resume_button.interactive, stop_button.variant


@pytest.fixture
def page(tmp_path):
    """What the Train tab's handlers get: a server context with a runs folder and its launcher."""
    from lift_core.launcher import TrainingLauncher

    from lift_ui.context import AppContext

    return AppContext(tmp_path / "runs", "tiny", "none", "", TrainingLauncher(tmp_path / "runs"))


def test_with_nothing_running_stop_is_disabled_and_not_red_and_only_start_is_offered(page):
    assert button_states(run_buttons(None, {})) == (True, False, False, "secondary")
    finished = create_run(page.runs_dir / "finished", {"model": "tiny"})
    put_in_state(finished, "completed")
    # A completed run cannot be resumed.
    assert button_states(run_buttons(finished, finished.status())) == (True, False, False, "secondary")


@pytest.mark.parametrize("state", ["queued", "running"])
def test_while_the_run_is_active_start_is_disabled_and_stop_is_red(page, state):
    run = create_run(page.runs_dir / "run", {"model": "tiny"})
    put_in_state(run, state)
    assert button_states(run_buttons(run, run.status())) == (False, True, False, "stop")


def test_resume_is_offered_only_for_a_run_the_engine_can_resume(page, monkeypatch):
    from lift_core.runs import Run

    run = create_run(page.runs_dir / "run", {"model": "tiny"})
    put_in_state(run, "stopped")
    assert run.resume_problem() and not run_buttons(run, run.status())[2].interactive  # no splits saved yet
    monkeypatch.setattr(Run, "resume_problem", lambda self: None)
    assert run_buttons(run, run.status())[2].interactive


def test_a_fresh_page_shows_no_earlier_finished_run_but_follows_the_one_training_now(page, monkeypatch):
    finished = create_run(page.runs_dir / "finished", {"model": "tiny"})
    put_in_state(finished, "completed")
    finished.append_metrics({"step": 1, "loss": 1.0})
    followed, plot, progress, log, state, timer, *buttons = status(page, None, False, 0, None)
    assert followed is None and state == NO_RUN and not timer.active and not plot.data
    assert button_states(buttons) == (True, False, False, "secondary")

    training = create_run(page.runs_dir / "training", {"model": "tiny"})
    training.start(process_identity(os.getpid()))  # this test's process stands in for the training
    monkeypatch.setattr(page.launcher, "active_run", lambda: training)
    followed, plot, progress, log, state, timer, *buttons = status(page, None, False, 0, None)
    assert followed == str(training.path) and "training" in state and timer.active
    assert button_states(buttons) == (False, True, False, "stop")
    # The page's own run, though finished, is followed over the one training now.
    assert status(page, str(finished.path), False, 0, None)[0] == str(finished.path)


def test_a_refreshed_page_follows_the_run_its_browser_remembers_if_it_is_one_of_this_servers(page, tmp_path):
    run = create_run(page.runs_dir / "run", {"model": "tiny"})
    assert remembered_run(page, str(run.path), None) == str(run.path)
    outside = create_run(tmp_path / "elsewhere" / "other", {"model": "tiny"})
    assert remembered_run(page, str(outside.path), None) is None  # the browser's word is only a listed run's name
    assert remembered_run(page, None, None) is None and remembered_run(page, {"path": "/"}, None) is None


def test_a_resumed_run_shows_how_it_got_to_its_end(tmp_path):
    run = create_run(tmp_path / "run", {"model": "tiny"})
    put_in_state(run, "completed")
    assert "History" not in state_message(run, run.status(), has_metrics=True)  # never resumed: its end says it all
    resumed = create_run(tmp_path / "resumed", {"model": "tiny"})
    for state in ("running", "stopped", "queued", "running", "completed"):
        resumed._transition(state)
    message = state_message(resumed, resumed.status(), has_metrics=True)
    assert "completed" in message
    assert message.endswith("History: queued → running → stopped → queued → running → completed")


def test_a_start_that_fails_says_why_once_and_the_estimate_after_it_keeps_quiet(page):
    _, message, started_config = start(page, None, data=None, target=None, features=[], task="auto", template="lift",
                                       template_text="", decimals=2, model="tiny", batch_size=8)
    assert message.startswith("⚠️ Load a table in the Data tab first") and started_config is None
    assert unasked_estimate(page, started_config) == gr.skip()  # the estimate line does not repeat it


# ---------- the multi-GPU settings ----------

def train_tab_blocks(tmp_path, devices: int, monkeypatch) -> tuple[gr.Blocks, dict]:
    """The app built as on a machine with `devices` CUDA devices, and its components by label."""
    from lift_ui import build_app

    monkeypatch.setattr(models, "cuda_device_count", lambda: devices)
    app = build_app(tmp_path / "runs", default_model="tiny", default_quant="none")
    by_label = {}
    for block in app.blocks.values():
        by_label.setdefault(getattr(block, "label", None), []).append(block)
    return app, by_label


def test_with_two_gpus_the_train_tab_offers_the_number_of_processes_and_starts_with_it(tmp_path, monkeypatch):
    app, by_label = train_tab_blocks(tmp_path, 2, monkeypatch)
    (gpus,) = by_label[SETTINGS["num_processes"].metadata["label"]]
    assert isinstance(gpus, gr.Number) and gpus.value == 2 and (gpus.minimum, gpus.maximum) == (1, 2)
    assert gpus.info == SETTINGS["num_processes"].metadata["help"]
    # Start, the command, the duration and the memory line take it, by its TrainConfig name.
    for api_name in ("start", "show_command", "estimate", "memory"):
        dependency = next(fn for fn in app.fns.values() if fn.api_name == api_name)
        assert gpus._id in {block._id for block in dependency.inputs}, api_name


@pytest.mark.parametrize("devices", [0, 1])
def test_with_one_gpu_or_none_there_are_no_multi_gpu_controls(tmp_path, monkeypatch, devices):
    _, by_label = train_tab_blocks(tmp_path, devices, monkeypatch)
    assert SETTINGS["num_processes"].metadata["label"] not in by_label


def test_make_config_passes_the_gpu_settings_on():
    config = make_config("t.csv", "y", [], "auto", "lift", "", 2, "tiny", num_processes=2.0)
    assert config.num_processes == 2


# ---------- the majority-class warning ----------

def test_a_completed_run_no_better_than_the_commonest_class_is_flagged(tmp_path):
    run = create_run(tmp_path / "run", {"model": "tiny"})
    put_in_state(run, "completed")
    (run.path / "eval.json").write_text(json.dumps(GUESSING))
    message = state_message(run, run.status(), has_metrics=True)
    assert "completed" in message and "\n\n⚠️ " in message and "most common class" in message

    (run.path / "eval.json").write_text(json.dumps({**GUESSING, "accuracy": 0.9}))
    assert "⚠️" not in state_message(run, run.status(), has_metrics=True)


def test_the_evaluate_tab_shows_the_majority_warning(tmp_path):
    run = create_run(tmp_path / "run", {"model": "tiny"})
    put_in_state(run, "completed")
    run.adapter_dir.mkdir()
    (run.path / "dataset.json").write_text(json.dumps({"task": "classification", "target": "y", "classes": ["a", "b"], "features": ["x"],
                                                        "n_dropped": 0, "n_train": 4, "n_val": 0, "n_test": 4}))
    (run.path / "eval.json").write_text(json.dumps(GUESSING))
    pd.DataFrame({"x": [1, 2, 3, 4], "y_true": ["a", "a", "b", "b"], "y_pred": ["a"] * 4}).to_csv(
        (run.path / "predictions.csv"), index=False)
    *_, message = evaluate(SimpleNamespace(access=lambda request: RunAccess(tmp_path)), run.name, None)
    assert message.startswith(f"Test results of **{run.name}**")
    assert "\n\n⚠️ " in message and "most common class" in message
