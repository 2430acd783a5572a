"""Owns the training subprocess. The web app never trains in a request: it asks this launcher to start the
engine's CLI, and reads the run folder, so the page stays responsive and a browser refresh loses nothing.

On a multi-user server (a launcher with VisitorLimits) every run has an owner, and a start while another run trains
is not refused: the run is created with its data, `queued` with `waiting_since` and its `turn` in its status, and
launched when the slot frees (`train --resume` picks a queued run up, from step 0 for a new one), in turns fair
between visitors. The waiting runs live in the runs folder, so a restarted server, or another app process sharing
it, launches them.
"""

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

from lift_core.access import RunAccess, VisitorLimits
from lift_core.config import TrainConfig
from lift_core.errors import LiftError, looks_out_of_memory
from lift_core.processes import identity_alive, kill_with_descendants, process_identity
from lift_core.runs import ACTIVE_STATES, Run, create_run, list_runs, new_run_folder
from lift_core.studies import (LAUNCHED_ENV, Study, StudySpec, create_study, estimate_seconds, list_studies,
                               studies_dir)
from lift_core.zerogpu import TRAINING_REFUSAL, on_zerogpu

FORCE_AFTER_S = 10  # a second Stop this long after the first kills the run
# Held while a launch checks that no training is active and starts one: app processes sharing a runs folder
# take turns too, not only this server's threads.
LAUNCH_LOCK_FILE = ".launch.lock"
EXIT_GRACE_S = 10  # how long a launch waits for a finished run's process to exit
CANCELLED = "Cancelled before it started."
STUDIES_ON_A_SHARED_SERVER = (
    "Studies train many runs one after another, which this shared server cannot give one visitor. To run one, "
    "duplicate this Space or run LIFT Studio on your own machine.")  # the error of a waiting run its owner stopped


