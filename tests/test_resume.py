"""Checkpoints and resuming: a stopped or killed training continues from its last checkpoint to the planned final
step, on the same data order, as if it had never been interrupted."""

import os
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest
from helpers import ONE_THREAD_ENV, REPO_ROOT, TINY_FAST, lift_cli, train_tiny, two_gaussians, wait_for, write_table

from lift_core import callbacks, training
from lift_core.errors import LiftError
from lift_core.files import read_json
from lift_core.runs import Run
from lift_core.training import resume_training

# 4 epochs of 11 batches: checkpoints at the ends of epochs 1 to 3 (steps 11, 22, 33), none at the last step.
EPOCHS = 4
TABLE_ROWS = 120
# What a resumed run's metrics must repeat exactly; timings differ.
LEARNED_KEYS = ("step", "total_steps", "loss", "decision_loss", "eval_loss", "val_accuracy", "learning_rate")


def learned(run: Run) -> list[tuple]:
    return [tuple(row.get(key) for key in LEARNED_KEYS) for row in run.metrics()]


def adapter_weights(run: Run) -> dict:
    from safetensors.torch import load_file

    return load_file(run.adapter_dir / "adapter_model.safetensors")


def stop_at_step(run: Run, step: int) -> threading.Thread:
    """Requests a stop once the run has logged `step` (it then stops at the end of a step soon after)."""
    def watch():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if any((row.get("step") or 0) >= step for row in run.metrics()):
                run.request_stop()
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, model_cache, one_torch_thread):
    return train_tiny(tmp_path_factory.mktemp("whole"), two_gaussians(TABLE_ROWS), epochs=EPOCHS)[1]


@pytest.fixture(scope="module")
def stopped_then_resumed(tmp_path_factory, model_cache, one_torch_thread):
    """A run stopped at step 15 or just after, then resumed: (run, the step it stopped at, its checkpoint then)."""
    folder = tmp_path_factory.mktemp("resumed")
    run = Run(folder / "run")
    stop_at_step(run, 15)
    train_tiny(folder, two_gaussians(TABLE_ROWS), epochs=EPOCHS)
    assert run.status()["state"] == "stopped"
    stopped_at, checkpoint = run.metrics()[-1]["step"], run.latest_checkpoint().name
    resume_training(run.path)
    return run, stopped_at, checkpoint


def test_checkpoints_are_kept_complete_and_only_the_latest(uninterrupted):
    folders = sorted((uninterrupted.path / "checkpoints").iterdir())
    # The last epoch's end is the final step: the adapter is saved then, not a checkpoint.
    assert [folder.name for folder in folders] == ["checkpoint-33"]
    state = read_json(folders[0] / "lift_state.json")
    assert state["step"] == 33 and state["elapsed_s"] > 0
    assert state["validator"]["best_step"] <= 33
    assert uninterrupted.latest_checkpoint() == folders[0]


def test_a_checkpoint_cut_off_before_its_state_file_is_not_resumed_from(uninterrupted, tmp_path):
    import shutil

    run = Run(tmp_path / "run")
    shutil.copytree(uninterrupted.path, run.path)
    (run.path / "checkpoints" / "checkpoint-40").mkdir()  # a later save that a kill interrupted
    assert run.latest_checkpoint().name == "checkpoint-33"
    (run.path / "checkpoints" / "checkpoint-33" / "lift_state.json").unlink()
    assert run.latest_checkpoint() is None
    run.record(trained=False)
    assert run.resume_point() == "from step 0 (no checkpoint was saved)"


def test_a_stop_saves_a_checkpoint_at_the_step_it_stopped(stopped_then_resumed, uninterrupted):
    run, stopped_at, checkpoint = stopped_then_resumed
    assert 15 <= stopped_at < 44 and checkpoint == f"checkpoint-{stopped_at}"
    status = run.status()
    assert status["state"] == "completed" and status["resumed"] >= status["created"] and status["error"] is None


def test_a_resumed_run_ends_exactly_as_an_uninterrupted_one(stopped_then_resumed, uninterrupted):
    run = stopped_then_resumed[0]
    # Same batches in the same order, the same optimizer, scheduler and random state: the same weights.
    whole, resumed = adapter_weights(uninterrupted), adapter_weights(run)
    assert whole.keys() == resumed.keys()
    for name in whole:
        assert (whole[name] - resumed[name]).abs().max().item() < 1e-6, name
    assert run.eval_results()["accuracy"] == uninterrupted.eval_results()["accuracy"]
    assert run.status()["best_step"] == uninterrupted.status()["best_step"]


def test_a_resumed_runs_metrics_continue_without_repeating_steps(stopped_then_resumed, uninterrupted):
    run = stopped_then_resumed[0]
    assert learned(run) == learned(uninterrupted)
    assert run.metrics()[-1]["step"] == 44
    train_steps = [row["step"] for row in run.metrics() if row.get("loss") is not None]
    assert train_steps == sorted(set(train_steps))
    # The clock continues too: elapsed time never goes back.
    elapsed = [row["elapsed_s"] for row in run.metrics()]
    assert elapsed == sorted(elapsed)


def test_only_interrupted_failed_or_stopped_runs_resume(uninterrupted, tmp_path):
    with pytest.raises(LiftError, match="is completed: only an interrupted, failed or stopped run"):
        resume_training(uninterrupted.path)
    with pytest.raises(LiftError, match="holds no run to resume"):
        resume_training(tmp_path)
    failed_early = Run(tmp_path / "early")
    failed_early.path.mkdir()
    (failed_early.path / "config.json").write_text("{}")
    (failed_early.path / "status.json").write_text('{"state": "failed", "error": "bad data"}')
    with pytest.raises(LiftError, match="ended before it saved its data splits"):
        resume_training(failed_early.path)


