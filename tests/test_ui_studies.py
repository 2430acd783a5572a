"""The Studies tab: its figures from hand-made scores and maps, its handlers' messages, a 2-level study through the
web API from Start to the CSV, and the same study started in a real browser until its curve shows."""

import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from gradio_client import handle_file
from helpers import new_client, plotly_array, plotly_json, two_gaussians, wait_for, write_table
from test_browser import (COUNT_POINTS_JS, VISIBLE_PANEL_JS, browser, chromium, expect,  # noqa: F401 (fixtures)
                          generate_moons, open_tab, page)

from lift_core.access import VisitorLimits
from lift_core.launcher import TrainingLauncher
from lift_core.studies import LIFT
from lift_ui.common import error_message
from lift_ui.context import AppContext
from lift_ui.figures.studies import level_maps_figure, study_curve
from lift_ui.tables import NO_TABLE
from lift_ui.tabs import studies_tab

# A 2-level study of the tiny model (the served app's default) at the Quick look preset: 80 steps a run.
# Two baselines, not all eight: each run's baselines are fitted in a second or so then.
STUDY = {"kind": "sample-efficiency", "levels": "0.5,1", "noise_mode": "random", "setting": None, "seeds": 1,
         "preset": "Quick look", "baselines": ["majority", "logreg"]}
STUDY_TIMEOUT_S = 240
STUDY_TIMEOUT_MS = STUDY_TIMEOUT_S * 1000
STARTED = re.compile(r"^Started study `(\S+)`: 2 runs, one after another\.$")
STARTED_SHOWN = re.compile(r"^Started study \S+: 2 runs, one after another\.$")  # the page drops the backticks
# The outputs of studies_tab.status, in order; /study_status returns the first five (the buttons are the page's).
STATUS_OUTPUTS = ("runs", "curve", "line", "log", "timer", "start", "stop", "resume", "draw")
# The LIFT trace of the visible tab's first plot has `count` points.
LIFT_POINTS_JS = f"""
(count) => {{
  const plot = {VISIBLE_PANEL_JS}?.querySelector('.js-plotly-plot');
  const lift = (plot?.data || []).find((trace) => trace.name === '{LIFT}');
  return !!lift && ({COUNT_POINTS_JS})({{data: [lift]}}) === count;
}}
"""


# ---- figures -------------------------------------------------------------------------------------------------

def scores(levels: list[str], lift: list[float], lift_std: list[float], baseline: list[float]) -> pd.DataFrame:
    """A summary frame as study_results.summary gives it: LIFT's scores, then one baseline's."""
    return pd.DataFrame({"level": levels * 2, "method": [LIFT] * len(levels) + ["logreg"] * len(levels),
                         "mean": lift + baseline, "std": lift_std + [0.0] * len(levels), "runs": 2})


def named(figure: go.Figure) -> dict:
    return {trace.name: trace for trace in figure.data if trace.showlegend is not False}


def test_the_curve_draws_lift_bold_with_its_band_and_each_baseline_thinner():
    figure = study_curve(scores(["0.1", "0.5", "1.0"], [0.6, 0.8, 0.9], [0.1, 0.0, 0.05], [0.7, 0.75, 0.8]),
                         "share of the training rows used", "test accuracy (higher is better)", numeric_levels=True)
    traces = named(figure)
    assert set(traces) == {LIFT, f"{LIFT} ± std across seeds", "logreg"}
    lift, band, baseline = traces[LIFT], traces[f"{LIFT} ± std across seeds"], traces["logreg"]
    assert list(lift.x) == [0.1, 0.5, 1.0] and list(lift.y) == [0.6, 0.8, 0.9]
    assert list(band.y) == pytest.approx([0.7, 0.8, 0.95]) and band.fill == "tonexty"
    lower = figure.data[0]
    assert list(lower.y) == pytest.approx([0.5, 0.8, 0.85]) and lower.legendgroup == LIFT == band.legendgroup
    assert lift.line.width > baseline.line.width and list(baseline.y) == [0.7, 0.75, 0.8]
    assert figure.layout.xaxis.title.text == "share of the training rows used"
    assert figure.layout.yaxis.title.text == "test accuracy (higher is better)"


def test_names_as_levels_stay_in_the_studys_order_on_a_categorical_axis():
    levels = ["none", "shuffled", "correct"]
    figure = study_curve(scores(levels, [0.5, 0.6, 0.9], [0.0] * 3, [0.8] * 3), "feature names in the prompt",
                         "test accuracy (higher is better)", numeric_levels=False)
    assert list(named(figure)[LIFT].x) == levels
    assert figure.layout.xaxis.type == "category" and list(figure.layout.xaxis.categoryarray) == levels


def test_a_study_without_scores_yet_draws_empty_axes():
    figure = study_curve(scores([], [], [], []), "share of the training rows used", "test RAE", numeric_levels=True)
    assert figure.data == () and figure.layout.yaxis.title.text == "test RAE"


