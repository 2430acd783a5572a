"""What makes LIFT learn: the answer loss and the decision token, stratified batches, the step budget, keeping the
best validation score, and the majority-class warning. A default SmolLM2 run that learns is in test_smollm2.py."""

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import train_tiny, two_gaussians

from lift_core import models
from lift_core.batches import PadCollator, StratifiedSampler, balance_groups
from lift_core.config import TrainConfig
from lift_core.evaluation import majority_warning
from lift_core.loss import answer_loss
from lift_core.predict import Predictor
from lift_core.prompts import PromptTemplate
from lift_core.encoding import decision_offset, encode_examples

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(model_cache):
    loaded = models.load_model("tiny", "none")
    return loaded.model.eval(), loaded.tokenizer


def _batch(tokenizer, labels=("0", "1", "horse")):
    template = PromptTemplate(features=["x1", "x2"], target="y")
    frame = pd.DataFrame({"x1": [0.52, -13.0, 4.0], "x2": [-1.3, 2.25, 0.0], "y": list(labels)})
    examples = encode_examples(frame, template, tokenizer)
    return examples, PadCollator(tokenizer.pad_token_id)(examples)


# ---- the decision token ----------------------------------------------------------------------------------------

def test_decision_offset_is_the_first_token_where_answers_differ():
    assert decision_offset([[7, 1, 9], [7, 2, 9], [7, 3, 9]]) == 1
    assert decision_offset([[5, 9], [6, 9]]) == 0
    assert decision_offset([[7, 1, 9], [7, 1, 8]]) == 2
    # One answer the prefix of another: the shorter one's last token decides.
    assert decision_offset([[7, 1], [7, 1, 4]]) == 2
    assert decision_offset([]) == 0


def test_decision_index_points_at_the_first_differing_answer_token(tiny):
    _, tokenizer = tiny
    examples, _ = _batch(tokenizer)
    answers = [example["input_ids"][example["labels"].index(next(t for t in example["labels"] if t != -100)):]
               for example in examples]
    offset = decision_offset(answers)
    for example, answer in zip(examples, answers):
        index = example["decision_index"]
        assert example["labels"][index] != -100
        assert index == len(example["input_ids"]) - len(answer) + offset
    decided = {examples[i]["input_ids"][examples[i]["decision_index"]] for i in range(3)}
    assert len(decided) == 3  # the three labels differ at that token


def test_pad_collator_passes_the_decision_index(tiny):
    _, tokenizer = tiny
    examples, batch = _batch(tokenizer)
    assert batch["decision_index"].tolist() == [example["decision_index"] for example in examples]


# ---- the loss stays the model's own ------------------------------------------------------------------------------

@pytest.mark.parametrize("keeps_logits", [True, False])
def test_answer_loss_is_the_models_own_loss(tiny, keeps_logits):
    model, tokenizer = tiny
    _, batch = _batch(tokenizer)
    with torch.no_grad():
        expected = model(**{k: v for k, v in batch.items() if k != "decision_index"}).loss
        loss, decision_losses, _ = answer_loss(model, batch, keeps_logits)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    rows = torch.arange(3)
    index = batch["decision_index"]
    manual = torch.nn.functional.cross_entropy(logits[rows, index - 1], batch["input_ids"][rows, index],
                                               reduction="none")
    torch.testing.assert_close(decision_losses, manual, rtol=1e-5, atol=1e-5)


def test_answer_loss_gradients_match_the_models(tiny):
    model, tokenizer = tiny
    _, batch = _batch(tokenizer)
    weight = model.model.layers[-1].mlp.down_proj.weight
    model.zero_grad()
    model(**{k: v for k, v in batch.items() if k != "decision_index"}).loss.backward()
    expected = weight.grad.clone()
    model.zero_grad()
    answer_loss(model, batch)[0].backward()
    torch.testing.assert_close(weight.grad, expected, rtol=1e-4, atol=1e-6)
    model.zero_grad()


# ---- stratified batches ---------------------------------------------------------------------------------------------

