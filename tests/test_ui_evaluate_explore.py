"""The Evaluate and Explore tabs through the app's API, on tiny runs trained once for this module,
and their figure builders on small hand-made frames."""

import json
import re
import shutil
import threading
import time
from functools import partial
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from gradio_client import handle_file
from helpers import as_frame, new_client, plotly_array, plotly_json, train_tiny, two_gaussians, wait_for

from lift_core.access import RunAccess
from lift_core.baselines import CLASSIFIERS
from lift_core.boundary import (EVALUATION_BASIS, SAMPLED_BASIS, SCORED_BASIS, boundary_levels, model_boundary,
                                sampling_estimate)
from lift_core.runs import Run
from lift_core.synthetic import make_regression
from lift_ui.common import shown_number
from lift_ui.figures.evaluation import MODEL_BAR, baseline_scores_figure, confusion_figure, parity_figure
from lift_ui.figures.explore import class_boundary_figure, regression_band_figure, value_map_figure
from lift_ui.tabs import explore_tab
from lift_ui.tabs.evaluate_tab import column_legend, evaluate

CLASSES = ["0", "1"]


@pytest.fixture(scope="module")
def runs(app_server, tmp_path_factory):
    """Finished runs in the server's runs folder: a 2-D classification, a run with a text feature, a 1-D
    regression; the tiny model learns each in a few epochs."""
    def train(name, table, test_table=None):
        run_dir = app_server["runs_dir"] / name
        return train_tiny(tmp_path_factory.mktemp(name), table, test_table, run_dir=run_dir, batch_size=4)[1]

    with_text = two_gaussians(30, seed=1, std=0.5).assign(colour=lambda frame: np.where(frame.x1 > 0, "red", "blue"))
    line_train, line_test = make_regression("linear", n=40, p=1, seed=0)
    return {
        "gaussians": train("gaussians", two_gaussians(80, seed=0, std=0.5)),
        "with_text": train("with-text", with_text),
        "line": train("line", line_train, line_test),
    }


def heatmap(figure: dict) -> dict:
    return next(trace for trace in figure["data"] if trace["type"] == "heatmap")


ANSWERED = "answered by the model"


def answered_in_hover(plot) -> int:
    """How many points of a model's map its hover says the model answered."""
    return sum(text.endswith(ANSWERED) for row in heatmap(plotly_json(plot))["text"] for text in row)


# --- Evaluate ------------------------------------------------------------------------------------------------

def test_evaluate_shows_metrics_confusion_and_predictions(client, runs):
    run = runs["gaussians"]
    metrics, figure, predictions, download, legend, message = client.predict(run.name, api_name="/evaluate")
    values = dict(as_frame(metrics).values)
    assert values["Accuracy"] >= 0.9
    assert {"Macro-F1", "Log-loss", "Invalid-output rate"} <= set(values)
    n_test = run.dataset_info().n_test
    confusion = heatmap(plotly_json(figure))
    assert plotly_array(confusion["z"]).sum() == n_test
    assert list(confusion["x"]) == CLASSES
    shown = as_frame(predictions)
    assert len(shown) == n_test
    saved = pd.read_csv(download)
    assert len(saved) == n_test
    assert run.name in message
    # Numbers are rounded on the page only: the download keeps every digit.
    assert np.allclose(shown["p_0"].astype(float), saved["p_0"].map(shown_number), rtol=0, atol=1e-12)
    assert (saved["p_0"] != saved["p_0"].map(shown_number)).any()
    # Every prediction column is explained under the table, the spread among them.
    assert "`spread`: how unsure the model is" in legend and "`p_<class>`" in legend and "`x1`" not in legend


def test_show_test_results_is_primary_only_while_there_is_something_new_to_show(runs, app_server):
    ctx = SimpleNamespace(access=lambda request: RunAccess(app_server["runs_dir"]))
    *_, show, message = evaluate(ctx, runs["gaussians"].name, None)
    assert show.variant == "secondary" and message.startswith("Test results of")
    *_, show, message = evaluate(ctx, "no-such-run", None)
    assert show.variant == "primary" and message.startswith("⚠️")


