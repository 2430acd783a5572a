"""Training on several processes through `accelerate launch`: on this CPU machine, 2 gloo processes.

The fast tests check the launch settings, the refusals and how a failed process is told apart from the ones that
only lost their connection to it; the slow ones run real 2-process trainings of the tiny model.
"""

import json
import os
import signal
import sys
import textwrap

import pytest

from lift_core import distributed, models
from lift_core import launcher as launcher_module
from lift_core.cli import main
from lift_core.config import TrainConfig
from lift_core.errors import LiftError
from lift_core.launcher import TrainingLauncher
from lift_core.processes import descendants, pid_alive, process_identity
from lift_core.runs import Run, create_run
from tests.helpers import ONE_THREAD_ENV, TINY_FAST, lift_cli, put_in_state, two_gaussians, wait_for, write_table

# The 1-process run takes 8 rows per step; each of the 2 processes takes 4, so both runs take the same steps.
ONE_PROCESS = {**TINY_FAST, "batch_size": 8}
TWO_PROCESSES = {**TINY_FAST, "batch_size": 4, "num_processes": 2}
TRAIN_ROWS = 140  # 200 rows less 20% test and 10% validation
PLANNED_STEPS = 54  # 3 epochs of ceil(140 / 8) steps


def settings_flags(settings: dict) -> list[str]:
    return [part for name, value in settings.items() for part in (f"--{name.replace('_', '-')}", str(value))]


# ---------- fast: settings, refusals, failure reports ----------

def test_the_accelerate_settings_are_our_own_and_run_torchrun_processes_on_a_cpu():
    settings = distributed.accelerate_config(TrainConfig(num_processes=3))
    assert settings["distributed_type"] == "MULTI_GPU"  # torchrun; MULTI_CPU would need mpirun
    assert settings["num_processes"] == 3 and settings["num_machines"] == 1
    assert settings["use_cpu"] is (not models.has_cuda())
    assert settings["main_process_port"] == 0  # a free port each time: two runs never collide


def test_steps_per_epoch_divide_by_the_number_of_processes():
    config = TrainConfig(epochs=3, max_steps=0, batch_size=4)
    assert config.planned_steps(TRAIN_ROWS) == 105
    assert config.planned_steps(TRAIN_ROWS, processes=2) == PLANNED_STEPS


def test_a_process_count_below_one_is_refused():
    with pytest.raises(LiftError, match="at least 1"):
        TrainConfig(num_processes=0).check()


def test_more_processes_than_gpus_are_refused(monkeypatch):
    monkeypatch.setattr(models, "cuda_device_count", lambda: 2)
    with pytest.raises(LiftError, match="3 training processes need 3 GPUs, but 2 are visible"):
        distributed.check_processes(TrainConfig(num_processes=3))
    distributed.check_processes(TrainConfig(num_processes=2))
    monkeypatch.setattr(models, "cuda_device_count", lambda: 0)
    distributed.check_processes(TrainConfig(num_processes=3))  # on a CPU they share the cores


def test_bad_input_is_reported_once_before_any_process_starts(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--data", str(tmp_path / "missing.csv"), "--target", "y", "--num-processes", "2",
                 "--out", str(out)])
    assert code == 2
    error = capsys.readouterr().err
    assert error.count("error:") == 1 and "missing.csv" in error
    assert not out.exists()


def test_a_multi_process_run_into_a_folder_that_holds_a_run_is_refused_before_any_process_starts(tmp_path, capsys):
    table = write_table(two_gaussians(40), tmp_path / "table.csv")
    earlier = create_run(tmp_path / "run", {"model": "tiny"})
    put_in_state(earlier, "completed")
    code = main(["train", "--data", table, "--target", "y", "--model", "tiny", "--num-processes", "2",
                 "--out", str(earlier.path)])
    assert code == 2 and "already holds a run" in capsys.readouterr().err
    assert earlier.status()["state"] == "completed"


def test_a_failure_is_recorded_only_in_a_run_no_other_live_process_owns(tmp_path):
    error = distributed.TrainingProcessFailed("Training process 1 of 2 failed: boom", 1)
    resumed = create_run(tmp_path / "resumed", {})
    resumed.start(process_identity(os.getppid()))  # a live process of its own: the resume's
    distributed._record_failure(resumed, error)
    assert resumed.status()["state"] == "running"
    ended = create_run(tmp_path / "ended", {})
    ended.start({"pid": 2**22 + 1, "pid_start": 1})  # its training processes have exited
    distributed._record_failure(ended, error)
    assert ended.status()["state"] == "failed" and ended.status()["error"] == str(error)


