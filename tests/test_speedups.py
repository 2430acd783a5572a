"""The CPU speed-ups of issue 15: LoRA on the top layers with the frozen layers' output cached, the stop at a
perfect validation score, the previous defaults kept reproducible, and the duration estimate that follows them."""

import dataclasses

import pandas as pd
import pytest
import torch

from lift_core import layer_cache, models
from lift_core.batches import PadCollator
from lift_core.config import DEFAULTS, PREVIOUS_DEFAULTS, TrainConfig
from lift_core.encoding import encode_examples
from lift_core.estimate import FIXED_STEP_SHARE, trained_layer_share
from lift_core.layer_cache import LowerLayerCache
from lift_core.loss import answer_loss, checked_lower_cache
from lift_core.presets import apply_preset
from lift_core.prompts import PromptTemplate
from lift_core.validation import Validator
from tests.helpers import train_tiny, two_gaussians


@pytest.fixture(scope="module")
def tiny_top_layer(model_cache):
    """The tiny 2-layer Llama with LoRA on its top layer only, in eval mode (no dropout), and a batch of its rows."""
    torch.manual_seed(0)
    loaded = models.load_model("tiny", "none")
    settings = TrainConfig(lora_r=4, lora_alpha=8, lora_dropout=0.0, lora_layers=1).lora_settings()
    model = models.add_lora(loaded, settings)
    # LoRA's B starts at zero, which would hide a mistake in the top layers' input: give the update some weight.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1)
    model.eval()
    template = PromptTemplate(features=["x1", "x2"], target="y")
    frame = two_gaussians(n=12, seed=3)
    frame.loc[0, "x1"] = -123.456  # rows of different lengths, so the batch carries padding
    examples = encode_examples(frame, template, loaded.tokenizer)
    for number, example in enumerate(examples):
        example["row"] = number
    return model, PadCollator(loaded.tokenizer.pad_token_id), examples


def test_lora_sits_on_the_top_layers_only(tiny_top_layer):
    model, _, _ = tiny_top_layer
    trained = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trained and all(".layers.1." in name for name in trained)
    # every linear layer of the top layer, as "all-linear" picks them on every layer
    assert {name.split(".layers.1.")[1].rsplit(".lora_", 1)[0] for name in trained} == {
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}


def test_cached_lower_states_equal_a_full_forward_pass(tiny_top_layer):
    model, collate, examples = tiny_top_layer
    batch = collate(examples[:6])
    cache = LowerLayerCache.for_model(model, 1)
    states = cache.lower_states(batch["row"].tolist(), batch["input_ids"], batch["attention_mask"])
    with torch.no_grad():
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    real = batch["attention_mask"].bool()
    # hidden_states[1] is the output of layer 0, the input of layer 1, the first trained one
    torch.testing.assert_close(states[real], full.hidden_states[1][real], atol=1e-5, rtol=1e-5)


