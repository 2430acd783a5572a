"""The Data and Prompt tabs through the app's API, as the browser would call them.

Each test loads its own table first: the data path is per-session state, and the module's tests share one client.
"""

import re

import numpy as np
import pandas as pd
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from helpers import plotly_array, plotly_json

from lift_core.synthetic import make_classification

# The outputs of /upload and /synth, in order (the data path State is not returned to clients).
TABLE_OUTPUTS = ("message", "info", "preview", "summary", "target", "features", "task", "task_line", "plot")


def load(client, *args, api_name) -> dict:
    return dict(zip(TABLE_OUTPUTS, client.predict(*args, api_name=api_name)))


def choices(update) -> list:
    return [value for _, value in update["choices"]]


WRITERS = {
    ".csv": lambda frame, path: frame.to_csv(path, index=False),
    ".tsv": lambda frame, path: frame.to_csv(path, sep="\t", index=False),
    ".parquet": lambda frame, path: frame.to_parquet(path, index=False),
    ".xlsx": lambda frame, path: frame.to_excel(path, index=False),
    ".jsonl": lambda frame, path: frame.to_json(path, orient="records", lines=True),
}


def upload_table(client, tmp_path, suffix=".csv") -> dict:
    """30 rows of a, label, b: the target is not the last column, so the default must find it by its name."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "a": rng.normal(size=30).round(3),
        "label": np.where(np.arange(30) % 3 == 0, "yes", "no"),
        "b": rng.normal(size=30).round(3),
    })
    path = tmp_path / f"table{suffix}"
    WRITERS[suffix](frame, path)
    return load(client, handle_file(str(path)), api_name="/upload")


@pytest.mark.parametrize("suffix", WRITERS)
def test_upload_shows_preview_columns_and_target_choices(client, app_server, tmp_path, suffix):
    shown = upload_table(client, tmp_path, suffix)
    assert shown["message"] == ""
    assert "30 rows × 3 columns" in shown["info"]
    assert shown["preview"]["headers"] == ["a", "label", "b"]
    assert len(shown["preview"]["data"]) == 20
    assert shown["summary"]["headers"] == ["column", "dtype", "missing", "distinct"]
    assert [row[0] for row in shown["summary"]["data"]] == ["a", "label", "b"]
    assert shown["summary"]["data"][1][2:] == [0, 2]  # label: no missing values, two distinct ones
    assert choices(shown["target"]) == ["a", "label", "b"]
    assert shown["target"]["value"] == "label"
    assert list((app_server["runs_dir"] / "uploads").glob(f"table-*{suffix}"))  # the copy keeps its suffix
    assert choices(shown["features"]) == ["a", "b"] and shown["features"]["value"] == ["a", "b"]
    assert shown["task"] == "auto"
    assert "classification" in shown["task_line"] and "auto-detected" in shown["task_line"]


def test_select_validates_and_never_offers_the_target_as_a_feature(client, tmp_path):
    upload_table(client, tmp_path)
    message, features, task_line, _ = client.predict("a", ["b"], "auto", api_name="/select")
    assert message == ""
    assert choices(features) == ["label", "b"] and features["value"] == ["b"]
    assert "regression" in task_line

    message, _, task_line, plot = client.predict("label", [], "auto", api_name="/select")
    assert "no feature columns" in message and task_line == ""
    assert plot["visible"] is False

    message, *_ = client.predict("label", ["a", "b"], "regression", api_name="/select")
    assert message.startswith("⚠️") and "numeric target" in message


BAD_FILES = {
    "garbage": ("garbage.csv", bytes(range(256)) * 8, "binary data"),
    "empty": ("empty.csv", b"", "empty"),
    "no_header": ("numbers.csv", b"1,2,3\n4,5,6\n", "header row"),
    "ragged": ("ragged.csv", b"a,b\n1,2\n3,4,5\n", "could not be read"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_upload_shows_a_message_and_keeps_the_previous_table(client, tmp_path, name):
    upload_table(client, tmp_path)
    file_name, content, reason = BAD_FILES[name]
    (tmp_path / file_name).write_bytes(content)
    shown = load(client, handle_file(str(tmp_path / file_name)), api_name="/upload")
    assert shown["message"].startswith("⚠️") and reason in shown["message"]
    assert "Still using the previous table" in shown["message"]
    # The table loaded before is still the session's table.
    message, _, task_line, _ = client.predict("label", ["a", "b"], "auto", api_name="/select")
    assert message == "" and "30 rows" in task_line


def test_wrong_suffix_is_refused_and_the_app_keeps_serving(client, tmp_path):
    (tmp_path / "table.txt").write_text("a,b\n1,2\n")
    with pytest.raises(AppError, match="Invalid file type"):
        client.predict(handle_file(str(tmp_path / "table.txt")), api_name="/upload")
    assert upload_table(client, tmp_path)["message"] == ""


def test_synthetic_moons_gives_a_table_of_n_rows_and_a_scatter(client, app_server):
    shown = load(client, "moons", 60, 0.1, 0, 1, api_name="/synth")
    assert shown["message"] == ""
    assert "60 rows × 3 columns" in shown["info"]
    written = pd.read_csv(app_server["runs_dir"] / "uploads" / "moons-n60-noise0.1-seed0.csv")
    assert len(written) == 60 and list(written.columns) == ["x1", "x2", "y"]
    assert shown["target"]["value"] == "y" and shown["features"]["value"] == ["x1", "x2"]
    assert shown["plot"]["visible"] is True
    traces = plotly_json(shown["plot"]["value"])["data"]
    assert sorted(trace["name"] for trace in traces) == ["0", "1"]  # one coloured trace per class
    assert sum(len(plotly_array(trace["x"])) for trace in traces) == 60


def test_synthetic_regression_keeps_a_clean_test_table(client, app_server):
    shown = load(client, "linear", 50, 0.1, 0, 1, api_name="/synth")
    assert "40 rows × 2 columns" in shown["info"] and "10 noise-free test rows" in shown["info"]
    assert "regression" in shown["task_line"]
    assert shown["plot"]["visible"] is True  # one feature: x against y
    assert (app_server["runs_dir"] / "uploads" / "linear-n50-p1-noise0.1-seed0-test.csv").exists()


def test_bad_synthetic_settings_show_a_message(client):
    shown = load(client, "moons", None, 0.1, 0, 1, api_name="/synth")
    assert shown["message"].startswith("⚠️") and "Fill in n" in shown["message"]


def test_preview_prompts_serializes_the_first_row(client):
    load(client, "moons", 40, 0.1, 0, 1, api_name="/synth")
    first = make_classification("moons", n=40, noise=0.1, seed=0).iloc[0]
    message, _, preview = client.predict("y", ["x1", "x2"], "auto", "lift", "", 2, api_name="/preview_prompts")
    assert message == ""
    assert preview["headers"] == ["prompt", "completion"] and len(preview["data"]) == 5
    prompt, completion = preview["data"][0]
    assert prompt == f"When we have x1={first.x1:.2f}, x2={first.x2:.2f}, what should be the y value?###"
    assert completion == f" {int(first.y)}@@@"

    _, _, preview = client.predict("y", ["x1", "x2"], "auto", "names", "", 3, api_name="/preview_prompts")
    assert preview["data"][0][0] == f"Given that x1 is {first.x1:.3f}, x2 is {first.x2:.3f}, what is the y?###"


def test_custom_template_with_an_unknown_placeholder_lists_the_columns(client):
    load(client, "moons", 40, 0.1, 0, 1, api_name="/synth")
    message, placeholders, preview = client.predict(
        "y", ["x1", "x2"], "auto", "custom", "Point {x1} {x9}", 2, api_name="/preview_prompts")
    assert message.startswith("⚠️") and "'x9'" in message and "x1, x2" in message
    assert "{x1}" in placeholders and "{x2}" in placeholders
    assert preview["data"] == []

    message, _, preview = client.predict(
        "y", ["x1", "x2"], "auto", "custom", "Point ({x1}, {x2}) is in class", 1, api_name="/preview_prompts")
    assert message == "" and preview["data"][0][0].startswith("Point (") and preview["data"][0][0].endswith("###")


def test_token_stats_with_the_tiny_model(client):
    load(client, "moons", 40, 0.1, 0, 1, api_name="/synth")
    message, stats = client.predict("y", ["x1", "x2"], "auto", "lift", "", 2, "tiny", api_name="/token_stats")
    assert message == ""
    mean, longest = re.search(r"mean \*\*([\d.]+)\*\*, max \*\*(\d+)\*\*", stats).groups()
    # The tiny tokenizer splits every digit, so a prompt with two 2-decimal numbers is a few dozen tokens.
    assert 10 < float(mean) <= int(longest) < 100
    assert "over the first 40 rows" in stats and "`tiny`" in stats


def test_token_stats_with_an_unknown_model_shows_a_message(client):
    load(client, "moons", 40, 0.1, 0, 1, api_name="/synth")
    message, stats = client.predict("y", ["x1", "x2"], "auto", "lift", "", 2, "./no-such-model-folder",
                                    api_name="/token_stats")
    assert message.startswith("⚠️") and "no-such-model-folder" in message and stats == ""