def test_the_column_legend_explains_only_the_prediction_columns_present():
    legend = column_legend(["p_x", "x1", "y_pred", "p_a", "p_b", "spread"], classes=["a", "b"])
    assert legend.splitlines()[0].startswith("`y_pred`")
    assert "`p_<class>`" in legend and "normalized entropy" in legend
    assert "p_x" not in legend and "std" not in legend  # a feature named like a class column is no class column
    regression = column_legend(["y_pred", "median", "std", "invalid"], classes=None)
    assert "`std`: the standard deviation of the model's sampled answers" in regression and "spread" not in regression


def test_evaluate_scores_a_run_that_stopped_before_its_evaluation(client, runs, app_server):
    stopped = Run(app_server["runs_dir"] / "stopped")
    shutil.copytree(runs["gaussians"].path, stopped.path)
    (stopped.path / "eval.json").unlink()
    (stopped.path / "predictions.csv").unlink()
    status = json.loads((stopped.path / "status.json").read_text())
    (stopped.path / "status.json").write_text(json.dumps({**status, "state": "stopped"}))
    # Opening the tab shows saved results only: it says how to get them, and loads no model.
    *_, message = client.predict(stopped.name, api_name="/saved_results")
    assert "no test results yet" in message and "Show test results" in message
    assert stopped.eval_results() is None
    metrics, figure, predictions, download, legend, message = client.predict(stopped.name, api_name="/evaluate")
    assert dict(as_frame(metrics).values)["Accuracy"] >= 0.9
    assert stopped.eval_results()["accuracy"] >= 0.9
    assert (stopped.path / "predictions.csv").exists()


@pytest.mark.parametrize("endpoint", ["/evaluate", "/saved_results"])
def test_evaluate_unknown_run_gives_a_message(client, runs, endpoint):
    *outputs, message = client.predict("no-such-run", api_name=endpoint)
    metrics, figure, predictions, download, legend = outputs
    assert as_frame(metrics).empty and figure is None and download is None and legend == ""
    assert message.startswith("⚠️") and "no-such-run" in message


def test_baselines_compare_all_classifiers_with_the_model(client, runs):
    run = runs["gaussians"]
    table, chart, message = client.predict(run.name, api_name="/baselines")
    assert sorted(as_frame(table)["name"]) == sorted(CLASSIFIERS)
    assert (run.path / "baselines.csv").exists()
    bars = plotly_json(chart)["data"][0]
    assert sorted(bars["x"]) == sorted([*CLASSIFIERS, MODEL_BAR])
    assert bars["y"][bars["x"].index(MODEL_BAR)] == run.eval_results()["accuracy"]


def test_predict_table_predicts_every_uploaded_row(client, runs, tmp_path):
    upload = tmp_path / "new.csv"
    two_gaussians(12, seed=5, std=0.5).drop(columns="y").assign(id=range(12)).to_csv(upload, index=False)
    table, download, legend, message = client.predict(runs["gaussians"].name, handle_file(str(upload)),
                                                      api_name="/predict_table")
    predicted = as_frame(table)
    assert len(predicted) == 12 and list(predicted["id"]) == list(range(12))
    assert set(predicted["y_pred"].astype(str)) <= set(CLASSES)
    assert len(pd.read_csv(download)) == 12
    assert "`spread`" in legend and "`id`" not in legend


def test_predict_table_names_missing_columns(client, runs, tmp_path):
    upload = tmp_path / "wrong.csv"
    pd.DataFrame({"x1": [0.0, 1.0], "z": [1.0, 2.0]}).to_csv(upload, index=False)
    table, download, legend, message = client.predict(runs["gaussians"].name, handle_file(str(upload)),
                                                      api_name="/predict_table")
    assert as_frame(table).empty and download is None
    assert message.startswith("⚠️") and "x2" in message


# --- Explore -------------------------------------------------------------------------------------------------

