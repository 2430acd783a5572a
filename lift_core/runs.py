"""A run is a folder: the CLI writes it, the web app only reads it.

    config.json     everything needed to rerun (a TrainConfig)
    dataset.json    what the data turned out to be: task, classes, features, split sizes
    status.json     state + pid (and its start time) + error, replaced atomically
    metrics.jsonl   one JSON object per logging step, flushed per line
    log.txt         the training process's output (written by whoever launched it)
    splits/         train.csv, val.csv, test.csv exactly as used
    adapter/        the LoRA adapter (peft safetensors), of the best validation step
    checkpoints/    the latest checkpoint (adapter, optimizer, scheduler, RNG, trainer state; lift_state.json last),
                    saved at each epoch's end, at least every 5 minutes and on a stop: what --resume continues from
    eval.json       test metrics
    predictions.csv the test rows with y_true, y_pred and probabilities or spread
    baselines.csv   the scikit-learn baselines' test scores on the same split, once someone asks for them
    launcher.json   pid and launch time, written by the launcher before the process writes status.json
    settings.json   the settings the launcher hands to the training process (`train --config`)
    STOP            present once a stop was requested; the training process checks for it after every step
"""

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

from lift_core.errors import LiftError
from lift_core.files import write_atomically
from lift_core.metrics import SUMMARY_METRICS

STATES = ("queued", "running", "completed", "failed", "stopped", "interrupted")
ACTIVE_STATES = ("queued", "running")
RESUMABLE_STATES = ("interrupted", "failed", "stopped")
STOP_FILE = "STOP"
LAUNCHER_FILE = "launcher.json"
SETTINGS_FILE = "settings.json"
BASELINES_FILE = "baselines.csv"
CHECKPOINTS_DIR = "checkpoints"
# Written last into a checkpoint folder: a folder without it was cut off mid-save and is never resumed from.
CHECKPOINT_STATE_FILE = "lift_state.json"


def write_json_atomically(path: Path, payload: dict) -> None:
    text = json.dumps(payload, indent=2, default=_json_default)
    write_atomically(path, lambda partial: partial.write_text(text))


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _stat_fields(stat: Path) -> list[str]:
    """The fields of a /proc/PID/stat file after the process's name, which may itself hold spaces and brackets:
    the state is [0], the parent's pid [1], the start time [19]."""
    return stat.read_text().rsplit(")", 1)[1].split()


def process_start(pid: int) -> int | None:
    """When process `pid` began, in clock ticks since boot (field 22 of /proc/PID/stat); None where unknown."""
    try:
        return int(_stat_fields(Path(f"/proc/{pid}/stat"))[19])
    except (OSError, IndexError, ValueError):
        return None


