"""Two visitors of one multi-user server (a public Space) cannot see, stop, resume or delete each other's runs, and
neither can change a shipped example: proved through the API, as any client could call it, then in two browsers.

The server serves an example run of its own, made here with the tiny model, so these tests do not depend on the
shipped example runs."""

import re

import pytest
from gradio_client.exceptions import AppError
from helpers import figure_points, new_client, served_app, wait_for
from test_browser import browser, chromium, expect, open_tab, start_training  # noqa: F401 (fixtures among them)
from test_ui_train_runs import poll_status, started_run

from lift_core.access import VisitorLimits
from lift_core.launcher import TrainingLauncher
from lift_core.runs import Run
from lift_ui.tabs.train_tab import NO_RUN

pytestmark = pytest.mark.slow  # a training and a served app in each

# The tiny model, stopped only by Stop: it trains for minutes, a step logged at a time.
LONG_TRAINING = {"target": "y", "model": "tiny", "quant": "none", "lr": 0.005, "epochs": 0, "max_steps": 100_000,
                 "logging_steps": 1}
# What a visitor is told of a run that is not theirs: the handler finds no such run, or gradio's check of a run
# picker's choices (the session's own runs and the examples) refuses the name first.
NOT_THEIRS = re.compile(r"There is no run named|not in the list of choices")
READ_ONLY = "is a shipped example: it can be opened, evaluated and explored, but not resumed, stopped or deleted"


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_cache, one_torch_thread):
    """A multi-user app serving one example run, made here with the tiny model; closed after the module."""
    from assets.make_examples import make_run

    examples_dir = tmp_path_factory.mktemp("example-runs")
    example = make_run("moons", examples_dir, "tiny", max_steps=10, quant="none")
    with served_app(tmp_path_factory.mktemp("runs"), limits=VisitorLimits(), examples_dir=examples_dir) as served:
        yield {**served, "example": example}


def end_every_training(runs_dir) -> None:
    """No visitor's run left waiting or training (the server's processes outlive a test that failed midway)."""
    launcher = TrainingLauncher(runs_dir)
    for run in launcher.waiting_runs():
        run.fail("Left waiting by a test.")
    if launcher.stop():
        wait_for(launcher.active_run, lambda run: run is None, timeout=120, what="the training to stop")


def answer(client, *inputs, api_name: str, message: int) -> str:
    """The message output (at index `message`) of an endpoint, or the error the server raised instead."""
    try:
        return client.predict(*inputs, api_name=api_name)[message]
    except AppError as error:
        return str(error)


def listed(client) -> dict[str, set[str]]:
    """The runs a session's Runs tab shows, in its table and its two pickers, after /runs (as opening the tab)."""
    table, selected, compared = client.predict(None, [], api_name="/runs")
    return {"table": {row[0] for row in table["data"]}, "run": {name for _, name in selected["choices"]},
            "compared": {name for _, name in compared["choices"]}}


def last_step(run: Run) -> int:
    return max((row["step"] for row in run.metrics() if "loss" in row), default=0)


def change_example(client, example: str) -> tuple[str, str]:
    """What Delete (confirmed) and Resume answer a session asking to change the example run."""
    listed(client)  # the Runs tab opened: the example among the session's choices
    return (answer(client, example, True, [], api_name="/delete_run", message=0),
            answer(client, example, api_name="/resume_run", message=0))


