"""Finetuning end to end with the tiny model: run folder contents, 4-bit, regression, early stopping, stopping."""

import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
from helpers import ONE_THREAD_ENV, REPO_ROOT, TINY_FAST, train_tiny, wait_for

from lift_core import models, synthetic
from lift_core.batches import PadCollator
from lift_core.config import TrainConfig
from lift_core.errors import LiftError
from lift_core.predict import Predictor
from lift_core.prompts import PromptTemplate
from lift_core.runs import Run
from lift_core.encoding import encode_examples
from lift_core.training import run_training

pytestmark = pytest.mark.usefixtures("one_torch_thread")

METRIC_KEYS = {"step", "total_steps", "epoch", "loss", "eval_loss", "learning_rate", "elapsed_s", "eta_s",
               "tokens_per_s"}


# ---- encoding -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer(model_cache):
    return models.load_tokenizer("tiny")


def test_encode_examples_masks_the_prompt(tokenizer):
    template = PromptTemplate(features=["x1", "x2"], target="y")
    frame = pd.DataFrame({"x1": [0.52, -13.0], "x2": [-1.3, 2.25], "y": ["1", "horse"]})
    encoded = encode_examples(frame, template, tokenizer)
    assert len(encoded) == 2
    for example, row in zip(encoded, frame.to_dict("records")):
        prompt_ids = tokenizer(template.prompt(row))["input_ids"]
        answer_ids = tokenizer(template.completion(row["y"]), add_special_tokens=False)["input_ids"]
        assert example["input_ids"] == prompt_ids + answer_ids + [tokenizer.eos_token_id]
        assert len(example["labels"]) == len(example["input_ids"])
        # -100 exactly over the prompt; the answer and the end-of-sequence token are learned.
        assert example["labels"][:len(prompt_ids)] == [-100] * len(prompt_ids)
        assert example["labels"][len(prompt_ids):] == answer_ids + [tokenizer.eos_token_id]
        assert -100 not in example["labels"][len(prompt_ids):]
        learned = [token for token in example["labels"] if token != -100]
        assert tokenizer.decode(learned[:-1]) == template.completion(row["y"])
    assert tokenizer.decode(encoded[0]["input_ids"][:-1]) == (
        "When we have x1=0.52, x2=-1.30, what should be the y value?### 1@@@")