def test_boundary_maps_the_grid_for_the_model_and_a_baseline(client, runs):
    model_plot, baseline_plot, spread_plot, message = client.predict(runs["gaussians"].name, 20, 0.2, "logreg", False,
                                                                     api_name="/boundary")
    for plot in (model_plot, baseline_plot):
        figure = plotly_json(plot)
        grid = heatmap(figure)
        assert plotly_array(grid["z"]).shape == (20, 20)
        assert list(grid["colorbar"]["ticktext"]) == CLASSES
        assert [trace["name"] for trace in figure["data"][1:]] == ["train: 0", "train: 1"]
    # A map this coarse is answered everywhere: its cells are no wider than the lattice every map answers.
    assert message == "400 grid points, every one answered by the model."
    assert answered_in_hover(model_plot) == 400
    assert "answered" not in str(heatmap(plotly_json(baseline_plot))["text"])  # a baseline computes every point
    # The same pass maps the spread: the entropy of the scored probabilities, on the boundary's own axes.
    spread = plotly_json(spread_plot)
    assert heatmap(spread)["colorbar"]["title"]["text"] == "entropy"
    entropy = plotly_array(heatmap(spread)["z"])
    assert entropy.shape == (20, 20) and ((0 <= entropy) & (entropy <= 1)).all() and np.ptp(entropy) > 0
    for axis in ("xaxis", "yaxis"):
        assert spread["layout"][axis]["range"] == plotly_json(model_plot)["layout"][axis]["range"]


def test_a_boundary_is_drawn_level_by_level_coarse_first_on_the_same_axes(client, runs, app_server):
    # A copy without the maps other tests drew: a map drawn before is shown at once, in one picture.
    fresh = Run(shutil.copytree(runs["gaussians"].path, app_server["runs_dir"] / "levels",
                                ignore=shutil.ignore_patterns("maps")))
    job = client.submit(fresh.name, 30, 0.2, "logreg", False, api_name="/boundary")
    job.result()
    pictures = [outputs for outputs in job.outputs() if outputs[0] is not None]
    (first, first_baseline, _, first_note), (last, last_baseline, _, last_note) = pictures[0], pictures[-1]
    # The model's first picture comes before the baseline is fitted, the last beside it.
    assert first_baseline is None and last_baseline is not None
    assert re.fullmatch(r"Level 1: (\d+) of 900 points answered by the model so far; the rest filled in from them\. "
                        r"Refining… \(Cancel keeps this picture\)", first_note)
    assert int(first_note.split()[2]) == answered_in_hover(first) < answered_in_hover(last)
    assert last_note.startswith("900 grid points")
    for picture in (first, last):
        assert plotly_array(heatmap(plotly_json(picture))["z"]).shape == (30, 30)
    for axis in ("xaxis", "yaxis"):
        assert plotly_json(first)["layout"][axis]["range"] == plotly_json(last)["layout"][axis]["range"]


def test_score_every_point_answers_every_point(client, runs):
    model_plot, _, _, message = client.predict(runs["gaussians"].name, 30, 0.2, "logreg", True, api_name="/boundary")
    assert message == "900 grid points, every one answered by the model."
    assert answered_in_hover(model_plot) == 900


class ConfidentPredictor:
    """Sure of class 0 left of x1 = 0 and of class 1 right of it, answering every grid point at once: a stand-in
    model whose map is flat but for one line."""
    def predict(self, grid, samples, temperature, progress):
        right = (grid["x1"] > 0).to_numpy(float)
        return pd.DataFrame({"p_0": 1 - right, "p_1": right, "invalid": np.zeros(len(grid))})


def draw_with(monkeypatch, handler, *inputs) -> list:
    """Everything an Explore handler yields, its model being a ConfidentPredictor."""
    monkeypatch.setattr(explore_tab, "boundary_levels", partial(boundary_levels, predictor=ConfidentPredictor()))
    ctx = SimpleNamespace(access=lambda request: RunAccess(inputs[0].path.parent))
    return list(handler(ctx, inputs[0].name, *inputs[1:], None, progress=lambda *progress, **description: None))


