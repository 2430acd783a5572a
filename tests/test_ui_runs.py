"""The Runs tab through the app's API, on copies of one tiny trained run, and its figure builders on hand-made
metrics rows."""

import json
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pandas as pd
import pytest
from helpers import plotly_json

from lift_core.access import RunAccess
from lift_core.runs import Run
from lift_ui.common import shown_number
from lift_ui.figures.training import OVERLAY_METRICS, loss_curve, overlay
from lift_ui.tabs.runs_tab import fitted_columns, run_actions, runs_table

ROWS = [
    {"step": 1, "loss": 2.0, "decision_loss": 3.0},
    {"step": 2, "eval_loss": 1.5, "eval_decision_loss": 2.5, "val_accuracy": 0.6},
    {"step": 3, "loss": 1.0, "decision_loss": 2.0},
    {"step": 4, "eval_loss": 0.5, "eval_decision_loss": 0.7, "val_accuracy": 0.9},
]
REGRESSION_ROWS = [{"step": 1, "loss": 1.0}, {"step": 2, "eval_loss": 0.8, "val_rae": 1.4}]


@pytest.fixture(scope="module")
def runs(tiny_run, app_server):
    """Two copies of the session's tiny run in the server's runs folder, and a stopped one, which can be
    resumed."""
    copies = {}
    for name in ("first", "second", "halted"):
        copies[name] = Run(app_server["runs_dir"] / name)
        shutil.copytree(tiny_run[1].path, copies[name].path)
    status_file = copies["halted"].path / "status.json"
    status_file.write_text(json.dumps({**json.loads(status_file.read_text()), "state": "stopped"}))
    return copies


def open_runs_tab(client):
    """/runs, as opening the Runs tab does: the run choices of the client's session refreshed."""
    return client.predict(None, [], api_name="/runs")


# --- Figures -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("metric, key", [("train loss", "loss"), ("eval decision loss", "eval_decision_loss")])
def test_the_overlay_draws_one_line_per_run_of_the_chosen_metric(metric, key):
    figure = overlay({"a": ROWS, "b": ROWS[:2]}, metric)
    assert [trace.name for trace in figure.data] == ["a", "b"]
    assert list(figure.data[0].y) == [row[key] for row in ROWS if key in row]
    assert figure.data[0].line.color != figure.data[1].line.color
    assert figure.layout.yaxis.title.text == metric and "yaxis2" not in figure.to_dict()["layout"]


def test_the_overlay_of_validation_scores_names_what_each_run_scores():
    mixed = overlay({"a": ROWS, "b": REGRESSION_ROWS}, "validation score", log_y=True)
    assert [trace.name for trace in mixed.data] == ["a (val accuracy)", "b (val RAE)"]
    assert mixed.layout.yaxis.title.text == "validation score"
    assert mixed.layout.yaxis.type == "linear"  # log scale is for the losses
    accuracies = overlay({"a": ROWS, "c": ROWS}, "validation score")
    assert accuracies.layout.yaxis.title.text == "validation accuracy"
    assert list(accuracies.layout.yaxis.range) == [0, 1.02]


def test_every_overlay_metric_can_be_drawn():
    for metric in OVERLAY_METRICS:
        assert len(overlay({"a": ROWS}, metric).data) == 1


@pytest.mark.parametrize("figure", [loss_curve([]), loss_curve([], log_y=True), overlay({}),
                                    overlay({"a": REGRESSION_ROWS[:1]}, "eval decision loss")],
                         ids=["loss", "log loss", "overlay", "overlay of an unlogged metric"])
def test_an_empty_loss_figure_has_clean_axes_from_zero(figure):
    assert len(figure.layout.annotations) == 1 and not figure.data
    for axis in (figure.layout.xaxis, figure.layout.yaxis):
        assert min(axis.range) >= 0 and axis.showticklabels is False


def test_a_linear_loss_axis_starts_at_zero():
    assert loss_curve(ROWS).layout.yaxis.rangemode == "tozero"
    assert overlay({"a": ROWS}).layout.yaxis.rangemode == "tozero"


# --- The table -----------------------------------------------------------------------------------------------

def test_the_runs_table_spreads_its_columns_over_the_width_by_their_text():
    frame = pd.DataFrame({"run": ["20261203-065322-smollm2-135m-lift"], "state": ["completed"], "target": ["y"]})
    widths = [float(width.rstrip("%")) for width in fitted_columns(frame).column_widths]
    assert sum(widths) == pytest.approx(100, abs=0.2)
    run, state, target = widths
    assert run > state > target  # the header "target" is wider than its value, and asks for room too
    assert run < 3 * state  # a long name wraps rather than taking the table
    assert fitted_columns(runs_table([])).column_widths  # the headers alone before any run


# --- Through the app -----------------------------------------------------------------------------------------

def test_the_overlay_endpoint_draws_the_chosen_metric_of_each_run(client, runs):
    open_runs_tab(client)
    plot = client.predict(["second", "first"], False, "eval loss", api_name="/overlay")
    figure = plotly_json(plot)
    assert [trace["name"] for trace in figure["data"]] == ["second", "first"]  # in the order picked
    assert figure["layout"]["yaxis"]["title"]["text"] == "eval loss"


def test_run_details_round_the_test_metrics_for_display(client, runs):
    open_runs_tab(client)
    plot, overview, evaluation, config = client.predict("first", False, api_name="/run_details")
    saved = runs["first"].eval_results()
    assert evaluation.keys() == saved.keys()
    for key, value in evaluation.items():
        assert value == (shown_number(saved[key]) if isinstance(saved[key], float) else saved[key])


def test_the_adapter_zip_is_named_after_the_run_and_shown_whole(client, runs, app_server):
    open_runs_tab(client)
    path, message = client.predict("first", api_name="/download_adapter")
    assert Path(path).name == "first-adapter.zip" and message == ""
    assert "adapter_config.json" in zipfile.ZipFile(path).namelist()
    # The whole width of the tab, under the buttons, rather than a narrow slot of their row.
    box = next(block for block in app_server["app"].blocks.values()
               if isinstance(block, gr.File) and block.label.startswith("Adapter"))
    assert not isinstance(box.parent, gr.Row)


def test_resume_is_offered_only_for_a_run_that_can_resume(runs, app_server):
    ctx = SimpleNamespace(access=lambda request: RunAccess(app_server["runs_dir"]))
    for name, resumable in (("first", False), ("halted", True), ("no-such-run", False)):
        resume, confirm, adapter_zip = run_actions(ctx, name, None)
        assert resume.interactive is resumable, name
        assert confirm.interactive is (name != "no-such-run") and confirm.value is False
        assert adapter_zip.visible is False  # a zip made for another run goes