def test_pad_collator_pads_right_and_masks_padding():
    collate = PadCollator(pad_token_id=0)
    batch = collate([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


# ---- a full-precision classification run ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def fp_run(tiny_run):
    return tiny_run


@pytest.fixture(scope="module")
def q4_run(tmp_path_factory, model_cache):
    return train_tiny(tmp_path_factory.mktemp("q4"), quant="4bit")


@pytest.mark.parametrize("which", ["fp_run", "q4_run"])
def test_tiny_learns_a_separable_set(which, request):
    config, run = request.getfixturevalue(which)
    status = run.status()
    assert status["state"] == "completed", status
    assert status["quantization"] == config.quant
    results = run.eval_results()
    assert results["accuracy"] >= 0.9
    assert results["macro_f1"] >= 0.9
    assert results["n_test"] == 40
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()


def test_config_json_reruns_the_same_settings(fp_run):
    config, run = fp_run
    saved = json.loads((run.path / "config.json").read_text())
    assert saved == json.loads(json.dumps(asdict(config)))
    again = TrainConfig.from_dict(saved)
    assert again == config
    # Keys written by a newer version are ignored, not fatal.
    assert TrainConfig.from_dict({**saved, "added_later": 1}) == config


def test_status_json(fp_run):
    _, run = fp_run
    status = json.loads((run.path / "status.json").read_text())
    assert status["state"] == "completed"
    assert status["pid"] == os.getpid()
    assert status["created"] <= status["started"] <= status["finished"]
    assert status["hardware"] == models.hardware_summary()  # whatever this machine is, CPU or GPU
    assert "error" not in status


def test_metrics_jsonl(fp_run):
    config, run = fp_run
    lines = (run.path / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) >= 5
    for row in rows:
        assert METRIC_KEYS <= set(row), row
    total = rows[0]["total_steps"]
    assert total == 54  # 144 training rows / batch 8 = 18 steps per epoch, 3 epochs
    assert all(row["total_steps"] == total for row in rows)
    steps = [row["step"] for row in rows]
    assert steps == sorted(steps) and steps[0] == 1 and steps[-1] == total
    assert any(row["eval_loss"] is not None for row in rows)
    losses = [row["loss"] for row in rows if row["loss"] is not None]
    assert losses[-1] < losses[0] / 5  # it learned
    assert rows[-1]["epoch"] == pytest.approx(3.0)
    # The learning rate rises over the warm-up to the configured one, then decays linearly towards 0.
    rates = [row["learning_rate"] for row in rows if row["loss"] is not None]
    peak = rates.index(max(rates))
    assert 0 < peak < len(rates) - 1
    assert rates[:peak + 1] == sorted(rates[:peak + 1]) and rates[peak:] == sorted(rates[peak:], reverse=True)
    assert max(rates) == pytest.approx(config.lr, rel=0.1)
    assert rates[-1] < max(rates) / 10
    # Time only runs forward, and the time left is the mean time per step so far times the steps left.
    elapsed = [row["elapsed_s"] for row in rows]
    assert elapsed == sorted(elapsed) and elapsed[-1] > 0
    for row in rows:
        assert row["eta_s"] == pytest.approx(row["elapsed_s"] / row["step"] * (total - row["step"]), abs=0.1), row
    assert rows[-1]["eta_s"] == 0
    assert any(row["tokens_per_s"] and row["tokens_per_s"] > 0 for row in rows)


def test_dataset_json_and_splits(fp_run):
    _, run = fp_run
    info = run.dataset_info()
    assert info.task == "classification" and info.classes == ["0", "1"]
    assert info.features == ["x1", "x2"] and info.target == "y"
    assert (info.n_train, info.n_val, info.n_test) == (144, 16, 40)
    assert info.train_target_mean is None
    splits = {name: run.split(name) for name in ("train", "val", "test")}
    assert [len(splits[name]) for name in ("train", "val", "test")] == [144, 16, 40]
    everything = pd.concat(splits.values())
    assert len(everything.drop_duplicates(["x1", "x2"])) == 200  # disjoint and complete


def test_eval_json(fp_run):
    _, run = fp_run
    results = json.loads((run.path / "eval.json").read_text())
    assert {"task", "n_test", "invalid_rate", "accuracy", "macro_f1", "log_loss"} <= set(results)
    assert results["task"] == "classification"
    assert 0 <= results["log_loss"] < 0.5
    assert results["mode"] == "label scoring"
    # The greedy generation of the trained model writes valid, correct answers too.
    assert results["invalid_rate"] == 0.0
    assert results["generated_accuracy"] >= 0.9


def test_predictions_csv(fp_run):
    _, run = fp_run
    predictions = pd.read_csv((run.path / "predictions.csv"))
    test = run.split("test")
    assert {"y_true", "y_pred", "p_0", "p_1"} <= set(predictions.columns)
    assert len(predictions) == len(test)
    np.testing.assert_allclose(predictions[["x1", "x2"]], test[["x1", "x2"]])
    assert predictions["y_true"].astype(str).tolist() == test["y"].tolist()
    np.testing.assert_allclose(predictions["p_0"] + predictions["p_1"], 1.0, atol=1e-5)
    assert (predictions["y_pred"] == predictions["y_true"]).mean() == run.eval_results()["accuracy"]
    assert (predictions["y_pred"] == np.where(predictions["p_1"] > predictions["p_0"], 1, 0)).all()


@pytest.mark.parametrize("which", ["fp_run", "q4_run"])
def test_saved_adapter_reproduces_the_evaluation(which, request):
    """The adapter on disk is the trained one: reloaded (4-bit again for a 4-bit run), it gives the same results.

    bitsandbytes' CPU backend repacks 4-bit weights on their first forward pass, so a 4-bit model that went
    through training computes slightly differently from a fresh load: there the match is looser.
    """
    _, run = request.getfixturevalue(which)
    predictor = Predictor.from_run(run)
    assert run.status()["quantization"] == ("4bit" if which == "q4_run" else "none")
    assert ("Linear4bit" in {type(m).__name__ for m in predictor.model.modules()}) == (which == "q4_run")
    predictions = pd.read_csv((run.path / "predictions.csv"))
    test = run.split("test")
    reloaded = predictor.predict(test)
    tolerance = 1e-4 if which == "fp_run" else 0.02
    np.testing.assert_allclose(reloaded[["p_0", "p_1"]], predictions[["p_0", "p_1"]], atol=tolerance)
    assert (reloaded["y_pred"] == test["y"]).mean() >= 0.9


# ---- mistakes are caught before a run folder exists -------------------------------------------------------------

@pytest.mark.parametrize("settings, message", [
    ({"target": "nope"}, "not in the table"),
    ({"lr": 0.0}, "learning rate"),
    ({"batch_size": 0}, "batch size"),
    ({"quant": "3bit"}, "Unknown quantization"),
    ({"features": ["x1", "y"]}, "also listed as a feature"),
    ({"model": "/no/such/model-folder"}, "does not exist"),
])
def test_bad_settings_leave_no_run_folder(settings, message, separable_csv, tmp_path):
    config = TrainConfig(**{"data": str(separable_csv), "target": "y", **TINY_FAST, **settings})
    with pytest.raises(LiftError, match=message):
        run_training(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_bad_template_leaves_no_run_folder(separable_csv, tmp_path):
    """A template naming an unknown column is a user mistake like a bad target: --out stays reusable."""
    config = TrainConfig(data=str(separable_csv), target="y", template="custom", template_text="{nope} is",
                         **TINY_FAST)
    with pytest.raises(LiftError, match="unknown column 'nope'"):
        run_training(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_model_that_fails_to_load_marks_the_run_failed(separable_csv, tmp_path):
    """Past validation, a failure is recorded in the run: the app shows it instead of a run stuck 'running'."""
    config = TrainConfig(data=str(separable_csv), target="y", model="nobody-lift-test/no-such-model", quant="none")
    with pytest.raises(LiftError, match="Could not load model"):
        run_training(config, tmp_path / "run")
    status = Run(tmp_path / "run").status()
    assert status["state"] == "failed"
    assert "Could not load model 'nobody-lift-test/no-such-model'" in status["error"]
    assert status["finished"] >= status["started"]


def test_an_existing_run_is_not_overwritten(fp_run, separable_csv):
    config, run = fp_run
    before = (run.path / "config.json").read_text()
    with pytest.raises(LiftError, match="already holds a run"):
        run_training(TrainConfig(data=str(separable_csv), target="y", **TINY_FAST), run.path)
    assert (run.path / "config.json").read_text() == before
    assert run.status()["state"] == "completed"


# ---- regression with a separate test table ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def regression_run(tmp_path_factory, model_cache):
    """1-D linear regression; the noise-free test rows come as a separate table."""
    train, test = synthetic.make_regression("linear", n=100, p=1)
    calls = []
    original = Predictor.sample_answers

    def spy(self, frame, *, k=1, temperature=0.0, progress=None):
        calls.append((len(frame), k, temperature))
        return original(self, frame, k=k, temperature=temperature, progress=progress)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Predictor, "sample_answers", spy)
        config, run = train_tiny(tmp_path_factory.mktemp("regression"), train, test, eval_samples=3,
                                 eval_temperature=0.9)
    return config, run, train, test, calls


def test_regression_writes_error_metrics(regression_run):
    _, run, _, test, _ = regression_run
    assert run.status()["state"] == "completed"
    results = run.eval_results()
    assert results["task"] == "regression"
    assert results["n_test"] == len(test) == 20
    # The scores are those of the saved predictions; the invalid rate is the mean share of unreadable draws.
    predictions = pd.read_csv((run.path / "predictions.csv"))
    errors = (predictions["y_pred"] - predictions["y_true"]).to_numpy()
    spread = np.abs(predictions["y_true"] - predictions["y_true"].mean()).sum()
    assert results["rmse"] == pytest.approx(np.sqrt(np.mean(errors ** 2)))
    assert results["mae"] == pytest.approx(np.mean(np.abs(errors)))
    assert results["rae"] == pytest.approx(np.abs(errors).sum() / spread)
    assert results["invalid_rate"] == pytest.approx(predictions["invalid"].mean())


def test_regression_uses_the_separate_test_table(regression_run):
    _, run, train, test, _ = regression_run
    info = run.dataset_info()
    assert info.task == "regression"
    # Nothing of the training table is held out for testing.
    assert info.n_train + info.n_val == len(train) == 80
    assert info.n_test == len(test)
    predictions = pd.read_csv((run.path / "predictions.csv"))
    assert {"y_true", "y_pred", "median", "std", "invalid"} <= set(predictions.columns)
    np.testing.assert_allclose(predictions["x1"], test["x1"])
    np.testing.assert_allclose(predictions["y_true"], test["y"])


def test_regression_training_mean_is_the_fallback(regression_run, monkeypatch):
    _, run, _, test, _ = regression_run
    info = run.dataset_info()
    assert info.train_target_mean == pytest.approx(run.split("train")["y"].mean())
    assert np.isfinite(pd.read_csv((run.path / "predictions.csv"))["y_pred"]).all()
    # The trained model rarely writes nothing readable, so the draws are canned: the run's predictor answers a
    # row whose every draw is unreadable with the training mean recorded in the run.
    predictor = Predictor.from_run(run)
    canned = [["junk", "x@@@"], [" 1.50@@@", " 2.50@@@"], ["no", " -4@@@"]]
    monkeypatch.setattr(predictor, "sample_answers", lambda frame, k, temperature, progress=None: canned)
    result = predictor.predict(test.head(3), samples=2)
    assert result["invalid"].tolist() == [1.0, 0.0, 0.5]
    assert result["y_pred"].tolist() == [pytest.approx(info.train_target_mean), 2.0, -4.0]


def test_regression_evaluation_uses_the_configured_sampling(regression_run):
    _, run, _, test, calls = regression_run
    evaluation = [(rows, k, temperature) for rows, k, temperature in calls if (k, temperature) != (1, 0.0)]
    assert evaluation, "the evaluation drew no samples"
    assert {(k, temperature) for _, k, temperature in evaluation} == {(3, 0.9)}
    assert sum(rows for rows, _, _ in evaluation) == len(test)
    # The other draws are the validation score's: one greedy answer per validation row at each evaluation.
    validation = [rows for rows, k, temperature in calls if (k, temperature) == (1, 0.0)]
    evaluations = [row for row in run.metrics() if row.get("val_rae") is not None]
    assert sum(validation) == len(evaluations) * run.dataset_info().n_val


# ---- early stopping -----------------------------------------------------------------------------------------------

def test_early_stopping(tmp_path_factory, model_cache):
    config, run = train_tiny(tmp_path_factory.mktemp("early"), epochs=20, eval_steps=10, early_stopping_patience=2)
    assert run.status()["state"] == "completed"
    rows = run.metrics()
    total = rows[0]["total_steps"]
    assert total == 18 * 20
    scores = [row["val_accuracy"] for row in rows if row.get("val_accuracy") is not None]
    assert len(scores) >= 3
    # Patience 2: training ends at the second evaluation in a row that does not beat the best, long before
    # 20 epochs. Ties count as no better for patience.
    assert rows[-1]["step"] < total
    assert max(scores[-2:]) <= max(scores[:-2])
    assert run.eval_results()["accuracy"] >= 0.9


# ---- stopping a run ---------------------------------------------------------------------------------------------

@pytest.mark.slow  # a training subprocess per case, over 10 s each
@pytest.mark.parametrize("how", ["stop file", "SIGTERM"])
def test_a_running_training_stops_gracefully(how, separable_csv, tmp_path):
    run = Run(tmp_path / "run")
    log = open(tmp_path / "log.txt", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "lift_core", "train", "--data", str(separable_csv), "--target", "y",
         "--model", "tiny", "--quant", "none", "--lr", "5e-3", "--max-steps", "20000", "--out", str(run.path)],
        cwd=REPO_ROOT, env={**os.environ, **ONE_THREAD_ENV}, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: run.metrics() or process.poll() is not None, timeout=240, what="the first metrics row")
        assert process.poll() is None, (tmp_path / "log.txt").read_text()
        assert run.status()["state"] == "running"
        if how == "stop file":
            run.request_stop()
        else:
            process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    output = (tmp_path / "log.txt").read_text()
    assert returncode == 0, output
    assert f"run stopped: {run.path}" in output
    status = run.status()
    assert status["state"] == "stopped"
    assert status["finished"] >= status["started"]
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()
    assert run.metrics()[-1]["step"] < 20000
    assert run.eval_results() is None  # a stopped run is not scored
    # The adapter of a stopped run can still be used.
    predicted = Predictor.from_run(run).predict(run.split("test").head(3))
    np.testing.assert_allclose(predicted[["p_0", "p_1"]].sum(1), 1.0, atol=1e-5)
