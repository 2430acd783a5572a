"""The whole app in a real browser (headless Chromium through Playwright), driven as a new user would:
generate -> upload -> choose target -> template -> Start -> Stop -> Resume -> Evaluate -> Explore -> Runs with the
`tiny` model and a new user's mistakes on the way, then a page reload during a training and Stop, then a malformed
upload. The walk saves a full-page screenshot of each tab in its temporary folder.

Marked `browser` and `slow`: minutes of a real browser, left out of the fast loop (`pytest -m "not slow"`). A missing
Chromium or Playwright fails these tests, with how to install it, and leaves the rest of the suite alone."""

import re
from pathlib import Path

import pytest
from helpers import two_gaussians

try:
    from playwright import sync_api
except ImportError:  # reported by the `chromium` fixture, so only this module's tests fail
    sync_api = None

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"

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
# The x and y ranges a map is drawn with, and what its y axis is scaled to.
MAP_AXES_JS = """
(element) => ({
  x: element.layout.xaxis.range, y: element.layout.yaxis.range, scaleanchor: element.layout.yaxis.scaleanchor,
})
"""
# Records in window.__mapNotes every note of a map's drawing that the given panel shows, as it changes: the levels
# of a small map come and go faster than a test can poll.
RECORD_MAP_NOTES_JS = """
(panel) => {
  window.__mapNotes = [];
  const record = () => {
    for (const text of [...panel.querySelectorAll('.prose')].map((prose) => prose.textContent.trim())) {
      if (/^(Level \\d+:|[\\d,]+ grid points)/.test(text) && window.__mapNotes.at(-1) !== text) {
        window.__mapNotes.push(text);
      }
    }
  };
  new MutationObserver(record).observe(panel, {subtree: true, childList: true, characterData: true});
}
"""
# The visible tables' column headers that are cut off: text cut short, or reaching past the table's right edge
# (or the page's) when the table does not scroll sideways to them.
CLIPPED_HEADERS_JS = """
(panel) => {
  const clipped = [];
  for (const grid of panel.querySelectorAll('[role=grid]')) {
    if (!grid.checkVisibility()) continue;
    const viewport = grid.querySelector('.virtual-table-viewport') || grid;
    const scrolls = viewport.scrollWidth > viewport.clientWidth + 1
      && getComputedStyle(viewport).overflowX !== 'hidden';
    const right = Math.min(grid.getBoundingClientRect().right, document.documentElement.clientWidth);
    for (const header of grid.querySelectorAll('th[role=columnheader]')) {
      const text = header.querySelector('.header-content') || header;
      const beyond = header.getBoundingClientRect().right > right + 1;
      if (text.scrollWidth > text.clientWidth + 1 || (beyond && !scrolls)) {
        clipped.push(`${grid.getAttribute('aria-label')}: ${header.title || header.innerText}`);
      }
    }
  }
  return clipped;
}
"""


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
    # What the page shows may come late on a busy machine (another pytest-xdist worker on the other core): every
    # expect() waits as long as an action does, not Playwright's 5 s.
    sync_api.expect.set_options(timeout=STEP_TIMEOUT_MS)
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


def screenshot(page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / name), full_page=True)


def table_line(page):
    """The line above the tab bar naming the active table."""
    return page.locator(".table-line").first.get_by_role("paragraph")


def expect_one_message(container, text: str) -> None:
    """`text` is shown exactly once in `container`, as a warning."""
    expect(container.get_by_text(re.compile("^⚠️ " + re.escape(text)))).to_have_count(1)
    expect(container.get_by_text(text)).to_have_count(1)


def choose_in(page, dropdown, name: str) -> None:
    dropdown.click()
    choose_option(page, name)


def fruit_table(folder: Path) -> str:
    """fruit.csv: two numeric features, a class y, and `name`, a text column with 200 different values."""
    frame = two_gaussians(n=200)
    frame.insert(2, "name", [f"fruit {index}" for index in range(200)])
    path = folder / "fruit.csv"
    frame.to_csv(path, index=False)
    return str(path)


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
    # The model list names the model; the line under it describes it.
    expect(train.get_by_label("Model (from the list, a hub id or a local folder)")).to_have_value("tiny")
    expect(train.get_by_text(re.compile(r"^tiny: 0\.126M parameters; "))).to_be_visible()
    train.get_by_role("radio", name="none").check()
    set_number(train, "Epochs", 0)  # no epoch cap: the run trains max_steps
    set_number(train, "Max steps", max_steps)
    set_number(train, "Learning rate", 0.005)
    set_number(train, "Batch size", 8)
    return press_start(train)


def press_start(train) -> str:
    """Press Start in the Train tab; returns the run's name."""
    train.get_by_role("button", name="Start training").click()
    started = train.get_by_text(re.compile(r"^Started run \S+\.$"))
    expect(started).to_be_visible()
    return re.fullmatch(r"Started run (\S+)\.", started.inner_text().strip()).group(1)


def plotly_plots(container):
    return container.locator(".js-plotly-plot")