def test_loss_and_gradients_through_the_cache_equal_the_full_pass(tiny_top_layer):
    model, collate, examples = tiny_top_layer
    batch = collate(examples[:6])
    cache = LowerLayerCache.for_model(model, 1)
    results = []
    for lower_cache in (None, cache, cache):  # full; cached rows computed; cached rows reused
        model.zero_grad()
        loss, decision, _ = answer_loss(model, batch, lower_cache=lower_cache)
        loss.backward()
        gradients = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
        results.append((loss.detach(), decision, gradients))
    model.zero_grad()
    full_loss, full_decision, full_gradients = results[0]
    for loss, decision, gradients in results[1:]:
        torch.testing.assert_close(loss, full_loss, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(decision, full_decision, atol=1e-5, rtol=1e-5)
        for name, gradient in full_gradients.items():
            torch.testing.assert_close(gradients[name], gradient, atol=1e-5, rtol=1e-4)
    # The model is whole again afterwards: both layers, so it predicts and saves as before.
    assert len(models.decoder_layers(model.get_base_model())[1]) == 2


def test_rows_run_the_lower_layers_once(tiny_top_layer, monkeypatch):
    model, collate, examples = tiny_top_layer
    cache = LowerLayerCache.for_model(model, 1)
    passes = []
    layer_zero = models.decoder_layers(model.get_base_model())[1][0]
    handle = layer_zero.register_forward_hook(lambda module, args, output: passes.append(len(args[0])))
    try:
        first, second = collate(examples[:4]), collate(examples[2:6])
        cache.lower_states(first["row"].tolist(), first["input_ids"], first["attention_mask"])
        cache.lower_states(second["row"].tolist(), second["input_ids"], second["attention_mask"])
        cache.lower_states(first["row"].tolist(), first["input_ids"], first["attention_mask"])
    finally:
        handle.remove()
    assert passes == [4, 2]  # rows 4 and 5 were new in the second batch; the third batch was all cached
    assert sorted(cache.states) == [0, 1, 2, 3, 4, 5]


def test_rows_beyond_the_budget_are_computed_again_with_the_same_result(tiny_top_layer, monkeypatch):
    model, collate, examples = tiny_top_layer
    batch = collate(examples[:4])
    unlimited = LowerLayerCache.for_model(model, 1)
    expected = unlimited.lower_states(batch["row"].tolist(), batch["input_ids"], batch["attention_mask"])
    monkeypatch.setattr(layer_cache, "CACHE_BUDGET_BYTES", expected[0].nbytes)  # room for about one row
    limited = LowerLayerCache.for_model(model, 1)
    for _ in range(2):
        states = limited.lower_states(batch["row"].tolist(), batch["input_ids"], batch["attention_mask"])
        torch.testing.assert_close(states, expected)
    assert 0 < len(limited.states) < 4 and limited.cached_bytes <= layer_cache.CACHE_BUDGET_BYTES


def test_no_cache_when_every_layer_trains(tiny_top_layer):
    model, _, _ = tiny_top_layer
    assert LowerLayerCache.for_model(model, 0) is None
    assert LowerLayerCache.for_model(model, 2) is None  # as many LoRA layers as the model has
    assert LowerLayerCache.for_model(model, 9) is None


def test_a_cache_that_does_not_reproduce_the_full_pass_is_not_used(tiny_top_layer, monkeypatch, capsys):
    model, collate, examples = tiny_top_layer
    batch = collate(examples[:4])
    assert checked_lower_cache(model, 1, batch) is not None
    honest = LowerLayerCache.lower_states
    # As an architecture that scales inputs_embeds inside its forward pass would behave.
    monkeypatch.setattr(LowerLayerCache, "lower_states", lambda self, *args: 2 * honest(self, *args))
    assert checked_lower_cache(model, 1, batch) is None
    assert "not cached" in capsys.readouterr().out
    assert not model.training  # left in the mode it was in


def test_training_with_the_top_layer_only_learns(tmp_path):
    _, run = train_tiny(tmp_path, lora_layers=1)
    assert run.status()["state"] == "completed"
    assert run.eval_results()["accuracy"] >= 0.9
    adapter_config = (run.adapter_dir / "adapter_config.json").read_text()
    assert '"layers_to_transform": [\n    1\n  ]' in adapter_config


# ---- stopping when there is nothing left to learn ----------------------------------------------------------

class _FakePredictor:
    task = "classification"


class _Weights(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))


def _validate(validator, model, scores):
    for step, score in enumerate(scores, start=1):
        with torch.no_grad():
            model.w.fill_(step)  # the weights at each evaluation carry their step
        validator(model, step, score)


def test_perfect_scores_in_a_row_stop_the_run_and_the_best_weights_are_kept():
    validator = Validator(_FakePredictor(), pd.DataFrame({"y": [0, 1]}), "y", perfect_patience=2)
    model = _Weights()
    _validate(validator, model, [0.5, 1.0])
    assert not validator.exhausted
    _validate(validator, model, [0.5, 1.0, 0.9, 1.0])
    assert not validator.exhausted  # perfect, then not: the count starts again
    _validate(validator, model, [0.5, 1.0, 0.9, 1.0, 1.0])
    assert validator.exhausted and validator.best_step == 5  # a tie keeps the later weights
    with torch.no_grad():
        model.w.fill_(99)
    validator.restore_best(model)
    assert model.w.tolist() == [5.0, 5.0]


def test_flat_scores_stop_after_the_patience_and_restore_the_best_step():
    validator = Validator(_FakePredictor(), pd.DataFrame({"y": [0, 1]}), "y", patience=2)
    model = _Weights()
    _validate(validator, model, [0.6, 0.8, 0.7, 0.75])
    assert validator.exhausted and validator.best_step == 2
    validator.restore_best(model)
    assert model.w.tolist() == [2.0, 2.0]


def test_regression_never_counts_as_perfect():
    class Regression:
        task = "regression"

    validator = Validator(Regression(), pd.DataFrame({"y": [0.0, 1.0]}), "y", perfect_patience=1)
    _validate(validator, _Weights(), [1.0, 1.0, 1.0])
    assert not validator.exhausted


