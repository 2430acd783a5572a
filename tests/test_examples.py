"""The example tables and runs that ship with the app: reproducible from their script, read-only in the app,
and shown from their saved files without a model."""

import json
import shutil

import pandas as pd
import pytest
from safetensors import safe_open

from lift_core.access import RunAccess
from lift_core.boundary import DEFAULT_MARGIN, boundary_levels, explorable_features, saved_model_map
from lift_core.errors import LiftError
from lift_core.examples import EXAMPLE_RUNS_DIR, EXAMPLE_TABLES
from lift_core.runs import Run, create_run
from helpers import put_in_state

# What records when or how long something took: everything else of an example run is the same bytes each time.
TIMED_FILES = {"status.json", "metrics.jsonl", "eval.json", "baselines.csv"}
TIME_FIELDS = {"eval_seconds", "fit_seconds", "elapsed_s", "eta_s", "tokens_per_s"}
# The shipped runs together, adapters in 16-bit floats included.
SHIPPED_MEGABYTES = 30


def untimed(path):
    """A timed file's content without its clock readings."""
    if path.name == "status.json":
        return None  # nothing but states and times
    if path.suffix == ".csv":
        return pd.read_csv(path).drop(columns=list(TIME_FIELDS), errors="ignore").to_dict("list")
    lines = path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]
    return [{key: value for key, value in json.loads(line).items() if key not in TIME_FIELDS} for line in lines]


@pytest.mark.slow
def test_an_example_run_is_made_again_byte_for_byte(tmp_path, model_cache, one_torch_thread):
    from assets.make_examples import make_run

    made = [make_run("moons", tmp_path / str(attempt), "tiny", max_steps=12, quant="none") for attempt in (1, 2)]
    files = sorted(path.relative_to(made[0]) for path in made[0].rglob("*") if path.is_file())
    assert files == sorted(path.relative_to(made[1]) for path in made[1].rglob("*") if path.is_file())
    assert {"adapter/adapter_model.safetensors", "eval.json", "predictions.csv", "baselines.csv",
            "maps/model-adaptive-60-margin0.2.csv", "maps/baseline-logreg-60-margin0.2.csv"} <= set(map(str, files))
    for name in files:
        first, second = made[0] / name, made[1] / name
        if name.name in TIMED_FILES:
            assert untimed(first) == untimed(second), name
        else:
            assert first.read_bytes() == second.read_bytes(), name
    assert not (made[0] / "checkpoints").exists()


def test_every_example_table_has_a_shipped_run_with_its_results_and_maps():
    total = 0
    for example in EXAMPLE_TABLES.values():
        run = Run(EXAMPLE_RUNS_DIR / example.run_name, read_only=True)
        assert run.status()["state"] == "completed" and run.eval_results() and run.baselines() is not None
        assert len(run.predictions()) == run.dataset_info().n_test
        with safe_open(run.adapter_dir / "adapter_model.safetensors", "pt") as weights:
            assert {str(weights.get_tensor(key).dtype) for key in weights.keys()} == {"torch.float16"}
        try:
            features = explorable_features(run)
        except LiftError:
            features = None
        if features:
            grid = saved_model_map(run, resolution=60, margin=DEFAULT_MARGIN[len(features)])
            assert grid is not None and len(grid) == 60 ** len(features)
        total += sum(path.stat().st_size for path in run.path.rglob("*") if path.is_file())
    assert total < SHIPPED_MEGABYTES * 2**20


@pytest.mark.slow
def test_a_shipped_example_predicts_its_saved_test_results_again(tmp_path):
    """The shipped adapter and today's code give the shipped predictions (a copy is evaluated, the example kept)."""
    from lift_core.evaluation import evaluate_run

    copy = Run(shutil.copytree(EXAMPLE_RUNS_DIR / EXAMPLE_TABLES["moons"].run_name, tmp_path / "moons"))
    saved = copy.predictions()
    copy.forget_evaluation()
    evaluate_run(copy)
    pd.testing.assert_frame_equal(copy.predictions(), saved, check_exact=False, rtol=1e-6)


def test_a_read_only_run_refuses_every_change(tmp_path):
    path = tmp_path / "example-x"
    put_in_state(create_run(path, {"model": "tiny"}), "completed")
    run = Run(path, read_only=True)
    for change in (run.request_stop, run.delete, run.forget_evaluation, lambda: run.record(note="x"),
                   lambda: run.save_map("k", pd.DataFrame({"a": [1]})), lambda: run.fail("x")):
        with pytest.raises(LiftError, match="shipped example"):
            change()
    assert run.status()["state"] == "completed" and path.is_dir()


def test_a_person_sees_their_own_runs_then_the_examples_and_changes_only_their_own(tmp_path):
    runs_dir, examples_dir = tmp_path / "runs", tmp_path / "examples"
    for folder, name, owner in ((runs_dir, "mine", "a"), (runs_dir, "theirs", "b"), (examples_dir, "example-x", None)):
        run = create_run(folder / name, {"model": "tiny"})
        put_in_state(run, "completed", **({"owner": owner} if owner else {}))
    visitor = RunAccess(runs_dir, examples_dir, owner="a")
    assert [run.name for run in visitor.runs()] == ["mine", "example-x"]
    assert visitor.find_own("mine").name == "mine"
    with pytest.raises(LiftError, match="no run named 'theirs'"):
        visitor.find("theirs")
    with pytest.raises(LiftError, match="shipped example"):
        visitor.find_own("example-x")
    assert visitor.find("example-x").read_only
    assert {run.name for run in RunAccess(runs_dir, examples_dir).runs()} == {"mine", "theirs", "example-x"}
    assert [run.name for run in RunAccess(runs_dir, examples_dir, owner="").runs()] == ["example-x"]


def test_a_drawn_map_is_saved_and_shown_again_without_the_model(tiny_run, tmp_path, monkeypatch):
    from lift_core import predict

    run = Run(shutil.copytree(tiny_run[1].path, tmp_path / "run"))

    class NoModel:
        def predict(self, *args, **kwargs):
            raise AssertionError("the saved map should have been used")

    options = {"resolution": 12, "margin": 0.1}
    *_, drawn = boundary_levels(run, **options)
    monkeypatch.setattr(predict, "cached_predictor", lambda run: NoModel())
    again = list(boundary_levels(run, **options))
    assert len(again) == 1
    pd.testing.assert_frame_equal(again[0], drawn, check_dtype=False)
    assert saved_model_map(run, exhaustive=True, **options) is None  # an adaptive map is not the exact one
    run.forget_evaluation()  # as a resume does: the maps described the old adapter
    assert saved_model_map(run, **options) is None