def _failure(tmp_path, rank: int, exitcode: int, message: str | None = None, at: float | None = None):
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    error_file = tmp_path / f"error-{rank}.json"
    if message is not None:
        os.environ[distributed.ERROR_FILE_VARIABLE] = str(error_file)
        try:
            distributed.record_failure(message)
        finally:
            del os.environ[distributed.ERROR_FILE_VARIABLE]
        recorded = json.loads(error_file.read_text())
        error_file.write_text(json.dumps({**recorded, "time": at}))
    return ProcessFailure(local_rank=rank, pid=1000 + rank, exitcode=exitcode, error_file=str(error_file))


def test_the_process_that_failed_first_is_reported_not_the_one_that_lost_its_connection(tmp_path):
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    failures = {0: _failure(tmp_path, 0, 1, "RuntimeError: Connection closed by peer", at=20.0),
                1: _failure(tmp_path, 1, 2, "Cannot read the table", at=10.0)}
    error = distributed._failure_error(ChildFailedError("lift_core", failures), 2)
    assert str(error) == "Training process 1 of 2 failed: Cannot read the table"
    assert error.exit_code == 2


def test_a_process_killed_by_a_signal_is_the_cause_and_is_named_with_its_signal(tmp_path):
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    failures = {0: _failure(tmp_path, 0, 1, "RuntimeError: Connection closed by peer", at=10.0),
                1: _failure(tmp_path, 1, -signal.SIGKILL)}  # the OOM killer's: no error recorded
    error = distributed._failure_error(ChildFailedError("lift_core", failures), 2)
    assert str(error) == "Training process 1 of 2 was killed (signal 9, SIGKILL)"
    assert error.exit_code == 1


def test_descendants_are_the_processes_a_process_started_and_theirs():
    import subprocess

    sleeper = "import time; time.sleep(60)"
    # A parent that starts a child in a session of its own (as torchrun does), which starts a grandchild.
    child = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {sleeper!r}]); time.sleep(60)"
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; subprocess.Popen([sys.executable, "
                               f"'-c', {child!r}], start_new_session=True); time.sleep(60)"])
    try:
        found = wait_for(lambda: descendants(parent.pid), lambda pids: len(pids) == 2, timeout=30,
                         what="the child and the grandchild")
        assert parent.pid not in found and all(pid_alive(pid) for pid in found)
    finally:
        for pid in descendants(parent.pid) + [parent.pid]:
            os.kill(pid, signal.SIGKILL)
        parent.wait()


# ---------- slow: real 2-process trainings of the tiny model ----------

@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return write_table(two_gaussians(200), tmp_path_factory.mktemp("table") / "gaussians.csv")


@pytest.fixture(scope="module")
def one_and_two_process_runs(table, tmp_path_factory, model_cache):
    folder = tmp_path_factory.mktemp("processes")
    runs = {}
    for processes, settings in ((1, ONE_PROCESS), (2, TWO_PROCESSES)):
        result = lift_cli("train", "--data", table, "--target", "y", *settings_flags(settings),
                          "--out", folder / f"run-{processes}")
        assert result.returncode == 0, result.stderr[-3000:]
        runs[processes] = (Run(folder / f"run-{processes}"), result)
    return runs


def train_rows(run: Run) -> list[dict]:
    return [row for row in run.metrics() if row.get("loss") is not None]


