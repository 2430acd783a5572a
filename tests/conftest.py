import os
from collections import Counter

# Set before anything imports gradio or builds a model, so tests never phone home or touch ~/.cache.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import pytest  # noqa: E402
from helpers import ONE_THREAD_ENV, new_client, served_app, train_tiny, two_gaussians, write_table  # noqa: E402


def pytest_configure(config):
    """Under pytest-xdist (pytest.ini: `-n 2`), each worker has a core of its own: the workers, and every training
    they start, run torch and BLAS on one thread rather than two threads per worker spinning against each other.
    Set in the controller before it starts the workers, which inherit it before anything imports numpy or torch."""
    if config.getoption("numprocesses", None):
        os.environ.update(ONE_THREAD_ENV)


def pytest_collection_modifyitems(config, items):
    """pytest-xdist's workers collect the tests, and whole files go to them in the order collected (pytest.ini:
    --no-loadscope-reorder). The files with the most slow tests go first, so that a long file does not start last
    while the other worker has nothing left to do; pytest-randomly's order holds within files and among files with
    as many slow tests."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        slow_tests = Counter(item.path for item in items if item.get_closest_marker("slow"))
        items.sort(key=lambda item: -slow_tests[item.path])


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory):
    """One model cache for the whole run (subprocesses inherit it): aliases are built once. pytest-xdist's workers
    share it, in the folder that holds each worker's own temporary folder. Two workers building one alias at once
    cost time, not correctness: each folder of the cache appears whole, and the first one wins (lift_core.models)."""
    run_folder = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        run_folder = run_folder.parent
    path = os.environ.get("LIFT_TEST_CACHE_DIR") or str(run_folder / "model-cache")
    os.makedirs(path, exist_ok=True)
    os.environ["LIFT_CACHE_DIR"] = path
    return path


@pytest.fixture(scope="module")
def app_server(tmp_path_factory, model_cache, one_torch_thread):
    """The web app served on a free local port, with its own runs folder; closed after the module. Like the engine
    tests, it runs torch on one thread, and so do the trainings it starts."""
    with served_app(tmp_path_factory.mktemp("runs")) as served:
        yield served


@pytest.fixture(scope="module")
def client(app_server):
    """One gradio_client session for the module's tests: what one test loads, the next one sees."""
    return new_client(app_server["url"])


# ---- engine fixtures (test_models, test_training, test_predict, test_cli, test_estimators) ------------------

@pytest.fixture(scope="session")
def separable_csv(tmp_path_factory):
    """A 200-row two-Gaussian CSV with integer labels 0/1."""
    path = tmp_path_factory.mktemp("separable") / "separable.csv"
    write_table(two_gaussians(), path)
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_run(separable_csv, tmp_path_factory, model_cache):
    """(config, run): the tiny model finetuned at full precision on `separable_csv` with TINY_FAST, evaluated."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_tiny(tmp_path_factory.mktemp("tiny-run"), data=str(separable_csv))
    finally:
        torch.set_num_threads(previous)
