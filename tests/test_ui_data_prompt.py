"""The Data and Prompt tabs through the app's API, as the browser would call them.

Each test loads its own table first: the data path is per-session state, and the module's tests share one client.
"""

import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from helpers import new_client, plotly_array, plotly_json

from lift_core.launcher import TrainingLauncher
from lift_core.synthetic import make_classification
from lift_ui.common import rounded_for_display
from lift_ui.tables import NO_TABLE_LINE, active_table_line
from lift_ui.tabs.prompt_tab import STATS_HELP, length_warning

# The outputs of /upload and /synth, in order (the data path State and the boxes a load shows are not returned to
# clients).
TABLE_OUTPUTS = ("message", "info", "preview", "summary", "target", "features", "task", "task_line", "plot", "upload")


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
    # The copy keeps the uploaded file's name, which the page shows.
    assert list((app_server["runs_dir"] / "uploads").glob(f"*/table{suffix}"))
    assert shown["info"].startswith(f"**table{suffix}**")
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
    # The reason is said once, under the task it would be.
    assert "no feature columns" in message and task_line == "Task: **classification** with 2 classes, auto-detected."
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
    assert message.startswith("⚠️") and "no-such-model-folder" in message
    assert stats == STATS_HELP  # the line keeps its help rather than going blank


# ---- the active table, and choices checked as they are made -------------------------------------------------

def table_line(client, target, features, task="auto") -> str:
    """The active-table line above the tabs (the Train tab's copy says the same)."""
    lines = client.predict(target, features, task, api_name="/table_line")
    assert len(set(lines)) == 1
    return lines[0]


def test_the_active_table_line_names_the_table_by_the_name_it_was_uploaded_as(client, app_server, tmp_path):
    assert table_line(new_client(app_server["url"]), None, []) == NO_TABLE_LINE  # a fresh page

    load(client, "moons", 60, 0.1, 0, 1, api_name="/synth")
    assert table_line(client, "y", ["x1", "x2"]) == (
        "Active table: **moons-n60-noise0.1-seed0.csv** · target `y` · classification, 2 classes · 2 features")

    frame = pd.DataFrame({"size": np.arange(30) % 7 + 0.5, "fruit": ["apple", "pear", "plum"] * 10})
    frame.to_csv(tmp_path / "fruit.csv", index=False)
    shown = load(client, handle_file(str(tmp_path / "fruit.csv")), api_name="/upload")
    assert shown["info"].startswith("**fruit.csv**: 30 rows")
    assert table_line(client, "fruit", ["size"]) == (
        "Active table: **fruit.csv** · target `fruit` · classification, 3 classes · 1 feature")
    assert table_line(client, "size", ["fruit"], "regression").endswith("· regression · 1 feature")


def test_generating_a_set_empties_the_upload_box(client, tmp_path):
    uploaded = upload_table(client, tmp_path)
    assert uploaded["upload"] == {"__type__": "update"}  # left as it is: it shows the file in use
    generated = load(client, "moons", 40, 0.1, 0, 1, api_name="/synth")
    assert generated["upload"] is None


def test_a_text_target_with_too_many_classes_is_warned_when_chosen(client, tmp_path):
    frame = pd.DataFrame({"x": np.arange(300) % 13, "name": [f"item {i % 200}" for i in range(300)],
                          "y": ["a", "b", "c"] * 100})
    frame.to_csv(tmp_path / "items.csv", index=False)
    load(client, handle_file(str(tmp_path / "items.csv")), api_name="/upload")

    message, _, task_line, plot = client.predict("name", ["x"], "auto", api_name="/select")
    assert message == ("⚠️ The target 'name' has 200 classes, more than the limit of 50. If it is a number to "
                       "predict, set the task to regression; otherwise pick another target.")
    # The task line stays, with what the task would be; the reason is not repeated there or above the tabs.
    assert task_line == "Task: **classification** with 200 classes, auto-detected."
    assert plot["visible"] is False
    line = table_line(client, "name", ["x"])
    assert line.startswith("Active table: **items.csv** · target `name` · classification, 200 classes · 1 feature")
    assert "⚠️" in line and "limit" not in line


def test_previews_round_numbers_for_display_only(client, app_server):
    shown = load(client, "moons", 40, 0.1, 0, 1, api_name="/synth")
    saved = pd.read_csv(app_server["runs_dir"] / "uploads" / "moons-n40-noise0.1-seed0.csv")
    first = saved.iloc[0]
    assert shown["preview"]["data"][0] == [float(f"{first.x1:.4g}"), float(f"{first.x2:.4g}"), int(first.y)]
    assert saved.x1.iloc[0] != round(saved.x1.iloc[0], 4)  # the table itself keeps every digit


def test_rounded_for_display_keeps_significant_digits_and_whole_parts():
    frame = pd.DataFrame({"x": [0.8585984175660241, 12345.678, -0.000123456, np.nan], "n": [1, 2, 3, 4],
                          "text": ["a", "b", "c", "d"]})
    shown = rounded_for_display(frame)
    assert shown.x.tolist()[:3] == [0.8586, 12346.0, -0.0001235] and np.isnan(shown.x.iloc[3])
    assert shown.n.tolist() == [1, 2, 3, 4] and shown.text.tolist() == ["a", "b", "c", "d"]
    assert frame.x.iloc[0] == 0.8585984175660241  # the frame given is left alone


def test_an_empty_custom_template_says_what_to_type_once(client):
    load(client, "moons", 40, 0.1, 0, 1, api_name="/synth")
    message, _, preview = client.predict("y", ["x1", "x2"], "auto", "custom", "", 2, api_name="/preview_prompts")
    assert message.startswith("⚠️ The custom template is empty: type a sentence with {column} placeholders")
    assert preview["headers"] == ["prompt", "completion"] and preview["data"] == []
    # Counting tokens says the same in the same place, and leaves its own line's help.
    counted, stats = client.predict("y", ["x1", "x2"], "auto", "custom", "", 2, "tiny", api_name="/token_stats")
    assert counted == message and stats == STATS_HELP


def test_examples_too_long_for_the_model_are_warned_as_the_template_is_chosen(tmp_path):
    ctx = SimpleNamespace(launcher=TrainingLauncher(tmp_path / "runs"))
    rows = 12
    frame = pd.DataFrame({"x": np.arange(rows), "note": ["word " * 1000] * rows, "y": ["a", "b"] * (rows // 2)})
    path = str(tmp_path / "notes.csv")
    frame.to_csv(path, index=False)
    choice = (path, "y", ["x", "note"], "auto")
    warning = length_warning(ctx, *choice, "lift", "", 2, False, "tiny")
    assert warning.startswith("⚠️ 12 of 12 rows make examples longer than")
    assert length_warning(ctx, path, "y", ["x"], "auto", "lift", "", 2, False, "tiny") == ""
    # A template the message line already refuses, or a model the Train tab refuses, is not warned about here.
    assert length_warning(ctx, *choice, "custom", "{nope}", 2, False, "tiny") == ""
    assert length_warning(ctx, *choice, "lift", "", 2, False, str(tmp_path / "no-such-model")) == ""
    assert length_warning(ctx, *choice, "lift", "", 2, False, None) == ""


def test_the_active_table_line_without_a_target_asks_for_one(tmp_path):
    path = tmp_path / "fruit.csv"
    pd.DataFrame({"size": range(12), "fruit": ["apple", "pear"] * 6}).to_csv(path, index=False)
    assert active_table_line(str(path), None, [], "auto") == (
        "Active table: **fruit.csv** · ⚠️ choose the target in the Data tab")
