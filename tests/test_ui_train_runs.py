"""The Train and Runs tabs through the web API (gradio_client), plus their figures and the launcher on their own."""

import json
import os
import re
import subprocess
import sys
import time
import zipfile
from dataclasses import asdict
from pathlib import Path

import gradio as gr
import pandas as pd
import pytest
from helpers import REPO_ROOT, figure_points, new_client, plotly_json, wait_for, write_table

from lift_core import launcher as launcher_module
from lift_core.config import TrainConfig
from lift_core.errors import LiftError
from lift_core.launcher import TrainingLauncher
from lift_core.presets import PRESET_FIELDS
from lift_core.files import read_json
from lift_core.processes import process_identity, process_start
from lift_core.runs import Run, create_run
from lift_ui.common import rounded
from lift_ui.figures.training import loss_curve
from lift_ui.tabs.train_tab import NO_RUN, failure_message

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


def test_failure_message_shows_exit_code_log_and_an_out_of_memory_hint(tmp_path):
    run = create_run(tmp_path / "run", {"model": "tiny"})
    (run.path / "log.txt").write_text("loading\nRuntimeError: CUDA out of memory. Tried to allocate 2 GiB\n")
    run.fail("RuntimeError: CUDA out of memory.", exit_code=1)
    message = failure_message(run, run.status())
    assert "exit code 1" in message and "Tried to allocate" in message and "smaller batch size" in message

    (run.path / "log.txt").write_text("error: the target column 'z' does not exist\n")
    run.fail("the target column 'z' does not exist", exit_code=2)
    assert "batch size" not in failure_message(run, run.status())


# ---------- the launcher ----------

def test_launcher_refuses_a_second_start_and_a_new_launcher_reattaches(tmp_path, monkeypatch):
    table = write_table(pd.DataFrame({"x": range(20), "y": ["a", "b"] * 10}), tmp_path / "table.csv")
    # A stand-in for the training process: the launcher only cares that it lives.
    monkeypatch.setattr(launcher_module, "training_command",
                        lambda config, out, settings: [sys.executable, "-c", "import time; time.sleep(60)"])
    launcher = TrainingLauncher(tmp_path / "runs")
    config = TrainConfig(data=table, target="y", model="tiny")
    run = launcher.start(config)
    with pytest.raises(LiftError, match="busy"):
        launcher.start(config)

    reopened = TrainingLauncher(tmp_path / "runs")  # as after a server restart
    assert reopened.active_run().path == run.path
    with pytest.raises(LiftError, match="busy"):
        reopened.start(config)

    stopping, outcome = launcher.stop()
    assert stopping.path == run.path and outcome == "requested"  # the stand-in ignores the request
    assert launcher.stop()[1] == "waiting"  # a double click does not kill
    assert launcher.active_run() is not None
    monkeypatch.setattr(launcher_module, "FORCE_AFTER_S", 0)
    assert launcher.stop()[1] == "killed"
    wait_for(lambda: run.status()["state"], lambda state: state == "failed", timeout=10,
             what="the killed run to be marked failed", interval=0.1)
    assert launcher.active_run() is None
    assert run.status()["error"].startswith("Stopped by force")
    assert run.config().model == "tiny"  # recorded by the launcher, so the failed run is listed


