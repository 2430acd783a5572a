"""A study in the web app's launcher: its process holds the training slot for all its runs, Stop and Resume act on
the whole study, and a server started on a half-finished study continues it."""

import os
from dataclasses import asdict

import pytest
from helpers import ONE_THREAD_ENV, TINY_FAST, two_gaussians, wait_for, write_table

from lift_core.access import VisitorLimits
from lift_core.config import TrainConfig
from lift_core.errors import LiftError
from lift_core.launcher import TrainingLauncher
from lift_core.processes import identity_alive, process_identity
from lift_core.studies import StudySpec, create_study, studies_dir


@pytest.fixture
def one_thread_processes(monkeypatch):
    for name, value in ONE_THREAD_ENV.items():
        monkeypatch.setenv(name, value)


def spec_for(table, **settings) -> StudySpec:
    config = TrainConfig(data=str(table), target="y", **{**TINY_FAST, **settings})
    return StudySpec("sample-efficiency", asdict(config), levels=[0.5, 1.0], baselines=["majority", "logreg"])


def process_ended(study) -> bool:
    return not identity_alive(study.process())


def test_a_study_whose_process_lives_holds_the_training_slot(tmp_path):
    table = write_table(two_gaussians(40), tmp_path / "table.csv")
    launcher = TrainingLauncher(tmp_path / "runs")
    study = create_study(studies_dir(tmp_path / "runs") / "study", spec_for(table))
    study.record_process(process_identity(os.getpid()))  # a live process: this one
    assert launcher.active_study().name == study.name
    with pytest.raises(LiftError, match="running the study"):
        launcher.start(TrainConfig(data=str(table), target="y", **TINY_FAST))
    with pytest.raises(LiftError, match="running the study"):
        launcher.start_study(spec_for(table))
    with pytest.raises(LiftError, match="running the study"):
        launcher.resume_study(study)


@pytest.mark.slow
def test_a_study_stops_and_resumes_as_a_whole(tmp_path, model_cache, one_thread_processes):
    table = write_table(two_gaussians(60), tmp_path / "table.csv")
    launcher = TrainingLauncher(tmp_path / "runs")
    # Enough steps that the first run is still training when the test asks it to stop.
    study = launcher.start_study(spec_for(table, epochs=0.0, max_steps=60))
    first = study.run(study.run_names()[0])
    wait_for(lambda: first.exists() and first.metrics(), timeout=120, what="the first run to train")
    assert launcher.stop_study(study) == "requested"
    wait_for(lambda: process_ended(study), timeout=120, what="the study's process to end")
    assert study.states() == {first.name: "stopped", study.run_names()[1]: "waiting"}
    assert launcher.active_study() is None

    launcher.resume_study(study)
    wait_for(lambda: process_ended(study), timeout=240, what="the resumed study to finish")
    assert set(study.states().values()) == {"completed"}, study.log_tail()
    assert "stopped" in [entry.get("state") for entry in first.status()["history"]]
    assert all(run.baselines() is not None for run in study.runs())
    with pytest.raises(LiftError, match="has finished"):
        launcher.resume_study(study)
    assert launcher.stop_study(study) == "idle"


@pytest.mark.slow
def test_a_new_server_continues_a_half_finished_study_but_not_a_stopped_one(tmp_path, model_cache,
                                                                            one_thread_processes):
    table = write_table(two_gaussians(40), tmp_path / "table.csv")
    runs_dir = tmp_path / "runs"
    stopped = create_study(studies_dir(runs_dir) / "stopped", spec_for(table))
    stopped.request_stop()
    # As a server killed before it trained it: one run is enough.
    left = create_study(studies_dir(runs_dir) / "left", StudySpec("sample-efficiency", spec_for(table).base, [1.0],
                                                                 baselines=["logreg"]))

    continued = TrainingLauncher(runs_dir).continue_studies()
    assert [study.name for study in continued] == ["left"]
    wait_for(lambda: process_ended(left), timeout=240, what="the continued study to finish")
    assert set(left.states().values()) == {"completed"}, left.log_tail()
    assert set(stopped.states().values()) == {"waiting"}
    assert TrainingLauncher(runs_dir).continue_studies() == []


def test_a_shared_server_refuses_studies(tmp_path):
    table = write_table(two_gaussians(40), tmp_path / "table.csv")
    launcher = TrainingLauncher(tmp_path / "runs", limits=VisitorLimits())
    with pytest.raises(LiftError, match="shared server"):
        launcher.start_study(spec_for(table))
    assert not studies_dir(tmp_path / "runs").exists()