def class_grid(flip: bool) -> pd.DataFrame:
    """A 3 × 3 grid over x1, x2 whose class is 1 right of x1 = 0 (left of it when flipped)."""
    x1, x2 = np.meshgrid([-1.0, 0.5, 2.0], [-1.0, 0.0, 1.0])
    right = (x1.ravel() > 0) != flip
    return pd.DataFrame({"x1": x1.ravel(), "x2": x2.ravel(), "y_pred": right.astype(int),
                         "p_0": np.where(right, 0.1, 0.9), "p_1": np.where(right, 0.9, 0.1)})


def test_the_small_multiples_draw_one_class_map_per_level_with_one_legend_and_colour_bar():
    train = pd.DataFrame({"x1": [-1.0, 1.0], "x2": [0.0, 0.5], "y": ["0", "1"]})
    maps = [("0.5", class_grid(False), train), ("1", class_grid(True), train.iloc[:1])]
    figure = level_maps_figure(maps, ["x1", "x2"], "y", ["0", "1"], "share of the training rows used")
    heatmaps = [trace for trace in figure.data if isinstance(trace, go.Heatmap)]
    assert len(heatmaps) == 2 and [heatmap.showscale for heatmap in heatmaps] == [True, False]
    assert [heatmap.xaxis for heatmap in heatmaps] == ["x", "x2"]  # one panel each
    assert [annotation.text for annotation in figure.layout.annotations] == ["0.5", "1"]
    points = [trace for trace in figure.data if trace.name == "train: 0"]
    assert [trace.showlegend for trace in points] == [True, False]  # one legend entry for every panel
    assert list(points[1].x) == [-1.0]  # each level's own training rows


def test_a_1d_regressions_small_multiples_show_the_band_and_the_range_held_out():
    grid = pd.DataFrame({"x": np.linspace(-2, 2, 9), "y_pred": np.linspace(-2, 2, 9), "std": 0.1})
    train = pd.DataFrame({"x": [-1.0, 0.0, 1.0], "y": [-1.0, 0.0, 1.0]})
    figure = level_maps_figure([("0", grid, train), ("0.2", grid, train.iloc[1:2])], ["x"], "y", None,
                               "share of the x range held out of training at each end")
    predictions = [trace for trace in figure.data if trace.name == "prediction"]
    assert len(predictions) == 2 and any(trace.fill == "tonexty" for trace in figure.data)
    assert len(figure.layout.shapes) == 4  # beyond the training rows on both sides, in both panels
    assert figure.layout.yaxis.title.text == "y"


# ---- handlers --------------------------------------------------------------------------------------------------

def test_a_kind_fills_its_default_levels_and_shows_its_own_controls():
    levels, noise, setting = studies_tab.level_controls("label-noise")
    assert levels.value == "0,0.05,0.1,0.2" and "share of the training labels corrupted" in levels.info
    assert noise.visible and not setting.visible
    levels, noise, setting = studies_tab.level_controls("vary-setting")
    assert levels.value == "" and setting.visible and not noise.visible


def handler_context(runs_dir, limits=None) -> AppContext:
    return AppContext(runs_dir=runs_dir, default_model="tiny", default_quant="none", hardware="CPU",
                      launcher=TrainingLauncher(runs_dir, None, limits), limits=limits)


def table_inputs(tmp_path) -> dict:
    return {"data": write_table(two_gaussians(60), tmp_path / "table.csv"), "target": "y", "features": None,
            "task": "auto", "template": "lift", "template_text": "", "decimals": 2, "model": "tiny"}


@pytest.mark.parametrize("levels, problem", [
    ("0.5,abc", "Each level must be a share of the training rows in (0, 1], not 'abc'."),
    ("0.5,1.5", "Each level must be a share of the training rows in (0, 1] (got 1.5)."),
    (" , ", "Give the levels of the study, separated by commas."),
])
def test_bad_levels_are_said_in_the_estimate_line(tmp_path, levels, problem):
    ctx = handler_context(tmp_path / "runs")
    assert studies_tab.estimate(ctx, **{**STUDY, "levels": levels}, **table_inputs(tmp_path)) == error_message(problem)


def test_without_a_table_the_estimate_says_to_load_one(tmp_path):
    line = studies_tab.estimate(handler_context(tmp_path / "runs"), **STUDY, **{**table_inputs(tmp_path), "data": None})
    assert line == error_message(NO_TABLE)


def test_a_shared_server_refuses_a_study_and_lists_none(tmp_path):
    ctx = handler_context(tmp_path / "runs", VisitorLimits())
    refusal = "⚠️ Studies train many runs one after another, which this shared server cannot give"
    assert studies_tab.estimate(ctx, **STUDY, **table_inputs(tmp_path)).startswith(refusal)
    _, message, _ = studies_tab.start(ctx, **STUDY, **table_inputs(tmp_path))
    assert message.startswith(refusal)
    assert not (tmp_path / "runs" / "studies").exists()
    assert studies_tab.listed_studies(ctx, None).choices == []
    assert "duplicate this Space" in studies_tab.stop(ctx, "any-study")
    start_button = studies_tab.status(ctx, None)[STATUS_OUTPUTS.index("start")]
    assert start_button.interactive is False


