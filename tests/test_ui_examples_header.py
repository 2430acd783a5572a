"""The Data tab's one-click examples and its row cap on a multi-user server, and the header: the default training's
duration here, and the Duplicate button on a Space."""

from dataclasses import replace
from types import SimpleNamespace

import gradio as gr
import pandas as pd
import pytest

from lift_core.access import VisitorLimits
from lift_core.config import TrainConfig
from lift_core.estimate import estimate_duration, readable_duration
from lift_core.examples import EXAMPLE_TABLES
from lift_core.launcher import TrainingLauncher
from lift_core.models import resolve_model
from lift_core.synthetic import REGRESSION_KINDS
from lift_ui import header
from lift_ui.context import AppContext
from lift_ui.tables import NO_TARGET
from lift_ui.tabs.data_tab import (OWN_MACHINE_HAS_NO_CAP, PRIVATE_COPY_HAS_NO_CAP, SYNTHETIC_DEFAULTS,
                                   SYNTHETIC_KINDS, RowCap, generate, load_upload, row_cap)

MAX_ROWS = 25
# The outputs of /load_example: those of /upload (see test_ui_data_prompt.py), then the example's template.
EXAMPLE_OUTPUTS = ("message", "info", "preview", "summary", "target", "features", "task", "task_line", "plot",
                   "upload", "template")


def load_example(client, name: str) -> dict:
    return dict(zip(EXAMPLE_OUTPUTS, client.predict(name, api_name="/load_example")))


def active_table(client, target, features) -> str:
    return client.predict(target, features, "auto", api_name="/table_line")[0]


# ---- one-click examples --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", EXAMPLE_TABLES)
def test_an_example_table_loads_as_an_upload_with_its_target_and_template(client, app_server, name):
    example = EXAMPLE_TABLES[name]
    shown = load_example(client, example.file)
    rows, columns = pd.read_csv(example.path).shape
    assert shown["message"] == ""
    assert shown["info"] == (f"**{example.file}**: {rows} rows × {columns} columns. "
                             f"An example table: {example.description}.")
    assert shown["target"]["value"] == example.target
    assert example.target not in shown["features"]["value"]
    assert shown["template"] == example.template
    assert shown["upload"] is None  # the upload box no longer shows an earlier file
    # Copied like an upload, byte for byte, under its own name: a run records the copy.
    copies = list((app_server["runs_dir"] / "uploads").glob(f"*/{example.file}"))
    assert [copy.read_bytes() for copy in copies] == [example.path.read_bytes()]
    features = shown["features"]["value"]
    assert active_table(client, example.target, features).startswith(f"Active table: **{example.file}**")


@pytest.mark.parametrize("kind", SYNTHETIC_KINDS)
def test_a_synthetic_example_is_generated_with_the_tab_defaults(client, kind):
    shown = load_example(client, kind)
    settings = SYNTHETIC_DEFAULTS
    dimensions = f"-p{settings['p']}" if kind in REGRESSION_KINDS else ""
    name = f"{kind}-n{settings['n']}{dimensions}-noise{settings['noise']:g}-seed{settings['seed']}.csv"
    assert shown["message"] == "" and shown["info"].startswith(f"**{name}**")
    assert shown["target"]["value"] == "y" and shown["template"] == "lift"
    assert shown["task_line"].startswith("Task: **regression**" if kind in REGRESSION_KINDS
                                         else "Task: **classification**")
    assert active_table(client, "y", shown["features"]["value"]).startswith(f"Active table: **{name}**")


def test_an_unknown_example_keeps_the_current_table(client):
    load_example(client, "fruit.csv")
    shown = load_example(client, "no-such-example")
    assert shown["message"].startswith("⚠️ There is no example named 'no-such-example'. The examples: moons.csv")
    assert "Still using the previous table, fruit.csv." in shown["message"]
    assert shown["template"] == {"__type__": "update"}  # left as it is
    assert active_table(client, "fruit", ["colour"]).startswith("Active table: **fruit.csv**")


