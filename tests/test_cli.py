"""`python -m lift_core` as a user runs it: each command in a subprocess, and one-line errors for mistakes."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from helpers import lift_cli, two_gaussians

from lift_core import models
from lift_core.baselines import CLASSIFIERS
from lift_core.cli import build_parser, _train_config
from lift_core.launcher import training_command
from lift_core.config import TrainConfig
from lift_core.runs import Run

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def one_error_line(result) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


# ---- synth --------------------------------------------------------------------------------------------------

def test_synth_classification(tmp_path):
    out = tmp_path / "moons.csv"
    result = ok(lift_cli("synth", "--kind", "moons", "--n", 123, "--seed", 3, "--out", out))
    assert f"wrote 123 rows to {out}" in result.stdout
    frame = pd.read_csv(out)
    assert len(frame) == 123
    assert list(frame.columns) == ["x1", "x2", "y"]
    assert set(frame["y"]) == {0, 1}


def test_synth_regression_with_test_table(tmp_path):
    out, test_out = tmp_path / "sub" / "train.csv", tmp_path / "test.jsonl"
    ok(lift_cli("synth", "--kind", "linear", "--n", 50, "--p", 2, "--out", out, "--test-out", test_out))
    train, test = pd.read_csv(out), pd.read_json(test_out, lines=True)
    assert (len(train), len(test)) == (40, 10)
    assert list(train.columns) == list(test.columns) == ["x1", "x2", "y"]
    # The test rows are noise-free: y is exactly the linear function of the features.
    np.testing.assert_allclose(test["y"], 0.9 * test[["x1", "x2"]].mean(axis=1), atol=1e-9)


# ---- train, evaluate, predict, boundary on one run --------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory, separable_csv, model_cache):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = lift_cli("train", "--data", separable_csv, "--target", "y", "--model", "tiny", "--quant", "none",
                      "--epochs", 3, "--lr", "5e-3", "--out", out)
    return Run(out), result


def test_train_prints_metrics(trained):
    run, result = trained
    ok(result)
    assert f"run completed: {run.path}" in result.stdout
    metrics_line = result.stdout.strip().splitlines()[-1]
    values = dict(re.findall(r"(\w+)=(\S+)", metrics_line))
    assert {"accuracy", "macro_f1", "log_loss", "invalid_rate", "n_test"} <= set(values), metrics_line
    assert float(values["accuracy"]) >= 0.9
    assert values["n_test"] == "40"
    assert float(values["accuracy"]) == pytest.approx(run.eval_results()["accuracy"], abs=1e-3)
    assert run.status()["state"] == "completed"
    # Progress goes to stdout, one line per logging step, with the decision token's loss.
    total = TrainConfig(epochs=3).planned_steps(run.dataset_info().n_train)
    assert re.search(rf"^step 1/{total} loss \d\S* decision loss \d", result.stdout, re.M)


def test_train_records_absolute_paths(trained, separable_csv):
    run, _ = trained
    config = run.config()
    assert config.data == str(separable_csv.resolve())
    assert config.model == "tiny" and config.quant == "none" and config.lr == 5e-3


@pytest.mark.slow  # loads the model in a subprocess and predicts: over 10 s
def test_predict_writes_one_row_per_input(trained, tmp_path):
    run, _ = trained
    table = two_gaussians(n=9, seed=7).drop(columns="y").assign(note=[f"row {i}" for i in range(9)])
    table.to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "predicted.csv"
    result = ok(lift_cli("predict", "--run", run.path, "--data", tmp_path / "new.csv", "--out", out))
    assert f"wrote 9 predictions to {out}" in result.stdout
    predicted = pd.read_csv(out)
    assert len(predicted) == 9
    assert {"x1", "x2", "note", "y_pred", "p_0", "p_1", "spread", "invalid"} <= set(predicted.columns)
    assert predicted["note"].tolist() == table["note"].tolist()  # input order and columns kept
    np.testing.assert_allclose(predicted["p_0"] + predicted["p_1"], 1.0, atol=1e-5)
    truth = np.where(table["x1"] + table["x2"] > 0, 1, 0)
    assert (predicted["y_pred"] == truth).mean() >= 0.8


@pytest.mark.slow  # loads the model in a subprocess and predicts: over 10 s
def test_boundary_writes_the_grid(trained, tmp_path):
    run, _ = trained
    out = tmp_path / "grid.csv"
    result = ok(lift_cli("boundary", "--run", run.path, "--resolution", 10, "--exhaustive", "--out", out))
    assert "wrote a 100-point grid" in result.stdout and "100 points answered by the model" in result.stdout
    grid = pd.read_csv(out)
    assert len(grid) == 100 and grid["scored"].all()
    assert {"x1", "x2", "y_pred", "p_0", "p_1", "spread"} <= set(grid.columns)
    assert grid["x1"].nunique() == 10 and grid["x2"].nunique() == 10
    train = run.split("train")
    assert grid["x1"].min() < train["x1"].min() and grid["x1"].max() > train["x1"].max()
    np.testing.assert_allclose(grid["p_0"] + grid["p_1"], 1.0, atol=1e-5)
    # The corners of the grid lie deep inside each class.
    low = grid.loc[(grid["x1"] == grid["x1"].min()) & (grid["x2"] == grid["x2"].min()), "y_pred"].item()
    high = grid.loc[(grid["x1"] == grid["x1"].max()) & (grid["x2"] == grid["x2"].max()), "y_pred"].item()
    assert (low, high) == (0, 1)


# ---- baselines, models --------------------------------------------------------------------------------------

def test_baselines_prints_every_classifier(separable_csv, tmp_path):
    out = tmp_path / "baselines.csv"
    result = ok(lift_cli("baselines", "--data", separable_csv, "--target", "y", "--out", out))
    printed = [line.split()[0] for line in result.stdout.strip().splitlines()[1:]]
    assert printed == list(CLASSIFIERS)
    table = pd.read_csv(out)
    assert table["name"].tolist() == list(CLASSIFIERS)
    assert table.set_index("name").loc["logreg", "accuracy"] >= 0.95


def test_models_lists_the_aliases():
    result = ok(lift_cli("models"))
    lines = result.stdout.splitlines()
    assert lines[0] == models.hardware_summary()  # the machine's own line, CPU or GPU
    listed = {line.split()[0] for line in lines[1:] if line.startswith("  ")}
    assert {"smollm2-135m", "tiny", "HuggingFaceTB/SmolLM2-135M-Instruct"} <= listed
    assert "NOT pretrained" in next(line for line in lines if line.split()[:1] == ["tiny"])


# ---- mistakes: one line on stderr, no traceback -----------------------------------------------------------------

@pytest.fixture(scope="module")
def bad_tables(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    (folder / "empty.csv").write_text("")
    (folder / "header_only.csv").write_text("x1,x2,y\n")
    return folder


TRAIN_TINY = ("--model", "tiny", "--quant", "none")


@pytest.mark.parametrize("args, message", [
    (("train", "--data", "{sep}", "--target", "nope", *TRAIN_TINY), "Column 'nope' is not in the table"),
    (("train", "--data", "{bad}/missing.csv", "--target", "y", *TRAIN_TINY), "not found"),
    (("train", "--data", "{bad}/empty.csv", "--target", "y", *TRAIN_TINY), "empty"),
    (("train", "--data", "{bad}/header_only.csv", "--target", "y", *TRAIN_TINY), "no data rows"),
    (("train", "--data", "{sep}", "--target", "y", *TRAIN_TINY, "--template", "custom",
      "--template-text", "{{nope}}"), "unknown column 'nope'"),
    (("synth", "--kind", "nope", "--out", "{tmp}/x.csv"), "Unknown synthetic kind 'nope'"),
    (("baselines", "--data", "{sep}", "--target", "y", "--only", "nope"), "nope"),
    (("predict", "--run", "{tmp}", "--data", "{sep}", "--out", "{tmp}/p.csv"), "holds no trained adapter"),
])
def test_mistakes_are_one_error_line(args, message, separable_csv, bad_tables, tmp_path):
    filled = [arg.format(sep=separable_csv, bad=bad_tables, tmp=tmp_path) for arg in args]
    out = tmp_path / "run"
    result = lift_cli(*filled, *(["--out", out] if filled[0] == "train" else []))
    line = one_error_line(result)
    assert message in line, line
    assert result.returncode == 2  # a user error, not a crash
    assert not out.exists()  # --out can be used again after fixing the mistake


def test_predict_with_missing_feature_columns(trained, tmp_path):
    run, _ = trained
    pd.DataFrame({"x1": [0.1], "other": [2]}).to_csv(tmp_path / "new.csv", index=False)
    line = one_error_line(lift_cli("predict", "--run", run.path, "--data", tmp_path / "new.csv",
                                   "--out", tmp_path / "p.csv"))
    assert "x2" in line
    assert not (tmp_path / "p.csv").exists()


def test_missing_model_folder_is_one_error_line(separable_csv, tmp_path):
    out = tmp_path / "run"
    result = lift_cli("train", "--data", separable_csv, "--target", "y", "--model", tmp_path / "no-such-model",
                      "--quant", "none", "--out", out)
    line = one_error_line(result)
    assert "does not exist" in line


def test_usage_errors_exit_non_zero():
    result = lift_cli("train", "--data", "x.csv")  # --target and --out missing
    assert result.returncode == 2
    assert "required" in result.stderr and "Traceback" not in result.stderr


# ---- the command line that reruns a run ---------------------------------------------------------------------

def test_train_command_round_trips_a_config(tmp_path):
    config = TrainConfig(
        data=str(tmp_path / "data.csv"), target="species", features=["a", "b c"], task="classification",
        test_data=str(tmp_path / "test.csv"), template="custom", template_text="{a} and {b c}", decimals=3,
        model="tiny", quant="4bit", lora_r=4, lora_alpha=8, lora_dropout=0.0, lora_targets="q_proj,v_proj",
        epochs=2.5, max_steps=7, lr=2e-4, batch_size=4, test_size=0.25, val_size=0.0, seed=5,
        logging_steps=2, eval_steps=3, save_steps=4, early_stopping_patience=2, eval_samples=7,
        eval_temperature=0.3, trust_remote_code=True,
    )
    command = training_command(config, tmp_path / "run")
    assert command[1:4] == ["-m", "lift_core", "train"]
    args = build_parser().parse_args(command[3:])
    assert args.out == str(tmp_path / "run")
    assert _train_config(args) == config


def test_train_command_of_the_defaults_is_short(tmp_path):
    config = TrainConfig(data=str(tmp_path / "d.csv"), target="y")
    command = training_command(config, "out")
    assert command[3:] == ["train", "--data", str(tmp_path / "d.csv"), "--target", "y", "--out", "out"]
    assert _train_config(build_parser().parse_args(command[3:])) == config


def test_train_needs_data_and_target_or_a_readable_settings_file(tmp_path):
    result = lift_cli("train", "--out", tmp_path / "run")
    assert result.returncode == 2 and "train needs --data and --target (or --config" in result.stderr
    result = lift_cli("train", "--config", tmp_path / "missing.json", "--out", tmp_path / "run")
    assert result.returncode == 2 and "Cannot read the settings file" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_flags_given_with_a_settings_file_are_read_as_flags(tmp_path):
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"data": "/data/t.csv", "target": "y", "features": ["a, b"], "lr": 0.01}))
    args = build_parser().parse_args(["train", "--config", str(settings), "--features", "x1, x2", "--out", "run"])
    config = _train_config(args)
    assert config.features == ["x1", "x2"] and config.lr == 0.01 and config.data == "/data/t.csv"
    config = _train_config(build_parser().parse_args(["train", "--config", str(settings), "--out", "run"]))
    assert config.features == ["a, b"]  # from the file, never split at its comma