def test_a_first_time_user_walks_from_generate_to_runs(page, app_server, tmp_path, no_training_left_behind):
    """generate → upload → choose target → template → Start → Stop → Resume → Evaluate → Explore → Runs, with the
    mistakes a new user makes on the way; a screenshot of every tab goes to the test's temporary folder."""
    # 1. A fresh page: no table, so the line above the tabs says what to do, and the Train tab has nothing to stop.
    expect(table_line(page)).to_have_text(re.compile(r"^No table loaded yet"))
    train = open_tab(page, "Train")
    expect(train.get_by_role("button", name="Stop", exact=True)).to_be_disabled()
    train.get_by_role("button", name="Estimate duration").click()
    expect_one_message(train, "Load a table in the Data tab first")

    # 2. Generate, then upload: the line names the table in use, under the name it was uploaded with.
    generate_moons(page)
    expect(table_line(page)).to_have_text(
        "Active table: moons-n120-noise0.1-seed0.csv · target y · classification, 2 classes · 2 features")
    data = open_tab(page, "Data")
    page.locator('input[type="file"]').first.set_input_files(fruit_table(tmp_path))
    expect(table_line(page)).to_have_text(re.compile(r"^Active table: fruit\.csv · target y · classification"))
    screenshot(page, tmp_path, "01-data.png")

    # 3. A text target with 200 different values: told at once, in the page's words, once; the task line stays.
    choose_in(page, data.get_by_label("Target (the column to predict)"), "name")
    expect_one_message(data, "The target 'name' has 200 classes, more than the limit")
    assert "--" not in data.inner_text()
    expect(data.get_by_text(re.compile(r"^Task: classification with 200 classes"))).to_be_visible()
    choose_in(page, data.get_by_label("Target (the column to predict)"), "y")
    expect(data.get_by_text("⚠️")).to_have_count(0)
    expect(table_line(page)).to_have_text(
        "Active table: fruit.csv · target y · classification, 2 classes · 2 features")  # name left the features

    # 4. A custom template left empty: one message saying what to type; then back to the paper's template.
    prompt = open_tab(page, "Prompt")
    prompt.get_by_role("radio", name="custom").check()
    expect_one_message(prompt, "The custom template is empty")
    prompt.get_by_role("radio", name="lift").check()
    expect(prompt.get_by_role("gridcell", name=re.compile(r"^When we have x1=-?\d"))).to_have_count(5)
    expect(prompt.get_by_text("⚠️")).to_have_count(0)
    screenshot(page, tmp_path, "02-prompt.png")

    # 5. Start, Stop, Resume: the buttons follow the run, and the finished run says it was stopped and resumed.
    # Stop is pressed while the run still loads: it takes effect after the first step, so the run cannot end first.
    train = open_tab(page, "Train")
    train.get_by_role("radio", name="Quick look").check()  # 80 steps
    expect(train.get_by_label("Max steps", exact=True)).to_have_value("80")
    run_name = press_start(train)
    expect(train.locator(".table-line").get_by_role("paragraph")).to_have_text(re.compile(r"^Active table: fruit\.csv"))
    start, stop = (train.get_by_role("button", name=name, exact=True) for name in ("Start training", "Stop"))
    expect(stop).to_be_enabled()
    expect(start).to_be_disabled()
    stop.click()
    expect(train.get_by_text(f"Run {run_name} stopped on request")).to_be_visible(timeout=TRAIN_TIMEOUT_MS)
    expect(stop).to_be_disabled()
    expect(start).to_be_enabled()
    train.get_by_role("button", name="Resume", exact=True).click()
    expect(train.get_by_text(f"Run {run_name} completed.")).to_be_visible(timeout=TRAIN_TIMEOUT_MS)
    expect(train.get_by_text("History: queued → running → stopped → queued → running → completed")).to_be_visible()
    expect(stop).to_be_disabled()
    screenshot(page, tmp_path, "03-train.png")

    # 6. Evaluate: the test metrics, then the baselines on the same split, every column header whole.
    evaluate = open_tab(page, "Evaluate")
    expect(evaluate.get_by_label("Run", exact=True)).to_have_value(run_name)
    expect(evaluate.get_by_text(f"Test results of {run_name}")).to_be_visible()
    evaluate.get_by_role("button", name="Fit baselines").click()
    expect(evaluate.get_by_role("grid", name="Baseline test scores").get_by_role("row")).not_to_have_count(1)
    assert evaluate.evaluate(CLIPPED_HEADERS_JS) == []
    screenshot(page, tmp_path, "04-evaluate.png")

    # 7. Explore: the boundary maps, the spread of the same pass and the sampled variance share their axes.
    explore = open_tab(page, "Explore")
    set_number(explore, "number input for Grid resolution (points per side)", 10)
    set_number(explore, "number input for Samples per point", 2)
    explore.evaluate(RECORD_MAP_NOTES_JS)
    explore.get_by_role("button", name="Draw decision boundaries").click()
    expect(explore.get_by_text("100 grid points, every one answered by the model.")).to_be_visible(
        timeout=TRAIN_TIMEOUT_MS)
    # The map is drawn level by level: its first, coarse level was on show before the finished map.
    notes = page.evaluate("window.__mapNotes")
    assert notes[0].startswith("Level 1: ") and notes[-1].startswith("100 grid points"), notes
    explore.get_by_role("button", name="Map the variance of sampled answers").click()
    expect(explore.get_by_text("of the sampled answers were invalid")).to_be_visible(timeout=TRAIN_TIMEOUT_MS)
    expect(plotly_plots(explore)).to_have_count(4)  # the model's and the baseline's maps, spread and variance
    axes = [plot.evaluate(MAP_AXES_JS) for plot in plotly_plots(explore).all()]
    assert all(axis == axes[0] for axis in axes), axes
    assert axes[0]["scaleanchor"] == "x"  # square: one unit is as long on both axes
    expect(explore.get_by_text("⚠️")).to_have_count(0)
    screenshot(page, tmp_path, "05-explore.png")

    # 8. Runs: the run is listed with every column header whole.
    runs = open_tab(page, "Runs")
    expect(runs.get_by_role("grid", name="Runs").get_by_role("row", name=re.compile(
        rf"^{run_name} completed tiny lift fruit\.csv"))).to_be_visible()
    assert runs.evaluate(CLIPPED_HEADERS_JS) == []
    screenshot(page, tmp_path, "06-runs.png")
    print(f"screenshots: {tmp_path}")


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
