"""A run is a folder, and this module is its only writer: every file in it is written by a method of `Run`.

    config.json     everything needed to rerun (a TrainConfig)
    dataset.json    what the data turned out to be (a DatasetInfo)
    status.json     the state, its history, the training process (pid and start time) and the error
    metrics.jsonl   one JSON object per logging step, flushed per line
    log.txt         the training process's output (its launcher opens it through `open_log`)
    splits/         train.csv, val.csv, test.csv exactly as used
    adapter/        the LoRA adapter (peft safetensors), of the best validation step
    checkpoints/    the latest checkpoint (adapter, optimizer, scheduler, RNG, trainer state; lift_state.json last),
                    saved at each epoch's end, at least every 5 minutes and on a stop: what --resume continues from.
                    The Trainer writes its own files into the folder `checkpoints_dir` names; the run completes it.
    eval.json       test metrics
    maps/           finished maps over the feature plane (the model's boundary and spread, a baseline's), one CSV
                    per kind and settings, so a map asked for again is shown without the model
    predictions.csv the test rows with y_true, y_pred and probabilities or spread
    baselines.csv   the scikit-learn baselines' test scores on the same split, once someone asks for them
    launcher.json   pid and launch time, written by the launcher before the process writes status.json
    settings.json   the settings the launcher hands to the training process (`train --config`)
    STOP            present once a stop was requested; the training process checks for it after every step

A run opened read-only (a shipped example) refuses every write: it can be read, evaluated from its saved files
and explored, never resumed, stopped, deleted or changed.

The state is a small state machine (TRANSITIONS): each change is checked against the current state and written
under a lock on the folder, so the training process, the launcher's watcher and a second server never undo each
other's writes. Reading never writes: a run whose process died reads as running until `reconcile()` says so.
"""

import contextlib
import fcntl
import functools
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lift_core.errors import LiftError
from lift_core.files import json_default, read_json, write_atomically, write_json_atomically
from lift_core.metrics import SUMMARY_METRICS
from lift_core.processes import identity_alive

# Which state may follow which; None is a folder with no status yet (a launch whose process has not written one).
TRANSITIONS = {
    None: ("queued", "failed"),
    "queued": ("running", "failed"),
    "running": ("completed", "failed", "stopped", "interrupted"),
    # The launcher learns why a process died after a reader found it dead; the others can be resumed.
    "interrupted": ("queued", "failed"),
    "failed": ("queued", "failed"),  # failed again: a multi-process launch records the process that failed first
    "stopped": ("queued",),
    "completed": (),
}
STATES = tuple(state for state in TRANSITIONS if state)
ACTIVE_STATES = ("queued", "running")
RESUMABLE_STATES = ("interrupted", "failed", "stopped")
# Runs that really trained, so their throughput is measured; a stopped run trained at the same speed.
FINISHED_STATES = ("completed", "stopped")

_CONFIG = "config.json"
_DATASET = "dataset.json"
_STATUS = "status.json"
_METRICS = "metrics.jsonl"
_LOG = "log.txt"
_SPLITS = "splits"
_ADAPTER = "adapter"
_CHECKPOINTS = "checkpoints"
_CHECKPOINT_STATE = "lift_state.json"  # written last into a checkpoint: a folder without it was cut off mid-save
_EVAL = "eval.json"
_PREDICTIONS = "predictions.csv"
_BASELINES = "baselines.csv"
_MAPS = "maps"
_LAUNCHER = "launcher.json"
_SETTINGS = "settings.json"
_STOP = "STOP"
_LOCK = ".lock"


class RunStateError(LiftError):
    """A state change the run's current state does not allow."""


@dataclass
class DatasetInfo:
    task: str  # "classification" | "regression"
    target: str
    features: list[str]
    classes: list[str] | None
    n_dropped: int
    n_train: int
    n_val: int
    n_test: int
    # Regression falls back to this when every sample of a row is unparsable, as in the paper.
    train_target_mean: float | None = None


def _writes(method):
    """A method that writes into the run folder: refused for a read-only run, whatever asks."""
    @functools.wraps(method)
    def checked(self, *args, **kwargs):
        if self.read_only:
            raise RunStateError(f"Run '{self.name}' is a shipped example: it can be opened, evaluated and explored, "
                                "but not resumed, stopped, deleted or changed. Train your own in the Train tab.")
        return method(self, *args, **kwargs)
    return checked