def test_stratified_sampler_spreads_every_class_through_the_epoch():
    groups = np.array(["a"] * 60 + ["b"] * 30 + ["c"] * 10)
    sampler = StratifiedSampler(groups, seed=0)
    first = list(sampler)
    sampler.set_epoch(1)  # as the Trainer does before each epoch
    second = list(sampler)
    assert sorted(first) == list(range(100)) and sorted(second) == list(range(100))
    assert first != second  # a new shuffle each epoch
    for order in (first, second):
        for start in range(0, 100, 10):
            window = groups[order[start:start + 10]]
            # Every window of 10 holds about 6 a, 3 b and 1 c: never a run of one class.
            assert 4 <= (window == "a").sum() <= 8 and 1 <= (window == "b").sum() <= 5, window
    assert list(StratifiedSampler(groups, seed=0)) == first  # seeded
    sampler.set_epoch(0)
    assert list(sampler) == first  # an epoch's order depends on the epoch alone: a resumed run repeats it


def test_balance_groups_are_classes_or_target_quintiles():
    frame = pd.DataFrame({"y": ["b", "a", "b"], "t": [3.0, 1.0, 2.0]})
    assert balance_groups(frame, "y", "classification").tolist() == ["b", "a", "b"]
    targets = pd.DataFrame({"t": np.arange(100.0)[::-1]})
    quintiles = balance_groups(targets, "t", "regression")
    assert sorted(np.bincount(quintiles).tolist()) == [20] * 5
    assert quintiles[0] == 4 and quintiles[-1] == 0


# ---- the budget ----------------------------------------------------------------------------------------------------

def test_budget_is_epochs_capped_by_max_steps():
    config = TrainConfig(epochs=20, max_steps=300, batch_size=4)
    assert config.planned_steps(40) == 200  # a small table gets its 20 epochs
    assert config.planned_steps(10_000) == 300  # a large one stops at max_steps
    assert TrainConfig(epochs=3, max_steps=0, batch_size=8).planned_steps(144) == 54
    assert TrainConfig(epochs=0, max_steps=7).planned_steps(144) == 7


# ---- keeping the best evaluation -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def best_run(tmp_path_factory, model_cache):
    _, run = train_tiny(tmp_path_factory.mktemp("best"), two_gaussians(n=120), epochs=4, eval_steps=3, val_size=0.25)
    return run


def test_metrics_log_the_decision_loss_and_the_validation_score(best_run):
    rows = best_run.metrics()
    train = [row for row in rows if row.get("loss") is not None]
    evaluations = [row for row in rows if row.get("eval_loss") is not None]
    assert all(row["decision_loss"] is not None and row["decision_loss"] >= 0 for row in train)
    assert all(row["eval_decision_loss"] is not None and row["val_accuracy"] is not None for row in evaluations)
    # Starting at chance: the decision token costs about ln(2) or more before training, far less after.
    assert train[0]["decision_loss"] > 0.5
    assert train[-1]["decision_loss"] < train[0]["decision_loss"] / 5
    # The last step is always evaluated, so the final weights compete for the best too.
    assert evaluations[-1]["step"] == rows[0]["total_steps"]


def test_the_saved_adapter_is_the_best_evaluation(best_run):
    status = best_run.status()
    scores = {row["step"]: row["val_accuracy"] for row in best_run.metrics() if row.get("val_accuracy") is not None}
    best = max(scores.values())
    assert status["best_validation"] == {"val_accuracy": best}
    # Ties go to the later evaluation.
    assert status["best_step"] == max(step for step, score in scores.items() if score == best)
    predictor = Predictor.from_run(best_run)
    val = best_run.split("val")
    predicted = predictor.predict(val)["y_pred"]
    assert np.mean(predicted.to_numpy() == val["y"].astype(str).to_numpy()) == pytest.approx(best)


# ---- the majority-class warning ---------------------------------------------------------------------------------------

def test_majority_warning_only_for_a_model_no_better_than_the_commonest_class():
    assert "most common class" in majority_warning({"accuracy": 0.34, "majority_accuracy": 0.34})
    assert majority_warning({"accuracy": 0.30, "majority_accuracy": 0.40}) is not None
    assert majority_warning({"accuracy": 0.97, "majority_accuracy": 0.34}) is None
    # A perfect model is never told it learned nothing, however lopsided the test rows.
    assert majority_warning({"accuracy": 1.0, "majority_accuracy": 0.99}) is None
    assert majority_warning({"rmse": 1.0}) is None


def test_eval_json_records_the_majority_share(best_run):
    results = best_run.eval_results()
    test, train = best_run.split("test"), best_run.split("train")
    commonest = train["y"].astype(str).mode().iloc[0]
    assert results["majority_accuracy"] == pytest.approx(np.mean(test["y"].astype(str) == commonest))
    status = best_run.status()
    assert 0 < results["eval_seconds"] <= status["finished"] - status["started"]  # a part of the run's time
