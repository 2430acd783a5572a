import os

# Set before anything imports gradio or builds a model, so tests never phone home or touch ~/.cache.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import pytest  # noqa: E402
from helpers import ONE_THREAD_ENV, free_port, new_client, train_tiny, two_gaussians, write_table  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory):
    """One model cache for the whole session (subprocesses inherit it): aliases are built once."""
    path = os.environ.get("LIFT_TEST_CACHE_DIR") or str(tmp_path_factory.mktemp("model-cache"))
    os.environ["LIFT_CACHE_DIR"] = path
    return path


@pytest.fixture(scope="module")
def app_server(tmp_path_factory, model_cache, one_torch_thread):
    """The web app served on a free local port, with its own runs folder; closed after the module. Like the engine
    tests, it runs torch on one thread, and so do the trainings it starts."""
    from lift_ui import build_app

    runs_dir = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ONE_THREAD_ENV.items():
            patch.setenv(name, value)
        app = build_app(runs_dir, default_model="tiny", default_quant="none")
        port = free_port()
        app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            yield {"url": f"http://127.0.0.1:{port}/", "runs_dir": runs_dir, "app": app}
        finally:
            app.close()


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
