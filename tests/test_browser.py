"""The whole app in a real browser (headless Chromium through Playwright), driven as a new user would:
Data -> Prompt -> Train -> Evaluate -> Explore -> Runs with the `tiny` model, then a page reload during a
training and Stop, then a malformed upload. A full-page screenshot of each tab goes to tests/artifacts/.

Marked `browser` and `slow`: minutes of a real browser, left out of the fast loop (`pytest -m "not slow"`). A missing
Chromium or Playwright fails these tests, with how to install it, and leaves the rest of the suite alone."""

import re
from pathlib import Path

import pandas as pd
import pytest

try:
    from playwright import sync_api
except ImportError:  # reported by the `chromium` fixture, so only this module's tests fail
    sync_api = None

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
# Training on two loaded CPU cores: loading the model takes ~10 s, 40 tiny steps a few more.
TRAIN_TIMEOUT_MS = 120_000
STEP_TIMEOUT_MS = 60_000

# Number of points in all traces of a plotly figure, read from the element's `data` property. Large numeric
# arrays arrive base64-encoded as {dtype, bdata} (plotly >= 6), plain lists otherwise.
COUNT_POINTS_JS = """
(element) => {
  const sizes = {f8: 8, f4: 4, i4: 4, u4: 4, i2: 2, u2: 2, i1: 1, u1: 1, u1c: 1};
  return (element.data || []).reduce((total, trace) => {
    const x = trace.x;
    if (!x) return total;
    if (x.bdata !== undefined) return total + atob(x.bdata).length / (sizes[x.dtype] || 8);
    return total + x.length;
  }, 0);
}
"""
# The visible tab's content; the other tabs stay in the DOM, hidden, with role tabpanel too.
VISIBLE_PANEL_JS = "[...document.querySelectorAll('[role=tabpanel]')].find((panel) => panel.checkVisibility())"
# The point count of the visible tab's first plot, as a wait_for_function predicate: more than `above` points.
PLOT_POINTS_ABOVE_JS = f"""
(above) => {{
  const plot = {VISIBLE_PANEL_JS}?.querySelector('.js-plotly-plot');
  return !!plot && ({COUNT_POINTS_JS})(plot) > above;
}}
"""
TRACE_TYPES_JS = "(element) => (element.data || []).map((trace) => trace.type)"


def expect(*args, **kwargs):
    return sync_api.expect(*args, **kwargs)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The browser to drive. A missing one fails the browser tests rather than skipping them: a skipped browser
    test would hide a broken setup."""
    if sync_api is None:
        pytest.fail("the playwright package is missing: pip install -r requirements-dev.txt "
                    "(or bash scripts/setup.sh --dev)", pytrace=False)
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium "
                    "(or bash scripts/setup.sh --dev)", pytrace=False)
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, app_server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(STEP_TIMEOUT_MS)
    page.goto(app_server["url"])
    expect(page.get_by_role("tab", name="Data")).to_be_visible()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def no_training_left_behind(app_server):
    """Stops a training the test left running (a failed assertion before Stop), so the server can close."""
    yield
    from lift_core.launcher import TrainingLauncher

    launcher = TrainingLauncher(app_server["runs_dir"])
    if launcher.active_run() is not None:
        launcher.stop()


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def panel(page):
    """The visible tab's content: the other tabs stay in the DOM, hidden."""
    return page.get_by_role("tabpanel")


def open_tab(page, name: str):
    page.get_by_role("tab", name=name, exact=True).click()
    expect(page.get_by_role("tab", name=name, exact=True)).to_have_attribute("aria-selected", "true")
    return panel(page)


def choose_option(page, name: str) -> None:
    """Pick an option of the open dropdown, and wait for its list to fade out (or it shows in screenshots)."""
    option = page.get_by_role("option", name=name, exact=True)
    option.click()
    expect(option).to_be_hidden()


def generate_moons(page, rows: int = 120) -> None:
    data = open_tab(page, "Data")
    data.get_by_label("Synthetic set").click()
    choose_option(page, "moons")
    data.get_by_label("Rows (n)").fill(str(rows))
    data.get_by_role("button", name="Generate").click()
    expect(data.get_by_text(f"moons-n{rows}-noise0.1-seed0.csv: {rows} rows × 3 columns")).to_be_visible()


def set_number(container, label: str, value) -> None:
    field = container.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Tab")  # leave the field, as a user would, so gradio commits the value
    expect(field).to_have_value(str(value))


