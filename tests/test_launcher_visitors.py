"""The launcher of a multi-user server (a public Space): visitors' caps, the training slot's fair queue, stop and
sweep by owner, and waiting runs kept in the runs folder across a restart."""

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import TINY_FAST, put_in_state, two_gaussians, wait_for, write_table

from lift_core import launcher as launcher_module
from lift_core.access import RunAccess, VisitorLimits
from lift_core.config import TrainConfig
from lift_core.errors import LiftError
from lift_core.launcher import CANCELLED, TrainingLauncher
from lift_core.processes import process_identity
from lift_core.runs import Run, create_run

# A stand-in for a queued run's training process (the launcher only cares that it lives): it ends when the test
# touches its gate file, or the gate of all at the test's end; after 5 minutes in any case, so that none outlives a
# test that failed midway.
STAND_IN = """
import sys, time
from pathlib import Path
gate, deadline = Path(sys.argv[1]), time.monotonic() + 300
while not (gate.exists() or (gate.parent / "ALL").exists()) and time.monotonic() < deadline:
    time.sleep(0.05)
"""


@pytest.fixture
def table(tmp_path):
    return write_table(two_gaussians(40), tmp_path / "table.csv")


@pytest.fixture
def gates(tmp_path, monkeypatch):
    """Queued runs start the stand-in; a run's training ends once the test calls release(run). Afterwards every
    run is let go, and the queue waited for until it is empty."""
    folder = tmp_path / "gates"
    folder.mkdir()
    monkeypatch.setattr(launcher_module, "resume_command",
                        lambda run_dir: [sys.executable, "-c", STAND_IN, str(folder / Path(run_dir).name)])
    yield folder
    (folder / "ALL").touch()
    watching = TrainingLauncher(tmp_path / "runs")
    wait_for(lambda: (watching.active_run(), watching.waiting_runs()), lambda seen: seen == (None, []), timeout=60,
             what="the queue to empty")


def visitors_launcher(tmp_path, **limits) -> TrainingLauncher:
    return TrainingLauncher(tmp_path / "runs", limits=VisitorLimits(**limits))


def release(gates: Path, launcher: TrainingLauncher, run: Run) -> None:
    """Lets the stand-in of `run` end, and waits until its end is recorded and the next waiting run launched."""
    (gates / run.name).touch()
    wait_for(lambda: launcher.finishing(run), lambda finishing: not finishing, timeout=30,
             what=f"the end of {run.name}")
    wait_for(lambda: launcher.active_run() is not None or not launcher.waiting_runs(), timeout=30,
             what="the next waiting run to start")


def named(stopped: tuple[Run, str]) -> tuple[str, str]:
    """What stop() returned, with the run's name for the run."""
    return stopped[0].name, stopped[1]


def launched(run: Run) -> bool:
    return bool(run.launch_record())


def start_for(owner: str, launcher: TrainingLauncher, table: str) -> Run:
    return launcher.start(TrainConfig(data=table, target="y", model="tiny"), owner=owner)


# ---------- caps ----------

def test_the_caps_refuse_with_what_to_do_and_zero_means_no_cap():
    limits = VisitorLimits(max_runs=3, max_rows=100)
    limits.check_run_count(2)
    limits.check_table_rows(100)
    with pytest.raises(LiftError, match=r"You have 3 runs.*at most 3 here\. Delete one in the Runs tab"):
        limits.check_run_count(3)
    with pytest.raises(LiftError, match=r"This table has 1,500 rows.*at most 100\. Train on a sample"):
        limits.check_table_rows(1500)
    uncapped = VisitorLimits(max_runs=0, max_rows=0)
    uncapped.check_run_count(10_000)
    uncapped.check_table_rows(10**9)


def test_a_start_beyond_a_cap_is_refused_before_any_run_is_made(tmp_path, table, gates):
    launcher = visitors_launcher(tmp_path, max_runs=2, max_rows=30)
    with pytest.raises(LiftError, match="This table has 40 rows"):
        start_for("ann", launcher, table)
    launcher = visitors_launcher(tmp_path, max_runs=2, max_rows=0)
    start_for("ann", launcher, table)
    start_for("ann", launcher, table)  # waits: the first one trains
    with pytest.raises(LiftError, match="You have 2 runs, waiting, training or finished"):
        start_for("ann", launcher, table)
    assert len(RunAccess(tmp_path / "runs", owner="ann").own_runs()) == 2
    assert start_for("bob", launcher, table).owner() == "bob"  # the cap is per visitor