def test_the_notes_count_the_points_answered_and_those_filled_in(runs, monkeypatch):
    run = runs["gaussians"]
    answered = model_boundary(run, resolution=30, predictor=ConfidentPredictor())["scored"].sum()
    assert 0 < answered < 900
    *_, (model_figure, _, _, note) = draw_with(monkeypatch, explore_tab.boundary, run, 30, 0.2, "logreg", False)
    assert note == (f"900 grid points: {answered} answered by the model, {900 - answered} filled in from answered "
                    "neighbours that agree (each at least 97% sure of the same class). Tick 'Score every point' "
                    "for the exact map.")
    assert sum(text.endswith(ANSWERED) for text in np.ravel(model_figure.data[0].text)) == answered
    *_, (variance_figure, note) = draw_with(monkeypatch, explore_tab.variance, run, 30, 0.2, 2, 1.0, False)
    assert re.fullmatch(rf"Sampled {2 * answered:,} answers in \d+ s: {answered} points × 2 samples, against 1,800 "
                        r"answers for every point of the map\. 0\.0% of the sampled answers were invalid\.", note)
    *_, (variance_figure, note) = draw_with(monkeypatch, explore_tab.variance, run, 30, 0.2, 2, 1.0, True)
    assert "1,800 answers in" in note and "900 points × 2 samples, every point of the map." in note


def test_variance_maps_vote_entropy_on_the_boundary_maps_square(client, runs):
    plot, message = client.predict(runs["gaussians"].name, 10, 0.2, 2, 1.0, False, api_name="/variance")
    spread = plotly_array(heatmap(plotly_json(plot))["z"])
    assert spread.shape == (10, 10)
    # The normalized entropy of 2 votes between 2 classes: both alike 0, split or both invalid 1, one invalid 0.5.
    assert set(np.round(spread, 6).ravel()) <= {0.0, 0.5, 1.0}
    assert message.startswith("Sampled 200 answers in ") and "100 points × 2 samples, every point" in message
    # Same margin, another resolution: the boundary, spread and variance maps share their axes and their square.
    maps = [*client.predict(runs["gaussians"].name, 20, 0.2, "logreg", False, api_name="/boundary")[:3], plot]
    layouts = [plotly_json(figure)["layout"] for figure in maps]
    for layout in layouts:
        (x_low, x_high), (y_low, y_high) = layout["xaxis"]["range"], layout["yaxis"]["range"]
        assert layout["yaxis"]["scaleanchor"] == "x"
        assert layout["yaxis"]["scaleratio"] == pytest.approx((x_high - x_low) / (y_high - y_low))
        assert layout["xaxis"]["range"] == layouts[0]["xaxis"]["range"]
        assert layout["yaxis"]["range"] == layouts[0]["yaxis"]["range"]


def test_the_sampling_estimate_scales_with_the_answers_asked_for(runs):
    run = runs["gaussians"]
    answers, seconds, basis = sampling_estimate(run, resolution=10, samples=2)
    assert answers == 200 and seconds > 0 and basis
    assert sampling_estimate(run, resolution=20, samples=2).seconds == pytest.approx(4 * seconds)
    assert sampling_estimate(run, resolution=10, samples=6).seconds == pytest.approx(3 * seconds)
    assert sampling_estimate(runs["line"], resolution=10, samples=2).answers == 20  # one feature: a line of points


def test_the_sampling_estimate_goes_by_the_closest_measured_speed(runs, tmp_path):
    """The run's test evaluation at first, then its grids: a scored boundary map, a sampled map best."""
    run = Run(tmp_path / "copy")  # a folder of its own: no grid of it was timed yet
    shutil.copytree(runs["gaussians"].path, run.path)
    assert sampling_estimate(run, resolution=10, samples=2).basis == EVALUATION_BASIS
    model_boundary(run, resolution=4, predictor=ConfidentPredictor())
    assert sampling_estimate(run, resolution=10, samples=2).basis == SCORED_BASIS
    model_boundary(run, resolution=4, samples=2, predictor=ConfidentPredictor())
    model_boundary(run, resolution=4, predictor=ConfidentPredictor())
    assert sampling_estimate(run, resolution=10, samples=2).basis == SAMPLED_BASIS
    # Nothing timed at all: no estimate.
    untimed = Run(tmp_path / "untimed")
    shutil.copytree(runs["gaussians"].path, untimed.path)
    results = json.loads((untimed.path / "eval.json").read_text())
    (untimed.path / "eval.json").write_text(json.dumps({**results, "eval_seconds": None}))
    assert sampling_estimate(untimed, resolution=10, samples=2) == (200, None, None)