class Run:
    def __init__(self, path, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only

    @property
    def name(self) -> str:
        return self.path.name

    def exists(self) -> bool:
        """Whether the folder holds a run (a launch records its settings a moment after the folder appears)."""
        return (self.path / _CONFIG).exists()

    # Reading

    def config(self) -> "TrainConfig":
        """The run's settings, as it trained (see TrainConfig.of_run for runs older than a setting)."""
        from lift_core.config import TrainConfig

        return TrainConfig.of_run(self.saved_config())

    def saved_config(self) -> dict:
        """config.json as it was written."""
        return read_json(self.path / _CONFIG) or {}

    def dataset_info(self) -> DatasetInfo | None:
        """What the data turned out to be; None until the training process has read it."""
        saved = read_json(self.path / _DATASET)
        return DatasetInfo(**saved) if saved else None

    @property
    def adapter_dir(self) -> Path:
        """Where the adapter is read from."""
        return self.path / _ADAPTER

    def has_adapter(self) -> bool:
        return self.adapter_dir.is_dir()

    @property
    def checkpoints_dir(self) -> Path:
        """The folder the Trainer writes its checkpoints into (its output_dir)."""
        return self.path / _CHECKPOINTS

    def split(self, name: str) -> "pd.DataFrame":
        """The train, val or test rows exactly as the run used them."""
        return self._read_table(self.path / _SPLITS / f"{name}.csv", [self.dataset_info().target])

    def predictions(self) -> "pd.DataFrame":
        """predictions.csv: the test rows with y_true, y_pred and probabilities or spread."""
        return self._read_table(self.path / _PREDICTIONS, ["y_true", "y_pred"])

    def _read_table(self, path: Path, label_columns: list[str]) -> "pd.DataFrame":
        import pandas as pd

        # Class labels are text everywhere; without this a CSV round trip would turn "007" into 7.
        classification = self.dataset_info().task == "classification"
        return pd.read_csv(path, dtype={column: str for column in label_columns} if classification else None)

    def eval_results(self) -> dict | None:
        return read_json(self.path / _EVAL)

    def baselines(self) -> "pd.DataFrame | None":
        import pandas as pd

        saved = self.path / _BASELINES
        return pd.read_csv(saved) if saved.exists() else None

    def owner(self) -> str | None:
        """The visitor who started the run on a multi-user server; None for a single user's run."""
        return self.status().get("owner")

    def saved_map(self, key: str) -> "pd.DataFrame | None":
        """The finished map saved under `key` (boundary.map_key), or None."""
        path = self.path / _MAPS / f"{key}.csv"
        return self._read_table(path, ["y_pred"]) if path.is_file() else None

    def status(self) -> dict:
        """The recorded status, as it is on disk."""
        return read_json(self.path / _STATUS) or {"state": "queued"}

    @staticmethod
    def resumed_history(status: dict) -> list[str] | None:
        """The states a resumed run went through (queued, running, stopped, queued, ...), from its status; None for
        a run that ran once, whose state says it all."""
        states = [entry["state"] for entry in status.get("history", [])]
        return states if states.count("running") > 1 else None

    def launch_record(self) -> dict:
        """What the launcher recorded of the process it started: pid, pid_start, launched (empty if none)."""
        return read_json(self.path / _LAUNCHER) or {}

    def training_process(self) -> dict:
        """The run's process (pid and start time): from its status, else, while the launched process has not
        written one yet, from launcher.json."""
        status = self.status()
        return status if status.get("pid") else self.launch_record()

    def metrics(self) -> list[dict]:
        rows = []
        try:
            lines = (self.path / _METRICS).read_text().splitlines()
        except OSError:
            return rows
        for line in lines:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # the writer may be halfway through its last line
        return rows

    def log_tail(self, n_lines: int = 30) -> str:
        try:
            with open(self.path / _LOG, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - 64_000))
                text = handle.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        # tqdm redraws with carriage returns: keep only the latest state of each line.
        lines = [line.split("\r")[-1] for line in text.splitlines()]
        return "\n".join(lines[-n_lines:])

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint folder, if any."""
        complete = [folder for folder in self.checkpoints_dir.glob("checkpoint-*")
                    if (folder / _CHECKPOINT_STATE).exists()]
        return max(complete, key=lambda folder: int(folder.name.rsplit("-", 1)[1]), default=None)

    @staticmethod
    def checkpoint_state(checkpoint: Path | None) -> dict:
        """What complete_checkpoint recorded in a checkpoint: its step, elapsed seconds and validator state."""
        return read_json(checkpoint / _CHECKPOINT_STATE) if checkpoint else {}

    def resume_point(self) -> str:
        """Where `--resume` would pick the run up, in words."""
        if self.status().get("trained"):
            return "at its test evaluation (training had finished)"
        checkpoint = self.latest_checkpoint()
        if checkpoint is None:
            return "from step 0 (no checkpoint was saved)"
        return f"from step {self.checkpoint_state(checkpoint)['step']}"

    def resume_problem(self) -> str | None:
        """Why this run cannot be resumed, or None when it can."""
        state = self.status().get("state")
        if state not in RESUMABLE_STATES:
            return f"Run '{self.name}' is {state}: only an interrupted, failed or stopped run can be resumed."
        if not (self.path / _SPLITS / "train.csv").exists() or not (self.path / _DATASET).exists():
            return (f"Run '{self.name}' ended before it saved its data splits, so there is nothing to resume: "
                    "fix what its error says and start a new run.")
        return None

    def stop_requested(self) -> bool:
        return (self.path / _STOP).exists()

    def seconds_since_stop_request(self) -> float | None:
        try:
            return time.time() - (self.path / _STOP).stat().st_mtime
        except OSError:
            return None

    def summary(self) -> dict:
        config, status, evaluation = self.saved_config(), self.status(), self.eval_results() or {}
        return {
            "run": self.name,
            "state": status.get("state"),
            "model": config.get("model"),
            "template": config.get("template"),
            "data": Path(config.get("data") or "").name,
            "target": config.get("target"),
            **{k: evaluation.get(k) for k in SUMMARY_METRICS},
            "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(status.get("created", 0))),
        }

    def zip_adapter(self) -> str:
        """The adapter as a zip in a fresh temporary folder, so two downloads never overwrite each other."""
        if not self.has_adapter():
            raise LiftError(f"Run '{self.name}' has no adapter: it ended before saving one.")
        base_name = f"{tempfile.mkdtemp(prefix='lift-adapter-')}/{self.name}-adapter"
        return shutil.make_archive(base_name, "zip", root_dir=self.adapter_dir)

    # The state machine

    def start(self, identity: dict, **fields) -> None:
        """queued → running, by the training process (`identity`: processes.process_identity)."""
        self._transition("running", **identity, started=time.time(), **fields)

    def complete(self) -> None:
        self._transition("completed", finished=time.time())

    def mark_stopped(self, note: str | None = None) -> None:
        self._transition("stopped", finished=time.time(), **({"note": note} if note else {}))

    def fail(self, error: str, **fields) -> None:
        self._transition("failed", error=error, finished=time.time(), **fields)

    def resume(self, identity: dict) -> None:
        """An interrupted, failed or stopped run is queued again for the process `identity`, which continues it.
        The stop request and the old end are forgotten; the history keeps them."""
        problem = self.resume_problem()
        if problem:
            raise RunStateError(problem)
        (self.path / _STOP).unlink(missing_ok=True)  # else the resumed run would stop at its first step
        self._transition("queued", **{"pid": None, "pid_start": None, **identity}, error=None, exit_code=None, finished=None, note=None,
                         resumed=time.time())

    def reconcile(self) -> dict:
        """A running run whose process has died without saying so becomes interrupted; returns the status.

        Called where a decision or a page depends on the state: the launcher and the web app."""
        status = self.status()
        if status.get("state") == "running" and not identity_alive(status):
            with contextlib.suppress(RunStateError):  # another reader, or the process itself, got there first
                self._transition("interrupted", error="The training process ended without recording a result.",
                                 expect="running")
            status = self.status()
        return status

    def record(self, **fields) -> None:
        """Facts about the run that change no state: its hardware, best step, exit code."""
        if "state" in fields:
            raise RunStateError("A run's state changes only through its transitions (start, complete, ...).")
        with self._locked():
            self._write_status({**self._saved_status(), **fields})

    def _transition(self, state: str, expect: str | None = None, **fields) -> None:
        with self._locked():
            current = self._saved_status()
            was = current.get("state")
            if state not in TRANSITIONS[was] or (expect is not None and was != expect):
                raise RunStateError(f"Run '{self.name}' is {was or 'not started'}: it cannot become {state}.")
            history = current.get("history", []) + [{"state": state, "time": time.time()}]
            self._write_status({**current, **fields, "state": state, "history": history})

    def _saved_status(self) -> dict:
        return read_json(self.path / _STATUS) or {}

    def _write_status(self, status: dict) -> None:
        write_json_atomically(self.path / _STATUS, {**status, "updated": time.time()})

    @contextlib.contextmanager
    @_writes
    def _locked(self):
        """Held while the status is read, changed and written back, by any thread of any process."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / _LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    # Writing the run's files

    @_writes
    def save_config(self, config: dict) -> None:
        write_json_atomically(self.path / _CONFIG, config)

    @_writes
    def save_dataset(self, info: DatasetInfo, splits) -> None:
        """The splits as trained on, and what the data turned out to be."""
        (self.path / _SPLITS).mkdir(exist_ok=True)
        for name in ("train", "val", "test"):
            getattr(splits, name).to_csv(self.path / _SPLITS / f"{name}.csv", index=False)
        write_json_atomically(self.path / _DATASET, asdict(info))

    @_writes
    def append_metrics(self, row: dict) -> None:
        # Non-finite floats would make the line invalid JSON for the browser.
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        with open(self.path / _METRICS, "a") as handle:
            handle.write(json.dumps(clean, default=json_default) + "\n")
            handle.flush()

    @_writes
    def drop_metrics_after(self, step: int) -> None:
        """Forget the metrics logged after `step`: a resumed run logs those steps again."""
        rows = [row for row in self.metrics() if (row.get("step") or 0) <= step]
        text = "".join(json.dumps(row) + "\n" for row in rows)
        write_atomically(self.path / _METRICS, lambda partial: partial.write_text(text))

    @_writes
    def complete_checkpoint(self, step: int, state: dict, save_extras) -> None:
        """After the Trainer wrote checkpoint-`step`: `save_extras(folder)`, then the state file, written last to
        mark it complete; only then are older checkpoints removed, so a kill mid-save leaves the previous one."""
        folder = self.checkpoints_dir / f"checkpoint-{step}"
        save_extras(folder)
        write_json_atomically(folder / _CHECKPOINT_STATE, {"step": step, **state})
        for older in self.checkpoints_dir.glob("checkpoint-*"):
            if older != folder:
                shutil.rmtree(older, ignore_errors=True)

    @_writes
    def save_adapter(self, model) -> None:
        # Written whole or not at all: a kill mid-save leaves no adapter folder rather than a truncated one.
        write_atomically(self.adapter_dir, model.save_pretrained, replace_folder=True)

    @_writes
    def pack_adapter_for_shipping(self) -> None:
        """The adapter as a run that ships with the app keeps it: its weights in 16-bit floats (half the bytes; the
        model reads them back in its own dtype) and its config's module list sorted (peft writes it in set order,
        which differs from process to process), so that two makes of it are the same bytes. Whatever was computed
        from the 32-bit weights is forgotten."""
        from safetensors.torch import load_file, save_file

        for weights in self.adapter_dir.glob("*.safetensors"):
            halved = {name: tensor.half() if tensor.is_floating_point() else tensor
                      for name, tensor in load_file(weights).items()}
            write_atomically(weights, lambda partial, tensors=halved: save_file(tensors, str(partial)))
        config_file = self.adapter_dir / "adapter_config.json"
        config = read_json(config_file)
        if isinstance(config.get("target_modules"), list):
            write_json_atomically(config_file, {**config, "target_modules": sorted(config["target_modules"])})
        self.forget_evaluation()

    @_writes
    def save_evaluation(self, results: dict, predictions: "pd.DataFrame") -> None:
        predictions.to_csv(self.path / _PREDICTIONS, index=False)
        write_json_atomically(self.path / _EVAL, results)

    @_writes
    def forget_evaluation(self) -> None:
        """eval.json, predictions.csv and the model's saved maps describe an adapter that a resumed run replaces
        (a baseline's maps stay true, but are few and cheap to draw again)."""
        for stale in (_EVAL, _PREDICTIONS):
            (self.path / stale).unlink(missing_ok=True)
        shutil.rmtree(self.path / _MAPS, ignore_errors=True)

    @_writes
    def save_baselines(self, table: "pd.DataFrame") -> None:
        write_atomically(self.path / _BASELINES, lambda partial: table.to_csv(partial, index=False))

    @_writes
    def request_stop(self) -> None:
        (self.path / _STOP).touch()

    @_writes
    def save_settings(self, config: dict) -> Path:
        """The settings a launched training process reads (`train --config`); returns their file."""
        write_json_atomically(self.path / _SETTINGS, config)
        return self.path / _SETTINGS

    @_writes
    def open_log(self, mode: str):
        """log.txt, for the launched process's output: "w" for a new run, "a" for a resumed one."""
        return open(self.path / _LOG, mode)

    @_writes
    def record_launch(self, identity: dict) -> None:
        write_json_atomically(self.path / _LAUNCHER, {**identity, "launched": time.time()})

    @_writes
    def delete(self) -> None:
        shutil.rmtree(self.path)

    @_writes
    def save_map(self, key: str, grid: "pd.DataFrame") -> None:
        (self.path / _MAPS).mkdir(exist_ok=True)
        write_atomically(self.path / _MAPS / f"{key}.csv", lambda partial: grid.to_csv(partial, index=False))


def check_new_run_folder(path) -> None:
    if Run(path).exists():
        raise LiftError(f"Run folder '{path}' already holds a run. Choose a new --out folder.")


def new_run_folder(path) -> Run:
    """An empty folder for a run that a launched process will record (refused if the folder exists)."""
    Path(path).mkdir(parents=True)
    return Run(path)


def create_run(path, config: dict) -> Run:
    check_new_run_folder(path)
    run = Run(path)
    run.path.mkdir(parents=True, exist_ok=True)
    run.save_config(config)
    run._transition("queued", created=time.time())
    return run


def list_runs(runs_dir) -> list[Run]:
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    runs = [run for run in map(Run, root.iterdir()) if run.exists()]
    return sorted(runs, key=lambda run: run.status().get("created", 0), reverse=True)