@pytest.fixture(scope="module")
def two_visitors(server):
    """Visitor A trains; visitor B, another API session, tries everything on A's run while it trains and after A
    stopped it, queues a run of its own and takes it out of the line; both try to change the example; then A
    deletes its run. What each was answered, and the run's state on the way."""
    a, b = new_client(server["url"]), new_client(server["url"])
    a.predict("moons.csv", api_name="/load_example")
    b.predict("moons", api_name="/load_example")
    seen = {"a_start": a.predict(**LONG_TRAINING, api_name="/start")}
    run = Run(server["runs_dir"] / started_run(seen["a_start"]))
    seen["run"] = run
    try:
        poll_status(a, lambda plot, progress, log, state: figure_points(plot) > 0, "A's first loss points")
        # B while A's run trains.
        seen["b_status"] = b.predict(False, 0, api_name="/status")[:4]
        seen["b_listed"] = listed(b)
        seen["b_details"] = answer(b, run.name, False, api_name="/run_details", message=1)
        seen["b_stop"] = b.predict(api_name="/stop")
        seen["after_b_stop"] = {"state": run.status()["state"], "stop_requested": run.stop_requested(),
                                "step": last_step(run)}
        seen["step_later"] = wait_for(lambda: last_step(run), lambda step: step > seen["after_b_stop"]["step"],
                                      timeout=60, what="A's run to train on after B's Stop")
        # B's own run waits for the slot; B's Stop takes it out of the line and leaves A's run alone.
        seen["b_start"] = b.predict(**{**LONG_TRAINING, "max_steps": 5}, api_name="/start")
        seen["b_waiting"] = b.predict(False, 0, api_name="/status")[3]
        seen["a_listed_while_b_waits"] = listed(a)
        seen["b_cancel"] = b.predict(api_name="/stop")
        seen["after_b_cancel"] = {"state": run.status()["state"], "stop_requested": run.stop_requested()}
        # A stops its run: now one its owner could resume or delete.
        seen["a_stop"] = a.predict(api_name="/stop")
        poll_status(a, lambda plot, progress, log, state: "stopped" in state, "A's run to stop")
        seen["b_listed_stopped"] = listed(b)
        seen["b_on_stopped"] = {
            "details": answer(b, run.name, False, api_name="/run_details", message=1),
            "evaluate": answer(b, run.name, api_name="/evaluate", message=-1),
            "boundary": answer(b, run.name, 10, 0.2, "logreg", False, api_name="/boundary", message=-1),
            "baselines": answer(b, run.name, api_name="/baselines", message=-1),
            "zip": answer(b, run.name, api_name="/download_adapter", message=1),
            "resume": answer(b, run.name, api_name="/resume_run", message=0),
            "delete": answer(b, run.name, True, [], api_name="/delete_run", message=0),
        }
        seen["after_b_tries"] = {"state": run.status()["state"], "folder": run.path.is_dir()}
        example = server["example"].name
        seen["change_example"] = {"A": change_example(a, example), "B": change_example(b, example)}
        seen["b_evaluates_example"] = answer(b, example, api_name="/evaluate", message=-1)
        seen["a_listed"] = listed(a)
        seen["a_delete"] = answer(a, run.name, True, [], api_name="/delete_run", message=0)
    finally:
        end_every_training(server["runs_dir"])
    return seen


def test_another_visitor_does_not_see_a_training_run(two_visitors, server):
    plot, progress, log, state = two_visitors["b_status"]
    assert state == NO_RUN and figure_points(plot) == 0 and progress == "" and log == ""  # B's page follows nothing
    example = server["example"].name
    assert two_visitors["b_listed"] == {"table": {example}, "run": {example}, "compared": {example}}
    # Once A's run has stopped, B has a run of its own (queued, then taken out of the line): still not A's.
    later = two_visitors["b_listed_stopped"]
    assert all(example in names and two_visitors["run"].name not in names for names in later.values()), later
    assert NOT_THEIRS.search(two_visitors["b_details"]), two_visitors["b_details"]


def test_another_visitors_stop_leaves_the_run_training(two_visitors):
    assert two_visitors["b_stop"] == "No training of yours is running."
    assert two_visitors["after_b_stop"]["state"] == "running" and not two_visitors["after_b_stop"]["stop_requested"]
    assert two_visitors["step_later"] > two_visitors["after_b_stop"]["step"]


def test_a_visitors_run_waits_for_the_slot_and_their_stop_cancels_only_it(two_visitors):
    queued = re.fullmatch(r"Queued run `(\S+)`: place 1 in line\.", two_visitors["b_start"])
    assert queued, two_visitors["b_start"]
    assert f"Run `{queued.group(1)}`** waits for the training slot" in two_visitors["b_waiting"]
    assert "it starts next" in two_visitors["b_waiting"]
    assert queued.group(1) not in two_visitors["a_listed_while_b_waits"]["table"]
    assert two_visitors["b_cancel"].startswith(f"Took run `{queued.group(1)}` out of the line")
    assert two_visitors["after_b_cancel"] == {"state": "running", "stop_requested": False}


