"""Helpers shared by the test files: small tables, tiny trainings, the command line, waiting, and reading what the
web app returns through gradio_client. Fixtures live in conftest.py; this module holds plain functions only."""

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Settings under which the tiny random Llama learns a well-separated 2-D set in a few seconds: exactly 3 epochs of
# batches of 8, whatever the shipped budget defaults are.
TINY_FAST = {"model": "tiny", "quant": "none", "epochs": 3, "max_steps": 0, "batch_size": 8, "lr": 5e-3,
             "stop_when_perfect": 0}

# Tiny models gain nothing from a second thread, and on a shared 2-core machine two OpenMP threads spin against
# each other and everyone else: engine tests run torch on one thread, their subprocesses too.
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# ---- tables -------------------------------------------------------------------------------------------------

def two_gaussians(n=200, seed=0, labels=(0, 1), std=0.6) -> pd.DataFrame:
    """Two well-separated classes: centers (-2, -2) and (2, 2), alternating rows; columns x1, x2, y."""
    rng = np.random.default_rng(seed)
    codes = np.arange(n) % 2
    points = np.where(codes[:, None] == 1, 2.0, -2.0) + rng.normal(scale=std, size=(n, 2))
    return pd.DataFrame({"x1": points[:, 0], "x2": points[:, 1], "y": np.asarray(labels)[codes]})


def write_table(frame: pd.DataFrame, path) -> str:
    """Writes `frame` as a CSV file at `path` (its folder made if missing); returns the path as a string."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    frame.to_csv(path, index=False)
    return str(path)


# ---- training -----------------------------------------------------------------------------------------------

def train_tiny(folder, table: pd.DataFrame | None = None, test_table: pd.DataFrame | None = None, run_dir=None,
               **settings):
    """(config, run): the tiny model trained on target y with TINY_FAST and `settings` into `run_dir` (FOLDER/run
    by default). Unless `settings` name the data, `table` (two_gaussians() by default) is written to
    FOLDER/data.csv first, and `test_table`, if given, to FOLDER/test.csv."""
    from lift_core.config import TrainConfig
    from lift_core.training import run_training

    folder = os.fspath(folder)
    if "data" not in settings:
        settings["data"] = write_table(two_gaussians() if table is None else table, os.path.join(folder, "data.csv"))
    if test_table is not None:
        settings["test_data"] = write_table(test_table, os.path.join(folder, "test.csv"))
    config = TrainConfig(**{"target": "y", **TINY_FAST, **settings})
    return config, run_training(config, run_dir or os.path.join(folder, "run"))


def assert_resolved_again_unchanged(alias: str, folder) -> None:
    """resolve_model(alias) once more gives `folder` and leaves its weights alone: built once, then reused."""
    from lift_core import models

    weights = next(Path(folder).glob("*.safetensors"))
    before = weights.stat().st_mtime_ns
    assert models.resolve_model(alias) == str(folder)
    assert weights.stat().st_mtime_ns == before


def lift_cli(*args, timeout=300, **kwargs) -> subprocess.CompletedProcess:
    """`python -m lift_core ARGS` from the repository root, with this process's environment (one thread)."""
    env = {**os.environ, **ONE_THREAD_ENV}
    return subprocess.run([sys.executable, "-m", "lift_core", *map(str, args)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


# ---- waiting ------------------------------------------------------------------------------------------------

def wait_for(fetch, until=bool, timeout=60, what="the condition", interval=0.2):
    """Calls fetch() until until(value) holds and returns that value; fails with the last value after `timeout`
    seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {value!r:.2000}")
        time.sleep(interval)


# ---- the web app --------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def served_app(runs_dir, **options):
    """The web app (build_app's `options`, the tiny model by default) served on a free local port, with torch and
    the trainings it starts on one thread, as the engine tests; yields {"url", "runs_dir", "app"}, then closes."""
    from unittest import mock

    from lift_ui import build_app

    with mock.patch.dict(os.environ, ONE_THREAD_ENV):
        app = build_app(runs_dir, **{"default_model": "tiny", "default_quant": "none", **options})
        port = free_port()
        app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            yield {"url": f"http://127.0.0.1:{port}/", "runs_dir": runs_dir, "app": app}
        finally:
            app.close()


def new_client(url: str):
    """A gradio_client session of its own: nothing loaded in its Data tab yet."""
    from gradio_client import Client

    return Client(url, verbose=False)


def plotly_json(plot) -> dict:
    """The figure of a gr.Plot output as plain JSON."""
    return json.loads(plot["plot"])


def plotly_array(values) -> np.ndarray:
    """Plotly's JSON holds numeric arrays as base64 typed arrays ({"dtype", "bdata", maybe "shape"}); lists of
    labels stay lists."""
    if isinstance(values, dict) and "bdata" in values:
        flat = np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
        return flat.reshape([int(n) for n in values["shape"].split(",")]) if "shape" in values else flat
    return np.asarray(values)


def figure_points(plot) -> int:
    """The number of points in all traces of a gr.Plot output."""
    return sum(len(plotly_array(trace.get("y") or [])) for trace in plotly_json(plot)["data"])


def as_frame(table) -> pd.DataFrame:
    """A gr.Dataframe output as a DataFrame."""
    return pd.DataFrame(table["data"], columns=table["headers"])


# The transitions a real run takes to reach each state (runs.TRANSITIONS).
_PATH_TO_STATE = {"queued": [], "running": ["running"], "completed": ["running", "completed"],
                  "stopped": ["running", "stopped"], "interrupted": ["running", "interrupted"], "failed": ["failed"]}


def put_in_state(run, state: str, **fields) -> None:
    """Brings a freshly created run to `state` through the run's own transitions, then records `fields`: a test's
    stand-in for a training process."""
    for step in _PATH_TO_STATE[state]:
        run._transition(step)
    if fields:
        run.record(**fields)