def descendants(pid: int) -> list[int]:
    """The processes `pid` started, and theirs, from /proc (empty where there is none): torchrun starts each
    training process in a session of its own, so a kill of the launching process's group misses them."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(_stat_fields(stat)[1])
        except (OSError, IndexError, ValueError):
            continue  # it ended meanwhile
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, waiting = [], [pid]
    while waiting:
        offspring = children.get(waiting.pop(), [])
        found += offspring
        waiting += offspring
    return found


def process_identity(pid: int) -> dict:
    """What a run records of its process: the pid, and its start time to tell it from a later process that
    reuses the pid (common after a container restart)."""
    return {"pid": pid, "pid_start": process_start(pid)}


def pid_alive(pid: int | None, started: int | None = None) -> bool:
    """Whether process `pid` lives, and, given its recorded start time, is still the same process."""
    if not pid:
        return False
    if started is not None and process_start(pid) not in (None, started):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); its state file says whether it is gone.
    try:
        return _stat_fields(Path(f"/proc/{pid}/stat"))[0] != "Z"
    except OSError:
        return True


class Run:
    def __init__(self, path):
        self.path = Path(path)

    @property
    def name(self) -> str:
        return self.path.name

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter"

    @property
    def splits_dir(self) -> Path:
        return self.path / "splits"

    def config(self) -> dict:
        return read_json(self.file("config.json")) or {}

    def dataset_info(self) -> dict:
        return read_json(self.file("dataset.json")) or {}

    def split(self, name: str) -> "pd.DataFrame":
        """The train, val or test rows exactly as the run used them."""
        return self._read_table(self.splits_dir / f"{name}.csv", [self.dataset_info().get("target")])

    def predictions(self) -> "pd.DataFrame":
        """predictions.csv: the test rows with y_true, y_pred and probabilities or spread."""
        return self._read_table(self.file("predictions.csv"), ["y_true", "y_pred"])

    def _read_table(self, path: Path, label_columns: list[str]) -> "pd.DataFrame":
        import pandas as pd

        # Class labels are text everywhere; without this a CSV round trip would turn "007" into 7.
        classification = self.dataset_info().get("task") == "classification"
        return pd.read_csv(path, dtype={column: str for column in label_columns} if classification else None)

    def eval_results(self) -> dict | None:
        return read_json(self.file("eval.json"))

    def status(self) -> dict:
        """The recorded status; a run whose process died without saying so reads as interrupted."""
        status = read_json(self.file("status.json")) or {"state": "queued"}
        if status.get("state") == "running" and not pid_alive(status.get("pid"), status.get("pid_start")):
            # Written back, so the run stays interrupted even if its pid is reused later.
            self.set_status("interrupted", error="The training process ended without recording a result.")
            status = read_json(self.file("status.json"))
        return status

    def set_status(self, state: str, **fields) -> None:
        assert state in STATES, state
        previous = read_json(self.file("status.json")) or {}
        write_json_atomically(self.file("status.json"),
                              {**previous, **fields, "state": state, "updated": time.time()})

    def append_metrics(self, row: dict) -> None:
        # Non-finite floats would make the line invalid JSON for the browser.
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        with open(self.file("metrics.jsonl"), "a") as handle:
            handle.write(json.dumps(clean, default=_json_default) + "\n")
            handle.flush()

    def metrics(self) -> list[dict]:
        rows = []
        try:
            lines = self.file("metrics.jsonl").read_text().splitlines()
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
            with open(self.file("log.txt"), "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - 64_000))
                text = handle.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        # tqdm redraws with carriage returns: keep only the latest state of each line.
        lines = [line.split("\r")[-1] for line in text.splitlines()]
        return "\n".join(lines[-n_lines:])

    def drop_metrics_after(self, step: int) -> None:
        """Forget the metrics logged after `step`: a resumed run logs those steps again."""
        rows = [row for row in self.metrics() if (row.get("step") or 0) <= step]
        text = "".join(json.dumps(row) + "\n" for row in rows)
        write_atomically(self.file("metrics.jsonl"), lambda partial: partial.write_text(text))

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint folder, if any."""
        complete = [folder for folder in (self.path / CHECKPOINTS_DIR).glob("checkpoint-*")
                    if (folder / CHECKPOINT_STATE_FILE).exists()]
        return max(complete, key=lambda folder: int(folder.name.rsplit("-", 1)[1]), default=None)

    def resume_point(self) -> str:
        """Where `--resume` would pick the run up, in words."""
        if self.status().get("trained"):
            return "at its test evaluation (training had finished)"
        checkpoint = self.latest_checkpoint()
        if checkpoint is None:
            return "from step 0 (no checkpoint was saved)"
        return f"from step {read_json(checkpoint / CHECKPOINT_STATE_FILE)['step']}"

    def resume_problem(self) -> str | None:
        """Why this run cannot be resumed, or None when it can."""
        state = self.status().get("state")
        if state not in RESUMABLE_STATES:
            return (f"Run '{self.name}' is {state}: only an interrupted, failed or stopped run can be resumed.")
        if not (self.splits_dir / "train.csv").exists() or not self.file("dataset.json").exists():
            return (f"Run '{self.name}' ended before it saved its data splits, so there is nothing to resume: "
                    "fix what its error says and start a new run.")
        return None

    def request_stop(self) -> None:
        self.file(STOP_FILE).touch()

    def stop_requested(self) -> bool:
        return self.file(STOP_FILE).exists()

    def summary(self) -> dict:
        config, status, evaluation = self.config(), self.status(), self.eval_results() or {}
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
        if not self.adapter_dir.is_dir():
            raise LiftError(f"Run '{self.name}' has no adapter: it ended before saving one.")
        base_name = f"{tempfile.mkdtemp(prefix='lift-adapter-')}/{self.name}-adapter"
        return shutil.make_archive(base_name, "zip", root_dir=self.adapter_dir)

    def delete(self) -> None:
        shutil.rmtree(self.path)


def check_new_run_folder(path) -> None:
    if Run(path).file("config.json").exists():
        raise LiftError(f"Run folder '{path}' already holds a run. Choose a new --out folder.")


def create_run(path, config: dict) -> Run:
    check_new_run_folder(path)
    run = Run(path)
    run.path.mkdir(parents=True, exist_ok=True)
    write_json_atomically(run.file("config.json"), config)
    run.set_status("queued", created=time.time())
    return run


def list_runs(runs_dir) -> list[Run]:
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    runs = [Run(p) for p in root.iterdir() if (p / "config.json").exists()]
    return sorted(runs, key=lambda run: run.status().get("created", 0), reverse=True)


def find_run(runs_dir, name: str | None) -> Run:
    """The listed run of that name. Names come from the browser: only a listed name reaches the file system."""
    if not name:
        raise LiftError("Choose a run first.")
    run = next((run for run in list_runs(runs_dir) if run.name == name), None)
    if run is None:
        raise LiftError(f"There is no run named '{name}'. Refresh the list of runs to see the current ones.")
    return run


def trained_run_names(runs_dir) -> list[str]:
    """Names of the runs with a saved adapter, newest first: the ones there is a model to ask."""
    return [run.name for run in list_runs(runs_dir) if run.adapter_dir.exists()]


def finished_trained_run(runs_dir, name: str | None) -> Run:
    """The named run, once it has finished with a saved adapter: a model that can be evaluated and asked."""
    if not name:
        raise LiftError("Choose a run first (train one in the Train tab, then press ↻ Refresh runs).")
    run = find_run(runs_dir, name)
    state = run.status().get("state")
    if state in ACTIVE_STATES:
        raise LiftError(f"Run '{name}' is still {state}; evaluate it once it has finished.")
    if not run.adapter_dir.exists():
        raise LiftError(f"Run '{name}' has no trained adapter (it ended as '{state}'), so there is no model to "
                        "evaluate.")
    return run
