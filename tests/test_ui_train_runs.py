"""The Train and Runs tabs through the web API (gradio_client), plus their figures and the runner on their own."""

import json
import re
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from lift_core.errors import LiftError
from lift_core.presets import PRESET_FIELDS
from lift_core.runs import Run, create_run
from lift_core.training import TrainConfig
from lift_ui import runner as runner_module
from lift_ui.figures.training import loss_curve, overlay
from lift_ui.runner import TrainingRunner
from lift_ui.tabs.train_tab import failure_message

POLL_TIMEOUT_S = 60
TINY = {"target": "y", "model": "tiny", "quant": "none", "lr": 0.005}


# ---------- figures ----------

def test_loss_curve_keeps_zero_losses_and_lifts_them_to_a_floor_on_a_log_axis():
    rows = [{"step": 1, "loss": 2.0}, {"step": 5, "loss": 0.0}, {"step": 5, "eval_loss": 1.0},
            {"step": 10, "loss": 0.5}, {"step": 10, "train_runtime": 3.0}]
    linear = loss_curve(rows)
    train, evaluation = linear.data
    assert list(train.x) == [1, 5, 10] and list(train.y) == [2.0, 0.0, 0.5]
    assert list(evaluation.x) == [5] and list(evaluation.y) == [1.0]

    logarithmic = loss_curve(rows, log_y=True).data[0]
    assert loss_curve(rows, log_y=True).layout.yaxis.type == "log"
    assert logarithmic.y[1] == pytest.approx(0.05)  # a decade below the smallest positive loss
    assert list(logarithmic.customdata) == [2.0, 0.0, 0.5]  # hover still tells the true value


def test_smoothing_is_an_ema_of_the_train_loss_shown_over_the_raw_curve():
    rows = [{"step": step, "loss": loss, "eval_loss": loss} for step, loss in ((1, 4.0), (2, 0.0), (3, 2.0))]
    raw, smoothed, evaluation = loss_curve(rows, smoothing=0.5).data
    assert list(raw.y) == [4.0, 0.0, 2.0]
    assert list(smoothed.y) == [4.0, 2.0, 2.0]
    assert list(evaluation.y) == [4.0, 0.0, 2.0]  # one point per evaluation of the whole validation set


def test_overlay_gives_each_run_its_own_colour():
    rows = [{"step": 1, "loss": 1.0}, {"step": 2, "eval_loss": 0.8}]
    figure = overlay({"a": rows, "b": rows[:1]})
    assert [trace.name for trace in figure.data] == ["a: train loss", "a: eval loss", "b: train loss"]
    assert figure.data[0].line.color == figure.data[1].line.color != figure.data[2].line.color


def test_failure_message_shows_exit_code_log_and_an_out_of_memory_hint(tmp_path):
    run = create_run(tmp_path / "run", {"model": "tiny"})
    run.file("log.txt").write_text("loading\nRuntimeError: CUDA out of memory. Tried to allocate 2 GiB\n")
    run.set_status("failed", error="RuntimeError: CUDA out of memory.", exit_code=1)
    message = failure_message(run, run.status())
    assert "exit code 1" in message and "Tried to allocate" in message and "smaller batch size" in message

    run.file("log.txt").write_text("error: the target column 'z' does not exist\n")
    run.set_status("failed", error="the target column 'z' does not exist", exit_code=2)
    assert "batch size" not in failure_message(run, run.status())


# ---------- the runner ----------

def test_runner_refuses_a_second_start_and_a_new_runner_reattaches(tmp_path, monkeypatch):
    table = tmp_path / "table.csv"
    pd.DataFrame({"x": range(20), "y": ["a", "b"] * 10}).to_csv(table, index=False)
    # A stand-in for the training process: the runner only cares that it lives.
    monkeypatch.setattr(runner_module, "train_command",
                        lambda config, out: [sys.executable, "-c", "import time; time.sleep(60)"])
    runner = TrainingRunner(tmp_path / "runs")
    config = TrainConfig(data=str(table), target="y", model="tiny")
    run = runner.start(config)
    with pytest.raises(LiftError, match="busy"):
        runner.start(config)

    reopened = TrainingRunner(tmp_path / "runs")  # as after a server restart
    assert reopened.active_run().path == run.path
    assert reopened.latest_run().path == run.path
    with pytest.raises(LiftError, match="busy"):
        reopened.start(config)

    stopping, outcome = runner.stop()
    assert stopping.path == run.path and outcome == "requested"  # the stand-in ignores the request
    assert runner.stop()[1] == "waiting"  # a double click does not kill
    assert runner.active_run() is not None
    monkeypatch.setattr(runner_module, "FORCE_AFTER_S", 0)
    assert runner.stop()[1] == "killed"
    deadline = time.time() + 10
    while run.status()["state"] != "failed" and time.time() < deadline:
        time.sleep(0.1)
    assert runner.active_run() is None
    assert run.status()["error"].startswith("Stopped by force")
    assert run.config()["model"] == "tiny"  # recorded by the runner, so the failed run is listed