def start_training(page, max_steps: int) -> str:
    """Fill the Train tab for the tiny model to train exactly max_steps steps, press Start; returns the run's name."""
    train = open_tab(page, "Train")
    # The model list shows each model with its parameter count.
    expect(train.get_by_label("Model (from the list, a hub id or a local folder)")).to_have_value(
        re.compile(r"^tiny \(0\.126M parameters; "))
    train.get_by_role("radio", name="none").check()
    set_number(train, "Epochs", 0)  # no epoch cap: the run trains max_steps
    set_number(train, "Max steps", max_steps)
    set_number(train, "Learning rate", 0.005)
    set_number(train, "Batch size", 8)
    train.get_by_role("button", name="Start training").click()
    started = train.get_by_text(re.compile(r"^Started run \S+\.$"))
    expect(started).to_be_visible()
    return re.fullmatch(r"Started run (\S+)\.", started.inner_text().strip()).group(1)


def plotly_plots(container):
    return container.locator(".js-plotly-plot")


def test_a_new_user_walks_from_data_to_runs(page, app_server, no_training_left_behind):
    # 1. Data: a synthetic moons set, its scatter plot and preview.
    generate_moons(page)
    data = panel(page)
    scatter = plotly_plots(data)
    expect(scatter).to_have_count(1)
    assert scatter.evaluate(COUNT_POINTS_JS) == 120
    expect(data.get_by_role("grid", name="First 20 rows")).to_be_visible()
    expect(data.get_by_role("grid", name="First 20 rows").get_by_role("row")).to_have_count(21)  # + header
    expect(data.get_by_text("classification with 2 classes")).to_be_visible()
    expect(data.get_by_text("⚠️")).to_have_count(0)
    screenshot(page, "01-data.png")

    # 2. Prompt: the rows as LIFT sentences.
    prompt = open_tab(page, "Prompt")
    sentences = prompt.get_by_role("gridcell", name=re.compile(r"^When we have x1=-?\d"))
    expect(sentences).to_have_count(5)
    expect(prompt.get_by_role("gridcell", name=re.compile(r"^[01]@@@$")).first).to_be_visible()
    screenshot(page, "02-prompt.png")

    # 3. Train: the loss plot gains points while the run trains, then the run completes.
    run_name = start_training(page, max_steps=40)
    train = panel(page)
    expect(train.get_by_text(f"Run {run_name} completed.")).to_be_visible(timeout=TRAIN_TIMEOUT_MS)
    expect(train.get_by_text("step 40/40")).to_be_visible()
    # 40 train-loss points and the eval-loss points, all plotted once the run is over. That the plot grows
    # while a run trains is checked on a long run below: on a quiet machine this one ends within a second.
    assert plotly_plots(train).evaluate(COUNT_POINTS_JS) > 40
    screenshot(page, "03-train.png")

    # 4. Evaluate: opening the tab shows the newest run's test metrics.
    evaluate = open_tab(page, "Evaluate")
    expect(evaluate.get_by_label("Run", exact=True)).to_have_value(run_name)
    expect(evaluate.get_by_text(f"Test results of {run_name}")).to_be_visible()
    accuracy = evaluate.get_by_role("grid", name="Test metrics").get_by_role(
        "row", name=re.compile(r"^Accuracy (0(\.\d+)?|1)$"))
    expect(accuracy).to_be_visible()
    # The accuracy shown is the share of right answers among the run's saved test predictions.
    predictions = pd.read_csv(app_server["runs_dir"] / run_name / "predictions.csv")
    shown = float(accuracy.get_by_role("gridcell").nth(1).inner_text())
    assert shown == pytest.approx((predictions["y_pred"] == predictions["y_true"]).mean(), abs=1e-4)
    expect(plotly_plots(evaluate)).to_have_count(1)  # the confusion matrix
    screenshot(page, "04-evaluate.png")

    # 5. Explore: a coarse picture first, then the full map in its place with the spread of the same pass; then
    # the variance of 2 sampled answers per point at a small resolution.
    explore = open_tab(page, "Explore")
    expect(explore.get_by_text("classification on x1 and x2")).to_be_visible()
    set_number(explore, "number input for Grid resolution (points per side)", 120)
    explore.get_by_role("button", name="Draw decision boundaries").click()
    # The tiny model answers an 8x8 preview in milliseconds, so the page may only show the 20x20 one for long
    # enough to be seen; either is a coarse picture before the full map.
    expect(explore.get_by_text(re.compile(r"^A (8×8|20×20) picture so far; refining to 120×120"))).to_be_visible(
        timeout=TRAIN_TIMEOUT_MS)
    expect(plotly_plots(explore)).to_have_count(3)
    expect(explore.get_by_text("14400 grid points")).to_be_visible(timeout=TRAIN_TIMEOUT_MS)
    for plot in plotly_plots(explore).all():
        assert "heatmap" in plot.evaluate(TRACE_TYPES_JS)
    set_number(explore, "number input for Grid resolution (points per side)", 15)
    set_number(explore, "number input for Samples per point", 2)
    explore.get_by_role("button", name="Map the variance of sampled answers").click()
    expect(explore.get_by_text("of the sampled answers were invalid")).to_be_visible(timeout=TRAIN_TIMEOUT_MS)
    expect(plotly_plots(explore)).to_have_count(3)
    assert "heatmap" in plotly_plots(explore).nth(2).evaluate(TRACE_TYPES_JS)
    expect(explore.get_by_text("⚠️")).to_have_count(0)
    screenshot(page, "05-explore.png")

    # 6. Runs: the run is listed; opening it draws its loss curve.
    runs = open_tab(page, "Runs")
    expect(runs.get_by_role("grid", name="Runs").get_by_role("row", name=re.compile(
        rf"^{run_name} completed tiny lift moons-n120"))).to_be_visible()
    runs.get_by_label("Run", exact=True).click()
    choose_option(page, run_name)
    expect(runs.get_by_text(f"{run_name}: completed · model tiny")).to_be_visible()
    loss_plot = plotly_plots(runs).first
    expect(loss_plot).to_be_visible()
    page.wait_for_function(PLOT_POINTS_ABOVE_JS, arg=40)
    assert loss_plot.evaluate("(element) => element.data.map((trace) => trace.name)") == [
        "train loss", "eval loss", "train decision loss", "eval decision loss", "val accuracy"]
    screenshot(page, "06-runs.png")