def test_the_page_shows_the_estimate_before_sampling_and_can_cancel_it(client, runs, app_server):
    name = runs["gaussians"].name
    note = client.predict(name, 60, 5, False, api_name="/sampling_estimate")
    assert note.startswith("At most 18,000 answers to sample (fewer where neighbouring points agree): about ")
    assert "or less, estimated" in note
    exhaustive = client.predict(name, 60, 5, True, api_name="/sampling_estimate")
    assert exhaustive.startswith("18,000 answers to sample: about ") and "estimate" in exhaustive
    assert client.predict("no-such-run", 60, 5, False, api_name="/sampling_estimate") == ""
    fns = app_server["app"].fns
    sampling = next(index for index, fn in fns.items() if fn.api_name == "variance")
    assert any(fn.cancels == [sampling] for fn in fns.values())  # a Cancel of its own


def test_explore_needs_two_numeric_features(client, runs):
    name = runs["with_text"].name
    model_plot, baseline_plot, spread_plot, message = client.predict(name, 20, 0.2, "logreg", False,
                                                                     api_name="/boundary")
    assert model_plot is None and baseline_plot is None and spread_plot is None
    assert "two numeric features" in message and "colour (text)" in message
    plot, message = client.predict(name, 10, 0.2, 2, 1.0, False, api_name="/variance")
    assert plot is None and "two numeric features" in message


def prediction_line(plot) -> dict:
    return next(trace for trace in plotly_json(plot)["data"] if trace.get("name") == "prediction")


def test_one_feature_regression_draws_bands_with_the_extrapolation_shaded(client, runs):
    run = runs["line"]
    plot, message = client.predict(run.name, 15, 0.5, 2, 1.0, False, api_name="/variance")
    figure = plotly_json(plot)
    assert any(trace.get("fill") == "tonexty" for trace in figure["data"])
    assert len(figure["layout"]["shapes"]) == 2  # beyond the lowest and the highest training x
    job = client.submit(run.name, 15, 0.5, "polynomial", False, api_name="/boundary")
    job.result()
    lines = [[prediction_line(plot) for plot in outputs[:2] if plot is not None] for outputs in job.outputs()]
    # Every picture, the first and coarsest too, is the model's line over all 15 points; the baseline's comes after.
    assert len(lines[0]) == 1 and len(lines[-1]) == 2
    assert all(len(plotly_array(line["x"])) == 15 for pair in lines for line in pair)
    model_line = lines[-1][0]
    assert sum(text == ANSWERED for text in model_line["text"]) == 15  # a line this short is answered everywhere


# --- Figure builders -----------------------------------------------------------------------------------------

def test_confusion_figure_counts_every_row_and_invalid_answers():
    figure = confusion_figure(["a", "a", "b", "b"], ["a", "b", "b", None], ["a", "b"])
    grid = figure.data[0]
    assert list(grid.x) == ["a", "b", "(invalid)"]
    assert grid.z.tolist() == [[1, 1, 0], [0, 1, 1]]


def test_parity_figure_has_error_bars_and_the_diagonal():
    figure = parity_figure([1.0, 2.0, 3.0], [1.5, 2.0, 2.0], std=[0.1, 0.2, 0.3])
    points, diagonal = figure.data
    assert list(points.error_y.array) == [0.1, 0.2, 0.3]
    assert list(diagonal.x) == list(diagonal.y) == [1.0, 3.0]


def test_baseline_scores_figure_puts_the_best_first():
    table = pd.DataFrame({"name": ["knn", "mlp"], "rmse": [2.0, 0.5]})
    bars = baseline_scores_figure(table, "rmse", model_score=1.0).data[0]
    assert list(bars.x) == ["mlp", MODEL_BAR, "knn"]
    assert bars.marker.color[1] != bars.marker.color[0]