class TrainingLauncher:
    """One training at a time per runs folder; the runs folder, not this object, is the source of truth.

    With `limits`, a multi-user server: runs have owners, the caps apply, and a start while a run trains waits.
    """

    def __init__(self, runs_dir, allowed_models: list[str] | None = None, limits: VisitorLimits | None = None):
        self.runs_dir = Path(runs_dir)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        # On a public server, the models anyone may load (each costs memory, and a hub id a download).
        self.allowed_models = allowed_models
        self.limits = limits
        self._lock = threading.Lock()
        self._watched: set[Path] = set()  # runs whose process this launcher still waits for
        if limits is not None:
            self.start_waiting()  # runs a previous server left waiting

    def active_run(self) -> Run | None:
        for run in self._launching_runs() + list_runs(self.runs_dir):
            if run.reconcile().get("state") in ACTIVE_STATES and _launched_and_alive(run):
                return run
        return None

    def _exiting(self) -> bool:
        """Whether a launched run has recorded its end but its process has not exited yet."""
        return any(identity_alive(run.launch_record()) for run in list_runs(self.runs_dir))

    def _launching_runs(self) -> list[Run]:
        # Launched, but the subprocess has not written config.json yet, so list_runs cannot see them.
        folders = [Run(path) for path in self.runs_dir.iterdir() if path.is_dir()]
        return [run for run in folders if not run.exists() and run.launch_record()]

    def new_run_path(self, config: TrainConfig) -> Path:
        model = Path(config.model).name.replace("/", "-")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = self.runs_dir / f"{stamp}-{model}-{config.template}"
        suffix = 1
        while path.exists():
            suffix += 1
            path = self.runs_dir / f"{stamp}-{model}-{config.template}-{suffix}"
        return path

    def check_model(self, model: str) -> None:
        if self.allowed_models and model not in self.allowed_models:
            raise LiftError(f"This server only offers the models {', '.join(self.allowed_models)}; "
                            f"'{model}' is not one of them.")

    def estimate(self, config: TrainConfig, calibrate: bool = False):
        """How long a run of `config` would take (estimate.Estimate). With `calibrate`, a model never run here is
        first timed by a short training, unless one is training: each would slow the other, and the timing be off.
        """
        from lift_core.estimate import estimate_duration
        from lift_core.training import check_training_inputs

        self.check_model(config.model)
        if not calibrate or self.active_run() is not None or self.active_study() is not None:
            return estimate_duration(config, self.runs_dir)
        loaded = check_training_inputs(config)  # a mistake is told at once, not after waiting for the launch lock
        # Held like a launch, so that no training starts while the calibration runs.
        with self._exclusive():
            return estimate_duration(config, self.runs_dir, calibrate=True, splits_loaded=loaded)

    def will_time(self, config: TrainConfig) -> bool:
        """Whether estimate(config, calibrate=True) would first time the model: a page says so while it waits."""
        from lift_core.estimate import needs_timing

        return self.active_run() is None and self.active_study() is None and needs_timing(config, self.runs_dir)

    def start(self, config: TrainConfig, owner: str | None = None) -> Run:
        """Launch a run of `config`. On a multi-user server, a run of `owner`'s, refused beyond the caps, which
        waits for the slot when a run trains (see queue_position)."""
        from lift_core.training import check_training_inputs

        _check_training_here()
        self.check_model(config.model)
        # Bad data, a bad template or rows too long are reported here, in the page, instead of as a failed run.
        loaded = check_training_inputs(config)
        if self.limits is not None:
            return self._queue_new(config, owner, loaded)
        with self._exclusive():
            run = new_run_folder(self.new_run_path(config))
            settings = run.save_settings(asdict(config))
            self._launch(run, training_command(config, run.path, settings), config, log_mode="w")
        return run

    def _queue_new(self, config: TrainConfig, owner: str | None, loaded) -> Run:
        """A visitor's run, created with its data and queued for the slot; launched at once when the slot is free."""
        from lift_core.training import record_dataset

        if owner is None:
            raise ValueError("A multi-user launcher starts a run for its owner.")
        self.limits.check_table_rows(_table_rows(config, *loaded))
        with self._launch_lock():  # the count and the new run at once: two quick starts cannot both pass the cap
            self.limits.check_run_count(len(RunAccess(self.runs_dir, owner=owner).own_runs()))
            run = create_run(self.new_run_path(config), asdict(config))
            run.record(owner=owner)
            record_dataset(run, *loaded)
            self._enqueue(run)  # last: only a run with its data can be launched
        return run

    def resume(self, run: Run) -> str:
        """Start an interrupted, failed or stopped run's training again from its last checkpoint; returns where
        it picks up, in words. On a multi-user server it waits for the slot when a run trains."""
        _check_training_here()
        run.reconcile()
        problem = run.resume_problem()
        if problem:
            raise LiftError(problem)
        self.check_model(run.config().model)
        if self.limits is not None:
            with self._launch_lock():
                point = run.resume_point()
                run.resume({})
                self._enqueue(run)
            return point
        with self._exclusive():
            point = run.resume_point()
            # Queued before the process starts, so that it finds the run queued for it (see training.resumable_run).
            run.resume({})
            try:
                self._launch_queued(run)
            except OSError as error:
                raise LiftError(f"Run '{run.name}' could not be resumed: its training process did not start "
                                f"({error}).") from error
        return point

    def _launch_queued(self, run: Run) -> None:
        """Starts the training process of a run queued for it (see training.resumable_run): from its last
        checkpoint, or from step 0 for a run that never trained. An OSError, when the process cannot start, is
        raised after the run is recorded as failed, not left queued with no process, where it could never be
        resumed again."""
        first_launch = not run.launch_record()
        try:
            process = self._launch(run, resume_command(run.path), run.config(), log_mode="w" if first_launch else "a")
        except OSError as error:
            run.fail(f"The training process could not be started: {error}")
            raise
        run.record(**process_identity(process.pid))

    # Studies: runs one after another in a process of their own, which holds the training slot throughout

    def studies(self) -> list[Study]:
        return list_studies(studies_dir(self.runs_dir))

    def find_study(self, name: str | None) -> Study:
        """A study of this server by name; only a listed name reaches the file system."""
        study = next((study for study in self.studies() if study.name == name), None)
        if study is None:
            raise LiftError("Choose a study first." if not name else
                            f"There is no study named '{name}'. Refresh the list of studies to see the current ones.")
        return study

    def estimate_study(self, spec: StudySpec, calibrate: bool = False) -> float | None:
        """The study's duration in seconds (studies.estimate_seconds); with `calibrate`, as `estimate` does: a model
        never run here is timed first, unless a training runs."""
        self._check_study_here(spec)
        if not calibrate or self.active_run() is not None or self.active_study() is not None:
            return estimate_seconds(spec, self.runs_dir)
        with self._exclusive():
            return estimate_seconds(spec, self.runs_dir, calibrate=True)

    def active_study(self) -> Study | None:
        """A study whose process lives, or one of whose runs still trains (its process killed, say)."""
        return next((study for study in self.studies() if identity_alive(study.process())
                     or any(identity_alive(run.training_process()) for run in study.runs())), None)

    def start_study(self, spec: StudySpec) -> Study:
        """Create the study (its tables and definition, refused with a message if a run could not be made) and
        launch its process, which trains its runs one at a time."""
        self._check_study_here(spec)
        with self._exclusive():
            study = create_study(self._new_study_path(spec), spec)
            self._launch_study(study, log_mode="w")
        return study

    def resume_study(self, study: Study) -> None:
        """Launch the process of a stopped or interrupted study again: its finished runs are kept."""
        self._check_study_here(study.spec())
        if study.finished():
            raise LiftError(f"Study '{study.name}' has finished: every run has its result.")
        with self._exclusive():
            self._launch_study(study, log_mode="a")

    def stop_study(self, study: Study) -> str:
        """No further run of the study starts, and its training run is asked to stop (then forced, as Stop
        does); "requested", "waiting", "killed", or "idle" for a study whose process has ended."""
        self._refuse_studies_if_shared()
        study.request_stop()
        if not identity_alive(study.process()):
            return "idle"
        training = next((run for run in study.runs() if run.exists()
                         and run.reconcile().get("state") in ACTIVE_STATES), None)
        if training is None:
            return "requested"
        outcome = self._stop_active(training)
        if outcome == "killed":
            kill_with_descendants(study.process()["pid"])
        return outcome

    def continue_studies(self) -> list[Study]:
        """Launch again a study that a previous server left half-finished (its process gone, and no stop asked
        for); one, since studies take the training slot in turn. Returns it in a list, or nothing."""
        for study in self.studies():
            if study.stop_requested() or identity_alive(study.process()) or study.finished():
                continue
            with contextlib.suppress(LiftError):  # busy: the person resumes it later
                self.resume_study(study)
                return [study]
        return []

    def _check_study_here(self, spec: StudySpec) -> None:
        _check_training_here()
        self._refuse_studies_if_shared()
        models = [spec.base.get("model")] + (spec.levels if spec.setting == "model" else [])
        for model in models:
            self.check_model(model)

    def _refuse_studies_if_shared(self) -> None:
        if self.limits is not None:
            raise LiftError(STUDIES_ON_A_SHARED_SERVER)

    def _new_study_path(self, spec: StudySpec) -> Path:
        folder = studies_dir(self.runs_dir)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = folder / f"{stamp}-{spec.kind}"
        suffix = 1
        while path.exists():
            suffix += 1
            path = folder / f"{stamp}-{spec.kind}-{suffix}"
        return path

    def _launch_study(self, study: Study, log_mode: str) -> None:
        study.clear_stop()
        command = [sys.executable, "-m", "lift_core", "study", "--resume", str(study.path)]
        with study.open_log(log_mode) as log:
            process = start_process(command, log, log_mode, {LAUNCHED_ENV: "1"})
        study.record_process(process_identity(process.pid))
        # Reaped, so that its end is seen (a zombie would read as alive).
        threading.Thread(target=process.wait, daemon=True).start()

    # The queue of a multi-user server

    def waiting_runs(self) -> list[Run]:
        """The runs waiting for the training slot, in the order they will start: by turn, then by the time they
        were queued (see _next_turn)."""
        waiting = [entry for entry in map(_queue_entry, list_runs(self.runs_dir)) if entry and not entry.launched]
        return [entry.run for entry in sorted(waiting, key=lambda entry: (entry.turn, entry.since, entry.run.name))]

    def _enqueue(self, run: Run) -> None:
        """Under the launch lock: the run waits for the slot in its owner's next turn, launched now if it is free."""
        run.record(waiting_since=time.time(), turn=self._next_turn(run))
        self._launch_next()

    def _next_turn(self, run: Run) -> int:
        """The turn of a run queued now: one after the last turn of its owner's other queued runs, and not before
        the turn of the last run launched. So each visitor's runs take turns with the others', a newcomer goes
        before the second run of one who has trained, and a turn once given never changes: the order shown is
        the order the runs start in."""
        entries = map(_queue_entry, list_runs(self.runs_dir))
        others = [entry for entry in entries if entry and entry.run.name != run.name]
        serving = max((entry.turn for entry in others if entry.launched), default=0)
        theirs = max((entry.turn for entry in others if entry.run.owner() == run.owner()), default=-1)
        return max(serving, theirs + 1)

    def queue_position(self, run: Run) -> int | None:
        """1 for the waiting run that starts next, 2 for the one after; None for a run that is not waiting."""
        names = [waiting.name for waiting in self.waiting_runs()]
        return names.index(run.name) + 1 if run.name in names else None

    def start_waiting(self) -> None:
        """Launch the next waiting run if no training is active. Called when a run's process exits, on every
        start, by a new launcher and by sweep_every."""
        with self._launch_lock():
            self._launch_next()

    def _launch_next(self) -> None:
        """Under the launch lock: the first waiting run is launched, unless a training is active."""
        if self._busy_run() is not None:
            return
        for run in self.waiting_runs():
            with contextlib.suppress(OSError):  # recorded as failed: the next one gets the slot
                self._launch_queued(run)
                return

    def sweep(self, now: float | None = None) -> list[str]:
        """Delete the visitors' runs created over limits.max_age_hours before `now`, never a run without an owner
        nor one whose process lives; returns their names."""
        if self.limits is None or not self.limits.max_age_hours:
            return []
        cutoff = (time.time() if now is None else now) - self.limits.max_age_hours * 3600
        with self._launch_lock():  # a waiting run is not launched while its folder goes
            old = [run for run in list_runs(self.runs_dir) if run.owner() is not None
                   and run.status().get("created", cutoff) < cutoff and not self._in_use(run)]
            for run in old:
                run.delete()
        return [run.name for run in old]

    def sweep_every(self, interval_s: float) -> threading.Event:
        """Every `interval_s` seconds, in a daemon thread: sweep(), then start_waiting(), for the runs whose end
        no watcher of this launcher sees (launched by a previous server, or by another app process sharing the
        folder). Set the returned event to stop."""
        stopped = threading.Event()

        def tidy() -> None:
            while not stopped.wait(interval_s):
                try:
                    self.sweep()
                    self.start_waiting()
                except (OSError, LiftError) as error:  # a folder deleted meanwhile: the next round tries again
                    print(f"lift: tidying the runs folder failed: {error}", file=sys.stderr, flush=True)

        threading.Thread(target=tidy, name="lift-sweep", daemon=True).start()
        return stopped

    def _in_use(self, run: Run) -> bool:
        """Whether a process of the run lives, or this launcher still waits to record its end."""
        return (run.path in self._watched or identity_alive(run.launch_record())
                or identity_alive(run.training_process()))

    # The launch lock

    @contextlib.contextmanager
    def _launch_lock(self):
        """LAUNCH_LOCK_FILE and this server's thread lock."""
        with self._lock, open(self.runs_dir / LAUNCH_LOCK_FILE, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    @contextlib.contextmanager
    def _exclusive(self):
        """Refuses when a training is active; otherwise holds the launch lock until the new one is recorded."""
        with self._launch_lock():
            busy = self._busy_run()
            if busy:
                raise LiftError(f"The server is busy training '{busy.name}'. Wait for it to finish or stop it "
                                "first: one training runs at a time.")
            study = self.active_study()
            if study:
                raise LiftError(f"The server is running the study '{study.name}', one training after another. Wait "
                                "for it to finish or stop it in the Studies tab first: one training runs at a time.")
            yield

    def _busy_run(self) -> Run | None:
        """The active run; a finished run's process still exiting is waited for (up to EXIT_GRACE_S), so that two
        trainings never overlap, and so is the recording of its exit: a watcher that read the run as queued by a
        resume meanwhile would take the new launch for a crash."""
        deadline = time.monotonic() + EXIT_GRACE_S
        while True:
            busy = self.active_run()
            if busy or not (self._exiting() or self._watched) or time.monotonic() > deadline:
                return busy
            time.sleep(0.1)

    def _launch(self, run: Run, command: list[str], config: TrainConfig, log_mode: str) -> subprocess.Popen:
        with run.open_log(log_mode) as log:
            process = start_process(command, log, log_mode)
        run.record_launch(process_identity(process.pid))
        self._watched.add(run.path)
        threading.Thread(target=self._watch, args=(run, process, config), daemon=True).start()
        return process

    def finishing(self, run: Run) -> bool:
        """True until the run's process has ended and its exit code is recorded; a page polls until then,
        since the process writes its final state a moment before it exits."""
        return run.path in self._watched

    def _watch(self, run: Run, process: subprocess.Popen, config: TrainConfig) -> None:
        try:
            exit_code = process.wait()
            # A run resumed since this process ended belongs to the new process: its status is not ours to write.
            if run.launch_record().get("pid") == process.pid:
                self._record_exit(run, exit_code, config)
        finally:
            self._watched.discard(run.path)
        if self.limits is not None:
            self.start_waiting()  # the slot is free

    def _record_exit(self, run: Run, exit_code: int, config: TrainConfig) -> None:
        if not run.exists():
            # Record the settings so the failed run is listed and can be inspected after a refresh.
            run.save_config(asdict(config))
        status = run.reconcile()
        if status.get("state") in ACTIVE_STATES + ("interrupted",):
            # The process died before it could say why (a crash, the OOM killer, a forced stop).
            run.fail(_exit_error(run, exit_code, status), exit_code=exit_code,
                     created=status.get("created", time.time()))
        else:
            run.record(exit_code=exit_code)

    def stop(self, owner: str | None = None) -> tuple[Run, str] | None:
        """Ask the active run to stop: it finishes its step, saves its adapter and ends as `stopped`. With `owner`,
        only a run of theirs: the active run if it is theirs, else their waiting run that would start last, which
        is cancelled (recorded as failed with the error CANCELLED, so it still counts until deleted).

        Returns the run and what happened: "requested"; "waiting" when asked again within FORCE_AFTER_S;
        "killed" when asked again later, for a run that does not reach its next step (no adapter then);
        "cancelled". None when there is nothing to stop.
        """
        run = self.active_run()
        if run is not None and (owner is None or run.owner() == owner):
            return run, self._stop_active(run)
        return None if owner is None else self._cancel_waiting(owner)

    def _stop_active(self, run: Run) -> str:
        if not run.stop_requested():
            # A stop file rather than SIGTERM: a signal during model loading would kill the process before it
            # installs its handler, losing the adapter; the file is read after every training step.
            run.request_stop()
            return "requested"
        # A double click must not throw away a run that was about to stop by itself.
        if (run.seconds_since_stop_request() or 0) < FORCE_AFTER_S:
            return "waiting"
        _kill(run)
        return "killed"

    def _cancel_waiting(self, owner: str) -> tuple[Run, str] | None:
        with self._launch_lock():  # not launched while it is cancelled
            theirs = [run for run in self.waiting_runs() if run.owner() == owner]
            if not theirs:
                return None
            theirs[-1].fail(CANCELLED)
        return theirs[-1], "cancelled"

    def delete(self, run: Run) -> None:
        """Delete a run's folder, unless it is the one training; a waiting run leaves the queue."""
        # A waiting run under the launch lock, so that it is not launched while its folder goes.
        with self._launch_lock() if self.queue_position(run) else contextlib.nullcontext():
            active = self.active_run()
            if active is not None and active.name == run.name:
                raise LiftError(f"Run '{run.name}' is training: stop it in the Train tab before deleting it.")
            run.delete()


def start_process(command: list[str], log, log_mode: str, extra_environment: dict | None = None,
                  own_session: bool = True) -> subprocess.Popen:
    """The engine's CLI as a process of its own, its output appended to `log` after the command line. In its own
    session (the launcher's), a Ctrl-C in the server's terminal is not also delivered to the training; a study's
    runs stay in the study's, so that a Ctrl-C stops them with it."""
    log.write(("\n" if log_mode == "a" else "") + " ".join(command) + "\n\n")
    log.flush()
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
                   **(extra_environment or {})}
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=environment,
                            start_new_session=own_session)


