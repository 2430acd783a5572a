"""The run folder's state machine, its lock, and its one writer (lift_core/runs.py)."""

import ast
import multiprocessing
import os
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO_ROOT, put_in_state, train_tiny, two_gaussians, wait_for, write_table
from lift_core import launcher as launcher_module
from lift_core.config import TrainConfig
from lift_core.errors import LiftError
from lift_core.evaluation import run_baselines
from lift_core.launcher import TrainingLauncher
from lift_core.processes import process_identity
from lift_core.runs import STATES, TRANSITIONS, Run, RunStateError, create_run

DEAD_PROCESS = {"pid": 2**22 + 1, "pid_start": 1}


def new_run(tmp_path, name="run") -> Run:
    return create_run(tmp_path / name, {"model": "tiny"})


# ---------- transitions, one by one ----------

def change(run: Run, state: str) -> None:
    """The public method that moves a run to `state`."""
    {"running": lambda: run.start(process_identity(os.getpid())), "completed": run.complete,
     "stopped": run.mark_stopped, "failed": lambda: run.fail("boom"),
     "interrupted": lambda: run._transition("interrupted"), "queued": lambda: run._transition("queued")}[state]()


@pytest.mark.parametrize("start", STATES)
@pytest.mark.parametrize("target", STATES)
def test_each_transition_is_allowed_or_refused_as_the_table_says(tmp_path, start, target):
    run = new_run(tmp_path)
    put_in_state(run, start)
    before = run.status()
    if target in TRANSITIONS[start]:
        change(run, target)
        status = run.status()
        assert status["state"] == target
        assert [entry["state"] for entry in status["history"]][-1] == target
    else:
        with pytest.raises(RunStateError, match=f"is {start}: it cannot become {target}"):
            change(run, target)
        assert run.status() == before  # nothing written


def test_the_life_of_a_stopped_then_resumed_run_is_kept_in_its_history(tmp_path):
    run = new_run(tmp_path)
    run.start(process_identity(os.getpid()))
    run.record(quantization="none")
    run.request_stop()
    run.mark_stopped()
    # A resume needs the splits the run trained on.
    (run.path / "splits").mkdir()
    (run.path / "splits" / "train.csv").write_text("x,y\n1,a\n")
    (run.path / "dataset.json").write_text("{}")
    run.resume(process_identity(os.getpid()))
    assert not run.stop_requested()  # else the resumed run would stop at its first step
    status = run.status()
    assert status["state"] == "queued" and status["finished"] is None and status["quantization"] == "none"
    run.start(process_identity(os.getpid()))
    run.complete()
    assert [entry["state"] for entry in run.status()["history"]] == [
        "queued", "running", "stopped", "queued", "running", "completed"]


def test_resume_refuses_a_run_that_cannot_be_resumed(tmp_path):
    run = new_run(tmp_path)
    put_in_state(run, "completed")
    with pytest.raises(RunStateError, match="only an interrupted, failed or stopped run can be resumed"):
        run.resume({})
    stopped_early = new_run(tmp_path, "early")
    put_in_state(stopped_early, "failed")
    with pytest.raises(RunStateError, match="ended before it saved its data splits"):
        stopped_early.resume({})


def test_record_changes_facts_never_the_state(tmp_path):
    run = new_run(tmp_path)
    run.record(exit_code=3)
    assert run.status()["exit_code"] == 3 and run.status()["state"] == "queued"
    with pytest.raises(RunStateError, match="only through its transitions"):
        run.record(state="completed")


# ---------- reading never writes; reconcile does ----------

def test_status_only_reads_and_reconcile_marks_a_dead_process_interrupted(tmp_path):
    run = new_run(tmp_path)
    run.start(DEAD_PROCESS)
    on_disk = (run.path / "status.json").read_text()
    assert run.status()["state"] == "running"
    assert (run.path / "status.json").read_text() == on_disk
    status = run.reconcile()
    assert status["state"] == "interrupted" and "without recording a result" in status["error"]
    assert run.reconcile()["state"] == "interrupted"  # a second reconcile changes nothing


def test_reconcile_leaves_a_live_process_running(tmp_path):
    run = new_run(tmp_path)
    run.start(process_identity(os.getpid()))
    assert run.reconcile()["state"] == "running"


# ---------- concurrent writers ----------

def _record_many(path: str, key: str, count: int) -> None:
    run = Run(path)
    for number in range(count):
        run.record(**{f"{key}{number}": number})


def _start_when_told(path: str, go, results) -> None:
    go.wait()
    try:
        Run(path).start(process_identity(os.getpid()))
        results.put("started")
    except RunStateError:
        results.put("refused")


def test_two_processes_recording_at_once_lose_no_update(tmp_path):
    run = new_run(tmp_path)
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_record_many, args=(str(run.path), key, 60)) for key in ("a", "b")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    status = run.status()
    assert all(f"{key}{number}" in status for key in ("a", "b") for number in range(60))
    assert status["state"] == "queued"


def test_two_processes_racing_to_start_one_run_one_wins(tmp_path):
    run = new_run(tmp_path)
    context = multiprocessing.get_context("spawn")
    go, results = context.Event(), context.Queue()
    racers = [context.Process(target=_start_when_told, args=(str(run.path), go, results)) for _ in range(2)]
    for racer in racers:
        racer.start()
    time.sleep(1.0)  # both are waiting at the line
    go.set()
    for racer in racers:
        racer.join(timeout=120)
    assert sorted(results.get(timeout=10) for _ in racers) == ["refused", "started"]
    assert [entry["state"] for entry in run.status()["history"]] == ["queued", "running"]


# ---------- one writer ----------

RUN_FILE_NAMES = {"status.json", "launcher.json", "STOP", "eval.json", "baselines.csv", "settings.json",
                  "metrics.jsonl", "dataset.json", "lift_state.json", "predictions.csv", "log.txt"}