def test_another_visitor_can_neither_open_resume_nor_delete_a_stopped_run(two_visitors):
    for action, told in two_visitors["b_on_stopped"].items():
        assert NOT_THEIRS.search(told), (action, told)
    assert two_visitors["after_b_tries"] == {"state": "stopped", "folder": True}


def test_no_visitor_can_change_the_example_which_both_can_open(two_visitors, server):
    for visitor, (deleted, resumed) in two_visitors["change_example"].items():
        assert READ_ONLY in deleted and READ_ONLY in resumed, (visitor, deleted, resumed)
    assert Run(server["example"]).status()["state"] == "completed"
    assert two_visitors["b_evaluates_example"].startswith(f"Test results of **{server['example'].name}**")


def test_the_owner_sees_stops_and_deletes_their_run(two_visitors, server):
    run = two_visitors["run"]
    assert two_visitors["a_stop"].startswith(f"Stopping run `{run.name}`")
    assert two_visitors["a_listed"]["table"] == {run.name, server["example"].name}
    assert two_visitors["a_delete"] == f"Deleted run '{run.name}'."
    assert not run.path.exists()


# ---- in two browsers -----------------------------------------------------------------------------------------

@pytest.fixture
def visitor_page(browser, server):  # noqa: F811 (the imported fixture)
    """Opens the app as a new visitor: a browser context with its own storage, hence its own visitor key. Closes
    the pages, and ends every training, after the test."""
    contexts = []

    def opened():
        contexts.append(browser.new_context(viewport={"width": 1400, "height": 1000}))
        page = contexts[-1].new_page()
        page.goto(server["url"])
        expect(page.get_by_role("tab", name="Data")).to_be_visible()
        return page

    yield opened
    for context in contexts:
        context.close()
    end_every_training(server["runs_dir"])


@pytest.mark.browser
def test_a_visitors_page_shows_nothing_of_anothers_training(visitor_page, server):
    visitor_a = visitor_page()
    open_tab(visitor_a, "Data").get_by_role("gridcell", name="moons.csv", exact=True).click()
    expect(visitor_a.get_by_text("moons.csv: 400 rows × 3 columns")).to_be_visible()
    name = start_training(visitor_a, max_steps=100_000)
    expect(visitor_a.get_by_text(re.compile(r"^step \d+/100000 · elapsed"))).to_be_visible()

    visitor_b = visitor_page()
    example = server["example"].name
    runs = open_tab(visitor_b, "Runs")
    table = runs.get_by_role("grid", name="Runs")
    expect(table.get_by_role("row", name=re.compile(rf"^{example} completed"))).to_be_visible()
    expect(table.get_by_text(name)).to_have_count(0)
    runs.get_by_label("Run", exact=True).click()
    # One option, the example (the chosen one is ticked).
    expect(visitor_b.get_by_role("option")).to_have_text([re.compile(rf"{example} \(example, read-only\)$")])
    visitor_b.keyboard.press("Escape")
    train = open_tab(visitor_b, "Train")
    expect(train.get_by_text(re.compile(r"^No training run on this page yet"))).to_be_visible()
    expect(train.get_by_role("button", name="Stop", exact=True)).to_be_disabled()
    expect(train.get_by_label("Log (last lines)")).to_have_value("")

    # A's browser keeps its visitor key: the refreshed page follows A's run again, lists it, and A may stop it.
    visitor_a.reload()
    train = open_tab(visitor_a, "Train")
    expect(train.get_by_text(f"Run {name}: training…")).to_be_visible()
    train.get_by_role("button", name="Stop", exact=True).click()
    expect(train.get_by_text(f"Stopping run {name} after its current step")).to_be_visible()
    runs = open_tab(visitor_a, "Runs")
    expect(runs.get_by_role("grid", name="Runs").get_by_role("row", name=re.compile(rf"^{name} "))).to_be_visible()