# ---- the row cap of a multi-user server ----------------------------------------------------------------------

def write_rows(path, rows: int) -> str:
    pd.DataFrame({"x": range(rows), "y": [index % 2 for index in range(rows)]}).to_csv(path, index=False)
    return str(path)


SPACE_CAP = row_cap(SimpleNamespace(limits=VisitorLimits(max_rows=MAX_ROWS), on_space=True))


def test_an_upload_over_the_row_cap_is_refused_with_the_limit_and_the_private_copy(tmp_path):
    earlier = str(EXAMPLE_TABLES["moons"].path)
    _, message, info, *_, upload = load_upload(tmp_path, SPACE_CAP, write_rows(tmp_path / "big.csv", MAX_ROWS + 5),
                                               earlier)
    assert message == (f"⚠️ {MAX_ROWS + 5} rows are more than this server takes in one table ({MAX_ROWS} at most). "
                       f"{PRIVATE_COPY_HAS_NO_CAP}  \nStill using the previous table, moons.csv.")
    assert upload is None and info == gr.skip()
    assert not list(tmp_path.glob("*/big.csv"))  # nothing copied

    _, message, info, *_ = load_upload(tmp_path, SPACE_CAP, write_rows(tmp_path / "small.csv", MAX_ROWS), earlier)
    assert message == "" and info.startswith(f"**small.csv**: {MAX_ROWS} rows")


def test_generating_over_the_row_cap_is_refused(tmp_path):
    _, message, *_ = generate(tmp_path, SPACE_CAP, "moons", MAX_ROWS + 1, 0.1, 0, 1, None)
    assert message.startswith(f"⚠️ Cannot generate 'moons': {MAX_ROWS + 1} rows are more than this server takes")


def test_the_row_cap_comes_from_the_visitor_limits(tmp_path):
    assert SPACE_CAP == RowCap(MAX_ROWS, PRIVATE_COPY_HAS_NO_CAP)
    assert row_cap(SimpleNamespace(limits=VisitorLimits(max_rows=10), on_space=False)) == RowCap(
        10, OWN_MACHINE_HAS_NO_CAP)
    assert row_cap(SimpleNamespace(limits=None, on_space=True)) == RowCap()
    assert row_cap(SimpleNamespace(limits=VisitorLimits(max_rows=0), on_space=True)) == RowCap()
    # Without a cap a table of any size loads.
    _, message, info, *_ = load_upload(tmp_path, RowCap(), write_rows(tmp_path / "table.csv", 1000), None)
    assert message == "" and info.startswith("**table.csv**: 1000 rows")


# ---- the header ----------------------------------------------------------------------------------------------

def context(tmp_path, on_space=False) -> AppContext:
    runs_dir = tmp_path / "runs"
    return AppContext(runs_dir=runs_dir, default_model="tiny", default_quant="none", hardware="a test machine",
                      launcher=TrainingLauncher(runs_dir), on_space=on_space)


def test_the_duration_line_estimates_the_default_training_of_the_table(tmp_path, monkeypatch):
    monkeypatch.setattr("lift_core.models.has_cuda", lambda: False)  # the CPU's rough speed of the tiny model
    ctx, fruit = context(tmp_path), EXAMPLE_TABLES["fruit"]
    expected = estimate_duration(TrainConfig(data=str(fruit.path), target="fruit", template=fruit.template,
                                             model="tiny", quant="none"), ctx.runs_dir)
    line = header.default_training_line(ctx, str(fruit.path), "fruit", [], "auto", fruit.template, "")
    assert line == f"⏱️ The default training of **fruit.csv** (`tiny`) takes about " \
                   f"{readable_duration(expected.seconds)} here."
    assert header.default_training_line(ctx, None, None, [], "auto", "lift", "") == header.NO_TABLE_DURATION
    assert header.default_training_line(ctx, str(fruit.path), None, [], "auto", "lift", "") == (
        f"⏱️ No estimate of the default training of **fruit.csv** here: {NO_TARGET}")


