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
from lift_core.runs import (ACTIVE_STATES, LAUNCHER_FILE, SETTINGS_FILE, STOP_FILE, Run, descendants, list_runs,
                            pid_alive, process_identity, read_json, write_json_atomically)

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
            status = run.status()
            if status.get("state") in ACTIVE_STATES and _launched_and_alive(run, status):
                return run
        return None

    def _exiting(self) -> bool:
        """Whether a launched run has recorded its end but its process has not exited yet."""
        for run in list_runs(self.runs_dir):
            launched = read_json(run.file(LAUNCHER_FILE)) or {}
            if pid_alive(launched.get("pid"), launched.get("pid_start")):
                return True
        return False

    def latest_run(self) -> Run | None:
        """What a freshly opened page shows: the training in progress, else the most recent run."""
        return self.active_run() or next(iter(list_runs(self.runs_dir)), None)

    def _launching_runs(self) -> list[Run]:
        # Launched, but the subprocess has not written config.json yet, so list_runs cannot see them.
        return [Run(path) for path in self.runs_dir.iterdir()
                if (path / LAUNCHER_FILE).exists() and not (path / "config.json").exists()]

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

    def start(self, config: TrainConfig) -> Run:
        from lift_core.training import check_training_inputs

        self.check_model(config.model)
        # Bad data, a bad template or rows too long are reported here, in the page, instead of as a failed run.
        check_training_inputs(config)
        with self._exclusive():
            run = Run(self.new_run_path(config))
            run.path.mkdir(parents=True)
            # The settings travel as a file: no column name, template text or value can pass for a flag.
            write_json_atomically(run.file(SETTINGS_FILE), asdict(config))
            self._launch(run, training_command(run.file(SETTINGS_FILE), run.path), config, log_mode="w")
        return run

    def resume(self, run: Run) -> str:
        """Start an interrupted, failed or stopped run's training again from its last checkpoint; returns where
        it picks up, in words."""
        problem = run.resume_problem()
        if problem:
            raise LiftError(problem)
        config = TrainConfig.of_run(run.config())
        self.check_model(config.model)
        with self._exclusive():
            point = run.resume_point()
            run.file(STOP_FILE).unlink(missing_ok=True)  # else the resumed run would stop at its first step
            process = self._launch(run, resume_command(run.path), config, log_mode="a")
            # Active from now on, before the process writes its own status.
            run.set_status("queued", **process_identity(process.pid))
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
        with open(run.file("log.txt"), log_mode) as log:
            log.write(("\n" if log_mode == "a" else "") + " ".join(command) + "\n\n")
            log.flush()
            environment = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
            # Its own session, so a Ctrl-C in the server's terminal is not also delivered to the run.
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=environment, start_new_session=True)
        write_json_atomically(run.file(LAUNCHER_FILE), {**process_identity(process.pid), "launched": time.time()})
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
            if (read_json(run.file(LAUNCHER_FILE)) or {}).get("pid") == process.pid:
                self._record_exit(run, exit_code, config)
        finally:
            self._watched.discard(run.path)

    def _record_exit(self, run: Run, exit_code: int, config: TrainConfig) -> None:
        state = run.status().get("state")
        if not run.file("status.json").exists() or state in ACTIVE_STATES + ("interrupted",):
            # The process died before it could say why (a crash, the OOM killer, a forced stop).
            if not run.file("config.json").exists():
                # Record the settings so the failed run is listed and can be inspected after a refresh.
                write_json_atomically(run.file("config.json"), asdict(config))
            if run.stop_requested() and exit_code == -signal.SIGKILL:
                error = ("Stopped by force during the test evaluation; the adapter is saved."
                         if run.status().get("trained") else "Stopped by force before the adapter was saved.")
            elif exit_code < 0:
                # The log's last line is whatever the process printed before the signal, not the cause.
                error = f"The training process was killed (signal {-exit_code}, {signal.Signals(-exit_code).name})."
            else:
                last_line = next((line for line in reversed(run.log_tail(5).splitlines()) if line.strip()), "")
                error = last_line or f"exited with code {exit_code}"
            run.set_status("failed", error=error, exit_code=exit_code,
                           created=run.status().get("created", time.time()))
        else:
            run.set_status(state, exit_code=exit_code)

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
        if time.time() - run.file(STOP_FILE).stat().st_mtime < FORCE_AFTER_S:
            return run, "waiting"
        _kill(run, run.status())
        return run, "killed"

    def delete(self, run: Run) -> None:
        """Delete a run's folder, unless it is the one training."""
        active = self.active_run()
        if active is not None and active.name == run.name:
            raise LiftError(f"Run '{run.name}' is training: stop it in the Train tab before deleting it.")
        run.delete()


def training_command(settings: Path, out_dir: Path) -> list[str]:
    """The training process the launcher starts: the engine's CLI, reading its settings from a file."""
    return [sys.executable, "-m", "lift_core", "train", "--config", str(settings), "--out", str(out_dir)]


def resume_command(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "lift_core", "train", "--resume", str(run_dir)]


def ran_out_of_memory(run: Run, status: dict) -> bool:
    """Whether a failed run's error, log or exit code looks like the machine ran out of memory."""
    # A forced stop is also a SIGKILL, but not a memory problem.
    return not run.stop_requested() and looks_out_of_memory(f"{status.get('error', '')}\n{run.log_tail(8)}",
                                                            status.get("exit_code"))


def _training_process(run: Run, status: dict) -> dict:
    """The run's pid and its start time: from its status, else (a run whose process has not written one yet)
    from launcher.json."""
    return status if status.get("pid") else read_json(run.file(LAUNCHER_FILE)) or {}


def _kill(run: Run, status: dict) -> None:
    """Kills the run's processes: the one this launcher started and all it started (a multi-process run's
    training processes), else the training process a CLI started."""
    launched = read_json(run.file(LAUNCHER_FILE)) or {}
    if pid_alive(launched.get("pid"), launched.get("pid_start")):  # never a later process that reuses the pid
        # The training processes first: the launching process's death would leave them to init.
        doomed = [*descendants(launched["pid"]), launched["pid"]]
    elif _launched_and_alive(run, status):
        doomed = [_training_process(run, status)["pid"]]
    else:
        doomed = []
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _launched_and_alive(run: Run, status: dict) -> bool:
    # A run folder made by the launcher has no status until the subprocess writes one; it is active while
    # the launched process lives.
    process = _training_process(run, status)
    return pid_alive(process.get("pid"), process.get("pid_start"))