def _check_training_here() -> None:
    """A training process gets no GPU on ZeroGPU hardware: refused there, in words that say where to train."""
    if on_zerogpu():
        raise LiftError(TRAINING_REFUSAL)


def training_command(config: TrainConfig, out_dir, settings_file: Path | None = None) -> list[str]:
    """The `python -m lift_core train` command of a run of `config`. With `settings_file`, the one the launcher
    starts: the settings travel as a file, so no column name, template text or value can pass for a flag.
    Without, the same run spelled out in flags (those of settings that differ from the defaults), as the Train
    tab shows it for the command line."""
    from lift_core.cli import train_flags

    settings = ["--config", str(settings_file)] if settings_file else train_flags(config)
    return [sys.executable, "-m", "lift_core", "train", *settings, "--out", str(out_dir)]


def resume_command(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "lift_core", "train", "--resume", str(run_dir)]


def ran_out_of_memory(run: Run, status: dict) -> bool:
    """Whether a failed run's error, log or exit code looks like the machine ran out of memory."""
    # A forced stop is also a SIGKILL, but not a memory problem.
    return not run.stop_requested() and looks_out_of_memory(f"{status.get('error', '')}\n{run.log_tail(8)}",
                                                            status.get("exit_code"))


def _exit_error(run: Run, exit_code: int, status: dict) -> str:
    """Why a process ended without recording its end, from its exit code or the log's last line."""
    if run.stop_requested() and exit_code == -signal.SIGKILL:
        return ("Stopped by force during the test evaluation; the adapter is saved." if status.get("trained")
                else "Stopped by force before the adapter was saved.")
    if exit_code < 0:
        # The log's last line is whatever the process printed before the signal, not the cause.
        return f"The training process was killed (signal {-exit_code}, {signal.Signals(-exit_code).name})."
    last_line = next((line for line in reversed(run.log_tail(5).splitlines()) if line.strip()), "")
    return last_line or f"exited with code {exit_code}"


