"""Owns the training subprocess. The web app never trains in a request: it asks this launcher to start the
engine's CLI, and reads the run folder, so the page stays responsive and a browser refresh loses nothing."""

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

from lift_core.config import TrainConfig
from lift_core.errors import LiftError, looks_out_of_memory
from lift_core.processes import identity_alive, kill_with_descendants, process_identity
from lift_core.runs import ACTIVE_STATES, Run, list_runs, new_run_folder

FORCE_AFTER_S = 10  # a second Stop this long after the first kills the run
# Held while a launch checks that no training is active and starts one: app processes sharing a runs folder
# take turns too, not only this server's threads.
LAUNCH_LOCK_FILE = ".launch.lock"
EXIT_GRACE_S = 10  # how long a launch waits for a finished run's process to exit


class TrainingLauncher:
    """One training at a time per server; the runs folder, not this object, is the source of truth."""

    def __init__(self, runs_dir, allowed_models: list[str] | None = None):
        self.runs_dir = Path(runs_dir)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        # On a public server, the models anyone may load (each costs memory, and a hub id a download).
        self.allowed_models = allowed_models
        self._lock = threading.Lock()
        self._watched: set[Path] = set()  # runs whose process this launcher still waits for

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
        if not calibrate or self.active_run() is not None:
            return estimate_duration(config, self.runs_dir)
        loaded = check_training_inputs(config)  # a mistake is told at once, not after waiting for the launch lock
        # Held like a launch, so that no training starts while the calibration runs.
        with self._exclusive():
            return estimate_duration(config, self.runs_dir, calibrate=True, splits_loaded=loaded)

    def will_time(self, config: TrainConfig) -> bool:
        """Whether estimate(config, calibrate=True) would first time the model: a page says so while it waits."""
        from lift_core.estimate import needs_timing

        return self.active_run() is None and needs_timing(config, self.runs_dir)

    def start(self, config: TrainConfig) -> Run:
        from lift_core.training import check_training_inputs

        self.check_model(config.model)
        # Bad data, a bad template or rows too long are reported here, in the page, instead of as a failed run.
        check_training_inputs(config)
        with self._exclusive():
            run = new_run_folder(self.new_run_path(config))
            settings = run.save_settings(asdict(config))
            self._launch(run, training_command(config, run.path, settings), config, log_mode="w")
        return run

    def resume(self, run: Run) -> str:
        """Start an interrupted, failed or stopped run's training again from its last checkpoint; returns where
        it picks up, in words."""
        run.reconcile()
        problem = run.resume_problem()
        if problem:
            raise LiftError(problem)
        config = run.config()
        self.check_model(config.model)
        with self._exclusive():
            point = run.resume_point()
            # Queued before the process starts, so that it finds the run queued for it (see training.resumable_run).
            run.resume({})
            try:
                process = self._launch(run, resume_command(run.path), config, log_mode="a")
            except OSError as error:  # not left queued with no process, where it could never be resumed again
                run.fail(f"The training process could not be started: {error}")
                raise LiftError(f"Run '{run.name}' could not be resumed: its training process did not start "
                                f"({error}).") from error
            run.record(**process_identity(process.pid))
        return point

    @contextlib.contextmanager
    def _exclusive(self):
        """Refuses when a training is active; otherwise holds the launch lock until the new one is recorded."""
        with self._lock, open(self.runs_dir / LAUNCH_LOCK_FILE, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            # A finished run's process still exiting is waited for, so that two trainings never overlap.
            deadline = time.monotonic() + EXIT_GRACE_S
            while True:
                busy = self.active_run()
                if busy:
                    raise LiftError(f"The server is busy training '{busy.name}'. Wait for it to finish or stop it "
                                    "first: one training runs at a time.")
                if not self._exiting() or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            yield

    def _launch(self, run: Run, command: list[str], config: TrainConfig, log_mode: str) -> subprocess.Popen:
        with run.open_log(log_mode) as log:
            log.write(("\n" if log_mode == "a" else "") + " ".join(command) + "\n\n")
            log.flush()
            environment = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
            # Its own session, so a Ctrl-C in the server's terminal is not also delivered to the run.
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=environment, start_new_session=True)
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

    def stop(self) -> tuple[Run, str] | None:
        """Ask the active run to stop: it finishes its step, saves its adapter and ends as `stopped`.

        Returns the run and what happened: "requested"; "waiting" when asked again within FORCE_AFTER_S;
        "killed" when asked again later, for a run that does not reach its next step (no adapter then).
        """
        run = self.active_run()
        if run is None:
            return None
        if not run.stop_requested():
            # A stop file rather than SIGTERM: a signal during model loading would kill the process before it
            # installs its handler, losing the adapter; the file is read after every training step.
            run.request_stop()
            return run, "requested"
        # A double click must not throw away a run that was about to stop by itself.
        if (run.seconds_since_stop_request() or 0) < FORCE_AFTER_S:
            return run, "waiting"
        _kill(run)
        return run, "killed"

    def delete(self, run: Run) -> None:
        """Delete a run's folder, unless it is the one training."""
        active = self.active_run()
        if active is not None and active.name == run.name:
            raise LiftError(f"Run '{run.name}' is training: stop it in the Train tab before deleting it.")
        run.delete()


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


def _launched_and_alive(run: Run) -> bool:
    # A run folder made by the launcher has no status until the subprocess writes one; it is active while
    # the launched process lives.
    return identity_alive(run.training_process())