def test_class_boundary_figure_colours_class_and_shades_probability():
    grid = pd.DataFrame({"a": [0.0, 1.0, 0.0, 1.0], "b": [0.0, 0.0, 1.0, 1.0],
                         "p_u": [1.0, 0.5, 0.2, 0.0], "p_v": [0.0, 0.5, 0.8, 1.0]})
    train = pd.DataFrame({"a": [0.1, 0.9], "b": [0.2, 0.8], "y": ["u", "v"]})
    figure = class_boundary_figure(grid, ["a", "b"], ["u", "v"], train, "y", "t")
    z = figure.data[0].z
    # Row = b, column = a; integer part = class index, fraction = confidence above a coin flip.
    assert z[0][0] == pytest.approx(0.999) and z[0][1] == pytest.approx(0.0)
    assert z[1][0] == pytest.approx(1.6) and z[1][1] == pytest.approx(1.999)
    assert [trace.name for trace in figure.data[1:]] == ["train: u", "train: v"]


def test_maps_of_one_grid_share_their_ranges_on_a_square():
    grid = pd.DataFrame({"a": [0.0, 4.0, 0.0, 4.0], "b": [1.0, 1.0, 3.0, 3.0], "p_u": [1.0, 0.5, 0.2, 0.0],
                         "p_v": [0.0, 0.5, 0.8, 1.0], "spread": [0.0, 1.0, 0.7, 0.0]})
    train = pd.DataFrame({"a": [1.0, 3.0], "b": [1.5, 2.5], "y": ["u", "v"]})
    maps = [class_boundary_figure(grid, ["a", "b"], ["u", "v"], train, "y", "t"),
            value_map_figure(grid, ["a", "b"], "spread", train, "y", ["u", "v"], "t")]
    for figure in maps:
        assert list(figure.layout.xaxis.range) == [0.0, 4.0] and list(figure.layout.yaxis.range) == [1.0, 3.0]
        # Four x units take as many pixels as two y units: the plotting area is square.
        assert figure.layout.yaxis.scaleanchor == "x" and figure.layout.yaxis.scaleratio == 2.0
        assert figure.layout.xaxis.constrain == figure.layout.yaxis.constrain == "domain"


def test_the_hover_of_a_models_map_says_which_points_it_answered():
    grid = pd.DataFrame({"a": [0.0, 1.0, 0.0, 1.0], "b": [0.0, 0.0, 1.0, 1.0], "p_u": [1.0, 0.9, 0.8, 0.0],
                         "p_v": [0.0, 0.1, 0.2, 1.0], "spread": [0.0, 0.5, 0.7, 0.0],
                         "scored": [True, False, False, True]})
    train = pd.DataFrame({"a": [0.5], "b": [0.5], "y": ["u"]})
    filled_in = "filled in from answered neighbours"
    expected = [[f"u (p=1.00)<br>{ANSWERED}", f"u (p=0.90)<br>{filled_in}"],
                [f"u (p=0.80)<br>{filled_in}", f"v (p=1.00)<br>{ANSWERED}"]]
    assert class_boundary_figure(grid, ["a", "b"], ["u", "v"], train, "y", "t").data[0].text.tolist() == expected
    spread = value_map_figure(grid, ["a", "b"], "spread", train, "y", ["u", "v"], "t").data[0]
    assert spread.text.tolist() == [[ANSWERED, filled_in], [filled_in, ANSWERED]] and "%{text}" in spread.hovertemplate
    # A baseline's grid has no `scored` column: every point is computed, and the hover says nothing of it.
    baseline = grid.drop(columns="scored")
    assert class_boundary_figure(baseline, ["a", "b"], ["u", "v"], train, "y", "t").data[0].text[0][0] == "u (p=1.00)"
    assert value_map_figure(baseline, ["a", "b"], "spread", train, "y", ["u", "v"], "t").data[0].text is None
    line = pd.DataFrame({"x": [2.0, 0.0, 1.0], "y_pred": [3.0, 1.0, 2.0], "scored": [True, True, False]})
    prediction = regression_band_figure(line, "x", train.rename(columns={"a": "x"}), "y", "t").data[0]
    assert list(prediction.text) == [ANSWERED, filled_in, ANSWERED]  # in the order of x, as the line