def test_no_module_but_runs_py_names_a_run_file():
    named, root = [], Path(REPO_ROOT)
    for path in [*root.glob("lift_core/*.py"), *root.glob("lift_ui/**/*.py"), root / "app.py", *root.glob("bench/*.py")]:
        if path.name == "runs.py" and path.parent.name == "lift_core":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in RUN_FILE_NAMES:
                named.append(f"{path.relative_to(root)}:{node.lineno} {node.value}")
    assert not named


class WriteAudit:
    """Every write into a run folder under `root` (opening for writing, renaming, removing, making folders) and
    the code that made it: writes with lift_core/runs.py on the stack are the run's own; the Trainer's (the
    transformers package's) writes into the checkpoint folder the run lends it are the one exception."""

    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    EVENTS = {"open", "os.rename", "os.remove", "os.mkdir", "os.rmdir", "shutil.rmtree", "os.truncate"}

    def __init__(self, root: Path):
        self.root = str(root.resolve())
        self.active = False
        self.writes, self.strangers = [], []

    def __call__(self, event, args):
        if not self.active or event not in self.EVENTS or not self._writes(event, args):
            return
        paths = [str(arg) for arg in args[:2] if isinstance(arg, (str, Path))]
        inside = [path for path in paths if self._in_a_run(path)]
        if not inside:
            return
        files = [frame.f_code.co_filename for frame in _frames()]
        self.writes += inside
        by_runs = any(name.endswith(os.path.join("lift_core", "runs.py")) for name in files)
        by_trainer = (os.sep + "checkpoints" in inside[0]
                      and any(os.sep + "transformers" + os.sep in name for name in files))
        if not (by_runs or by_trainer):
            self.strangers.append((event, inside[0], [name for name in files if "lift_" in name][:3]))

    def _in_a_run(self, path: str) -> bool:
        """Within a run's folder, or that folder itself; not the runs folder, nor its launch lock (a dot file)."""
        relative = os.path.relpath(os.path.abspath(path), self.root)
        return not relative.startswith((".", os.pardir))

    def _writes(self, event, args) -> bool:
        if event != "open":
            return True
        mode, flags = args[1], args[2]
        if isinstance(mode, str):
            return any(letter in mode for letter in "wax+")
        return bool(flags & self.WRITE_FLAGS)


def _frames():
    frame = sys._getframe(2)
    while frame is not None:
        yield frame
        frame = frame.f_back


@pytest.fixture
def audit(tmp_path):
    """A WriteAudit of tmp_path/runs, switched on by the test once its own setup is written."""
    auditor = WriteAudit(tmp_path / "runs")
    sys.addaudithook(auditor)  # a hook cannot be removed: it stays, switched off, for the rest of the session
    yield auditor
    auditor.active = False


@pytest.mark.slow  # trains, resumes and evaluates in this process, and launches a stand-in process
def test_only_runs_py_writes_into_a_run_folder(audit, tmp_path, model_cache, one_torch_thread, monkeypatch):
    runs_dir, folder = tmp_path / "runs", tmp_path / "data"
    run = Run(runs_dir / "trained")
    run.path.mkdir(parents=True)
    table = write_table(two_gaussians(60), folder / "data.csv")
    audit.active = True
    # A stop asked before the first step (the Stop button's file): the run stops at step 1 with a checkpoint.
    run.request_stop()
    train_tiny(folder, run_dir=run.path, data=table, epochs=2)
    assert run.status()["state"] == "stopped" and run.latest_checkpoint() is not None
    from lift_core.training import resume_training

    resume_training(run.path)
    assert run.status()["state"] == "completed" and run.eval_results()
    run_baselines(run, names=["logreg"])
    # The launcher's own writes: settings, log, launch record, and the failure its watcher records.
    monkeypatch.setattr(launcher_module, "training_command", lambda *args: [sys.executable, "-c", "exit(3)"])
    launcher = TrainingLauncher(runs_dir)
    launched = launcher.start(TrainConfig(data=table, target="y", model="tiny"))
    wait_for(lambda: launcher.finishing(launched), lambda busy: not busy, timeout=30, what="the stand-in's end")
    assert launched.status()["state"] == "failed"
    audit.active = False
    written = {Path(path).name for path in audit.writes}
    assert {"status.json", "adapter", "eval.json", "baselines.csv", "settings.json", "log.txt", "launcher.json",
            "metrics.jsonl", "dataset.json", "STOP"} <= written
    assert not audit.strangers, "\n".join(map(str, audit.strangers))


def test_the_runs_tab_shows_how_a_resumed_run_reached_its_end(tmp_path):
    from lift_ui.tabs.runs_tab import run_overview

    run = new_run(tmp_path)
    put_in_state(run, "stopped")
    assert "History" not in run_overview(run)
    for state in ("queued", "running", "completed"):
        run._transition(state)
    assert "History: queued → running → stopped → queued → running → completed" in run_overview(run)


def test_a_resume_whose_process_cannot_start_leaves_the_run_resumable(tmp_path, monkeypatch):
    run = new_run(tmp_path / "runs", "stopped")
    put_in_state(run, "stopped")
    (run.path / "splits").mkdir()
    (run.path / "splits" / "train.csv").write_text("x,y\n1,a\n")
    (run.path / "dataset.json").write_text("{}")
    monkeypatch.setattr(launcher_module, "resume_command", lambda run_dir: ["/no/such/program"])
    with pytest.raises(LiftError, match="could not be resumed: its training process did not start"):
        TrainingLauncher(tmp_path / "runs").resume(run)
    status = run.status()
    assert status["state"] == "failed" and "could not be started" in status["error"]
    assert run.resume_problem() is None
