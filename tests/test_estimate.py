"""The first duration estimate of a model never run here: timed by a short calibration run, then cached."""

import sys
import time

import pandas as pd
import pytest

from lift_core import calibration
from lift_core.calibration import CALIBRATION_STEPS, CALIBRATION_TRAIN_ROWS, run_speed, trial_config
from lift_core.config import TrainConfig
from lift_core.data import load_splits
from lift_core.errors import LiftError
from lift_core.estimate import estimate_duration
from lift_core.launcher import TrainingLauncher
from lift_core.runs import Run, create_run

from helpers import ONE_THREAD_ENV, put_in_state, two_gaussians, write_table


@pytest.fixture
def speeds_file(monkeypatch, tmp_path):
    """A machine where no model was timed yet."""
    path = tmp_path / "speeds.json"
    monkeypatch.setattr(calibration, "speeds_path", lambda: path)
    return path


def clustered_classes(tmp_path) -> TrainConfig:
    """Five classes of 40 rows each, sorted by class: the first rows of the table hold one class only."""
    frame = pd.DataFrame({"x1": range(200), "x2": [value % 7 for value in range(200)],
                          "y": [f"class{index // 40}" for index in range(200)]})
    return TrainConfig(data=write_table(frame, tmp_path / "table.csv"), target="y", model="tiny", quant="none",
                       lora_layers=2)


def test_the_calibration_trains_every_layer_on_a_few_rows_of_every_class_for_a_few_steps(tmp_path):
    config = clustered_classes(tmp_path)
    dataset, splits = load_splits(config)
    trial = trial_config(config, dataset, splits, tmp_path)
    train, test = pd.read_csv(trial.data), pd.read_csv(trial.test_data)
    assert len(train) == CALIBRATION_TRAIN_ROWS and set(train["y"]) == set(dataset.classes)
    assert set(test["y"]) <= set(train["y"]) and len(test) > 0
    assert (trial.max_steps, trial.epochs, trial.lora_layers) == (CALIBRATION_STEPS, 0.0, 0)
    assert (trial.evaluations, trial.stop_when_perfect, trial.task) == (1, 0, "classification")
    assert (trial.model, trial.template, trial.batch_size) == (config.model, config.template, config.batch_size)


def test_a_calibration_that_fails_says_why(tmp_path, monkeypatch, speeds_file):
    config = clustered_classes(tmp_path)
    fails = [sys.executable, "-c", "print('the model could not be loaded'); raise SystemExit(3)"]
    monkeypatch.setattr(calibration, "training_command", lambda *args: fails)
    with pytest.raises(LiftError, match="Could not time a few training steps of tiny: the model could not be loaded"):
        estimate_duration(config, tmp_path / "runs", calibrate=True)
    assert not speeds_file.exists()


def test_a_finished_runs_overhead_is_its_time_outside_training_and_evaluation(tmp_path):
    run = create_run(tmp_path / "run", {"data": "t.csv", "target": "y", "model": "tiny"})
    put_in_state(run, "completed")
    run.record_launch({"pid": 1, "pid_start": 1})
    launched = run.launch_record()["launched"]
    run.record(finished=launched + 30.0)
    run.append_metrics({"step": 10, "elapsed_s": 20.0, "tokens_per_s": 500.0})
    run.save_evaluation({"n_test": 40, "eval_seconds": 4.0}, pd.DataFrame({"y_true": [], "y_pred": []}))
    speed = run_speed(Run(run.path))
    assert speed.tokens_per_s == 500.0 and speed.eval_rows_per_s == 10.0
    assert speed.overhead_s == pytest.approx(30.0 - 20.0 - 4.0)


@pytest.mark.slow
def test_the_first_estimate_of_a_tiny_run_is_within_twice_its_real_duration(tmp_path, monkeypatch, speeds_file):
    for name, value in ONE_THREAD_ENV.items():
        monkeypatch.setenv(name, value)
    # Noisy classes, so that no validation is perfect and the run trains its whole budget (the default settings).
    table = two_gaussians(n=300, std=2.5)
    config = TrainConfig(data=write_table(table, tmp_path / "data.csv"), target="y", model="tiny", quant="none",
                         stop_when_perfect=0)
    launcher = TrainingLauncher(tmp_path / "runs")

    first = launcher.estimate(config, calibrate=True)
    assert first.source.startswith("timed:") and speeds_file.exists()
    started = time.time()
    run = launcher.start(config)
    while launcher.active_run() is not None or launcher.finishing(run):
        time.sleep(0.2)
    real = time.time() - started
    assert run.status()["state"] == "completed"
    assert real / 2 <= first.seconds <= 2 * real, (first.summary(), real)

    # Timed once: later estimates read the finished run, or the cached timing without running anything.
    monkeypatch.setattr(calibration.subprocess, "run", None)
    assert launcher.estimate(config, calibrate=True).source.startswith("measured:")
    assert estimate_duration(config, tmp_path / "no-runs", calibrate=True).source == first.source