def test_value_map_figure_keeps_the_given_range():
    grid = pd.DataFrame({"a": [0.0, 1.0, 0.0, 1.0], "b": [0.0, 0.0, 1.0, 1.0], "std": [0.0, 1.0, 2.0, 3.0]})
    train = pd.DataFrame({"a": [0.5], "b": [0.5], "y": [1.0]})
    figure = value_map_figure(grid, ["a", "b"], "std", train, "y", None, "t", value_range=(0, 5))
    assert figure.data[0].z.tolist() == [[0.0, 1.0], [2.0, 3.0]]
    assert (figure.data[0].zmin, figure.data[0].zmax) == (0, 5)


def test_regression_band_figure_draws_a_band_only_with_std():
    grid = pd.DataFrame({"x": np.linspace(-2, 2, 5), "y_pred": np.arange(5.0)})
    train = pd.DataFrame({"x": [-1.0, 1.0], "y": [1.0, 3.0]})
    plain = regression_band_figure(grid, "x", train, "y", "t")
    assert not any(trace.fill for trace in plain.data)
    banded = regression_band_figure(grid.assign(std=0.5), "x", train, "y", "t")
    assert list(banded.data[1].y) == list(np.arange(5.0) + 0.5)
    assert [(shape.x0, shape.x1) for shape in banded.layout.shapes] == [(-2.0, -1.0), (1.0, 2.0)]


# --- One model job at a time ------------------------------------------------------------------------------------

MODEL_JOBS = {"evaluate", "predict_table", "boundary", "variance"}


def test_model_jobs_share_one_queue_slot_and_light_endpoints_do_not(app_server):
    limits = {fn.api_name: (fn.concurrency_id, fn.concurrency_limit) for fn in app_server["app"].fns.values()}
    assert {limits[name] for name in MODEL_JOBS} == {("model_inference", 1)}
    for light in ("status", "preview_prompts", "select", "runs"):
        assert limits[light][0] != "model_inference"


def test_a_second_model_job_waits_in_the_queue_while_the_first_runs(app_server, runs, monkeypatch):
    from gradio_client.utils import Status

    # The first job (a real, small variance map) holds the slot until the second has waited behind it for half a
    # second, however fast this machine draws: a second job not held in the queue would start drawing meanwhile.
    second_waited = threading.Event()
    draws = []  # when each job's model starts and ends drawing
    draw = explore_tab.boundary_levels

    def draw_in_turn(*args, **kwargs):
        job = "variance" if "samples" in kwargs else "boundary"
        draws.append(f"{job} starts")
        if job == "variance":
            second_waited.wait(timeout=60)
        yield from draw(*args, **kwargs)
        draws.append(f"{job} ends")

    monkeypatch.setattr(explore_tab, "boundary_levels", draw_in_turn)
    name = runs["gaussians"].name
    first = new_client(app_server["url"]).submit(name, 20, 0.5, 5, 1.0, False, api_name="/variance")
    waiting = (Status.STARTING, Status.JOINING_QUEUE, Status.IN_QUEUE)
    wait_for(lambda: first.status().code not in waiting, what="the first job to start")
    second = new_client(app_server["url"]).submit(name, 10, 0.2, "logreg", False, api_name="/boundary")
    queued_behind_first = False
    while not second.done():
        status = second.status()
        if status.code == Status.IN_QUEUE and not first.done() and not queued_behind_first:
            queued_behind_first = True
            time.sleep(0.5)
            second_waited.set()
        time.sleep(0.05)
    assert first.done() and queued_behind_first
    assert draws[:2] == ["variance starts", "variance ends"], draws
    assert set(draws[2:]) == {"boundary starts", "boundary ends"}, draws
    assert first.result()[-1].endswith("of the sampled answers were invalid.")
    assert second.result()[-1].startswith("100 grid points")