def test_runner_reports_bad_data_or_template_before_making_a_run_folder(tmp_path):
    table = tmp_path / "table.csv"
    pd.DataFrame({"x": range(20), "y": [0, 1] * 10}).to_csv(table, index=False)
    runner = TrainingRunner(tmp_path / "runs")
    with pytest.raises(LiftError, match="missing"):
        runner.start(TrainConfig(data=str(table), target="missing", model="tiny"))
    with pytest.raises(LiftError, match="unknown column"):
        runner.start(TrainConfig(data=str(table), target="y", model="tiny", template="custom", template_text="{z}"))
    assert list((tmp_path / "runs").iterdir()) == []


# ---------- the web app ----------

def figure_points(plot: dict) -> int:
    return sum(len(trace.get("y") or []) for trace in json.loads(plot["plot"])["data"])


def poll_status(client, done, timeout=POLL_TIMEOUT_S):
    """Call /status (as the page's timer does) until done(plot, progress, log, state) or the timeout."""
    deadline = time.time() + timeout
    while True:
        plot, progress, log, state, _ = client.predict(False, 0, api_name="/status")
        if done(plot, progress, log, state) or time.time() > deadline:
            return plot, progress, log, state
        time.sleep(0.5)


def newest_run(app_server) -> Run:
    folders = [path for path in Path(app_server["runs_dir"]).iterdir() if (path / "launcher.json").exists()]
    return Run(max(folders, key=lambda path: (path / "launcher.json").stat().st_mtime))


@pytest.fixture(scope="module")
def runs(client, app_server):
    """Names of the runs the web tests make, by what they ended as."""
    client.predict("blobs", 100, 0.1, 0, 1, api_name="/synth")
    return {}


def test_start_without_data_says_so(app_server):
    from gradio_client import Client

    fresh = Client(app_server["url"], verbose=False)  # a new session: nothing loaded in its Data tab
    message = fresh.predict(**{**TINY, "target": None}, api_name="/start")
    assert "No data loaded" in message
    assert not any(Path(app_server["runs_dir"]).glob("*/launcher.json"))


def test_show_command_reproduces_the_settings(client, runs):
    command, message = client.predict(**TINY, max_steps=30, api_name="/show_command")
    assert message == ""
    assert command.startswith("python -m lift_core train --data ")
    assert "--model tiny" in command and "--max-steps 30" in command and "--target y" in command


def test_presets_fill_the_settings_and_estimate_gives_the_steps(client, runs):
    paper = dict(zip(PRESET_FIELDS, client.predict("Paper", api_name="/preset")))
    assert paper["lr"] == 1e-4 and paper["lora_r"] == 16 and paper["max_steps"] == 0
    # No run of the tiny model here yet: a rough guess on a CPU, "unknown" on a GPU.
    assert client.predict(**TINY, max_steps=30, api_name="/estimate").startswith("Estimated: 30 steps")


def test_a_tiny_run_trains_to_completion_with_a_live_loss_curve(client, runs, app_server):
    message = client.predict(**TINY, max_steps=30, logging_steps=5, api_name="/start")
    assert re.fullmatch(r"Started run `\S+`\.", message)  # at once: the estimate follows in its own line
    plot, progress, log, state = poll_status(client, lambda plot, progress, log, state: "completed" in state)
    assert "completed" in state and "accuracy" in state
    assert figure_points(plot) >= 7  # steps 1, 5, ..., 30
    assert "step 30/30" in progress
    assert "step 30/30" in log
    runs["completed"] = newest_run(app_server).name
    # The next estimate is measured on this run.
    assert runs["completed"] in client.predict(**TINY, max_steps=30, api_name="/estimate")