# ---- a study through the web API, and in a browser ---------------------------------------------------------------

@pytest.fixture
def no_study_left_behind(app_server):
    """Stops a study the test left running (a failed assertion midway), so the next test and the server can go on."""
    yield
    launcher = TrainingLauncher(app_server["runs_dir"])
    study = launcher.active_study()
    if study is not None:
        launcher.stop_study(study)
        wait_for(launcher.active_study, lambda active: active is None, timeout=120, what="the study to stop")


def study_status(client, name: str) -> dict:
    return dict(zip(STATUS_OUTPUTS, client.predict(name, api_name="/study_status")))


def trace_levels(curve: dict) -> dict:
    """Each legend entry of the curve and its x values."""
    return {trace["name"]: list(plotly_array(trace["x"])) for trace in plotly_json(curve)["data"]
            if trace.get("showlegend") is not False}


@pytest.mark.slow
def test_a_study_started_through_the_api_trains_both_levels_and_exports_its_scores(app_server, tmp_path,
                                                                                   no_study_left_behind):
    client = new_client(app_server["url"])
    client.predict(handle_file(write_table(two_gaussians(120), tmp_path / "gaussians.csv")), api_name="/upload")
    assert client.predict(**STUDY, target="y", api_name="/study_estimate").startswith("Estimated total: about ")

    _, message, _ = client.predict(**STUDY, target="y", api_name="/start_study")
    name = STARTED.match(message).group(1)
    busy = client.predict(**STUDY, target="y", api_name="/start_study")[1]
    assert busy.startswith(f"⚠️ The server is running the study '{name}'")
    shown = wait_for(lambda: study_status(client, name), lambda shown: shown["line"].startswith("✅"),
                     timeout=STUDY_TIMEOUT_S, what="the study to finish")
    assert shown["line"].startswith(f"✅ **{name}**: sample-efficiency, 2 levels × 1 seed(s); 2 of 2 runs finished")
    runs = pd.DataFrame(shown["runs"]["data"], columns=shown["runs"]["headers"])
    assert list(runs["state"]) == ["completed", "completed"] and runs["LIFT score"].notna().all()
    assert shown["timer"]["active"] is False  # the poll ends with the study's process
    # The buttons are the page's alone, not the API's outputs: as the page would have them.
    page_context = handler_context(app_server["runs_dir"])
    start, stop, resume, draw = studies_tab.status(page_context, name)[STATUS_OUTPUTS.index("start"):]
    assert start.interactive and not stop.interactive and not resume.interactive and draw.visible
    curve = trace_levels(shown["curve"])
    assert curve[LIFT] == [0.5, 1.0] and curve["logreg"] == [0.5, 1.0]

    csv_path, message = client.predict(name, api_name="/study_csv")
    table = pd.read_csv(csv_path)
    assert set(table["level"]) == {0.5, 1.0} and (table["method"] == LIFT).sum() == 2 and message == ""

    maps, note = client.predict(name, api_name="/study_maps")
    assert note == "Drew 2 of 2 levels (each level's run with the first seed)."
    assert [trace["type"] for trace in plotly_json(maps)["data"]].count("heatmap") == 2

    assert client.predict(name, api_name="/stop_study") == f"Study `{name}` has finished: there is nothing to stop."
    assert client.predict(name, api_name="/resume_study")[0] == error_message(
        f"Study '{name}' has finished: every run has its result.")


@pytest.mark.slow
@pytest.mark.browser
def test_a_study_started_in_the_browser_shows_its_curve(page, no_study_left_behind):
    generate_moons(page)
    studies = open_tab(page, "Studies")
    levels = studies.get_by_role("textbox", name=re.compile(r"^Levels"))  # its name goes on with its help
    levels.fill("0.5,1")
    levels.press("Tab")
    baselines = studies.get_by_label("Baselines")  # one baseline, fitted in a second
    baselines.click()
    page.get_by_role("option", name="logreg", exact=True).click()
    baselines.press("Escape")  # a multiselect's list stays open for more
    expect(studies.get_by_text(re.compile(r"^Estimated total: "))).to_be_visible()
    studies.get_by_role("button", name="Start study").click()
    expect(studies.get_by_text(STARTED_SHOWN)).to_be_visible()
    page.wait_for_function(LIFT_POINTS_JS, arg=2, timeout=STUDY_TIMEOUT_MS)
    expect(studies.get_by_text(re.compile(r"^✅ .*2 of 2 runs finished"))).to_be_visible(timeout=STUDY_TIMEOUT_MS)
    names = page.evaluate(f"() => ({VISIBLE_PANEL_JS}?.querySelector('.js-plotly-plot').data || [])"
                          ".map((trace) => trace.name)")
    # The band's lower edge has no name of its own; then LIFT, its band, and the one baseline chosen.
    assert set(names) - {None} == {LIFT, f"{LIFT} ± std across seeds", "logreg"}