def test_launcher_hands_the_settings_over_as_a_file_so_odd_column_names_survive(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    frame = pd.DataFrame({"income, net": [float(i % 7) for i in range(40)], " spaced": range(40),
                          "-y": ["a", "b"] * 20})
    table = write_table(frame, tmp_path / "odd names.csv")
    config = TrainConfig(data=table, target="-y", features=["income, net", " spaced"], model="tiny", quant="none",
                         epochs=0, max_steps=2, template="custom", template_text="{income, net} --and {{ {-y}?",
                         task="classification")
    with pytest.raises(LiftError):  # the template names the target, which is not a feature
        TrainingLauncher(tmp_path / "runs").start(config)
    config.template_text = "{income, net} --and {{ { spaced}"
    run = TrainingLauncher(tmp_path / "runs").start(config)
    state = wait_for(lambda: run.status()["state"], lambda state: state not in ("queued", "running"), timeout=240,
                     what="the run to end", interval=0.5)
    assert state == "completed", run.log_tail(20)
    assert run.config().features == ["income, net", " spaced"] and run.config().target == "-y"
    assert run.config().template_text == config.template_text
    assert "--config" in run.log_tail(200).splitlines()[0]


def test_a_killed_training_process_is_reported_by_its_signal_with_the_log_beside_it(tmp_path, monkeypatch):
    table = write_table(pd.DataFrame({"x": range(20), "y": ["a", "b"] * 10}), tmp_path / "table.csv")
    dies = "import os, signal; print('loading the model', flush=True); os.kill(os.getpid(), signal.SIGKILL)"
    monkeypatch.setattr(launcher_module, "training_command", lambda config, out, settings: [sys.executable, "-c", dies])
    run = TrainingLauncher(tmp_path / "runs").start(TrainConfig(data=table, target="y", model="tiny"))
    status = wait_for(run.status, lambda status: status["state"] == "failed", timeout=30, what="the run to fail")
    assert status["error"] == "The training process was killed (signal 9, SIGKILL)." and status["exit_code"] == -9
    message = failure_message(run, status)
    assert "loading the model" in message and "out of memory" in message  # a SIGKILL nobody asked for: likely OOM


def test_a_run_whose_pid_now_belongs_to_another_process_is_interrupted_and_blocks_nothing(tmp_path):
    stale = create_run(tmp_path / "runs" / "stale", {"model": "tiny"})
    # This test's own pid, as if reused after a restart: alive, but started at another time than recorded.
    stale.start({"pid": os.getpid(), "pid_start": process_start(os.getpid()) + 1})
    assert stale.status()["state"] == "running"  # reading never writes
    assert stale.reconcile()["state"] == "interrupted"
    assert read_json(stale.path / "status.json")["state"] == "interrupted"  # written back to disk
    launcher = TrainingLauncher(tmp_path / "runs")
    assert launcher.active_run() is None and launcher.stop() is None  # not busy, and nothing to kill
    live = create_run(tmp_path / "runs" / "live", {"model": "tiny"})
    live.start(process_identity(os.getpid()))
    assert live.reconcile()["state"] == "running" and launcher.active_run().name == "live"


def test_launcher_reports_bad_data_or_template_before_making_a_run_folder(tmp_path):
    table = write_table(pd.DataFrame({"x": range(20), "y": [0, 1] * 10}), tmp_path / "table.csv")
    launcher = TrainingLauncher(tmp_path / "runs")
    with pytest.raises(LiftError, match="missing"):
        launcher.start(TrainConfig(data=table, target="missing", model="tiny"))
    with pytest.raises(LiftError, match="unknown column"):
        launcher.start(TrainConfig(data=table, target="y", model="tiny", template="custom", template_text="{z}"))
    assert list((tmp_path / "runs").iterdir()) == []


# ---------- the web app ----------
# Every run a test needs comes from a module-scoped fixture that makes it on first use, so any test passes alone or
# in any order; tests that only look share the runs, a test that deletes a run makes its own.

def poll_status(client, done, what, timeout=POLL_TIMEOUT_S):
    """Calls /status (as the page's timer does) until done(plot, progress, log, state); returns those four."""
    return wait_for(lambda: tuple(client.predict(False, 0, api_name="/status")[:4]), lambda outputs: done(*outputs),
                    timeout=timeout, what=what, interval=0.5)


def started_run(message: str) -> str:
    """The name of the run that Start's message announces."""
    match = re.match(r"Started run `(\S+)`\.", message)
    assert match, message
    return match.group(1)


def buttons(app_server, run_name: str) -> tuple[bool, bool, bool, str]:
    """Whether Start, Stop and Resume are enabled, and Stop's variant, as the /status endpoint sets them for a page
    that follows the named run. (A gradio_client session never sees buttons, so the endpoint's function is called
    as the server would.)"""
    dependency = next(fn for fn in app_server["app"].fns.values() if fn.api_name == "status")
    outputs = dependency.fn(str(app_server["runs_dir"] / run_name), False, 0, None)
    by_label = {block.value: output for block, output in zip(dependency.outputs, outputs)
                if isinstance(block, gr.Button)}
    start_button, stop_button, resume_button = (by_label[label] for label in ("Start training", "Stop", "Resume"))
    return start_button.interactive, stop_button.interactive, resume_button.interactive, stop_button.variant


def run_folders(app_server) -> set[str]:
    return {path.name for path in Path(app_server["runs_dir"]).iterdir()}


def open_runs_tab(client):
    """/runs, as opening the Runs tab does: the table, and the run choices of the client's session refreshed."""
    return client.predict(None, [], api_name="/runs")


@pytest.fixture(scope="module")
def loaded(client):
    """The module's client, with a synthetic table loaded in its Data tab."""
    client.predict("blobs", 100, 0.1, 0, 1, api_name="/synth")
    return client


@pytest.fixture(scope="module")
def completed_run(loaded, app_server):
    """A 30-step tiny run trained to the end: its name, Start's message, the last /status outputs, the estimate
    asked for right after it, and what a fresh page shows then."""
    message = loaded.predict(**TINY, max_steps=30, logging_steps=5, api_name="/start")
    status = poll_status(loaded, lambda plot, progress, log, state: "completed" in state, "the run to complete")
    estimate = loaded.predict(**TINY, max_steps=30, api_name="/estimate")
    fresh_page = new_client(app_server["url"]).predict(False, 0, api_name="/status")[:4]
    return {"name": started_run(message), "message": message, "status": status, "estimate": estimate,
            "fresh_page": fresh_page, "buttons": buttons(app_server, started_run(message))}


@pytest.fixture(scope="module")
def stopped_run(loaded, app_server):
    """A long tiny run stopped once its loss curve shows, and what the app answered on the way: a second Start,
    what a fresh page shows of it, its buttons, deleting the running run, Stop, and Stop once more after the run
    stopped."""
    seen = {"message": loaded.predict(**TINY, max_steps=100_000, api_name="/start")}
    seen["name"] = started_run(seen["message"])
    try:
        seen["second_start"] = loaded.predict(**TINY, max_steps=30, api_name="/start")
        poll_status(loaded, lambda plot, progress, log, state: figure_points(plot) > 0, "the first loss points")
        seen["fresh_page"] = new_client(app_server["url"]).predict(False, 0, api_name="/status")[:4]
        seen["buttons_running"] = buttons(app_server, seen["name"])
        open_runs_tab(loaded)
        seen["delete"] = loaded.predict(seen["name"], True, [], api_name="/delete_run")[0]
        seen["kept_while_running"] = (app_server["runs_dir"] / seen["name"]).is_dir()
        seen["stop"] = loaded.predict(api_name="/stop")
        seen["status"] = poll_status(loaded, lambda plot, progress, log, state: "stopped" in state, "the run to stop")
        seen["stop_again"] = loaded.predict(api_name="/stop")
        seen["buttons_stopped"] = buttons(app_server, seen["name"])
    finally:
        launcher = TrainingLauncher(app_server["runs_dir"])
        if launcher.active_run() is not None:  # something above failed: leave no training behind
            launcher.stop()
    return seen


@pytest.fixture(scope="module")
def failed_run(loaded):
    """A run of a hub id: it passes the checks at Start, then cannot be loaded (the hub is offline in tests)."""
    message = loaded.predict(**{**TINY, "model": "no-such-org/no-such-model"}, max_steps=5, api_name="/start")
    # The launcher records the exit code a moment after the run itself says it failed.
    status = poll_status(loaded, lambda plot, progress, log, state: "exit code" in state, "the exit code")
    return {"name": started_run(message), "message": message, "status": status}


def test_start_without_data_says_so(app_server):
    before = run_folders(app_server)
    fresh = new_client(app_server["url"])  # a new session: nothing loaded in its Data tab
    message = fresh.predict(**{**TINY, "target": None}, api_name="/start")
    assert "Load a table in the Data tab first" in message
    assert run_folders(app_server) == before


def test_show_command_reproduces_the_settings(loaded):
    command, message = loaded.predict(**TINY, max_steps=30, api_name="/show_command")
    assert message == ""
    assert command.startswith("python -m lift_core train --data ")
    assert "--model tiny" in command and "--max-steps 30" in command and "--target y" in command


def test_presets_fill_the_settings_and_estimate_gives_the_steps(loaded, completed_run):
    paper = dict(zip(PRESET_FIELDS, loaded.predict("Paper", api_name="/preset")))
    assert paper["lr"] == 1e-4 and paper["lora_r"] == 16 and paper["max_steps"] == 0
    # Measured on the past run (so no timing here): always the steps.
    line, message = loaded.predict(**TINY, max_steps=30, api_name="/estimate")
    assert line.startswith("Estimated: 30 steps") and message == {"__type__": "update"}  # the message line untouched


def test_an_estimate_without_data_says_why_once_in_the_message_line(app_server):
    line, message = new_client(app_server["url"]).predict(**{**TINY, "target": None}, api_name="/estimate")
    assert line == "" and message.startswith("⚠️ Load a table in the Data tab first")


def test_a_tiny_run_trains_to_completion_with_a_live_loss_curve(completed_run):
    assert re.fullmatch(r"Started run `\S+`\.", completed_run["message"])  # at once: the estimate follows apart
    plot, progress, log, state = completed_run["status"]
    assert "completed" in state and "accuracy" in state and "History" not in state  # never resumed
    assert figure_points(plot) >= 7  # steps 1, 5, ..., 30
    assert "step 30/30" in progress
    assert "step 30/30" in log
    # The next estimate is measured on this run.
    assert completed_run["name"] in completed_run["estimate"][0]
    # Start is offered again, Stop is not, and a completed run is not resumed.
    assert completed_run["buttons"] == (True, False, False, "secondary")


def test_a_fresh_page_shows_no_earlier_finished_run(completed_run):
    plot, progress, log, state = completed_run["fresh_page"]
    assert state == NO_RUN and figure_points(plot) == 0 and progress == "" and log == ""


def test_a_fresh_page_follows_the_run_training_now_with_start_disabled_and_stop_enabled(stopped_run):
    plot, progress, log, state = stopped_run["fresh_page"]
    assert stopped_run["name"] in state and "training" in state and figure_points(plot) > 0
    assert stopped_run["buttons_running"] == (False, True, False, "stop")
    # Stopped: Start again, Stop greyed out, and Resume offered for the stopped run.
    assert stopped_run["buttons_stopped"] == (True, False, True, "secondary")


def test_one_training_at_a_time_and_stop_keeps_the_adapter(stopped_run, app_server):
    assert "busy" in stopped_run["second_start"]
    assert "stop it" in stopped_run["delete"] and stopped_run["kept_while_running"]
    assert "Stopping run" in stopped_run["stop"]
    assert "stopped" in stopped_run["status"][3]
    assert (Run(app_server["runs_dir"] / stopped_run["name"]).adapter_dir / "adapter_config.json").exists()
    assert "No training is running" in stopped_run["stop_again"]


def test_a_missing_model_folder_is_refused_before_a_run_starts(loaded, app_server):
    before = run_folders(app_server)
    message = loaded.predict(**{**TINY, "model": "/no/such/model"}, max_steps=5, api_name="/start")
    assert message.startswith("⚠️") and "/no/such/model" in message and "does not exist" in message
    assert run_folders(app_server) == before


def test_a_failed_run_shows_its_exit_code_and_log(failed_run):
    plot, progress, log, state = failed_run["status"]
    assert "failed" in state and "exit code 2" in state and "no-such-org/no-such-model" in state


def test_runs_lists_every_run(client, completed_run, stopped_run, failed_run, app_server):
    table, selected, compared = open_runs_tab(client)
    states = {row[0]: row[1] for row in table["data"]}
    # Every run folder of the server, these three among them with how they ended.
    assert set(states) == {path.name for path in app_server["runs_dir"].iterdir() if (path / "config.json").exists()}
    assert [states[run["name"]] for run in (completed_run, stopped_run, failed_run)] == [
        "completed", "stopped", "failed"]
    assert selected["value"] == table["data"][0][0]  # the newest run is opened
    assert sorted(name for name, _ in selected["choices"]) == sorted(states)


def test_run_details_show_curve_config_and_metrics(client, completed_run, app_server):
    open_runs_tab(client)
    plot, overview, evaluation, config = client.predict(completed_run["name"], False, api_name="/run_details")
    assert figure_points(plot) >= 7
    assert "completed" in overview
    # The run's eval.json, whose accuracy is the share of right answers in its saved test predictions.
    run = Run(app_server["runs_dir"] / completed_run["name"])
    predictions = pd.read_csv((run.path / "predictions.csv"))
    assert evaluation == rounded(run.eval_results())  # rounded for the page only
    assert evaluation["accuracy"] == pytest.approx((predictions["y_pred"] == predictions["y_true"]).mean(), abs=1e-4)
    assert json.loads(config)["model"] == "tiny"
    with pytest.raises(Exception, match="not in the list of choices"):  # nothing outside the runs folder
        client.predict("../outside", False, api_name="/run_details")


def test_overlay_draws_every_selected_run(client, completed_run, stopped_run):
    open_runs_tab(client)
    plot = client.predict([completed_run["name"], stopped_run["name"]], True, "train loss", api_name="/overlay")
    names = {trace["name"] for trace in plotly_json(plot)["data"]}
    assert names == {completed_run["name"], stopped_run["name"]}  # one line per run


def test_download_adapter_is_a_zip_of_the_adapter(client, completed_run, failed_run):
    open_runs_tab(client)
    path, message = client.predict(completed_run["name"], api_name="/download_adapter")
    assert message == ""
    assert "adapter_config.json" in zipfile.ZipFile(path).namelist()
    path, message = client.predict(failed_run["name"], api_name="/download_adapter")
    assert path is None and "no adapter" in message


def test_delete_run_needs_confirmation(client, app_server):
    run = create_run(app_server["runs_dir"] / "to-delete", {"model": "tiny"})  # a run of this test's own
    run.fail("made up for this test")
    open_runs_tab(client)
    message, *_ = client.predict(run.name, False, [], api_name="/delete_run")
    assert "confirm" in message and run.path.is_dir()
    message, confirm, table, selected, compared = client.predict(run.name, True, [], api_name="/delete_run")
    assert "Deleted" in message and confirm is False
    assert not run.path.exists()
    assert run.name not in [row[0] for row in table["data"]]


# ---------- one launch at a time, across processes ----------

def tiny_config(folder, **settings) -> TrainConfig:
    table = write_table(pd.DataFrame({"x": range(40), "y": [0, 1] * 20}), folder / "table.csv")
    return TrainConfig(**{**TINY, "data": table, "max_steps": 5, **settings})


def test_a_launch_waits_while_another_app_process_holds_the_launch_lock(tmp_path):
    import fcntl
    import threading

    launcher = TrainingLauncher(tmp_path / "runs")
    launched = {}
    with open(tmp_path / "runs" / launcher_module.LAUNCH_LOCK_FILE, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as another server process would while it launches
        thread = threading.Thread(target=lambda: launched.update(run=launcher.start(tiny_config(tmp_path))))
        thread.start()
        thread.join(1.0)
        assert thread.is_alive() and not [path for path in (tmp_path / "runs").iterdir() if path.is_dir()]
    thread.join(60)
    run = launched["run"]
    wait_for(lambda: not launcher.finishing(run), timeout=120, what="the run's process to end")
    assert run.status()["state"] == "completed"


RACE = """
import sys, time
from lift_core.config import TrainConfig
from lift_core.errors import LiftError
from lift_core.launcher import TrainingLauncher
config = TrainConfig.from_dict({settings})
launcher = TrainingLauncher({runs!r})
time.sleep(max(0.0, {at} - time.time()))
try:
    print("started", launcher.start(config).name, flush=True)
except LiftError as error:
    print("refused", error, flush=True)
"""


@pytest.mark.slow  # two server processes and a training
def test_two_app_processes_on_one_runs_folder_start_one_training(tmp_path):
    runs = tmp_path / "runs"
    settings = asdict(tiny_config(tmp_path, max_steps=100_000))
    # Both processes call start at the same moment, once their imports are done.
    script = RACE.format(settings=settings, runs=str(runs), at=time.time() + 8)
    servers = [subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs = sorted(server.communicate(timeout=120)[0] for server in servers)
    launcher = TrainingLauncher(runs)
    try:
        assert [output.split()[0] for output in outputs] == ["refused", "started"], outputs
        assert "one training runs at a time" in outputs[0]
        assert len([path for path in runs.iterdir() if path.is_dir()]) == 1
    finally:
        if launcher.stop():
            wait_for(lambda: launcher.active_run() is None, timeout=120, what="the training to stop")


# ---------- resuming from the page ----------

@pytest.fixture(scope="module")
def resumed_run(loaded):
    """A 300-step tiny run stopped early, then resumed with the Train tab's Resume: what the page said on the way."""
    seen = {"message": loaded.predict(**TINY, max_steps=300, logging_steps=5, api_name="/start")}
    seen["name"] = started_run(seen["message"])
    poll_status(loaded, lambda plot, progress, log, state: figure_points(plot) > 0, "the first loss points")
    loaded.predict(api_name="/stop")
    seen["stopped"] = poll_status(loaded, lambda plot, progress, log, state: "stopped" in state, "the run to stop")
    seen["resume"] = loaded.predict(api_name="/resume")
    seen["second_resume"] = loaded.predict(api_name="/resume")
    seen["completed"] = poll_status(loaded, lambda plot, progress, log, state: "completed" in state,
                                    "the resumed run to complete", timeout=240)
    seen["resume_completed"] = loaded.predict(api_name="/resume")
    return seen


@pytest.mark.slow  # a 300-step training
def test_a_stopped_run_resumes_from_the_train_tab_to_its_last_step(resumed_run, app_server):
    offered = re.search(r"Resume\*\* continues it from step (\d+)", resumed_run["stopped"][3])
    assert offered, resumed_run["stopped"][3]
    assert resumed_run["resume"] == f"Resumed run `{resumed_run['name']}` from step {offered.group(1)}."
    # Refused: the run is already queued or running again (or, a moment later, the server is busy with it).
    assert re.search(r"is (queued|running): only an interrupted|busy training", resumed_run["second_resume"]), \
        resumed_run["second_resume"]
    plot, progress, log, state = resumed_run["completed"]
    assert "step 300/300" in progress and "accuracy" in state
    # Not only "completed": the page says the run was stopped and resumed on the way.
    assert state.endswith("History: queued → running → stopped → queued → running → completed")
    assert "is completed: only an interrupted, failed or stopped run can be resumed" in resumed_run["resume_completed"]
    run = Run(app_server["runs_dir"] / resumed_run["name"])
    steps = [row["step"] for row in run.metrics() if row.get("loss") is not None]
    assert steps == sorted(set(steps)) and steps[-1] == 300


def test_the_runs_tab_resumes_only_resumable_runs(client, completed_run, failed_run):
    open_runs_tab(client)
    message = client.predict(completed_run["name"], api_name="/resume_run")[0]
    assert message.startswith("⚠️") and "is completed" in message