def _kill(run: Run) -> None:
    """Kills the run's processes: the one this launcher started and all it started (a multi-process run's
    training processes), else the training process a CLI started. Never a later process that reuses a pid."""
    launched = run.launch_record()
    if identity_alive(launched):
        kill_with_descendants(launched["pid"])
    elif _launched_and_alive(run):
        kill_with_descendants(run.training_process()["pid"])


class _QueueEntry(NamedTuple):
    run: Run
    turn: int
    since: float  # when it was queued
    launched: bool  # since it was queued; else it waits


def _queue_entry(run: Run) -> _QueueEntry | None:
    """How the run was last queued for the slot; None for a run never queued, or cancelled before it started."""
    status = run.status()
    if status.get("waiting_since") is None:
        return None
    launched = run.launch_record().get("launched", 0) >= status["waiting_since"]
    if not launched and status.get("state") != "queued":
        return None
    return _QueueEntry(run, status["turn"], status["waiting_since"], launched)


def _table_rows(config: TrainConfig, dataset, splits) -> int:
    """The rows a run reads: its table's (those without a target too) and those of separate test and validation
    tables."""
    separate = (len(splits.test) if config.test_data else 0) + (len(splits.val) if config.val_data else 0)
    return len(dataset.frame) + dataset.n_dropped + separate


def _launched_and_alive(run: Run) -> bool:
    # A run folder made by the launcher has no status until the subprocess writes one; it is active while
    # the launched process lives.
    return identity_alive(run.training_process())