# ---------- the queue ----------

def test_a_second_visitors_run_waits_shown_as_queued_and_starts_when_the_slot_frees(tmp_path, table, gates):
    launcher = visitors_launcher(tmp_path)
    ann = start_for("ann", launcher, table)
    assert launcher.active_run().name == ann.name and launcher.queue_position(ann) is None
    bob = start_for("bob", launcher, table)  # not refused: it waits
    assert launcher.queue_position(bob) == 1 and not launched(bob)
    assert [run.name for run in launcher.waiting_runs()] == [bob.name]
    shown = RunAccess(tmp_path / "runs", owner="bob").own_runs()
    assert [(run.name, run.status()["state"]) for run in shown] == [(bob.name, "queued")]
    assert bob.dataset_info().n_train > 0  # its data is saved with it, as the training process reads it

    release(gates, launcher, ann)
    assert launched(bob) and launcher.queue_position(bob) is None  # the watcher started it
    assert launcher.active_run().name == bob.name


def test_waiting_runs_take_turns_between_visitors_and_start_in_the_order_shown(tmp_path, table, gates):
    launcher = visitors_launcher(tmp_path)
    runs = {}
    for name in ("ann1", "ann2", "ann3", "bob1", "cat1", "bob2"):
        runs[name] = start_for(name[:3], launcher, table)
    # Ann trains; Bob and Cat have not had a turn yet, and her second run goes before Bob's second.
    expected = ["bob1", "cat1", "ann2", "bob2", "ann3"]
    assert [run.name for run in launcher.waiting_runs()] == [runs[name].name for name in expected]
    assert [launcher.queue_position(runs[name]) for name in expected] == [1, 2, 3, 4, 5]

    release(gates, launcher, runs["ann1"])
    assert launcher.active_run().name == runs["bob1"].name
    runs["dan1"] = start_for("dan", launcher, table)  # a newcomer: before the second runs of those who trained
    expected = ["cat1", "dan1", "ann2", "bob2", "ann3"]
    assert [run.name for run in launcher.waiting_runs()] == [runs[name].name for name in expected]
    order = ["ann1", "bob1"]
    while order[-1] != "ann3":
        release(gates, launcher, runs[order[-1]])
        order.append(next(name for name, run in runs.items() if name not in order and launched(run)))
    assert order == ["ann1", "bob1", *expected]


def test_resuming_a_run_while_another_trains_queues_it_in_its_owners_turn(tmp_path, table, gates):
    launcher = visitors_launcher(tmp_path)
    ann = start_for("ann", launcher, table)
    bob = start_for("bob", launcher, table)
    assert named(launcher.stop("bob")) == (bob.name, "cancelled")
    assert launcher.resume(bob) == "from step 0 (no checkpoint was saved)"  # it never trained
    assert launcher.queue_position(bob) == 1
    release(gates, launcher, ann)
    assert launcher.active_run().name == bob.name


# ---------- stop, by owner ----------

def test_stop_with_an_owner_acts_only_on_that_owners_runs(tmp_path, table, gates):
    launcher = visitors_launcher(tmp_path)
    ann1, bob1, ann2, bob2 = (start_for(owner, launcher, table) for owner in ("ann", "bob", "ann", "bob"))
    assert launcher.stop("cat") is None
    # Bob's run that would start last is cancelled; Ann's training and waiting runs are untouched.
    assert named(launcher.stop("bob")) == (bob2.name, "cancelled")
    status = bob2.status()
    assert status["state"] == "failed" and status["error"] == CANCELLED
    assert named(launcher.stop("bob")) == (bob1.name, "cancelled")
    assert launcher.stop("bob") is None
    assert not ann1.stop_requested() and launcher.queue_position(ann2) == 1
    assert named(launcher.stop("ann")) == (ann1.name, "requested") and ann1.stop_requested()
    assert named(launcher.stop("ann")) == (ann1.name, "waiting")  # her training, not her waiting run, as without owners
    assert launcher.queue_position(ann2) == 1


