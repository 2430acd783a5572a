import os

# Set before anything imports gradio or builds a model, so tests never phone home or touch ~/.cache.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import socket  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory):
    """One model cache for the whole session (subprocesses inherit it): aliases are built once."""
    path = os.environ.get("LIFT_TEST_CACHE_DIR") or str(tmp_path_factory.mktemp("model-cache"))
    os.environ["LIFT_CACHE_DIR"] = path
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def app_server(tmp_path_factory, model_cache):
    """The web app served on a free local port, with its own runs folder; closed after the module."""
    from lift_ui import build_app

    runs_dir = tmp_path_factory.mktemp("runs")
    app = build_app(runs_dir, default_model="tiny", default_quant="none")
    port = free_port()
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield {"url": f"http://127.0.0.1:{port}/", "runs_dir": runs_dir, "app": app}
    finally:
        app.close()


@pytest.fixture(scope="module")
def client(app_server):
    from gradio_client import Client

    return Client(app_server["url"], verbose=False)


# ---- engine test helpers (test_models, test_training, test_predict, test_cli, test_estimators) --------------

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Settings under which the tiny random Llama learns a well-separated 2-D set in a few seconds: exactly 3 epochs of
# batches of 8, whatever the shipped budget defaults are.
TINY_FAST = {"model": "tiny", "quant": "none", "epochs": 3, "max_steps": 0, "batch_size": 8, "lr": 5e-3}


def two_gaussians(n=200, seed=0, labels=(0, 1)):
    """Two well-separated classes: centers (-2, -2) and (2, 2), std 0.6, alternating rows; columns x1, x2, y."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    codes = np.arange(n) % 2
    points = np.where(codes[:, None] == 1, 2.0, -2.0) + rng.normal(scale=0.6, size=(n, 2))
    return pd.DataFrame({"x1": points[:, 0], "x2": points[:, 1], "y": np.asarray(labels)[codes]})


@pytest.fixture(scope="session")
def separable_csv(tmp_path_factory):
    """A 200-row two-Gaussian CSV with integer labels 0/1."""
    path = tmp_path_factory.mktemp("separable") / "separable.csv"
    two_gaussians().to_csv(path, index=False)
    return path


# Tiny models gain nothing from a second thread, and on a shared 2-core machine two OpenMP threads spin against
# each other and everyone else: engine tests run torch on one thread, their subprocesses too.
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def one_torch_thread():
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def lift_cli(*args, timeout=300, **kwargs):
    """`python -m lift_core ARGS` from the repository root, with this process's environment (one thread)."""
    import subprocess
    import sys

    env = {**os.environ, **ONE_THREAD_ENV}
    return subprocess.run([sys.executable, "-m", "lift_core", *map(str, args)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope="session")
def tiny_run(separable_csv, tmp_path_factory, model_cache):
    """(config, run): the tiny model finetuned at full precision on `separable_csv` with TINY_FAST, evaluated."""
    import torch

    from lift_core.training import TrainConfig, run_training

    config = TrainConfig(data=str(separable_csv), target="y", **TINY_FAST)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return config, run_training(config, tmp_path_factory.mktemp("tiny-run") / "run")
    finally:
        torch.set_num_threads(previous)