def test_a_run_stops_once_validation_is_perfect_and_keeps_its_best_weights(tmp_path, capsys):
    table = two_gaussians(n=400, std=0.3)  # no point near the other class: validation can be perfect
    _, run = train_tiny(tmp_path, table, epochs=20, max_steps=300, eval_steps=5, stop_when_perfect=2)
    status, trained = run.status(), [row for row in run.metrics() if row.get("total_steps")]
    last_step, planned = trained[-1]["step"], trained[-1]["total_steps"]
    assert last_step < planned, "two Gaussians this far apart are perfect on validation long before 300 steps"
    evaluations = [row["val_accuracy"] for row in trained if row.get("val_accuracy") is not None]
    assert evaluations[-2:] == [1.0, 1.0]
    assert len(evaluations) == 2 or evaluations[-3] != 1.0  # stopped at the second perfect evaluation in a row
    assert status["best_step"] == last_step
    assert status["state"] == "completed" and run.eval_results()["accuracy"] >= 0.95
    assert (f"Stopping early at step {last_step} of {planned}: the validation accuracy was perfect at 2 evaluations "
            "in a row.") in capsys.readouterr().out


# ---- the previous defaults ---------------------------------------------------------------------------------

def test_previous_defaults_preset_and_old_runs_train_and_read_as_before():
    previous = apply_preset("Previous defaults")
    assert {name: previous[name] for name in PREVIOUS_DEFAULTS} == PREVIOUS_DEFAULTS
    # A run saved before these settings existed: its prompts keep their zeros, its adapter covers every layer.
    saved = {"data": "t.csv", "target": "y", "decimals": 2, "lr": 0.002}
    old = TrainConfig.of_run(saved)
    assert old.lr == 0.002 and not old.trim_zeros and old.lora_layers == 0
    assert old.template_for(["x1"], "y").prompt({"x1": 0.5}).startswith("When we have x1=0.50,")
    assert TrainConfig.of_run({**saved, "trim_zeros": True}).trim_zeros


# ---- the duration estimate follows the cache ---------------------------------------------------------------

def test_the_estimate_counts_only_the_trained_layers_per_step():
    assert trained_layer_share(TrainConfig(model="smollm2-135m", lora_layers=0)) == 1.0
    assert trained_layer_share(TrainConfig(model="smollm2-135m", lora_layers=10)) == pytest.approx(1 / 3)
    assert trained_layer_share(TrainConfig(model="smollm2-135m", lora_layers=60)) == 1.0
    assert trained_layer_share(TrainConfig(model="tiny", lora_layers=1)) == 0.5
    assert 0 < FIXED_STEP_SHARE < 0.2


def test_the_memory_estimate_counts_the_trained_layers_and_the_cache():
    from lift_core import memory

    architecture = models.LISTED_MODELS["smollm2-135m"].architecture
    shape = memory.ExampleShape(tokens=40, answer_tokens=3, classes=1, rows=400)

    def estimate(shape=shape, **settings):
        return memory.estimate_memory(architecture, TrainConfig(**settings), shape, quantization="none",
                                      on_gpu=False, element_bytes=4)

    every, top = estimate(), estimate(lora_layers=10)
    assert memory.lora_parameters(architecture, TrainConfig(lora_layers=10)) * 3 == memory.lora_parameters(
        architecture, TrainConfig())
    assert top.lora * 3 == pytest.approx(every.lora, rel=1e-6)
    assert top.activations < every.activations
    # Every row's frozen-layer output is counted: 400 rows x 40 tokens x 576 floats.
    without_rows = estimate(dataclasses.replace(shape, rows=0), lora_layers=10)
    cache = 400 * 40 * architecture.hidden_size * 4
    assert top.activations - without_rows.activations == pytest.approx(cache * memory.CPU_ACTIVATION_OVERHEAD)
    assert estimate(dataclasses.replace(shape, rows=0)).activations == every.activations  # no cache, no change


def test_the_estimate_says_a_classifier_may_stop_sooner(tmp_path):
    from lift_core.estimate import estimate_duration

    table = tmp_path / "t.csv"
    two_gaussians(n=100).to_csv(table, index=False)
    config = TrainConfig(data=str(table), target="y", model="tiny", quant="none", max_steps=50)
    assert "less if the validation accuracy is perfect sooner" in estimate_duration(config, tmp_path).summary()
    never = TrainConfig(data=str(table), target="y", model="tiny", quant="none", max_steps=50, stop_when_perfect=0)
    assert "perfect" not in estimate_duration(never, tmp_path).summary()