def test_one_training_at_a_time_and_stop_keeps_the_adapter(client, runs, app_server):
    assert client.predict(**TINY, max_steps=100_000, api_name="/start").startswith("Started run")
    assert "busy" in client.predict(**TINY, max_steps=30, api_name="/start")
    poll_status(client, lambda plot, progress, log, state: figure_points(plot) > 0)
    active = newest_run(app_server)

    client.predict(None, [], api_name="/runs")
    refused = client.predict(active.name, True, [], api_name="/delete_run")[0]
    assert "stop it" in refused and active.path.is_dir()

    assert "Stopping run" in client.predict(api_name="/stop")
    plot, progress, log, state = poll_status(client, lambda plot, progress, log, state: "stopped" in state)
    assert "stopped" in state
    assert (active.adapter_dir / "adapter_config.json").exists()
    assert "No training is running" in client.predict(api_name="/stop")
    runs["stopped"] = active.name


def test_a_missing_model_folder_is_refused_before_a_run_starts(client, app_server):
    before = {path.name for path in app_server["runs_dir"].iterdir()}
    message = client.predict(**{**TINY, "model": "/no/such/model"}, max_steps=5, api_name="/start")
    assert message.startswith("⚠️") and "/no/such/model" in message and "does not exist" in message
    assert {path.name for path in app_server["runs_dir"].iterdir()} == before


def test_a_failed_run_shows_its_exit_code_and_log(client, runs, app_server):
    # A hub id passes the checks at Start, then cannot be loaded: the hub is offline in tests.
    message = client.predict(**{**TINY, "model": "no-such-org/no-such-model"}, max_steps=5, api_name="/start")
    assert message.startswith("Started run")
    # The runner records the exit code a moment after the run itself says it failed.
    plot, progress, log, state = poll_status(client, lambda plot, progress, log, state: "exit code" in state)
    assert "failed" in state and "exit code 2" in state and "no-such-org/no-such-model" in state
    runs["failed"] = newest_run(app_server).name


def test_runs_lists_every_run(client, runs):
    table, selected, compared = client.predict(None, [], api_name="/runs")
    states = dict((row[0], row[1]) for row in table["data"])
    assert states == {name: state for state, name in runs.items()}
    assert selected["value"] == table["data"][0][0]  # the newest run is opened
    assert sorted(name for name, _ in selected["choices"]) == sorted(runs.values())


def test_run_details_show_curve_config_and_metrics(client, runs):
    plot, overview, evaluation, config = client.predict(runs["completed"], False, api_name="/run_details")
    assert figure_points(plot) >= 7
    assert "completed" in overview
    assert 0 <= evaluation["accuracy"] <= 1
    assert json.loads(config)["model"] == "tiny"
    with pytest.raises(Exception, match="not in the list of choices"):  # nothing outside the runs folder
        client.predict("../outside", False, api_name="/run_details")


def test_overlay_draws_every_selected_run(client, runs):
    plot = client.predict([runs["completed"], runs["stopped"]], True, api_name="/overlay")
    names = {trace["name"] for trace in json.loads(plot["plot"])["data"]}
    assert f"{runs['completed']}: train loss" in names and f"{runs['stopped']}: train loss" in names


def test_download_adapter_is_a_zip_of_the_adapter(client, runs):
    path, message = client.predict(runs["completed"], api_name="/download_adapter")
    assert message == ""
    assert "adapter_config.json" in zipfile.ZipFile(path).namelist()
    path, message = client.predict(runs["failed"], api_name="/download_adapter")
    assert path is None and "no adapter" in message


def test_delete_run_needs_confirmation(client, runs, app_server):
    folder = Path(app_server["runs_dir"]) / runs["failed"]
    message, *_ = client.predict(runs["failed"], False, [], api_name="/delete_run")
    assert "confirm" in message and folder.is_dir()
    message, confirm, table, selected, compared = client.predict(runs["failed"], True, [], api_name="/delete_run")
    assert "Deleted" in message and confirm is False
    assert not folder.exists()
    assert runs["failed"] not in [row[0] for row in table["data"]]