def test_a_reloaded_page_reattaches_to_the_training_and_stop_ends_it(page, app_server, no_training_left_behind):
    generate_moons(page)
    run_name = start_training(page, max_steps=20000)  # minutes of training: it only ends by Stop
    train = panel(page)
    # The bar of an earlier run may still be on show for a moment: wait for this run's own step count.
    expect(train.get_by_text(re.compile(r"^step \d+/20000 · elapsed"))).to_be_visible(timeout=TRAIN_TIMEOUT_MS)

    page.reload()
    train = open_tab(page, "Train")
    # The new page knows nothing but the runs folder, and shows the running run from it.
    expect(train.get_by_text(f"Run {run_name}: training…")).to_be_visible()
    expect(train.locator("progress")).to_be_visible()
    expect(train.get_by_text(re.compile(r"^step \d+/20000 · elapsed"))).to_be_visible()
    page.wait_for_function(PLOT_POINTS_ABOVE_JS, arg=0)
    points_seen = plotly_plots(train).evaluate(COUNT_POINTS_JS)
    page.wait_for_function(PLOT_POINTS_ABOVE_JS, arg=points_seen)  # the loss plot gains points live
    steps_seen = int(train.locator("progress").get_attribute("value"))
    page.wait_for_function(  # still live after the reload: the bar keeps moving
        f"(above) => Number({VISIBLE_PANEL_JS}?.querySelector('progress')?.value) > above", arg=steps_seen)

    train.get_by_role("button", name="Stop").click()
    expect(train.get_by_text(f"Stopping run {run_name} after its current step")).to_be_visible()
    expect(train.get_by_text(f"Run {run_name} stopped on request")).to_be_visible(timeout=TRAIN_TIMEOUT_MS)

    runs = open_tab(page, "Runs")
    expect(runs.get_by_role("grid", name="Runs").get_by_role(
        "row", name=re.compile(rf"^{run_name} stopped tiny"))).to_be_visible()
    assert (app_server["runs_dir"] / run_name / "adapter").is_dir()


def test_a_malformed_upload_shows_a_warning_and_the_app_keeps_serving(page, tmp_path):
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(bytes(range(256)) * 8)
    data = open_tab(page, "Data")
    page.locator('input[type="file"]').first.set_input_files(str(garbage))
    warning = data.get_by_text(re.compile(r"^⚠️ .*garbage\.csv"))
    expect(warning).to_be_visible()
    expect(plotly_plots(data)).to_have_count(0)  # nothing was loaded

    # The next action still works, in the same page.
    generate_moons(page, rows=60)
    expect(plotly_plots(data)).to_have_count(1)
    expect(data.get_by_text("⚠️")).to_have_count(0)
