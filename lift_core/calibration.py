"""How fast a model trains on this machine, before its first run here: a short real training, timed.

A guess from the model's size is off by several times (start-up dominates a small model, and machines differ by
their vector units), so the first estimate times CALIBRATION_STEPS real steps of the same training command on a
few rows of the person's own table, end to end, once per model, quantization and machine; later estimates read
the cached result, and once a run of the model has finished here, its own timings.
"""

import os
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from lift_core import models
from lift_core.config import TrainConfig
from lift_core.data import Dataset, Splits
from lift_core.errors import LiftError
from lift_core.files import read_json, write_json_atomically
from lift_core.launcher import training_command
from lift_core.runs import Run

# Enough steps for the per-step time to settle after the first one; few enough to take seconds with tiny and
# well under a minute with SmolLM2-135M on 2 cores.
CALIBRATION_STEPS = 8
CALIBRATION_TRAIN_ROWS = 48
CALIBRATION_TEST_ROWS = 16
CALIBRATION_TIMEOUT_S = 900
SPEEDS_FILE = "speeds.json"


@dataclass
class Speed:
    """What a run of a model takes on this machine, besides the number of its steps."""
    tokens_per_s: float  # training, all processes together, validation passes included
    eval_rows_per_s: float | None  # test rows predicted per second; None: not measured
    overhead_s: float  # launch to the first step and the saving after the last: imports, model loading
    source: str  # where the figures come from, in words


def run_speed(run: Run, launched: float | None = None, exited: float | None = None) -> Speed | None:
    """The speed a finished run measured; None when it logged no throughput or was resumed (its clock then spans
    the pause). `launched` and `exited` are the process's own bounds when the caller timed them."""
    status, results = run.status(), run.eval_results() or {}
    rows = [row for row in run.metrics() if row.get("tokens_per_s")]
    if not rows or Run.resumed_history(status):
        return None
    begun = launched or run.launch_record().get("launched") or status.get("created")
    ended = exited or status.get("finished")
    eval_seconds = results.get("eval_seconds") or 0.0
    eval_rows_per_s = results["n_test"] / eval_seconds if results.get("n_test") and eval_seconds else None
    training = rows[-1].get("elapsed_s")
    overhead = max(0.0, ended - begun - training - eval_seconds) if begun and ended and training else 0.0
    return Speed(rows[-1]["tokens_per_s"], eval_rows_per_s, overhead, "")


def cached_speed(config: TrainConfig) -> Speed | None:
    """This model's calibration on this machine, if it was timed before."""
    found = (read_json(speeds_path()) or {}).get(speed_key(config))
    return Speed(**found) if found else None


def measured_speed(config: TrainConfig, dataset: Dataset, splits: Splits) -> Speed:
    """The cached calibration of this model here, else a new one (tens of seconds for a small pretrained model)."""
    speed = cached_speed(config)
    if speed is None:
        speed = _calibrate(config, dataset, splits)
        write_json_atomically(speeds_path(), {**(read_json(speeds_path()) or {}), speed_key(config): asdict(speed)})
    return speed


def speed_key(config: TrainConfig) -> str:
    """What the speed depends on beyond the table: the model, how it is loaded, the machine and its threads."""
    threads = os.environ.get("OMP_NUM_THREADS", "all")
    return " | ".join([config.model, models.resolve_quantization(config.quant), models.hardware_summary(),
                       f"{config.num_processes} processes", f"threads {threads}"])


def speeds_path() -> Path:
    models.cache_dir().mkdir(parents=True, exist_ok=True)
    return models.cache_dir() / SPEEDS_FILE


def _calibrate(config: TrainConfig, dataset: Dataset, splits: Splits) -> Speed:
    with tempfile.TemporaryDirectory(prefix="lift-calibration-") as folder:
        trial = trial_config(config, dataset, splits, Path(folder))
        run_dir, log_path = Path(folder) / "run", Path(folder) / "output.txt"
        launched = time.time()
        with open(log_path, "w") as log:
            try:
                process = subprocess.run(training_command(trial, run_dir), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, timeout=CALIBRATION_TIMEOUT_S,
                                         env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
            except subprocess.TimeoutExpired:
                raise LiftError(f"Timing {config.model} took over {CALIBRATION_TIMEOUT_S} s; "
                                "it is too slow to train on this machine.") from None
        speed = run_speed(Run(run_dir), launched, time.time()) if process.returncode == 0 else None
        if speed is None:
            last_line = (log_path.read_text().strip().splitlines() or ["no output"])[-1]
            raise LiftError(f"Could not time a few training steps of {config.model}: {last_line}")
    speed.source = (f"timed: {CALIBRATION_STEPS} steps of {config.model} on this machine "
                    f"at {speed.tokens_per_s:,.0f} tokens/s")
    return speed


def trial_config(config: TrainConfig, dataset: Dataset, splits: Splits, folder: Path) -> TrainConfig:
    """The person's settings on a few of their own rows, for CALIBRATION_STEPS steps with one validation: each step
    runs every layer (what the estimate scales by the layers a run trains) and nothing stops it early."""
    train = _spread_over_classes(splits.train, dataset).head(CALIBRATION_TRAIN_ROWS)
    test = splits.test if len(splits.test) else splits.val
    if dataset.task == "classification":  # a test table may only hold classes the training rows have
        test = test[test[dataset.target].isin(train[dataset.target])]
    test = (test if len(test) else train).head(CALIBRATION_TEST_ROWS)
    columns = dataset.features + [dataset.target]
    train[columns].to_csv(folder / "train.csv", index=False)
    test[columns].to_csv(folder / "test.csv", index=False)
    return replace(config, data=str(folder / "train.csv"), test_data=str(folder / "test.csv"), val_data=None,
                   task=dataset.task, features=dataset.features, max_steps=CALIBRATION_STEPS, epochs=0.0,
                   lora_layers=0, eval_steps=0, evaluations=1, stop_when_perfect=0, early_stopping_patience=0,
                   save_steps=0)


def _spread_over_classes(frame: pd.DataFrame, dataset: Dataset) -> pd.DataFrame:
    """The rows shuffled, and for a classification taken in turn from each class, so a few rows hold them all."""
    shuffled = frame.sample(frac=1.0, random_state=0)
    if dataset.task != "classification":
        return shuffled
    turn = shuffled.groupby(dataset.target).cumcount().to_numpy()
    return shuffled.iloc[np.argsort(turn, kind="stable")]