@pytest.mark.slow
def test_two_processes_train_together_and_one_writes_the_run(one_and_two_process_runs):
    run, result = one_and_two_process_runs[2]
    assert run.status()["state"] == "completed" and run.status()["processes"] == 2
    # Both processes saved their random state into the last checkpoint: both trained up to it.
    checkpoint = run.latest_checkpoint()
    assert {path.name for path in checkpoint.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    # One metrics log, written once: every step appears once, up to the planned last step.
    steps = [row["step"] for row in train_rows(run)]
    assert steps == sorted(set(steps)) and steps[-1] == PLANNED_STEPS
    assert {row["total_steps"] for row in run.metrics()} == {PLANNED_STEPS}
    # One adapter, one evaluation, and one report on the terminal.
    assert len(list(run.path.rglob("adapter_model.safetensors"))) == 1 + len(list(run.path.glob("checkpoints/*")))
    assert (run.adapter_dir / "adapter_model.safetensors").is_file() and run.eval_results()["n_test"] == 40
    assert result.stdout.count("run completed") == 1
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_two_processes_take_the_steps_of_one_process_with_twice_the_batch_and_learn_as_well(
        one_and_two_process_runs):
    one, two = (one_and_two_process_runs[n][0] for n in (1, 2))
    assert train_rows(one)[-1]["step"] == train_rows(two)[-1]["step"] == PLANNED_STEPS
    # The same rows at each step (process 0 takes the first 4 of the 8, process 1 the others), from the same
    # LoRA initialisation: the first step's loss is the same; dropout then makes the runs drift apart a little.
    first = [train_rows(run)[0] for run in (one, two)]
    assert first[0]["step"] == first[1]["step"] == 1
    assert first[0]["loss"] == pytest.approx(first[1]["loss"], rel=1e-4)
    # The steps add up: up to the same checkpoint, the two processes together saw the one process's tokens.
    checkpoints = [run.latest_checkpoint() for run in (one, two)]
    assert checkpoints[0].name == checkpoints[1].name
    seen = [json.loads((checkpoint / "trainer_state.json").read_text())["num_input_tokens_seen"]
            for checkpoint in checkpoints]
    assert seen[0] == seen[1] > 0
    accuracy = {n: run.eval_results()["accuracy"] for n, run in ((1, one), (2, two))}
    assert accuracy[1] >= 0.9 and accuracy[2] >= 0.9, accuracy
    assert abs(accuracy[1] - accuracy[2]) <= 0.1, accuracy


FAILING_PROCESS = textwrap.dedent("""
    import os

    if os.environ.get("RANK") == "1":
        import transformers

        original_step = transformers.Trainer.training_step

        def failing_step(self, *args, **kwargs):
            if self.state.global_step >= 3:
                raise RuntimeError("process one gave up at step 3")
            return original_step(self, *args, **kwargs)

        transformers.Trainer.training_step = failing_step
""")


@pytest.mark.slow
def test_a_crash_of_one_process_fails_the_run_with_that_process_error(table, tmp_path, monkeypatch):
    # Python imports sitecustomize at start-up: only the second training process breaks, mid-training.
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(FAILING_PROCESS)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "inject"))
    result = lift_cli("train", "--data", table, "--target", "y", *settings_flags(TWO_PROCESSES),
                      "--out", tmp_path / "run")
    assert result.returncode == 1
    status = Run(tmp_path / "run").status()
    assert status["state"] == "failed"
    assert status["error"].startswith("Training process 1 of 2 failed: RuntimeError: process one gave up at step 3")
    assert result.stderr.strip().splitlines()[-1].startswith("error: Training process 1 of 2 failed")
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_sigterm_to_the_cli_stops_every_process_and_the_adapter_is_saved(table, tmp_path):
    import subprocess

    run = Run(tmp_path / "run")
    command = [sys.executable, "-m", "lift_core", "train", "--data", table, "--target", "y",
               *settings_flags({**TWO_PROCESSES, "epochs": 40}), "--out", str(run.path)]
    process = subprocess.Popen(command, env={**os.environ, **ONE_THREAD_ENV}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    wait_for(lambda: train_rows(run) if (run.path / "metrics.jsonl").exists() else [], timeout=120,
             what="the first training steps")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    status = run.status()
    assert status["state"] == "stopped", stderr[-2000:]
    assert train_rows(run)[-1]["step"] < train_rows(run)[-1]["total_steps"]
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()
    assert not pid_alive(status["pid"], status["pid_start"])


@pytest.mark.slow
def test_the_app_launcher_trains_on_two_processes_stops_them_resumes_and_kills_them(table, tmp_path, monkeypatch):
    for name, value in ONE_THREAD_ENV.items():
        monkeypatch.setenv(name, value)
    launcher = TrainingLauncher(tmp_path / "runs")
    config = TrainConfig(data=table, target="y", **TWO_PROCESSES)
    run = launcher.start(config)
    wait_for(lambda: train_rows(run) if (run.path / "metrics.jsonl").exists() else [], timeout=120,
             what="the first training steps")

    assert launcher.stop()[1] == "requested"  # the stop file: every process reads it, all stop at one step
    status = wait_for(run.status, lambda status: status["state"] == "stopped", timeout=60, what="the stop")
    wait_for(lambda: launcher.finishing(run), lambda finishing: not finishing, timeout=30, what="the exit")
    assert run.status()["exit_code"] == 0 and status["processes"] == 2
    stopped_at = train_rows(run)[-1]["step"]

    launcher.resume(run)  # from its last checkpoint, again on 2 processes
    wait_for(lambda: run.status()["state"], lambda state: state == "completed", timeout=240, what="the resumed run")
    rows = train_rows(run)
    assert rows[-1]["step"] == rows[-1]["total_steps"] > stopped_at
    assert run.eval_results()["accuracy"] >= 0.9

    # A forced stop kills the launching process and both training processes it started.
    wait_for(lambda: launcher.finishing(run), lambda finishing: not finishing, timeout=30, what="the exit")
    second = launcher.start(TrainConfig(data=table, target="y", **{**TWO_PROCESSES, "epochs": 40}))
    wait_for(lambda: train_rows(second) if (second.path / "metrics.jsonl").exists() else [], timeout=120,
             what="the second run's first steps")
    launching_process = second.launch_record()["pid"]
    training_processes = descendants(launching_process)
    assert len(training_processes) == 2
    launcher_module._kill(second)
    status = wait_for(second.status, lambda status: status["state"] == "failed", timeout=30, what="the kill")
    assert status["error"] == "The training process was killed (signal 9, SIGKILL)."
    assert not any(pid_alive(pid) for pid in [launching_process, *training_processes])

