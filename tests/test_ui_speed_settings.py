"""The settings that make training cheaper (LoRA layers, trailing zeros, evaluations per run, the stop after perfect
evaluations) through the app's API: the presets set them, Start and Show command carry them, and the Prompt tab's
preview and token counts follow the trailing zeros."""

import json
import re
import shlex
import sys

import pandas as pd
import pytest
from gradio_client import handle_file
from helpers import wait_for, write_table

from lift_core import cli
from lift_core import launcher as launcher_module
from lift_core.config import DEFAULTS, PREVIOUS_DEFAULTS, SETTINGS
from lift_core.presets import PRESET_FIELDS
from lift_core.runs import ACTIVE_STATES, Run

SPEED_SETTINGS = tuple(PREVIOUS_DEFAULTS)
# Each away from its default, so that a value reaching the run cannot be the default by chance.
CHANGED = {"lora_layers": DEFAULTS.lora_layers + 1, "trim_zeros": not DEFAULTS.trim_zeros,
           "evaluations": DEFAULTS.evaluations + 1, "stop_when_perfect": DEFAULTS.stop_when_perfect + 1}
TINY = {"target": "y", "model": "tiny", "quant": "none"}
# The endpoints that describe a run; the memory line only takes what changes the memory a run needs.
RUN_ENDPOINTS = ("start", "show_command", "estimate")
MEMORY_DEPENDS_ON = ("lora_layers", "trim_zeros")


@pytest.fixture(scope="module")
def loaded(client, tmp_path_factory):
    """The module's client with a 40-row table whose first row, x1=0.5 and x2=2.0, a fixed number of decimals pads
    with zeros."""
    frame = pd.DataFrame({"x1": [0.5 + i / 4 for i in range(40)], "x2": [2.0 + i for i in range(40)],
                          "y": ["a", "b"] * 20})
    path = write_table(frame, tmp_path_factory.mktemp("table") / "zeros.csv")
    message, *_ = client.predict(handle_file(path), api_name="/upload")
    assert message == ""
    return client


def preset(client, name: str) -> dict:
    return dict(zip(PRESET_FIELDS, client.predict(name, api_name="/preset")))


def control(app, name: str):
    """The one control of a TrainConfig setting, found by its label and help."""
    metadata = SETTINGS[name].metadata
    (found,) = [block for block in app.blocks.values()
                if getattr(block, "label", None) == metadata["label"] and metadata["help"] in (block.info or "")]
    return found


def endpoint_blocks(app, api_name: str, side: str) -> set:
    dependency = next(fn for fn in app.fns.values() if fn.api_name == api_name)
    return {block._id for block in getattr(dependency, side)}


# ---------- presets ----------

def test_previous_defaults_sets_the_speed_settings_and_recommended_sets_them_back(client):
    assert {name: preset(client, "Previous defaults")[name] for name in SPEED_SETTINGS} == PREVIOUS_DEFAULTS
    assert {name: preset(client, "Recommended")[name] for name in SPEED_SETTINGS} == {
        name: getattr(DEFAULTS, name) for name in SPEED_SETTINGS}


def test_a_preset_sets_the_prompt_tabs_own_trailing_zeros_checkbox(app_server):
    app = app_server["app"]
    checkbox = control(app, "trim_zeros")
    assert checkbox._id in endpoint_blocks(app, "preset", "outputs")
    assert checkbox._id in endpoint_blocks(app, "preview_prompts", "inputs")


# ---------- what a run is given ----------

@pytest.mark.parametrize("name", SPEED_SETTINGS)
def test_every_endpoint_that_describes_a_run_takes_the_setting(app_server, name):
    app = app_server["app"]
    for api_name in RUN_ENDPOINTS + (("memory",) if name in MEMORY_DEPENDS_ON else ()):
        assert control(app, name)._id in endpoint_blocks(app, api_name, "inputs"), api_name


def test_start_hands_the_speed_settings_to_the_training(loaded, app_server, monkeypatch):
    # A stand-in for the training process: what matters is the settings file the launcher writes for it.
    monkeypatch.setattr(launcher_module, "training_command", lambda config, out, settings: [sys.executable, "-c", "pass"])
    message = loaded.predict(**TINY, **CHANGED, api_name="/start")
    name = re.fullmatch(r"Started run `(\S+)`\.", message).group(1)
    run = Run(app_server["runs_dir"] / name)
    settings = json.loads((run.path / "settings.json").read_text())
    assert {setting: settings[setting] for setting in SPEED_SETTINGS} == CHANGED
    wait_for(lambda: run.status().get("state"), lambda state: state not in ACTIVE_STATES, timeout=30,
             what="the stand-in run to end")


def shown_config(client, **settings):
    """The TrainConfig that Show command's command line gives when run."""
    command, message = client.predict(**TINY, **settings, api_name="/show_command")
    assert message == "", message
    return cli._train_config(cli.build_parser().parse_args(shlex.split(command)[3:]))


def test_show_command_carries_the_speed_settings(loaded):
    numbers = {name: value for name, value in CHANGED.items() if name != "trim_zeros"}
    config = shown_config(loaded, **numbers)
    assert {name: getattr(config, name) for name in numbers} == numbers


def test_show_command_keeps_trailing_zeros_when_asked_to(loaded):
    assert shown_config(loaded, trim_zeros=False).trim_zeros is False


# ---------- the Prompt tab ----------

def first_prompt(client, trim_zeros: bool) -> str:
    message, _, preview = client.predict("y", ["x1", "x2"], "auto", "lift", "", 2, trim_zeros,
                                         api_name="/preview_prompts")
    assert message == "", message
    return preview["data"][0][0]


def test_the_preview_drops_trailing_zeros_only_when_asked_to(loaded):
    assert "x1=0.5, x2=2," in first_prompt(loaded, trim_zeros=True)
    assert "x1=0.50, x2=2.00," in first_prompt(loaded, trim_zeros=False)


def mean_tokens(client, trim_zeros: bool) -> float:
    message, stats = client.predict("y", ["x1", "x2"], "auto", "lift", "", 2, "tiny", trim_zeros,
                                    api_name="/token_stats")
    assert message == "", message
    return float(re.search(r"mean \*\*([\d.]+)\*\*", stats).group(1))


def test_token_counts_follow_the_trailing_zeros(loaded):
    # The tiny tokenizer spells every digit: the padding zeros are tokens of their own.
    assert mean_tokens(loaded, trim_zeros=True) < mean_tokens(loaded, trim_zeros=False)
