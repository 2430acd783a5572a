"""The Train tab's decision-loss and validation curves, presets and warm-up, its multi-GPU controls, and the
majority-class warning in the Train and Evaluate tabs; all without a server or a model."""

import json
from types import SimpleNamespace

import gradio as gr
import pandas as pd
import pytest

from lift_core import models
from lift_core.config import SETTINGS
from lift_core.errors import LiftError
from lift_core.presets import PRESET_FIELDS
from lift_core.runs import create_run

from helpers import put_in_state
from lift_ui.figures.training import loss_curve, overlay
from lift_ui.tabs.evaluate_tab import evaluate
from lift_ui.tabs.train_tab import make_config, preset_values, state_message

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


def test_the_overlay_tells_series_apart_by_dash_and_regression_scores_by_name():
    regression = [{"step": 1, "loss": 1.0, "decision_loss": 2.0}, {"step": 1, "eval_loss": 1.0, "val_rae": 1.4}]
    figure = overlay({"a": ROWS, "b": regression})
    traces = traces_by_name(figure)
    assert "a: val accuracy" in traces and "b: val RAE" in traces and "b: train decision loss" in traces
    dashes = [traces[f"a: {name}"].line.dash for name in ("train loss", "eval loss", "train decision loss",
                                                          "eval decision loss", "val accuracy")]
    assert len(set(dashes)) == len(dashes)
    assert figure.layout.yaxis2.title.text == "validation score"  # accuracy and RAE share the axis
    assert figure.layout.yaxis2.range is None


# ---------- settings ----------

def test_preset_values_follow_the_preset_fields():
    values = dict(zip(PRESET_FIELDS, preset_values("Paper")))
    assert values["lr"] == 1e-4 and values["lora_r"] == 16 and values["warmup"] == 0.002 and values["max_steps"] == 0


def test_make_config_takes_the_warm_up_share():
    config = make_config("table.csv", "y", [], "auto", "lift", "", 2, "tiny", warmup="0.1", epochs=3)
    assert config.warmup == 0.1 and config.epochs == 3.0


def test_make_config_without_a_table_when_none_is_required():
    config = make_config(None, None, [], "auto", "lift", "", 2, "tiny", table_required=False, batch_size=8)
    assert config.data == "" and config.target == "" and config.batch_size == 8
    with pytest.raises(LiftError, match="No data loaded"):
        make_config(None, None, [], "auto", "lift", "", 2, "tiny", batch_size=8)


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
    *_, message = evaluate(SimpleNamespace(runs_dir=tmp_path), run.name)
    assert message.startswith(f"Test results of **{run.name}**")
    assert "\n\n⚠️ " in message and "most common class" in message
