"""A run is a folder: the CLI writes it, the web app only reads it.

    config.json     everything needed to rerun (a TrainConfig)
    dataset.json    what the data turned out to be: task, classes, features, split sizes
    status.json     state + pid + error, replaced atomically
    metrics.jsonl   one JSON object per logging step, flushed per line
    log.txt         the training process's output (written by whoever launched it)
    splits/         train.csv, val.csv, test.csv exactly as used
    adapter/        the LoRA adapter (peft safetensors)
    eval.json       test metrics
    predictions.csv the test rows with y_true, y_pred and probabilities or spread
"""

import json
import math
import os
import shutil
import time
from pathlib import Path

STATES = ("queued", "running", "completed", "failed", "stopped", "interrupted")
ACTIVE_STATES = ("queued", "running")
STOP_FILE = "STOP"


def write_json_atomically(path: Path, payload: dict) -> None:
    # A reader polling the file must never see half of it.
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(payload, indent=2, default=_json_default))
    os.replace(partial, path)


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); its state file says whether it is gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
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
        if status.get("state") == "running" and not pid_alive(status.get("pid")):
            status = {**status, "state": "interrupted",
                      "error": "The training process ended without recording a result."}
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
            **{k: evaluation.get(k) for k in ("accuracy", "macro_f1", "rmse", "mae", "invalid_rate")},
            "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(status.get("created", 0))),
        }

    def delete(self) -> None:
        shutil.rmtree(self.path)


def create_run(path, config: dict) -> Run:
    run = Run(path)
    if run.file("config.json").exists():
        from lift_core.errors import LiftError

        raise LiftError(f"Run folder '{path}' already holds a run. Choose a new --out folder.")
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