def test_resume_through_the_cli_takes_only_the_run_folder(uninterrupted):
    result = lift_cli("train", "--resume", uninterrupted.path, "--lr", "0.1")
    assert result.returncode == 2 and "give only the run folder" in result.stderr
    assert "Traceback" not in result.stderr
    result = lift_cli("train", "--resume", uninterrupted.path, "--out", "elsewhere")
    assert result.returncode == 2 and "not allowed with" in result.stderr


def test_the_schedule_asks_for_a_checkpoint_at_epoch_ends_after_a_while_and_on_a_stop():
    stop = SimpleNamespace(requested=False)
    schedule = callbacks.checkpoint_callback(stop, save_steps=0)
    state = SimpleNamespace(global_step=5, max_steps=10)

    def asks(event) -> bool:
        control = SimpleNamespace(should_save=False)
        getattr(schedule, event)(None, state, control)
        return control.should_save

    schedule.on_train_begin(None, state, None)
    assert not asks("on_step_end") and asks("on_epoch_end")
    schedule.last_save -= callbacks.CHECKPOINT_EVERY_S
    assert asks("on_step_end")
    schedule.on_save(None, state, None)
    assert not asks("on_step_end")
    stop.requested = True
    assert asks("on_step_end")
    state.global_step = 10  # the last step: the adapter, not a checkpoint
    assert not asks("on_step_end") and not asks("on_epoch_end")
    every_3 = callbacks.checkpoint_callback(SimpleNamespace(requested=False), save_steps=3)
    every_3.on_train_begin(None, state, None)
    state.global_step = 6
    control = SimpleNamespace(should_save=False)
    every_3.on_step_end(None, state, control)
    assert control.should_save


@pytest.mark.slow  # two training subprocesses
def test_a_killed_training_resumes_and_reaches_its_final_step(tmp_path, capsys):
    data = write_table(two_gaussians(200), tmp_path / "data.csv")
    run = Run(tmp_path / "run")
    settings = {**TINY_FAST, "epochs": 6}
    flags = [token for name, value in settings.items() for token in (f"--{name.replace('_', '-')}", str(value))]
    log = open(tmp_path / "log.txt", "w")
    process = subprocess.Popen([sys.executable, "-m", "lift_core", "train", "--data", data, "--target", "y", *flags,
                                "--out", str(run.path)], cwd=REPO_ROOT, env={**os.environ, **ONE_THREAD_ENV},
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        def past_a_checkpoint():
            checkpoint = run.latest_checkpoint()
            last = (run.metrics() or [{}])[-1].get("step") or 0
            return process.poll() is not None or (checkpoint is not None and last >= int(checkpoint.name[11:]) + 3)

        wait_for(past_a_checkpoint, timeout=240, what="training past its first checkpoint")
        assert process.poll() is None, (tmp_path / "log.txt").read_text()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    killed_at = run.metrics()[-1]["step"]
    checkpoint_step = read_json(run.latest_checkpoint() / "lift_state.json")["step"]
    planned = run.metrics()[-1]["total_steps"]
    assert not run.adapter_dir.exists()
    assert run.status()["state"] == "running"  # reading never writes
    assert run.reconcile()["state"] == "interrupted"
    assert read_json(run.path / "status.json")["state"] == "interrupted"  # written back

    result = lift_cli("train", "--resume", run.path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"from step {checkpoint_step}" in result.stdout
    assert run.status()["state"] == "completed" and run.status()["error"] is None
    assert run.metrics()[-1]["step"] == planned
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()
    assert run.eval_results()["accuracy"] >= 0.9
    train_steps = [row["step"] for row in run.metrics() if row.get("loss") is not None]
    assert train_steps == sorted(set(train_steps)) and train_steps[-1] == planned
    with capsys.disabled():
        print(f"\nkill-and-resume: killed at step {killed_at}, resumed from checkpoint step {checkpoint_step} "
              f"({killed_at - checkpoint_step} steps lost), final step {run.metrics()[-1]['step']}/{planned}")


def test_a_stop_during_the_test_evaluation_keeps_the_adapter_and_resume_only_evaluates(tmp_path, model_cache,
                                                                                      one_torch_thread, monkeypatch):
    evaluate = training.evaluate_run

    def stop_then_evaluate(run, **kwargs):
        run.request_stop()  # as the Stop button would, once training has ended
        return evaluate(run, **kwargs)

    monkeypatch.setattr(training, "evaluate_run", stop_then_evaluate)
    run = train_tiny(tmp_path)[1]
    status = run.status()
    assert status["state"] == "stopped" and status["trained"]
    assert status["note"] == "Stopped during the test evaluation; the adapter is saved."
    assert (run.adapter_dir / "adapter_model.safetensors").is_file() and run.eval_results() is None
    assert run.resume_point() == "at its test evaluation (training had finished)"

    monkeypatch.setattr(training, "evaluate_run", evaluate)
    steps = [row["step"] for row in run.metrics()]
    resume_training(run.path)
    assert run.status()["state"] == "completed" and run.status()["note"] is None
    assert run.eval_results()["accuracy"] >= 0.9
    assert [row["step"] for row in run.metrics()] == steps  # nothing trained again