def test_deleting_a_waiting_run_takes_it_out_of_the_queue(tmp_path, table, gates):
    launcher = visitors_launcher(tmp_path)
    ann, bob, cat = (start_for(owner, launcher, table) for owner in ("ann", "bob", "cat"))
    launcher.delete(bob)
    assert [run.name for run in launcher.waiting_runs()] == [cat.name] and not bob.path.exists()
    release(gates, launcher, ann)
    assert launcher.active_run().name == cat.name


# ---------- sweep ----------

def test_sweep_deletes_only_visitors_runs_older_than_the_limit_and_never_a_live_one(tmp_path, table, gates):
    runs_dir = tmp_path / "runs"
    launcher = visitors_launcher(tmp_path, max_age_hours=24)
    training = start_for("ann", launcher, table)
    waiting = start_for("bob", launcher, table)
    now = time.time() + 48 * 3600  # both are two days old by then
    made = {}
    for name, owner, age_hours in (("old", "cat", 25), ("young", "cat", 23), ("single-user", None, 100)):
        made[name] = create_run(runs_dir / name, {"model": "tiny"})
        put_in_state(made[name], "completed", created=now - age_hours * 3600,
                     **({"owner": owner} if owner else {}))
    assert sorted(launcher.sweep(now=now)) == sorted(["old", waiting.name])
    assert sorted(path.name for path in runs_dir.iterdir() if path.is_dir()) == sorted(
        ["young", "single-user", training.name])
    assert TrainingLauncher(runs_dir, limits=VisitorLimits(max_age_hours=0)).sweep(now=now) == []
    assert TrainingLauncher(runs_dir).sweep(now=now) == []  # a single user's folder is never swept


def test_sweep_every_sweeps_in_the_background_until_told_to_stop(tmp_path):
    old = create_run(tmp_path / "runs" / "old", {"model": "tiny"})
    put_in_state(old, "failed", owner="ann", created=time.time() - 2 * 3600)
    stopping = visitors_launcher(tmp_path, max_age_hours=1).sweep_every(0.05)
    try:
        wait_for(lambda: old.path.exists(), lambda exists: not exists, timeout=30, what="the sweep")
    finally:
        stopping.set()


# ---------- a restart ----------

def test_waiting_runs_outlive_the_server_and_a_new_launcher_starts_them(tmp_path, table, gates):
    runs_dir = tmp_path / "runs"
    # A training this server did not launch (a previous server's): no watcher here sees it end.
    foreign = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        elder = create_run(runs_dir / "elder", {"model": "tiny"})
        elder.record(owner="ann")
        elder.start(process_identity(foreign.pid))
        bob = start_for("bob", visitors_launcher(tmp_path), table)
        restarted = visitors_launcher(tmp_path)
        assert restarted.queue_position(bob) == 1 and restarted.active_run().name == "elder"
    finally:
        foreign.kill()
        foreign.wait()
    restarted_again = visitors_launcher(tmp_path)  # the slot is free: the constructor starts the waiting run
    assert launched(bob) and restarted_again.active_run().name == bob.name
    assert elder.status()["state"] == "interrupted"


# ---------- a real training ----------

@pytest.mark.slow  # two tiny trainings, one after the other, each in its own process
def test_a_visitors_queued_run_really_trains_once_the_first_has_finished(tmp_path, model_cache, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    table = write_table(two_gaussians(60), tmp_path / "table.csv")
    config = TrainConfig(data=table, target="y", **{**TINY_FAST, "epochs": 0, "max_steps": 3})
    launcher = visitors_launcher(tmp_path)
    ann = launcher.start(config, owner="ann")
    bob = launcher.start(config, owner="bob")
    assert launcher.queue_position(bob) == 1
    for run in (ann, bob):
        state = wait_for(lambda run=run: run.status()["state"], lambda state: state not in ("queued", "running"),
                         timeout=240, what=f"{run.name} to end", interval=0.5)
        assert state == "completed", run.log_tail(20)
    assert bob.status()["started"] > ann.status()["finished"]  # one training at a time
    assert bob.eval_results() and bob.has_adapter()
    assert pd.read_csv(table).shape[0] == sum(bob.split(name).shape[0] for name in ("train", "val", "test"))
    assert "--resume" in bob.log_tail(200).splitlines()[0]