def test_the_duration_line_says_when_the_model_has_no_speed_here(tmp_path):
    # The tiny model by its folder: a model with no rough guess of its speed, never trained nor timed here.
    folder = resolve_model("tiny")
    ctx, moons = replace(context(tmp_path), default_model=folder), EXAMPLE_TABLES["moons"]
    line = header.default_training_line(ctx, str(moons.path), "y", ["x1", "x2"], "auto", "lift", "")
    assert line == (f"⏱️ How long the default training of **moons.csv** takes here is not known until `{folder}` has "
                    "trained or been timed here (**Estimate duration** in the Train tab).")


@pytest.mark.parametrize("on_space", [True, False])
def test_the_duplicate_button_is_only_on_a_space(tmp_path, on_space):
    with gr.Blocks() as page:
        header.build(context(tmp_path, on_space))
    buttons = [block for block in page.blocks.values() if isinstance(block, gr.DuplicateButton)]
    texts = [block.value for block in page.blocks.values() if isinstance(block, gr.Markdown)]
    assert len(buttons) == on_space
    assert (header.PRIVATE_COPY in texts) == on_space
    assert "**Hardware:** a test machine" in texts[0]


# ---- the header in the app (once lift_ui/__init__.py builds it) ----------------------------------------------

def test_the_app_has_the_duplicate_button_only_on_a_space(app_server, tmp_path):
    from lift_ui import build_app

    def duplicate_buttons(app) -> int:
        return sum(isinstance(block, gr.DuplicateButton) for block in app.blocks.values())

    on_space = build_app(tmp_path / "runs", default_model="tiny", default_quant="none", on_space=True,
                         limits=VisitorLimits())
    assert duplicate_buttons(on_space) == 1
    assert duplicate_buttons(app_server["app"]) == 0


def test_the_app_header_follows_the_loaded_table(client):
    load_example(client, "moons.csv")
    line = client.predict("y", ["x1", "x2"], "auto", "lift", "", api_name="/default_training_time")
    assert line.startswith("⏱️ The default training of **moons.csv** (`tiny`) takes about")


# ---- in a browser --------------------------------------------------------------------------------------------

@pytest.mark.browser
@pytest.mark.slow
def choose_template(page, kind: str) -> None:
    page.get_by_role("tab", name="Prompt", exact=True).click()
    page.get_by_role("radio", name=kind).check()


def test_a_click_on_an_example_loads_it_in_the_page(app_server):
    """The hidden boxes an example's click goes through reach the page: the table, target, template and header."""
    from playwright import sync_api
    expect = sync_api.expect
    expect.set_options(timeout=60_000)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                             args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(app_server["url"])
            choose_template(page, "names")  # an example's click sets its own template over the page's
            page.get_by_role("tab", name="Data", exact=True).click()
            page.get_by_role("gridcell", name="fruit.csv", exact=True).click()
            expect(page.get_by_text("fruit.csv: 240 rows × 4 columns.", exact=False)).to_be_visible()
            expect(page.get_by_label("Target (the column to predict)")).to_have_value("fruit")
            expect(page.get_by_text("The default training of fruit.csv (tiny) takes about")).to_be_visible()
            page.get_by_role("tab", name="Prompt", exact=True).click()
            expect(page.get_by_role("radio", name=EXAMPLE_TABLES["fruit"].template)).to_be_checked()

            choose_template(page, "names")
            page.get_by_role("tab", name="Data", exact=True).click()
            page.get_by_role("button", name="spiral", exact=True).click()
            expect(page.get_by_text("spiral-n400-noise0.1-seed0.csv: 400 rows", exact=False)).to_be_visible()
            page.get_by_role("tab", name="Prompt", exact=True).click()
            expect(page.get_by_role("radio", name="lift")).to_be_checked()
        finally:
            browser.close()
